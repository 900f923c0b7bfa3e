//! Reloading the configuration into a running router.
//!
//! The settings a reload may change are split by where the packet path reads
//! them:
//! - [`Live`]: rules, balancing, stickiness, port forwards and the LAN
//!   address, read for new connections, forwarded ports and ICMP errors the
//!   core makes. [`Router::reconfigure`] builds a new one and
//!   swaps it in with one atomic pointer store, so a worker sees either the
//!   old settings or the new ones, never a mix; each lane keeps a copy
//!   ([`LiveCache`]) until the store's epoch moves.
//! - the MTUs and timeouts, which every packet of an established flow reads,
//!   and MSS clamping, which every SYN reads: atomics, so those paths take no
//!   extra step.
//!
//! Flows are never touched by a reload, except those of a port forward that no
//! longer exists: they are removed and their TCP clients reset.

use std::cell::{Cell, Ref, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{lock, Router};
use crate::config::{Config, MssClamp, Proto, Timeouts, UplinkId};
use crate::flow::FlowKind;
use crate::packet::{Endpoint, PROTO_TCP, PROTO_UDP};
use crate::policy::{Policy, Rules};

/// (protocol, port on the WAN address, uplink) → the inside endpoint.
pub(super) type Forwards = HashMap<(u8, u16, UplinkId), Endpoint>;

/// The settings a reload swaps whole.
pub(super) struct Live {
    pub policy: Policy,
    /// IPv6's own balancer (uplinks are up for each family apart) and
    /// sticky table, with the same rules.
    pub policy6: Policy,
    pub forwards: Forwards,
    /// Port forwards to IPv6 targets, on the uplinks' NAT66 addresses.
    pub forwards6: HashMap<(u8, u16, UplinkId), crate::packet::Endpoint6>,
    pub lan_address: Option<[u8; 4]>,
}

impl Live {
    pub fn new(config: &Config, policy: Policy, policy6: Policy) -> Live {
        Live {
            policy,
            policy6,
            forwards: forwards(&config.forwards, |a| a.octets()),
            forwards6: forwards(&config.forwards6, |a| a.octets()),
            lan_address: config.lan.address.map(|a| a.octets()),
        }
    }
}

/// One lane's copy of the [`Live`] in force, valid for the router's
/// `live_epoch` it holds: a new connection reads it with one atomic load
/// (the epoch) instead of `ArcSwap::load` (a thread-local debt slot and two
/// sequentially consistent operations).
pub(super) struct LiveCache {
    epoch: Cell<u64>,
    live: RefCell<Arc<Live>>,
}

impl LiveCache {
    /// The router's settings now: the epoch read first, so a reload in
    /// between leaves a newer copy under an older epoch (refreshed again
    /// at the next read), never the reverse.
    pub fn new(router: &Router) -> LiveCache {
        let epoch = router.live_epoch.load(Ordering::Acquire);
        LiveCache {
            epoch: Cell::new(epoch),
            live: RefCell::new(router.live.load_full()),
        }
    }
}

impl Router {
    /// The settings in force, through a lane's cache (refreshed when a
    /// reload moved the epoch; a read nested in another keeps the copy the
    /// outer one holds).
    pub(super) fn live<'a>(&self, cache: &'a LiveCache) -> Ref<'a, Arc<Live>> {
        let epoch = self.live_epoch.load(Ordering::Acquire);
        if cache.epoch.get() != epoch {
            if let Ok(mut live) = cache.live.try_borrow_mut() {
                *live = self.live.load_full();
                cache.epoch.set(epoch);
            }
        }
        cache.live.borrow()
    }
}

/// The forwards of one family by (protocol, port, uplink), `octets` giving
/// a target's address bytes.
fn forwards<T, A>(
    list: &[crate::config::Forward<T>],
    octets: impl Fn(&T) -> A,
) -> HashMap<(u8, u16, UplinkId), Endpoint<A>> {
    let mut forwards = HashMap::new();
    for forward in list {
        let protocol = if forward.proto == Proto::Udp {
            PROTO_UDP
        } else {
            PROTO_TCP
        };
        for uplink in &forward.wans {
            forwards.insert(
                (protocol, forward.port, *uplink),
                Endpoint::new(octets(&forward.to_addr), forward.to_port),
            );
        }
    }
    forwards
}

/// The flow timeouts, each an atomic: a reload stores them one by one, and
/// each value on its own is a valid timeout.
pub(super) struct TimeoutCell([AtomicU32; 4]);

impl TimeoutCell {
    pub fn new(timeouts: &Timeouts) -> TimeoutCell {
        let cell = TimeoutCell([0; 4].map(AtomicU32::new));
        cell.set(timeouts);
        cell
    }

    pub fn get(&self) -> Timeouts {
        let [established, transitory, udp, icmp] = &self.0;
        Timeouts {
            tcp_established_s: established.load(Ordering::Relaxed),
            tcp_transitory_s: transitory.load(Ordering::Relaxed),
            udp_s: udp.load(Ordering::Relaxed),
            icmp_s: icmp.load(Ordering::Relaxed),
        }
    }

    pub fn set(&self, timeouts: &Timeouts) {
        let values = [
            timeouts.tcp_established_s,
            timeouts.tcp_transitory_s,
            timeouts.udp_s,
            timeouts.icmp_s,
        ];
        for (cell, value) in self.0.iter().zip(values) {
            cell.store(value, Ordering::Relaxed);
        }
    }
}

/// `[nat] mss_clamp` in one atomic: 0 off, 1 auto, else the fixed MSS
/// (validated to be at least 536).
pub(super) struct MssCell(AtomicU32);

impl MssCell {
    pub fn new(clamp: MssClamp) -> MssCell {
        let cell = MssCell(AtomicU32::new(0));
        cell.set(clamp);
        cell
    }

    pub fn get(&self) -> MssClamp {
        match self.0.load(Ordering::Relaxed) {
            0 => MssClamp::Off,
            1 => MssClamp::Auto,
            mss => MssClamp::Fixed(mss as u16),
        }
    }

    pub fn set(&self, clamp: MssClamp) {
        let value = match clamp {
            MssClamp::Off => 0,
            MssClamp::Auto => 1,
            MssClamp::Fixed(mss) => u32::from(mss).max(2),
        };
        self.0.store(value, Ordering::Relaxed);
    }
}

/// What a reconfiguration did to existing flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Flows of port forwards the new configuration no longer has (on that
    /// uplink, protocol and port), removed.
    pub forward_flows_closed: usize,
    /// Frames to send out the LAN port: an RST to each TCP host of those flows.
    pub resets: Vec<Vec<u8>>,
}

impl Router {
    /// Applies a reloaded configuration: new rules, balance mode, weights and
    /// priorities, sticky settings, port forwards, MSS clamping, LAN address,
    /// MTUs and timeouts, for new flows at once. Established flows keep their
    /// uplink and mapping (those of removed port forwards are closed).
    ///
    /// `config` must describe the same router: the same uplinks in the same
    /// order (an uplink taken out of service stays in its place, marked down
    /// with [`Router::set_uplink_up`] and failed over with
    /// [`Router::fail_over`]), the same LAN networks, WAN addresses, NAT
    /// range and table limits, which stay as they were.
    ///
    /// # Panics
    /// If `config` has a different number of uplinks.
    pub fn reconfigure(&self, config: &Config) -> Reconfigured {
        self.reconfigure_with(config, || {})
    }

    /// [`Router::reconfigure`], running `before_closing` once the new
    /// configuration is live and before the flows of removed port forwards
    /// are closed: the I/O layer takes them off the fast path there (they
    /// are no longer offered), so their RSTs carry the final sequence.
    ///
    /// # Panics
    /// If `config` has a different number of uplinks.
    pub fn reconfigure_with(&self, config: &Config, before_closing: impl FnOnce()) -> Reconfigured {
        assert_eq!(
            config.wans.len(),
            self.uplinks.len(),
            "a reconfiguration keeps every uplink in its place"
        );
        let removed_forwards = {
            let _reconfiguring = lock(&self.reconfiguring);
            let old = self.live.load_full();
            let policy =
                old.policy
                    .reconfigured(Rules::new(&config.rules), &config.balance, &config.wans);
            let policy6 =
                old.policy6
                    .reconfigured(Rules::new(&config.rules), &config.balance, &config.wans);
            let live = Live::new(config, policy, policy6);
            let removed: Vec<(u8, u16, UplinkId)> = old
                .forwards
                .keys()
                .filter(|key| !live.forwards.contains_key(key))
                .copied()
                .collect();
            let removed6: Vec<(u8, u16, UplinkId)> = old
                .forwards6
                .keys()
                .filter(|key| !live.forwards6.contains_key(key))
                .copied()
                .collect();
            self.lan_mtu.configure(config.lan.mtu);
            for (uplink, wan) in self.uplinks.iter().zip(&config.wans) {
                uplink.mtu.configure(wan.mtu);
            }
            self.timeouts.set(&config.timeouts);
            self.mss_clamp.set(config.nat.mss_clamp);
            self.live.store(Arc::new(live));
            // After the store: a lane that sees the new epoch loads the new
            // settings (or newer ones).
            self.live_epoch.fetch_add(1, Ordering::AcqRel);
            (removed, removed6)
        };
        let (removed_forwards, removed_forwards6) = removed_forwards;
        if removed_forwards.is_empty() && removed_forwards6.is_empty() {
            return Reconfigured::default();
        }
        before_closing();
        let gone = self.table.remove_where(|flow| {
            let spec = &flow.spec;
            let port = match spec.kind {
                FlowKind::Snat => return false,
                FlowKind::Dnat => spec.outside.port,
                FlowKind::Hairpin { port } => port,
            };
            removed_forwards.contains(&(spec.protocol, port, spec.uplink))
        });
        let mut out = Reconfigured {
            forward_flows_closed: gone.len(),
            resets: Vec::new(),
        };
        for flow in &gone {
            self.release(&flow.spec);
            if flow.spec.protocol == PROTO_TCP {
                out.resets.extend(self.reset_frame(flow));
            }
        }
        // IPv6 forwards' flows (on the NAT66 addresses; no hairpin).
        let gone6 = self.v6.table.remove_where(|flow| {
            let spec = &flow.spec;
            spec.kind == FlowKind::Dnat
                && removed_forwards6.contains(&(spec.protocol, spec.outside.port, spec.uplink))
        });
        let failed6 = self.failed_over6(&gone6);
        out.forward_flows_closed += gone6.len();
        out.resets.extend(failed6.resets);
        out
    }
}

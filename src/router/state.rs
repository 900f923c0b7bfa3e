//! The router's state for a restart: [`Router::save_state`] copies the
//! flows (their mappings, uplinks and TCP tracking) and the sticky clients
//! into a plain [`Snapshot`], its times relative to the `now` passed in;
//! [`Router::restore_state`] puts them back into a new router before it
//! forwards, flow by flow, keeping what the running configuration still
//! allows. NAT allocations and per-host counts are rebuilt from the flows.
//! `codec.rs` turns a snapshot into bytes and back; the I/O layer reads and
//! writes the file.

use std::sync::atomic::Ordering;

use super::neighbours::NO_MAC;
use super::{lock, nat_index, Router};
use crate::config::{PortRange, Sticky, UplinkId};
use crate::flow::{idle_timeout, FlowKind, Removed, SavedFlow};
use crate::packet::{Addr6, PROTO_TCP};

mod codec;

pub use codec::{StateError, STATE_VERSION};

/// What a router saves for a restart: plain data, times as offsets from
/// the save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was saved, in seconds since the Unix epoch: set by the I/O
    /// layer that writes the file (the core reads no clock); 0 unknown.
    pub saved_at: u64,
    /// The uplinks the saved flows' ids refer to: name and WAN address.
    pub uplinks: Vec<(String, [u8; 4])>,
    pub nat_ports: PortRange,
    /// The sticky mode and clients: (key, uplink, seconds idle).
    pub sticky: Sticky,
    pub sticky_clients: Vec<(u64, UplinkId, u32)>,
    pub flows: Vec<SavedFlow>,
    pub flows6: Vec<SavedFlow<Addr6>>,
}

impl Snapshot {
    /// Ages every saved time by `seconds` (the time between the save and
    /// the restore, which neither router's clock saw).
    pub fn age_by(&mut self, seconds: u32) {
        for flow in &mut self.flows {
            flow.age_s = flow.age_s.saturating_add(seconds);
            flow.idle_s = flow.idle_s.saturating_add(seconds);
        }
        for flow in &mut self.flows6 {
            flow.age_s = flow.age_s.saturating_add(seconds);
            flow.idle_s = flow.idle_s.saturating_add(seconds);
        }
        for (_, _, idle) in &mut self.sticky_clients {
            *idle = idle.saturating_add(seconds);
        }
    }
}

/// What [`Router::restore_state`] did, flow by flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub flows: usize,
    pub sticky_clients: usize,
    /// Dropped: idle for longer than its timeout by now (the downtime
    /// included).
    pub expired: usize,
    /// Dropped: the uplink is no longer configured (by name).
    pub uplink_gone: usize,
    /// Dropped: the uplink's WAN address changed.
    pub address_changed: usize,
    /// Dropped: the outside port is outside `[nat] ports` now, or the
    /// inside host outside `[lan] networks`.
    pub range_changed: usize,
    /// Dropped: the port forward the flow came through is gone or points
    /// elsewhere.
    pub forward_gone: usize,
    /// Dropped: a limit of `[limits]` (the table, a host's, a forward's or a
    /// source's share), or a clash with a flow restored before.
    pub refused: usize,
    /// Frames to send out the LAN port: an RST to each TCP host whose
    /// dropped flow needs one (as on failover).
    pub resets: Vec<Vec<u8>>,
}

/// What a failover RST needs of a saved flow.
fn removed<A: Copy>(saved: &SavedFlow<A>) -> Removed<A> {
    Removed {
        spec: saved.spec,
        tcp: saved.tcp,
        next_seq_to_lan: saved.next_seq_to_lan,
    }
}

impl Restored {
    /// Counts one saved flow's fate; true when it was dropped and needs an
    /// RST towards its LAN host (a TCP connection not dropped for expiring).
    fn count<A>(&mut self, restored: Result<(), Drop>, saved: &SavedFlow<A>) -> bool {
        let Err(reason) = restored else {
            self.flows += 1;
            return false;
        };
        *match reason {
            Drop::Expired => &mut self.expired,
            Drop::UplinkGone => &mut self.uplink_gone,
            Drop::AddressChanged => &mut self.address_changed,
            Drop::RangeChanged => &mut self.range_changed,
            Drop::ForwardGone => &mut self.forward_gone,
            Drop::Refused => &mut self.refused,
        } += 1;
        saved.spec.protocol == PROTO_TCP && !matches!(reason, Drop::Expired)
    }

    /// Flows dropped for any reason.
    pub fn dropped(&self) -> usize {
        self.expired
            + self.uplink_gone
            + self.address_changed
            + self.range_changed
            + self.forward_gone
            + self.refused
    }
}

/// Why a saved flow is not restored.
pub(super) enum Drop {
    Expired,
    UplinkGone,
    AddressChanged,
    RangeChanged,
    ForwardGone,
    Refused,
}

impl Router {
    /// Everything a restart needs, with times relative to `now` (seconds on
    /// the router's clock).
    pub fn save_state(&self, now: std::time::Duration) -> Snapshot {
        let now = super::seconds(now);
        let (sticky, sticky_clients) = self.live.load().policy.save_sticky(now);
        Snapshot {
            saved_at: 0,
            uplinks: self
                .uplinks
                .iter()
                .map(|u| (u.name.clone(), u.address()))
                .collect(),
            nat_ports: self.nat_ports,
            sticky,
            sticky_clients,
            flows: self.table.save(now),
            flows6: self.v6.table.save(now),
        }
    }

    /// Restores a snapshot into this router at `now`, before it forwards.
    /// Each flow keeps its mapping when its uplink (found by name) still has
    /// the same address, its outside port is in the NAT range, its forward
    /// (if any) still leads to the same target and the limits allow it; any
    /// other is dropped and counted, with an RST towards the LAN host of a
    /// TCP connection that needs one.
    pub fn restore_state(&self, snapshot: &Snapshot, now: std::time::Duration) -> Restored {
        let now = super::seconds(now);
        let ids: Vec<Option<UplinkId>> = snapshot
            .uplinks
            .iter()
            .map(|(name, _)| {
                self.uplinks
                    .iter()
                    .position(|u| &u.name == name)
                    .map(|i| i as UplinkId)
            })
            .collect();
        let mut out = Restored::default();
        for saved in &snapshot.flows {
            let restored = self.restore_flow(snapshot, &ids, saved, now);
            if out.count(restored, saved) {
                out.resets.extend(self.reset_frame(&removed(saved)));
            }
        }
        for saved in &snapshot.flows6 {
            let restored = self.restore_flow6(&ids, saved, now);
            if out.count(restored, saved) {
                out.resets.extend(self.reset_frame6(&removed(saved)));
            }
        }
        let map = |saved: UplinkId| {
            let id = (*ids.get(usize::from(saved))?)?;
            let same =
                snapshot.uplinks[usize::from(saved)].1 == self.uplinks[usize::from(id)].address();
            same.then_some(id)
        };
        out.sticky_clients = self.live.load().policy.restore_sticky(
            snapshot.sticky,
            &snapshot.sticky_clients,
            map,
            now,
        );
        out
    }

    fn restore_flow(
        &self,
        snapshot: &Snapshot,
        ids: &[Option<UplinkId>],
        saved: &SavedFlow,
        now: u32,
    ) -> Result<(), Drop> {
        if saved.idle_s > idle_timeout(saved.spec.protocol, saved.tcp, &self.timeouts.get()) {
            return Err(Drop::Expired);
        }
        let old = usize::from(saved.spec.uplink);
        let uplink = ids.get(old).copied().flatten().ok_or(Drop::UplinkGone)?;
        if snapshot.uplinks[old].1 != self.uplinks[usize::from(uplink)].address() {
            return Err(Drop::AddressChanged);
        }
        let mut spec = saved.spec;
        spec.uplink = uplink;
        // The LAN's hosts may have other MACs now: the table decides.
        spec.lan_mac = NO_MAC;
        let snat = spec.is_snat();
        if !self.is_lan(spec.inside.addr) || (snat && !self.nat_ports.contains(spec.outside.port)) {
            return Err(Drop::RangeChanged);
        }
        let forward = match spec.kind {
            FlowKind::Snat => None,
            FlowKind::Dnat => Some((spec.outside.port, spec.inside)),
            FlowKind::Hairpin { port } => Some((port, spec.remote)),
        };
        if let Some((port, target)) = forward {
            let live = self.live.load();
            if live.forwards.get(&(spec.protocol, port, uplink)) != Some(&target) {
                return Err(Drop::ForwardGone);
            }
        }
        let nat = &self.uplinks[usize::from(uplink)].nat[nat_index(spec.protocol)];
        if snat && !lock(nat).acquire_port(spec.inside, spec.outside.port) {
            return Err(Drop::Refused);
        }
        if self.take_allowance(&spec).is_err() {
            self.release_mapping(&spec);
            return Err(Drop::Refused);
        }
        let restored = SavedFlow { spec, ..*saved };
        if self.table.restore(&restored, now).is_err() {
            self.release_mapping(&spec);
            self.give_back_allowance(&spec);
            return Err(Drop::Refused);
        }
        self.uplinks[usize::from(uplink)]
            .flows
            .fetch_add(1, Ordering::Relaxed);
        self.resolve_restored(spec.inside.addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The in-kernel fast path for established flows (`[dataplane] offload`):
//! the TC program `xwan_offload` (src/io/afxdp/offload.bpf.h, in the XDP
//! object so both share its maps) attached at TCX ingress of the LAN and
//! every WAN interface, and the bookkeeping that keeps its map equal to
//! what the router core decides ([`Router::offloadable`]).
//!
//! [`Offload::sync`] runs every second before the flow sweeper, and before
//! a failover, a status or a flow listing (and [`Offload::refresh`], the
//! same without reading the counters back, every 200 ms while the table is
//! small: `io/runtime/offload_glue.rs`): it reads the per-CPU counters of
//! every installed entry back into the flow table (packets, bytes, last
//! seen, the sequence a failover RST needs), removes the entries of flows
//! the core no longer offers (closing, gone, near their idle timeout, a
//! changed MAC, MTU or address: those are re-added with their new values),
//! reading their counters a last time, and installs the new ones. So an
//! entry leaves the map before its flow is freed, and a busy flow's last
//! seen is fresh when the sweeper looks. When the map is full, flows stay
//! with the workers (`refused_full`).
//!
//! IPv4 and IPv6 flows have maps of their own (`offload`, `offload6`, each
//! as big), each kept equal to the core's set of its family the same way
//! ([`Router::offloadable`], [`Router::offloadable6`]).

mod map;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use tracing::{info, warn};

use crate::config::UplinkId;
use crate::flow::{FlowKey, Side};
use crate::io::{sync, sys, system, Interface};
use crate::packet::{Addr4, Addr6};
use crate::router::{OffloadCredit, Port, Router};
use map::{Layout, Maps, SharedCounts, Totals};

pub use map::MAX_ENTRIES;

/// The programs and maps the XDP object holds for the fast path.
pub struct OffloadParts {
    /// `xwan_offload`, for TCX ingress.
    pub program: OwnedFd,
    /// `xwan_offload_tap`, the AF_PACKET sockets' filter (`--io packet`),
    /// when it was loaded.
    pub tap: Option<OwnedFd>,
    pub entries: MapHandle,
    pub stats: MapHandle,
    /// IPv6's (`offload6`, `offload6_stats`).
    pub entries6: MapHandle,
    pub stats6: MapHandle,
    /// Marked frames TC dropped (`offload_lost`).
    pub lost: MapHandle,
    /// Packets the XDP program forwarded itself (`offload_by_xdp`).
    pub by_xdp: MapHandle,
    /// The interfaces the XDP program may redirect to (`xdp_egress`).
    pub xdp_egress: MapHandle,
}

/// The fast path's figures, for `xwan status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Entries in the maps (two per flow), both families.
    pub entries: u64,
    /// Of those, IPv6's.
    pub entries6: u64,
    /// Flows the full map refused (they stay with the workers), each counted
    /// once while it waits.
    pub refused_full: u64,
    /// Entries that could not be written or removed for another reason.
    pub map_errors: u64,
    /// Frames the XDP program passed for the fast path whose entry was gone
    /// when TC looked (removed in between): dropped, never forwarded un-NATed.
    pub lost: u64,
    /// Packets and bytes the fast path forwarded (of entries installed now
    /// and removed since the start).
    pub packets: u64,
    pub bytes: u64,
    /// Of those packets, the ones the XDP program forwarded itself.
    pub by_xdp: u64,
}

/// One installed entry: what the core knows it by and what was last read.
struct Installed<A: Layout> {
    side: Side,
    key: FlowKey<A>,
    value: A::Value,
    seen: Totals,
}

/// One family's map as xwan installed it, and its figures.
struct State<A: Layout> {
    maps: Maps<A>,
    installed: HashMap<A::Key, Installed<A>>,
    /// The flows the full map refused at the last pass (by their first
    /// entry's key), so each is counted once while it waits.
    refused: HashSet<A::Key>,
    stats: OffloadStats,
}

/// A family the fast path carries, and where its state is.
trait Mapped: Layout {
    fn state(offload: &Offload) -> &Mutex<State<Self>>;
}

impl Mapped for Addr4 {
    fn state(offload: &Offload) -> &Mutex<State<Addr4>> {
        &offload.v4
    }
}

impl Mapped for Addr6 {
    fn state(offload: &Offload) -> &Mutex<State<Addr6>> {
        &offload.v6
    }
}

/// The fast path, attached; dropping it detaches the program (its links close).
pub struct Offload {
    v4: Mutex<State<Addr4>>,
    v6: Mutex<State<Addr6>>,
    shared: SharedCounts,
    /// The LAN's ifindex, then each uplink's.
    lan: u32,
    wans: Vec<u32>,
    /// Per interface: the hook that forwards the fast path's frames leaving
    /// through it.
    hooks: Mutex<Vec<EgressHook>>,
    /// `xdp_egress`, when the XDP program runs (`--io xdp`): the interfaces
    /// it may redirect to.
    xdp_egress: Option<MapHandle>,
    /// The program's attachments, one per interface: it stays attached
    /// while they are held.
    links: Mutex<Vec<TcLink>>,
}

/// How the TC program attaches at ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcAttach {
    /// A TCX BPF link (Linux 6.6+): gone when its descriptor closes, a
    /// crash included.
    Tcx,
    /// A direct-action cls_bpf filter at the clsact qdisc, over netlink
    /// (kernels without TCX): removed on drop; one a crash leaves behind is
    /// replaced by the next start (same handle and priority).
    Clsact,
}

/// The program attached at one interface's ingress; dropping it detaches.
enum TcLink {
    Tcx { _link: OwnedFd },
    Clsact { name: String, ifindex: u32 },
}

impl Drop for TcLink {
    fn drop(&mut self) {
        if let TcLink::Clsact { name, ifindex } = self {
            if let Err(e) = sys::bpf::detach_clsact_ingress(*ifindex) {
                // A deleted interface took its filter with it.
                if e.raw_os_error() != Some(libc::ENODEV) {
                    warn!(interface = %name, error = %e, "offload: cannot remove the clsact filter");
                }
            }
        }
    }
}

/// An interface the fast path forwards to, and how.
struct EgressHook {
    name: String,
    ifindex: u32,
    hook: Hook,
    /// Its XDP features or the qdiscs could not be read at the last look
    /// (warned once).
    query_failed: bool,
}

/// Where the fast path forwards the frames that leave through an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// The XDP program rewrites and redirects them (`--io xdp`, the
    /// interface's driver accepts XDP frames and it has no qdisc, and the
    /// frame's checksum is complete; the others take TC).
    Xdp,
    /// TC ingress of the interface they arrive on.
    Tc,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
        }
    }
}

/// Why the fast path could not start (xwan then runs without it).
#[derive(Debug, thiserror::Error)]
#[error("cannot attach the offload program to {interface}: {source}")]
pub struct OffloadError {
    interface: String,
    source: std::io::Error,
}

/// Removes the fast path's clsact filters a crashed xwan left on
/// `interfaces` (kernels without TCX, or `tcx` forced absent), whatever
/// this start does: left there, such a filter would go on forwarding by
/// its own stale map beside this run. Run before the data path starts.
pub fn remove_stale_filters(interfaces: &[Interface]) {
    for interface in interfaces {
        let stale = match sys::bpf::clsact_ingress_program(interface.ifindex) {
            Ok(Some(id)) => sys::bpf::program_name(id).is_some_and(|n| n == OFFLOAD_PROGRAM),
            Ok(None) => false,
            Err(e) => {
                warn!(interface = %interface.name, error = %e, "offload: cannot look for a stale clsact filter");
                false
            }
        };
        if stale {
            match sys::bpf::detach_clsact_ingress(interface.ifindex) {
                Ok(()) => {
                    warn!(interface = %interface.name, "offload: removed the clsact filter a stopped xwan left behind")
                }
                Err(e) => {
                    warn!(interface = %interface.name, error = %e, "offload: cannot remove a stale clsact filter")
                }
            }
        }
    }
}

/// The TC program's name, as the kernel reports it.
const OFFLOAD_PROGRAM: &str = "xwan_offload";

impl Offload {
    /// Attaches the program at the ingress of every interface, as `attach`
    /// says; with `xdp` (`--io xdp`, `offload = "auto"`) the XDP program
    /// also forwards to the interfaces whose driver accepts XDP frames
    /// ([`Offload::detect_hooks`]).
    pub fn start(
        parts: OffloadParts,
        interfaces: &[Interface],
        attach: TcAttach,
        xdp: bool,
    ) -> Result<Offload, OffloadError> {
        let mut links = Vec::with_capacity(interfaces.len());
        let mut hooks = Vec::with_capacity(interfaces.len());
        for interface in interfaces {
            let program = parts.program.as_raw_fd();
            let link = match attach {
                TcAttach::Tcx => sys::bpf::attach_tcx_ingress(program, interface.ifindex)
                    .map(|link| TcLink::Tcx { _link: link }),
                TcAttach::Clsact => sys::bpf::attach_clsact_ingress(program, interface.ifindex)
                    .map(|()| TcLink::Clsact {
                        name: interface.name.clone(),
                        ifindex: interface.ifindex,
                    }),
            }
            .map_err(|source| OffloadError {
                interface: interface.name.clone(),
                source,
            })?;
            links.push(link);
            hooks.push(EgressHook {
                name: interface.name.clone(),
                ifindex: interface.ifindex,
                hook: Hook::Tc,
                query_failed: false,
            });
        }
        let ifindex_of = |port: Port| {
            interfaces
                .iter()
                .find(|i| i.port == port)
                .map(|i| i.ifindex)
        };
        let lan = ifindex_of(Port::Lan).unwrap_or(0);
        let wans = (0..)
            .map_while(|uplink| ifindex_of(Port::Wan(uplink)))
            .collect();
        let offload = Offload {
            v4: Mutex::new(State::new(Maps::new(parts.entries, parts.stats))),
            v6: Mutex::new(State::new(Maps::new(parts.entries6, parts.stats6))),
            shared: SharedCounts {
                lost: parts.lost,
                by_xdp: parts.by_xdp,
            },
            lan,
            wans,
            hooks: Mutex::new(hooks),
            xdp_egress: xdp.then_some(parts.xdp_egress),
            links: Mutex::new(links),
        };
        offload.detect_hooks();
        info!(
            hooks = %offload.hooks_line(),
            "offload: established flows forwarded in the kernel"
        );
        Ok(offload)
    }

    /// Looks again which interfaces the XDP program may forward to and tells
    /// it; nothing without it. Runs at start and on the offload thread's
    /// 200 ms tick (not on the failover, status or flow-listing paths). An
    /// interface qualifies when its driver accepts XDP frames (a veth does
    /// while its peer runs an XDP program or has GRO on) and it has no
    /// queueing discipline (`noqueue`, a veth's default): an XDP redirect
    /// goes straight to the driver, past any qdisc, so a WAN shaped by CAKE,
    /// HTB or fq_codel (a NIC's `mq` default included) keeps TC, whose
    /// redirect goes through it.
    pub fn detect_hooks(&self) {
        let Some(xdp_egress) = &self.xdp_egress else {
            return;
        };
        let mut hooks = sync::lock(&self.hooks);
        let qdiscs = system::root_qdiscs();
        if let Err(e) = &qdiscs {
            if hooks.iter().all(|egress| !egress.query_failed) {
                warn!(error = %e, "offload: cannot list the queueing disciplines; TC until it answers");
            }
        }
        for egress in hooks.iter_mut() {
            let features = sys::bpf::accepts_xdp_frames(egress.ifindex);
            if let (Err(e), false) = (&features, egress.query_failed) {
                warn!(interface = %egress.name, error = %e, "offload: cannot query XDP features; TC until it answers");
            }
            egress.query_failed = features.is_err() || qdiscs.is_err();
            let accepts = features.unwrap_or(false);
            let unqueued = qdiscs
                .as_ref()
                .is_ok_and(|q| q.get(&egress.ifindex).map(String::as_str) == Some("noqueue"));
            let now = if accepts && unqueued {
                Hook::Xdp
            } else {
                Hook::Tc
            };
            if now == egress.hook {
                continue;
            }
            let key = egress.ifindex.to_ne_bytes();
            let written = match now {
                Hook::Xdp => xdp_egress.update(&key, &[1], MapFlags::ANY),
                Hook::Tc => xdp_egress.delete(&key),
            };
            match written {
                Ok(()) => {
                    info!(interface = %egress.name, hook = now.name(), "offload: frames leaving here are forwarded by {}", now.name());
                    egress.hook = now;
                }
                Err(e) => {
                    // xdp_egress serves both families: counted with IPv4's.
                    self.lock::<Addr4>().stats.map_errors += 1;
                    warn!(interface = %egress.name, error = %e, "offload: cannot update xdp_egress");
                }
            }
        }
    }

    fn hooks_line(&self) -> String {
        self.hooks()
            .iter()
            .map(|(name, hook)| format!("{name} {}", hook.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn lock<A: Mapped>(&self) -> MutexGuard<'_, State<A>> {
        sync::lock(A::state(self))
    }

    fn ifindex(&self, port: Port) -> Option<u32> {
        match port {
            Port::Lan => Some(self.lan),
            Port::Wan(uplink) => self.wans.get(usize::from(uplink)).copied(),
        }
    }

    /// Per interface, the hook that forwards the fast path's frames leaving
    /// through it.
    pub fn hooks(&self) -> Vec<(String, Hook)> {
        sync::lock(&self.hooks)
            .iter()
            .map(|e| (e.name.clone(), e.hook))
            .collect()
    }

    /// The LAN-side keys of the IPv4 flows whose entries are in the map.
    pub fn carried(&self) -> HashSet<FlowKey> {
        self.carried_of()
    }

    /// [`Offload::carried`] for IPv6.
    pub fn carried6(&self) -> HashSet<FlowKey<Addr6>> {
        self.carried_of()
    }

    fn carried_of<A: Mapped>(&self) -> HashSet<FlowKey<A>> {
        self.lock::<A>()
            .installed
            .values()
            .filter(|i| i.side == Side::Lan)
            .map(|i| i.key)
            .collect()
    }

    /// Both families' figures together, and IPv6's entries apart.
    pub fn stats(&self) -> OffloadStats {
        let (v4, v6) = (self.lock::<Addr4>(), self.lock::<Addr6>());
        let entries6 = v6.installed.len() as u64;
        OffloadStats {
            entries: v4.installed.len() as u64 + entries6,
            entries6,
            refused_full: v4.stats.refused_full + v6.stats.refused_full,
            map_errors: v4.stats.map_errors + v6.stats.map_errors,
            lost: self.shared.lost(),
            packets: v4.stats.packets + v6.stats.packets,
            bytes: v4.stats.bytes + v6.stats.bytes,
            by_xdp: self.shared.by_xdp(),
        }
    }

    /// Detaches the program, then empties the maps into the flow tables:
    /// the orderly stop, before the state is saved.
    pub fn stop(&self, router: &Router, now: Duration) {
        sync::lock(&self.links).clear();
        self.empty::<Addr4>(router, now);
        self.empty::<Addr6>(router, now);
    }

    fn empty<A: Mapped>(&self, router: &Router, now: Duration) {
        let mut state = self.lock::<A>();
        let all: Vec<A::Key> = state.installed.keys().copied().collect();
        state.uninstall(all, router, now);
    }

    /// Brings the core and the maps in line at `now` (the router's clock):
    /// every entry's counters read back, then each map made equal to the
    /// core's set of its family.
    pub fn sync(&self, router: &Router, now: Duration) {
        self.bring_both_in_line(router, now, true, None);
    }

    /// [`Offload::sync`] with none of `uplink`'s flows (either family) in
    /// the maps afterwards (their final counters read): before one of its
    /// addresses or prefixes changes.
    pub fn sync_without(&self, router: &Router, now: Duration, uplink: UplinkId) {
        self.bring_both_in_line(router, now, true, Some(uplink));
    }

    /// [`Offload::sync`] without reading back the counters of the entries
    /// that stay (one system call each): newly established flows in, gone
    /// ones out.
    pub fn refresh(&self, router: &Router, now: Duration) {
        self.bring_both_in_line(router, now, false, None);
    }

    fn bring_both_in_line(
        &self,
        router: &Router,
        now: Duration,
        read_counters: bool,
        leaving: Option<UplinkId>,
    ) {
        self.bring_in_line::<Addr4>(router, now, read_counters, leaving);
        self.bring_in_line::<Addr6>(router, now, read_counters, leaving);
    }

    fn bring_in_line<A: Mapped>(
        &self,
        router: &Router,
        now: Duration,
        read_counters: bool,
        leaving: Option<UplinkId>,
    ) {
        let mut state = self.lock::<A>();
        let state = &mut *state;
        if read_counters {
            // In batches; one entry at a time if the kernel refuses that.
            let all = state.maps.all_totals();
            for (key, installed) in state.installed.iter_mut() {
                let totals = match &all {
                    Some(all) => all.get(key).copied().unwrap_or_default(),
                    None => state.maps.totals(key),
                };
                credit(router, installed, totals, now, &mut state.stats);
            }
        }
        let mut flows: Vec<Vec<(A::Key, Installed<A>)>> = Vec::new();
        for flow in A::offloadable(router, now) {
            if leaving == Some(flow.spec.uplink) {
                continue;
            }
            let mut entries = Vec::with_capacity(2);
            for (side, entry) in [Side::Lan, Side::Wan].into_iter().zip(flow.entries) {
                let (Some(ingress), Some(egress)) =
                    (self.ifindex(entry.ingress), self.ifindex(entry.egress))
                else {
                    continue;
                };
                let key = A::key(ingress, &entry.key);
                let value = A::value(egress, &entry, side == Side::Wan);
                entries.push((
                    key,
                    Installed {
                        side,
                        key: entry.key,
                        value,
                        seen: Totals::default(),
                    },
                ));
            }
            flows.push(entries);
        }
        let wanted: HashMap<A::Key, A::Value> = flows
            .iter()
            .flatten()
            .map(|(key, want)| (*key, want.value))
            .collect();
        let gone: Vec<A::Key> = state
            .installed
            .keys()
            .filter(|key| !wanted.contains_key(key))
            .copied()
            .collect();
        let freed = !gone.is_empty();
        state.uninstall(gone, router, now);
        // A changed entry (a MAC, an MTU) is rewritten in place: its key
        // never misses, so no packet the XDP program passed for the fast
        // path finds it gone at TC.
        for (key, value) in &wanted {
            let Some(installed) = state.installed.get_mut(key) else {
                continue;
            };
            if installed.value == *value {
                continue;
            }
            match state.maps.replace(key, value) {
                Ok(()) => installed.value = *value,
                Err(e) => {
                    state.stats.map_errors += 1;
                    warn!(error = %e, "offload: cannot update an entry");
                }
            }
        }
        // Once the map is full, the rest of this pass's new flows are
        // refused without asking the kernel for each (each counted once).
        let mut full = !freed && state.installed.len() >= MAX_ENTRIES as usize;
        let mut refused = HashSet::new();
        for entries in flows {
            let Some(flow) = entries.first().map(|(key, _)| *key) else {
                continue;
            };
            let keys: Vec<A::Key> = entries.iter().map(|(key, _)| *key).collect();
            let mut marked = None;
            for (key, want) in entries {
                if state.installed.contains_key(&key) {
                    continue;
                }
                if full {
                    refused.insert(flow);
                    continue;
                }
                // Marked first: a flow evicted since the scan is not found,
                // and one found is then never evicted with its entry in.
                if !router.mark_offloaded(want.side, &want.key, true) {
                    break;
                }
                marked = Some((want.side, want.key));
                match state.maps.insert(&key, &want.value) {
                    Ok(()) => {
                        state.installed.insert(key, want);
                    }
                    Err(e) if map::is_full(&e) => {
                        full = true;
                        refused.insert(flow);
                    }
                    Err(e) => {
                        state.stats.map_errors += 1;
                        warn!(error = %e, "offload: cannot install an entry");
                    }
                }
            }
            if let Some((side, key)) = marked {
                if !keys.iter().any(|key| state.installed.contains_key(key)) {
                    router.mark_offloaded(side, &key, false);
                }
            }
        }
        state.stats.refused_full += refused.difference(&state.refused).count() as u64;
        state.refused = refused;
    }
}

impl<A: Layout> State<A> {
    fn new(maps: Maps<A>) -> State<A> {
        State {
            maps,
            installed: HashMap::new(),
            refused: HashSet::new(),
            stats: OffloadStats::default(),
        }
    }

    /// Removes entries (both of each flow) from the map and credits their
    /// last counters, read after the delete; then their flows are unmarked
    /// (early drop may take them).
    fn uninstall(&mut self, keys: Vec<A::Key>, router: &Router, now: Duration) {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(mut installed) = self.installed.remove(&key) else {
                continue;
            };
            if let Err(e) = self.maps.remove(&key) {
                self.stats.map_errors += 1;
                warn!(error = %e, "offload: cannot remove an entry");
            }
            let totals = self.maps.take_totals(&key);
            credit(router, &mut installed, totals, now, &mut self.stats);
            out.push(installed);
        }
        for installed in out {
            router.mark_offloaded(installed.side, &installed.key, false);
        }
    }
}

/// Credits what the fast path did for `installed` since the last read.
fn credit<A: Layout>(
    router: &Router,
    installed: &mut Installed<A>,
    totals: Totals,
    now: Duration,
    stats: &mut OffloadStats,
) {
    let packets = totals.packets.saturating_sub(installed.seen.packets);
    let bytes = totals.bytes.saturating_sub(installed.seen.bytes);
    let next_seq = (totals.next_seq != 0 && totals.next_seq != installed.seen.next_seq)
        .then_some(totals.next_seq);
    if packets == 0 && next_seq.is_none() {
        return;
    }
    installed.seen = totals;
    stats.packets += packets;
    stats.bytes += bytes;
    router.credit_offloaded(
        installed.side,
        &installed.key,
        OffloadCredit {
            packets,
            bytes,
            last_seen: (packets > 0).then_some(now),
            next_seq_to_lan: next_seq,
        },
    );
}

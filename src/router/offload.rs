//! The in-kernel fast path as the core decides it: which flows may be
//! forwarded by the eBPF program at the interfaces (`io/offload`), and what
//! that program does with each of their packets, computed from the flow and
//! the router's current state (MACs, MTUs, addresses). The core stays the
//! authority: the I/O layer asks it for the whole set ([`Router::offloadable`])
//! and keeps the kernel's map equal to it, and gives back what the fast path
//! saw ([`Router::credit_offloaded`]) so counters, last seen and the sequence
//! a failover RST needs stay exact.
//!
//! A flow is offered once it is established (TCP: both SYNs seen, no FIN or
//! RST yet; UDP and ICMP echo: packets both ways), while its uplink is up
//! (a port-forwarded flow: while its forward is configured), its next hops'
//! MACs are known and it is not close to its idle timeout (so it leaves the
//! map before the sweeper frees it). An uplink marked down or a forward
//! reloaded away thus takes its flows off the fast path at the next sync,
//! which reads their final counters, before the failover or the reload
//! builds their RSTs. Hairpinned flows stay with the workers.
//! Segments with SYN, FIN or RST never take the fast path: the core sees
//! every TCP state change.
//!
//! IPv6 flows (`router/ipv6/offload.rs`) are offered on the same terms:
//! their uplink up for IPv6, a port-forwarded one (NAT66) while its forward
//! is configured; their entries' checksum deltas are the ones the core's
//! own IPv6 rewrite applies ([`Deltas6`](crate::packet::Deltas6)).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{seconds, Egress, Router};
use crate::config::Timeouts;
use crate::flow::{idle_timeout, tcp_state, Flow, FlowKey, FlowKind, FlowSpec, FlowTable, Side};
use crate::packet::checksum::{delta16, delta32, fold};
use crate::packet::{Addr4, Addr6, Endpoint, Family, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::verdict::Port;

/// Seconds before its idle timeout at which a flow leaves the fast path, so
/// the entry is gone before the sweeper (which runs every second) frees it.
pub const EXPIRY_MARGIN_S: u32 = 3;

/// One direction of an offloaded flow: what the fast path matches and what
/// it makes of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadEntry<A = Addr4> {
    /// Where the packets come in.
    pub ingress: Port,
    /// Their tuple as they arrive.
    pub key: FlowKey<A>,
    /// Where they go out.
    pub egress: Port,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Their new source and destination.
    pub src: Endpoint<A>,
    pub dst: Endpoint<A>,
    /// What the address change and the TTL's decrement add to the IP
    /// header checksum (a folded one's-complement sum, RFC 1624:
    /// HC' = ~(~HC + delta)), as the core's established path adds it.
    /// IPv6 has no header checksum: 0.
    pub ip_delta: u16,
    /// What the address change adds to the TCP/UDP checksum (its
    /// pseudo-header part: also applied to a partial checksum; 0 for ICMP,
    /// whose checksum covers no pseudo-header, unlike ICMPv6's).
    pub pseudo_delta: u16,
    /// What the port change adds to the TCP/UDP checksum (an ICMP echo's:
    /// the identifier's, which stands for a port in the key).
    pub port_delta: u16,
    /// The egress MTU: longer packets (or GSO segments) go to the workers.
    pub mtu: u16,
}

/// A flow the fast path may carry, both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadFlow<A = Addr4> {
    pub spec: FlowSpec<A>,
    /// From the inside host (its LAN key), then from the remote end (its
    /// WAN key).
    pub entries: [OffloadEntry<A>; 2],
}

/// A family the fast path carries: where the core keeps its flows and
/// which of them it offers ([`Router::offloadable`],
/// [`Router::offloadable6`]).
pub trait OffloadFamily: Family {
    fn table(router: &Router) -> &FlowTable<Self>;
    fn offloadable(router: &Router, now: Duration) -> Vec<OffloadFlow<Self>>;
}

impl OffloadFamily for Addr4 {
    fn table(router: &Router) -> &FlowTable<Addr4> {
        &router.table
    }

    fn offloadable(router: &Router, now: Duration) -> Vec<OffloadFlow<Addr4>> {
        router.offloadable(now)
    }
}

impl OffloadFamily for Addr6 {
    fn table(router: &Router) -> &FlowTable<Addr6> {
        &router.v6.table
    }

    fn offloadable(router: &Router, now: Duration) -> Vec<OffloadFlow<Addr6>> {
        router.offloadable6(now)
    }
}

/// What the fast path saw of one direction of a flow since the last credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffloadCredit {
    pub packets: u64,
    pub bytes: u64,
    /// When it last saw a packet, on the router's clock (None: none since
    /// the last credit).
    pub last_seen: Option<Duration>,
    /// TCP from the remote end: the sequence the inside host expects next.
    pub next_seq_to_lan: Option<u32>,
}

impl OffloadEntry {
    /// The entry for `spec`'s packets arriving on `side` (with `ingress`
    /// their port), sent by `egress` with its MTU.
    fn new(spec: &FlowSpec, side: Side, ingress: Port, egress: Egress, mtu: u16) -> OffloadEntry {
        let key = spec.key(side);
        let rewrite = egress.rewrite;
        let addresses =
            delta32(key.src.addr, rewrite.src.addr) + delta32(key.dst.addr, rewrite.dst.addr);
        OffloadEntry {
            ingress,
            key,
            egress: egress.port,
            src_mac: rewrite.src_mac,
            dst_mac: rewrite.dst_mac,
            src: rewrite.src,
            dst: rewrite.dst,
            // The one computation the core's established path reads too.
            ip_delta: spec.checksum_deltas(side).ip,
            // ICMP's checksum covers no pseudo-header.
            pseudo_delta: if key.protocol == PROTO_ICMP {
                0
            } else {
                fold(addresses)
            },
            port_delta: fold(
                delta16(key.src.port, rewrite.src.port) + delta16(key.dst.port, rewrite.dst.port),
            ),
            mtu,
        }
    }
}

/// Whether the flow `flow` may take the fast path at `now` (seconds) by
/// its state: established (TCP: both SYNs seen, no FIN or RST yet; UDP and
/// ICMP echo: packets both ways) and not close to its idle timeout.
pub(super) fn established<A: Family>(flow: &Flow<A>, now: u32, timeouts: &Timeouts) -> bool {
    let tcp = flow.tcp.load(Ordering::Relaxed);
    let packets = [0, 1].map(|i| flow.packets[i].load(Ordering::Relaxed));
    let idle = now.saturating_sub(flow.last_seen.load(Ordering::Relaxed));
    let state = match flow.spec.protocol {
        PROTO_TCP => tcp == tcp_state::SYN_FROM_LAN | tcp_state::SYN_FROM_WAN,
        PROTO_UDP => packets[0] > 0 && packets[1] > 0,
        p if p == A::ICMP => packets[0] > 0 && packets[1] > 0,
        _ => false,
    };
    state && idle + EXPIRY_MARGIN_S < idle_timeout(flow.spec.protocol, tcp, timeouts)
}

impl Router {
    /// Every flow the fast path may carry at `now`, with both directions'
    /// entries computed from the router's current state.
    pub fn offloadable(&self, now: Duration) -> Vec<OffloadFlow> {
        let now = seconds(now);
        let timeouts = self.timeouts.get();
        let live = self.live.load();
        let balancer = live.policy.balancer();
        self.table
            .scan(|flow| {
                let spec = &flow.spec;
                let kept = match spec.kind {
                    FlowKind::Snat => true,
                    FlowKind::Dnat => {
                        live.forwards
                            .contains_key(&(spec.protocol, spec.outside.port, spec.uplink))
                    }
                    FlowKind::Hairpin { .. } => false,
                };
                let offered =
                    kept && balancer.is_up(spec.uplink) && established(flow, now, &timeouts);
                offered.then_some(flow.spec)
            })
            .iter()
            .filter_map(|spec| self.offload_flow(spec))
            .collect()
    }

    /// Both directions of an established flow; None while a next hop's MAC
    /// is unknown.
    fn offload_flow(&self, spec: &FlowSpec) -> Option<OffloadFlow> {
        let outbound = self.egress_to_remote(spec).ok()?;
        let inbound = self.egress_to_inside(spec, None).ok()?;
        let wan = Port::Wan(spec.uplink);
        Some(OffloadFlow {
            spec: *spec,
            entries: [
                OffloadEntry::new(
                    spec,
                    Side::Lan,
                    Port::Lan,
                    outbound,
                    self.mtu(outbound.port),
                ),
                OffloadEntry::new(spec, Side::Wan, wan, inbound, self.mtu(inbound.port)),
            ],
        })
    }

    /// Flows in the tables now, both families (two atomic loads: how much
    /// the scans for [`Router::offloadable`] and [`Router::offloadable6`]
    /// would read).
    pub fn flow_count(&self) -> u32 {
        self.table.len() + self.v6.table.len()
    }

    /// Records on the flow `key` (arriving on `side`) what the fast path saw
    /// of it; false when the flow is gone.
    pub fn credit_offloaded<A: OffloadFamily>(
        &self,
        side: Side,
        key: &FlowKey<A>,
        credit: OffloadCredit,
    ) -> bool {
        let uplink = A::table(self).with_flow(side, key, |flow| {
            credit_flow(flow, side, &credit);
            flow.spec.uplink
        });
        // The uplink's totals take it too (`xwan status`, the metrics).
        if let Some(u) = uplink.and_then(|id| self.uplinks.get(usize::from(id))) {
            let first = side as usize * 2;
            u.offloaded[first].fetch_add(credit.packets, Ordering::Relaxed);
            u.offloaded[first + 1].fetch_add(credit.bytes, Ordering::Relaxed);
        }
        uplink.is_some()
    }
}

impl Router {
    /// Marks the flow `key` (arriving on `side`) as having entries in the
    /// fast path's map, or no longer, so early drop passes it by while it
    /// has; false when the flow is gone (then none may go in). Under the
    /// flow's shard lock: a flow found here is not being evicted.
    pub fn mark_offloaded<A: OffloadFamily>(
        &self,
        side: Side,
        key: &FlowKey<A>,
        offloaded: bool,
    ) -> bool {
        A::table(self)
            .with_flow(side, key, |flow| {
                flow.offloaded.store(offloaded, Ordering::Relaxed);
            })
            .is_some()
    }
}

fn credit_flow<A: Family>(flow: &Flow<A>, side: Side, credit: &OffloadCredit) {
    let i = side as usize;
    flow.packets[i].fetch_add(credit.packets, Ordering::Relaxed);
    flow.bytes[i].fetch_add(credit.bytes, Ordering::Relaxed);
    if let Some(seen) = credit.last_seen {
        flow.last_seen.fetch_max(seconds(seen), Ordering::Relaxed);
    }
    if let Some(next) = credit.next_seq_to_lan {
        FlowTable::track_seq_to_lan(flow, next, 0);
    }
}

#[cfg(test)]
mod tests;

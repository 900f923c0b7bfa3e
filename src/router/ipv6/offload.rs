//! The in-kernel fast path for IPv6 flows (see `router/offload.rs`): the
//! same terms as IPv4's, the uplink up for IPv6, and entries whose rewrite
//! is the core's own IPv6 rewrite (`packet/rewrite6.rs`): the same MACs and
//! endpoints, and the checksum deltas it applies ([`Deltas6`]).

use std::time::Duration;

use super::super::offload::{established, OffloadEntry, OffloadFlow};
use super::super::{seconds, Router};
use crate::config::Nat6;
use crate::flow::{FlowKind, FlowSpec, Side};
use crate::packet::{Addr6, Deltas6, Rewrite6};
use crate::verdict::Port;

impl Router {
    /// Every IPv6 flow the fast path may carry at `now`, with both
    /// directions' entries ([`Router::offloadable`] for IPv6): established,
    /// not close to its idle timeout, its uplink up for IPv6, not
    /// hairpinned, and a port-forwarded flow (NAT66) while its forward is
    /// configured; one reached through a prefix mapping (or none) while its
    /// uplink keeps the mapping (a changed prefix fails it over).
    pub fn offloadable6(&self, now: Duration) -> Vec<OffloadFlow<Addr6>> {
        let now = seconds(now);
        let timeouts = self.timeouts.get();
        let live = self.live.load();
        let balancer = live.policy6.balancer();
        self.v6
            .table
            .scan(|flow| {
                let spec = &flow.spec;
                let nat = self.v6.uplinks.get(usize::from(spec.uplink))?.nat?;
                let kept = match (spec.kind, nat) {
                    (FlowKind::Snat, _) => true,
                    (FlowKind::Dnat, Nat6::Masquerade) => live.forwards6.contains_key(&(
                        spec.protocol,
                        spec.outside.port,
                        spec.uplink,
                    )),
                    (FlowKind::Dnat, Nat6::Prefix | Nat6::Npt | Nat6::Off) => true,
                    (FlowKind::Hairpin { .. }, _) => false,
                };
                let offered =
                    kept && balancer.is_up(spec.uplink) && established(flow, now, &timeouts);
                offered.then_some(flow.spec)
            })
            .iter()
            .filter_map(|spec| self.offload_flow6(spec))
            .collect()
    }

    /// Both directions of an established IPv6 flow; None while a next
    /// hop's MAC is unknown.
    fn offload_flow6(&self, spec: &FlowSpec<Addr6>) -> Option<OffloadFlow<Addr6>> {
        let wan = Port::Wan(spec.uplink);
        let outbound = self.egress_to_remote6(spec)?.rewrite;
        let inbound = self.egress_to_inside6(spec)?.rewrite;
        Some(OffloadFlow {
            spec: *spec,
            entries: [
                entry6(spec, Side::Lan, wan, outbound, self.mtu(wan)),
                entry6(spec, Side::Wan, Port::Lan, inbound, self.mtu(Port::Lan)),
            ],
        })
    }
}

/// The entry for `spec`'s packets arriving on `side`, sent out `egress`
/// (its MTU `mtu`) as `rewrite` makes them.
fn entry6(
    spec: &FlowSpec<Addr6>,
    side: Side,
    egress: Port,
    rewrite: Rewrite6,
    mtu: u16,
) -> OffloadEntry<Addr6> {
    let key = spec.key(side);
    let deltas = Deltas6::new((key.src, key.dst), (rewrite.src, rewrite.dst));
    OffloadEntry {
        ingress: match side {
            Side::Lan => Port::Lan,
            Side::Wan => Port::Wan(spec.uplink),
        },
        key,
        egress,
        src_mac: rewrite.src_mac,
        dst_mac: rewrite.dst_mac,
        src: rewrite.src,
        dst: rewrite.dst,
        ip_delta: 0,
        pseudo_delta: deltas.pseudo,
        port_delta: deltas.ports,
        mtu,
    }
}

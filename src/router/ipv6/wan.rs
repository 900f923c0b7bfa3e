//! IPv6 from a WAN: the replies of known flows go back to their LAN host;
//! with a prefix mapping (or no translation), a new connection to a LAN
//! host's outside address opens a flow pinned to the uplink it came in by,
//! so its replies leave the same way; the rest addressed to the router is
//! the kernel's.

use super::super::flows::opens_connection;
use super::super::{Egress, FrameContext, Router};
use super::key_of;
use crate::config::{Nat6, UplinkId};
use crate::flow::{FlowKind, FlowSpec, Side};
use crate::packet::{apply6, Addr6, Endpoint6, Error6, Frame6, Rewrite6, Transport};
use crate::verdict::{DropReason, KernelReason, Port, Verdict};

impl Router {
    pub(super) fn wan_ingress6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        uplink: UplinkId,
        ctx: &FrameContext,
    ) -> Verdict {
        let (nat, inbound) = match self.wan_admission6(frame, uplink, ctx) {
            Ok(admitted) => admitted,
            Err(verdict) => return verdict,
        };
        match frame.transport {
            Transport::Fragment => return self.later_fragment6(buf, frame, ctx),
            Transport::IcmpError { .. } if frame.fragment.is_some() => {
                return Verdict::Drop(DropReason::Fragment)
            }
            Transport::IcmpError { .. } => return self.icmp_error_from_wan6(buf, frame, ctx),
            Transport::IcmpOther { .. } => return Verdict::Kernel(KernelReason::IcmpOther),
            // An echo request to the router itself.
            Transport::IcmpEcho { request: true, .. } if inbound.is_none() => {
                return Verdict::Kernel(KernelReason::RouterTraffic)
            }
            Transport::Tcp { .. }
            | Transport::Udp { .. }
            | Transport::Other { .. }
            | Transport::IcmpEcho { .. } => {}
        }
        if frame.hop_limit <= 1 {
            return self.answer6(buf, frame, Error6::TimeExceeded, ctx);
        }
        let key = key_of(frame);
        if let Some(spec) = self.record_or_expire(Side::Wan, &key, frame, ctx) {
            return self.forward_to_inside6(buf, frame, &spec, ctx);
        }
        let Some(inside) = inbound else {
            return self.to_nat66_address(buf, frame, nat, uplink, ctx);
        };
        match frame.transport {
            // A reply opens nothing.
            Transport::IcmpEcho { request: false, .. } => {
                return Verdict::Drop(DropReason::NoMapping)
            }
            _ if !opens_connection(frame) => return Verdict::Drop(DropReason::TcpNoFlow),
            _ => {}
        }
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside: Endpoint6::new(inside, key.dst.port),
            outside: key.dst,
            remote: key.src,
            uplink,
            kind: FlowKind::Dnat,
            lan_mac: self.known_mac6(inside),
        };
        match self.insert6(spec, Side::Wan, frame, ctx.now) {
            Ok(spec) => self.forward_to_inside6(buf, frame, &spec, ctx),
            Err(verdict) => verdict,
        }
    }

    /// The first look at a frame from `uplink`, before its kind: the
    /// uplink's `nat6` and the LAN host the destination stands for (None:
    /// the router's own address), or the verdict for a frame of an uplink
    /// without IPv6, from a LAN source, or to neither.
    pub(super) fn wan_admission6(
        &self,
        frame: &Frame6,
        uplink: UplinkId,
        ctx: &FrameContext,
    ) -> Result<(Nat6, Option<Addr6>), Verdict> {
        let Some(nat) = self.v6.uplinks.get(usize::from(uplink)).and_then(|u| u.nat) else {
            return Err(Verdict::Kernel(KernelReason::RouterTraffic));
        };
        if self.v6.is_lan(frame.src) {
            return Err(Verdict::Drop(DropReason::SpoofedSource));
        }
        match self.wan_destination6(nat, uplink, frame.dst, ctx) {
            Some(inbound) => Ok((nat, inbound)),
            None => Err(Verdict::Kernel(KernelReason::RouterTraffic)),
        }
    }

    /// A packet of no flow to the router's own address on `uplink`: a port
    /// forward on its NAT66 address opens a flow to the forward's target,
    /// pinned to this uplink; anything else to a NAT66 port is dropped, the
    /// rest is the router's own traffic.
    fn to_nat66_address(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        nat: Nat6,
        uplink: UplinkId,
        ctx: &FrameContext,
    ) -> Verdict {
        let key = key_of(frame);
        let own = self.v6.uplinks[usize::from(uplink)]
            .addressing
            .load()
            .address;
        let forward = (nat == Nat6::Masquerade && own == Some(frame.dst))
            .then(|| {
                let live = self.live(ctx.live);
                live.forwards6
                    .get(&(frame.protocol, key.dst.port, uplink))
                    .copied()
            })
            .flatten();
        let Some(target) = forward else {
            return if nat == Nat6::Masquerade && self.nat_ports.contains(key.dst.port) {
                Verdict::Drop(DropReason::NoMapping)
            } else {
                Verdict::Kernel(KernelReason::RouterTraffic)
            };
        };
        if !opens_connection(frame) {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside: target,
            outside: key.dst,
            remote: key.src,
            uplink,
            kind: FlowKind::Dnat,
            lan_mac: self.known_mac6(target.addr),
        };
        match self.insert6(spec, Side::Wan, frame, ctx.now) {
            Ok(spec) => self.forward_to_inside6(buf, frame, &spec, ctx),
            Err(verdict) => verdict,
        }
    }

    /// Sends a flow's packet from the Internet on to its inside host: the
    /// LAN MTU checked, the host's MAC (the flow's, else the neighbour
    /// table's), the rewrite.
    pub(super) fn forward_to_inside6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        spec: &FlowSpec<Addr6>,
        ctx: &FrameContext,
    ) -> Verdict {
        if let Some(verdict) = self.too_big6(buf, frame, self.lan_mtu.get(), ctx) {
            return verdict;
        }
        let Some(egress) = self.egress_to_inside6(spec) else {
            return self.wait_for_inside6(buf, frame, spec, ctx);
        };
        self.clamp_mss6(buf, frame, egress.port, ctx);
        let len = apply6(buf, frame, &egress.rewrite);
        let verdict = Verdict::Forward {
            port: egress.port,
            len,
        };
        self.follow_first6(buf, frame, verdict, ctx.now);
        verdict
    }

    /// A flow's packet from the Internet to an inside host whose MAC is
    /// not known yet: asked for, and the packet translated and kept until
    /// it comes (`waiting.rs`, as IPv4's), unless it is a fragment (its
    /// later ones could not follow) or the queue is full.
    fn wait_for_inside6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        spec: &FlowSpec<Addr6>,
        ctx: &FrameContext,
    ) -> Verdict {
        let unresolved = self.unresolved6(spec.inside.addr);
        if frame.fragment.is_some() {
            return unresolved;
        }
        let rewrite = Rewrite6 {
            src_mac: self.lan_mac,
            dst_mac: super::super::neighbours::NO_MAC,
            src: spec.remote,
            dst: spec.inside,
        };
        self.clamp_mss6(buf, frame, Port::Lan, ctx);
        let len = apply6(buf, frame, &rewrite);
        let addr = std::net::IpAddr::from(spec.inside.addr);
        if !self.waiting.push(addr, &buf[..len], ctx.meta.now) {
            return unresolved;
        }
        // The MAC may have come meanwhile, its frames released before this
        // one waited: send them from here.
        for waited in self.release_waiting(addr, ctx.meta.now) {
            ctx.send_also(Port::Lan, &waited);
        }
        Verdict::Taken
    }

    /// Where a flow's packet from the Internet goes: to its inside host, as
    /// from its remote end; None while the host's MAC is unknown.
    pub(super) fn egress_to_inside6(&self, spec: &FlowSpec<Addr6>) -> Option<Egress<Rewrite6>> {
        Some(Egress {
            port: Port::Lan,
            rewrite: Rewrite6 {
                src_mac: self.lan_mac,
                dst_mac: self.inside_mac6(spec)?,
                src: spec.remote,
                dst: spec.inside,
            },
        })
    }

    /// A LAN host's MAC as known now, or none yet (resolved when a frame
    /// goes to it).
    fn known_mac6(&self, addr: Addr6) -> [u8; 6] {
        (self.v6.lan_hosts.get(&addr)).map_or(super::super::neighbours::NO_MAC, |m| *m)
    }

    /// A flow's inside host's MAC: the one it opened with, else what the
    /// neighbour table (or the host's own frames) said since.
    pub(in crate::router) fn inside_mac6(&self, spec: &FlowSpec<Addr6>) -> Option<[u8; 6]> {
        if spec.lan_mac != super::super::neighbours::NO_MAC {
            return Some(spec.lan_mac);
        }
        self.v6.lan_hosts.get(&spec.inside.addr).map(|m| *m)
    }
}

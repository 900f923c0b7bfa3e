//! IPv6 from the LAN: a packet of a known flow leaves by the flow's uplink;
//! the first packet of a new connection goes through the rules and the IPv6
//! balancer and opens a flow translated as its uplink's `nat6` says.

use std::sync::atomic::Ordering;

use super::super::flows::{opens_connection, record};
use super::super::{lock, nat_index, Egress, FrameContext, Router};
use super::key_of;
use crate::config::{Nat6, UplinkId};
use crate::flow::{FlowKind, FlowSpec, InsertError, Side};
use crate::packet::{Addr6, Endpoint6, Error6, Frame6, Rewrite6, Transport, PROTO_TCP, PROTO_UDP};
use crate::policy::{Choice, NewConnection};
use crate::verdict::{DropReason, KernelReason, Port, Verdict};

/// ICMPv6 destination unreachable, "no route to destination" (RFC 4443
/// 3.1): what a new connection no uplink can carry gets, so the client's
/// connect fails at once (Linux aborts a connecting TCP socket on it).
const NO_ROUTE: u8 = 0;

impl Router {
    pub(super) fn lan_ingress6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        ctx: &FrameContext,
    ) -> Verdict {
        if let Some(verdict) = self.lan_refusal6(frame, ctx) {
            return verdict;
        }
        let ports = match frame.transport {
            Transport::Fragment => return self.later_fragment6(buf, frame, ctx),
            Transport::IcmpError { .. } if frame.fragment.is_some() => {
                return Verdict::Drop(DropReason::Fragment)
            }
            Transport::IcmpError { .. } => return self.icmp_error_from_lan6(buf, frame, ctx),
            Transport::Tcp { .. } | Transport::Udp { .. } => Some(frame.ports()),
            Transport::IcmpEcho { request: true, .. } => None,
            // A LAN host's reply to a ping that came in through a mapping.
            Transport::IcmpEcho { request: false, .. } => {
                let key = key_of(frame);
                return match self.record_or_expire(Side::Lan, &key, frame, ctx) {
                    Some(spec) => self.forward_to_remote6(buf, frame, &spec, ctx),
                    None => Verdict::Drop(DropReason::NoMapping),
                };
            }
            Transport::IcmpOther { .. } => return Verdict::Kernel(KernelReason::IcmpOther),
            Transport::Other { .. } => None,
        };
        if frame.hop_limit <= 1 {
            return self.answer6(buf, frame, Error6::TimeExceeded, ctx);
        }
        let key = key_of(frame);
        if let Some(spec) = self.record_or_expire(Side::Lan, &key, frame, ctx) {
            return self.forward_to_remote6(buf, frame, &spec, ctx);
        }
        let conn = NewConnection {
            protocol: frame.protocol,
            src: frame.src,
            dst: frame.dst,
            ports,
        };
        let live = self.live(ctx.live);
        let decision = live.policy6.decide(&conn);
        match decision.action {
            crate::config::Action::Bypass => return Verdict::Kernel(KernelReason::Bypass),
            crate::config::Action::Drop => return Verdict::Drop(DropReason::Rule),
            _ if !opens_connection(frame) => return Verdict::Drop(DropReason::TcpNoFlow),
            _ => {}
        }
        let uplink = match live.policy6.assign(decision, &conn, ctx.now) {
            Choice::Uplink(uplink) if self.v6.carries(uplink) => uplink,
            Choice::Bypass => return Verdict::Kernel(KernelReason::Bypass),
            Choice::Drop(DropReason::Rule) => return Verdict::Drop(DropReason::Rule),
            // No uplink can carry it: say so at once, so that a client
            // racing IPv6 against IPv4 (Happy Eyeballs) takes IPv4 now
            // rather than after its timeout.
            Choice::Uplink(_) | Choice::Drop(_) => {
                return self.answer6(buf, frame, Error6::Unreachable { code: NO_ROUTE }, ctx)
            }
        };
        drop(live);
        self.open_flow6(buf, frame, uplink, ctx)
    }

    /// The first look at a frame from the LAN, before its kind: the
    /// kernel's when it is for the LAN or the router itself, or from
    /// outside the LAN's prefixes.
    pub(super) fn lan_refusal6(&self, frame: &Frame6, ctx: &FrameContext) -> Option<Verdict> {
        if self.v6.is_lan(frame.dst) || self.is_router_address6(frame.dst, ctx) {
            return Some(Verdict::Kernel(KernelReason::LocalDestination));
        }
        if !self.v6.is_lan(frame.src) {
            return Some(Verdict::Kernel(KernelReason::NotInside));
        }
        None
    }

    /// Opens the flow of a LAN host's new connection over `uplink`: its
    /// outside endpoint as the uplink's `nat6` makes it, the flow inserted
    /// and its first packet recorded and sent.
    fn open_flow6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        uplink: UplinkId,
        ctx: &FrameContext,
    ) -> Verdict {
        let state = &self.v6.uplinks[usize::from(uplink)];
        let Some(nat) = state.nat else {
            return Verdict::Drop(DropReason::NoUplink);
        };
        self.learn_lan_host6(frame);
        let inside = Endpoint6::new(frame.src, frame.ports().0);
        let outside = match self.outside6(nat, uplink, frame.protocol, inside) {
            Ok(outside) => outside,
            Err(reason) => return Verdict::Drop(reason),
        };
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside,
            outside,
            remote: Endpoint6::new(frame.dst, frame.ports().1),
            uplink,
            kind: FlowKind::Snat,
            lan_mac: frame.src_mac,
        };
        match self.insert6(spec, Side::Lan, frame, ctx.now) {
            Ok(spec) => self.forward_to_remote6(buf, frame, &spec, ctx),
            Err(verdict) => verdict,
        }
    }

    /// Where `inside` appears behind `uplink`: its mapped address (prefix,
    /// npt), the uplink's address with a NAT66 port (masquerade), or itself
    /// (off).
    fn outside6(
        &self,
        nat: Nat6,
        uplink: UplinkId,
        protocol: u8,
        inside: Endpoint6,
    ) -> Result<Endpoint6, DropReason> {
        let state = &self.v6.uplinks[usize::from(uplink)];
        let addressing = state.addressing.load();
        match nat {
            Nat6::Prefix | Nat6::Npt => addressing
                .maps
                .iter()
                .find_map(|map| map.outbound(inside.addr))
                .map(|addr| Endpoint6::new(addr, inside.port))
                .ok_or(DropReason::Untranslatable6),
            Nat6::Off => Ok(inside),
            Nat6::Masquerade => {
                let address = addressing.address.ok_or(DropReason::NoUplink)?;
                if !matches!(
                    protocol,
                    PROTO_TCP | PROTO_UDP | crate::packet::PROTO_ICMPV6
                ) {
                    return Err(DropReason::UnsupportedProtocol);
                }
                let port = lock(&state.ports[nat_index(protocol)])
                    .acquire(inside)
                    .ok_or(DropReason::PortsExhausted)?;
                Ok(Endpoint6::new(address, port))
            }
        }
    }

    /// Inserts a new IPv6 flow and records its first packet; on failure
    /// gives back what was taken for it.
    pub(super) fn insert6(
        &self,
        spec: FlowSpec<Addr6>,
        side: Side,
        frame: &Frame6,
        now: u32,
    ) -> Result<FlowSpec<Addr6>, Verdict> {
        if let Err(reason) = self.take_allowance6(&spec) {
            self.release_port6(&spec);
            return Err(Verdict::Drop(reason));
        }
        let inserted = self.insert_or_evict(
            &self.v6.table,
            spec,
            now,
            |flow| record(flow, side, frame, now),
            |evicted| self.release6(evicted),
        );
        match inserted {
            Ok(actual) => {
                let state = &self.v6.uplinks[usize::from(actual.uplink)];
                if actual == spec {
                    state.flows.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.release_port6(&spec);
                    self.give_back_allowance6(&spec);
                }
                Ok(actual)
            }
            Err(error) => {
                self.release_port6(&spec);
                self.give_back_allowance6(&spec);
                Err(Verdict::Drop(match error {
                    InsertError::Full => DropReason::TableFull,
                    InsertError::Clash => DropReason::TupleClash,
                }))
            }
        }
    }

    fn release_port6(&self, spec: &FlowSpec<Addr6>) {
        let state = &self.v6.uplinks[usize::from(spec.uplink)];
        if state.nat == Some(Nat6::Masquerade) && spec.is_snat() {
            lock(&state.ports[nat_index(spec.protocol)]).release(spec.inside);
        }
    }

    /// Sends a flow's packet from its inside host out its uplink: the MTU
    /// checked (packet too big back to the host), the gateway's MAC, the
    /// rewrite.
    pub(super) fn forward_to_remote6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        spec: &FlowSpec<Addr6>,
        ctx: &FrameContext,
    ) -> Verdict {
        let id = usize::from(spec.uplink);
        if let Some(verdict) = self.too_big6(buf, frame, self.uplinks[id].mtu.get(), ctx) {
            return verdict;
        }
        let Some(egress) = self.egress_to_remote6(spec) else {
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        };
        self.clamp_mss6(buf, frame, egress.port, ctx);
        let len = crate::packet::apply6(buf, frame, &egress.rewrite);
        let verdict = Verdict::Forward {
            port: egress.port,
            len,
        };
        self.follow_first6(buf, frame, verdict, ctx.now);
        verdict
    }

    /// Where a flow's packet from its inside host goes: out its uplink to
    /// the gateway, as from the flow's outside endpoint; None while the
    /// gateway's MAC is unknown.
    pub(super) fn egress_to_remote6(&self, spec: &FlowSpec<Addr6>) -> Option<Egress<Rewrite6>> {
        Some(Egress {
            port: Port::Wan(spec.uplink),
            rewrite: Rewrite6 {
                src_mac: self.uplinks[usize::from(spec.uplink)].mac,
                dst_mac: self.gateway_mac6(spec.uplink)?,
                src: spec.outside,
                dst: spec.remote,
            },
        })
    }

    /// `[nat] mss_clamp` for an IPv6 SYN or SYN-ACK going out `egress`: the
    /// IPv4 limit less 20 bytes, IPv6's header being 20 bytes longer (auto:
    /// the smaller MTU less 60).
    pub(super) fn clamp_mss6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        egress: Port,
        ctx: &FrameContext,
    ) {
        if !frame.is_syn() || frame.fragment.is_some() {
            return;
        }
        if let Some(mss) = self.mss_limit(egress, ctx) {
            crate::packet::clamp_mss(buf, frame, mss.saturating_sub(20), false);
        }
    }

    /// A packet bigger than the egress `mtu` (routers never fragment IPv6,
    /// RFC 8200 5): answered with packet too big, so its sender learns the
    /// path MTU.
    pub(super) fn too_big6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        mtu: u16,
        ctx: &FrameContext,
    ) -> Option<Verdict> {
        let too_big = frame.end - crate::packet::L3_OFFSET > usize::from(mtu);
        too_big.then(|| {
            let mtu = u32::from(mtu);
            self.answer6(buf, frame, Error6::PacketTooBig { mtu }, ctx)
        })
    }

    /// Notes the MAC a LAN host opens a connection from, for the replies to
    /// inbound connections to it (looked at once per new flow, not per
    /// packet; written only when it changed).
    fn learn_lan_host6(&self, frame: &Frame6) {
        if self.v6.lan_hosts.get(&frame.src).map(|m| *m) != Some(frame.src_mac) {
            self.v6.lan_hosts.insert(frame.src, frame.src_mac);
        }
    }
}

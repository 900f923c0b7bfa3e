//! ICMPv6 errors: those about a flow's packets, translated together with
//! the packet they quote (RFC 6296 and the NPTv6 ICMP draft: the outer
//! address and the quoted one, both ways), and those the core sends itself
//! (time exceeded, packet too big, unreachable), from the router's address
//! on the side the frame came in by.

use super::super::{FrameContext, Router};
use crate::flow::{FlowKey, FlowSpec, Side};
use crate::packet::icmp::QuoteError;
use crate::packet::icmp6::ERROR6_HEADERS;
use crate::packet::{
    make_error6, may_answer6, quoted6, translate_error6, Addr6, Error6, ErrorRewrite6, Frame6,
    Quoted6,
};
use crate::verdict::{DropReason, KernelReason, Port, Verdict};

impl Router {
    /// An ICMPv6 error from the Internet about a packet a flow sent out: back
    /// to the flow's inside host, the quote put back as the host sent it.
    pub(super) fn icmp_error_from_wan6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        ctx: &FrameContext,
    ) -> Verdict {
        // The quoted packet left as outside → remote.
        let (quoted, spec) = match self.quoted_flow6(buf, frame, Side::Wan, ctx) {
            Ok(found) => found,
            Err(verdict) => return verdict,
        };
        let Some(dst_mac) = self.inside_mac6(&spec) else {
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        };
        let rewrite = ErrorRewrite6 {
            src_mac: self.lan_mac,
            dst_mac,
            src: frame.src,
            dst: spec.inside.addr,
            quoted_src: spec.inside,
            quoted_dst: spec.remote,
        };
        let len = translate_error6(buf, frame, &quoted, &rewrite);
        Verdict::Forward {
            port: Port::Lan,
            len,
        }
    }

    /// An ICMPv6 error from a LAN host about a packet of a flow it received
    /// (port unreachable for an inbound datagram, say): out the flow's
    /// uplink, from the host's outside address, the quote as the Internet
    /// sent it.
    pub(super) fn icmp_error_from_lan6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        ctx: &FrameContext,
    ) -> Verdict {
        // The quoted packet arrived as remote → inside.
        let (quoted, spec) = match self.quoted_flow6(buf, frame, Side::Lan, ctx) {
            Ok(found) => found,
            Err(verdict) => return verdict,
        };
        let Some(gateway) = self.gateway_mac6(spec.uplink) else {
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        };
        let rewrite = ErrorRewrite6 {
            src_mac: self.uplinks[usize::from(spec.uplink)].mac,
            dst_mac: gateway,
            src: spec.outside.addr,
            dst: spec.remote.addr,
            quoted_src: spec.remote,
            quoted_dst: spec.outside,
        };
        let len = translate_error6(buf, frame, &quoted, &rewrite);
        Verdict::Forward {
            port: Port::Wan(spec.uplink),
            len,
        }
    }

    /// The packet an ICMPv6 error quotes and the flow it belongs to: the
    /// quote's reversed tuple is the flow's key on `side` (an error from the
    /// Internet quotes what a flow sent out; from the LAN, what it brought
    /// in). Untranslatable quotes are the kernel's; a truncated one, or one
    /// of no flow, is dropped (from the LAN: the kernel's, like any other
    /// LAN host's error).
    fn quoted_flow6(
        &self,
        buf: &[u8],
        frame: &Frame6,
        side: Side,
        ctx: &FrameContext,
    ) -> Result<(Quoted6, FlowSpec<Addr6>), Verdict> {
        let quoted = match quoted6(buf, frame) {
            Ok(quoted) => quoted,
            Err(QuoteError::Truncated) => return Err(Verdict::Drop(DropReason::IcmpTruncated)),
            Err(QuoteError::Untranslatable) => {
                return Err(Verdict::Kernel(KernelReason::IcmpOther))
            }
        };
        let key = FlowKey {
            protocol: quoted.protocol,
            src: quoted.dst,
            dst: quoted.src,
        };
        match self.peek6(side, &key, ctx.now) {
            Some(spec) => Ok((quoted, spec)),
            None if side == Side::Wan => Err(Verdict::Drop(DropReason::IcmpNoFlow)),
            None => Err(Verdict::Kernel(KernelReason::IcmpOther)),
        }
    }

    /// The spec of the live IPv6 flow `key` belongs to, recording nothing
    /// (errors never refresh a flow: RFC 7857).
    fn peek6(&self, side: Side, key: &FlowKey<Addr6>, now: u32) -> Option<FlowSpec<Addr6>> {
        let timeouts = self.timeouts.get();
        self.v6
            .table
            .with_flow(side, key, |flow| {
                (!flow.is_expired(now, &timeouts)).then_some(flow.spec)
            })
            .flatten()
    }

    /// Turns the frame into `error` about itself, back out the port it came
    /// in by, from the router's address on that side (the LAN's; on a WAN,
    /// the uplink's own address, else the LAN's, which the uplink's prefix
    /// routes back). Without an address to send from, or about a frame no
    /// error may answer (RFC 4443 2.4), the frame is dropped and counted.
    pub(super) fn answer6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        error: Error6,
        ctx: &FrameContext,
    ) -> Verdict {
        let reason = match error {
            Error6::TimeExceeded => DropReason::HopLimitExpired6,
            Error6::PacketTooBig { .. } => DropReason::TooBig,
            Error6::Unreachable { .. } => DropReason::NoUplink,
        };
        if !may_answer6(frame) {
            return Verdict::Drop(reason);
        }
        let port = ctx.meta.port;
        let from = match port {
            Port::Lan => self.lan_address6().map(|a| (a, self.lan_mac)),
            Port::Wan(uplink) => {
                let id = usize::from(uplink);
                let own = self.v6.uplinks[id].addressing.load().address;
                own.or_else(|| self.lan_address6())
                    .map(|a| (a, self.uplinks[id].mac))
            }
        };
        let Some(from) = from else {
            return Verdict::Drop(reason);
        };
        if let Some(len) = make_error6(buf, frame, error, from) {
            return Verdict::Forward { port, len };
        }
        // Too short to hold the error (a bare TCP segment, a small
        // datagram): made in a bigger buffer and sent from the outbox.
        let mut bigger = buf[..frame.end].to_vec();
        bigger.resize(frame.end + ERROR6_HEADERS, 0);
        match make_error6(&mut bigger, frame, error, from) {
            Some(len) => {
                ctx.send_also(port, &bigger[..len]);
                Verdict::Taken
            }
            None => Verdict::Drop(reason),
        }
    }
}

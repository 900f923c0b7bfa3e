//! ICMPv6 errors: those about a flow's packets, translated together with
//! the packet they quote (RFC 6296 and the NPTv6 ICMP draft: the outer
//! address and the quoted one, both ways), and those the core sends itself
//! (time exceeded, packet too big, unreachable), from the router's address
//! on the side the frame came in by.

use super::super::{FrameContext, Router};
use crate::flow::{FlowKey, FlowSpec, Side};
use crate::packet::checksum::transport_checksum6;
use crate::packet::icmp::QuoteError;
use crate::packet::icmp6::ERROR6_HEADERS;
use crate::packet::wire::IcmpMessage;
use crate::packet::wire6::{Ipv6Frame, L3_PAYLOAD_OFFSET};
use crate::packet::{
    make_error6, may_answer6, quoted6, translate_error6, Addr6, Error6, ErrorRewrite6, Frame6,
    Quoted6, L3_OFFSET, PROTO_ICMPV6,
};
use crate::verdict::{DropReason, KernelReason, Port, Verdict};

/// An ICMPv6 error whose own hop limit expires here is dropped, as the
/// kernel drops it: no error answers an error (RFC 4443 2.4(e)), and
/// forwarding it would send it on with hop limit 0.
fn expires_here(frame: &Frame6) -> Option<Verdict> {
    (frame.hop_limit <= 1).then_some(Verdict::Drop(DropReason::HopLimitExpired6))
}

/// Cuts the translated ICMPv6 error `frame` in `buf` to end at `end` (past
/// its quoted headers): its payload length follows, and its checksum, whose
/// pseudo-header holds that length, is computed again over what is left.
fn cut6(buf: &mut [u8], frame: &Frame6, rewrite: &ErrorRewrite6, end: usize) {
    // Less than the payload length it had, a 16-bit field.
    let payload = u16::try_from(end - L3_PAYLOAD_OFFSET).unwrap_or(u16::MAX);
    if let Some(mut ip) = Ipv6Frame::new_checked(&mut buf[..end]) {
        ip.set_payload_len(payload);
    }
    let message = frame.l4..end;
    if let Some(mut icmp) = IcmpMessage::new_checked(&mut buf[message.clone()]) {
        icmp.set_checksum(0);
    }
    let check = transport_checksum6(
        rewrite.src,
        rewrite.dst,
        PROTO_ICMPV6,
        &buf[message.clone()],
    );
    if let Some(mut icmp) = IcmpMessage::new_checked(&mut buf[message]) {
        icmp.set_checksum(check);
    }
}

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
        if let Some(verdict) = expires_here(frame) {
            return verdict;
        }
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
        self.send_error6(buf, frame, &quoted, &rewrite, Port::Lan)
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
        if let Some(verdict) = expires_here(frame) {
            return verdict;
        }
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
        self.send_error6(buf, frame, &quoted, &rewrite, Port::Wan(spec.uplink))
    }

    /// Sends the translated error out `port`, cut to the egress MTU when
    /// longer, as ICMP's are (RFC 4443 2.4(c): as much of the invoking packet
    /// as fits); the quoted headers and 8 bytes after them always stay whole.
    fn send_error6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        quoted: &Quoted6,
        rewrite: &ErrorRewrite6,
        port: Port,
    ) -> Verdict {
        let end = frame.end.min(L3_OFFSET + usize::from(self.mtu(port)));
        if end < quoted.l4 + 8 {
            return Verdict::Drop(DropReason::TooBig);
        }
        translate_error6(buf, frame, quoted, rewrite);
        if end < frame.end {
            cut6(buf, frame, rewrite, end);
        }
        Verdict::Forward { port, len: end }
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
            ctx.counters.icmp6_sent(error);
            return Verdict::Forward { port, len };
        }
        // Too short to hold the error (a bare TCP segment, a small
        // datagram): made in a bigger buffer and sent from the outbox.
        let mut bigger = buf[..frame.end].to_vec();
        bigger.resize(frame.end + ERROR6_HEADERS, 0);
        match make_error6(&mut bigger, frame, error, from) {
            Some(len) => {
                ctx.counters.icmp6_sent(error);
                ctx.send_also(port, &bigger[..len]);
                Verdict::Taken
            }
            None => Verdict::Drop(reason),
        }
    }
}

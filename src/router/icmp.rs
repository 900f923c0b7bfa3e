//! ICMP errors about the packets of flows (RFC 5508 REQ-3/4, RFC 7857): the
//! error and the packet it quotes are translated together, and neither
//! refreshes nor removes the flow.
//!
//! A flow's packets look different on its two sides. From the inside host
//! they go `inside → lan_peer` and leave as `outside → remote`; replies come
//! back as `remote → outside` and reach the inside host as
//! `lan_peer → inside`. An error from the far side (the Internet, or for a
//! hairpinned flow the forward's target) quotes a packet as it left,
//! `outside → remote`, and goes to the inside host quoting it as it was
//! sent, `inside → lan_peer`. An error from the inside host quotes a reply
//! as it was delivered, `lan_peer → inside`, and goes to the far side
//! quoting it as it arrived, `remote → outside`.

use super::{DropReason, FrameContext, KernelReason, Port, Router, Verdict};
use crate::flow::{FlowKey, FlowKind, FlowSpec, Side};
use crate::packet::icmp::{self, ErrorRewrite, QuoteError, Quoted};
use crate::packet::wire::{field, IcmpMessage, Ipv4Frame};
use crate::packet::{checksum, Fragmentation, Frame, L3_OFFSET};

/// The tuple of a reply to the quoted packet: the flow key to look it up by.
fn reply_key(quoted: &Quoted) -> FlowKey {
    FlowKey {
        protocol: quoted.protocol,
        src: quoted.dst,
        dst: quoted.src,
    }
}

impl Router {
    /// The packet an ICMP error quotes, or what makes the error untranslatable
    /// before its flow is looked at. An error goes back to where the packet
    /// it quotes came from; any other is left to the kernel.
    fn check_error(&self, buf: &[u8], frame: &Frame) -> Result<Quoted, Verdict> {
        if frame.fragmentation != Fragmentation::Whole {
            return Err(Verdict::Drop(DropReason::Fragment));
        }
        let quoted = icmp::quoted(buf, frame).map_err(|e| match e {
            QuoteError::Truncated => Verdict::Drop(DropReason::IcmpTruncated),
            QuoteError::Untranslatable => Verdict::Kernel(KernelReason::IcmpOther),
        })?;
        if quoted.src.addr != frame.dst {
            return Err(Verdict::Kernel(KernelReason::IcmpOther));
        }
        Ok(quoted)
    }

    /// An ICMP error from the Internet to the WAN address of `uplink`.
    pub(super) fn icmp_error_from_wan(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        uplink: u8,
        ctx: &FrameContext,
    ) -> Verdict {
        let quoted = match self.check_error(buf, frame) {
            Ok(quoted) => quoted,
            Err(verdict) => return verdict,
        };
        match self.peek(Side::Wan, &reply_key(&quoted), ctx.now) {
            Some(spec) if !matches!(spec.kind, FlowKind::Hairpin { .. }) => {
                self.error_to_inside(buf, frame, &quoted, &spec)
            }
            _ if self.owns_port(quoted.protocol, quoted.src.port, uplink) => {
                Verdict::Drop(DropReason::IcmpNoFlow)
            }
            _ => Verdict::Kernel(KernelReason::IcmpOther),
        }
    }

    /// An ICMP error from a LAN host: about a reply it was delivered (to the
    /// far side), or, to a WAN address, about a hairpinned packet it was
    /// delivered as the forward's target (to the inside host).
    pub(super) fn icmp_error_from_lan(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        ctx: &FrameContext,
    ) -> Verdict {
        let quoted = match self.check_error(buf, frame) {
            Ok(quoted) => quoted,
            Err(verdict) => return verdict,
        };
        let key = reply_key(&quoted);
        let Some(uplink) = self.uplink_with_address(quoted.src.addr) else {
            return match self.peek(Side::Lan, &key, ctx.now) {
                Some(spec) if !matches!(spec.kind, FlowKind::Hairpin { .. }) => {
                    self.error_to_far_side(buf, frame, &quoted, &spec)
                }
                _ => Verdict::Kernel(KernelReason::IcmpOther),
            };
        };
        // The quoted packet came from a WAN address: a hairpinned flow's,
        // either its SNATed client's packet to the forward's target...
        if let Some(spec) = self.peek(Side::Wan, &key, ctx.now) {
            if matches!(spec.kind, FlowKind::Hairpin { .. }) {
                return self.error_to_inside(buf, frame, &quoted, &spec);
            }
        }
        // ...or the target's reply to the client, from the forwarded port.
        let live = self.live(ctx.live);
        if let Some(target) = live
            .forwards
            .get(&(quoted.protocol, quoted.src.port, uplink))
        {
            let lan_key = FlowKey {
                dst: *target,
                ..key
            };
            if let Some(spec) = self.peek(Side::Lan, &lan_key, ctx.now) {
                if spec.kind
                    == (FlowKind::Hairpin {
                        port: quoted.src.port,
                    })
                {
                    return self.error_to_far_side(buf, frame, &quoted, &spec);
                }
            }
        }
        if self.owns_port(quoted.protocol, quoted.src.port, uplink) {
            Verdict::Drop(DropReason::IcmpNoFlow)
        } else {
            Verdict::Kernel(KernelReason::IcmpOther)
        }
    }

    /// An error from the far side about a packet of `spec` as it left, to
    /// the inside host.
    fn error_to_inside(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        quoted: &Quoted,
        spec: &FlowSpec,
    ) -> Verdict {
        let lan_peer = spec.lan_peer();
        let dst_mac = match self.inside_mac(spec) {
            Ok(mac) => mac,
            Err(verdict) => return verdict,
        };
        let rewrite = ErrorRewrite {
            src_mac: self.lan_mac,
            dst_mac,
            // An error from the remote host itself comes from the endpoint
            // the inside host knows it by; one from a router on the way keeps
            // its address.
            src: if frame.src == spec.remote.addr {
                lan_peer.addr
            } else {
                frame.src
            },
            dst: spec.inside.addr,
            quoted_src: spec.inside,
            quoted_dst: lan_peer,
        };
        self.send_error(buf, frame, quoted, &rewrite, Port::Lan)
    }

    /// An error from the inside host about a reply of `spec` as it was
    /// delivered, to the far side.
    fn error_to_far_side(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        quoted: &Quoted,
        spec: &FlowSpec,
    ) -> Verdict {
        let egress = match self.egress_to_remote(spec) {
            Ok(egress) => egress,
            Err(verdict) => return verdict,
        };
        let rewrite = ErrorRewrite {
            src_mac: egress.rewrite.src_mac,
            dst_mac: egress.rewrite.dst_mac,
            src: spec.outside.addr,
            dst: spec.remote.addr,
            quoted_src: spec.remote,
            quoted_dst: spec.outside,
        };
        self.send_error(buf, frame, quoted, &rewrite, egress.port)
    }

    /// Sends the translated error out `port`: dropped when its TTL expires
    /// here, cut to the egress MTU when longer (RFC 1812 4.3.2.3 lets an
    /// error be truncated; the quoted IP header and the 8 bytes after it
    /// always stay whole).
    fn send_error(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        quoted: &Quoted,
        rewrite: &ErrorRewrite,
        port: Port,
    ) -> Verdict {
        if frame.ttl <= 1 {
            return Verdict::Drop(DropReason::IcmpErrorTtlExpired);
        }
        let room = L3_OFFSET + usize::from(self.mtu(port));
        // An even ICMP length keeps the checksum's 16-bit words where they were.
        let end = if frame.end <= room {
            frame.end
        } else {
            frame.l4 + (room.saturating_sub(frame.l4) & !1)
        };
        if end < quoted.l4 + 8 {
            return Verdict::Drop(DropReason::TooBig);
        }
        icmp::translate_error(buf, frame, quoted, rewrite);
        if end < frame.end {
            truncate(buf, frame, end);
        }
        Verdict::Forward { port, len: end }
    }
}

/// Cuts the translated error `frame` in `buf` to end at `end` (past its
/// ICMP header): its IP total length and header checksum follow, and its
/// ICMP checksum loses the sum of the bytes cut off (incremental updates,
/// RFC 1624).
fn truncate(buf: &mut [u8], frame: &Frame, end: usize) {
    let cut = checksum::fold(checksum::sum_bytes(0, &buf[end..frame.end]));
    if let Some(mut icmp) = IcmpMessage::new_checked(&mut buf[frame.l4..end]) {
        icmp.set_checksum(checksum::update16(icmp.checksum(), cut, 0));
    }
    // At most the frame's own length, which came from the same 16-bit field.
    let length = (end - L3_OFFSET) as u16;
    if let Some(mut ip) = Ipv4Frame::new_checked(&mut buf[..end]) {
        let check = checksum::update16(ip.checksum(), ip.total_len(), length);
        ip.set_checksum(check);
    }
    let at = L3_OFFSET + field::IP_TOTAL_LEN.start;
    buf[at..at + 2].copy_from_slice(&length.to_be_bytes());
}

//! Hairpinning (RFC 4787 REQ-9): a LAN host's connection to a port forwarded
//! on a WAN address is destination-NATed to the forward's target and
//! source-NATed to the WAN address, and goes back out the LAN, so the target
//! sees the client's outside address and replies through the router.

use super::{key_of, opens_connection, FrameContext, Router};
use crate::config::UplinkId;
use crate::flow::{FlowKey, FlowKind, Side};
use crate::packet::{Frame, Transport};
use crate::verdict::{DropReason, KernelReason, Verdict};

impl Router {
    /// A LAN host's frame to a WAN address: to a forwarded port, hairpinned to
    /// the forward's target; to a NAT port, the target's reply in a hairpinned
    /// flow; anything else is for the router itself.
    pub(super) fn lan_to_wan_address(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        uplink: UplinkId,
        ctx: &FrameContext,
    ) -> Verdict {
        let (Transport::Tcp { .. } | Transport::Udp { .. }) = frame.transport else {
            return Verdict::Kernel(KernelReason::LocalDestination);
        };
        let key = key_of(frame);
        let live = self.live(ctx.live);
        let forward = live.forwards.get(&(frame.protocol, key.dst.port, uplink));
        if forward.is_none() && !self.nat_ports.contains(key.dst.port) {
            return Verdict::Kernel(KernelReason::LocalDestination);
        }
        if frame.ttl <= 1 {
            return self.ttl_expired(buf, frame, ctx);
        }
        let Some(target) = forward else {
            return match self.record_or_expire(Side::Wan, &key, frame, ctx) {
                Some(spec) if matches!(spec.kind, FlowKind::Hairpin { .. }) => {
                    self.emit_to_inside(buf, frame, &spec, ctx)
                }
                _ => Verdict::Drop(DropReason::NoMapping),
            };
        };
        let lan_key = FlowKey {
            dst: *target,
            ..key
        };
        if let Some(spec) = self.record_or_expire(Side::Lan, &lan_key, frame, ctx) {
            return self.forward_to_remote(buf, frame, &spec, None, ctx);
        }
        if !opens_connection(frame) {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        if let Err(verdict) = self.lan_host_mac(target.addr) {
            return verdict;
        }
        let kind = FlowKind::Hairpin { port: key.dst.port };
        self.open_snat_flow(buf, frame, *target, uplink, kind, ctx)
    }
}

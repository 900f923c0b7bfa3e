//! From the LAN: a packet of a known flow leaves by the flow's uplink; the
//! first packet of a new connection goes through the rules and the balancer
//! and opens a source-NATed flow. Frames to a WAN address go to `hairpin.rs`.

use super::{key_of, opens_connection, FrameContext, Router};
use crate::config::Action;
use crate::flow::{FlowKind, Side};
use crate::packet::{Frame, Transport};
use crate::policy::{Choice, NewConnection};
use crate::verdict::{DropReason, KernelReason, Verdict};

impl Router {
    pub(super) fn lan_ingress(&self, buf: &mut [u8], frame: &Frame, ctx: &FrameContext) -> Verdict {
        let wan_address = self.uplink_with_address(frame.dst);
        if self.is_lan(frame.dst) || (wan_address.is_some() && !self.is_lan(frame.src)) {
            return Verdict::Kernel(KernelReason::LocalDestination);
        }
        if !self.is_lan(frame.src) {
            return Verdict::Kernel(KernelReason::NotInside);
        }
        let ports = match (frame.transport, wan_address) {
            (Transport::Fragment, _) => return self.later_fragment(buf, frame, ctx),
            (Transport::IcmpError { .. }, _) => return self.icmp_error_from_lan(buf, frame, ctx),
            (_, Some(uplink)) => return self.lan_to_wan_address(buf, frame, uplink, ctx),
            (Transport::Tcp { .. } | Transport::Udp { .. }, None) => Some(frame.ports()),
            (Transport::IcmpEcho { request: true, .. }, None) => None,
            (Transport::IcmpEcho { request: false, .. } | Transport::IcmpOther { .. }, None) => {
                return Verdict::Kernel(KernelReason::IcmpOther)
            }
            (Transport::Other { .. }, None) => {
                return Verdict::Drop(DropReason::UnsupportedProtocol)
            }
        };
        if frame.ttl <= 1 {
            return self.ttl_expired(buf, frame, ctx);
        }
        let key = key_of(frame);
        if let Some(spec) = self.record_or_expire(Side::Lan, &key, frame, ctx) {
            return self.forward_to_remote(buf, frame, &spec, None, ctx);
        }

        let conn = NewConnection {
            protocol: frame.protocol,
            src: frame.src,
            dst: frame.dst,
            ports,
        };
        let live = self.live(ctx.live);
        let decision = live.policy.decide(&conn);
        if let Some(verdict) = self.refuse_new(decision.action, frame) {
            return verdict;
        }
        let uplink = match live.policy.assign(decision, &conn, ctx.now) {
            Choice::Uplink(uplink) => uplink,
            Choice::Bypass => return Verdict::Kernel(KernelReason::Bypass),
            Choice::Drop(reason) => return Verdict::Drop(reason),
        };
        self.open_snat_flow(buf, frame, key.dst, uplink, FlowKind::Snat, ctx)
    }
    /// Rules' bypass and drop decisions, and TCP segments that cannot open a
    /// connection: the verdict for a new connection that gets no flow.
    pub(super) fn refuse_new(&self, action: Action, frame: &Frame) -> Option<Verdict> {
        match action {
            Action::Bypass => Some(Verdict::Kernel(KernelReason::Bypass)),
            Action::Drop => Some(Verdict::Drop(DropReason::Rule)),
            _ if !opens_connection(frame) => Some(Verdict::Drop(DropReason::TcpNoFlow)),
            _ => None,
        }
    }
}

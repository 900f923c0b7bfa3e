//! From a WAN: the replies of known flows go back to their LAN host; a new
//! connection to a forwarded port opens a destination-NATed flow pinned to
//! the WAN it came in on; anything else to a NAT port is dropped, and the
//! rest of the traffic to the router's addresses goes to the kernel.

use super::neighbours::NO_MAC;
use super::{key_of, opens_connection, FrameContext, Router};
use crate::config::UplinkId;
use crate::flow::{FlowKind, FlowSpec, Side};
use crate::packet::{Frame, Transport, PROTO_TCP, PROTO_UDP};
use crate::verdict::{DropReason, KernelReason, Verdict};

impl Router {
    pub(super) fn wan_ingress(&self, buf: &mut [u8], frame: &Frame, ctx: &FrameContext) -> Verdict {
        let Some(uplink) = self.uplink_with_address(frame.dst) else {
            return Verdict::Kernel(KernelReason::RouterTraffic);
        };
        if self.is_lan(frame.src) {
            return Verdict::Drop(DropReason::SpoofedSource);
        }
        match frame.transport {
            Transport::Tcp { .. } | Transport::Udp { .. } => {}
            Transport::IcmpEcho { request: false, .. } => {}
            Transport::IcmpEcho { request: true, .. } | Transport::Other { .. } => {
                return Verdict::Kernel(KernelReason::RouterTraffic)
            }
            Transport::IcmpOther { .. } => return Verdict::Kernel(KernelReason::IcmpOther),
            Transport::IcmpError { .. } => {
                return self.icmp_error_from_wan(buf, frame, uplink, ctx)
            }
            Transport::Fragment => return self.later_fragment(buf, frame, ctx),
        }
        if frame.ttl <= 1 {
            return self.ttl_expired(buf, frame, ctx);
        }
        let key = key_of(frame);
        if let Some(spec) = self.record_or_expire(Side::Wan, &key, frame, ctx) {
            return self.emit_to_inside(buf, frame, &spec, ctx);
        }
        let live = self.live(ctx.live);
        let Some(inside) = live.forwards.get(&(frame.protocol, key.dst.port, uplink)) else {
            return if self.owns_port(frame.protocol, key.dst.port, uplink) {
                Verdict::Drop(DropReason::NoMapping)
            } else {
                Verdict::Kernel(KernelReason::RouterTraffic)
            };
        };
        if !opens_connection(frame) {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        // An unresolved target (asked for now) gets its flow all the same:
        // the first packet waits for its MAC (`waiting.rs`).
        let lan_mac = self.lan_host_mac(inside.addr).unwrap_or(NO_MAC);
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside: *inside,
            outside: key.dst,
            remote: key.src,
            uplink,
            kind: FlowKind::Dnat,
            lan_mac,
        };
        match self.insert(spec, Side::Wan, frame, ctx.now) {
            Ok((spec, _)) => self.emit_to_inside(buf, frame, &spec, ctx),
            Err(verdict) => verdict,
        }
    }

    /// Whether `port` (an echo identifier for ICMP) on `uplink`'s address is
    /// the core's: in the NAT range, or forwarded.
    pub(super) fn owns_port(&self, protocol: u8, port: u16, uplink: UplinkId) -> bool {
        match protocol {
            PROTO_TCP | PROTO_UDP => {
                self.nat_ports.contains(port)
                    || self
                        .live
                        .load()
                        .forwards
                        .contains_key(&(protocol, port, uplink))
            }
            _ => self.nat_ports.contains(port),
        }
    }
}

//! What happens to the flows of an uplink that went down: TCP flows are reset
//! towards the LAN host (an RST with the sequence number it expects, so the
//! application reconnects at once through a live uplink instead of hanging),
//! UDP and ICMP flows are removed so their next packet opens a new mapping on
//! a live uplink, and port-forward flows over the dead uplink are dropped.
//! Flows on other uplinks are never touched.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use etherparse::PacketBuilder;

use super::Router;
use crate::config::UplinkId;
use crate::flow::{tcp_state, FlowKind, Removed};
use crate::packet::PROTO_TCP;

/// The outcome of failing over an uplink's flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failover {
    /// Frames to send out the LAN port: an RST to each TCP client.
    pub resets: Vec<Vec<u8>>,
    /// TCP flows reset.
    pub reset: usize,
    /// UDP and ICMP flows removed, to be re-mapped on their next packet.
    pub remapped: usize,
    /// Port-forward flows removed.
    pub forwards: usize,
}

impl Router {
    /// Fails over every flow pinned to `uplink` (call it once the uplink is
    /// marked down, so new flows go elsewhere).
    pub fn fail_over(&self, uplink: UplinkId) -> Failover {
        let removed = self.table.remove_where(|flow| flow.spec.uplink == uplink);
        self.failed_over(&removed)
    }

    /// A new SNAT address for `uplink` (unspecified: it has none), for new
    /// flows at once; the flows of the old address, which can no longer
    /// reach it, are failed over as [`Router::fail_over`] does (those of
    /// port forwards too: they came in to the old address).
    pub fn set_uplink_address(&self, uplink: UplinkId, address: Ipv4Addr) -> Failover {
        let Some(entry) = self.uplinks.get(usize::from(uplink)) else {
            return Failover::default();
        };
        let old = entry.address.swap(u32::from(address), Ordering::Relaxed);
        if old == u32::from(address) {
            return Failover::default();
        }
        let old = old.to_be_bytes();
        let removed = self
            .table
            .remove_where(|flow| flow.spec.uplink == uplink && flow.spec.outside.addr == old);
        self.failed_over(&removed)
    }

    fn failed_over(&self, removed: &[Removed]) -> Failover {
        let mut out = Failover::default();
        for flow in removed {
            self.release(&flow.spec);
            if flow.spec.kind == FlowKind::Dnat {
                out.forwards += 1;
            }
            if flow.spec.protocol != PROTO_TCP {
                if flow.spec.kind == FlowKind::Snat {
                    out.remapped += 1;
                }
                continue;
            }
            if let Some(frame) = self.reset_frame(flow) {
                out.resets.push(frame);
                out.reset += 1;
            }
        }
        out
    }

    /// An RST from the far end to the LAN host, with the sequence number
    /// the host expects; None for a connection already closed, or one from
    /// which the WAN side never sent anything.
    pub(super) fn reset_frame(&self, flow: &Removed) -> Option<Vec<u8>> {
        if flow.tcp & tcp_state::RST != 0 || flow.next_seq_to_lan == 0 {
            return None;
        }
        let spec = &flow.spec;
        // The peer as the LAN host knows it (for a hairpinned flow, the WAN
        // address and forwarded port).
        let peer = spec.lan_peer();
        let builder = PacketBuilder::ethernet2(self.lan_mac, self.inside_mac(spec).ok()?)
            .ipv4(peer.addr, spec.inside.addr, 64)
            .tcp(peer.port, spec.inside.port, flow.next_seq_to_lan, 0)
            .rst();
        let mut frame = Vec::with_capacity(builder.size(0));
        builder.write(&mut frame, &[]).ok()?;
        Some(frame)
    }
}

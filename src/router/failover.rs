//! What happens to the flows of an uplink that went down: TCP flows are reset
//! towards the LAN host (an RST with the sequence number it expects, so the
//! application reconnects at once through a live uplink instead of hanging),
//! UDP and ICMP flows are removed so their next packet opens a new mapping on
//! a live uplink, and port-forward flows over the dead uplink are dropped.
//! Flows on other uplinks are never touched. The same holds for IPv6 flows
//! (`fail_over6` alone when an uplink's IPv6 goes down and its IPv4 stays).

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use etherparse::PacketBuilder;

use super::Router;
use crate::config::UplinkId;
use crate::flow::{tcp_state, FlowKind, Removed};
use crate::packet::{Addr6, PROTO_TCP};

/// The outcome of failing over an uplink's flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "its RSTs are to be sent to the LAN hosts"]
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

impl Failover {
    /// Counts a removed flow by kind: a port forward's, or one of the LAN's
    /// that is not TCP (re-mapped on its next packet).
    fn count<A>(&mut self, spec: &crate::flow::FlowSpec<A>) {
        if spec.kind == FlowKind::Dnat {
            self.forwards += 1;
        }
        if spec.protocol != PROTO_TCP && spec.kind == FlowKind::Snat {
            self.remapped += 1;
        }
    }

    fn add(&mut self, other: Failover) {
        self.resets.extend(other.resets);
        self.reset += other.reset;
        self.remapped += other.remapped;
        self.forwards += other.forwards;
    }
}

impl Router {
    /// Fails over every flow pinned to `uplink` (call it once the uplink is
    /// marked down, so new flows go elsewhere).
    pub fn fail_over(&self, uplink: UplinkId) -> Failover {
        let mut out = self.fail_over4(uplink);
        out.add(self.fail_over6(uplink));
        out
    }

    /// Fails over the IPv4 flows pinned to `uplink` alone (its IPv4 went
    /// down, its IPv6, judged apart, goes on).
    pub fn fail_over4(&self, uplink: UplinkId) -> Failover {
        let removed = self.table.remove_where(|flow| flow.spec.uplink == uplink);
        self.failed_over(&removed)
    }

    /// Fails over the IPv6 flows pinned to `uplink` alone (its IPv6 went
    /// down, its IPv4 goes on).
    pub fn fail_over6(&self, uplink: UplinkId) -> Failover {
        let removed = self
            .v6
            .table
            .remove_where(|flow| flow.spec.uplink == uplink);
        self.failed_over6(&removed)
    }

    /// Fails over the IPv6 flows of `uplink` whose outside address it no
    /// longer has (a new NAT66 address, a delegated prefix that changed).
    pub(super) fn fail_over6_where(
        &self,
        uplink: UplinkId,
        gone: impl Fn(&crate::flow::FlowSpec<Addr6>) -> bool,
    ) -> Failover {
        let removed = self
            .v6
            .table
            .remove_where(|flow| flow.spec.uplink == uplink && gone(&flow.spec));
        self.failed_over6(&removed)
    }

    pub(super) fn failed_over6(&self, removed: &[Removed<Addr6>]) -> Failover {
        let mut out = Failover::default();
        for flow in removed {
            self.release6(&flow.spec);
            out.count(&flow.spec);
            if flow.spec.protocol == PROTO_TCP {
                if let Some(frame) = self.reset_frame6(flow) {
                    out.resets.push(frame);
                    out.reset += 1;
                }
            }
        }
        out
    }

    /// [`Router::reset_frame`] for an IPv6 flow.
    pub(super) fn reset_frame6(&self, flow: &Removed<Addr6>) -> Option<Vec<u8>> {
        if flow.tcp & tcp_state::RST != 0 || flow.next_seq_to_lan == 0 {
            return None;
        }
        let spec = &flow.spec;
        let builder = PacketBuilder::ethernet2(self.lan_mac, self.inside_mac6(spec)?)
            .ipv6(spec.remote.addr, spec.inside.addr, 64)
            .tcp(spec.remote.port, spec.inside.port, flow.next_seq_to_lan, 0)
            .rst();
        let mut frame = Vec::with_capacity(builder.size(0));
        builder.write(&mut frame, &[]).ok()?;
        Some(frame)
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
            out.count(&flow.spec);
            if flow.spec.protocol != PROTO_TCP {
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

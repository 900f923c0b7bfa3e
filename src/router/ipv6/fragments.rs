//! IPv6 fragments: a first fragment carries the transport header, so it is
//! translated with its flow like any packet (a prefix mapping's or NAT66's
//! change to the transport checksum does not depend on the payload, so the
//! one in the first fragment stays right for the whole datagram); the
//! later ones follow it through this table, keyed by the fragment's
//! source, destination and identification as they arrived, to the same
//! port with the same new addresses and MACs. Routers never fragment IPv6,
//! so nothing is cut here.
//!
//! A later fragment whose first has not gone through (it came first, or
//! its first belonged to no flow) is dropped and counted (`ipv6_fragment`):
//! the sender's own retransmission carries the whole datagram again.

use std::collections::HashMap;

use super::super::{lock, FrameContext, Router};
use crate::packet::wire6::Ipv6Frame;
use crate::packet::{Addr6, Frame6};
use crate::verdict::{DropReason, KernelReason, Port, Verdict};

/// The most datagrams followed at once, and for how long (seconds, as
/// Linux's `ip6frag_time`).
pub(super) const MAX_FOLLOWED: usize = 4096;
const LIFETIME_S: u32 = 60;

/// Where the later fragments of one datagram go, and as what.
#[derive(Debug, Clone, Copy)]
pub(super) struct Followed {
    port: Port,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Addr6,
    dst: Addr6,
    since: u32,
}

/// (source, destination, identification) as the fragments arrive.
type Key = (Addr6, Addr6, u32);

#[derive(Default)]
pub(super) struct Fragments6 {
    followed: std::sync::Mutex<HashMap<Key, Followed>>,
}

impl Router {
    /// Notes where a first fragment, just translated into `buf` and going
    /// out `port`, went, for its later fragments.
    pub(super) fn follow_first6(&self, buf: &[u8], frame: &Frame6, verdict: Verdict, now: u32) {
        let (Verdict::Forward { port, .. }, Some(fragment)) = (verdict, frame.fragment) else {
            return;
        };
        if fragment.is_later() || !fragment.more {
            return;
        }
        let Some(out) = Ipv6Frame::new_checked(buf) else {
            return;
        };
        let followed = Followed {
            port,
            src_mac: out.src_mac(),
            dst_mac: out.dst_mac(),
            src: out.src(),
            dst: out.dst(),
            since: now,
        };
        let mut table = lock(&self.v6.fragments.followed);
        if table.len() >= MAX_FOLLOWED {
            table.retain(|_, f| now.saturating_sub(f.since) <= LIFETIME_S);
        }
        if table.len() < MAX_FOLLOWED {
            table.insert((frame.src, frame.dst, fragment.id), followed);
        }
    }

    /// A later fragment: out where its first went, with its first's new
    /// addresses and MACs and the hop limit one less.
    pub(super) fn later_fragment6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        ctx: &FrameContext,
    ) -> Verdict {
        let now = ctx.now;
        let Some(fragment) = frame.fragment else {
            return Verdict::Drop(DropReason::Ipv6Fragment);
        };
        let key = (frame.src, frame.dst, fragment.id);
        let followed = {
            let mut table = lock(&self.v6.fragments.followed);
            let found = table.get(&key).copied();
            if found.is_some_and(|f| now.saturating_sub(f.since) > LIFETIME_S) {
                table.remove(&key);
                None
            } else {
                if !fragment.more {
                    table.remove(&key);
                }
                found
            }
        };
        let Some(f) = followed else {
            // The router's own: its first went to the kernel too.
            return if self.is_router_address6(frame.dst, ctx) {
                Verdict::Kernel(KernelReason::RouterTraffic)
            } else {
                Verdict::Drop(DropReason::Ipv6Fragment)
            };
        };
        if frame.hop_limit <= 1 {
            return Verdict::Drop(DropReason::HopLimitExpired6);
        }
        if frame.end - crate::packet::L3_OFFSET > usize::from(self.mtu(f.port)) {
            return Verdict::Drop(DropReason::TooBig);
        }
        let Some(mut out) = Ipv6Frame::new_checked(&mut *buf) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        out.set_macs(f.src_mac, f.dst_mac);
        out.set_src(f.src);
        out.set_dst(f.dst);
        out.set_hop_limit(frame.hop_limit - 1);
        Verdict::Forward {
            port: f.port,
            len: frame.end,
        }
    }
}

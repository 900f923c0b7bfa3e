//! The established fast path: a whole TCP or UDP packet of a known flow,
//! read at fixed offsets (`packet::parse_plain`), its flow found, checked
//! and recorded in one closure under one shard read lock, and rewritten in
//! one pass with the checksum deltas the flow keeps. It takes a frame only
//! when the general path would forward it unchanged in kind (same flow, same
//! egress, no fragmentation, no ICMP answer, nothing held) and declines
//! (None) before recording anything otherwise, so the general path then
//! sees the frame as if the fast path did not exist. Tests in
//! `tests/core/established.rs` hold the two paths byte-identical.

use super::flows::record;
use super::{key_of, FrameContext, Router};
use crate::flow::{FlowKind, Side};
use crate::packet::{self, L3_OFFSET};
use crate::verdict::{Port, Verdict};

impl Router {
    /// The verdict for `buf` when the fast path takes it, its bytes
    /// rewritten; None (nothing changed, nothing recorded) otherwise.
    pub(super) fn established(&self, buf: &mut [u8], ctx: &FrameContext) -> Option<Verdict> {
        if ctx.meta.gso.is_some() || ctx.meta.checksum_partial {
            return None;
        }
        let frame = packet::parse_plain(buf)?;
        // The general path's classification, for the one outcome taken here:
        // from the LAN, a LAN host to neither the LAN nor a WAN address;
        // from a WAN, a non-LAN source to a WAN address.
        let side = match ctx.meta.port {
            Port::Lan => {
                let plain = self.is_lan(frame.src)
                    && !self.is_lan(frame.dst)
                    && self.uplink_with_address(frame.dst).is_none();
                plain.then_some(Side::Lan)?
            }
            Port::Wan(_) => {
                let plain =
                    self.uplink_with_address(frame.dst).is_some() && !self.is_lan(frame.src);
                plain.then_some(Side::Wan)?
            }
        };
        let key = key_of(&frame);
        let timeouts = self.timeouts.get();
        let (egress, deltas) = self
            .table
            .with_flow(side, &key, |flow| {
                let spec = &flow.spec;
                if flow.is_expired(ctx.now, &timeouts)
                    || matches!(spec.kind, FlowKind::Hairpin { .. })
                {
                    return None;
                }
                let egress = match side {
                    Side::Lan => self.egress_to_remote(spec).ok()?,
                    Side::Wan => self.egress_to_inside(spec),
                };
                if frame.end - L3_OFFSET > usize::from(self.mtu(egress.port)) {
                    return None;
                }
                record(flow, side, &frame, ctx.now);
                Some((egress, flow.deltas[side as usize]))
            })
            .flatten()?;
        packet::apply_established(buf, &frame, &egress.rewrite, deltas);
        Some(Verdict::Forward {
            port: egress.port,
            len: frame.end,
        })
    }
}

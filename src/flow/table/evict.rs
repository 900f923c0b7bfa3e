//! Early drop, as conntrack's: when the table is full, flows that were never
//! answered (TCP not established: a lone SYN, or one already reset or
//! closed; UDP or ICMP with nothing back from the peer of whoever opened
//! it) make room for new ones, the oldest first. Established flows and
//! answered UDP are never evicted, so a flood of connection attempts is
//! pushed out by the next new flows within seconds. Neither is a flow whose
//! entries are in the fast path's map (one closed with a FIN or RST, until
//! the next sync takes them out): a flow leaves the map before it is freed.

use std::sync::atomic::Ordering;

use super::{Flow, FlowTable, Removed};
use crate::flow::{tcp_state, FlowKind, Side};
use crate::packet::{Family, PROTO_TCP};

impl<A: Family> Flow<A> {
    /// Never answered: see the module's documentation.
    pub fn is_unanswered(&self) -> bool {
        if self.spec.protocol == PROTO_TCP {
            return !tcp_state::is_established(self.tcp.load(Ordering::Relaxed));
        }
        let responder = match self.spec.kind {
            FlowKind::Dnat => Side::Lan,
            FlowKind::Snat | FlowKind::Hairpin { .. } => Side::Wan,
        };
        self.packets[responder as usize].load(Ordering::Relaxed) == 0
    }
}

impl<A: Family> FlowTable<A> {
    /// Removes up to `want` unanswered flows, the oldest of a shard first,
    /// visiting the shards in turn from where the last call stopped. When a
    /// visit of every shard finds none, further calls in the same second
    /// (`now`) return at once: a table full of established flows costs one
    /// scan a second, not one per refused packet.
    pub fn evict_unanswered(&self, now: u32, want: usize) -> Vec<Removed<A>> {
        if want == 0 || self.fruitless_scan.load(Ordering::Relaxed) == now {
            return Vec::new();
        }
        let newest = self.inserts.load(Ordering::Relaxed) as u32;
        let shards = self.shards.len();
        let start = self.evict_cursor.load(Ordering::Relaxed) % shards;
        let mut removed = Vec::new();
        for at in (start..shards).chain(0..start) {
            let mut shard = Self::write(&self.shards[at]);
            // (inserts since it was inserted, slot): largest first is oldest first.
            let mut unanswered: Vec<(u32, usize)> = shard
                .slab
                .iter()
                .enumerate()
                .filter_map(|(slot, flow)| {
                    let flow = flow
                        .as_ref()
                        .filter(|f| f.is_unanswered() && !f.offloaded.load(Ordering::Relaxed))?;
                    Some((newest.wrapping_sub(flow.opened), slot))
                })
                .collect();
            unanswered.sort_unstable_by(|a, b| b.cmp(a));
            for (_, slot) in unanswered.into_iter().take(want - removed.len()) {
                let Some(last) = shard.slab[slot].as_ref().map(Flow::last_state) else {
                    continue;
                };
                if shard.remove(&self.hasher, slot).is_some() {
                    removed.push(last);
                }
            }
            if removed.len() >= want {
                self.evict_cursor.store(at + 1, Ordering::Relaxed);
                break;
            }
        }
        if removed.is_empty() {
            self.fruitless_scan.store(now, Ordering::Relaxed);
        }
        self.removed(removed.len());
        self.evictions
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        removed
    }
}

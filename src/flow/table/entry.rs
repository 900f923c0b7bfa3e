//! One flow in the table's slab: its spec, precomputed checksum deltas and
//! the per-packet state updated through atomics under the shard's read lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::{FlowInfo, Removed};
use crate::config::Timeouts;
use crate::flow::{idle_timeout, FlowSpec, Side};
use crate::packet::{Addr4, ChecksumDeltas, Family};

/// One flow in the slab.
#[derive(Debug)]
pub struct Flow<A = Addr4> {
    pub spec: FlowSpec<A>,
    /// [`FlowSpec::checksum_deltas`] for packets from the LAN side and from
    /// the WAN side, computed once when the flow is made.
    pub deltas: [ChecksumDeltas; 2],
    /// Seconds, on the router's clock.
    pub created: u32,
    pub last_seen: AtomicU32,
    /// [`tcp_state`] flags.
    pub tcp: AtomicU8,
    /// Packets and bytes that arrived from the LAN side and from the WAN side.
    pub packets: [AtomicU64; 2],
    pub bytes: [AtomicU64; 2],
    /// TCP: the sequence number the LAN host expects next from the remote
    /// end (the highest seen from the WAN side), for an RST on failover.
    pub next_seq_to_lan: AtomicU32,
    /// Entries of it are in the in-kernel fast path's map (set before they
    /// go in, cleared once they are out): early drop passes it by.
    pub offloaded: AtomicBool,
    /// The table's insert count when it was inserted: the order of
    /// insertion, finer than `created`, for early drop (`evict.rs`).
    pub(super) opened: u32,
}

impl<A: Family> Flow<A> {
    pub(super) fn new(spec: FlowSpec<A>, now: u32) -> Flow<A> {
        Flow {
            opened: 0,
            spec,
            deltas: [Side::Lan, Side::Wan].map(|side| spec.checksum_deltas(side)),
            created: now,
            last_seen: AtomicU32::new(now),
            tcp: AtomicU8::new(0),
            packets: [AtomicU64::new(0), AtomicU64::new(0)],
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            next_seq_to_lan: AtomicU32::new(0),
            offloaded: AtomicBool::new(false),
        }
    }

    /// Idle for longer than its timer at `now`.
    pub fn is_expired(&self, now: u32, timeouts: &Timeouts) -> bool {
        let idle = now.saturating_sub(self.last_seen.load(Ordering::Relaxed));
        idle > idle_timeout(
            self.spec.protocol,
            self.tcp.load(Ordering::Relaxed),
            timeouts,
        )
    }

    /// What is kept of it once it leaves the table.
    pub(super) fn last_state(&self) -> Removed<A> {
        Removed {
            spec: self.spec,
            tcp: self.tcp.load(Ordering::Relaxed),
            next_seq_to_lan: self.next_seq_to_lan.load(Ordering::Relaxed),
        }
    }

    pub(super) fn info(&self, now: u32) -> FlowInfo<A> {
        FlowInfo {
            spec: self.spec,
            tcp: self.tcp.load(Ordering::Relaxed),
            age_s: now.saturating_sub(self.created),
            idle_s: now.saturating_sub(self.last_seen.load(Ordering::Relaxed)),
            packets: [0, 1].map(|i| self.packets[i].load(Ordering::Relaxed)),
            bytes: [0, 1].map(|i| self.bytes[i].load(Ordering::Relaxed)),
        }
    }
}

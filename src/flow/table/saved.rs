//! The table's half of a restart: every flow copied out as plain data with
//! its times relative to the `now` it is saved at, and put back in the next
//! process, whose clock starts elsewhere.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::{Flow, FlowTable, InsertError};
use crate::flow::FlowSpec;
use crate::packet::{Addr4, Family};

/// A flow as saved: what it is, its TCP tracking (what a failover RST needs
/// included), its counters, and its times as offsets from the save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedFlow<A = Addr4> {
    pub spec: FlowSpec<A>,
    /// [`tcp_state`](crate::flow::tcp_state) flags.
    pub tcp: u8,
    pub next_seq_to_lan: u32,
    /// Seconds since it was created, and since it was last seen.
    pub age_s: u32,
    pub idle_s: u32,
    /// From the LAN side, from the WAN side.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

impl<A: Family> Flow<A> {
    fn saved(&self, now: u32) -> SavedFlow<A> {
        SavedFlow {
            spec: self.spec,
            tcp: self.tcp.load(Ordering::Relaxed),
            next_seq_to_lan: self.next_seq_to_lan.load(Ordering::Relaxed),
            age_s: now.saturating_sub(self.created),
            idle_s: now.saturating_sub(self.last_seen.load(Ordering::Relaxed)),
            packets: [0, 1].map(|i| self.packets[i].load(Ordering::Relaxed)),
            bytes: [0, 1].map(|i| self.bytes[i].load(Ordering::Relaxed)),
        }
    }
}

impl<A: Family> FlowTable<A> {
    /// Every flow, its times relative to `now`.
    pub fn save(&self, now: u32) -> Vec<SavedFlow<A>> {
        let mut out = Vec::with_capacity(self.len() as usize);
        for lock in self.shards.iter() {
            let shard = Self::read(lock);
            out.extend(shard.slab.iter().flatten().map(|flow| flow.saved(now)));
        }
        out
    }

    /// Puts a saved flow back at `now`. Times before this clock's start
    /// (`now` smaller than an offset) become its start: such a flow was
    /// seen at most `now` seconds earlier than it really was.
    pub fn restore(&self, saved: &SavedFlow<A>, now: u32) -> Result<(), InsertError> {
        let spec: FlowSpec<A> = saved.spec;
        let mut shard = Self::write(self.shard_of(spec.protocol, &spec.remote));
        let Ok(vacancy) = shard.vacancy(&self.hasher, &spec) else {
            return self.refuse(InsertError::Clash);
        };
        if !self.reserve() {
            return self.refuse(InsertError::Full);
        }
        let flow = Flow {
            created: now.saturating_sub(saved.age_s),
            last_seen: AtomicU32::new(now.saturating_sub(saved.idle_s)),
            tcp: AtomicU8::new(saved.tcp),
            packets: saved.packets.map(AtomicU64::new),
            bytes: saved.bytes.map(AtomicU64::new),
            next_seq_to_lan: AtomicU32::new(saved.next_seq_to_lan),
            opened: self.inserts.fetch_add(1, Ordering::Relaxed) as u32,
            ..Flow::new(spec, now)
        };
        shard.insert_at(flow, vacancy);
        Ok(())
    }
}

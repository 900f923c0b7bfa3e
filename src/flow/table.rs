//! A concurrent flow table: sharded, each shard an open-addressing index over
//! a slab of flows, behind a reader-writer lock.
//!
//! Both keys of a flow (its LAN-side and WAN-side tuple) share the Internet
//! endpoint, so the shard is chosen by that endpoint and both keys of a flow
//! live in one shard: a lookup takes one read lock, and the per-packet state
//! (last seen, TCP flags, counters) is updated through atomics under it.
//! Inserts and removals take the shard's write lock. The index stores 4 bytes
//! per key (slot and side), so a flow costs its slab entry plus about 16 bytes
//! of index at the default load.
//!
//! Shards start sized for an even spread of flows and grow (doubling, under
//! their write lock) when one holds more: many flows to one Internet endpoint
//! (a DNS resolver, a speed-test server) all land in one shard, and only the
//! table's `max_flows` may refuse them.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{tcp_state, FlowKey, FlowSpec, Side};
use crate::config::Timeouts;
use crate::packet::{Addr4, Endpoint, Family, HashWords};

pub use entry::Flow;

/// The last state of a flow taken out of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed<A = Addr4> {
    pub spec: FlowSpec<A>,
    /// [`tcp_state`] flags.
    pub tcp: u8,
    /// See [`Flow::next_seq_to_lan`].
    pub next_seq_to_lan: u32,
}

/// A copy of a flow for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowInfo<A = Addr4> {
    pub spec: FlowSpec<A>,
    pub tcp: u8,
    pub age_s: u32,
    pub idle_s: u32,
    /// From the LAN side, from the WAN side.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// Why a flow could not be inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its maximum number of flows.
    Full,
    /// Another flow has one of its tuples.
    Clash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub flows: u32,
    pub max_flows: u32,
    pub inserts: u64,
    pub expiries: u64,
    pub refusals: u64,
    /// Unanswered flows evicted to make room for new ones (early drop).
    pub evictions: u64,
}

/// An index entry: 0 is empty, otherwise `(slot << 1 | side) + 1`.
type Bucket = u32;

struct Shard<A> {
    buckets: Vec<Bucket>,
    mask: usize,
    slab: Vec<Option<Flow<A>>>,
    free: Vec<u32>,
    live: u32,
    capacity: u32,
}

/// Index buckets for `capacity` flows (two keys each) at a load of 3/4 at most.
fn bucket_count(capacity: u32) -> usize {
    (capacity as usize * 2 * 4 / 3 + 1)
        .next_power_of_two()
        .max(8)
}

impl<A: Family> Shard<A> {
    fn new(capacity: u32) -> Shard<A> {
        let buckets = bucket_count(capacity);
        Shard {
            buckets: vec![0; buckets],
            mask: buckets - 1,
            slab: Vec::with_capacity(capacity as usize),
            free: Vec::new(),
            live: 0,
            capacity,
        }
    }

    /// The bucket `key` on `side` probes from.
    fn home(&self, hasher: &KeyHasher, side: Side, key: &FlowKey<A>) -> usize {
        hasher.bucket(side, key) as usize & self.mask
    }

    fn find(&self, hasher: &KeyHasher, side: Side, key: &FlowKey<A>) -> Option<usize> {
        self.probe(hasher, side, key).ok()
    }

    /// The slot of the flow `key` on `side` belongs to, or the empty bucket
    /// that ended the search (where the key would be indexed).
    #[inline]
    fn probe(&self, hasher: &KeyHasher, side: Side, key: &FlowKey<A>) -> Result<usize, usize> {
        let mut at = self.home(hasher, side, key);
        loop {
            let bucket = self.buckets[at];
            if bucket == 0 {
                return Err(at);
            }
            let (slot, bucket_side) = decode(bucket);
            if bucket_side == side {
                if let Some(flow) = &self.slab[slot] {
                    if flow.spec.key(side) == *key {
                        return Ok(slot);
                    }
                }
            }
            at = (at + 1) & self.mask;
        }
    }

    fn index(&mut self, hasher: &KeyHasher, side: Side, key: &FlowKey<A>, slot: usize) {
        let home = self.home(hasher, side, key);
        self.index_from(home, side, slot);
    }

    /// Indexes `slot` on `side` in the first empty bucket from `at`.
    fn index_from(&mut self, mut at: usize, side: Side, slot: usize) {
        while self.buckets[at] != 0 {
            at = (at + 1) & self.mask;
        }
        self.buckets[at] = encode(slot, side);
    }

    /// Removes `key`'s index entry, shifting later entries back so no probe
    /// sequence is broken (no tombstones).
    fn unindex(&mut self, hasher: &KeyHasher, side: Side, key: &FlowKey<A>, slot: usize) {
        let wanted = encode(slot, side);
        let mut hole = self.home(hasher, side, key);
        while self.buckets[hole] != wanted {
            hole = (hole + 1) & self.mask;
        }
        let mut next = (hole + 1) & self.mask;
        while self.buckets[next] != 0 {
            let (other_slot, other_side) = decode(self.buckets[next]);
            let home = match &self.slab[other_slot] {
                Some(flow) => self.home(hasher, other_side, &flow.spec.key(other_side)),
                None => next,
            };
            // The entry at `next` may fill the hole unless its home lies
            // cyclically in (hole, next].
            let home_after_hole = (home.wrapping_sub(hole) & self.mask) != 0
                && (home.wrapping_sub(hole) & self.mask) <= (next.wrapping_sub(hole) & self.mask);
            if !home_after_hole {
                self.buckets[hole] = self.buckets[next];
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.buckets[hole] = 0;
    }

    /// Doubles the capacity and rebuilds the index.
    fn grow(&mut self, hasher: &KeyHasher) {
        self.capacity = self.capacity.saturating_mul(2);
        let buckets = bucket_count(self.capacity);
        self.buckets = vec![0; buckets];
        self.mask = buckets - 1;
        let live: Vec<(usize, FlowKey<A>, FlowKey<A>)> = self
            .slab
            .iter()
            .enumerate()
            .filter_map(|(slot, flow)| {
                flow.as_ref()
                    .map(|f| (slot, f.spec.lan_key(), f.spec.wan_key()))
            })
            .collect();
        for (slot, lan, wan) in live {
            self.index(hasher, Side::Lan, &lan, slot);
            self.index(hasher, Side::Wan, &wan, slot);
        }
    }

    /// Where a flow with `spec`'s keys goes, the shard grown first when it
    /// is full (a growth moves every bucket): the empty buckets that ended
    /// both keys' searches, or (Err) the slots holding either key already.
    fn vacancy(
        &mut self,
        hasher: &KeyHasher,
        spec: &FlowSpec<A>,
    ) -> Result<(usize, usize), (Option<usize>, Option<usize>)> {
        if self.live >= self.capacity {
            self.grow(hasher);
        }
        match (
            self.probe(hasher, Side::Lan, &spec.lan_key()),
            self.probe(hasher, Side::Wan, &spec.wan_key()),
        ) {
            (Err(lan), Err(wan)) => Ok((lan, wan)),
            (lan, wan) => Err((lan.ok(), wan.ok())),
        }
    }

    /// Inserts `flow` at the buckets [`Shard::vacancy`] found for it, the
    /// shard unchanged since: no key is hashed or searched again.
    fn insert_at(&mut self, flow: Flow<A>, (lan, wan): (usize, usize)) -> usize {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(flow);
                slot as usize
            }
            None => {
                self.slab.push(Some(flow));
                self.slab.len() - 1
            }
        };
        self.index_from(lan, Side::Lan, slot);
        // From its own bucket on: the LAN key may have taken it.
        self.index_from(wan, Side::Wan, slot);
        self.live += 1;
        slot
    }

    fn remove(&mut self, hasher: &KeyHasher, slot: usize) -> Option<FlowSpec<A>> {
        let spec = self.slab[slot].as_ref()?.spec;
        self.unindex(hasher, Side::Lan, &spec.lan_key(), slot);
        self.unindex(hasher, Side::Wan, &spec.wan_key(), slot);
        self.slab[slot] = None;
        self.free.push(slot as u32);
        self.live -= 1;
        Some(spec)
    }
}

fn encode(slot: usize, side: Side) -> Bucket {
    ((slot as u32) << 1 | side as u32) + 1
}

fn decode(bucket: Bucket) -> (usize, Side) {
    let value = bucket - 1;
    let side = if value & 1 == 0 { Side::Lan } else { Side::Wan };
    ((value >> 1) as usize, side)
}

/// An odd constant (2^64 over the golden ratio) whose product spreads each
/// bit of a word over the bits above it.
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

/// Keyed hashes of tuples (the key is random per table, so a sender cannot
/// choose tuples that collide).
struct KeyHasher {
    seeds: [u64; 6],
}

impl KeyHasher {
    fn new() -> KeyHasher {
        let state = RandomState::new();
        KeyHasher {
            seeds: [1u64, 2, 3, 4, 5, 6].map(|i| state.hash_one(i)),
        }
    }

    /// A keyed folded multiply, then a multiply by an odd constant whose
    /// upper half is folded into its lower half (both bijections: the
    /// collisions stay the keyed multiply's). The low bits of a product
    /// depend only on the low bits of its operands, so keys that differ in a
    /// port alone (many flows to one endpoint, all in one shard) share much
    /// of a bare folded multiply's low bits: with a shift-and-xor alone as
    /// the last step, one table in about 250 (its random keys) still piled
    /// them into probe runs of 7 buckets on average, where 1.2 is the norm.
    /// The second multiply spreads every bit of the first into the upper
    /// half, which the last fold brings down into the bucket index.
    fn mix(&self, a: u64, b: u64, seed: usize) -> u64 {
        let product = u128::from(a ^ self.seeds[seed]) * u128::from(b ^ self.seeds[seed + 1]);
        let folded = ((product as u64) ^ ((product >> 64) as u64)).wrapping_mul(SPREAD);
        folded ^ (folded >> 32)
    }

    /// The endpoint in one word: IPv4's address and port as they are (a
    /// bijection); IPv6's address halves through a keyed mix of their own,
    /// then the port.
    #[inline]
    fn endpoint_word<A: Family>(&self, endpoint: &Endpoint<A>) -> u64 {
        match A::hash_words(endpoint) {
            HashWords::One(word) => word,
            HashWords::Three(high, low, port) => self.mix(high, low, 4) ^ u64::from(port),
        }
    }

    /// The hash that picks a shard: the Internet endpoint and the protocol,
    /// common to both keys of a flow.
    fn shard<A: Family>(&self, protocol: u8, remote: &Endpoint<A>) -> u64 {
        self.mix(self.endpoint_word(remote), u64::from(protocol), 0)
    }

    fn bucket<A: Family>(&self, side: Side, key: &FlowKey<A>) -> u64 {
        let a = self.endpoint_word(&key.src);
        let b = self.endpoint_word(&key.dst) << 9 | u64::from(key.protocol) << 1 | side as u64;
        self.mix(a, b, 2)
    }
}

/// The flow table shared by every worker.
pub struct FlowTable<A = Addr4> {
    shards: Box<[RwLock<Shard<A>>]>,
    shard_mask: usize,
    hasher: KeyHasher,
    count: AtomicU32,
    max_flows: u32,
    inserts: AtomicU64,
    expiries: AtomicU64,
    refusals: AtomicU64,
    evictions: AtomicU64,
    /// Where the next early drop starts looking, and the second of the last
    /// one that found nothing (`evict.rs`).
    evict_cursor: AtomicUsize,
    fruitless_scan: AtomicU32,
}

/// Flows per shard the table aims for at its maximum.
const FLOWS_PER_SHARD: u32 = 4096;

impl<A: Family> FlowTable<A> {
    pub fn new(max_flows: u32) -> FlowTable<A> {
        let max_flows = max_flows.max(1);
        let shards = (max_flows / FLOWS_PER_SHARD)
            .next_power_of_two()
            .clamp(1, 1024);
        let mean = f64::from(max_flows) / shards as f64;
        // Room for the uneven spread of flows over shards (6 standard deviations).
        let per_shard = ((mean + 6.0 * mean.sqrt() + 8.0).ceil() as u32).min(max_flows);
        FlowTable {
            shards: (0..shards)
                .map(|_| RwLock::new(Shard::new(per_shard)))
                .collect(),
            shard_mask: shards as usize - 1,
            hasher: KeyHasher::new(),
            count: AtomicU32::new(0),
            max_flows,
            inserts: AtomicU64::new(0),
            expiries: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
            fruitless_scan: AtomicU32::new(u32::MAX),
        }
    }

    fn shard_of(&self, protocol: u8, remote: &Endpoint<A>) -> &RwLock<Shard<A>> {
        let hash = self.hasher.shard(protocol, remote);
        &self.shards[(hash >> 32) as usize & self.shard_mask]
    }

    fn remote_of(side: Side, key: &FlowKey<A>) -> &Endpoint<A> {
        match side {
            Side::Lan => &key.dst,
            Side::Wan => &key.src,
        }
    }

    fn read(lock: &RwLock<Shard<A>>) -> RwLockReadGuard<'_, Shard<A>> {
        // A poisoned lock only means a thread panicked while holding it; the
        // shard's invariants hold between statements, so keep using it.
        lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(lock: &RwLock<Shard<A>>) -> RwLockWriteGuard<'_, Shard<A>> {
        lock.write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the flow that `key` arriving on `side` belongs to.
    pub fn with_flow<R>(
        &self,
        side: Side,
        key: &FlowKey<A>,
        f: impl FnOnce(&Flow<A>) -> R,
    ) -> Option<R> {
        let shard = Self::read(self.shard_of(key.protocol, Self::remote_of(side, key)));
        let slot = shard.find(&self.hasher, side, key)?;
        shard.slab[slot].as_ref().map(f)
    }

    /// Inserts a new flow and runs `first` on it (its first packet), under
    /// the same lock: no second lookup. When another worker inserted the
    /// same flow first (both keys equal), `first` runs on that flow, its spec
    /// is returned and nothing is inserted: `Ok(existing)` differs from
    /// `spec` only then.
    pub fn insert(
        &self,
        spec: FlowSpec<A>,
        now: u32,
        first: impl FnOnce(&Flow<A>),
    ) -> Result<FlowSpec<A>, InsertError> {
        let lock = self.shard_of(spec.protocol, &spec.remote);
        let mut shard = Self::write(lock);
        let vacancy = match shard.vacancy(&self.hasher, &spec) {
            Ok(vacancy) => vacancy,
            Err((Some(a), Some(b))) if a == b => {
                if let Some(existing) = &shard.slab[a] {
                    first(existing);
                    return Ok(existing.spec);
                }
                return self.refuse(InsertError::Clash);
            }
            Err(_) => return self.refuse(InsertError::Clash),
        };
        if !self.reserve() {
            return self.refuse(InsertError::Full);
        }
        let mut flow = Flow::new(spec, now);
        flow.opened = self.inserts.fetch_add(1, Ordering::Relaxed) as u32;
        let slot = shard.insert_at(flow, vacancy);
        if let Some(flow) = &shard.slab[slot] {
            first(flow);
        }
        Ok(spec)
    }

    fn refuse<T>(&self, error: InsertError) -> Result<T, InsertError> {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        Err(error)
    }

    fn reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_flows).then_some(n + 1)
            })
            .is_ok()
    }

    /// Removes the flow `key` on `side` belongs to if it has expired at `now`.
    pub fn remove_if_expired(
        &self,
        side: Side,
        key: &FlowKey<A>,
        now: u32,
        timeouts: &Timeouts,
    ) -> Option<FlowSpec<A>> {
        let mut shard = Self::write(self.shard_of(key.protocol, Self::remote_of(side, key)));
        let slot = shard.find(&self.hasher, side, key)?;
        if !shard.slab[slot].as_ref()?.is_expired(now, timeouts) {
            return None;
        }
        let removed = shard.remove(&self.hasher, slot);
        self.removed(1);
        removed
    }

    /// Removes every flow `doomed` says yes to.
    pub fn remove_where(&self, mut doomed: impl FnMut(&Flow<A>) -> bool) -> Vec<Removed<A>> {
        let mut removed = Vec::new();
        for lock in self.shards.iter() {
            let mut shard = Self::write(lock);
            for slot in 0..shard.slab.len() {
                let Some(flow) = shard.slab[slot].as_ref().filter(|f| doomed(f)) else {
                    continue;
                };
                let last = flow.last_state();
                if shard.remove(&self.hasher, slot).is_some() {
                    removed.push(last);
                }
            }
        }
        self.removed(removed.len());
        removed
    }

    /// Removes every flow idle for longer than its timer at `now`.
    pub fn expire(&self, now: u32, timeouts: &Timeouts) -> Vec<Removed<A>> {
        let removed = self.remove_where(|flow| flow.is_expired(now, timeouts));
        self.expiries
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        removed
    }

    fn removed(&self, n: usize) {
        self.count.fetch_sub(n as u32, Ordering::AcqRel);
    }

    /// Copies of the flows `keep` says yes to, at most `limit`.
    pub fn snapshot(
        &self,
        now: u32,
        limit: usize,
        keep: impl Fn(&FlowSpec<A>) -> bool,
    ) -> Vec<FlowInfo<A>> {
        let mut out = Vec::new();
        for lock in self.shards.iter() {
            let shard = Self::read(lock);
            for flow in shard.slab.iter().flatten() {
                if out.len() >= limit {
                    return out;
                }
                if keep(&flow.spec) {
                    out.push(flow.info(now));
                }
            }
        }
        out
    }

    /// What `pick` makes of each flow it picks (under each shard's read
    /// lock in turn; nothing is copied for the flows it passes over).
    pub fn scan<R>(&self, mut pick: impl FnMut(&Flow<A>) -> Option<R>) -> Vec<R> {
        let mut out = Vec::new();
        for lock in self.shards.iter() {
            let shard = Self::read(lock);
            out.extend(shard.slab.iter().flatten().filter_map(&mut pick));
        }
        out
    }

    pub fn len(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            flows: self.len(),
            max_flows: self.max_flows,
            inserts: self.inserts.load(Ordering::Relaxed),
            expiries: self.expiries.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Records a packet of `flow` from `side`: counters, last seen (unless the
    /// packet must not refresh the mapping) and TCP flags.
    pub fn touch(flow: &Flow<A>, side: Side, bytes: usize, now: u32, refresh: bool, tcp_flags: u8) {
        let i = side as usize;
        // Adds, not a load and a store: the offload thread credits what the
        // in-kernel fast path forwarded to these counters too.
        flow.packets[i].fetch_add(1, Ordering::Relaxed);
        flow.bytes[i].fetch_add(bytes as u64, Ordering::Relaxed);
        if refresh && flow.last_seen.load(Ordering::Relaxed) != now {
            flow.last_seen.store(now, Ordering::Relaxed);
        }
        if tcp_flags != 0 && flow.tcp.load(Ordering::Relaxed) & tcp_flags != tcp_flags {
            flow.tcp.fetch_or(tcp_flags, Ordering::Relaxed);
        }
    }

    /// Records a TCP segment from the WAN side: the LAN host will expect
    /// `seq + seq_len` next, unless it has seen further already.
    pub fn track_seq_to_lan(flow: &Flow<A>, seq: u32, seq_len: u32) {
        let next = seq.wrapping_add(seq_len);
        let known = flow.next_seq_to_lan.load(Ordering::Relaxed);
        // Serial-number comparison (RFC 1982): `next` is ahead of `known`.
        if known == 0 || (next.wrapping_sub(known) as i32) > 0 {
            flow.next_seq_to_lan.store(next, Ordering::Relaxed);
        }
    }
}

/// The TCP state flags a segment with these flags sets, arriving from `side`.
pub fn tcp_flags_for(side: Side, syn: bool, fin: bool, rst: bool) -> u8 {
    let (syn_bit, fin_bit) = match side {
        Side::Lan => (tcp_state::SYN_FROM_LAN, tcp_state::FIN_FROM_LAN),
        Side::Wan => (tcp_state::SYN_FROM_WAN, tcp_state::FIN_FROM_WAN),
    };
    (if syn { syn_bit } else { 0 })
        | (if fin { fin_bit } else { 0 })
        | (if rst { tcp_state::RST } else { 0 })
}

mod entry;
mod evict;
mod saved;

pub use saved::SavedFlow;

#[cfg(test)]
mod tests;

//! The fast path's maps as bytes: keys, entries and per-CPU counters laid
//! out as the C side declares them (offload.bpf.h), and their reads and writes.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::flow::FlowKey;
use crate::io::sys;
use crate::router::OffloadEntry;

/// Entries the map holds (two per flow); matches MAX_OFFLOAD on the C side.
pub const MAX_ENTRIES: u32 = 65536;

/// `struct offload_key`: ingress ifindex, then the tuple in network order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryKey([u8; KEY_LEN]);

const KEY_LEN: usize = 20;

impl EntryKey {
    pub fn new(ifindex: u32, key: &FlowKey) -> EntryKey {
        let mut bytes = [0u8; KEY_LEN];
        bytes[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        bytes[4..8].copy_from_slice(&key.src.addr);
        bytes[8..12].copy_from_slice(&key.dst.addr);
        bytes[12..14].copy_from_slice(&key.src.port.to_be_bytes());
        bytes[14..16].copy_from_slice(&key.dst.port.to_be_bytes());
        bytes[16] = key.protocol;
        EntryKey(bytes)
    }
}

/// `struct offload_entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryValue([u8; 40]);

impl EntryValue {
    /// The entry out `egress_ifindex`; `track_seq` for TCP towards the LAN.
    pub fn new(egress_ifindex: u32, entry: &OffloadEntry, track_seq: bool) -> EntryValue {
        let mut b = [0u8; 40];
        b[0..4].copy_from_slice(&egress_ifindex.to_ne_bytes());
        b[4..10].copy_from_slice(&entry.src_mac);
        b[10..16].copy_from_slice(&entry.dst_mac);
        b[16..20].copy_from_slice(&entry.src.addr);
        b[20..24].copy_from_slice(&entry.dst.addr);
        b[24..26].copy_from_slice(&entry.src.port.to_be_bytes());
        b[26..28].copy_from_slice(&entry.dst.port.to_be_bytes());
        // The deltas as the checksum fields hold them: network order.
        b[28..30].copy_from_slice(&entry.ip_delta.to_be_bytes());
        b[30..32].copy_from_slice(&entry.pseudo_delta.to_be_bytes());
        b[32..34].copy_from_slice(&entry.port_delta.to_be_bytes());
        b[34..36].copy_from_slice(&entry.mtu.to_ne_bytes());
        b[36..40].copy_from_slice(&u32::from(track_seq).to_ne_bytes());
        EntryValue(b)
    }
}

/// `struct offload_stats` summed over the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
    /// The sequence number the CPU that noted one last noted (the furthest
    /// of those that noted one at the same time); 0: none. A CPU the flow
    /// left long ago may hold one more than 2^31 behind, which would look
    /// ahead in RFC 1982 order.
    pub next_seq: u32,
    /// When it was noted (`bpf_ktime_get_ns() >> 20`, wrapping).
    pub seq_stamp: u32,
}

const STATS_LEN: usize = 24;

impl Totals {
    fn add(&mut self, cpu: &[u8]) {
        let Some(bytes) = cpu.get(..STATS_LEN) else {
            return;
        };
        let word = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        self.packets += word(0);
        self.bytes += word(8);
        let half = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let (seq, stamp) = (half(16), half(20));
        if seq == 0 {
            return;
        }
        let later = |a: u32, b: u32| (a.wrapping_sub(b) as i32) > 0;
        if self.next_seq == 0
            || later(stamp, self.seq_stamp)
            || (stamp == self.seq_stamp && later(seq, self.next_seq))
        {
            self.next_seq = seq;
            self.seq_stamp = stamp;
        }
    }
}

/// Whether a map write failed because the map is full (E2BIG, which
/// libbpf-rs reports as an error of kind Other: its message names it).
pub fn is_full(err: &libbpf_rs::Error) -> bool {
    err.to_string()
        .contains(&format!("os error {}", libc::E2BIG))
}

/// A per-CPU array's u64 at `index`, summed over the CPUs (zero if unreadable).
fn percpu_sum(map: &MapHandle, index: u32) -> u64 {
    match map.lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(cpus)) => cpus
            .iter()
            .filter_map(|cpu| Some(u64::from_ne_bytes(cpu.get(..8)?.try_into().ok()?)))
            .sum(),
        _ => 0,
    }
}

pub struct Maps {
    entries: MapHandle,
    stats: MapHandle,
    /// `offload_lost`: one per-CPU count.
    lost: MapHandle,
    /// `offload_by_xdp`: per-CPU packets the XDP program forwarded itself.
    by_xdp: MapHandle,
    cpus: usize,
}

impl Maps {
    pub fn new(entries: MapHandle, stats: MapHandle, lost: MapHandle, by_xdp: MapHandle) -> Maps {
        let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1);
        Maps {
            entries,
            stats,
            lost,
            by_xdp,
            cpus,
        }
    }

    /// Marked frames TC dropped, summed over the CPUs (zero if unreadable).
    pub fn lost(&self) -> u64 {
        percpu_sum(&self.lost, 0)
    }

    /// Packets the XDP program forwarded, summed over the CPUs (zero if
    /// unreadable).
    pub fn by_xdp(&self) -> u64 {
        percpu_sum(&self.by_xdp, 0)
    }

    /// Installs an entry with its counters at zero (counters first, so the
    /// program always finds them).
    pub fn insert(&self, key: &EntryKey, value: &EntryValue) -> Result<(), libbpf_rs::Error> {
        let zero = vec![vec![0u8; STATS_LEN]; self.cpus];
        self.stats.update_percpu(&key.0, &zero, MapFlags::ANY)?;
        if let Err(e) = self.entries.update(&key.0, &value.0, MapFlags::ANY) {
            // Best effort: the counters of an entry that is not there are never read.
            let _ = self.stats.delete(&key.0);
            return Err(e);
        }
        Ok(())
    }

    /// Rewrites an installed entry in place (its counters go on): the key
    /// never misses in between, as it would between a delete and an insert.
    pub fn replace(&self, key: &EntryKey, value: &EntryValue) -> Result<(), libbpf_rs::Error> {
        self.entries.update(&key.0, &value.0, MapFlags::EXIST)
    }

    /// Removes an entry; its counters stay until [`Maps::take_totals`].
    pub fn remove(&self, key: &EntryKey) -> Result<(), libbpf_rs::Error> {
        self.entries.delete(&key.0)
    }

    /// The counters of an entry, summed over the CPUs (zero if unreadable).
    pub fn totals(&self, key: &EntryKey) -> Totals {
        let mut totals = Totals::default();
        if let Ok(Some(cpus)) = self.stats.lookup_percpu(&key.0, MapFlags::ANY) {
            for cpu in &cpus {
                totals.add(cpu);
            }
        }
        totals
    }

    /// The counters of every entry, summed over the CPUs, read in batches
    /// (a few system calls for the whole map); None if the kernel refuses.
    pub fn all_totals(&self) -> Option<HashMap<EntryKey, Totals>> {
        let (keys, values) = sys::bpf::lookup_batch(
            self.stats.as_fd().as_raw_fd(),
            KEY_LEN,
            STATS_LEN,
            self.cpus,
            4096,
        )
        .ok()?;
        let stride = STATS_LEN.div_ceil(8) * 8;
        let per_key = stride * self.cpus;
        Some(
            keys.chunks_exact(KEY_LEN)
                .zip(values.chunks_exact(per_key))
                .filter_map(|(key, cpus)| {
                    let key = EntryKey(key.try_into().ok()?);
                    let mut totals = Totals::default();
                    for cpu in cpus.chunks_exact(stride) {
                        totals.add(cpu);
                    }
                    Some((key, totals))
                })
                .collect(),
        )
    }

    /// The last counters of a removed entry, deleting them.
    pub fn take_totals(&self, key: &EntryKey) -> Totals {
        let totals = self.totals(key);
        // Best effort: a stale counter is overwritten when the key returns.
        let _ = self.stats.delete(&key.0);
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(packets: u64, seq: u32, stamp: u32) -> Vec<u8> {
        let mut b = vec![0u8; STATS_LEN];
        b[0..8].copy_from_slice(&packets.to_ne_bytes());
        b[16..20].copy_from_slice(&seq.to_ne_bytes());
        b[20..24].copy_from_slice(&stamp.to_ne_bytes());
        b
    }

    #[test]
    fn the_newest_cpus_sequence_wins_over_a_stale_one_that_looks_ahead() {
        // CPU 0 carried the flow long ago; it went on for more than 2^31
        // bytes on CPU 1, so CPU 0's sequence looks ahead in RFC 1982 order.
        let mut totals = Totals::default();
        for c in [cpu(5, 0x10, 100), cpu(9, 0x8000_0020, 5000), cpu(0, 0, 0)] {
            totals.add(&c);
        }
        assert_eq!((totals.packets, totals.next_seq), (14, 0x8000_0020));
        // Noted at the same time on two CPUs: the furthest.
        let mut totals = Totals::default();
        for c in [cpu(1, 2000, 7), cpu(1, 1000, 7)] {
            totals.add(&c);
        }
        assert_eq!(totals.next_seq, 2000);
    }
}

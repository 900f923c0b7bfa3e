//! The fast path's maps as bytes: keys, entries and per-CPU counters laid
//! out as the C side declares them (offload.bpf.h), and their reads and
//! writes. IPv4 and IPv6 have maps of their own (`offload`, `offload6`),
//! with one layout each ([`Layout`]); the counters' layout is shared.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::flow::FlowKey;
use crate::io::sys;
use crate::packet::{Addr4, Addr6};
use crate::router::{OffloadEntry, OffloadFamily};

/// Entries each map holds (two per flow); matches MAX_OFFLOAD on the C side.
pub const MAX_ENTRIES: u32 = 65536;

/// A family's key and entry as the C side lays them out: `struct
/// offload_key` and `struct offload_entry` for IPv4, `struct offload6_key`
/// and `struct offload6_entry` for IPv6.
pub trait Layout: OffloadFamily + AsRef<[u8]> {
    type Key: Copy + Eq + Hash + Debug + AsRef<[u8]> + for<'a> TryFrom<&'a [u8]>;
    type Value: Copy + Eq + Debug + AsRef<[u8]>;

    /// The key of `key`'s packets arriving on `ifindex`.
    fn key(ifindex: u32, key: &FlowKey<Self>) -> Self::Key;

    /// The entry of `entry` out `egress_ifindex`; `track_seq` for TCP
    /// towards the LAN.
    fn value(egress_ifindex: u32, entry: &OffloadEntry<Self>, track_seq: bool) -> Self::Value;
}

/// Writes fields one after the other into a key or an entry.
struct Writer<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, field: &[u8]) -> &mut Self {
        self.bytes[self.at..self.at + field.len()].copy_from_slice(field);
        self.at += field.len();
        self
    }
}

/// Ingress ifindex (host order), then the tuple in network order and 3
/// bytes of padding.
fn write_key<A: OffloadFamily + AsRef<[u8]>>(bytes: &mut [u8], ifindex: u32, key: &FlowKey<A>) {
    Writer { bytes, at: 0 }
        .put(&ifindex.to_ne_bytes())
        .put(key.src.addr.as_ref())
        .put(key.dst.addr.as_ref())
        .put(&key.src.port.to_be_bytes())
        .put(&key.dst.port.to_be_bytes())
        .put(&[key.protocol]);
}

/// The entry's fields in order; IPv4's has the IP header's delta after
/// the ports, IPv6's two bytes of padding after the MTU.
fn write_value<A: OffloadFamily + AsRef<[u8]>>(
    bytes: &mut [u8],
    egress_ifindex: u32,
    entry: &OffloadEntry<A>,
    track_seq: bool,
) {
    let mut w = Writer { bytes, at: 0 };
    w.put(&egress_ifindex.to_ne_bytes())
        .put(&entry.src_mac)
        .put(&entry.dst_mac)
        .put(entry.src.addr.as_ref())
        .put(entry.dst.addr.as_ref())
        .put(&entry.src.port.to_be_bytes())
        .put(&entry.dst.port.to_be_bytes());
    if !A::IS_V6 {
        w.put(&entry.ip_delta.to_be_bytes());
    }
    // The deltas as the checksum fields hold them: network order.
    w.put(&entry.pseudo_delta.to_be_bytes())
        .put(&entry.port_delta.to_be_bytes())
        .put(&entry.mtu.to_ne_bytes());
    if A::IS_V6 {
        w.put(&[0, 0]);
    }
    w.put(&u32::from(track_seq).to_ne_bytes());
}

impl Layout for Addr4 {
    type Key = [u8; 20];
    type Value = [u8; 40];

    fn key(ifindex: u32, key: &FlowKey<Addr4>) -> [u8; 20] {
        let mut bytes = [0u8; 20];
        write_key(&mut bytes, ifindex, key);
        bytes
    }

    fn value(egress_ifindex: u32, entry: &OffloadEntry<Addr4>, track_seq: bool) -> [u8; 40] {
        let mut bytes = [0u8; 40];
        write_value(&mut bytes, egress_ifindex, entry, track_seq);
        bytes
    }
}

impl Layout for Addr6 {
    type Key = [u8; 44];
    type Value = [u8; 64];

    fn key(ifindex: u32, key: &FlowKey<Addr6>) -> [u8; 44] {
        let mut bytes = [0u8; 44];
        write_key(&mut bytes, ifindex, key);
        bytes
    }

    fn value(egress_ifindex: u32, entry: &OffloadEntry<Addr6>, track_seq: bool) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        write_value(&mut bytes, egress_ifindex, entry, track_seq);
        bytes
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

/// One family's maps: its entries and their per-CPU counters.
pub struct Maps<A: Layout> {
    entries: MapHandle,
    stats: MapHandle,
    cpus: usize,
    family: std::marker::PhantomData<A>,
}

impl<A: Layout> Maps<A> {
    pub fn new(entries: MapHandle, stats: MapHandle) -> Maps<A> {
        let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1);
        Maps {
            entries,
            stats,
            cpus,
            family: std::marker::PhantomData,
        }
    }

    /// Installs an entry with its counters at zero (counters first, so the
    /// program always finds them).
    pub fn insert(&self, key: &A::Key, value: &A::Value) -> Result<(), libbpf_rs::Error> {
        let zero = vec![vec![0u8; STATS_LEN]; self.cpus];
        self.stats
            .update_percpu(key.as_ref(), &zero, MapFlags::ANY)?;
        if let Err(e) = self
            .entries
            .update(key.as_ref(), value.as_ref(), MapFlags::ANY)
        {
            // Best effort: the counters of an entry that is not there are never read.
            let _ = self.stats.delete(key.as_ref());
            return Err(e);
        }
        Ok(())
    }

    /// Rewrites an installed entry in place (its counters go on): the key
    /// never misses in between, as it would between a delete and an insert.
    pub fn replace(&self, key: &A::Key, value: &A::Value) -> Result<(), libbpf_rs::Error> {
        self.entries
            .update(key.as_ref(), value.as_ref(), MapFlags::EXIST)
    }

    /// Removes an entry; its counters stay until [`Maps::take_totals`].
    pub fn remove(&self, key: &A::Key) -> Result<(), libbpf_rs::Error> {
        self.entries.delete(key.as_ref())
    }

    /// The counters of an entry, summed over the CPUs (zero if unreadable).
    pub fn totals(&self, key: &A::Key) -> Totals {
        let mut totals = Totals::default();
        if let Ok(Some(cpus)) = self.stats.lookup_percpu(key.as_ref(), MapFlags::ANY) {
            for cpu in &cpus {
                totals.add(cpu);
            }
        }
        totals
    }

    /// The counters of every entry, summed over the CPUs, read in batches
    /// (a few system calls for the whole map); None if the kernel refuses.
    pub fn all_totals(&self) -> Option<HashMap<A::Key, Totals>> {
        let key_len = size_of::<A::Key>();
        let (keys, values) = sys::bpf::lookup_batch(
            self.stats.as_fd().as_raw_fd(),
            key_len,
            STATS_LEN,
            self.cpus,
            4096,
        )
        .ok()?;
        let stride = STATS_LEN.div_ceil(8) * 8;
        let per_key = stride * self.cpus;
        Some(
            keys.chunks_exact(key_len)
                .zip(values.chunks_exact(per_key))
                .filter_map(|(key, cpus)| {
                    let key = A::Key::try_from(key).ok()?;
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
    pub fn take_totals(&self, key: &A::Key) -> Totals {
        let totals = self.totals(key);
        // Best effort: a stale counter is overwritten when the key returns.
        let _ = self.stats.delete(key.as_ref());
        totals
    }
}

/// The per-CPU counts both families share: marked frames TC dropped
/// (`offload_lost`) and packets the XDP program forwarded itself
/// (`offload_by_xdp`).
pub struct SharedCounts {
    pub lost: MapHandle,
    pub by_xdp: MapHandle,
}

impl SharedCounts {
    /// Marked frames TC dropped, summed over the CPUs (zero if unreadable).
    pub fn lost(&self) -> u64 {
        percpu_sum(&self.lost, 0)
    }

    /// Packets the XDP program forwarded, summed over the CPUs (zero if
    /// unreadable).
    pub fn by_xdp(&self) -> u64 {
        percpu_sum(&self.by_xdp, 0)
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

//! Fragments (RFC 4787 REQ-14). Only the first fragment carries the
//! transport header, so it is translated with its flow like any packet, and
//! how it was translated (egress port, MACs, addresses) is remembered under
//! (port it came in by, source, destination, protocol, IP identification).
//! The later fragments of that packet get the same addresses, MACs and port;
//! only their IP header changes. A first fragment the core leaves to the
//! kernel is remembered too (the router's own traffic, a bypass rule), and
//! its later fragments go to the kernel after it.
//!
//! The table is bounded: at most [`MAX_ENTRIES`], each living [`LIFETIME`]
//! from its first fragment; when it is full the oldest entry makes room for
//! a translated packet (a packet of the kernel's is then not remembered).
//! Unfragmented traffic never touches it, so a fragment flood costs only
//! fragments.
//!
//! A later fragment that arrives before its first one (RFC 791 lets the
//! network reorder them) is held: a copy kept under its key until the first
//! fragment comes, then translated and sent after it. Held fragments are
//! bounded by [`MAX_HELD`] frames and [`MAX_HELD_BYTES`] bytes over every key
//! (one more is dropped, `fragment_hold_full`) and by [`LIFETIME`] (one whose
//! first fragment has not come by then is dropped, `fragment_timeout`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::{lock, Egress, KernelReason, Port};
use crate::packet::Frame;

/// The most packets whose fragments are followed at once.
pub const MAX_ENTRIES: usize = 4096;

/// How long the later fragments of a packet are recognised after its first.
pub const LIFETIME: Duration = Duration::from_secs(2);

/// The most later fragments held, over every packet, waiting for their first.
pub const MAX_HELD: usize = 256;

/// The most bytes of frames held waiting for their first fragment.
pub const MAX_HELD_BYTES: usize = 1 << 20;

/// The fragment table's figures for `xwan status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragmentStats {
    /// Packets whose fragments are followed now.
    pub entries: usize,
    /// Entries pushed out by newer ones while the table was full.
    pub evicted: u64,
    /// Later fragments held now, waiting for their first.
    pub held: usize,
}

/// What became of a packet's first fragment, and so becomes of its later ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Translated and sent as this says.
    Translate(Egress),
    /// Left to the kernel, for this reason.
    Kernel(KernelReason),
}

/// A later fragment held until its first fragment comes.
struct Held {
    key: Key,
    frame: Vec<u8>,
    since: Duration,
}

/// What recording a first fragment gives back: the later fragments of its
/// packet that were held, and how many held ones (of any packet) timed out.
#[derive(Default)]
pub struct Released {
    pub frames: Vec<Vec<u8>>,
    pub timed_out: u64,
}

/// Why a later fragment could not be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldFull {
    /// Held ones (of any packet) that timed out meanwhile.
    pub timed_out: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    port: Port,
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    id: u16,
}

impl Key {
    fn of(port: Port, frame: &Frame) -> Key {
        Key {
            port,
            src: frame.src,
            dst: frame.dst,
            protocol: frame.protocol,
            id: frame.ip_id,
        }
    }
}

struct Entry {
    fate: Fate,
    created: Duration,
}

#[derive(Default)]
struct Table {
    entries: HashMap<Key, Entry, ahash::RandomState>,
    /// Keys in the order their entries were made, with that time; a key made
    /// again has a newer record, and the older one is skipped.
    order: VecDeque<(Key, Duration)>,
    evicted: u64,
    /// Oldest first.
    held: VecDeque<Held>,
    held_bytes: usize,
}

impl Table {
    /// Removes the entry of the oldest record, if that record is current.
    fn pop_oldest(&mut self) -> bool {
        let Some((key, created)) = self.order.pop_front() else {
            return false;
        };
        if self.entries.get(&key).is_some_and(|e| e.created == created) {
            self.entries.remove(&key);
            return true;
        }
        false
    }

    fn expire(&mut self, now: Duration) {
        while let Some((_, created)) = self.order.front() {
            if now.saturating_sub(*created) <= LIFETIME {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Drops the held fragments older than [`LIFETIME`]; returns how many.
    fn expire_held(&mut self, now: Duration) -> u64 {
        let mut timed_out = 0;
        while self
            .held
            .front()
            .is_some_and(|h| now.saturating_sub(h.since) > LIFETIME)
        {
            if let Some(h) = self.held.pop_front() {
                self.held_bytes -= h.frame.len();
                timed_out += 1;
            }
        }
        timed_out
    }
}

/// The fragment table shared by every worker.
#[derive(Default)]
pub struct Fragments {
    table: Mutex<Table>,
}

impl Fragments {
    /// Remembers what became of the first fragment `frame`, which came in by
    /// `port`; gives back the later fragments of its packet held so far.
    pub fn first(&self, port: Port, frame: &Frame, fate: Fate, now: Duration) -> Released {
        let key = Key::of(port, frame);
        let mut table = lock(&self.table);
        table.expire(now);
        let mut released = Released {
            frames: Vec::new(),
            timed_out: table.expire_held(now),
        };
        if table.held.iter().any(|h| h.key == key) {
            let (mine, others): (VecDeque<Held>, VecDeque<Held>) =
                table.held.drain(..).partition(|h| h.key == key);
            table.held = others;
            table.held_bytes -= mine.iter().map(|h| h.frame.len()).sum::<usize>();
            released.frames = mine.into_iter().map(|h| h.frame).collect();
        }
        if !table.entries.contains_key(&key) {
            // A packet of the kernel's never pushes out one the core
            // translates: a flood of first fragments to the router cannot
            // take the table from its flows.
            if matches!(fate, Fate::Kernel(_)) && table.entries.len() >= MAX_ENTRIES {
                return released;
            }
            while table.entries.len() >= MAX_ENTRIES && !table.order.is_empty() {
                if table.pop_oldest() {
                    table.evicted += 1;
                }
            }
        }
        // Records of keys made again stay in the queue until they reach its
        // front; bound them too.
        while table.order.len() >= 2 * MAX_ENTRIES {
            table.pop_oldest();
        }
        table.entries.insert(key, Entry { fate, created: now });
        table.order.push_back((key, now));
        released
    }

    /// Holds a copy of the later fragment `frame` (its bytes `bytes`), in by
    /// `port`, until its first fragment comes; how many held ones timed out
    /// meanwhile, or why it cannot be held.
    pub fn hold(
        &self,
        port: Port,
        frame: &Frame,
        bytes: &[u8],
        now: Duration,
    ) -> Result<u64, HoldFull> {
        let mut table = lock(&self.table);
        let timed_out = table.expire_held(now);
        if table.held.len() >= MAX_HELD || table.held_bytes + bytes.len() > MAX_HELD_BYTES {
            return Err(HoldFull { timed_out });
        }
        table.held_bytes += bytes.len();
        table.held.push_back(Held {
            key: Key::of(port, frame),
            frame: bytes.to_vec(),
            since: now,
        });
        Ok(timed_out)
    }

    /// What became of the first fragment of the packet the later fragment
    /// `frame` (in by `port`) belongs to, if it came recently.
    pub fn later(&self, port: Port, frame: &Frame, now: Duration) -> Option<Fate> {
        let table = lock(&self.table);
        let entry = table.entries.get(&Key::of(port, frame))?;
        (now.saturating_sub(entry.created) <= LIFETIME).then_some(entry.fate)
    }

    pub fn stats(&self) -> FragmentStats {
        let table = lock(&self.table);
        FragmentStats {
            entries: table.entries.len(),
            evicted: table.evicted,
            held: table.held.len(),
        }
    }
}

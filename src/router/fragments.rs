//! Fragments (RFC 4787 REQ-14). Only the first fragment carries the
//! transport header, so it is translated with its flow like any packet, and
//! how it was translated (egress port, MACs, addresses) is remembered under
//! (port it came in by, source, destination, protocol, IP identification).
//! The later fragments of that packet get the same addresses, MACs and port;
//! only their IP header changes.
//!
//! The table is bounded: at most [`MAX_ENTRIES`], each living [`LIFETIME`]
//! from its first fragment; when it is full the oldest entry makes room.
//! Unfragmented traffic never touches it, so a fragment flood costs only
//! fragments. A later fragment that arrives before its first one finds no
//! entry and is dropped (`fragment_out_of_order`): the core owns no buffer to
//! hold it in until the first one comes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::{lock, Egress, Port};
use crate::packet::Frame;

/// The most packets whose fragments are followed at once.
pub const MAX_ENTRIES: usize = 4096;

/// How long the later fragments of a packet are recognised after its first.
pub const LIFETIME: Duration = Duration::from_secs(2);

/// The fragment table's figures for `xwan status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragmentStats {
    /// Packets whose fragments are followed now.
    pub entries: usize,
    /// Entries pushed out by newer ones while the table was full.
    pub evicted: u64,
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
    egress: Egress,
    created: Duration,
}

#[derive(Default)]
struct Table {
    entries: HashMap<Key, Entry, ahash::RandomState>,
    /// Keys in the order their entries were made, with that time; a key made
    /// again has a newer record, and the older one is skipped.
    order: VecDeque<(Key, Duration)>,
    evicted: u64,
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
}

/// The fragment table shared by every worker.
#[derive(Default)]
pub struct Fragments {
    table: Mutex<Table>,
}

impl Fragments {
    /// Remembers how the first fragment `frame`, which came in by `port`, was
    /// translated.
    pub fn first(&self, port: Port, frame: &Frame, egress: Egress, now: Duration) {
        let key = Key::of(port, frame);
        let mut table = lock(&self.table);
        table.expire(now);
        if !table.entries.contains_key(&key) {
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
        table.entries.insert(
            key,
            Entry {
                egress,
                created: now,
            },
        );
        table.order.push_back((key, now));
    }

    /// How the first fragment of the packet the later fragment `frame` (in by
    /// `port`) belongs to was translated, if it was, recently.
    pub fn later(&self, port: Port, frame: &Frame, now: Duration) -> Option<Egress> {
        let table = lock(&self.table);
        let entry = table.entries.get(&Key::of(port, frame))?;
        (now.saturating_sub(entry.created) <= LIFETIME).then_some(entry.egress)
    }

    pub fn stats(&self) -> FragmentStats {
        let table = lock(&self.table);
        FragmentStats {
            entries: table.entries.len(),
            evicted: table.evicted,
        }
    }
}

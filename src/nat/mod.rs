//! The SNAT port allocator of one uplink and one protocol.
//!
//! Endpoint-independent mapping (RFC 4787 REQ-1, RFC 5382 REQ-1): an inside
//! endpoint keeps one outside port while any flow uses the mapping. No two
//! inside endpoints ever share an outside port. The inside port is kept when it
//! is in the range and free (port preservation); otherwise a port is chosen from
//! the same class (0-1023 or 1024-65535, RFC 4787 REQ-3) when the range has one.
//!
//! IPv6 needs no ports for this: [`prefix`] maps a LAN prefix onto an
//! uplink's, address by address.

#![forbid(unsafe_code)]

pub mod prefix;

use std::collections::HashMap;

use crate::config::PortRange;
use crate::packet::{Addr4, Endpoint, Family};

#[derive(Debug, Clone, Copy)]
struct Mapping {
    port: u16,
    /// Flows using this mapping.
    users: u32,
}

/// Allocates outside ports from a range for inside endpoints.
#[derive(Debug)]
pub struct PortAllocator<A = Addr4> {
    range: PortRange,
    /// One bit per port number: taken or not.
    taken: Vec<u64>,
    mappings: HashMap<Endpoint<A>, Mapping, ahash::RandomState>,
    /// Where the next search for a free port starts.
    cursor: u16,
}

impl<A: Family> PortAllocator<A> {
    pub fn new(range: PortRange) -> PortAllocator<A> {
        PortAllocator {
            range,
            taken: vec![0; 65536 / 64],
            mappings: HashMap::default(),
            cursor: range.lo,
        }
    }

    /// Outside ports in use.
    pub fn in_use(&self) -> usize {
        self.mappings.len()
    }

    /// The outside port for `inside`, reusing its mapping or creating one; one
    /// more flow now uses it. None when the range has no free port.
    pub fn acquire(&mut self, inside: Endpoint<A>) -> Option<u16> {
        if let Some(mapping) = self.mappings.get_mut(&inside) {
            mapping.users += 1;
            return Some(mapping.port);
        }
        let port = self.pick(inside.port)?;
        self.set_taken(port, true);
        self.mappings.insert(inside, Mapping { port, users: 1 });
        Some(port)
    }

    /// One more flow of `inside` uses outside `port` (a flow restored from a
    /// saved state): reuses its mapping when it is that port, else takes the
    /// port when it is in the range and free. False, taking nothing, when
    /// `inside` is mapped to another port or `port` is not available.
    pub fn acquire_port(&mut self, inside: Endpoint<A>, port: u16) -> bool {
        if let Some(mapping) = self.mappings.get_mut(&inside) {
            if mapping.port != port {
                return false;
            }
            mapping.users += 1;
            return true;
        }
        if !self.range.contains(port) || self.is_taken(port) {
            return false;
        }
        self.set_taken(port, true);
        self.mappings.insert(inside, Mapping { port, users: 1 });
        true
    }

    /// One flow of `inside` ended; the port is freed when it was the last.
    pub fn release(&mut self, inside: Endpoint<A>) {
        if let Some(mapping) = self.mappings.get_mut(&inside) {
            mapping.users -= 1;
            if mapping.users == 0 {
                let port = mapping.port;
                self.mappings.remove(&inside);
                self.set_taken(port, false);
            }
        }
    }

    /// The outside port of `inside`'s mapping, if it has one.
    pub fn mapping(&self, inside: Endpoint<A>) -> Option<u16> {
        self.mappings.get(&inside).map(|m| m.port)
    }

    fn is_taken(&self, port: u16) -> bool {
        self.taken[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    fn set_taken(&mut self, port: u16, taken: bool) {
        let word = &mut self.taken[usize::from(port) / 64];
        if taken {
            *word |= 1 << (port % 64);
        } else {
            *word &= !(1 << (port % 64));
        }
    }

    fn pick(&mut self, wanted: u16) -> Option<u16> {
        if self.range.contains(wanted) && !self.is_taken(wanted) {
            return Some(wanted);
        }
        let low = PortRange { lo: 0, hi: 1023 };
        let class = if low.contains(wanted) {
            low
        } else {
            PortRange {
                lo: 1024,
                hi: 65535,
            }
        };
        let same_class = PortRange {
            lo: self.range.lo.max(class.lo),
            hi: self.range.hi.min(class.hi),
        };
        let port = if same_class.lo <= same_class.hi {
            self.first_free(same_class)
        } else {
            self.first_free(self.range)
        }?;
        self.cursor = if port >= self.range.hi {
            self.range.lo
        } else {
            port + 1
        };
        Some(port)
    }

    /// The first free port in `within` at or after the cursor, wrapping around.
    fn first_free(&self, within: PortRange) -> Option<u16> {
        let start = self.cursor.clamp(within.lo, within.hi);
        self.free_between(start, within.hi)
            .or_else(|| self.free_between(within.lo, start.saturating_sub(1).max(within.lo)))
    }

    fn free_between(&self, lo: u16, hi: u16) -> Option<u16> {
        let mut port = u32::from(lo);
        let hi = u32::from(hi);
        while port <= hi {
            let word = self.taken[port as usize / 64] >> (port % 64);
            if word == u64::MAX >> (port % 64) {
                // Every remaining port of this word is taken: skip to the next word.
                port = (port / 64 + 1) * 64;
                continue;
            }
            let free = port + (!word).trailing_zeros();
            return (free <= hi).then_some(free as u16);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn inside(host: u8, port: u16) -> Endpoint {
        Endpoint::new([192, 168, 50, host], port)
    }

    #[test]
    fn preserves_the_inside_port_when_free() {
        let mut nat = PortAllocator::new(PortRange {
            lo: 20000,
            hi: 59999,
        });
        assert_eq!(nat.acquire(inside(10, 40000)), Some(40000));
        // Another host with the same port gets another one.
        let other = nat.acquire(inside(11, 40000)).unwrap();
        assert_ne!(other, 40000);
        assert!((20000..=59999).contains(&other));
    }

    #[test]
    fn endpoint_independent_mapping_keeps_the_port_while_used() {
        let mut nat = PortAllocator::new(PortRange {
            lo: 20000,
            hi: 20010,
        });
        let first = nat.acquire(inside(10, 5000)).unwrap();
        assert_eq!(nat.acquire(inside(10, 5000)), Some(first));
        nat.release(inside(10, 5000));
        assert_eq!(nat.mapping(inside(10, 5000)), Some(first));
        nat.release(inside(10, 5000));
        assert_eq!(nat.mapping(inside(10, 5000)), None);
        assert_eq!(nat.in_use(), 0);
    }

    #[test]
    fn exhaustion_is_a_clean_refusal() {
        let mut nat = PortAllocator::new(PortRange {
            lo: 30000,
            hi: 30003,
        });
        let ports: Vec<_> = (0..4)
            .map(|i| nat.acquire(inside(10, 1000 + i)).unwrap())
            .collect();
        assert_eq!(nat.acquire(inside(10, 2000)), None);
        assert_eq!(nat.in_use(), 4);
        nat.release(inside(10, 1001));
        assert_eq!(nat.acquire(inside(10, 2000)), Some(ports[1]));
    }

    #[test]
    fn restored_ports_are_taken_once_and_shared_by_one_endpoint() {
        let mut nat = PortAllocator::new(PortRange {
            lo: 20000,
            hi: 20010,
        });
        assert!(nat.acquire_port(inside(10, 5000), 20005));
        assert!(
            nat.acquire_port(inside(10, 5000), 20005),
            "second flow, same mapping"
        );
        assert!(
            !nat.acquire_port(inside(10, 5000), 20006),
            "one endpoint, one port"
        );
        assert!(!nat.acquire_port(inside(11, 5000), 20005), "no overloading");
        assert!(
            !nat.acquire_port(inside(12, 5000), 30000),
            "outside the range"
        );
        assert_ne!(nat.acquire(inside(13, 20005)), Some(20005));
        nat.release(inside(10, 5000));
        nat.release(inside(10, 5000));
        assert_eq!(nat.mapping(inside(10, 5000)), None);
        assert!(nat.acquire_port(inside(11, 5000), 20005));
    }

    #[test]
    fn keeps_the_low_port_class_when_the_range_has_one() {
        let mut nat = PortAllocator::new(PortRange { lo: 1000, hi: 1100 });
        nat.acquire(inside(10, 1010)).unwrap();
        // 1010 is taken: a port from 1000-1023 comes next for a low inside port...
        let low = nat.acquire(inside(11, 1010)).unwrap();
        assert!(low < 1024, "{low}");
        // ...and a high one for a high inside port.
        let high = nat.acquire(inside(12, 5000)).unwrap();
        assert!(high >= 1024, "{high}");
    }

    proptest! {
        /// Live mappings are unique and in range; released ports come back.
        #[test]
        fn allocations_are_unique_in_range_and_reused(
            ops in proptest::collection::vec((0u8..20, 0u16..8, any::<bool>()), 1..400)
        ) {
            let range = PortRange { lo: 40000, hi: 40031 };
            let mut nat = PortAllocator::new(range);
            let mut users: HashMap<Endpoint, u32> = HashMap::new();
            for (host, port, acquire) in ops {
                let who = inside(host, 1024 + port);
                if acquire {
                    match nat.acquire(who) {
                        Some(p) => {
                            prop_assert!(range.contains(p));
                            *users.entry(who).or_default() += 1;
                        }
                        None => prop_assert_eq!(nat.in_use(), range.len() as usize),
                    }
                } else if let Some(n) = users.get_mut(&who) {
                    nat.release(who);
                    *n -= 1;
                    if *n == 0 {
                        users.remove(&who);
                    }
                }
                let live: Vec<u16> = users.keys().map(|e| nat.mapping(*e).unwrap()).collect();
                let unique: HashSet<u16> = live.iter().copied().collect();
                prop_assert_eq!(unique.len(), live.len());
                prop_assert_eq!(nat.in_use(), live.len());
            }
        }
    }
}

//! The inputs of the long runs and the `cargo test` run, when libFuzzer is
//! not driving the harness: the seeds with a few mutations each.

use super::super::rng::Rng;
use super::{seeds, Harness};

/// Byte values that mean something in the headers the core reads: IPv4's,
/// then IPv6's (version, extension headers and ICMPv6, ICMPv6 types, the
/// ethertype).
const INTERESTING: [u8; 27] = [
    0, 1, 2, 3, 5, 6, 8, 11, 12, 17, 0x20, 0x40, 0x45, 0x4f, 0x7f, 0xff, 0x60, 43, 44, 58, 59, 60,
    128, 129, 135, 0x86, 0xdd,
];

/// Next-header values for an IPv6 fixed header: Hop-by-Hop, TCP, UDP,
/// Routing, Fragment, ICMPv6, No Next Header, Destination Options.
const NEXT_HEADERS: [u8; 8] = [0, 6, 17, 43, 44, 58, 59, 60];

/// Mutated seeds: what the long runs and the `cargo test` run feed the
/// harness when libFuzzer is not driving it.
pub struct Mutator {
    rng: Rng,
    seeds: Vec<Vec<u8>>,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            rng: Rng::new(seed),
            seeds: seeds(),
        }
    }

    /// The next input: a seed with one to four mutations, its checksums
    /// repaired three times out of four.
    pub fn next_input(&mut self) -> Vec<u8> {
        let mut input = self.seeds[self.rng.below(self.seeds.len())].clone();
        for _ in 0..=self.rng.below(4) {
            self.mutate(&mut input);
        }
        if self.rng.below(4) != 0 {
            input[0] |= 0xc0;
        }
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let len = input.len();
        match self.rng.below(9) {
            // The control byte: another port, the clock moving.
            0 => input[0] = self.rng.next_u64() as u8,
            1 if len > 1 => {
                let at = 1 + self.rng.below(len - 1);
                input[at] ^= 1 << self.rng.below(8);
            }
            2 if len > 1 => {
                let at = 1 + self.rng.below(len - 1);
                input[at] = INTERESTING[self.rng.below(INTERESTING.len())];
            }
            // A header byte of the outer or a quoted packet.
            3 if len > 1 => {
                let at = 1 + self.rng.below((len - 1).min(90));
                input[at] = self.rng.next_u64() as u8;
            }
            4 if len > 2 => input.truncate(1 + self.rng.below(len - 1)),
            5 => {
                for _ in 0..=self.rng.below(64) {
                    input.push(self.rng.next_u64() as u8);
                }
            }
            // A 16-bit field: lengths, fragment offset, ports, identifiers.
            6 if len > 3 => {
                let at = 1 + self.rng.below(len.min(80) - 2);
                let value = match self.rng.below(4) {
                    0 => 0,
                    1 => 0xffff,
                    2 => self.rng.below(1600) as u16,
                    _ => self.rng.next_u64() as u16,
                };
                input[at..at + 2].copy_from_slice(&value.to_be_bytes());
            }
            // Another seed's tail spliced on.
            7 => {
                let other = &self.seeds[self.rng.below(self.seeds.len())];
                let from = self.rng.below(other.len());
                let at = 1 + self.rng.below(len.max(2) - 1);
                input.truncate(at.min(input.len()));
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                // A byte of the IP header made to say something else: DF,
                // more fragments (the flags of IPv4); the next header of
                // IPv6's fixed header.
                if len > 22 && input[13..15] == [0x86, 0xdd] {
                    input[21] = NEXT_HEADERS[self.rng.below(NEXT_HEADERS.len())];
                } else if len > 22 {
                    let flags = [0x00, 0x20, 0x40, 0x60];
                    input[21] = flags[self.rng.below(4)];
                }
            }
        }
    }
}

/// Runs `frames` mutated inputs from `seed` through a fresh harness, with a
/// drain check at the end; returns the harness for its figures.
pub fn run_mutations(seed: u64, frames: u64) -> Result<Harness, String> {
    let mut harness = Harness::new();
    let mut mutator = Mutator::new(seed);
    for _ in 0..frames {
        let input = mutator.next_input();
        harness.run(&input)?;
    }
    harness.drain()?;
    Ok(harness)
}

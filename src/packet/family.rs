//! The two address families as the core's generic parts see them: an
//! address is `[u8; 4]` or `[u8; 16]`, and this trait says what differs
//! (the ICMP protocol, whether the IP header has a checksum, how an address
//! is hashed and summed). Everything generic over it is instantiated twice,
//! so IPv4 flows pay nothing for IPv6's longer addresses.

use std::fmt::Debug;
use std::hash::Hash;

use super::checksum::{delta16, delta32};
use super::rewrite::{Addr4, Addr6, Endpoint};
use super::{PROTO_ICMP, PROTO_ICMPV6};

/// An address family, implemented by its address type.
pub trait Family: Copy + Eq + Ord + Hash + Debug + Default + Send + Sync + 'static {
    /// Its ICMP's protocol number (`proto = "icmp"` means this one).
    const ICMP: u8;
    const IS_V6: bool;

    /// The address as a number, IPv4 in the low 32 bits.
    fn bits(self) -> u128;

    /// The address folded to 32 bits, for balancing and sticky keys.
    fn folded(self) -> u32 {
        let bits = self.bits();
        (bits ^ bits >> 32 ^ bits >> 64 ^ bits >> 96) as u32
    }

    /// What replacing `old` by `new` adds to a checksum delta (RFC 1624),
    /// unfolded.
    fn delta(old: Self, new: Self) -> u32;

    /// The endpoint as the words a keyed hash mixes: one word for IPv4 (the
    /// address and port together, a bijection), the address halves and the
    /// port for IPv6.
    fn hash_words(endpoint: &Endpoint<Self>) -> HashWords;
}

/// See [`Family::hash_words`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashWords {
    One(u64),
    Three(u64, u64, u16),
}

impl Family for Addr4 {
    const ICMP: u8 = PROTO_ICMP;
    const IS_V6: bool = false;

    fn bits(self) -> u128 {
        u128::from(u32::from_be_bytes(self))
    }

    fn folded(self) -> u32 {
        u32::from_be_bytes(self)
    }

    #[inline]
    fn delta(old: Self, new: Self) -> u32 {
        delta32(old, new)
    }

    #[inline]
    fn hash_words(endpoint: &Endpoint<Self>) -> HashWords {
        HashWords::One(
            u64::from(u32::from_be_bytes(endpoint.addr)) << 16 | u64::from(endpoint.port),
        )
    }
}

impl Family for Addr6 {
    const ICMP: u8 = PROTO_ICMPV6;
    const IS_V6: bool = true;

    fn bits(self) -> u128 {
        u128::from_be_bytes(self)
    }

    #[inline]
    fn delta(old: Self, new: Self) -> u32 {
        (0..8)
            .map(|i| {
                delta16(
                    u16::from_be_bytes([old[2 * i], old[2 * i + 1]]),
                    u16::from_be_bytes([new[2 * i], new[2 * i + 1]]),
                )
            })
            .sum()
    }

    #[inline]
    fn hash_words(endpoint: &Endpoint<Self>) -> HashWords {
        let bits = u128::from_be_bytes(endpoint.addr);
        HashWords::Three((bits >> 64) as u64, bits as u64, endpoint.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::{apply_delta, checksum, fold};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_ipv6_delta_updates_a_checksum_like_a_recomputation(
            old in any::<[u8; 16]>(),
            new in any::<[u8; 16]>(),
            rest in any::<[u8; 8]>(),
        ) {
            let data = |addr: [u8; 16]| [addr.as_slice(), rest.as_slice()].concat();
            let before = checksum(&data(old));
            let updated = apply_delta(before, fold(Addr6::delta(old, new)));
            // 0x0000 and 0xffff are both zero in one's complement.
            let after = checksum(&data(new));
            prop_assert!(updated == after || updated ^ after == 0xffff);
        }
    }
}

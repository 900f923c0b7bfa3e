//! Internet checksums (RFC 1071) and their incremental update (RFC 1624).

use super::parse::PROTO_UDP;
use super::rewrite::Addr6;

/// Adds `data` as big-endian 16-bit words to a running one's-complement sum
/// (an odd trailing byte is padded with zero).
///
/// It adds 32-bit words into a 64-bit accumulator and folds the carries back
/// at the end: the same value modulo 0xffff (which divides 2^32 - 1), in a
/// quarter of the additions.
pub fn sum_bytes(sum: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(sum);
    let mut chunks = data.chunks_exact(4);
    for word in &mut chunks {
        acc += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc as u32
}

/// Folds a 32-bit one's-complement sum into 16 bits (not complemented).
pub fn fold(sum: u32) -> u16 {
    // Two end-around carries: after the first the sum is at most 0x1fffe.
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum of `data` as a header checksum: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_bytes(0, data))
}

/// The sum of the IPv4 pseudo-header for a transport segment.
pub fn pseudo_header_sum(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u32 {
    // The addresses as two 32-bit words, added in 64 bits, then two
    // end-around carries (what `sum_bytes` does, without its loop and tail).
    let acc = u64::from(u32::from_be_bytes(src))
        + u64::from(u32::from_be_bytes(dst))
        + u64::from(proto)
        + u64::from(l4_len);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc as u32
}

/// The sum of the IPv6 pseudo-header (RFC 8200 8.1) for an upper-layer
/// packet of `l4_len` bytes: TCP, UDP and ICMPv6 (unlike ICMPv4) all cover
/// it, so translating an address changes all three checksums.
pub fn pseudo_header_sum6(src: Addr6, dst: Addr6, proto: u8, l4_len: u32) -> u32 {
    // Each address as two 64-bit words, added in 128 bits, then folded to
    // 64 and to 32 bits with end-around carries (2^64 and 2^32 are both 1
    // modulo 0xffff, so every fold keeps the one's-complement sum).
    let halves = |addr: Addr6| {
        let a = u128::from_be_bytes(addr);
        (a >> 64) + u128::from(a as u64)
    };
    let acc = halves(src) + halves(dst) + u128::from(proto) + u128::from(l4_len);
    let acc = (acc >> 64) + u128::from(acc as u64);
    let acc = ((acc >> 64) + u128::from(acc as u64)) as u64;
    let acc = (acc >> 32) + (acc & 0xffff_ffff);
    let acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc as u32
}

/// The TCP, UDP or ICMPv6 checksum field of `segment` (its checksum field
/// zeroed) sent from `src` to `dst` over IPv6, computed in full: for packets
/// the router makes (ICMPv6 errors) and for tests that check incremental
/// updates against it. UDP's zero rule applies ([`transport_field`]).
pub fn transport_checksum6(src: Addr6, dst: Addr6, protocol: u8, segment: &[u8]) -> u16 {
    // An IPv6 payload is at most 65535 bytes without a jumbogram, and
    // jumbograms (Hop-by-Hop) never reach the core: the length fits.
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    let sum = pseudo_header_sum6(src, dst, protocol, len);
    transport_field(protocol, !fold(sum_bytes(sum, segment)))
}

/// What goes in a TCP or UDP checksum field for the `computed` checksum: the
/// one place that owns UDP's zero rule (RFC 768): a UDP checksum that comes
/// out 0 is sent as 0xffff, since 0 in the field means none was sent.
#[inline]
pub fn transport_field(protocol: u8, computed: u16) -> u16 {
    if computed == 0 && protocol == PROTO_UDP {
        0xffff
    } else {
        computed
    }
}

/// The TCP or UDP checksum field of `segment` (its checksum field zeroed)
/// sent from `src` to `dst`, computed in full.
pub fn transport_checksum(src: [u8; 4], dst: [u8; 4], protocol: u8, segment: &[u8]) -> u16 {
    // The segment length always fits: it comes from a 16-bit IP total length.
    let sum = pseudo_header_sum(src, dst, protocol, segment.len() as u16);
    transport_field(protocol, !fold(sum_bytes(sum, segment)))
}

/// The TCP or UDP checksum field `field` after an incremental `update`; a
/// UDP datagram sent without a checksum (0) keeps none.
#[inline]
pub fn update_transport(protocol: u8, field: u16, update: impl FnOnce(u16) -> u16) -> u16 {
    if field == 0 && protocol == PROTO_UDP {
        return 0;
    }
    transport_field(protocol, update(field))
}

/// RFC 1624 eqn. 3: the checksum `check` after the 16-bit word `old` of the
/// covered data became `new`: HC' = ~(~HC + ~m + m').
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// [`update16`] for a 32-bit field (an IPv4 address), both words in one sum.
pub fn update32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let sum = u32::from(!check)
        + u32::from(!u16::from_be_bytes([old[0], old[1]]))
        + u32::from(!u16::from_be_bytes([old[2], old[3]]))
        + u32::from(u16::from_be_bytes([new[0], new[1]]))
        + u32::from(u16::from_be_bytes([new[2], new[3]]));
    !fold(sum)
}

/// What the 16-bit word `old` becoming `new` adds to a checksum delta
/// (RFC 1624: ~m + m'), unfolded; sum several and fold them once.
#[inline]
pub fn delta16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// [`delta16`] for a 32-bit field (an IPv4 address).
#[inline]
pub fn delta32(old: [u8; 4], new: [u8; 4]) -> u32 {
    delta16(
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    ) + delta16(
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
}

/// The checksum `check` after changes whose folded delta is `delta` (a sum
/// of [`delta16`]s, folded): RFC 1624 eqn. 3 with every change at once.
#[inline]
pub fn apply_delta(check: u16, delta: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(delta))
}

/// The checksum `check` after the covered bytes `old` became `new`: both of
/// even length and starting at an even offset of the covered data.
pub fn update_words(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let sum = u32::from(!check)
        + u32::from(!fold(sum_bytes(0, old)))
        + u32::from(fold(sum_bytes(0, new)));
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // The example of RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_bytes(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum_bytes(0, &[0x12])), 0x1200);
        assert_eq!(fold(sum_bytes(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    /// The reference: RFC 1071's sum of 16-bit words with end-around carry.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            sum += word;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    proptest! {
        /// The IPv6 pseudo-header's sum is the sum of its 40 bytes as RFC
        /// 8200 8.1 lays them out.
        #[test]
        fn pseudo_header_sum6_sums_the_pseudo_header(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), proto in any::<u8>(), len in any::<u32>(),
        ) {
            let mut bytes = [src.as_slice(), dst.as_slice()].concat();
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, proto]);
            prop_assert_eq!(
                fold(pseudo_header_sum6(src, dst, proto, len)),
                reference_sum(&bytes)
            );
        }

        /// Summing 32-bit words gives the one's-complement sum of 16-bit words.
        #[test]
        fn word_sum_matches_the_reference(data in proptest::collection::vec(any::<u8>(), 0..1600),
                                          start in any::<u16>()) {
            let folded = fold(sum_bytes(u32::from(start), &data));
            let reference = fold(u32::from(start) + u32::from(reference_sum(&data)));
            // 0x0000 and 0xffff are the same one's-complement value.
            prop_assert!(folded == reference || folded ^ reference == 0xffff && (folded == 0 || reference == 0),
                "{folded:#06x} vs {reference:#06x}");
        }
    }

    proptest! {
        /// The pseudo-header sum is the sum of the 12 bytes RFC 768 and
        /// RFC 793 lay out.
        #[test]
        fn pseudo_header_sum_matches_its_bytes(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                               proto in any::<u8>(), len in any::<u16>()) {
            let mut bytes = [0u8; 12];
            bytes[0..4].copy_from_slice(&src);
            bytes[4..8].copy_from_slice(&dst);
            bytes[9] = proto;
            bytes[10..12].copy_from_slice(&len.to_be_bytes());
            prop_assert_eq!(fold(pseudo_header_sum(src, dst, proto, len)), fold(sum_bytes(0, &bytes)));
        }

        /// The IPv6 pseudo-header sum is the sum of the 40 bytes RFC 8200
        /// 8.1 lays out.
        #[test]
        fn pseudo_header_sum6_matches_its_bytes(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
                                                proto in any::<u8>(), len in any::<u32>()) {
            let mut bytes = [0u8; 40];
            bytes[0..16].copy_from_slice(&src);
            bytes[16..32].copy_from_slice(&dst);
            bytes[32..36].copy_from_slice(&len.to_be_bytes());
            bytes[39] = proto;
            let ours = fold(pseudo_header_sum6(src, dst, proto, len));
            let reference = fold(sum_bytes(0, &bytes));
            // 0x0000 and 0xffff are the same one's-complement value.
            prop_assert!(ours == reference || ours ^ reference == 0xffff && (ours == 0 || reference == 0),
                "{ours:#06x} vs {reference:#06x}");
        }

        /// Replacing a 16-byte address with `update_words` gives the
        /// checksum recomputing it gives.
        #[test]
        fn address6_update_equals_full(mut data in proptest::collection::vec(any::<u8>(), 40..80),
                                       at in 0usize..12, new in any::<[u8; 16]>()) {
            let offset = at * 2;
            let before = checksum(&data);
            let old = data[offset..offset + 16].to_vec();
            data[offset..offset + 16].copy_from_slice(&new);
            let updated = update_words(before, &old, &new);
            let full = checksum(&data);
            prop_assert!(updated == full || (updated ^ full) == 0xffff && (updated == 0 || full == 0),
                "updated {updated:#06x} full {full:#06x}");
        }

        /// Folding every change into one delta gives the checksum the
        /// updates one by one give, bit for bit.
        #[test]
        fn one_delta_equals_updates_in_turn(check in any::<u16>(), a in any::<[u8; 4]>(),
                                            b in any::<[u8; 4]>(), c in any::<u16>(), d in any::<u16>()) {
            let delta = fold(delta32(a, b) + delta16(c, d));
            prop_assert_eq!(apply_delta(check, delta), update16(update32(check, a, b), c, d));
        }

        /// An incremental update gives the same checksum as recomputing it.
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 8..64),
                                   at in 0usize..3, new in any::<[u8; 4]>()) {
            let offset = at * 2;
            let before = checksum(&data);
            let old: [u8; 4] = data[offset..offset + 4].try_into().unwrap();
            data[offset..offset + 4].copy_from_slice(&new);
            let updated = update32(before, old, new);
            let full = checksum(&data);
            // 0x0000 and 0xffff are the same one's-complement value.
            prop_assert!(updated == full || (updated ^ full) == 0xffff && (updated == 0 || full == 0),
                "updated {updated:#06x} full {full:#06x}");
        }

        /// The same for a run of words changed at once.
        #[test]
        fn word_run_update_equals_full(mut data in proptest::collection::vec(any::<u8>(), 8..64),
                                       at in 0usize..3, new in proptest::collection::vec(any::<u8>(), 2..6)) {
            let offset = at * 2;
            let len = new.len() & !1;
            let before = checksum(&data);
            let old = data[offset..offset + len].to_vec();
            data[offset..offset + len].copy_from_slice(&new[..len]);
            let updated = update_words(before, &old, &new[..len]);
            let full = checksum(&data);
            prop_assert!(updated == full || (updated ^ full) == 0xffff && (updated == 0 || full == 0),
                "updated {updated:#06x} full {full:#06x}");
        }
    }
}

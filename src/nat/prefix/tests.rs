//! Tests of prefix translation: the RFC 6296 vectors, its refusals, the
//! inverse and checksum properties at every prefix length, and the prefix a
//! LAN gets inside a delegation.

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

use PrefixTranslation::{ChecksumNeutral, KeepHostBits};

fn net(text: &str) -> Ipv6Net {
    text.parse().unwrap()
}

fn addr(text: &str) -> Addr6 {
    text.parse::<Ipv6Addr>().unwrap().octets()
}

fn map(inside: &str, outside: &str, translation: PrefixTranslation) -> PrefixMap {
    PrefixMap::new(net(inside), net(outside), translation).unwrap()
}

/// The RFC's own example (RFC 6296 3.1 and 3.4).
fn rfc_map() -> PrefixMap {
    map("fd01:203:405::/48", "2001:db8:1::/48", ChecksumNeutral)
}

fn npt_64() -> PrefixMap {
    map("fd00::/64", "2001:db8::/64", ChecksumNeutral)
}

/// The 16-bit one's-complement sum of an address, 0xFFFF read as 0 (both are
/// zero in one's complement, and either keeps a checksum valid).
fn ones_sum(a: &Addr6) -> u16 {
    fold(sum_bytes(0, a)) % 0xffff
}

fn words(a: &Addr6) -> [u16; 8] {
    std::array::from_fn(|i| get_word(a, i))
}

#[test]
fn rfc_6296_example_at_48() {
    let m = rfc_map();
    assert_eq!(m.adjustment, 0xd54f);
    let inside = addr("fd01:203:405:1::1234");
    let outside = addr("2001:db8:1:d550::1234");
    assert_eq!(m.outbound(inside), Some(outside));
    assert_eq!(m.inbound(outside), Some(inside));
    assert_eq!(ones_sum(&inside), ones_sum(&outside));
}

#[test]
fn vector_at_64_changes_the_interface_id() {
    // sum(fd00::) = 0xfd00, sum(2001:db8::) = 0x2db9; 0xfd00 - 0x2db9 =
    // 0xfd00 + 0xd246 = 0x1cf46, folded 0xcf47: added to word 4.
    let m = npt_64();
    assert_eq!(m.adjustment, 0xcf47);
    assert_eq!(
        m.outbound(addr("fd00::1")),
        Some(addr("2001:db8::cf47:0:0:1"))
    );
    assert_eq!(
        m.inbound(addr("2001:db8::cf47:0:0:1")),
        Some(addr("fd00::1"))
    );
}

#[test]
fn keep_host_bits_changes_only_the_prefix_bits() {
    let m = map("fd00:0:0:5::/64", "2001:db8:100:5::/64", KeepHostBits);
    assert_eq!(m.adjustment, 0);
    assert_eq!(
        m.outbound(addr("fd00::5:1:2:3:4")),
        Some(addr("2001:db8:100:5:1:2:3:4"))
    );
    // A length inside a word: /57 leaves 7 bits of word 3 to the host.
    let m = map("fd00:0:0:ff80::/57", "2001:db8:0:1200::/57", KeepHostBits);
    assert_eq!(
        m.outbound(addr("fd00:0:0:ffff:ffff:ffff:ffff:ffff")),
        Some(addr("2001:db8:0:127f:ffff:ffff:ffff:ffff"))
    );
    assert_eq!(
        m.inbound(addr("2001:db8:0:127f::1")),
        Some(addr("fd00:0:0:ffff::1"))
    );
    // Every address translates, 0xFFFF words and zero IIDs included.
    assert_eq!(
        m.outbound(addr("fd00:0:0:ff80::")),
        Some(addr("2001:db8:0:1200::"))
    );
}

#[test]
fn addresses_outside_the_prefix_are_not_translated() {
    for translation in [ChecksumNeutral, KeepHostBits] {
        let m = map("fd01:203:405::/48", "2001:db8:1::/48", translation);
        assert_eq!(m.outbound(addr("fd01:203:406::1")), None);
        assert_eq!(
            m.outbound(addr("2001:db8:1::1")),
            None,
            "outside is not inside"
        );
        assert_eq!(m.inbound(addr("2001:db8:2::1")), None);
        assert_eq!(
            m.inbound(addr("fd01:203:405::1")),
            None,
            "inside is not outside"
        );
    }
}

#[test]
fn subnet_id_0xffff_is_untranslatable_at_48() {
    let m = rfc_map();
    assert_eq!(m.outbound(addr("fd01:203:405:ffff::1")), None);
    assert_eq!(m.inbound(addr("2001:db8:1:ffff::1")), None);
}

#[test]
fn a_result_of_0xffff_is_written_as_zero() {
    // 0x2ab0 + 0xd54f = 0xffff: written 0, and read back from 0.
    let m = rfc_map();
    assert_eq!(
        m.outbound(addr("fd01:203:405:2ab0::1")),
        Some(addr("2001:db8:1:0::1"))
    );
    assert_eq!(
        m.inbound(addr("2001:db8:1:0::1")),
        Some(addr("fd01:203:405:2ab0::1"))
    );
    // Inbound, 0xd54f - 0xd54f = 0 comes out 0 as well.
    assert_eq!(
        m.inbound(addr("2001:db8:1:d54f::1")),
        Some(addr("fd01:203:405:0::1"))
    );
}

#[test]
fn past_48_the_first_interface_id_word_not_0xffff_is_adjusted() {
    let m = npt_64();
    assert_eq!(
        m.outbound(addr("fd00::ffff:ffff:0:1")),
        Some(addr("2001:db8::ffff:ffff:cf47:1"))
    );
    assert_eq!(
        m.inbound(addr("2001:db8::ffff:ffff:cf47:1")),
        Some(addr("fd00::ffff:ffff:0:1"))
    );
    let all_ones = "ffff:ffff:ffff:ffff";
    assert_eq!(m.outbound(addr(&format!("fd00::{all_ones}"))), None);
    assert_eq!(m.inbound(addr(&format!("2001:db8::{all_ones}"))), None);
}

#[test]
fn past_48_a_zero_interface_id_is_refused_both_ways() {
    let m = npt_64();
    // The Subnet-Router anycast address, on either side.
    assert_eq!(m.outbound(addr("fd00::")), None);
    assert_eq!(m.inbound(addr("2001:db8::")), None);
    // A host whose adjusted word would become zero (0x30b8 = !0xcf47).
    assert_eq!(m.outbound(addr("fd00::30b8:0:0:0")), None);
    assert_eq!(m.inbound(addr("2001:db8::cf47:0:0:0")), None);
    // At /48 the interface ID is not touched: the anycast address maps onto
    // the other side's.
    let m = rfc_map();
    assert_eq!(
        m.outbound(addr("fd01:203:405:1::")),
        Some(addr("2001:db8:1:d550::"))
    );
}

#[test]
fn each_value_of_the_adjusted_word_has_its_own_image() {
    // /48: word 3 takes 65535 values; 0xFFFF is refused.
    let m = rfc_map();
    let mut images = HashSet::new();
    for w in 0..=0xffff {
        let mut a = addr("fd01:203:405::1");
        set_word(&mut a, 3, w);
        match m.outbound(a) {
            None => assert_eq!(w, 0xffff),
            Some(b) => {
                assert_ne!(get_word(&b, 3), 0xffff);
                assert_eq!(m.inbound(b), Some(a));
                assert!(images.insert(b), "{w:#x} shares an image");
            }
        }
    }
    assert_eq!(images.len(), 0xffff);

    // /64: word 4 = 0xFFFF passes the adjustment on to word 5, so all 65536
    // translate, each to its own address.
    let m = npt_64();
    let mut images = HashSet::new();
    for w in 0..=0xffff {
        let mut a = addr("fd00::1");
        set_word(&mut a, 4, w);
        let b = m.outbound(a).unwrap();
        assert_eq!(m.inbound(b), Some(a));
        assert!(images.insert(b), "{w:#x} shares an image");
    }
    assert_eq!(images.len(), 0x10000);
    assert_eq!(
        m.outbound(addr("fd00::ffff:0:0:1")),
        Some(addr("2001:db8::ffff:cf47:0:1"))
    );
}

#[test]
fn host_bits_of_the_configured_prefixes_are_ignored() {
    let m = PrefixMap::new(net("fd00::1/64"), net("2001:db8::99/64"), ChecksumNeutral).unwrap();
    assert_eq!(m.inside(), net("fd00::/64"));
    assert_eq!(m.outside(), net("2001:db8::/64"));
    assert_eq!(m.translation(), ChecksumNeutral);
    assert_eq!(m, npt_64());
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    let new = |inside: &str, outside: &str, translation| {
        PrefixMap::new(net(inside), net(outside), translation)
    };
    assert_eq!(
        new("fd00::/48", "2001:db8::/56", KeepHostBits),
        Err(PrefixError::LengthsDiffer {
            inside: net("fd00::/48"),
            outside: net("2001:db8::/56"),
        })
    );
    assert_eq!(
        new("::/0", "::/0", KeepHostBits),
        Err(PrefixError::ZeroLength {
            prefix: net("::/0")
        })
    );
    assert_eq!(
        new("fd00::/65", "2001:db8::/65", ChecksumNeutral),
        Err(PrefixError::TooLong {
            prefix: net("fd00::/65")
        })
    );
    assert!(new("fd00::/65", "2001:db8::/65", KeepHostBits).is_ok());
    assert!(new("fd00::1/128", "2001:db8::1/128", KeepHostBits).is_ok());
    assert!(new("fd00::/64", "2001:db8::/64", ChecksumNeutral).is_ok());
    // What a user reads names both prefixes.
    let message = new("fd00::/48", "2001:db8::/56", ChecksumNeutral)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("fd00::/48") && message.contains("2001:db8::/56"),
        "{message}"
    );
}

#[test]
fn outside_prefix_keeps_the_subnet_id_below_the_delegation() {
    let delegated = net("2001:db8:100::/56");
    assert_eq!(
        outside_prefix(net("fd00:0:0:5::/64"), delegated),
        Ok(net("2001:db8:100:5::/64"))
    );
    // Host bits of the LAN prefix are dropped.
    assert_eq!(
        outside_prefix(net("fd00:0:0:5::1/64"), delegated),
        Ok(net("2001:db8:100:5::/64"))
    );
    // Same length: the delegated prefix itself.
    assert_eq!(
        outside_prefix(net("fd00:0:0:7700::/56"), delegated),
        Ok(net("2001:db8:100::/56"))
    );
    // Bits above the delegated length are not kept: :17 and :27 collide in a /60.
    let delegated = net("2001:db8:100:10::/60");
    assert_eq!(
        outside_prefix(net("fd00:0:0:17::/64"), delegated),
        Ok(net("2001:db8:100:17::/64"))
    );
    assert_eq!(
        outside_prefix(net("fd00:0:0:27::/64"), delegated),
        Ok(net("2001:db8:100:17::/64"))
    );
}

#[test]
fn a_lan_prefix_shorter_than_the_delegation_does_not_fit() {
    assert_eq!(
        outside_prefix(net("fd00::1/48"), net("2001:db8:100::/56")),
        Err(PrefixError::NotInside {
            inside: net("fd00::/48"),
            delegated: net("2001:db8:100::/56"),
        })
    );
}

/// `bits` as a prefix of `len`.
fn prefix(bits: u128, len: u8) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::from(bits), len).unwrap().trunc()
}

/// `bits` moved into `net`.
fn place(bits: u128, net: Ipv6Net) -> Addr6 {
    with_prefix(bits.to_be_bytes(), net)
}

fn host_bits(a: &Addr6, net: Ipv6Net) -> u128 {
    u128::from_be_bytes(*a) & u128::from(net.hostmask())
}

fn contains(net: Ipv6Net, a: &Addr6) -> bool {
    net.contains(&Ipv6Addr::from(*a))
}

/// A map for every length each translation accepts (1..=64 checksum-neutral,
/// 1..=128 keeping host bits), between the prefixes `inside` and `outside`
/// begin with.
fn every_map(inside: u128, outside: u128) -> impl Iterator<Item = PrefixMap> {
    let neutral = (1..=64).map(move |len| (len, ChecksumNeutral));
    let keep = (1..=128).map(move |len| (len, KeepHostBits));
    neutral.chain(keep).map(move |(len, translation)| {
        PrefixMap::new(prefix(inside, len), prefix(outside, len), translation).unwrap()
    })
}

/// 128 bits whose words are often 0 or 0xFFFF, the values RFC 6296 treats
/// apart.
fn edgy_bits() -> impl Strategy<Value = u128> {
    let word = prop_oneof![1 => Just(0u16), 1 => Just(0xffff), 2 => any::<u16>()];
    prop::array::uniform8(word)
        .prop_map(|words| words.iter().fold(0, |acc, &w| acc << 16 | u128::from(w)))
}

/// `from` translated to `to` (by `map`, either way) keeps what its
/// translation promises: the one's-complement sum, or the host bits.
fn check_kept(map: &PrefixMap, from: &Addr6, to: &Addr6) -> Result<(), TestCaseError> {
    match map.translation() {
        ChecksumNeutral => prop_assert_eq!(ones_sum(from), ones_sum(to)),
        KeepHostBits => prop_assert_eq!(host_bits(from, map.inside()), host_bits(to, map.inside())),
    }
    Ok(())
}

/// Whether RFC 6296 and the zero-IID rule certainly let `a` through at
/// `len`: at /48 or shorter, any subnet ID but 0xFFFF; past /48, an
/// interface ID neither all 0xFFFF nor all zero whose words 5..=7 are not all
/// zero (so the result's interface ID cannot be zero either).
fn surely_translatable(a: &Addr6, len: u8) -> bool {
    let w = words(a);
    if len <= 48 {
        w[3] != 0xffff
    } else {
        w[4..] != [0xffff; 4] && w[5..] != [0; 3]
    }
}

proptest! {
    /// At every length, an inside address lands in the outside prefix, keeps
    /// its sum or its host bits, and comes back; only addresses RFC 6296
    /// (or the zero-IID rule) refuses are refused.
    #[test]
    fn outbound_lands_outside_and_inbound_brings_it_back(
        inside in any::<u128>(),
        outside in any::<u128>(),
        bits in edgy_bits(),
    ) {
        for m in every_map(inside, outside) {
            let a = place(bits, m.inside());
            let Some(b) = m.outbound(a) else {
                prop_assert_eq!(m.translation(), ChecksumNeutral);
                prop_assert!(!surely_translatable(&a, m.inside().prefix_len()), "{:?} {:?}", m, a);
                continue;
            };
            prop_assert!(contains(m.outside(), &b), "{:?} {:?} -> {:?}", m, a, b);
            prop_assert_eq!(m.inbound(b), Some(a));
            check_kept(&m, &a, &b)?;
        }
    }

    /// The same from the outside: inbound lands inside and outbound brings it
    /// back.
    #[test]
    fn inbound_lands_inside_and_outbound_brings_it_back(
        inside in any::<u128>(),
        outside in any::<u128>(),
        bits in edgy_bits(),
    ) {
        for m in every_map(inside, outside) {
            let b = place(bits, m.outside());
            let Some(a) = m.inbound(b) else {
                prop_assert_eq!(m.translation(), ChecksumNeutral);
                prop_assert!(!surely_translatable(&b, m.inside().prefix_len()), "{:?} {:?}", m, b);
                continue;
            };
            prop_assert!(contains(m.inside(), &a), "{:?} {:?} -> {:?}", m, b, a);
            prop_assert_eq!(m.outbound(a), Some(b));
            check_kept(&m, &b, &a)?;
        }
    }

    /// An address differing from the prefix in any one prefix bit is not
    /// translated, either way.
    #[test]
    fn addresses_outside_the_prefix_are_refused(
        inside in any::<u128>(),
        outside in any::<u128>(),
        bits in edgy_bits(),
        bit in any::<prop::sample::Index>(),
    ) {
        for m in every_map(inside, outside) {
            let len = usize::from(m.inside().prefix_len());
            let flip = 1u128 << (127 - bit.index(len));
            let a = u128::from_be_bytes(place(bits, m.inside())) ^ flip;
            let b = u128::from_be_bytes(place(bits, m.outside())) ^ flip;
            prop_assert_eq!(m.outbound(a.to_be_bytes()), None, "{:?}", m);
            prop_assert_eq!(m.inbound(b.to_be_bytes()), None, "{:?}", m);
        }
    }

    /// Two different addresses never share an image, either way: tried with
    /// a pair differing in one word (often the adjusted one) and an unrelated
    /// pair.
    #[test]
    fn different_addresses_get_different_images(
        inside in any::<u128>(),
        outside in any::<u128>(),
        bits in edgy_bits(),
        other in edgy_bits(),
        word in 3usize..8,
        value in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
    ) {
        let mut changed = bits.to_be_bytes();
        set_word(&mut changed, word, value);
        let changed = u128::from_be_bytes(changed);
        for m in every_map(inside, outside) {
            for second in [changed, other] {
                for (from, translate) in [
                    (m.inside(), PrefixMap::outbound as fn(&PrefixMap, Addr6) -> Option<Addr6>),
                    (m.outside(), PrefixMap::inbound),
                ] {
                    let (a1, a2) = (place(bits, from), place(second, from));
                    if a1 == a2 {
                        continue;
                    }
                    if let (Some(b1), Some(b2)) = (translate(&m, a1), translate(&m, a2)) {
                        prop_assert_ne!(b1, b2, "{:?}: {:?} and {:?}", m, a1, a2);
                    }
                }
            }
        }
    }

    /// The derived prefix has the LAN's length, lies in the delegation, and
    /// carries the LAN's bits between the two lengths.
    #[test]
    fn outside_prefix_lies_in_the_delegation(
        inside in any::<u128>(),
        delegated in any::<u128>(),
        delegated_len in 0u8..=128,
        extra in any::<prop::sample::Index>(),
    ) {
        let inside_len = delegated_len + extra.index(usize::from(129 - delegated_len)) as u8;
        let (lan, delegation) = (prefix(inside, inside_len), prefix(delegated, delegated_len));
        let derived = outside_prefix(lan, delegation).unwrap();
        prop_assert_eq!(derived.prefix_len(), inside_len);
        prop_assert!(delegation.contains(&derived));
        let subnet_bits = u128::from(lan.netmask()) & u128::from(delegation.hostmask());
        let (lan, derived) = (u128::from(lan.network()), u128::from(derived.network()));
        prop_assert_eq!(lan & subnet_bits, derived & subnet_bits);
        if inside_len > 0 {
            prop_assert_eq!(
                outside_prefix(prefix(inside, inside_len - 1), prefix(delegated, inside_len)),
                Err(PrefixError::NotInside {
                    inside: prefix(inside, inside_len - 1),
                    delegated: prefix(delegated, inside_len),
                })
            );
        }
    }
}

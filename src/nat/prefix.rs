//! IPv6 prefix translation for an uplink: a LAN prefix mapped onto the
//! uplink's prefix of the same length, address by address.
//!
//! With two uplinks a LAN cannot keep one global prefix: each uplink routes
//! only its own. Translating the prefix on the way out lets hosts keep stable
//! addresses (a ULA, or an earlier delegation) while each uplink sees its own.
//! The mapping is a pure function of the address, so the same map rewrites a
//! LAN source leaving and a reply's destination arriving, needs no per-address
//! state, survives restarts and lets inbound connections in.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::packet::checksum::{fold, sum_bytes};
use crate::packet::Addr6;

/// How the LAN prefix is mapped onto the uplink's: config `nat6 = "prefix"`
/// or `"npt"`.
///
/// Both keep the mapping stateless and one-to-one; they differ in who pays
/// for the changed address in the transport checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixTranslation {
    /// Host bits kept (as pf binat / pfSense NPt / OPNsense NPTv6 /
    /// nftables `snat ip6 prefix to`): only the prefix bits change; the
    /// caller fixes L4 checksums. A host's interface ID reads the same on
    /// both sides, which logs and firewall rules expect, at the price of a
    /// checksum rewrite per packet (and none is possible for ESP or a
    /// non-first fragment).
    KeepHostBits,
    /// RFC 6296 checksum-neutral NPTv6: prefix bits replaced and one 16-bit
    /// word adjusted so the one's-complement sum of the address is
    /// unchanged. No transport header is touched, so fragments, ESP and
    /// unknown protocols pass; the cost is that one word of the host part
    /// changes, and a few addresses cannot be translated.
    ChecksumNeutral,
}

/// One uplink's prefix translation, checked once when the configuration is
/// loaded so that translating an address cannot fail for a reason of the
/// configuration, only of the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixMap {
    inside: Ipv6Net,
    outside: Ipv6Net,
    translation: PrefixTranslation,
    /// What `outbound` adds, in one's complement, to the adjusted word
    /// (RFC 6296 3.1: the inside prefix's sum minus the outside's); `inbound`
    /// adds its complement. Kept because it is constant per map. 0 for
    /// `KeepHostBits`.
    adjustment: u16,
}

/// Why a prefix translation cannot be built: the messages end up in a
/// configuration error, so they say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The translation swaps prefix bits one for one, so both prefixes must
    /// have as many.
    #[error("the LAN prefix {inside} and the uplink prefix {outside} differ in length; prefix translation needs prefixes of the same length")]
    LengthsDiffer { inside: Ipv6Net, outside: Ipv6Net },
    /// A /0 prefix would claim every address, including the uplink's own.
    #[error("the prefix {prefix} is /0; prefix translation needs a prefix of /1 or longer")]
    ZeroLength { prefix: Ipv6Net },
    /// RFC 6296 adjusts a word of bits 48..128 (/48 or shorter) or of the
    /// interface ID (longer), which must lie outside the prefix.
    #[error("the prefix {prefix} is longer than /64; checksum-neutral NPTv6 (RFC 6296) changes a word of the interface ID, so it needs a prefix of /64 or shorter")]
    TooLong { prefix: Ipv6Net },
    /// `outside_prefix` keeps the LAN prefix's subnet bits below the
    /// delegated length, and a LAN prefix shorter than the delegation has
    /// none: it would spill outside the delegated prefix.
    #[error("the LAN prefix {inside} is shorter than the delegated prefix {delegated}, so it does not fit inside it")]
    NotInside { inside: Ipv6Net, delegated: Ipv6Net },
}

impl PrefixMap {
    /// A map from `inside` onto `outside`. Their host bits are ignored (a
    /// configuration may well give an address with its length). Errs when
    /// the lengths differ, are 0, or are beyond /64 for `ChecksumNeutral`.
    pub fn new(
        inside: Ipv6Net,
        outside: Ipv6Net,
        translation: PrefixTranslation,
    ) -> Result<PrefixMap, PrefixError> {
        let (inside, outside) = (inside.trunc(), outside.trunc());
        if inside.prefix_len() != outside.prefix_len() {
            return Err(PrefixError::LengthsDiffer { inside, outside });
        }
        if inside.prefix_len() == 0 {
            return Err(PrefixError::ZeroLength { prefix: inside });
        }
        let adjustment = match translation {
            PrefixTranslation::KeepHostBits => 0,
            PrefixTranslation::ChecksumNeutral if inside.prefix_len() > 64 => {
                return Err(PrefixError::TooLong { prefix: inside });
            }
            PrefixTranslation::ChecksumNeutral => adjustment(inside, outside),
        };
        Ok(PrefixMap {
            inside,
            outside,
            translation,
            adjustment,
        })
    }

    /// The LAN prefix, host bits cleared: what a source must lie in to be
    /// translated on its way out.
    pub fn inside(&self) -> Ipv6Net {
        self.inside
    }

    /// The uplink's prefix, host bits cleared: what a destination must lie in
    /// to be translated on its way in.
    pub fn outside(&self) -> Ipv6Net {
        self.outside
    }

    /// Whether the caller must fix L4 checksums after a translation.
    pub fn translation(&self) -> PrefixTranslation {
        self.translation
    }

    /// inside → outside (a LAN source leaving). None when `addr` is not in
    /// the inside prefix (it is not ours to translate), or, for
    /// `ChecksumNeutral`, when RFC 6296 gives it no word to adjust (0xFFFF
    /// there) or an all-zero interface ID would be read or written: None
    /// rather than the address unchanged, so a caller cannot leak an inside
    /// address by mistake.
    pub fn outbound(&self, addr: Addr6) -> Option<Addr6> {
        self.translate(addr, self.inside, self.outside, self.adjustment)
    }

    /// outside → inside (a reply's destination arriving), the exact inverse
    /// of `outbound`: `inbound(outbound(a)) == Some(a)` whenever `outbound`
    /// gives one. None for the same reasons, read on the outside.
    pub fn inbound(&self, addr: Addr6) -> Option<Addr6> {
        self.translate(addr, self.outside, self.inside, !self.adjustment)
    }

    /// One direction of the map: `from`'s prefix bits replaced by `to`'s,
    /// then, for `ChecksumNeutral`, one word adjusted by `adjustment`.
    fn translate(&self, addr: Addr6, from: Ipv6Net, to: Ipv6Net, adjustment: u16) -> Option<Addr6> {
        if !from.contains(&Ipv6Addr::from(addr)) {
            return None;
        }
        let moved = with_prefix(addr, to);
        match self.translation {
            PrefixTranslation::KeepHostBits => Some(moved),
            PrefixTranslation::ChecksumNeutral => {
                neutral(&addr, moved, to.prefix_len(), adjustment)
            }
        }
    }
}

/// The outside prefix a LAN prefix gets inside a delegated prefix: the
/// delegated prefix's bits, then the LAN prefix's own bits between the two
/// lengths (its subnet ID kept), so fd00:0:0:5::/64 inside a delegated
/// 2001:db8:100::/56 maps onto 2001:db8:100:5::/64. Keeping the subnet ID
/// lets several LAN subnets share one delegation without a table; LAN
/// prefixes that differ only above the delegated length collide, which the
/// caller must refuse. Err when the LAN prefix is shorter than the delegated
/// one (it does not fit).
pub fn outside_prefix(inside: Ipv6Net, delegated: Ipv6Net) -> Result<Ipv6Net, PrefixError> {
    if inside.prefix_len() < delegated.prefix_len() {
        return Err(PrefixError::NotInside {
            inside: inside.trunc(),
            delegated: delegated.trunc(),
        });
    }
    let network = with_prefix(inside.network().octets(), delegated);
    Ok(Ipv6Net::new_assert(
        Ipv6Addr::from(network),
        inside.prefix_len(),
    ))
}

/// RFC 6296 3.1: the one's-complement difference of the two prefixes' sums
/// (zero-padded to 128 bits, so their host bits add nothing). Adding it to
/// any one host word undoes the change of sum that swapping the prefix bits
/// made: prefix and host bits never share a bit, so a word's value is the
/// plain sum of its prefix part and its host part.
fn adjustment(inside: Ipv6Net, outside: Ipv6Net) -> u16 {
    let sum = |net: Ipv6Net| fold(sum_bytes(0, &net.network().octets()));
    ones_add(sum(inside), !sum(outside))
}

/// RFC 6296's step after the prefix swap: `moved` (`addr` under its new
/// prefix) with one word adjusted so the address's sum is `addr`'s again, or
/// None when `addr` has no word to adjust or the zero-IID rule refuses it.
fn neutral(addr: &Addr6, moved: Addr6, prefix_len: u8, adjustment: u16) -> Option<Addr6> {
    let word = adjusted_word(addr, prefix_len)?;
    let mut out = moved;
    set_word(&mut out, word, ones_add(get_word(addr, word), adjustment));
    (!touches_zero_iid(prefix_len, addr, &out)).then_some(out)
}

/// `addr` with its bits under `prefix`'s length replaced by `prefix`'s.
fn with_prefix(addr: Addr6, prefix: Ipv6Net) -> Addr6 {
    let host = u128::from_be_bytes(addr) & u128::from(prefix.hostmask());
    (u128::from(prefix.network()) | host).to_be_bytes()
}

/// The 16-bit word RFC 6296 adjusts in `addr` (3.4, 3.5): word 3, the subnet
/// ID, for a /48 or shorter; for longer prefixes the first of words 4..=7 (the
/// interface ID) that is not 0xFFFF, so the inverse finds the same word. None
/// when that word is 0xFFFF, or all four are: in one's complement 0xFFFF and
/// 0 are the same number, and taking both would map two addresses onto one.
fn adjusted_word(addr: &Addr6, prefix_len: u8) -> Option<usize> {
    if prefix_len <= 48 {
        (get_word(addr, 3) != 0xffff).then_some(3)
    } else {
        (4..8).find(|&i| get_word(addr, i) != 0xffff)
    }
}

/// One's-complement addition that writes zero as 0x0000, never 0xFFFF (RFC
/// 6296 3.4, 3.5): together with refusing inputs holding 0xFFFF, it keeps each
/// word one of 65535 distinct values and the mapping one-to-one.
fn ones_add(a: u16, b: u16) -> u16 {
    match fold(u32::from(a) + u32::from(b)) {
        0xffff => 0,
        sum => sum,
    }
}

/// Whether a translation past /48 reads or writes an all-zero interface ID
/// (refused, as the Vyatta dataplane does): that is a subnet's Subnet-Router
/// anycast address (RFC 4291 2.6.1), and the adjustment would make a host
/// address into one or one into a host. Checking both sides keeps
/// `outbound` and `inbound` exact inverses. At /48 or shorter the interface
/// ID is never changed, so the anycast address maps onto its own kind.
fn touches_zero_iid(prefix_len: u8, from: &Addr6, to: &Addr6) -> bool {
    let zero_iid = |addr: &Addr6| addr[8..] == [0; 8];
    prefix_len > 48 && (zero_iid(from) || zero_iid(to))
}

fn get_word(addr: &Addr6, i: usize) -> u16 {
    u16::from_be_bytes([addr[2 * i], addr[2 * i + 1]])
}

fn set_word(addr: &mut Addr6, i: usize, value: u16) {
    addr[2 * i..2 * i + 2].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests;

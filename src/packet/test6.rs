//! Building IPv6 frames by hand for the IPv6 tests, and checking their
//! upper-layer checksums in full with a reference sum of its own (16-bit
//! words over the pseudo-header bytes RFC 8200 8.1 lays out), so the tests
//! never check the checksum code with itself. The builder is checked
//! against etherparse's.

use std::net::Ipv6Addr;

use proptest::prelude::*;

use super::ipv6::{
    NEXT_AH, NEXT_DEST_OPTS, NEXT_FRAGMENT, NEXT_HOP_BY_HOP, NEXT_ROUTING, PROTO_ICMPV6,
};
use super::parse::{PROTO_TCP, PROTO_UDP};
use super::rewrite::Addr6;

pub const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// An address from its text.
pub fn addr(text: &str) -> Addr6 {
    text.parse::<Ipv6Addr>().expect("an IPv6 address").octets()
}

/// An extension header to put in a built packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    HopByHop,
    /// Destination Options with this many 8-byte units past the first 8.
    DestOpts(u8),
    /// A type-0-like Routing header (one address) with these segments left.
    Routing {
        segments_left: u8,
    },
    Fragment {
        offset: u16,
        more: bool,
        id: u32,
    },
    /// An Authentication Header with this length byte (4-byte units less 2).
    Ah(u8),
}

impl Ext {
    fn next_header(self) -> u8 {
        match self {
            Ext::HopByHop => NEXT_HOP_BY_HOP,
            Ext::DestOpts(_) => NEXT_DEST_OPTS,
            Ext::Routing { .. } => NEXT_ROUTING,
            Ext::Fragment { .. } => NEXT_FRAGMENT,
            Ext::Ah(_) => NEXT_AH,
        }
    }

    /// Its bytes, with `next` as its next header.
    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop => vec![next, 0, 1, 4, 0, 0, 0, 0],
            Ext::DestOpts(units) => {
                let mut b = vec![0u8; (usize::from(units) + 1) * 8];
                b[0] = next;
                b[1] = units;
                // PadN over the rest.
                b[2] = 1;
                b[3] = (b.len() - 4) as u8;
                b
            }
            Ext::Routing { segments_left } => {
                let mut b = vec![0u8; 24];
                b[0] = next;
                b[1] = 2;
                b[2] = 0;
                b[3] = segments_left;
                b[8..24].copy_from_slice(&addr("2001:db8:ffff::1"));
                b
            }
            Ext::Fragment { offset, more, id } => {
                let word = offset << 3 | u16::from(more);
                let mut b = vec![next, 0];
                b.extend_from_slice(&word.to_be_bytes());
                b.extend_from_slice(&id.to_be_bytes());
                b
            }
            Ext::Ah(len) => {
                let mut b = vec![0x5a; (usize::from(len) + 2) * 4];
                b[0] = next;
                b[1] = len;
                b[2] = 0;
                b[3] = 0;
                b
            }
        }
    }
}

/// A TCP header (no options) and its payload, checksum 0.
pub fn tcp(src_port: u16, dst_port: u16, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + payload.len());
    b.extend_from_slice(&src_port.to_be_bytes());
    b.extend_from_slice(&dst_port.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    b.extend_from_slice(payload);
    b
}

/// A UDP header and its payload, checksum 0.
pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.extend_from_slice(&src_port.to_be_bytes());
    b.extend_from_slice(&dst_port.to_be_bytes());
    b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    b
}

/// An ICMPv6 message, checksum 0.
pub fn icmp6(icmp_type: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = vec![icmp_type, code, 0, 0];
    b.extend_from_slice(&rest);
    b.extend_from_slice(body);
    b
}

/// An ICMPv6 echo request or reply.
pub fn echo(request: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    icmp6(if request { 128 } else { 129 }, 0, [a, b, c, d], payload)
}

/// Where the checksum of an upper-layer header of `protocol` is.
pub fn checksum_at(protocol: u8) -> Option<usize> {
    match protocol {
        PROTO_TCP => Some(16),
        PROTO_UDP => Some(6),
        PROTO_ICMPV6 => Some(2),
        _ => None,
    }
}

/// The reference sum: RFC 1071's 16-bit words with end-around carry.
fn reference_sum(mut sum: u32, data: &[u8]) -> u32 {
    for pair in data.chunks(2) {
        sum += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The pseudo-header's 40 bytes.
fn pseudo_header(src: Addr6, dst: Addr6, protocol: u8, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&src);
    b.extend_from_slice(&dst);
    b.extend_from_slice(&(len as u32).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, protocol]);
    b
}

/// Whether `segment` (a whole upper-layer packet) has a valid checksum
/// for `src` to `dst`: its words and the pseudo-header's add up to 0xffff.
pub fn upper_checksum_valid(src: Addr6, dst: Addr6, protocol: u8, segment: &[u8]) -> bool {
    let sum = reference_sum(0, &pseudo_header(src, dst, protocol, segment.len()));
    reference_sum(sum, segment) == 0xffff
}

/// Fills the checksum of `segment` in full (UDP's 0 sent as 0xffff).
pub fn fill_checksum(src: Addr6, dst: Addr6, protocol: u8, segment: &mut [u8]) {
    let Some(at) = checksum_at(protocol) else {
        return;
    };
    segment[at..at + 2].fill(0);
    let sum = reference_sum(0, &pseudo_header(src, dst, protocol, segment.len()));
    let mut check = !(reference_sum(sum, segment) as u16);
    if check == 0 && protocol == PROTO_UDP {
        check = 0xffff;
    }
    segment[at..at + 2].copy_from_slice(&check.to_be_bytes());
}

/// An IPv6 packet (no Ethernet header) from `src` to `dst` with the
/// extension headers `exts` in order, then `upper` of `protocol`, whose
/// checksum is filled in (unless a later fragment carries it: then `upper`
/// is fragment data, sent as given).
pub fn packet6(
    src: Addr6,
    dst: Addr6,
    hop_limit: u8,
    exts: &[Ext],
    protocol: u8,
    upper: &[u8],
) -> Vec<u8> {
    let mut upper = upper.to_vec();
    let later = exts
        .iter()
        .any(|e| matches!(e, Ext::Fragment { offset, .. } if *offset != 0));
    if !later {
        fill_checksum(src, dst, protocol, &mut upper);
    }
    let mut chain = Vec::new();
    for (i, ext) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(protocol, |e| e.next_header());
        chain.extend(ext.bytes(next));
    }
    let first = exts.first().map_or(protocol, |e| e.next_header());
    let payload_len = (chain.len() + upper.len()) as u16;
    let mut b = vec![0x60, 0x01, 0x23, 0x45];
    b.extend_from_slice(&payload_len.to_be_bytes());
    b.extend_from_slice(&[first, hop_limit]);
    b.extend_from_slice(&src);
    b.extend_from_slice(&dst);
    b.extend(chain);
    b.extend(upper);
    b
}

/// `packet` in an untagged Ethernet frame from the host to the router.
pub fn ethernet(packet: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(14 + packet.len());
    b.extend_from_slice(&ROUTER_MAC);
    b.extend_from_slice(&HOST_MAC);
    b.extend_from_slice(&[0x86, 0xdd]);
    b.extend_from_slice(packet);
    b
}

/// [`packet6`] in an Ethernet frame.
pub fn frame6(
    src: Addr6,
    dst: Addr6,
    hop_limit: u8,
    exts: &[Ext],
    protocol: u8,
    upper: &[u8],
) -> Vec<u8> {
    ethernet(&packet6(src, dst, hop_limit, exts, protocol, upper))
}

/// A global unicast address (2000::/3), which the parser forwards.
pub fn global_addr() -> impl Strategy<Value = Addr6> {
    any::<[u8; 16]>().prop_map(|mut a| {
        a[0] = 0x20 | (a[0] & 0x1f);
        a
    })
}

/// Extension header chains a forwarded packet may carry (no Hop-by-Hop, no
/// segments left, at most one Fragment header, and that one a first or
/// atomic fragment).
pub fn forwardable_exts() -> impl Strategy<Value = Vec<Ext>> {
    let ext = prop_oneof![
        (0u8..4).prop_map(Ext::DestOpts),
        Just(Ext::Routing { segments_left: 0 }),
        (1u8..6).prop_map(Ext::Ah),
    ];
    (
        proptest::collection::vec(ext, 0..4),
        proptest::option::of((any::<bool>(), any::<u32>())),
        any::<usize>(),
    )
        .prop_map(|(mut exts, fragment, at)| {
            if let Some((more, id)) = fragment {
                let at = at % (exts.len() + 1);
                exts.insert(
                    at,
                    Ext::Fragment {
                        offset: 0,
                        more,
                        id,
                    },
                );
            }
            exts
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const SRC: &str = "2001:db8:1::10";
    const DST: &str = "2001:db8:2::20";

    fn built(builder: PacketBuilder6, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        builder.write(&mut out, payload).expect("writes");
        out
    }

    type PacketBuilder6 = etherparse::PacketBuilderStep<etherparse::UdpHeader>;

    fn base() -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        PacketBuilder::ethernet2(HOST_MAC, ROUTER_MAC).ipv6(addr(SRC), addr(DST), 64)
    }

    /// The builder and the reference checksum agree with etherparse's: the
    /// same bytes (flow label aside) for UDP, TCP and ICMPv6 echo.
    #[test]
    fn the_builder_makes_what_etherparse_makes() {
        let (src, dst) = (addr(SRC), addr(DST));
        let theirs = built(base().udp(40000, 53), b"query");
        let ours = frame6(src, dst, 64, &[], PROTO_UDP, &udp(40000, 53, b"query"));
        assert_eq!(ours[..15], theirs[..15]);
        assert_eq!(ours[18..], theirs[18..]);

        let mut theirs = Vec::new();
        base()
            .tcp(40000, 443, 7, 0xffff)
            .syn()
            .write(&mut theirs, b"")
            .expect("writes");
        let ours = frame6(src, dst, 64, &[], PROTO_TCP, &tcp(40000, 443, 0x02, 7, b""));
        assert_eq!(ours[18..], theirs[18..]);

        let mut theirs = Vec::new();
        base()
            .icmpv6_echo_request(0x1234, 9)
            .write(&mut theirs, b"ping")
            .expect("writes");
        let ours = frame6(
            src,
            dst,
            64,
            &[],
            PROTO_ICMPV6,
            &echo(true, 0x1234, 9, b"ping"),
        );
        assert_eq!(ours[18..], theirs[18..]);
        assert!(upper_checksum_valid(src, dst, PROTO_ICMPV6, &ours[54..]));
    }

    #[test]
    fn a_changed_byte_fails_the_checker() {
        let (src, dst) = (addr(SRC), addr(DST));
        let mut frame = frame6(src, dst, 64, &[], PROTO_UDP, &udp(1, 2, b"abc"));
        assert!(upper_checksum_valid(src, dst, PROTO_UDP, &frame[54..]));
        frame[62] ^= 1;
        assert!(!upper_checksum_valid(src, dst, PROTO_UDP, &frame[54..]));
    }
}

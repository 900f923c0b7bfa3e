//! The established fast path's reading of a frame: one length check, then
//! fixed-offset reads through the typed views (`wire.rs`), for the frames
//! that make up nearly all of the traffic: a whole TCP or UDP packet with
//! the shortest IPv4 header. Anything else is declined (None) and goes
//! through the general parser. What it reads is what the general parser
//! reads, so a frame the fast path then leaves to the general path (a new
//! flow's first packet, a SYN, FIN or RST) is not parsed twice.

use super::checksum;
use super::parse::{Fragmentation, Frame, TcpFlags, Transport, L3_OFFSET, PROTO_TCP, PROTO_UDP};
use super::wire::{field, Ipv4Frame, TcpSegment, UdpDatagram};

const ETHERTYPE_IPV4: u16 = 0x0800;
/// Version 4, a header of five 32-bit words (no options).
const PLAIN_VERSION_IHL: u8 = 0x45;
/// The don't-fragment flag; every other bit of the flags and offset word
/// must be clear for a whole packet the fast path takes.
const DONT_FRAGMENT: u16 = 0x4000;

/// The [`Frame`] [`parse`](super::parse) gives for `buf`, when `buf` holds
/// an untagged unicast IPv4 packet with a 20-byte header and a valid header
/// checksum, not a fragment, a TTL above 1, carrying TCP or UDP whose
/// checksum is not partial (see
/// [`carries_partial_checksum`](super::carries_partial_checksum)). None for
/// anything else, which the general path handles.
pub fn parse_plain(buf: &[u8]) -> Option<Frame> {
    let ip = Ipv4Frame::new_checked(buf)?;
    // The cheap refusals first, before the checksums are summed.
    if ip.ether_type() != ETHERTYPE_IPV4
        || ip.dst_mac()[0] & 1 != 0
        || ip.version_ihl() != PLAIN_VERSION_IHL
        || ip.fragment_word() & !DONT_FRAGMENT != 0
        || ip.ttl() <= 1
        || ip.dst()[0] >= 224
    {
        return None;
    }
    let l4 = L3_OFFSET + field::IP_MIN_LEN;
    let end = L3_OFFSET + usize::from(ip.total_len());
    let segment = buf.get(l4..end)?;
    let protocol = ip.protocol();
    let (transport, l4_checksum) = plain_transport(protocol, segment)?;
    if checksum::fold(checksum::sum_bytes(0, ip.header())) != 0xffff {
        return None;
    }
    let (src, dst) = (ip.src(), ip.dst());
    // UDP sent without a checksum (0) has none to be partial.
    if l4_checksum != 0 || protocol == PROTO_TCP {
        // Fits: at most a 16-bit total length.
        let len = segment.len() as u16;
        let pseudo = checksum::fold(checksum::pseudo_header_sum(src, dst, protocol, len));
        if l4_checksum == pseudo {
            return None;
        }
    }
    Some(Frame {
        src_mac: ip.src_mac(),
        src,
        dst,
        ttl: ip.ttl(),
        protocol,
        ip_id: ip.ident(),
        dont_fragment: ip.fragment_word() & DONT_FRAGMENT != 0,
        fragmentation: Fragmentation::Whole,
        l4,
        end,
        transport,
    })
}

/// The TCP or UDP header at the start of `segment` (which runs to the end
/// of the packet) as both families' general parsers read it, and its
/// checksum field; None for another protocol, a header that does not fit,
/// or a UDP length outside the segment.
#[inline(always)]
pub(super) fn plain_transport(protocol: u8, segment: &[u8]) -> Option<(Transport, u16)> {
    match protocol {
        PROTO_TCP => {
            let tcp = TcpSegment::new_checked(segment)?;
            let flags = TcpFlags::from_byte(tcp.flags());
            let transport = Transport::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags,
                seq: tcp.seq(),
                // Fits: at most a 16-bit length. SYN and FIN each take a
                // sequence number.
                seq_len: tcp.payload_len() as u32 + u32::from(flags.syn) + u32::from(flags.fin),
            };
            Some((transport, tcp.checksum()))
        }
        PROTO_UDP => {
            let udp = UdpDatagram::new_checked(segment)?;
            let length = usize::from(udp.length());
            if length < field::UDP_HEADER_LEN || length > segment.len() {
                return None;
            }
            let transport = Transport::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                checksum: udp.checksum(),
            };
            Some((transport, udp.checksum()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::{fold, pseudo_header_sum};
    use crate::packet::wire::tcp_flag;
    use crate::packet::{apply, apply_established, parse, ChecksumDeltas, Endpoint, Rewrite};
    use crate::testing::{self, Addressing, Flags, ACK, FIN_ACK, SYN};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn addressing(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Addressing {
        Addressing {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            ttl,
        }
    }

    fn plain_udp() -> Vec<u8> {
        testing::tcp_or_udp(
            false,
            &addressing([192, 168, 50, 10], [203, 0, 113, 10], 64),
            (4000, 53),
            ACK,
            b"query",
        )
    }

    fn plain_tcp(flags: Flags) -> Vec<u8> {
        testing::tcp_or_udp(
            true,
            &addressing([192, 168, 50, 10], [203, 0, 113, 10], 64),
            (4000, 80),
            flags,
            b"data",
        )
    }

    /// Sets the TCP or UDP checksum field of an option-less frame.
    fn set_l4_checksum(frame: &mut [u8], value: u16) {
        let at = if frame[23] == PROTO_TCP {
            34 + 16
        } else {
            34 + 6
        };
        frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    #[test]
    fn takes_plain_tcp_and_udp_as_the_general_parser_reads_them() {
        let mut rst = plain_tcp(ACK);
        rst[34 + 13] |= tcp_flag::RST;
        for frame in [
            plain_udp(),
            plain_tcp(ACK),
            plain_tcp(SYN),
            plain_tcp(FIN_ACK),
            rst,
        ] {
            let plain = parse_plain(&frame).expect("a plain frame");
            assert_eq!(Ok(plain), parse(&frame));
        }
    }

    #[test]
    fn declines_what_the_fast_path_must_not_take() {
        let mut declined: Vec<(&str, Vec<u8>)> = vec![
            (
                "IP options",
                testing::with_ip_options(&plain_udp(), &[1, 1, 1, 0]),
            ),
            (
                "TTL 1",
                testing::tcp_or_udp(
                    false,
                    &addressing([192, 168, 50, 10], [203, 0, 113, 10], 1),
                    (1, 2),
                    ACK,
                    b"",
                ),
            ),
            (
                "ICMP",
                testing::icmp_echo(
                    &addressing([192, 168, 50, 10], [203, 0, 113, 10], 64),
                    true,
                    7,
                    1,
                    b"",
                ),
            ),
            (
                "first fragment",
                testing::fragment(&plain_udp(), 9, 8).remove(0),
            ),
            (
                "later fragment",
                testing::fragment(&plain_udp(), 9, 8).remove(1),
            ),
            (
                "multicast",
                testing::tcp_or_udp(
                    false,
                    &addressing([192, 168, 50, 10], [239, 1, 1, 1], 64),
                    (1, 2),
                    ACK,
                    b"",
                ),
            ),
        ];
        let mut bad_ip = plain_udp();
        bad_ip[24] ^= 1;
        declined.push(("bad IP checksum", bad_ip));
        let mut vlan = plain_udp();
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        declined.push(("VLAN", vlan));
        for tcp in [false, true] {
            let mut partial = if tcp { plain_tcp(ACK) } else { plain_udp() };
            let len = (partial.len() - 34) as u16;
            let protocol = partial[23];
            let pseudo = fold(pseudo_header_sum(
                [192, 168, 50, 10],
                [203, 0, 113, 10],
                protocol,
                len,
            ));
            set_l4_checksum(&mut partial, pseudo);
            declined.push(("partial checksum", partial));
        }
        for (what, frame) in declined {
            assert_eq!(parse_plain(&frame), None, "{what}");
        }
        let mut no_checksum = plain_udp();
        set_l4_checksum(&mut no_checksum, 0);
        assert!(
            parse_plain(&no_checksum).is_some(),
            "UDP without a checksum is plain"
        );
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(addr, port)| Endpoint::new(addr, port))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the bytes, a frame the fast path takes is the frame the
        /// general parser reads: well-formed frames with any ports, flags,
        /// TTL, payload and checksum field, then up to four bytes of their
        /// headers (or the frame's length) changed at random.
        #[test]
        fn takes_only_what_the_general_parser_reads_the_same(
            tcp in any::<bool>(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            ttl in any::<u8>(), ports in any::<(u16, u16)>(),
            flags in any::<(bool, bool, bool, bool)>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            check in proptest::option::of(any::<u16>()),
            edits in proptest::collection::vec((0usize..64, any::<u8>()), 0..4),
            cut in proptest::option::of(0usize..120),
        ) {
            let flags = Flags { syn: flags.0, ack: flags.1, fin: flags.2, rst: flags.3 };
            let mut bytes = testing::tcp_or_udp(tcp, &addressing(src, dst, ttl), ports, flags, &payload);
            if let Some(check) = check {
                set_l4_checksum(&mut bytes, check);
            }
            for (at, value) in edits {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = value;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            if let Some(plain) = parse_plain(&bytes) {
                prop_assert_eq!(Ok(plain), parse(&bytes));
            }
        }

        /// The one-pass rewrite with precomputed deltas writes the bytes the
        /// general rewrite writes, for any tuples and any checksum fields
        /// (0 and 0xffff included).
        #[test]
        fn one_pass_rewrite_equals_the_general_rewrite(
            tcp in any::<bool>(), old in (endpoint(), endpoint()), new in (endpoint(), endpoint()),
            ttl in 2u8.., payload in proptest::collection::vec(any::<u8>(), 0..64),
            ip_check in any::<u16>(),
            l4_check in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
            macs in any::<([u8; 6], [u8; 6])>(),
        ) {
            let mut old = old;
            // Not multicast, which the parser leaves to the kernel.
            old.1.addr[0] %= 224;
            let a = addressing(old.0.addr, old.1.addr, ttl);
            let mut bytes = testing::tcp_or_udp(tcp, &a, (old.0.port, old.1.port), ACK, &payload);
            set_l4_checksum(&mut bytes, l4_check);
            bytes[24..26].copy_from_slice(&ip_check.to_be_bytes());
            // The general parser does not mind the IP checksum here: the
            // rewrite updates whatever the field holds.
            let mut valid = bytes.clone();
            valid[24..26].fill(0);
            let sum = crate::packet::checksum::checksum(&valid[14..34]);
            valid[24..26].copy_from_slice(&sum.to_be_bytes());
            let frame = parse(&valid).expect("a well-formed frame");
            let rewrite = Rewrite { src_mac: macs.0, dst_mac: macs.1, src: new.0, dst: new.1 };
            let mut general = bytes.clone();
            apply(&mut general, &frame, &rewrite, false);
            let mut fast = bytes;
            apply_established(&mut fast, &frame, &rewrite, ChecksumDeltas::new(old, new));
            prop_assert_eq!(fast, general);
        }
    }
}

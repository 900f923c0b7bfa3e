//! [`super::parse_plain`] for IPv6: one length check, then fixed-offset
//! reads through the typed views (`wire6.rs`, and `wire.rs` for TCP and
//! UDP), for the frames that make up nearly all IPv6 traffic: a TCP segment
//! or UDP datagram right after the fixed header. Anything else is declined
//! (None) and goes through [`super::parse6`]. What it reads is what
//! `parse6` reads, so a frame the fast path then leaves to the general path
//! (a new flow's first packet, a SYN, FIN or RST) is not parsed twice.

use super::checksum;
use super::fast::plain_transport;
use super::ipv6::{forwardable_scope, Frame6};
use super::parse::PROTO_UDP;
use super::wire6::{Ipv6Frame, ETHERTYPE_IPV6, L3_PAYLOAD_OFFSET};

/// The [`Frame6`] [`parse6`](super::parse6) gives for `buf`, when `buf`
/// holds an untagged IPv6 packet to a unicast MAC, between addresses a
/// router forwards (not multicast, link-local, loopback or unspecified),
/// with a hop limit above 1 and a payload length within the frame, whose
/// next header is TCP or UDP (no extension header), with a checksum that
/// is not the pseudo-header's sum alone (what a partial checksum holds:
/// such a frame goes the general way, as with IPv4) and, for UDP, not 0
/// (which `parse6` drops). None for anything else, which the general path
/// handles.
pub fn parse_plain6(buf: &[u8]) -> Option<Frame6> {
    let ip = Ipv6Frame::new_checked(buf)?;
    if ip.ether_type() != ETHERTYPE_IPV6
        || ip.dst_mac()[0] & 1 != 0
        || ip.version() != 6
        || ip.hop_limit() <= 1
    {
        return None;
    }
    let (src, dst) = (ip.src(), ip.dst());
    forwardable_scope(src, dst).ok()?;
    let end = L3_PAYLOAD_OFFSET + usize::from(ip.payload_len());
    let segment = buf.get(L3_PAYLOAD_OFFSET..end)?;
    let protocol = ip.next_header();
    let (transport, l4_checksum) = plain_transport(protocol, segment)?;
    if l4_checksum == 0 && protocol == PROTO_UDP {
        return None;
    }
    // Fits: at most a 16-bit payload length.
    let len = segment.len() as u32;
    let pseudo = checksum::fold(checksum::pseudo_header_sum6(src, dst, protocol, len));
    if l4_checksum == pseudo {
        return None;
    }
    Some(Frame6 {
        src_mac: ip.src_mac(),
        src,
        dst,
        hop_limit: ip.hop_limit(),
        protocol,
        l4: L3_PAYLOAD_OFFSET,
        end,
        fragment: None,
        extensions: false,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::{fold, pseudo_header_sum6};
    use crate::packet::parse::PROTO_TCP;
    use crate::packet::parse6;
    use crate::packet::test6::{addr, echo, frame6, global_addr, tcp, udp, Ext};
    use crate::packet::wire::tcp_flag;
    use proptest::prelude::*;

    const SRC: &str = "fd00::10";
    const DST: &str = "2001:db8:2::20";

    fn plain(protocol: u8, flags: u8, hop_limit: u8) -> Vec<u8> {
        let upper = if protocol == PROTO_TCP {
            tcp(40000, 443, flags, 7, b"data")
        } else {
            udp(40000, 53, b"query")
        };
        frame6(addr(SRC), addr(DST), hop_limit, &[], protocol, &upper)
    }

    /// The checksum field of a frame without extension headers.
    fn l4_checksum_at(frame: &[u8]) -> usize {
        54 + if frame[20] == PROTO_TCP { 16 } else { 6 }
    }

    #[test]
    fn takes_plain_tcp_and_udp_as_the_general_parser_reads_them() {
        let mut padded = plain(PROTO_UDP, 0, 64);
        padded.extend_from_slice(&[0; 6]);
        let flags = [
            tcp_flag::ACK,
            tcp_flag::SYN,
            tcp_flag::FIN | tcp_flag::ACK,
            tcp_flag::RST,
        ];
        let frames = flags
            .iter()
            .map(|&flags| plain(PROTO_TCP, flags, 64))
            .chain([plain(PROTO_UDP, 0, 2), padded]);
        for frame in frames {
            let fast = parse_plain6(&frame).expect("a plain frame");
            assert_eq!(Ok(fast), parse6(&frame));
        }
    }

    #[test]
    fn declines_what_the_fast_path_must_not_take() {
        let (src, dst) = (addr(SRC), addr(DST));
        let udp_to = |dst: &str| frame6(src, addr(dst), 64, &[], PROTO_UDP, &udp(1, 2, b""));
        let mut declined: Vec<(&str, Vec<u8>)> = vec![
            ("hop limit 1", plain(PROTO_UDP, 0, 1)),
            (
                "extension header",
                frame6(
                    src,
                    dst,
                    64,
                    &[Ext::DestOpts(0)],
                    PROTO_UDP,
                    &udp(1, 2, b""),
                ),
            ),
            (
                "atomic fragment",
                frame6(
                    src,
                    dst,
                    64,
                    &[Ext::Fragment {
                        offset: 0,
                        more: false,
                        id: 1,
                    }],
                    PROTO_UDP,
                    &udp(1, 2, b""),
                ),
            ),
            (
                "ICMPv6",
                frame6(src, dst, 64, &[], 58, &echo(true, 1, 1, b"")),
            ),
            ("multicast", udp_to("ff0e::1")),
            ("link-local", udp_to("fe80::1")),
            ("loopback", udp_to("::1")),
        ];
        let mut edit = |what, at: usize, value: u8| {
            let mut frame = plain(PROTO_UDP, 0, 64);
            frame[at] = value;
            declined.push((what, frame));
        };
        edit("multicast MAC", 0, 0x33);
        edit("VLAN", 12, 0x81);
        edit("version 4", 14, 0x45);
        edit("payload beyond the frame", 19, 0xff);
        edit("UDP length beyond the payload", 54 + 5, 0xff);
        let mut zero = plain(PROTO_UDP, 0, 64);
        let at = l4_checksum_at(&zero);
        zero[at..at + 2].fill(0);
        declined.push(("UDP without a checksum", zero));
        for protocol in [PROTO_TCP, PROTO_UDP] {
            let mut partial = plain(protocol, tcp_flag::ACK, 64);
            let len = (partial.len() - 54) as u32;
            let pseudo = fold(pseudo_header_sum6(src, dst, protocol, len));
            let at = l4_checksum_at(&partial);
            partial[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            declined.push(("partial checksum", partial));
        }
        let short = plain(PROTO_TCP, tcp_flag::ACK, 64);
        for cut in 0..short.len() {
            assert_eq!(parse_plain6(&short[..cut]), None, "cut at {cut}");
        }
        for (what, frame) in declined {
            assert_eq!(parse_plain6(&frame), None, "{what}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the bytes, a frame the fast path takes is the frame
        /// `parse6` reads: well-formed frames with any addresses, ports,
        /// flags, hop limit, payload and checksum field, then up to four
        /// bytes of their headers (or the frame's length) changed at random.
        #[test]
        fn takes_only_what_the_general_parser_reads_the_same(
            is_tcp in any::<bool>(), src in global_addr(), dst in global_addr(),
            hop_limit in any::<u8>(), ports in any::<(u16, u16)>(), flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            check in proptest::option::of(any::<u16>()),
            edits in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
            cut in proptest::option::of(0usize..140),
        ) {
            let (protocol, upper) = if is_tcp {
                (PROTO_TCP, tcp(ports.0, ports.1, flags, 1, &payload))
            } else {
                (PROTO_UDP, udp(ports.0, ports.1, &payload))
            };
            let mut bytes = frame6(src, dst, hop_limit, &[], protocol, &upper);
            if let Some(check) = check {
                let at = l4_checksum_at(&bytes);
                bytes[at..at + 2].copy_from_slice(&check.to_be_bytes());
            }
            for (at, value) in edits {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = value;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            if let Some(fast) = parse_plain6(&bytes) {
                prop_assert_eq!(Ok(fast), parse6(&bytes));
            }
        }
    }
}

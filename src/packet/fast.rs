//! The established fast path's reading of a frame: one length check, then
//! fixed-offset reads through the typed views (`wire.rs`), for the frames
//! that make up nearly all of the traffic of established flows: a whole
//! TCP or UDP packet with the shortest IPv4 header. Anything else is
//! declined (None) and goes through the general parser.

use super::checksum;
use super::parse::{Fragmentation, Frame, TcpFlags, Transport, L3_OFFSET, PROTO_TCP, PROTO_UDP};
use super::wire::{field, tcp_flag, Ipv4Frame, TcpSegment, UdpDatagram};

const ETHERTYPE_IPV4: u16 = 0x0800;
/// Version 4, a header of five 32-bit words (no options).
const PLAIN_VERSION_IHL: u8 = 0x45;
/// The don't-fragment flag; every other bit of the flags and offset word
/// must be clear for a whole packet the fast path takes.
const DONT_FRAGMENT: u16 = 0x4000;

/// The [`Frame`] [`parse`](super::parse) gives for `buf`, when `buf` holds
/// a frame the established fast path may take: an untagged unicast IPv4
/// packet with a 20-byte header and a valid header checksum, not a
/// fragment, a TTL above 1, carrying UDP, or TCP without SYN, FIN or RST,
/// whose TCP or UDP checksum is not partial (see
/// [`carries_partial_checksum`](super::carries_partial_checksum)). None for
/// anything else, which the general path handles.
pub fn parse_plain(buf: &[u8]) -> Option<Frame> {
    let ip = Ipv4Frame::new_checked(buf)?;
    if ip.ether_type() != ETHERTYPE_IPV4
        || ip.dst_mac()[0] & 1 != 0
        || ip.version_ihl() != PLAIN_VERSION_IHL
        || ip.fragment_word() & !DONT_FRAGMENT != 0
        || ip.ttl() <= 1
        || ip.dst()[0] >= 224
    {
        return None;
    }
    if checksum::fold(checksum::sum_bytes(0, ip.header())) != 0xffff {
        return None;
    }
    let l4 = L3_OFFSET + field::IP_MIN_LEN;
    let end = L3_OFFSET + usize::from(ip.total_len());
    let segment = buf.get(l4..end)?;
    let protocol = ip.protocol();
    let (transport, l4_checksum) = match protocol {
        PROTO_TCP => {
            let tcp = TcpSegment::new_checked(segment)?;
            let flags = tcp.flags();
            if flags & (tcp_flag::SYN | tcp_flag::FIN | tcp_flag::RST) != 0 {
                return None;
            }
            let transport = Transport::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags: TcpFlags {
                    ack: flags & tcp_flag::ACK != 0,
                    ..TcpFlags::default()
                },
                seq: tcp.seq(),
                // Fits: at most a 16-bit total length.
                seq_len: tcp.payload_len() as u32,
            };
            (transport, Some(tcp.checksum()))
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
            (transport, (udp.checksum() != 0).then_some(udp.checksum()))
        }
        _ => return None,
    };
    let (src, dst) = (ip.src(), ip.dst());
    if let Some(sent) = l4_checksum {
        // Fits: at most a 16-bit total length.
        let len = segment.len() as u16;
        let pseudo = checksum::fold(checksum::pseudo_header_sum(src, dst, protocol, len));
        if sent == pseudo {
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

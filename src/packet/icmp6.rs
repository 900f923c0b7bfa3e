//! ICMPv6 errors (RFC 4443), as `icmp.rs` has for ICMP: reading the packet
//! an error quotes, translating the error together with that packet, and
//! turning a received frame into an error about itself. Unlike ICMPv4, the
//! ICMPv6 checksum covers a pseudo-header, so translating the error's own
//! addresses changes it too; and an IPv6 quote carries no header checksum,
//! but may carry extension headers before its upper layer.

use super::checksum::{transport_checksum6, update16, update_words};
use super::icmp::QuoteError;
use super::ipv6::{
    is_multicast6, walk, ChainError, Frame6, Upper, Walk, ICMP6_DEST_UNREACHABLE, ICMP6_ECHO_REPLY,
    ICMP6_ECHO_REQUEST, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED, PROTO_ICMPV6,
};
use super::parse::{Transport, L3_OFFSET, PROTO_TCP, PROTO_UDP};
use super::rewrite::{Addr6, Endpoint6, Words};
use super::rewrite6::{rewrite_ip6, rewrite_upper6, Upper6};
use super::wire::{field, IcmpMessage};
use super::wire6::{field6, get16, set16, Ipv6Frame, ETHERTYPE_IPV6};

/// The packet an ICMPv6 error quotes, as the router needs it: where its
/// headers are and its tuple (for ICMPv6 echo the identifier, as in
/// [`Frame6::ports`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted6 {
    /// Offset of the quoted IPv6 header.
    pub ip: usize,
    /// Offset of its upper-layer header (after its extension headers).
    pub l4: usize,
    pub protocol: u8,
    pub src: Endpoint6,
    pub dst: Endpoint6,
    kind: Upper6,
}

/// The bytes of a quoted ICMPv6 header the tuple is read from: type, code,
/// checksum and echo identifier.
const QUOTED_ECHO_LEN: usize = 6;

/// The packet quoted by the ICMPv6 error `frame` (parsed from `buf`). Lax,
/// as a quote may be cut anywhere: it needs the quoted fixed header, its
/// extension headers (Hop-by-Hop included: only the tuple behind them
/// matters) and the upper layer's ports or echo identifier, nothing more.
/// A later fragment, ESP, a Routing header with segments left (the quoted
/// destination is only a waypoint) or any protocol but TCP, UDP and ICMPv6
/// echo is untranslatable.
pub fn quoted6(buf: &[u8], frame: &Frame6) -> Result<Quoted6, QuoteError> {
    let message = buf
        .get(frame.l4..frame.end)
        .and_then(IcmpMessage::new_checked)
        .ok_or(QuoteError::Truncated)?;
    let ip = frame.l4 + field::ICMP_HEADER_LEN;
    let bytes = message.body();
    let (first, src, dst) = quoted_header(bytes)?;
    let chain = walk(bytes, first, Walk::Quote).map_err(|error| match error {
        ChainError::Malformed => QuoteError::Truncated,
        _ => QuoteError::Untranslatable,
    })?;
    if chain.upper != Upper::Header {
        return Err(QuoteError::Untranslatable);
    }
    let upper = bytes.get(chain.l4..).unwrap_or_default();
    let (ports, kind) = quoted_upper(chain.protocol, upper)?;
    Ok(Quoted6 {
        ip,
        l4: ip + chain.l4,
        protocol: chain.protocol,
        src: Endpoint6::new(src, ports.0),
        dst: Endpoint6::new(dst, ports.1),
        kind,
    })
}

/// The quoted fixed header: its next header and addresses.
fn quoted_header(bytes: &[u8]) -> Result<(u8, Addr6, Addr6), QuoteError> {
    let header = bytes
        .get(..field6::HEADER_LEN)
        .ok_or(QuoteError::Truncated)?;
    if header[field6::VERSION] >> 4 != 6 {
        return Err(QuoteError::Truncated);
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&header[field6::SRC]);
    dst.copy_from_slice(&header[field6::DST]);
    Ok((header[field6::NEXT_HEADER], src, dst))
}

/// The quoted upper layer's ports (source, destination) and kind.
fn quoted_upper(protocol: u8, upper: &[u8]) -> Result<((u16, u16), Upper6), QuoteError> {
    let word = |at: usize| get16(upper, at).ok_or(QuoteError::Truncated);
    match protocol {
        PROTO_TCP | PROTO_UDP => {
            let ports = (word(field::SRC_PORT.start)?, word(field::DST_PORT.start)?);
            let kind = if protocol == PROTO_TCP {
                Upper6::Tcp
            } else {
                Upper6::Udp
            };
            Ok((ports, kind))
        }
        PROTO_ICMPV6 => {
            if upper.len() < QUOTED_ECHO_LEN {
                return Err(QuoteError::Truncated);
            }
            let id = word(field::ECHO_ID.start)?;
            match (upper[field::ICMP_TYPE], upper[field::ICMP_CODE]) {
                (ICMP6_ECHO_REQUEST, 0) => Ok(((id, 0), Upper6::Echo { request: true })),
                (ICMP6_ECHO_REPLY, 0) => Ok(((0, id), Upper6::Echo { request: false })),
                _ => Err(QuoteError::Untranslatable),
            }
        }
        _ => Err(QuoteError::Untranslatable),
    }
}

/// What an ICMPv6 error and the packet it quotes become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRewrite6 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The error's own addresses.
    pub src: Addr6,
    pub dst: Addr6,
    /// The quoted packet's endpoints.
    pub quoted_src: Endpoint6,
    pub quoted_dst: Endpoint6,
}

/// The ICMPv6 checksum, followed through every 16-bit word changed in the
/// message (all fields changed sit at even offsets of it).
struct Icmp6Sum(u16);

impl Words for Icmp6Sum {
    fn set16(&mut self, buf: &mut [u8], at: usize, value: u16) {
        if let Some(old) = get16(buf, at).filter(|old| *old != value) {
            self.0 = update16(self.0, old, value);
            set16(buf, at, value);
        }
    }
}

impl Icmp6Sum {
    fn set_addr(&mut self, buf: &mut [u8], at: usize, addr: Addr6) {
        for (i, word) in addr.chunks_exact(2).enumerate() {
            self.set16(buf, at + 2 * i, u16::from_be_bytes([word[0], word[1]]));
        }
    }
}

/// Translates the ICMPv6 error `frame` (parsed from `buf`) quoting `quoted`:
/// the quoted addresses and ports (or echo identifier) and, where the quote
/// holds it, the quoted upper-layer checksum (pseudo-header and ports); the
/// ICMPv6 checksum for every word changed in the message and for its own
/// pseudo-header; the outer addresses, hop limit (decremented) and MACs.
/// Every update is incremental. Returns the length of the frame to send.
pub fn translate_error6(
    buf: &mut [u8],
    frame: &Frame6,
    quoted: &Quoted6,
    rewrite: &ErrorRewrite6,
) -> usize {
    let check_at = frame.l4 + field::ICMP_CHECKSUM.start;
    // A parsed ICMPv6 message always holds its header.
    let Some(check) = get16(buf, check_at) else {
        return frame.end;
    };
    let mut icmp = Icmp6Sum(check);
    let ip = quoted.ip;
    icmp.set_addr(buf, ip + field6::SRC.start, rewrite.quoted_src.addr);
    icmp.set_addr(buf, ip + field6::DST.start, rewrite.quoted_dst.addr);
    let old = (quoted.src, quoted.dst);
    let new = (rewrite.quoted_src, rewrite.quoted_dst);
    rewrite_upper6(&mut icmp, buf, quoted.l4, frame.end, quoted.kind, old, new);

    let mut check = icmp.0;
    for (old, new) in [(frame.src, rewrite.src), (frame.dst, rewrite.dst)] {
        if old != new {
            check = update_words(check, &old, &new);
        }
    }
    set16(buf, check_at, check);
    rewrite_ip6(
        buf,
        frame,
        (rewrite.src_mac, rewrite.dst_mac),
        rewrite.src,
        rewrite.dst,
    );
    frame.end
}

/// An ICMPv6 error the router sends about a packet it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error6 {
    /// Hop limit exceeded in transit (type 3, code 0).
    TimeExceeded,
    /// Packet too big (type 2, code 0), with the next-hop MTU: routers do not
    /// fragment IPv6, so this is how a sender learns the path MTU.
    PacketTooBig { mtu: u32 },
    /// Destination unreachable (type 1) with its code (0 no route, 1
    /// administratively prohibited, 3 address unreachable, 4 port
    /// unreachable, 5 source address failed policy...): what tells a client
    /// with no working IPv6 uplink to fall back at once.
    Unreachable { code: u8 },
}

impl Error6 {
    /// Type, code and the 4 bytes after the checksum.
    fn header(self) -> (u8, u8, [u8; 4]) {
        match self {
            Error6::TimeExceeded => (ICMP6_TIME_EXCEEDED, 0, [0; 4]),
            Error6::PacketTooBig { mtu } => (ICMP6_PACKET_TOO_BIG, 0, mtu.to_be_bytes()),
            Error6::Unreachable { code } => (ICMP6_DEST_UNREACHABLE, code, [0; 4]),
        }
    }
}

/// The longest ICMPv6 error sent, IPv6 header included: the IPv6 minimum
/// MTU (RFC 4443 2.4(c)), so an error always reaches its destination.
pub const MAX_ERROR6_LEN: usize = 1280;

/// IPv6 + ICMPv6 header of an error.
pub const ERROR6_HEADERS: usize = field6::HEADER_LEN + field::ICMP_HEADER_LEN;

/// The hop limit of errors the router makes: Linux's for ICMPv6 it
/// originates (the most a packet can have).
const ERROR6_HOP_LIMIT: u8 = 255;

/// Whether the router may answer `frame` with an ICMPv6 error (RFC 4443
/// 2.4(e)): not about an ICMPv6 error or an informational message other
/// than an echo request, and not to a multicast or unspecified source (one
/// that names no single host). A later fragment may be answered, unlike in
/// IPv4: a Packet Too Big about it is how its sender learns the path MTU.
/// Packets to multicast, about which only Packet Too Big may be sent, never
/// reach this: the parser leaves them to the kernel.
pub fn may_answer6(frame: &Frame6) -> bool {
    let unicast_source = !is_multicast6(frame.src) && frame.src != [0; 16];
    let quotable = match frame.transport {
        Transport::IcmpEcho { request, .. } => request,
        Transport::IcmpError { .. } | Transport::IcmpOther { .. } => false,
        Transport::Tcp { .. }
        | Transport::Udp { .. }
        | Transport::Other { .. }
        | Transport::Fragment => true,
    };
    unicast_source && quotable
}

/// Turns the frame in `buf` (which `frame` was parsed from) into `error`
/// about the packet it holds, sent from `from` (the router's address and MAC
/// on the port it came in by) back to its sender with hop limit 255. The
/// error quotes as much of the packet as fits in `buf` and in 1280 bytes,
/// and at least its header chain and 8 bytes of its upper layer (or the
/// whole packet if shorter), so the sender can match it to a socket.
/// Returns the length of the error frame, or None when `buf` is too short
/// to hold it (the caller then makes the error elsewhere, or leaves it).
pub fn make_error6(
    buf: &mut [u8],
    frame: &Frame6,
    error: Error6,
    from: (Addr6, [u8; 6]),
) -> Option<usize> {
    if frame.end > buf.len() || frame.l4 > frame.end || frame.l4 < L3_OFFSET {
        return None;
    }
    let packet_len = frame.end - L3_OFFSET;
    let needed = packet_len.min(frame.l4 - L3_OFFSET + field::ICMP_HEADER_LEN);
    let room = buf.len().checked_sub(L3_OFFSET + ERROR6_HEADERS)?;
    let quote = packet_len.min(MAX_ERROR6_LEN - ERROR6_HEADERS).min(room);
    if quote < needed {
        return None;
    }
    let icmp = L3_OFFSET + ERROR6_HEADERS - field::ICMP_HEADER_LEN;
    let end = L3_OFFSET + ERROR6_HEADERS + quote;
    buf.copy_within(L3_OFFSET..L3_OFFSET + quote, L3_OFFSET + ERROR6_HEADERS);

    let (from_addr, from_mac) = from;
    let mut ip = Ipv6Frame::new_checked(&mut *buf)?;
    ip.set_macs(from_mac, frame.src_mac);
    ip.set_ether_type(ETHERTYPE_IPV6);
    ip.set_version_class_label();
    // At most 1240 (1280 less the fixed header).
    ip.set_payload_len(u16::try_from(end - icmp).ok()?);
    ip.set_next_header(PROTO_ICMPV6);
    ip.set_hop_limit(ERROR6_HOP_LIMIT);
    ip.set_src(from_addr);
    ip.set_dst(frame.src);

    let (icmp_type, code, rest) = error.header();
    let header = buf.get_mut(icmp..icmp + field::ICMP_HEADER_LEN)?;
    header.copy_from_slice(&[icmp_type, code, 0, 0, rest[0], rest[1], rest[2], rest[3]]);
    let check = transport_checksum6(from_addr, frame.src, PROTO_ICMPV6, buf.get(icmp..end)?);
    set16(buf, icmp + field::ICMP_CHECKSUM.start, check);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ipv6::{parse6, NEXT_ESP, NEXT_HOP_BY_HOP};
    use crate::packet::test6::{
        addr, echo, ethernet, forwardable_exts, frame6, global_addr, icmp6, packet6, tcp, udp,
        upper_checksum_valid, Ext, HOST_MAC, ROUTER_MAC,
    };
    use proptest::prelude::*;

    const HOST: &str = "fd00::10";
    const SERVER: &str = "2001:db8:2::20";
    const HOP: &str = "2001:db8:9::1";

    /// An error from `from` to `to` quoting `quote`.
    fn error_frame(from: Addr6, to: Addr6, icmp_type: u8, quote: &[u8]) -> Vec<u8> {
        frame6(
            from,
            to,
            60,
            &[],
            PROTO_ICMPV6,
            &icmp6(icmp_type, 0, [0; 4], quote),
        )
    }

    fn udp_quote(exts: &[Ext]) -> Vec<u8> {
        packet6(
            addr("2001:db8:1::1"),
            addr(SERVER),
            1,
            exts,
            PROTO_UDP,
            &udp(61000, 53, b"query"),
        )
    }

    #[test]
    fn reads_the_quoted_tuple_through_extension_headers() {
        let exts = [
            Ext::HopByHop,
            Ext::DestOpts(1),
            Ext::Fragment {
                offset: 0,
                more: true,
                id: 3,
            },
        ];
        let quote = udp_quote(&exts);
        let error = error_frame(addr(HOP), addr("2001:db8:1::1"), 3, &quote);
        let frame = parse6(&error).unwrap();
        assert_eq!(
            frame.transport,
            Transport::IcmpError {
                icmp_type: 3,
                code: 0
            }
        );
        let q = quoted6(&error, &frame).unwrap();
        assert_eq!(q.protocol, PROTO_UDP);
        assert_eq!(q.src, Endpoint6::new(addr("2001:db8:1::1"), 61000));
        assert_eq!(q.dst, Endpoint6::new(addr(SERVER), 53));
        assert_eq!(q.ip, 54 + 8);
        assert_eq!(q.l4, q.ip + 40 + 8 + 16 + 8);
    }

    #[test]
    fn reads_a_quoted_echo_and_tcp() {
        let quote = packet6(
            addr(SERVER),
            addr("2001:db8:1::1"),
            1,
            &[],
            PROTO_ICMPV6,
            &echo(false, 0x4242, 1, b""),
        );
        let error = error_frame(addr(HOP), addr(SERVER), 1, &quote);
        let q = quoted6(&error, &parse6(&error).unwrap()).unwrap();
        assert_eq!((q.src.port, q.dst.port), (0, 0x4242));
        let quote = packet6(
            addr(SERVER),
            addr("2001:db8:1::1"),
            1,
            &[],
            PROTO_TCP,
            &tcp(443, 61000, 0x12, 0, b""),
        );
        let error = error_frame(addr(HOP), addr(SERVER), 1, &quote);
        let q = quoted6(&error, &parse6(&error).unwrap()).unwrap();
        assert_eq!(
            (q.protocol, q.src.port, q.dst.port),
            (PROTO_TCP, 443, 61000)
        );
    }

    #[test]
    fn a_quote_cut_after_the_ports_is_enough() {
        let exts = [Ext::DestOpts(0)];
        let quote = udp_quote(&exts);
        let l4 = 40 + 8;
        for cut in 0..quote.len() {
            let error = error_frame(addr(HOP), addr("2001:db8:1::1"), 3, &quote[..cut]);
            let frame = parse6(&error).unwrap();
            let result = quoted6(&error, &frame).map(|q| (q.src.port, q.dst.port));
            if cut < l4 + 4 {
                assert_eq!(result, Err(QuoteError::Truncated), "{cut}");
            } else {
                assert_eq!(result, Ok((61000, 53)), "{cut}");
            }
        }
        let quote = packet6(
            addr(SERVER),
            addr(HOST),
            1,
            &[],
            PROTO_ICMPV6,
            &echo(true, 1, 1, b""),
        );
        let error = error_frame(addr(HOP), addr(SERVER), 3, &quote[..45]);
        assert_eq!(
            quoted6(&error, &parse6(&error).unwrap()),
            Err(QuoteError::Truncated)
        );
        let error = error_frame(addr(HOP), addr(SERVER), 3, &quote[..46]);
        assert!(quoted6(&error, &parse6(&error).unwrap()).is_ok());
    }

    #[test]
    fn untranslatable_quotes() {
        let later = Ext::Fragment {
            offset: 8,
            more: true,
            id: 3,
        };
        let quotes = [
            udp_quote(&[later]),
            udp_quote(&[Ext::Routing { segments_left: 2 }]),
            udp_quote(&[Ext::DestOpts(0); 9]),
            packet6(addr(HOST), addr(SERVER), 1, &[], NEXT_ESP, &[0; 16]),
            packet6(addr(HOST), addr(SERVER), 1, &[], 132, &[0; 16]),
            packet6(
                addr(HOST),
                addr(SERVER),
                1,
                &[],
                PROTO_ICMPV6,
                &icmp6(1, 0, [0; 4], b""),
            ),
            packet6(
                addr(HOST),
                addr(SERVER),
                1,
                &[],
                PROTO_ICMPV6,
                &icmp6(128, 1, [0; 4], b""),
            ),
        ];
        for (i, quote) in quotes.iter().enumerate() {
            let error = error_frame(addr(HOP), addr(HOST), 3, quote);
            let frame = parse6(&error).unwrap();
            assert_eq!(
                quoted6(&error, &frame),
                Err(QuoteError::Untranslatable),
                "{i}"
            );
        }
        let mut v4 = udp_quote(&[]);
        v4[0] = 0x45;
        let error = error_frame(addr(HOP), addr(HOST), 3, &v4);
        assert_eq!(
            quoted6(&error, &parse6(&error).unwrap()),
            Err(QuoteError::Truncated)
        );
    }

    /// The ICMPv6 checksum of the frame in `buf`, and the quoted upper
    /// layer's when the quote holds all of it, are valid by the reference sum.
    fn checksums_valid(buf: &[u8]) -> (bool, Option<bool>) {
        let frame = parse6(buf).expect("parses");
        let outer = upper_checksum_valid(
            frame.src,
            frame.dst,
            PROTO_ICMPV6,
            &buf[frame.l4..frame.end],
        );
        let q = quoted6(buf, &frame).expect("quotes");
        let inner_end = q.ip + 40 + usize::from(u16::from_be_bytes([buf[q.ip + 4], buf[q.ip + 5]]));
        let inner = (inner_end == frame.end).then(|| {
            upper_checksum_valid(q.src.addr, q.dst.addr, q.protocol, &buf[q.l4..inner_end])
        });
        (outer, inner)
    }

    #[test]
    fn translates_an_error_and_its_quote() {
        // A time exceeded from a hop about a NAT66-translated UDP datagram,
        // going back to the LAN host.
        let quote = udp_quote(&[]);
        let mut buf = error_frame(addr(HOP), addr("2001:db8:1::1"), 3, &quote);
        let frame = parse6(&buf).unwrap();
        let q = quoted6(&buf, &frame).unwrap();
        let rewrite = ErrorRewrite6 {
            src_mac: ROUTER_MAC,
            dst_mac: HOST_MAC,
            src: addr(HOP),
            dst: addr(HOST),
            quoted_src: Endpoint6::new(addr(HOST), 40000),
            quoted_dst: Endpoint6::new(addr(SERVER), 53),
        };
        assert_eq!(checksums_valid(&buf), (true, Some(true)));
        assert_eq!(translate_error6(&mut buf, &frame, &q, &rewrite), buf.len());
        assert_eq!(checksums_valid(&buf), (true, Some(true)));
        assert_eq!((&buf[0..6], &buf[6..12]), (&HOST_MAC[..], &ROUTER_MAC[..]));
        assert_eq!(buf[21], 59);
        assert_eq!(&buf[38..54], &addr(HOST));
        assert_eq!(&buf[q.ip + 8..q.ip + 24], &addr(HOST));
        assert_eq!(&buf[q.l4..q.l4 + 4], &[0x9c, 0x40, 0, 53]);
        let after = parse6(&buf).unwrap();
        let q = quoted6(&buf, &after).unwrap();
        assert_eq!((q.src, q.dst), (rewrite.quoted_src, rewrite.quoted_dst));
    }

    /// Inner upper layers a property test translates.
    fn inner_upper() -> impl Strategy<Value = (u8, u16, u16, bool)> {
        prop_oneof![
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| (PROTO_TCP, s, d, false)),
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| (PROTO_UDP, s, d, false)),
            (any::<u16>(), any::<bool>()).prop_map(|(id, request)| (PROTO_ICMPV6, id, id, request)),
        ]
    }

    proptest! {
        /// After translate_error6 the ICMPv6 checksum is valid by a full
        /// recomputation, and so is the quoted upper layer's where the quote
        /// holds it whole; the quote reads back as the new tuple. Random
        /// addresses and ports, TCP, UDP and echo quoted, inner extension
        /// headers, quotes cut anywhere after the ports.
        #[test]
        fn translate_error6_leaves_valid_checksums(
            outer in (global_addr(), global_addr(), global_addr(), global_addr()),
            inner in (global_addr(), global_addr(), global_addr(), global_addr()),
            (protocol, src_port, dst_port, request) in inner_upper(),
            new_ports in any::<(u16, u16)>(),
            exts in forwardable_exts(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            cut in any::<usize>(),
            icmp_type in 1u8..5,
        ) {
            let segment = match protocol {
                PROTO_TCP => tcp(src_port, dst_port, 0x10, 9, &payload),
                PROTO_UDP => udp(src_port, dst_port, &payload),
                _ => echo(request, src_port, 1, &payload),
            };
            let quote = packet6(inner.0, inner.1, 1, &exts, protocol, &segment);
            let l4 = quote.len() - segment.len();
            let min = l4 + if protocol == PROTO_ICMPV6 { 6 } else { 4 };
            let len = min + cut % (quote.len() - min + 1);
            let mut buf = error_frame(outer.0, outer.1, icmp_type, &quote[..len]);
            let frame = parse6(&buf).unwrap();
            let q = quoted6(&buf, &frame).unwrap();
            let (old_src_port, old_dst_port) = (q.src.port, q.dst.port);
            let ports = (
                if old_src_port == 0 && protocol == PROTO_ICMPV6 { 0 } else { new_ports.0 },
                if old_dst_port == 0 && protocol == PROTO_ICMPV6 { 0 } else { new_ports.1 },
            );
            let rewrite = ErrorRewrite6 {
                src_mac: ROUTER_MAC,
                dst_mac: HOST_MAC,
                src: outer.2,
                dst: outer.3,
                quoted_src: Endpoint6::new(inner.2, ports.0),
                quoted_dst: Endpoint6::new(inner.3, ports.1),
            };
            translate_error6(&mut buf, &frame, &q, &rewrite);
            let (outer_valid, inner_valid) = checksums_valid(&buf);
            prop_assert!(outer_valid);
            prop_assert!(inner_valid != Some(false));
            prop_assert_eq!(inner_valid.is_some(), len == quote.len());
            let after = parse6(&buf).unwrap();
            prop_assert_eq!((after.src, after.dst, after.hop_limit), (outer.2, outer.3, 59));
            let q = quoted6(&buf, &after).unwrap();
            prop_assert_eq!((q.src, q.dst), (rewrite.quoted_src, rewrite.quoted_dst));
        }

        /// Random bytes quoted never make quoted6 (or translating what it
        /// reads) panic.
        #[test]
        fn random_quotes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..160),
                                     first in prop_oneof![Just(NEXT_HOP_BY_HOP), Just(60u8), Just(44u8), Just(51u8), Just(43u8), any::<u8>()],
                                     pad in 0usize..8) {
            let mut quote = body;
            if quote.len() >= 40 {
                quote[0] = 0x60 | (quote[0] & 0x0f);
                quote[6] = first;
            }
            let mut buf = error_frame(addr(HOP), addr(HOST), 1, &quote);
            buf.extend(std::iter::repeat_n(0, pad));
            let frame = parse6(&buf).unwrap();
            if let Ok(q) = quoted6(&buf, &frame) {
                prop_assert!(q.ip <= q.l4 && q.l4 <= frame.end);
                let rewrite = ErrorRewrite6 {
                    src_mac: ROUTER_MAC,
                    dst_mac: HOST_MAC,
                    src: addr(HOP),
                    dst: addr(SERVER),
                    quoted_src: Endpoint6::new(addr(SERVER), 1),
                    quoted_dst: Endpoint6::new(addr(HOST), 2),
                };
                translate_error6(&mut buf, &frame, &q, &rewrite);
                prop_assert!(checksums_valid(&buf).0);
            }
        }
    }

    #[test]
    fn makes_a_time_exceeded_quoting_the_whole_packet() {
        let original = frame6(
            addr(HOST),
            addr(SERVER),
            1,
            &[Ext::DestOpts(0)],
            PROTO_UDP,
            &udp(40000, 53, b"query"),
        );
        let mut buf = original.clone();
        buf.resize(200, 0);
        let frame = parse6(&buf).unwrap();
        let router = addr("fd00::1");
        let len =
            make_error6(&mut buf, &frame, Error6::TimeExceeded, (router, ROUTER_MAC)).unwrap();
        assert_eq!(len, 14 + 48 + original.len() - 14);
        let buf = &buf[..len];
        assert_eq!(&buf[0..6], &HOST_MAC, "back to the sender");
        assert_eq!(&buf[6..12], &ROUTER_MAC);
        assert_eq!(&buf[12..14], &[0x86, 0xdd]);
        assert_eq!(&buf[14..18], &[0x60, 0, 0, 0]);
        assert_eq!(u16::from_be_bytes([buf[18], buf[19]]) as usize, len - 54);
        assert_eq!((buf[20], buf[21]), (PROTO_ICMPV6, 255));
        assert_eq!(&buf[22..38], &router);
        assert_eq!(&buf[38..54], &addr(HOST));
        assert_eq!(&buf[54..56], &[3, 0]);
        assert_eq!(&buf[58..62], &[0; 4]);
        assert_eq!(&buf[62..], &original[14..], "the quote is the packet");
        assert!(upper_checksum_valid(
            router,
            addr(HOST),
            PROTO_ICMPV6,
            &buf[54..]
        ));
        let slice = etherparse::Icmpv6Slice::from_slice(&buf[54..]).unwrap();
        assert!(slice.is_checksum_valid(router, addr(HOST)));
        let error = parse6(buf).unwrap();
        assert_eq!(
            error.transport,
            Transport::IcmpError {
                icmp_type: 3,
                code: 0
            }
        );
        let q = quoted6(buf, &error).unwrap();
        assert_eq!(
            (q.src, q.dst),
            (
                Endpoint6::new(addr(HOST), 40000),
                Endpoint6::new(addr(SERVER), 53)
            )
        );
    }

    #[test]
    fn packet_too_big_and_unreachable_carry_their_fields() {
        let original = frame6(
            addr(HOST),
            addr(SERVER),
            64,
            &[],
            PROTO_TCP,
            &tcp(40000, 443, 0x10, 1, &[7; 1400]),
        );
        let mut buf = original.clone();
        let frame = parse6(&buf).unwrap();
        let router = addr("fd00::1");
        let len = make_error6(
            &mut buf,
            &frame,
            Error6::PacketTooBig { mtu: 1492 },
            (router, ROUTER_MAC),
        )
        .unwrap();
        assert_eq!(len, 14 + MAX_ERROR6_LEN, "at most 1280 bytes of IPv6");
        assert_eq!(
            (&buf[54..56], &buf[58..62]),
            (&[2, 0][..], &[0, 0, 0x05, 0xd4][..])
        );
        assert_eq!(&buf[62..len], &original[14..14 + 1232]);
        assert!(upper_checksum_valid(
            router,
            addr(HOST),
            PROTO_ICMPV6,
            &buf[54..len]
        ));

        let mut buf = original.clone();
        let len = make_error6(
            &mut buf,
            &frame,
            Error6::Unreachable { code: 5 },
            (router, ROUTER_MAC),
        )
        .unwrap();
        assert_eq!(&buf[54..62], &[1, 5, buf[56], buf[57], 0, 0, 0, 0]);
        assert!(upper_checksum_valid(
            router,
            addr(HOST),
            PROTO_ICMPV6,
            &buf[54..len]
        ));
    }

    #[test]
    fn a_buffer_that_cannot_hold_the_error_is_refused() {
        let router = addr("fd00::1");
        // The frame is not all in the buffer.
        let original = frame6(
            addr(HOST),
            addr(SERVER),
            1,
            &[],
            PROTO_UDP,
            &udp(40000, 53, &[1; 100]),
        );
        let frame = parse6(&original).unwrap();
        let mut cut = original[..original.len() - 1].to_vec();
        assert_eq!(
            make_error6(&mut cut, &frame, Error6::TimeExceeded, (router, ROUTER_MAC)),
            None
        );

        // A packet shorter than its chain and 8 bytes of upper layer is
        // quoted whole: the error needs 48 bytes more than the frame.
        let short = frame6(
            addr(HOST),
            addr(SERVER),
            1,
            &[Ext::DestOpts(0)],
            PROTO_UDP,
            &udp(40000, 53, &[]),
        );
        let frame = parse6(&short).unwrap();
        let mut buf = short.clone();
        buf.resize(short.len() + 48, 0);
        let len = make_error6(&mut buf, &frame, Error6::TimeExceeded, (router, ROUTER_MAC));
        assert_eq!(len, Some(short.len() + 48));
        let mut buf = short.clone();
        buf.resize(short.len() + 47, 0);
        assert_eq!(
            make_error6(&mut buf, &frame, Error6::TimeExceeded, (router, ROUTER_MAC)),
            None
        );
    }

    #[test]
    fn a_long_packet_in_a_short_buffer_is_quoted_as_far_as_it_fits() {
        let original = frame6(
            addr(HOST),
            addr(SERVER),
            1,
            &[],
            PROTO_UDP,
            &udp(40000, 53, &[1; 300]),
        );
        let frame = parse6(&original).unwrap();
        let router = addr("fd00::1");
        let mut buf = original.clone();
        let len =
            make_error6(&mut buf, &frame, Error6::TimeExceeded, (router, ROUTER_MAC)).unwrap();
        assert_eq!(
            len,
            original.len(),
            "the buffer's length, the packet cut by 48 bytes"
        );
        assert_eq!(&buf[62..len], &original[14..len - 48]);
        assert!(upper_checksum_valid(
            router,
            addr(HOST),
            PROTO_ICMPV6,
            &buf[54..len]
        ));
    }

    #[test]
    fn errors_answer_no_error_no_informational_message_but_echo_request_no_multicast_source() {
        let cases: [(Addr6, u8, Vec<u8>, bool); 9] = [
            (addr(HOST), PROTO_UDP, udp(1, 2, b""), true),
            (addr(HOST), PROTO_TCP, tcp(1, 2, 0x02, 0, b""), true),
            (addr(HOST), 132, vec![0; 8], true),
            (addr(HOST), PROTO_ICMPV6, echo(true, 1, 1, b""), true),
            (addr(HOST), PROTO_ICMPV6, echo(false, 1, 1, b""), false),
            (addr(HOST), PROTO_ICMPV6, icmp6(1, 0, [0; 4], b""), false),
            (addr(HOST), PROTO_ICMPV6, icmp6(2, 0, [0; 4], b""), false),
            (addr(HOST), PROTO_ICMPV6, icmp6(100, 0, [0; 4], b""), false),
            (addr(HOST), PROTO_ICMPV6, icmp6(137, 0, [0; 4], b""), false),
        ];
        for (i, (src, protocol, upper, expected)) in cases.into_iter().enumerate() {
            let frame = parse6(&frame6(src, addr(SERVER), 1, &[], protocol, &upper)).unwrap();
            assert_eq!(may_answer6(&frame), expected, "{i}");
        }
        let later = Ext::Fragment {
            offset: 10,
            more: false,
            id: 1,
        };
        let frame = parse6(&frame6(
            addr(HOST),
            addr(SERVER),
            1,
            &[later],
            PROTO_UDP,
            b"data",
        ))
        .unwrap();
        assert!(
            may_answer6(&frame),
            "a later fragment may be told it is too big"
        );
        // Sources the parser lets through only in a hand-made Frame6.
        let frame = parse6(&frame6(
            addr(HOST),
            addr(SERVER),
            1,
            &[],
            PROTO_UDP,
            &udp(1, 2, b""),
        ))
        .unwrap();
        for src in [addr("ff02::1"), addr("::")] {
            assert!(!may_answer6(&Frame6 { src, ..frame }));
        }
    }

    proptest! {
        /// make_error6 never panics, whatever the frame and however short
        /// the buffer, and what it makes is a valid error.
        #[test]
        fn make_error6_never_panics(src in global_addr(), dst in global_addr(), exts in forwardable_exts(),
                                    payload in proptest::collection::vec(any::<u8>(), 0..1500),
                                    extra in 0usize..100, cut in 0usize..100, mtu in any::<u32>()) {
            let original = frame6(src, dst, 1, &exts, PROTO_UDP, &udp(1, 2, &payload));
            let frame = parse6(&original).unwrap();
            let mut buf = original.clone();
            buf.resize(original.len() + extra, 0);
            buf.truncate(buf.len().saturating_sub(cut));
            let router = addr("fd00::1");
            if let Some(len) = make_error6(&mut buf, &frame, Error6::PacketTooBig { mtu }, (router, ROUTER_MAC)) {
                prop_assert!(len <= buf.len() && len <= 14 + 1280);
                prop_assert!(upper_checksum_valid(router, src, PROTO_ICMPV6, &buf[54..len]));
                let error = parse6(&buf[..len]).unwrap();
                let q = quoted6(&buf[..len], &error).unwrap();
                prop_assert_eq!((q.src.port, q.dst.port), (1, 2));
            } else {
                // Refused only when the frame is not all in the buffer, or
                // the buffer has no room for a quote of the header chain and
                // 8 bytes (or the whole packet).
                let needed = 14 + 48 + (frame.end - 14).min(frame.l4 - 14 + 8);
                prop_assert!(buf.len() < frame.end || buf.len() < needed);
            }
        }
    }

    #[test]
    fn an_ethernet_frame_with_an_error_built_elsewhere_parses() {
        // The helpers' error frames are what make_error6 makes, headers aside.
        let quote = udp_quote(&[]);
        let built = ethernet(&packet6(
            addr(HOP),
            addr(HOST),
            60,
            &[],
            PROTO_ICMPV6,
            &icmp6(3, 0, [0; 4], &quote),
        ));
        assert_eq!(built, error_frame(addr(HOP), addr(HOST), 3, &quote));
    }
}

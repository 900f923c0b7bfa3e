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

//! Frames for tests, fuzzing and benchmarks: built with etherparse's builder,
//! and checked by re-parsing them and recomputing every checksum in full
//! (IPv6 frames are read back with the core's own parser, their upper-layer
//! checksums recomputed over the pseudo-header). [`fuzz`] is the fuzzing
//! harness built on them.

/// The smallest configuration of the tests: the LAN 192.168.50.0/24 on lan0,
/// isp1 (198.18.1.2 via 198.18.1.1 on wan1) and isp2 (198.18.2.2 via
/// 198.18.2.1 on wan2), every other key at its default.
pub const TWO_UPLINKS: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24"]

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
"#;

/// The MACs of the tests' router: its LAN interface, its WAN interfaces and
/// their gateways, in uplink order.
pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const WAN_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 2, 2]];
pub const GATEWAY_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]];

/// A router for `config` (two uplinks, as [`TWO_UPLINKS`]) on those MACs,
/// both uplinks up and their gateways resolved.
pub fn two_uplink_router(config: &Config) -> Router {
    let router = Router::new(
        config,
        InterfaceMacs {
            lan: LAN_MAC,
            wans: WAN_MACS.to_vec(),
        },
    );
    for (id, mac) in GATEWAY_MACS.iter().enumerate() {
        router.set_gateway_mac(id as u8, Some(*mac));
        router.set_uplink_up(id as u8, true);
    }
    router
}

pub mod fuzz;
pub mod offload;
mod rng;

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};

use crate::config::Config;
use crate::packet::{self, checksum, Frame6, Transport, L3_OFFSET};
use crate::router::{InterfaceMacs, Router};

/// TCP flags for [`tcp`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
pub const SYN_ACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
pub const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
pub const FIN_ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};
pub const RST: Flags = Flags {
    syn: false,
    ack: false,
    fin: false,
    rst: true,
};

/// Ethernet and IPv4 addressing of a test frame.
#[derive(Debug, Clone, Copy)]
pub struct Addressing {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
}

/// Ethernet and IPv6 addressing of a test frame.
#[derive(Debug, Clone, Copy)]
pub struct Addressing6 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
}

type IpStep = etherparse::PacketBuilderStep<etherparse::IpHeaders>;

fn builder(a: &Addressing) -> IpStep {
    PacketBuilder::ethernet2(a.src_mac, a.dst_mac).ipv4(a.src.octets(), a.dst.octets(), a.ttl)
}

fn builder6(a: &Addressing6) -> IpStep {
    PacketBuilder::ethernet2(a.src_mac, a.dst_mac).ipv6(a.src.octets(), a.dst.octets(), a.hop_limit)
}

/// A TCP segment with valid checksums.
pub fn tcp(a: &Addressing, src_port: u16, dst_port: u16, flags: Flags, payload: &[u8]) -> Vec<u8> {
    tcp_with_options(a, src_port, dst_port, flags, &[], payload)
}

/// A TCP segment with these raw options (padded with end-of-options to a
/// multiple of 4 bytes) and valid checksums.
pub fn tcp_with_options(
    a: &Addressing,
    src_port: u16,
    dst_port: u16,
    flags: Flags,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    write_tcp(builder(a), (src_port, dst_port), flags, options, payload)
}

/// A TCP segment over IPv6 with valid checksums.
pub fn tcp6(
    a: &Addressing6,
    src_port: u16,
    dst_port: u16,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    tcp6_with_options(a, src_port, dst_port, flags, &[], payload)
}

/// [`tcp_with_options`] over IPv6.
pub fn tcp6_with_options(
    a: &Addressing6,
    src_port: u16,
    dst_port: u16,
    flags: Flags,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    write_tcp(builder6(a), (src_port, dst_port), flags, options, payload)
}

fn write_tcp(
    b: IpStep,
    ports: (u16, u16),
    flags: Flags,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = b.tcp(ports.0, ports.1, 1000, 64240);
    if !options.is_empty() {
        let mut padded = options.to_vec();
        padded.resize(options.len().div_ceil(4) * 4, 0);
        b = b
            .options_raw(&padded)
            .expect("test TCP options fit in 40 bytes");
    }
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(1);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// A UDP datagram with a valid checksum.
pub fn udp(a: &Addressing, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    write_udp(builder(a), (src_port, dst_port), payload)
}

/// A UDP datagram over IPv6 with a valid checksum.
pub fn udp6(a: &Addressing6, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    write_udp(builder6(a), (src_port, dst_port), payload)
}

fn write_udp(b: IpStep, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let b = b.udp(ports.0, ports.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// A TCP segment (with `flags`) or, when `tcp` is false, a UDP datagram
/// between `ports` (source, destination), with valid checksums.
pub fn tcp_or_udp(
    tcp: bool,
    a: &Addressing,
    ports: (u16, u16),
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    if tcp {
        self::tcp(a, ports.0, ports.1, flags, payload)
    } else {
        udp(a, ports.0, ports.1, payload)
    }
}

/// [`tcp_or_udp`] over IPv6.
pub fn tcp_or_udp6(
    tcp: bool,
    a: &Addressing6,
    ports: (u16, u16),
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    if tcp {
        tcp6(a, ports.0, ports.1, flags, payload)
    } else {
        udp6(a, ports.0, ports.1, payload)
    }
}

/// An ICMP echo request or reply.
pub fn icmp_echo(a: &Addressing, request: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let echo = IcmpEchoHeader { id, seq };
    let icmp_type = if request {
        Icmpv4Type::EchoRequest(echo)
    } else {
        Icmpv4Type::EchoReply(echo)
    };
    let b = builder(a).icmpv4(icmp_type);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// An ICMPv6 echo request or reply.
pub fn icmp6_echo(a: &Addressing6, request: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let b = builder6(a);
    let b = if request {
        b.icmpv6_echo_request(id, seq)
    } else {
        b.icmpv6_echo_reply(id, seq)
    };
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// An ICMPv6 message of `icmp_type`/`code` with the 4 bytes after the
/// checksum `rest` and then `body`, its checksum valid: an error quoting
/// `body` (an IPv6 packet or its beginning), or a Neighbour Discovery
/// message.
pub fn icmp6(a: &Addressing6, icmp_type: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let b = builder6(a).icmpv6(Icmpv6Type::Unknown {
        type_u8: icmp_type,
        code_u8: code,
        bytes5to8: rest,
    });
    let mut out = Vec::with_capacity(b.size(body.len()));
    b.write(&mut out, body)
        .expect("writing to a Vec cannot fail");
    out
}

/// An IPv6 extension header to put in a test frame ([`with_extensions6`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension6 {
    /// Hop-by-Hop Options: a Router Alert (MLD's), padded to 8 bytes.
    HopByHop,
    /// Destination Options: one PadN option filling 8 bytes.
    DestOptions,
    /// A Routing header (type 0's layout, one address) with these segments left.
    Routing { segments_left: u8 },
    /// A Fragment header.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Extension6 {
    /// The next-header value that names it.
    pub fn next_header(self) -> u8 {
        match self {
            Extension6::HopByHop => packet::NEXT_HOP_BY_HOP,
            Extension6::DestOptions => packet::NEXT_DEST_OPTS,
            Extension6::Routing { .. } => packet::NEXT_ROUTING,
            Extension6::Fragment { .. } => packet::NEXT_FRAGMENT,
        }
    }

    /// Its bytes, naming `next` as what follows.
    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Extension6::HopByHop => vec![next, 0, 5, 2, 0, 0, 1, 0],
            Extension6::DestOptions => vec![next, 0, 1, 4, 0, 0, 0, 0],
            Extension6::Routing { segments_left } => {
                let mut header = vec![next, 2, 0, segments_left, 0, 0, 0, 0];
                header.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
                header
            }
            Extension6::Fragment { offset, more, id } => {
                let word = offset << 3 | u16::from(more);
                let mut header = vec![next, 0];
                header.extend_from_slice(&word.to_be_bytes());
                header.extend_from_slice(&id.to_be_bytes());
                header
            }
        }
    }
}

/// `frame` (IPv6, no extension headers) with `extensions` put between its
/// fixed header and its upper layer, in order; the payload length follows.
/// The upper-layer checksum is unchanged: its pseudo-header counts the upper
/// layer alone (and names the destination in the fixed header, which a
/// Routing header here never changes).
pub fn with_extensions6(frame: &[u8], extensions: &[Extension6]) -> Vec<u8> {
    let fixed = L3_OFFSET + 40;
    let mut chain = Vec::new();
    let mut next = frame[L3_OFFSET + 6];
    for ext in extensions.iter().rev() {
        let mut header = ext.bytes(next);
        header.extend_from_slice(&chain);
        chain = header;
        next = ext.next_header();
    }
    let mut out = frame[..fixed].to_vec();
    out[L3_OFFSET + 6] = next;
    let payload = u16::from_be_bytes([frame[L3_OFFSET + 4], frame[L3_OFFSET + 5]]);
    let payload = payload + chain.len() as u16;
    out[L3_OFFSET + 4..L3_OFFSET + 6].copy_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&chain);
    out.extend_from_slice(&frame[fixed..]);
    out
}

/// The MSS option (kind 2) announcing `mss`.
pub fn mss_option(mss: u16) -> [u8; 4] {
    let [hi, lo] = mss.to_be_bytes();
    [2, 4, hi, lo]
}

/// The MSS a TCP segment's options announce, if any.
pub fn announced_mss(frame: &[u8]) -> Option<u16> {
    let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
    let options = &frame[l4 + 20..l4 + usize::from(frame[l4 + 12] >> 4) * 4];
    let at = packet::mss_option(options)?;
    Some(u16::from_be_bytes([options[at], options[at + 1]]))
}

/// Changes the IPv4 header of `frame` with `edit` (which gets the header
/// bytes, options included) and recomputes its checksum (over the header
/// length the edit leaves).
pub fn edit_ip_header(frame: &mut [u8], edit: impl FnOnce(&mut [u8])) {
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    edit(&mut frame[14..14 + header_len]);
    // The edit may have changed the header length.
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let header = &mut frame[14..14 + header_len];
    header[10] = 0;
    header[11] = 0;
    let sum = checksum::checksum(header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Sets the don't-fragment flag and the identification of `frame`'s IPv4 header.
pub fn set_df_and_id(frame: &mut [u8], dont_fragment: bool, id: u16) {
    edit_ip_header(frame, |h| {
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6] = (h[6] & !0x40) | if dont_fragment { 0x40 } else { 0 };
    });
}

/// `frame` with IPv4 `options` (a multiple of 4 bytes, at most 40) inserted
/// after its IPv4 header; lengths and the header checksum are fixed (the
/// transport checksum does not cover options).
pub fn with_ip_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    assert!(options.len() % 4 == 0 && options.len() <= 40);
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let mut out = frame[..14 + header_len].to_vec();
    out.extend_from_slice(options);
    out.extend_from_slice(&frame[14 + header_len..]);
    let total = u16::from_be_bytes([frame[16], frame[17]]) + options.len() as u16;
    let ihl = (header_len + options.len()) / 4;
    edit_ip_header(&mut out, |h| {
        h[0] = 0x40 | ihl as u8;
        h[2..4].copy_from_slice(&total.to_be_bytes());
    });
    out
}

/// An ICMP error of `icmp_type`/`code` with the 4 bytes after the checksum
/// `rest`, quoting `quoted` (an IP packet or its beginning), with valid checksums.
pub fn icmp_error(
    a: &Addressing,
    icmp_type: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quoted);
    let sum = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut out = Vec::with_capacity(34 + icmp.len());
    out.extend_from_slice(&a.dst_mac);
    out.extend_from_slice(&a.src_mac);
    out.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + icmp.len()) as u16;
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, a.ttl, 1, 0, 0]);
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&a.src.octets());
    out.extend_from_slice(&a.dst.octets());
    let sum = checksum::checksum(&out[14..34]);
    out[24..26].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&icmp);
    out
}

/// Splits the IPv4 packet in `frame` into fragments carrying `chunk` bytes of
/// its payload each (a multiple of 8; the last one carries the rest), all with
/// identification `id`.
pub fn fragment(frame: &[u8], id: u16, chunk: usize) -> Vec<Vec<u8>> {
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let end = 14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    pieces(&frame[14 + header_len..end], chunk)
        .map(|(units, more, piece)| {
            let mut out = frame[..14 + header_len].to_vec();
            out.extend_from_slice(piece);
            let total = (header_len + piece.len()) as u16;
            let offset = units | if more { 0x2000 } else { 0 };
            edit_ip_header(&mut out, |h| {
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h[6..8].copy_from_slice(&offset.to_be_bytes());
            });
            out
        })
        .collect()
}

/// Splits the IPv6 packet in `frame` (without extension headers) into
/// fragments carrying `chunk` bytes of its payload each (a multiple of 8),
/// each with a Fragment header of identification `id`, as a sending host
/// does (routers never fragment IPv6).
pub fn fragment6(frame: &[u8], id: u32, chunk: usize) -> Vec<Vec<u8>> {
    let next = frame[L3_OFFSET + 6];
    pieces(&frame[L3_OFFSET + 40..], chunk)
        .map(|(units, more, piece)| {
            let mut out = frame[..L3_OFFSET + 40].to_vec();
            out[L3_OFFSET + 6] = packet::NEXT_FRAGMENT;
            let len = (8 + piece.len()) as u16;
            out[L3_OFFSET + 4..L3_OFFSET + 6].copy_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[next, 0]);
            out.extend_from_slice(&(units << 3 | u16::from(more)).to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(piece);
            out
        })
        .collect()
}

/// `payload` in pieces of `chunk` bytes (a multiple of 8): each with its
/// offset in 8-byte units and whether more follow.
fn pieces(payload: &[u8], chunk: usize) -> impl Iterator<Item = (u16, bool, &[u8])> {
    assert!(chunk % 8 == 0 && chunk > 0);
    let count = payload.len().div_ceil(chunk);
    payload
        .chunks(chunk)
        .enumerate()
        .map(move |(i, piece)| ((i * chunk / 8) as u16, i + 1 < count, piece))
}

/// What a fragment carries, read back from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFragment {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    /// In bytes.
    pub offset: usize,
    pub more: bool,
    pub ttl: u8,
}

/// Checks the IPv4 header checksum of a fragment and reads it back.
pub fn check_fragment(frame: &[u8]) -> Result<SeenFragment, String> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return Err("not an IPv4 frame".into());
    }
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    if frame[14] >> 4 != 4 || header_len < 20 {
        return Err(format!(
            "not an IPv4 header (first byte {:#04x})",
            frame[14]
        ));
    }
    let header = frame
        .get(14..14 + header_len)
        .ok_or("IPv4 header truncated")?;
    if checksum::fold(checksum::sum_bytes(0, header)) != 0xffff {
        return Err("IPv4 header checksum wrong".into());
    }
    let flags_offset = u16::from_be_bytes([header[6], header[7]]);
    let octets =
        |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
    Ok(SeenFragment {
        src_mac: frame[6..12].try_into().map_err(|_| "short")?,
        dst_mac: frame[0..6].try_into().map_err(|_| "short")?,
        src: octets(12),
        dst: octets(16),
        id: u16::from_be_bytes([header[4], header[5]]),
        offset: usize::from(flags_offset & 0x1fff) * 8,
        more: flags_offset & 0x2000 != 0,
        ttl: header[8],
    })
}

/// Reassembles forwarded fragments (in any order) into one frame, with the
/// first fragment's Ethernet and IPv4 header and a valid header checksum, so
/// that [`check`] can verify the transport checksum over the whole datagram.
pub fn reassemble(fragments: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut parts = Vec::new();
    for f in fragments {
        let seen = check_fragment(f)?;
        let header_len = usize::from(f[14] & 0x0f) * 4;
        let end = 14 + usize::from(u16::from_be_bytes([f[16], f[17]]));
        parts.push((
            seen.offset,
            seen.more,
            f[..14 + header_len].to_vec(),
            f[14 + header_len..end].to_vec(),
        ));
    }
    parts.sort_by_key(|p| p.0);
    let first = parts.first().ok_or("no fragments")?;
    if first.0 != 0 {
        return Err("the first fragment is missing".into());
    }
    let mut out = first.2.clone();
    let mut next = 0;
    for (offset, _, _, payload) in &parts {
        if *offset != next {
            return Err(format!("gap or overlap at {next}"));
        }
        out.extend_from_slice(payload);
        next += payload.len();
    }
    if parts.last().is_some_and(|p| p.1) {
        return Err("the last fragment is missing".into());
    }
    let total = (out.len() - 14) as u16;
    edit_ip_header(&mut out, |h| {
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&[0, 0]);
    });
    Ok(out)
}

/// The packet an ICMP error quotes, read back from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenQuote {
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Ports; for ICMP echo the identifier twice.
    pub src_port: u16,
    pub dst_port: u16,
    /// Whether the quote held the whole packet (not a fragment), so its
    /// transport checksum was verified as well.
    pub complete: bool,
}

/// Checks an ICMP error frame: everything [`check`] checks, then the quoted
/// IPv4 header checksum and, when the quote holds the whole packet, its
/// transport checksum. Returns the outer frame, the ICMP type and code, and
/// the quoted packet.
pub fn check_icmp_error(frame: &[u8]) -> Result<(Seen, [u8; 2], SeenQuote), String> {
    let outer = check(frame)?;
    if outer.protocol != 1 {
        return Err("not ICMP".into());
    }
    let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
    let end = 14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let kind = [frame[l4], frame[l4 + 1]];
    let quote = &frame[l4 + 8..end];
    if quote.len() < 20 {
        return Err("quote shorter than an IPv4 header".into());
    }
    let header_len = usize::from(quote[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(format!("quoted IPv4 header length {header_len}"));
    }
    let header = quote.get(..header_len).ok_or("quoted header truncated")?;
    if checksum::fold(checksum::sum_bytes(0, header)) != 0xffff {
        return Err("quoted IPv4 header checksum wrong".into());
    }
    let t = quote
        .get(header_len..header_len + 8)
        .ok_or("quote without 8 bytes of transport")?;
    let protocol = header[9];
    let (src_port, dst_port) = match protocol {
        1 => {
            let id = u16::from_be_bytes([t[4], t[5]]);
            (id, id)
        }
        _ => (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ),
    };
    let quoted_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
    let complete = quoted_len == quote.len() && !fragment;
    if complete {
        let mut whole = frame[..14].to_vec();
        whole.extend_from_slice(quote);
        check(&whole).map_err(|e| format!("quoted packet: {e}"))?;
    }
    let octets =
        |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
    Ok((
        outer,
        kind,
        SeenQuote {
            protocol,
            src: octets(12),
            dst: octets(16),
            src_port,
            dst_port,
            complete,
        },
    ))
}

/// What a frame carries, read back from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Ports; for ICMP echo the identifier twice.
    pub src_port: u16,
    pub dst_port: u16,
    pub ttl: u8,
    pub payload: Vec<u8>,
}

/// Parses `frame` with etherparse and checks the IPv4 header checksum and the
/// TCP/UDP/ICMP checksum by recomputing them in full.
pub fn check(frame: &[u8]) -> Result<Seen, String> {
    let packet = SlicedPacket::from_ethernet(frame).map_err(|e| format!("re-parse: {e}"))?;
    let eth = match &packet.link {
        Some(etherparse::LinkSlice::Ethernet2(eth)) => eth.to_header(),
        other => return Err(format!("not Ethernet II: {other:?}")),
    };
    let Some(NetSlice::Ipv4(ip)) = &packet.net else {
        return Err("not IPv4".into());
    };
    let header = ip.header();
    if checksum::fold(checksum::sum_bytes(0, header.slice())) != 0xffff {
        return Err(format!(
            "IPv4 header checksum {:#06x} wrong (should be {:#06x})",
            header.header_checksum(),
            header.to_header().calc_header_checksum()
        ));
    }
    let (src, dst) = (header.source_addr(), header.destination_addr());
    let segment = ip.payload().payload;
    // A transport checksum is right when the pseudo-header and the segment,
    // checksum field included, sum to 0xffff (so 0x0000 and 0xffff, the two
    // forms of zero, are both accepted where they are equivalent).
    let transport_sum = |protocol: u8, segment: &[u8]| {
        let sum =
            checksum::pseudo_header_sum(src.octets(), dst.octets(), protocol, segment.len() as u16);
        checksum::fold(checksum::sum_bytes(sum, segment))
    };
    let (src_port, dst_port, payload) = match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            if transport_sum(6, segment) != 0xffff {
                let want = tcp
                    .to_header()
                    .calc_checksum_ipv4_raw(src.octets(), dst.octets(), tcp.payload())
                    .map_err(|e| e.to_string())?;
                return Err(format!(
                    "TCP checksum {:#06x} should be {want:#06x}",
                    tcp.checksum()
                ));
            }
            (
                tcp.source_port(),
                tcp.destination_port(),
                tcp.payload().to_vec(),
            )
        }
        Some(TransportSlice::Udp(udp)) => {
            // The datagram is what its length says (the rest is IP padding).
            let datagram = &segment[..usize::from(udp.length()).min(segment.len())];
            if udp.checksum() != 0 && transport_sum(17, datagram) != 0xffff {
                let want = udp
                    .to_header()
                    .calc_checksum_ipv4_raw(src.octets(), dst.octets(), udp.payload())
                    .map_err(|e| e.to_string())?;
                return Err(format!(
                    "UDP checksum {:#06x} should be {want:#06x}",
                    udp.checksum()
                ));
            }
            (
                udp.source_port(),
                udp.destination_port(),
                udp.payload().to_vec(),
            )
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            if checksum::fold(checksum::sum_bytes(0, segment)) != 0xffff {
                return Err(format!("ICMP checksum {:#06x} wrong", icmp.checksum()));
            }
            let [a, b, _, _] = icmp.bytes5to8();
            let id = u16::from_be_bytes([a, b]);
            (id, id, icmp.payload().to_vec())
        }
        other => return Err(format!("unexpected transport {other:?}")),
    };
    Ok(Seen {
        src_mac: eth.source,
        dst_mac: eth.destination,
        protocol: header.protocol().0,
        src,
        dst,
        src_port,
        dst_port,
        ttl: header.ttl(),
        payload,
    })
}

/// Where the upper layer of the IPv6 `packet` (from its fixed header, as far
/// as it goes) starts, from the packet's start, and its protocol, past the
/// extension headers a receiver walks (Hop-by-Hop, Routing with no segments
/// left, Destination Options, AH). None when the chain is cut short or too
/// long, or holds a Fragment header (the upper layer is not whole) or a
/// Routing header with segments left (the pseudo-header names a destination
/// the fixed header does not).
pub fn upper_layer6(packet: &[u8]) -> Option<(u8, usize)> {
    let mut next = *packet.get(6)?;
    let mut at = 40;
    if packet.len() < at {
        return None;
    }
    for _ in 0..=packet::MAX_EXTENSIONS {
        let len = match next {
            packet::NEXT_HOP_BY_HOP | packet::NEXT_DEST_OPTS => {
                (usize::from(*packet.get(at + 1)?) + 1) * 8
            }
            packet::NEXT_ROUTING if *packet.get(at + 3)? == 0 => {
                (usize::from(packet[at + 1]) + 1) * 8
            }
            packet::NEXT_AH => (usize::from(*packet.get(at + 1)?) + 2) * 4,
            packet::NEXT_ROUTING | packet::NEXT_FRAGMENT => return None,
            protocol => return Some((protocol, at)),
        };
        next = packet.get(at..at + len)?[0];
        at += len;
    }
    None
}

/// The source and destination of the IPv6 `packet` (at least its fixed header).
pub fn addresses6(packet: &[u8]) -> (packet::Addr6, packet::Addr6) {
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&packet[8..24]);
    dst.copy_from_slice(&packet[24..40]);
    (src, dst)
}

/// Checks the upper-layer checksum of `segment` (TCP, UDP or ICMPv6, to the
/// end of its packet) sent from `src` to `dst`, recomputing it in full over
/// the IPv6 pseudo-header: right when the pseudo-header and what it covers,
/// checksum field included, sum to 0xffff. A UDP datagram covers what its
/// length says and must have a checksum (RFC 8200 8.1). Other protocols
/// have none to check.
pub fn check_upper6(
    src: packet::Addr6,
    dst: packet::Addr6,
    protocol: u8,
    segment: &[u8],
) -> Result<(), String> {
    let (name, at, covered) = match protocol {
        packet::PROTO_TCP => ("TCP", 16, segment.len()),
        packet::PROTO_UDP => {
            let length = segment.get(4..6).ok_or("UDP header truncated")?;
            let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
            if !(8..=segment.len()).contains(&length) {
                return Err(format!("UDP length {length} of {} bytes", segment.len()));
            }
            ("UDP", 6, length)
        }
        packet::PROTO_ICMPV6 => ("ICMPv6", 2, segment.len()),
        _ => return Ok(()),
    };
    let field = segment
        .get(at..at + 2)
        .ok_or(format!("{name} header truncated"))?;
    let field = u16::from_be_bytes([field[0], field[1]]);
    if protocol == packet::PROTO_UDP && field == 0 {
        return Err("UDP without a checksum over IPv6".into());
    }
    let datagram = &segment[..covered];
    // The length fits: an IPv6 payload is at most 65535 bytes.
    let sum = checksum::pseudo_header_sum6(src, dst, protocol, covered as u32);
    if checksum::fold(checksum::sum_bytes(sum, datagram)) != 0xffff {
        let mut zeroed = datagram.to_vec();
        zeroed[at..at + 2].copy_from_slice(&[0, 0]);
        let want = checksum::transport_checksum6(src, dst, protocol, &zeroed);
        return Err(format!(
            "{name} checksum {field:#06x} should be {want:#06x}"
        ));
    }
    Ok(())
}

/// Parses an IPv6 frame again with the core's own parser
/// ([`packet::parse6`]), the group bit of its destination MAC set aside
/// (where a frame goes on the link is not the parser's question).
pub fn reparse6(frame: &[u8]) -> Result<Frame6, String> {
    let parsed = if frame.first().is_some_and(|b| b & 1 != 0) {
        let mut unicast = frame.to_vec();
        unicast[0] &= 0xfe;
        packet::parse6(&unicast)
    } else {
        packet::parse6(frame)
    };
    parsed.map_err(|e| format!("re-parse: {e:?}"))
}

/// [`reparse6`], then the upper-layer checksum recomputed in full
/// ([`check_upper6`]). A fragment's upper layer is not whole: an error.
pub fn check6(frame: &[u8]) -> Result<Frame6, String> {
    let parsed = reparse6(frame)?;
    if parsed.fragment.is_some() {
        return Err("an IPv6 fragment".into());
    }
    check_upper6(
        parsed.src,
        parsed.dst,
        parsed.protocol,
        &frame[parsed.l4..parsed.end],
    )?;
    Ok(parsed)
}

/// Checks an ICMPv6 error frame: everything [`check6`] checks, then, when
/// the quote holds a whole packet (its payload length is what the quote
/// holds, no fragment), that packet's upper-layer checksum. Returns the
/// frame and whether its quote was whole.
pub fn check_icmp6_error(frame: &[u8]) -> Result<(Frame6, bool), String> {
    let parsed = check6(frame)?;
    let whole = check_quote6(frame, &parsed)?;
    Ok((parsed, whole))
}

/// The second half of [`check_icmp6_error`], for a frame [`check6`] has
/// parsed: that it is an ICMPv6 error, and the checksum of the packet it
/// quotes when the quote is whole (returned).
pub fn check_quote6(frame: &[u8], parsed: &Frame6) -> Result<bool, String> {
    if !matches!(parsed.transport, Transport::IcmpError { .. }) {
        return Err(format!("not an ICMPv6 error: {:?}", parsed.transport));
    }
    let quote = &frame[parsed.l4 + 8..parsed.end];
    let whole = quote.len() >= 40
        && quote[0] >> 4 == 6
        && 40 + usize::from(u16::from_be_bytes([quote[4], quote[5]])) == quote.len();
    let upper = if whole { upper_layer6(quote) } else { None };
    let Some((protocol, l4)) = upper else {
        return Ok(false);
    };
    let (src, dst) = addresses6(quote);
    check_upper6(src, dst, protocol, &quote[l4..]).map_err(|e| format!("quoted packet: {e}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{ParseOutcome, PROTO_UDP};
    use crate::verdict::KernelReason;

    const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10);
    const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20);

    fn a6() -> Addressing6 {
        Addressing6 {
            src_mac: [2, 0, 0, 0, 0, 0x10],
            dst_mac: LAN_MAC,
            src: HOST6,
            dst: SERVER6,
            hop_limit: 64,
        }
    }

    fn udp_frame() -> Vec<u8> {
        udp6(&a6(), 40000, 53, b"query")
    }

    #[test]
    fn ipv6_frames_built_pass_etherparse_and_the_checks() {
        let frames = [
            tcp6_with_options(&a6(), 40000, 80, SYN, &mss_option(1440), b""),
            tcp6(&a6(), 40000, 80, ACK, b"GET /"),
            udp_frame(),
            icmp6_echo(&a6(), true, 7, 1, b"ping"),
            icmp6(&a6(), 2, 0, 1280u32.to_be_bytes(), &udp_frame()[14..]),
        ];
        for frame in &frames {
            let sliced = SlicedPacket::from_ethernet(frame).unwrap();
            assert!(matches!(sliced.net, Some(NetSlice::Ipv6(_))));
            check6(frame).unwrap();
        }
        let (_, whole) = check_icmp6_error(&frames[4]).unwrap();
        assert!(whole, "the quote is a whole packet");
    }

    #[test]
    fn extension_headers_sit_between_the_fixed_header_and_the_upper_layer() {
        let frame = with_extensions6(
            &udp_frame(),
            &[
                Extension6::DestOptions,
                Extension6::Routing { segments_left: 0 },
            ],
        );
        let parsed = check6(&frame).unwrap();
        assert_eq!((parsed.protocol, parsed.l4), (PROTO_UDP, 54 + 8 + 24));
        assert!(parsed.extensions);
        assert_eq!(upper_layer6(&frame[14..]), Some((PROTO_UDP, 40 + 8 + 24)));

        let hop_by_hop = with_extensions6(&udp_frame(), &[Extension6::HopByHop]);
        assert_eq!(
            packet::parse6(&hop_by_hop).err(),
            Some(ParseOutcome::Kernel(KernelReason::Ipv6HopByHop))
        );
        assert_eq!(upper_layer6(&hop_by_hop[14..]), Some((PROTO_UDP, 48)));

        let first = Extension6::Fragment {
            offset: 0,
            more: true,
            id: 9,
        };
        let fragment = with_extensions6(&udp_frame(), &[first]);
        let parsed = packet::parse6(&fragment).unwrap();
        assert_eq!(
            parsed.fragment.map(|f| (f.id, f.offset, f.more)),
            Some((9, 0, true))
        );
        assert_eq!(upper_layer6(&fragment[14..]), None);
        assert!(check6(&fragment).is_err());
    }

    #[test]
    fn a_wrong_checksum_is_found_outside_and_in_a_quote() {
        let mut frame = udp_frame();
        let last = frame.len() - 1;
        frame[last] ^= 1;
        let error = check6(&frame).unwrap_err();
        assert!(error.starts_with("UDP checksum"), "{error}");

        let mut error_frame = icmp6(&a6(), 1, 4, [0; 4], &frame[14..]);
        // The outer checksum is right; the quoted packet's is not.
        check6(&error_frame).unwrap();
        let error = check_icmp6_error(&error_frame).unwrap_err();
        assert!(error.starts_with("quoted packet: UDP checksum"), "{error}");
        // A quote cut short is not checked.
        error_frame.truncate(error_frame.len() - 2);
        let end = (error_frame.len() - 54) as u16;
        error_frame[18..20].copy_from_slice(&end.to_be_bytes());
        let body = error_frame[54..].to_vec();
        let cut = icmp6(&a6(), 1, 4, [0; 4], &body[8..]);
        assert_eq!(check_icmp6_error(&cut).map(|(_, whole)| whole), Ok(false));
    }
}

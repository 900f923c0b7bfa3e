//! Frames for tests, fuzzing and benchmarks: built with etherparse's builder,
//! and checked by re-parsing them and recomputing every checksum in full.
//! [`fuzz`] is the fuzzing harness built on them.

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

use std::net::Ipv4Addr;

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};

use crate::config::Config;
use crate::packet::{self, checksum};
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

fn builder(a: &Addressing) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(a.src_mac, a.dst_mac).ipv4(a.src.octets(), a.dst.octets(), a.ttl)
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
    let mut b = builder(a).tcp(src_port, dst_port, 1000, 64240);
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
    let b = builder(a).udp(src_port, dst_port);
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
    assert!(chunk % 8 == 0 && chunk > 0);
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let end = 14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let payload = &frame[14 + header_len..end];
    let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut out = frame[..14 + header_len].to_vec();
            out.extend_from_slice(piece);
            let total = (header_len + piece.len()) as u16;
            let offset = (i * chunk / 8) as u16 | if i + 1 < count { 0x2000 } else { 0 };
            edit_ip_header(&mut out, |h| {
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h[6..8].copy_from_slice(&offset.to_be_bytes());
            });
            out
        })
        .collect()
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

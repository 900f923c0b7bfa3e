//! Frames for tests, fuzzing and benchmarks: built with etherparse's builder,
//! and checked by re-parsing them and recomputing every checksum in full.

use std::net::Ipv4Addr;

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};

use crate::packet::checksum;

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
    let mut b = builder(a).tcp(src_port, dst_port, 1000, 64240);
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
    let (src_port, dst_port, payload) = match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let want = tcp
                .to_header()
                .calc_checksum_ipv4_raw(src.octets(), dst.octets(), tcp.payload())
                .map_err(|e| e.to_string())?;
            if want != tcp.checksum() {
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
            if udp.checksum() != 0 {
                let want = udp
                    .to_header()
                    .calc_checksum_ipv4_raw(src.octets(), dst.octets(), udp.payload())
                    .map_err(|e| e.to_string())?;
                if want != udp.checksum() {
                    return Err(format!(
                        "UDP checksum {:#06x} should be {want:#06x}",
                        udp.checksum()
                    ));
                }
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

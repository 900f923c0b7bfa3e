//! Rewriting a parsed frame in place: MACs, addresses, ports (ICMP echo
//! identifier), TTL, and every checksum they are covered by.

use super::checksum::{self, update16, update32};
use super::parse::{Frame, Transport, L3_OFFSET, PROTO_TCP};

/// An IPv4 address and a port (for ICMP echo, the identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: [u8; 4],
    pub port: u16,
}

impl Endpoint {
    pub fn new(addr: [u8; 4], port: u16) -> Endpoint {
        Endpoint { addr, port }
    }
}

/// What a forwarded frame becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Endpoint,
    pub dst: Endpoint,
}

const IP_TTL: usize = L3_OFFSET + 8;
const IP_CHECKSUM: usize = L3_OFFSET + 10;
const IP_SRC: usize = L3_OFFSET + 12;
const IP_DST: usize = L3_OFFSET + 16;

fn read16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn write16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Applies `rewrite` to `buf`, which `frame` was parsed from, and decrements the
/// TTL (the caller has checked it is above 1). Checksums are updated
/// incrementally (RFC 1624); a UDP checksum of 0 (none sent) stays 0. With
/// `checksum_partial` (the L4 checksum field holds only the pseudo-header sum,
/// as from a local sender with checksum offload) the L4 checksum is computed in
/// full instead.
pub fn apply(buf: &mut [u8], frame: &Frame, rewrite: &Rewrite, checksum_partial: bool) {
    buf[0..6].copy_from_slice(&rewrite.dst_mac);
    buf[6..12].copy_from_slice(&rewrite.src_mac);

    let mut ip_check = read16(buf, IP_CHECKSUM);
    let old_word = u16::from_be_bytes([frame.ttl, frame.protocol]);
    let new_word = u16::from_be_bytes([frame.ttl - 1, frame.protocol]);
    ip_check = update16(ip_check, old_word, new_word);
    buf[IP_TTL] = frame.ttl - 1;
    if rewrite.src.addr != frame.src {
        ip_check = update32(ip_check, frame.src, rewrite.src.addr);
        buf[IP_SRC..IP_SRC + 4].copy_from_slice(&rewrite.src.addr);
    }
    if rewrite.dst.addr != frame.dst {
        ip_check = update32(ip_check, frame.dst, rewrite.dst.addr);
        buf[IP_DST..IP_DST + 4].copy_from_slice(&rewrite.dst.addr);
    }
    write16(buf, IP_CHECKSUM, ip_check);

    let l4 = frame.l4;
    match frame.transport {
        Transport::Tcp {
            src_port, dst_port, ..
        } => {
            let at = l4 + 16;
            rewrite_ports(buf, l4, (src_port, dst_port), rewrite);
            if checksum_partial {
                full_l4_checksum(buf, frame, at, rewrite);
            } else {
                let check = l4_update(read16(buf, at), frame, (src_port, dst_port), rewrite);
                write16(buf, at, check);
            }
        }
        Transport::Udp {
            src_port,
            dst_port,
            checksum: udp_check,
        } => {
            let at = l4 + 6;
            rewrite_ports(buf, l4, (src_port, dst_port), rewrite);
            if checksum_partial {
                full_l4_checksum(buf, frame, at, rewrite);
            } else if udp_check != 0 {
                let check = l4_update(udp_check, frame, (src_port, dst_port), rewrite);
                write16(buf, at, if check == 0 { 0xffff } else { check });
            }
        }
        Transport::IcmpEcho { request, id } => {
            let new_id = if request {
                rewrite.src.port
            } else {
                rewrite.dst.port
            };
            if new_id != id {
                let check = update16(read16(buf, l4 + 2), id, new_id);
                write16(buf, l4 + 2, check);
                write16(buf, l4 + 4, new_id);
            }
        }
        Transport::IcmpOther { .. } | Transport::Other { .. } => {}
    }
}

fn rewrite_ports(buf: &mut [u8], l4: usize, old: (u16, u16), rewrite: &Rewrite) {
    if rewrite.src.port != old.0 {
        write16(buf, l4, rewrite.src.port);
    }
    if rewrite.dst.port != old.1 {
        write16(buf, l4 + 2, rewrite.dst.port);
    }
}

/// A TCP/UDP checksum after the pseudo-header addresses and the ports changed.
fn l4_update(mut check: u16, frame: &Frame, ports: (u16, u16), rewrite: &Rewrite) -> u16 {
    if rewrite.src.addr != frame.src {
        check = update32(check, frame.src, rewrite.src.addr);
    }
    if rewrite.dst.addr != frame.dst {
        check = update32(check, frame.dst, rewrite.dst.addr);
    }
    if rewrite.src.port != ports.0 {
        check = update16(check, ports.0, rewrite.src.port);
    }
    if rewrite.dst.port != ports.1 {
        check = update16(check, ports.1, rewrite.dst.port);
    }
    check
}

/// Computes the TCP/UDP checksum at `at` from scratch over the rewritten segment.
fn full_l4_checksum(buf: &mut [u8], frame: &Frame, at: usize, rewrite: &Rewrite) {
    write16(buf, at, 0);
    let segment = &buf[frame.l4..frame.end];
    // The segment length always fits: it comes from a 16-bit IP total length.
    let len = segment.len() as u16;
    let sum = checksum::pseudo_header_sum(rewrite.src.addr, rewrite.dst.addr, frame.protocol, len);
    let check = !checksum::fold(checksum::sum_bytes(sum, segment));
    let check = if check == 0 && frame.protocol != PROTO_TCP {
        0xffff
    } else {
        check
    };
    write16(buf, at, check);
}

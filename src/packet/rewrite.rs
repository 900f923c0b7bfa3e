//! Rewriting a parsed frame in place: MACs, addresses, ports (ICMP echo
//! identifier), TTL, and every checksum they are covered by.

use super::checksum::{self, apply_delta, delta16, fold, update16, update32, update_transport};
use super::parse::{Frame, Transport, PROTO_TCP, PROTO_UDP};
use super::wire::{field, Ipv4Frame, TcpSegment, UdpDatagram};
use std::hash::{Hash, Hasher};

use super::family::{Family, HashWords};

/// An IPv4 address.
pub type Addr4 = [u8; 4];
/// An IPv6 address.
pub type Addr6 = [u8; 16];

/// An address and a port (for ICMP echo, the identifier): IPv4 unless
/// said otherwise ([`Endpoint6`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint<A = Addr4> {
    pub addr: A,
    pub port: u16,
}

/// An IPv6 address and a port.
pub type Endpoint6 = Endpoint<Addr6>;

impl<A> Endpoint<A> {
    pub fn new(addr: A, port: u16) -> Endpoint<A> {
        Endpoint { addr, port }
    }
}

/// The family's hash words ([`Family::hash_words`]): for IPv4 one 48-bit
/// word for the address and the port (equal endpoints, equal words), one
/// round of the map's hasher, where a derived impl fed the address as a
/// slice (its length, then its bytes) and the port apart.
impl<A: Family> Hash for Endpoint<A> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match A::hash_words(self) {
            HashWords::One(word) => state.write_u64(word),
            HashWords::Three(high, low, port) => {
                state.write_u64(high);
                state.write_u64(low);
                state.write_u16(port);
            }
        }
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

/// What rewriting one direction of a flow does to the checksums of its
/// whole TCP and UDP packets, as two folded RFC 1624 deltas: the IP header's
/// (both addresses and the TTL decrement) and the transport checksum's
/// (the pseudo-header's addresses and both ports). They depend on the
/// tuples only, so they are computed once per flow direction
/// (`FlowSpec::checksum_deltas`, kept in the flow table's `Flow::deltas`)
/// and every packet applies them with one addition each
/// ([`apply_established`]); a program that forwards a flow's packets
/// outside the core (an eBPF offload) reads the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChecksumDeltas {
    /// For the IPv4 header checksum.
    pub ip: u16,
    /// For the TCP or UDP checksum (a UDP checksum of 0 stays 0).
    pub l4: u16,
}

/// What decrementing the TTL adds to the IP checksum delta: the word
/// (TTL, protocol) loses 0x0100, whatever the protocol ([`delta16`] of
/// `w` and `w - 0x100`, a constant).
const TTL_DECREMENT: u32 = 0xfeff;

impl ChecksumDeltas {
    /// The deltas for a packet whose endpoints go from `old` to `new`
    /// (source, destination) and whose TTL is decremented.
    /// IPv6 has no header checksum: its `ip` delta is 0.
    pub fn new<A: Family>(
        old: (Endpoint<A>, Endpoint<A>),
        new: (Endpoint<A>, Endpoint<A>),
    ) -> ChecksumDeltas {
        let addresses = A::delta(old.0.addr, new.0.addr) + A::delta(old.1.addr, new.1.addr);
        let ports = delta16(old.0.port, new.0.port) + delta16(old.1.port, new.1.port);
        ChecksumDeltas {
            ip: if A::IS_V6 {
                0
            } else {
                fold(addresses + TTL_DECREMENT)
            },
            l4: fold(addresses + ports),
        }
    }
}

/// The established fast path's rewrite: [`apply`] for a whole TCP or UDP
/// packet with a complete checksum whose tuple is the one `deltas` was made
/// for, its new endpoints `rewrite`'s: fixed-offset writes through the
/// typed views, each checksum updated by one precomputed delta. Gives the
/// bytes [`apply`] gives (a property test holds them equal).
pub fn apply_established(buf: &mut [u8], frame: &Frame, rewrite: &Rewrite, deltas: ChecksumDeltas) {
    if let Some(mut ip) = Ipv4Frame::new_checked(&mut *buf) {
        ip.set_macs(rewrite.src_mac, rewrite.dst_mac);
        ip.set_ttl(frame.ttl.wrapping_sub(1));
        let check = apply_delta(ip.checksum(), deltas.ip);
        ip.set_checksum(check);
        ip.set_src(rewrite.src.addr);
        ip.set_dst(rewrite.dst.addr);
    }
    let ports = (rewrite.src.port, rewrite.dst.port);
    rewrite_l4_established(buf, frame.protocol, (frame.l4, frame.end), ports, deltas.l4);
}

/// The transport part of both families' established rewrite: the TCP or
/// UDP header of the segment at `at` (start, end) gets the new `ports`
/// (source, destination) and its checksum the folded `delta`, in one pass
/// (a UDP checksum of 0 stays 0).
pub(super) fn rewrite_l4_established(
    buf: &mut [u8],
    protocol: u8,
    at: (usize, usize),
    ports: (u16, u16),
    delta: u16,
) {
    let Some(segment) = buf.get_mut(at.0..at.1) else {
        return;
    };
    match protocol {
        PROTO_TCP => {
            if let Some(mut tcp) = TcpSegment::new_checked(segment) {
                tcp.set_src_port(ports.0);
                tcp.set_dst_port(ports.1);
                let check = apply_delta(tcp.checksum(), delta);
                tcp.set_checksum(check);
            }
        }
        PROTO_UDP => {
            if let Some(mut udp) = UdpDatagram::new_checked(segment) {
                udp.set_src_port(ports.0);
                udp.set_dst_port(ports.1);
                let check = update_transport(PROTO_UDP, udp.checksum(), |c| apply_delta(c, delta));
                udp.set_checksum(check);
            }
        }
        _ => {}
    }
}

pub(super) fn read16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(super) fn write16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Rewrites the Ethernet addresses, decrements the TTL (the caller has
/// checked it is above 1) and sets the IP addresses of the frame `frame` was
/// parsed from, updating the IP header checksum incrementally.
pub fn rewrite_ip(
    buf: &mut [u8],
    frame: &Frame,
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    dst: [u8; 4],
) {
    // A parsed frame always holds its IPv4 header.
    let Some(mut ip) = Ipv4Frame::new_checked(buf) else {
        return;
    };
    let (src_mac, dst_mac) = macs;
    ip.set_macs(src_mac, dst_mac);
    let old_word = u16::from_be_bytes([frame.ttl, frame.protocol]);
    let new_word = u16::from_be_bytes([frame.ttl - 1, frame.protocol]);
    let mut ip_check = update16(ip.checksum(), old_word, new_word);
    ip.set_ttl(frame.ttl - 1);
    if src != frame.src {
        ip_check = update32(ip_check, frame.src, src);
        ip.set_src(src);
    }
    if dst != frame.dst {
        ip_check = update32(ip_check, frame.dst, dst);
        ip.set_dst(dst);
    }
    ip.set_checksum(ip_check);
}

/// Applies `rewrite` to `buf`, which `frame` was parsed from, and decrements the
/// TTL (the caller has checked it is above 1). Checksums are updated
/// incrementally (RFC 1624); a UDP checksum of 0 (none sent) stays 0. With
/// `checksum_partial` (the L4 checksum field holds only the pseudo-header sum,
/// as from a local sender with checksum offload) the L4 checksum is computed in
/// full instead. A later fragment has only its IP header rewritten.
pub fn apply(buf: &mut [u8], frame: &Frame, rewrite: &Rewrite, checksum_partial: bool) {
    rewrite_ip(
        buf,
        frame,
        (rewrite.src_mac, rewrite.dst_mac),
        rewrite.src.addr,
        rewrite.dst.addr,
    );
    let old = (
        Endpoint::new(frame.src, frame.ports().0),
        Endpoint::new(frame.dst, frame.ports().1),
    );
    let new = (rewrite.src, rewrite.dst);
    let kind = match frame.transport {
        Transport::Tcp { .. } => L4::Tcp,
        Transport::Udp { .. } => L4::Udp,
        Transport::IcmpEcho { request, .. } => L4::Echo { request },
        Transport::IcmpError { .. }
        | Transport::IcmpOther { .. }
        | Transport::Other { .. }
        | Transport::Fragment => return,
    };
    if checksum_partial && !matches!(kind, L4::Echo { .. }) {
        rewrite_ports(buf, frame.l4, old, new);
        let at = frame.l4
            + if kind == L4::Tcp {
                field::TCP_CHECKSUM.start
            } else {
                field::UDP_CHECKSUM.start
            };
        full_l4_checksum(buf, frame, at, rewrite);
    } else {
        rewrite_transport(&mut InPlace, buf, frame.l4, frame.end, kind, old, new);
    }
}

/// [`apply`] for a TCP segment whose checksum stays partial (a GSO
/// super-frame that the egress device or the kernel cuts and completes): the
/// ports change without touching the checksum field (the completed sum covers
/// them), and the pseudo-header sum the field holds follows the new addresses,
/// as Linux's NAT updates a CHECKSUM_PARTIAL packet (`inet_proto_csum_replace4`
/// on a pseudo-header field). Anything but TCP has only its IP header rewritten.
pub fn apply_partial(buf: &mut [u8], frame: &Frame, rewrite: &Rewrite) {
    rewrite_ip(
        buf,
        frame,
        (rewrite.src_mac, rewrite.dst_mac),
        rewrite.src.addr,
        rewrite.dst.addr,
    );
    if !matches!(frame.transport, Transport::Tcp { .. }) {
        return;
    }
    // The parser checked that the whole TCP header is there.
    let Some(mut tcp) = buf
        .get_mut(frame.l4..frame.end)
        .and_then(TcpSegment::new_checked)
    else {
        return;
    };
    tcp.set_src_port(rewrite.src.port);
    tcp.set_dst_port(rewrite.dst.port);
    // The field holds a sum, not its complement: update the complement.
    let mut check = !tcp.checksum();
    check = update32(check, frame.src, rewrite.src.addr);
    check = update32(check, frame.dst, rewrite.dst.addr);
    tcp.set_checksum(!check);
}

/// The transport header a rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum L4 {
    Tcp,
    Udp,
    /// An ICMP echo request or reply: the identifier stands for a port.
    Echo {
        request: bool,
    },
}

/// Where a rewrite writes its 16-bit words: straight into the frame, or into
/// the packet an ICMP error quotes, whose checksum follows every change.
pub(super) trait Words {
    fn set16(&mut self, buf: &mut [u8], at: usize, value: u16);
}

/// Writes straight into the frame.
struct InPlace;

impl Words for InPlace {
    #[inline]
    fn set16(&mut self, buf: &mut [u8], at: usize, value: u16) {
        write16(buf, at, value);
    }
}

/// The per-protocol rewrite, shared by translated packets and the packets
/// ICMP errors quote: the ports of the TCP or UDP header at `l4` (or the
/// echo identifier) from `old` to `new` (source, destination), and the
/// checksum covering them, incrementally; a checksum past `end` (a quote cut
/// short) is left out.
#[inline]
pub(super) fn rewrite_transport(
    words: &mut impl Words,
    buf: &mut [u8],
    l4: usize,
    end: usize,
    kind: L4,
    old: (Endpoint, Endpoint),
    new: (Endpoint, Endpoint),
) {
    let (protocol, at) = match kind {
        L4::Tcp => (PROTO_TCP, l4 + field::TCP_CHECKSUM.start),
        L4::Udp => (PROTO_UDP, l4 + field::UDP_CHECKSUM.start),
        L4::Echo { request } => {
            let (old_id, new_id) = if request {
                (old.0.port, new.0.port)
            } else {
                (old.1.port, new.1.port)
            };
            if old_id != new_id {
                let check_at = l4 + field::ICMP_CHECKSUM.start;
                let check = update16(read16(buf, check_at), old_id, new_id);
                words.set16(buf, check_at, check);
                words.set16(buf, l4 + field::ECHO_ID.start, new_id);
            }
            return;
        }
    };
    if new.0.port != old.0.port {
        words.set16(buf, l4 + field::SRC_PORT.start, new.0.port);
    }
    if new.1.port != old.1.port {
        words.set16(buf, l4 + field::DST_PORT.start, new.1.port);
    }
    if at + 2 <= end {
        let check = update_transport(protocol, read16(buf, at), |c| l4_update(c, old, new));
        words.set16(buf, at, check);
    }
}

/// Writes the ports of a TCP or UDP header at `l4` that differ.
fn rewrite_ports(buf: &mut [u8], l4: usize, old: (Endpoint, Endpoint), new: (Endpoint, Endpoint)) {
    if new.0.port != old.0.port {
        write16(buf, l4 + field::SRC_PORT.start, new.0.port);
    }
    if new.1.port != old.1.port {
        write16(buf, l4 + field::DST_PORT.start, new.1.port);
    }
}

/// A TCP/UDP checksum after the pseudo-header addresses and the ports of its
/// segment went from `old` to `new` (source, destination).
fn l4_update(mut check: u16, old: (Endpoint, Endpoint), new: (Endpoint, Endpoint)) -> u16 {
    for (old, new) in [old.0, old.1].into_iter().zip([new.0, new.1]) {
        if old.addr != new.addr {
            check = update32(check, old.addr, new.addr);
        }
        if old.port != new.port {
            check = update16(check, old.port, new.port);
        }
    }
    check
}

/// Where the TCP/UDP checksum of `frame` is, if it has one.
fn transport_checksum_at(frame: &Frame) -> Option<usize> {
    match frame.transport {
        Transport::Tcp { .. } => Some(frame.l4 + field::TCP_CHECKSUM.start),
        Transport::Udp { checksum: 0, .. } => None,
        Transport::Udp { .. } => Some(frame.l4 + field::UDP_CHECKSUM.start),
        _ => None,
    }
}

/// Completes a partial TCP/UDP checksum (see [`carries_partial_checksum`])
/// and changes nothing else: for a frame handed untranslated to a receiver
/// that takes every checksum as complete (the kernel, through the punt
/// device). Returns whether it did.
pub fn complete_partial_checksum(buf: &mut [u8], frame: &Frame) -> bool {
    let Some(at) = transport_checksum_at(frame) else {
        return false;
    };
    if !carries_partial_checksum(buf, frame) {
        return false;
    }
    write16(buf, at, 0);
    let segment = &buf[frame.l4..frame.end];
    let check = checksum::transport_checksum(frame.src, frame.dst, frame.protocol, segment);
    write16(buf, at, check);
    true
}

/// Computes the TCP/UDP checksum at `at` from scratch over the rewritten segment.
fn full_l4_checksum(buf: &mut [u8], frame: &Frame, at: usize, rewrite: &Rewrite) {
    write16(buf, at, 0);
    let segment = &buf[frame.l4..frame.end];
    let check =
        checksum::transport_checksum(rewrite.src.addr, rewrite.dst.addr, frame.protocol, segment);
    write16(buf, at, check);
}

/// Whether the TCP/UDP checksum of `frame` holds only the pseudo-header sum,
/// as a local sender with checksum offload leaves it (CHECKSUM_PARTIAL) when
/// nothing tells the router so (AF_XDP carries no such flag). A complete
/// checksum equal to that value by chance is harmless: the router then
/// recomputes it in full, which gives the same correct value.
pub fn carries_partial_checksum(buf: &[u8], frame: &Frame) -> bool {
    let Some(at) = transport_checksum_at(frame) else {
        return false;
    };
    let Some(field) = buf.get(at..at + 2) else {
        return false;
    };
    // The segment length always fits: it comes from a 16-bit IP total length.
    let len = (frame.end - frame.l4) as u16;
    let pseudo = checksum::fold(checksum::pseudo_header_sum(
        frame.src,
        frame.dst,
        frame.protocol,
        len,
    ));
    u16::from_be_bytes([field[0], field[1]]) == pseudo
}

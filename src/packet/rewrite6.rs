//! Rewriting a parsed IPv6 frame in place, as `rewrite.rs` does for IPv4:
//! MACs, addresses, ports (ICMPv6 echo identifier), hop limit, and the
//! upper-layer checksum they are covered by. IPv6 has no header checksum,
//! but its pseudo-header (RFC 8200 8.1) is covered by TCP, UDP *and*
//! ICMPv6, so an address change reaches the checksum of every ICMPv6
//! message too, unlike ICMPv4's.

use super::checksum::{update16, update_transport, update_words};
use super::ipv6::{Frame6, PROTO_ICMPV6};
use super::parse::{Transport, PROTO_TCP, PROTO_UDP};
use super::rewrite::{Addr6, Endpoint6, Words};
use super::wire::field;
use super::wire6::{get16, set16, Ipv6Frame};

/// What a forwarded IPv6 frame becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite6 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Endpoint6,
    pub dst: Endpoint6,
}

/// Applies `rewrite` to `buf`, which `frame` was parsed from: the MACs, the
/// hop limit decremented (the caller has checked it is above 1), the
/// addresses, and for TCP and UDP the ports, for ICMPv6 echo the identifier
/// (the port of [`Frame6::ports`]), with the upper-layer checksum updated
/// incrementally (RFC 1624). Any other ICMPv6 message keeps its body and
/// has its checksum follow the pseudo-header (an error's quote is
/// `translate_error6`'s). Returns the length of the frame to send: the
/// packet without Ethernet padding.
///
/// A later fragment (and ESP, or an unknown protocol) holds no header this
/// can update: only its addresses change, which leaves the checksum in the
/// first fragment correct only if the translation is checksum-neutral (RFC
/// 6296 NPTv6) and ports do not change; the caller decides whether to
/// forward it so.
pub fn apply6(buf: &mut [u8], frame: &Frame6, rewrite: &Rewrite6) -> usize {
    rewrite_ip6(
        buf,
        frame,
        (rewrite.src_mac, rewrite.dst_mac),
        rewrite.src.addr,
        rewrite.dst.addr,
    );
    let (src_port, dst_port) = frame.ports();
    let old = (
        Endpoint6::new(frame.src, src_port),
        Endpoint6::new(frame.dst, dst_port),
    );
    if let Some(kind) = Upper6::of(frame.transport) {
        rewrite_upper6(
            &mut InPlace6,
            buf,
            frame.l4,
            frame.end,
            kind,
            old,
            (rewrite.src, rewrite.dst),
        );
    }
    frame.end
}

/// Rewrites the Ethernet addresses, decrements the hop limit and sets the
/// addresses of the frame `frame` was parsed from (IPv6 has no header
/// checksum to follow them).
pub(super) fn rewrite_ip6(
    buf: &mut [u8],
    frame: &Frame6,
    macs: ([u8; 6], [u8; 6]),
    src: Addr6,
    dst: Addr6,
) {
    // A parsed frame always holds its fixed header.
    let Some(mut ip) = Ipv6Frame::new_checked(buf) else {
        return;
    };
    ip.set_macs(macs.0, macs.1);
    ip.set_hop_limit(frame.hop_limit.saturating_sub(1));
    ip.set_src(src);
    ip.set_dst(dst);
}

/// The upper-layer header a rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upper6 {
    Tcp,
    Udp,
    /// An ICMPv6 echo request or reply: the identifier stands for a port.
    Echo {
        request: bool,
    },
    /// Any other ICMPv6 message: only its checksum changes, with the
    /// pseudo-header.
    Icmp,
}

impl Upper6 {
    /// The header `transport` names, when it has a checksum to follow.
    pub(super) fn of(transport: Transport) -> Option<Upper6> {
        match transport {
            Transport::Tcp { .. } => Some(Upper6::Tcp),
            Transport::Udp { .. } => Some(Upper6::Udp),
            Transport::IcmpEcho { request, .. } => Some(Upper6::Echo { request }),
            Transport::IcmpError { .. } | Transport::IcmpOther { .. } => Some(Upper6::Icmp),
            Transport::Other { .. } | Transport::Fragment => None,
        }
    }

    fn protocol(self) -> u8 {
        match self {
            Upper6::Tcp => PROTO_TCP,
            Upper6::Udp => PROTO_UDP,
            Upper6::Echo { .. } | Upper6::Icmp => PROTO_ICMPV6,
        }
    }

    /// Where its checksum is, from its start.
    fn checksum_at(self) -> usize {
        match self {
            Upper6::Tcp => field::TCP_CHECKSUM.start,
            Upper6::Udp => field::UDP_CHECKSUM.start,
            Upper6::Echo { .. } | Upper6::Icmp => field::ICMP_CHECKSUM.start,
        }
    }
}

/// Writes straight into the frame.
struct InPlace6;

impl Words for InPlace6 {
    #[inline]
    fn set16(&mut self, buf: &mut [u8], at: usize, value: u16) {
        set16(buf, at, value);
    }
}

/// The per-protocol rewrite, shared by translated packets and the packets
/// ICMPv6 errors quote: the ports of the TCP or UDP header at `l4` (or the
/// echo identifier) from `old` to `new` (source, destination), and its
/// checksum for those and for the pseudo-header's addresses,
/// incrementally; a checksum past `end` (a quote cut short) is left out.
pub(super) fn rewrite_upper6(
    words: &mut impl Words,
    buf: &mut [u8],
    l4: usize,
    end: usize,
    kind: Upper6,
    old: (Endpoint6, Endpoint6),
    new: (Endpoint6, Endpoint6),
) {
    let ports = port_words(kind, old, new);
    for (at, _, new_port) in ports.into_iter().flatten() {
        words.set16(buf, l4 + at, new_port);
    }
    let at = l4 + kind.checksum_at();
    if at + 2 > end {
        return;
    }
    let Some(field) = get16(buf, at) else {
        return;
    };
    let check = update_transport(kind.protocol(), field, |mut check| {
        for (old, new) in [(old.0.addr, new.0.addr), (old.1.addr, new.1.addr)] {
            if old != new {
                check = update_words(check, &old, &new);
            }
        }
        for (_, old_port, new_port) in ports.into_iter().flatten() {
            check = update16(check, old_port, new_port);
        }
        check
    });
    words.set16(buf, at, check);
}

/// The words standing for ports that change, as (offset in the header,
/// old, new): a TCP or UDP header's two ports, an echo message's identifier
/// (the source port of a request, the destination port of a reply).
fn port_words(
    kind: Upper6,
    old: (Endpoint6, Endpoint6),
    new: (Endpoint6, Endpoint6),
) -> [Option<(usize, u16, u16)>; 2] {
    let words = match kind {
        Upper6::Tcp | Upper6::Udp => [
            Some((field::SRC_PORT.start, old.0.port, new.0.port)),
            Some((field::DST_PORT.start, old.1.port, new.1.port)),
        ],
        Upper6::Echo { request: true } => {
            [Some((field::ECHO_ID.start, old.0.port, new.0.port)), None]
        }
        Upper6::Echo { request: false } => {
            [Some((field::ECHO_ID.start, old.1.port, new.1.port)), None]
        }
        Upper6::Icmp => [None, None],
    };
    words.map(|word| word.filter(|(_, old, new)| old != new))
}

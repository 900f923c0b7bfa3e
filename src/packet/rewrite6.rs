//! Rewriting a parsed IPv6 frame in place, as `rewrite.rs` does for IPv4:
//! MACs, addresses, ports (ICMPv6 echo identifier), hop limit, and the
//! upper-layer checksum they are covered by. IPv6 has no header checksum,
//! but its pseudo-header (RFC 8200 8.1) is covered by TCP, UDP *and*
//! ICMPv6, so an address change reaches the checksum of every ICMPv6
//! message too, unlike ICMPv4's.

use super::checksum::{
    apply_delta, delta16, fold, pseudo_header_sum6, transport_checksum6, update_transport,
};
use super::family::Family;
use super::ipv6::{Frame6, PROTO_ICMPV6};
use super::parse::{Transport, PROTO_TCP, PROTO_UDP};
use super::rewrite::{rewrite_l4_established, Addr6, ChecksumDeltas, Endpoint6, Words};
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
    let old = rewrite_fixed6(buf, frame, rewrite);
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

/// [`apply_established`](super::apply_established) for IPv6: [`apply6`]
/// for a whole TCP or UDP packet right after the fixed header
/// ([`parse_plain6`](super::parse_plain6)) whose tuple is the one `deltas`
/// was made for, its new endpoints `rewrite`'s, the upper-layer checksum
/// updated by the one precomputed delta. Gives the bytes [`apply6`] gives
/// (a property test holds them equal), which leaves the checksum field as
/// it is when no address or port changes (`nat6 = "off"`): a delta of
/// nothing would turn a TCP checksum of 0xffff into 0. Returns the length
/// of the frame to send, as [`apply6`].
pub fn apply_established6(
    buf: &mut [u8],
    frame: &Frame6,
    rewrite: &Rewrite6,
    deltas: ChecksumDeltas,
) -> usize {
    let old = rewrite_fixed6(buf, frame, rewrite);
    if old != (rewrite.src, rewrite.dst) {
        let ports = (rewrite.src.port, rewrite.dst.port);
        rewrite_l4_established(buf, frame.protocol, (frame.l4, frame.end), ports, deltas.l4);
    }
    frame.end
}

/// What both rewrites do first: [`rewrite_ip6`] with `rewrite`'s MACs and
/// addresses; returns the endpoints (source, destination) the frame arrived
/// with, which its upper layer's rewrite starts from.
fn rewrite_fixed6(buf: &mut [u8], frame: &Frame6, rewrite: &Rewrite6) -> (Endpoint6, Endpoint6) {
    rewrite_ip6(
        buf,
        frame,
        (rewrite.src_mac, rewrite.dst_mac),
        rewrite.src.addr,
        rewrite.dst.addr,
    );
    let (src_port, dst_port) = frame.ports();
    (
        Endpoint6::new(frame.src, src_port),
        Endpoint6::new(frame.dst, dst_port),
    )
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
    let deltas = Deltas6::of(old, new, ports);
    let check = update_transport(kind.protocol(), field, |check| {
        apply_delta(check, deltas.sum())
    });
    words.set16(buf, at, check);
}

/// What rewriting an IPv6 packet's endpoints adds to its TCP, UDP or ICMPv6
/// checksum, as two folded RFC 1624 deltas (each 0 when nothing it covers
/// changes): the one computation [`apply6`] and an offload of the flow
/// (the eBPF fast path) both apply, so they make the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deltas6 {
    /// The addresses' change: the pseudo-header, which all three cover.
    pub pseudo: u16,
    /// The ports' change (an ICMPv6 echo's identifier's).
    pub ports: u16,
}

impl Deltas6 {
    /// For a flow's whole packets whose endpoints go from `old` to `new`
    /// (source, destination): TCP and UDP ports, or an ICMPv6 echo's
    /// identifier, which stands for one of the two (the other is 0 on both
    /// sides: its change is the only one).
    pub fn new(old: (Endpoint6, Endpoint6), new: (Endpoint6, Endpoint6)) -> Deltas6 {
        let ports = [(old.0.port, new.0.port), (old.1.port, new.1.port)]
            .map(|(old, new)| (old != new).then_some((0, old, new)));
        Deltas6::of(old, new, ports)
    }

    /// For the changed port words `ports` ([`port_words`]).
    fn of(
        old: (Endpoint6, Endpoint6),
        new: (Endpoint6, Endpoint6),
        ports: [Option<(usize, u16, u16)>; 2],
    ) -> Deltas6 {
        let addresses: u32 = [(old.0.addr, new.0.addr), (old.1.addr, new.1.addr)]
            .into_iter()
            .filter(|(old, new)| old != new)
            .map(|(old, new)| Addr6::delta(old, new))
            .sum();
        let ports: u32 = ports
            .into_iter()
            .flatten()
            .map(|(_, old, new)| delta16(old, new))
            .sum();
        Deltas6 {
            pseudo: fold(addresses),
            ports: fold(ports),
        }
    }

    /// Both deltas as one.
    pub fn sum(self) -> u16 {
        fold(u32::from(self.pseudo) + u32::from(self.ports))
    }
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

/// Writes the full TCP or UDP checksum of a frame whose checksum is partial
/// (CHECKSUM_PARTIAL from a local sender: the field holds only the
/// pseudo-header's sum), so the rewrite that follows updates a complete
/// one. Other protocols, and a frame whose header is cut, are left as they
/// are.
pub fn complete_partial_checksum6(buf: &mut [u8], frame: &Frame6) {
    let Some(at) = transport_checksum_at6(buf, frame) else {
        return;
    };
    buf[at..at + 2].copy_from_slice(&[0, 0]);
    let check = transport_checksum6(
        frame.src,
        frame.dst,
        frame.protocol,
        &buf[frame.l4..frame.end],
    );
    buf[at..at + 2].copy_from_slice(&check.to_be_bytes());
}

/// Whether the TCP/UDP checksum of `frame` holds only the pseudo-header
/// sum, as a local sender with checksum offload leaves it when nothing
/// tells the router so (AF_XDP carries no such flag): IPv6's
/// [`carries_partial_checksum`](super::carries_partial_checksum). A
/// complete checksum equal to that value by chance is harmless: completing
/// it gives the same value.
pub fn carries_partial_checksum6(buf: &[u8], frame: &Frame6) -> bool {
    let Some(at) = transport_checksum_at6(buf, frame) else {
        return false;
    };
    // The segment length fits: it comes from a 16-bit payload length.
    let len = (frame.end - frame.l4) as u32;
    let pseudo = fold(pseudo_header_sum6(
        frame.src,
        frame.dst,
        frame.protocol,
        len,
    ));
    get16(buf, at) == Some(pseudo)
}

/// Where the TCP or UDP checksum of an unfragmented `frame` is in `buf`;
/// None for other protocols, fragments and cut headers.
fn transport_checksum_at6(buf: &[u8], frame: &Frame6) -> Option<usize> {
    let at = match frame.protocol {
        PROTO_TCP => frame.l4 + 16,
        PROTO_UDP => frame.l4 + 6,
        _ => return None,
    };
    (frame.fragment.is_none() && at + 2 <= frame.end && frame.end <= buf.len()).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ipv6::parse6;
    use crate::packet::test6::{
        addr, checksum_at, echo, forwardable_exts, frame6, global_addr, icmp6, tcp, udp,
        upper_checksum_valid, Ext, HOST_MAC, ROUTER_MAC,
    };
    use proptest::prelude::*;

    const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];

    fn rewrite(src: (&str, u16), dst: (&str, u16)) -> Rewrite6 {
        Rewrite6 {
            src_mac: WAN_MAC,
            dst_mac: GATEWAY_MAC,
            src: Endpoint6::new(addr(src.0), src.1),
            dst: Endpoint6::new(addr(dst.0), dst.1),
        }
    }

    /// The upper layer of the frame in `buf` has a valid checksum, by the
    /// reference sum.
    fn valid(buf: &[u8]) -> bool {
        let parsed = parse6(buf).expect("parses");
        upper_checksum_valid(
            parsed.src,
            parsed.dst,
            parsed.protocol,
            &buf[parsed.l4..parsed.end],
        )
    }

    /// A frame as a local sender with checksum offload hands it over: the
    /// TCP or UDP checksum holds only the pseudo-header's sum. Detected,
    /// completed, and no longer partial; a complete one is left alone.
    #[test]
    fn a_partial_checksum_is_detected_and_completed() {
        for (protocol, upper, at) in [
            (PROTO_TCP, tcp(40000, 443, 0x18, 7, b"hello"), 16),
            (PROTO_UDP, udp(40000, 53, b"query"), 6),
        ] {
            let (src, dst) = (addr("fd00:50::10"), addr("2001:db8:2::20"));
            let complete = frame6(src, dst, 64, &[], protocol, &upper);
            let mut buf = complete.clone();
            let check_at = 54 + at;
            let len = (upper.len()) as u32;
            let pseudo = fold(pseudo_header_sum6(src, dst, protocol, len));
            buf[check_at..check_at + 2].copy_from_slice(&pseudo.to_be_bytes());
            let frame = parse6(&buf).expect("parses");
            assert!(carries_partial_checksum6(&buf, &frame), "{protocol}");
            complete_partial_checksum6(&mut buf, &frame);
            assert_eq!(buf, complete, "{protocol}");
            assert!(valid(&buf));
            assert!(!carries_partial_checksum6(&buf, &frame), "{protocol}");
        }
    }

    #[test]
    fn rewrites_a_udp_datagram() {
        let mut buf = frame6(
            addr("fd00::10"),
            addr("2001:db8:2::20"),
            64,
            &[],
            PROTO_UDP,
            &udp(40000, 53, b"query"),
        );
        let sent = buf.len();
        buf.extend_from_slice(&[0; 4]);
        let frame = parse6(&buf).unwrap();
        let r = rewrite(("2001:db8:1::1", 61000), ("2001:db8:2::20", 53));
        assert_eq!(apply6(&mut buf, &frame, &r), sent);
        assert_eq!(&buf[0..6], &GATEWAY_MAC);
        assert_eq!(&buf[6..12], &WAN_MAC);
        assert_eq!(buf[21], 63, "hop limit");
        assert_eq!(&buf[22..38], &addr("2001:db8:1::1"));
        assert_eq!(&buf[38..54], &addr("2001:db8:2::20"));
        assert_eq!(&buf[54..58], &[0xee, 0x48, 0, 53]);
        assert!(valid(&buf[..sent]));
        assert_eq!(&buf[sent..], &[0; 4], "padding untouched");
    }

    #[test]
    fn rewrites_the_identifier_of_an_echo_request_and_a_reply() {
        for request in [true, false] {
            let (src, dst) = (addr("fd00::10"), addr("2001:db8:2::20"));
            let message = echo(request, 0x1111, 5, b"ping");
            let mut buf = frame6(src, dst, 64, &[], PROTO_ICMPV6, &message);
            let frame = parse6(&buf).unwrap();
            let r = if request {
                rewrite(("2001:db8:1::1", 0x2222), ("2001:db8:2::20", 0))
            } else {
                rewrite(("2001:db8:1::1", 0), ("2001:db8:2::20", 0x2222))
            };
            apply6(&mut buf, &frame, &r);
            assert_eq!(&buf[58..60], &[0x22, 0x22], "request {request}");
            assert_eq!(&buf[60..62], &[0, 5], "sequence untouched");
            assert!(valid(&buf), "request {request}");
        }
    }

    #[test]
    fn other_icmpv6_messages_follow_the_pseudo_header() {
        let body = [0x5au8; 48];
        let mut buf = frame6(
            addr("fd00::10"),
            addr("2001:db8:2::20"),
            64,
            &[],
            PROTO_ICMPV6,
            &icmp6(1, 4, [0; 4], &body),
        );
        let frame = parse6(&buf).unwrap();
        apply6(
            &mut buf,
            &frame,
            &rewrite(("2001:db8:1::1", 0), ("2001:db8:9::9", 0)),
        );
        assert!(valid(&buf));
        assert_eq!(&buf[62..], &body, "the body is not translated here");
    }

    #[test]
    fn a_later_fragment_has_only_its_addresses_changed() {
        let fragment = Ext::Fragment {
            offset: 100,
            more: false,
            id: 7,
        };
        let data = [0xa5u8; 40];
        let before = frame6(
            addr("fd00::10"),
            addr("2001:db8:2::20"),
            64,
            &[fragment],
            PROTO_UDP,
            &data,
        );
        let mut buf = before.clone();
        let frame = parse6(&buf).unwrap();
        let r = rewrite(("2001:db8:1::1", 61000), ("2001:db8:2::21", 53));
        assert_eq!(apply6(&mut buf, &frame, &r), before.len());
        assert_eq!(&buf[22..38], &addr("2001:db8:1::1"));
        assert_eq!(&buf[38..54], &addr("2001:db8:2::21"));
        assert_eq!(
            &buf[54..],
            &before[54..],
            "fragment header and data untouched"
        );
    }

    #[test]
    fn a_hop_limit_of_zero_does_not_wrap() {
        let mut buf = frame6(
            addr("fd00::10"),
            addr("2001:db8:2::20"),
            0,
            &[],
            PROTO_UDP,
            &udp(1, 2, b""),
        );
        let frame = parse6(&buf).unwrap();
        apply6(
            &mut buf,
            &frame,
            &rewrite(("fd00::10", 1), ("2001:db8:2::20", 2)),
        );
        assert_eq!(buf[21], 0);
    }

    #[test]
    fn a_frame_from_another_buffer_does_not_panic() {
        let buf = frame6(
            addr("fd00::10"),
            addr("2001:db8:2::20"),
            64,
            &[Ext::DestOpts(4)],
            PROTO_TCP,
            &tcp(1, 2, 0x10, 0, &[0; 100]),
        );
        let frame = parse6(&buf).unwrap();
        for len in [0, 20, 54, 70, 100, 130] {
            let mut short = buf[..len].to_vec();
            apply6(
                &mut short,
                &frame,
                &rewrite(("2001:db8::1", 3), ("2001:db8::2", 4)),
            );
        }
    }

    /// The upper layers a property test translates.
    fn upper() -> impl Strategy<Value = (u8, u16, u16, bool)> {
        prop_oneof![
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| (PROTO_TCP, s, d, false)),
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| (PROTO_UDP, s, d, false)),
            (any::<u16>(), any::<bool>()).prop_map(|(id, request)| (PROTO_ICMPV6, id, id, request)),
        ]
    }

    /// `addr` with its first and last words changed so that its
    /// one's-complement sum is the same (as an RFC 6296 mapping leaves it).
    fn neutral(addr: Addr6, k: u16) -> Addr6 {
        let word = |i: usize| u32::from(u16::from_be_bytes([addr[i], addr[i + 1]]));
        let fold = |sum: u32| ((sum & 0xffff) + (sum >> 16)) as u16;
        let mut out = addr;
        out[0..2].copy_from_slice(&fold(word(0) + u32::from(k)).to_be_bytes());
        out[14..16].copy_from_slice(&fold(word(14) + u32::from(!k)).to_be_bytes());
        out
    }

    proptest! {
        /// The established rewrite, with the deltas a flow computes for its
        /// tuples, writes the bytes apply6 writes, for TCP and UDP with any
        /// checksum field (0 and 0xffff included) and tuples left as they
        /// are (nat6 off), changed checksum-neutrally (npt), or changed in
        /// any other way (prefix, masquerade).
        #[test]
        fn apply_established6_equals_apply6(
            is_tcp in any::<bool>(), old in (global_addr(), global_addr(), any::<(u16, u16)>()),
            how in 0u8..4, k in any::<u16>(),
            new in (global_addr(), global_addr(), any::<(u16, u16)>()),
            check in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
            hop_limit in 2u8..=255, payload in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let (protocol, upper) = if is_tcp {
                (PROTO_TCP, tcp(old.2 .0, old.2 .1, 0x10, 1, &payload))
            } else {
                (PROTO_UDP, udp(old.2 .0, old.2 .1, &payload))
            };
            let valid = frame6(old.0, old.1, hop_limit, &[], protocol, &upper);
            let frame = parse6(&valid).unwrap();
            let from = (Endpoint6::new(old.0, old.2 .0), Endpoint6::new(old.1, old.2 .1));
            let to = match how {
                0 => from,
                1 => (Endpoint6::new(neutral(old.0, k), old.2 .0), from.1),
                2 => (Endpoint6::new(new.0, new.2 .0), from.1),
                _ => (Endpoint6::new(new.0, new.2 .0), Endpoint6::new(new.1, new.2 .1)),
            };
            let mut bytes = valid.clone();
            let at = 54 + checksum_at(protocol).unwrap();
            bytes[at..at + 2].copy_from_slice(&check.to_be_bytes());
            let r = Rewrite6 { src_mac: ROUTER_MAC, dst_mac: HOST_MAC, src: to.0, dst: to.1 };
            let mut general = bytes.clone();
            let mut fast = bytes;
            let len = apply6(&mut general, &frame, &r);
            prop_assert_eq!(apply_established6(&mut fast, &frame, &r, ChecksumDeltas::new(from, to)), len);
            prop_assert_eq!(fast, general);
        }

        /// After apply6 the upper-layer checksum is valid (a full
        /// recomputation by the reference sum), for random tuples, TCP, UDP
        /// and ICMPv6 echo, with and without extension headers; and the
        /// frame parses to the new tuple.
        #[test]
        fn apply6_leaves_a_valid_checksum(
            old_src in global_addr(), old_dst in global_addr(),
            new_src in global_addr(), new_dst in global_addr(),
            (protocol, src_port, dst_port, request) in upper(),
            new_ports in any::<(u16, u16)>(),
            exts in forwardable_exts(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let segment = match protocol {
                PROTO_TCP => tcp(src_port, dst_port, 0x18, 1, &payload),
                PROTO_UDP => udp(src_port, dst_port, &payload),
                _ => echo(request, src_port, 1, &payload),
            };
            let mut buf = frame6(old_src, old_dst, 64, &exts, protocol, &segment);
            let frame = parse6(&buf).unwrap();
            let (new_src_port, new_dst_port) = match frame.ports() {
                (0, 0) => (0, 0),
                (_, 0) => (new_ports.0, 0),
                (0, _) => (0, new_ports.1),
                _ => new_ports,
            };
            let r = Rewrite6 {
                src_mac: ROUTER_MAC,
                dst_mac: HOST_MAC,
                src: Endpoint6::new(new_src, new_src_port),
                dst: Endpoint6::new(new_dst, new_dst_port),
            };
            prop_assert_eq!(apply6(&mut buf, &frame, &r), buf.len());
            prop_assert!(valid(&buf));
            let after = parse6(&buf).unwrap();
            prop_assert_eq!((after.src, after.dst), (new_src, new_dst));
            prop_assert_eq!(after.ports(), (new_src_port, new_dst_port));
            prop_assert_eq!(after.hop_limit, 63);
            prop_assert_eq!((after.l4, after.end), (frame.l4, frame.end));
        }
    }
}

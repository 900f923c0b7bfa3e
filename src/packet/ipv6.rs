//! Parsing an IPv6 frame into the few fields the router decides on, as
//! `parse.rs` does for IPv4: a plain copy ([`Frame6`]) that the router
//! decides on, and offsets it rewrites the buffer by afterwards. The
//! extension header chain is walked here ([`walk`], shared with the
//! ICMPv6 quote reader) with a bound, and anything a forwarding fast path
//! should not touch (link-local scope, Hop-by-Hop options, source routing)
//! becomes the verdict it leads to.

use etherparse::EtherType;

use super::parse::{ParseOutcome, Parsed, TcpFlags, Transport, L3_OFFSET, PROTO_TCP, PROTO_UDP};
use super::rewrite::Addr6;
use super::wire::{field, IcmpMessage, TcpSegment, UdpDatagram};
use super::wire6::{field6, get16, Ipv6Frame, ETHERTYPE_IPV6};
use crate::verdict::{DropReason, KernelReason};

/// Next-header values (RFC 8200 4, RFC 4302) the walk knows. Hop-by-Hop
/// Options: left to the kernel when forwarding, passed over in a quote.
pub const NEXT_HOP_BY_HOP: u8 = 0;
/// Routing: passed over with no segments left, left to the kernel with some.
pub const NEXT_ROUTING: u8 = 43;
/// Fragment: read into [`Fragment6`]; a later fragment ends the walk.
pub const NEXT_FRAGMENT: u8 = 44;
/// ESP: what follows is encrypted, the walk ends.
pub const NEXT_ESP: u8 = 50;
/// Authentication Header: passed over (its length counts 4-byte units).
pub const NEXT_AH: u8 = 51;
/// No Next Header: nothing follows, the walk ends.
pub const NEXT_NONE: u8 = 59;
/// Destination Options: passed over, as the router is not the destination.
pub const NEXT_DEST_OPTS: u8 = 60;

/// The upper-layer protocol number of ICMPv6, which the router translates
/// like TCP and UDP (its checksum covers the pseudo-header).
pub const PROTO_ICMPV6: u8 = 58;

/// ICMPv6 errors that quote a packet (RFC 4443 3), translated with it:
/// destination unreachable.
pub const ICMP6_DEST_UNREACHABLE: u8 = 1;
/// Packet too big: how a sender learns the path MTU, as routers do not
/// fragment IPv6.
pub const ICMP6_PACKET_TOO_BIG: u8 = 2;
/// Time exceeded (the hop limit ran out): what traceroute reads.
pub const ICMP6_TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const ICMP6_PARAMETER_PROBLEM: u8 = 4;
/// Echo request (RFC 4443 4): its identifier stands for the source port.
pub const ICMP6_ECHO_REQUEST: u8 = 128;
/// Echo reply: its identifier stands for the destination port.
pub const ICMP6_ECHO_REPLY: u8 = 129;

/// The most extension headers walked: a legitimate packet has a handful at
/// most, and a longer chain is a way to make a parser spin (RFC 9098).
pub const MAX_EXTENSIONS: usize = 8;

/// A Fragment header's fields: what groups a fragment with the others of
/// its packet, and where it sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment6 {
    pub id: u32,
    /// The offset of this fragment's data, in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
}

impl Fragment6 {
    /// A later fragment carries no upper-layer header (RFC 7112 puts the
    /// whole header chain in the first).
    pub fn is_later(&self) -> bool {
        self.offset != 0
    }
}

/// An untagged Ethernet II frame carrying an IPv6 packet, parsed: the IPv6
/// counterpart of [`super::Frame`], with the ICMPv6 meaning of
/// [`Transport`]'s ICMP variants (echo request 128 and reply 129; the errors
/// destination unreachable 1, packet too big 2, time exceeded 3, parameter
/// problem 4; everything else, Neighbour Discovery and MLD included, is
/// `IcmpOther`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame6 {
    /// The sender's MAC: where an error about the frame goes back to.
    pub src_mac: [u8; 6],
    pub src: Addr6,
    pub dst: Addr6,
    /// As received: the rewrite writes it less one.
    pub hop_limit: u8,
    /// The upper-layer protocol, after the extension headers (for a later
    /// fragment, the Fragment header's next header; for ESP and No Next
    /// Header, 50 and 59).
    pub protocol: u8,
    /// Offset of the upper-layer header (where the walk stopped).
    pub l4: usize,
    /// End of the IPv6 packet (14 + 40 + payload length): Ethernet padding
    /// after it is not part of the packet.
    pub end: usize,
    /// The Fragment header, if there is one.
    pub fragment: Option<Fragment6>,
    /// Whether any extension header sits between the fixed header and the
    /// upper layer (`l4` is past the fixed header): a fast path keyed on
    /// fixed offsets leaves such packets to this parser.
    pub extensions: bool,
    pub transport: Transport,
}

impl Frame6 {
    /// Source and destination ports (for ICMPv6 echo the identifier, as the
    /// source port of a request and the destination port of a reply), as
    /// [`super::Frame::ports`].
    pub fn ports(&self) -> (u16, u16) {
        self.transport.ports()
    }

    /// A TCP segment with SYN set (SYN or SYN-ACK).
    pub fn is_syn(&self) -> bool {
        matches!(self.transport, Transport::Tcp { flags, .. } if flags.syn)
    }
}

const MALFORMED: ParseOutcome = ParseOutcome::Drop(DropReason::Malformed);

/// Parses `frame`; anything that is not an untagged IPv6 packet a router
/// may forward past its link, with a well-formed header chain and upper
/// layer, becomes the verdict it leads to. Another ethertype gets the
/// verdict [`super::parse`] gives it (`Kernel(NotIpv4)` but for VLAN tags):
/// a caller tries `parse` first and this on IPv6 alone.
pub fn parse6(frame: &[u8]) -> Result<Frame6, ParseOutcome> {
    let ip = ethernet(frame)?;
    let end = packet_end(frame, &ip)?;
    let (src, dst) = (ip.src(), ip.dst());
    forwardable_scope(src, dst)?;
    let packet = frame.get(L3_OFFSET..end).ok_or(MALFORMED)?;
    let chain = walk(packet, ip.next_header(), Walk::Forward).map_err(ChainError::outcome)?;
    let l4 = L3_OFFSET + chain.l4;
    let segment = frame.get(l4..end).ok_or(MALFORMED)?;
    let first_fragment = chain.fragment.is_some_and(|f| f.more);
    let transport = match chain.upper {
        Upper::LaterFragment => Transport::Fragment,
        Upper::Opaque => Transport::Other {
            protocol: chain.protocol,
        },
        Upper::Header => upper_layer(chain.protocol, segment, first_fragment)?,
    };
    Ok(Frame6 {
        src_mac: ip.src_mac(),
        src,
        dst,
        hop_limit: ip.hop_limit(),
        protocol: chain.protocol,
        l4,
        end,
        fragment: chain.fragment,
        extensions: chain.extensions > 0,
        transport,
    })
}

/// The Ethernet rules: an untagged IPv6 frame to a unicast MAC, long enough
/// for the fixed header and of version 6.
fn ethernet(frame: &[u8]) -> Result<Ipv6Frame<&[u8]>, ParseOutcome> {
    let ether_type = get16(frame, field::ETH_TYPE.start).ok_or(MALFORMED)?;
    match ether_type {
        ETHERTYPE_IPV6 => {}
        tag if [
            EtherType::VLAN_TAGGED_FRAME,
            EtherType::PROVIDER_BRIDGING,
            EtherType::VLAN_DOUBLE_TAGGED_FRAME,
        ]
        .contains(&EtherType(tag)) =>
        {
            return Err(ParseOutcome::Kernel(KernelReason::Vlan))
        }
        _ => return Err(ParseOutcome::Kernel(KernelReason::NotIpv4)),
    }
    // The ethertype read means the destination MAC is there.
    if frame.first().is_some_and(|b| b & 1 != 0) {
        return Err(ParseOutcome::Kernel(KernelReason::Multicast));
    }
    let ip = Ipv6Frame::new_checked(frame).ok_or(MALFORMED)?;
    if ip.version() != 6 {
        return Err(MALFORMED);
    }
    Ok(ip)
}

/// The end of the IPv6 packet, which must lie within the frame (what is
/// after it is Ethernet padding).
fn packet_end(frame: &[u8], ip: &Ipv6Frame<&[u8]>) -> Result<usize, ParseOutcome> {
    let end = L3_OFFSET + field6::HEADER_LEN + usize::from(ip.payload_len());
    if end > frame.len() {
        return Err(MALFORMED);
    }
    Ok(end)
}

/// The scope rules: a multicast destination is the kernel's (MLD, ND, or a
/// group the router does not route); a link-local address on either side,
/// or an unspecified or loopback one, never leaves the link (RFC 4291 2.5),
/// and the kernel answers what of it is for the router (ND, DHCPv6).
pub(super) fn forwardable_scope(src: Addr6, dst: Addr6) -> Result<(), ParseOutcome> {
    if is_multicast6(dst) {
        return Err(ParseOutcome::Kernel(KernelReason::Multicast));
    }
    if [src, dst].into_iter().any(is_link_scope) {
        return Err(ParseOutcome::Kernel(KernelReason::LinkLocal));
    }
    Ok(())
}

/// Whether `addr` is multicast (ff00::/8): such a destination is the
/// kernel's to handle, and such a source is never answered with an error.
pub fn is_multicast6(addr: Addr6) -> bool {
    addr[0] == 0xff
}

/// fe80::/10, ::, ::1: addresses a router must not forward (RFC 4291).
fn is_link_scope(addr: Addr6) -> bool {
    let bits = u128::from_be_bytes(addr);
    let link_local = bits >> 118 == 0xfe80 >> 6;
    link_local || bits <= 1
}

/// How the chain is walked: for a packet to forward, a Hop-by-Hop header
/// ends the walk (the kernel's); in a quote it is passed over, since only
/// the tuple behind it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    Forward,
    Quote,
}

/// Where the walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upper {
    /// At an upper-layer header (TCP, UDP, ICMPv6, or any protocol).
    Header,
    /// At ESP or No Next Header: nothing readable follows.
    Opaque,
    /// After the Fragment header of a later fragment: data, no header.
    LaterFragment,
}

/// The extension header chain of one IPv6 packet, walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chain {
    /// The next header where the walk ended.
    pub protocol: u8,
    /// Where it ended, from the start of the IPv6 header.
    pub l4: usize,
    pub fragment: Option<Fragment6>,
    /// Extension headers walked.
    pub extensions: usize,
    pub upper: Upper,
}

/// Why the walk stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChainError {
    /// A Hop-by-Hop header while forwarding.
    HopByHop,
    /// A Routing header with segments left: the destination is a waypoint.
    Routing,
    /// More than [`MAX_EXTENSIONS`].
    TooMany,
    /// A header cut short, or a second Fragment header (RFC 8200 4.1 allows
    /// one; two leave no single meaning to the offsets).
    Malformed,
}

impl ChainError {
    /// The verdict a forwarded packet's chain leads to.
    fn outcome(self) -> ParseOutcome {
        match self {
            ChainError::HopByHop => ParseOutcome::Kernel(KernelReason::Ipv6HopByHop),
            ChainError::Routing => ParseOutcome::Kernel(KernelReason::Ipv6Routing),
            ChainError::TooMany => ParseOutcome::Drop(DropReason::Ipv6Extensions),
            ChainError::Malformed => MALFORMED,
        }
    }
}

/// Whether `next` is an extension header the walk passes over.
fn is_extension(next: u8) -> bool {
    matches!(
        next,
        NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_FRAGMENT | NEXT_AH | NEXT_DEST_OPTS
    )
}

/// The length of the extension header `next` whose length byte is `len`:
/// 8-byte units past the first 8 for most, 4-byte units less 2 for AH
/// (RFC 4302 2.2), fixed for the Fragment header.
fn extension_len(next: u8, len: u8) -> usize {
    match next {
        NEXT_FRAGMENT => field6::FRAGMENT_LEN,
        NEXT_AH => (usize::from(len) + 2) * 4,
        _ => (usize::from(len) + 1) * 8,
    }
}

/// Walks the extension headers of the IPv6 `packet` (from its fixed header
/// to its end, or as much of it as a quote holds), whose fixed header names
/// `first`, up to the upper layer.
pub(super) fn walk(packet: &[u8], first: u8, how: Walk) -> Result<Chain, ChainError> {
    let mut chain = Chain {
        protocol: first,
        l4: field6::HEADER_LEN,
        fragment: None,
        extensions: 0,
        upper: Upper::Header,
    };
    while is_extension(chain.protocol) {
        if chain.protocol == NEXT_HOP_BY_HOP && how == Walk::Forward {
            return Err(ChainError::HopByHop);
        }
        if chain.extensions == MAX_EXTENSIONS {
            return Err(ChainError::TooMany);
        }
        let at = chain.l4;
        let len_byte = *packet
            .get(at + field6::EXT_LEN)
            .ok_or(ChainError::Malformed)?;
        let len = extension_len(chain.protocol, len_byte);
        let header = packet.get(at..at + len).ok_or(ChainError::Malformed)?;
        let next = header[field6::EXT_NEXT_HEADER];
        match chain.protocol {
            NEXT_ROUTING if header[field6::ROUTING_SEGMENTS_LEFT] > 0 => {
                return Err(ChainError::Routing)
            }
            NEXT_FRAGMENT => {
                if chain.fragment.is_some() {
                    return Err(ChainError::Malformed);
                }
                let fragment = fragment_header(header);
                chain.fragment = Some(fragment);
                if fragment.is_later() {
                    chain.protocol = next;
                    chain.l4 = at + len;
                    chain.extensions += 1;
                    chain.upper = Upper::LaterFragment;
                    return Ok(chain);
                }
            }
            _ => {}
        }
        chain.protocol = next;
        chain.l4 = at + len;
        chain.extensions += 1;
    }
    if matches!(chain.protocol, NEXT_ESP | NEXT_NONE) {
        chain.upper = Upper::Opaque;
    }
    Ok(chain)
}

/// The fields of an 8-byte Fragment header.
fn fragment_header(header: &[u8]) -> Fragment6 {
    let word = get16(header, field6::FRAGMENT_OFFSET.start).unwrap_or(0);
    let mut id = [0; 4];
    if let Some(b) = header.get(field6::FRAGMENT_ID) {
        id.copy_from_slice(b);
    }
    Fragment6 {
        id: u32::from_be_bytes(id),
        offset: word >> 3,
        more: word & 1 != 0,
    }
}

/// The upper-layer header at the start of `segment` (which runs to the end
/// of the packet), read as far as the router cares. `first_fragment`: the
/// segment is only the start of what its headers count.
fn upper_layer(
    protocol: u8,
    segment: &[u8],
    first_fragment: bool,
) -> Result<Transport, ParseOutcome> {
    match protocol {
        PROTO_TCP => tcp(segment),
        PROTO_UDP => udp(segment, first_fragment),
        PROTO_ICMPV6 => icmp6(segment),
        _ => Ok(Transport::Other { protocol }),
    }
}

/// A TCP header, whole (options included).
fn tcp(segment: &[u8]) -> Result<Transport, ParseOutcome> {
    let tcp = TcpSegment::new_checked(segment).ok_or(MALFORMED)?;
    let flags = TcpFlags::from_byte(tcp.flags());
    // The payload is at most 65535 bytes: its length fits.
    let payload = u32::try_from(tcp.payload_len()).unwrap_or(u32::MAX);
    Ok(Transport::Tcp {
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        seq: tcp.seq(),
        seq_len: payload
            .saturating_add(u32::from(flags.syn))
            .saturating_add(u32::from(flags.fin)),
        flags,
    })
}

/// A UDP header whose length fits the packet (a first fragment holds only
/// part of the datagram its length counts), with a checksum: IPv6 makes it
/// mandatory (RFC 8200 8.1), so a datagram without one is dropped, as its
/// receiver would drop it.
fn udp(segment: &[u8], first_fragment: bool) -> Result<Transport, ParseOutcome> {
    let udp = UdpDatagram::new_checked(segment).ok_or(MALFORMED)?;
    let length = usize::from(udp.length());
    let fits = length <= segment.len() || first_fragment;
    if length < field::UDP_HEADER_LEN || !fits {
        return Err(MALFORMED);
    }
    if udp.checksum() == 0 {
        return Err(ParseOutcome::Drop(DropReason::UdpZeroChecksum6));
    }
    Ok(Transport::Udp {
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        checksum: udp.checksum(),
    })
}

/// An ICMPv6 header (8 bytes: every message the router reads has them).
fn icmp6(segment: &[u8]) -> Result<Transport, ParseOutcome> {
    let icmp = IcmpMessage::new_checked(segment).ok_or(MALFORMED)?;
    Ok(match (icmp.msg_type(), icmp.code()) {
        (icmp_type @ (ICMP6_ECHO_REQUEST | ICMP6_ECHO_REPLY), 0) => Transport::IcmpEcho {
            request: icmp_type == ICMP6_ECHO_REQUEST,
            id: icmp.echo_id(),
        },
        (
            icmp_type @ (ICMP6_DEST_UNREACHABLE
            | ICMP6_PACKET_TOO_BIG
            | ICMP6_TIME_EXCEEDED
            | ICMP6_PARAMETER_PROBLEM),
            code,
        ) => Transport::IcmpError { icmp_type, code },
        (icmp_type, _) => Transport::IcmpOther { icmp_type },
    })
}

impl Parsed for Frame6 {
    #[inline]
    fn end(&self) -> usize {
        self.end
    }
    #[inline]
    fn l4(&self) -> usize {
        self.l4
    }
    #[inline]
    fn transport(&self) -> Transport {
        self.transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test6::{
        addr, echo, ethernet, forwardable_exts, frame6, global_addr, icmp6, packet6, tcp, udp, Ext,
        HOST_MAC,
    };
    use crate::packet::wire::tcp_flag;
    use proptest::prelude::*;

    const SRC: &str = "2001:db8:1::10";
    const DST: &str = "2001:db8:2::20";

    fn udp_frame(exts: &[Ext]) -> Vec<u8> {
        frame6(
            addr(SRC),
            addr(DST),
            64,
            exts,
            PROTO_UDP,
            &udp(40000, 53, b"query"),
        )
    }

    fn kernel(reason: KernelReason) -> Result<Frame6, ParseOutcome> {
        Err(ParseOutcome::Kernel(reason))
    }

    fn dropped(reason: DropReason) -> Result<Frame6, ParseOutcome> {
        Err(ParseOutcome::Drop(reason))
    }

    #[test]
    fn parses_a_udp_datagram() {
        let mut frame = udp_frame(&[]);
        let check = u16::from_be_bytes([frame[60], frame[61]]);
        // Ethernet padding after the packet is not part of it.
        frame.extend_from_slice(&[0; 6]);
        let parsed = parse6(&frame).unwrap();
        assert_eq!(
            parsed,
            Frame6 {
                src_mac: HOST_MAC,
                src: addr(SRC),
                dst: addr(DST),
                hop_limit: 64,
                protocol: PROTO_UDP,
                l4: 54,
                end: 54 + 8 + 5,
                fragment: None,
                extensions: false,
                transport: Transport::Udp {
                    src_port: 40000,
                    dst_port: 53,
                    checksum: check
                },
            }
        );
        assert_eq!(parsed.ports(), (40000, 53));
        assert!(!parsed.is_syn());
    }

    #[test]
    fn parses_a_tcp_segment() {
        let frame = frame6(
            addr(SRC),
            addr(DST),
            3,
            &[],
            PROTO_TCP,
            &tcp(40000, 443, tcp_flag::SYN | tcp_flag::FIN, 1000, b"abc"),
        );
        let parsed = parse6(&frame).unwrap();
        assert_eq!(
            parsed.transport,
            Transport::Tcp {
                src_port: 40000,
                dst_port: 443,
                flags: TcpFlags {
                    syn: true,
                    ack: false,
                    fin: true,
                    rst: false
                },
                seq: 1000,
                seq_len: 5,
            }
        );
        assert_eq!((parsed.hop_limit, parsed.ports()), (3, (40000, 443)));
        assert!(parsed.is_syn());
    }

    #[test]
    fn icmpv6_types_map_to_echo_errors_and_others() {
        let cases = [
            (
                echo(true, 7, 1, b""),
                Transport::IcmpEcho {
                    request: true,
                    id: 7,
                },
            ),
            (
                echo(false, 7, 1, b""),
                Transport::IcmpEcho {
                    request: false,
                    id: 7,
                },
            ),
            (
                icmp6(128, 1, [0, 7, 0, 1], b""),
                Transport::IcmpOther { icmp_type: 128 },
            ),
            (
                icmp6(1, 4, [0; 4], b""),
                Transport::IcmpError {
                    icmp_type: 1,
                    code: 4,
                },
            ),
            (
                icmp6(2, 0, [0, 0, 5, 0], b""),
                Transport::IcmpError {
                    icmp_type: 2,
                    code: 0,
                },
            ),
            (
                icmp6(3, 1, [0; 4], b""),
                Transport::IcmpError {
                    icmp_type: 3,
                    code: 1,
                },
            ),
            (
                icmp6(4, 0, [0; 4], b""),
                Transport::IcmpError {
                    icmp_type: 4,
                    code: 0,
                },
            ),
            (
                icmp6(5, 0, [0; 4], b""),
                Transport::IcmpOther { icmp_type: 5 },
            ),
            (
                icmp6(135, 0, [0; 4], &[0; 16]),
                Transport::IcmpOther { icmp_type: 135 },
            ),
            (
                icmp6(143, 0, [0; 4], b""),
                Transport::IcmpOther { icmp_type: 143 },
            ),
            (
                icmp6(138, 0, [0; 4], b""),
                Transport::IcmpOther { icmp_type: 138 },
            ),
        ];
        for (message, transport) in cases {
            let frame = frame6(addr(SRC), addr(DST), 64, &[], PROTO_ICMPV6, &message);
            assert_eq!(parse6(&frame).map(|f| f.transport), Ok(transport));
        }
        let request = frame6(
            addr(SRC),
            addr(DST),
            64,
            &[],
            PROTO_ICMPV6,
            &echo(true, 7, 1, b""),
        );
        let reply = frame6(
            addr(SRC),
            addr(DST),
            64,
            &[],
            PROTO_ICMPV6,
            &echo(false, 7, 1, b""),
        );
        assert_eq!(parse6(&request).unwrap().ports(), (7, 0));
        assert_eq!(parse6(&reply).unwrap().ports(), (0, 7));
    }

    #[test]
    fn extension_headers_are_walked_to_the_upper_layer() {
        let exts = [
            Ext::DestOpts(1),
            Ext::Routing { segments_left: 0 },
            Ext::Fragment {
                offset: 0,
                more: true,
                id: 0xdead_beef,
            },
            Ext::Ah(4),
            Ext::DestOpts(0),
        ];
        let parsed = parse6(&udp_frame(&exts)).unwrap();
        // 16 + 24 + 8 + 24 + 8 bytes of extension headers.
        assert_eq!(parsed.l4, 54 + 80);
        assert_eq!(parsed.end, 54 + 80 + 13);
        assert_eq!(parsed.protocol, PROTO_UDP);
        assert!(parsed.extensions);
        assert_eq!(
            parsed.fragment,
            Some(Fragment6 {
                id: 0xdead_beef,
                offset: 0,
                more: true
            })
        );
        assert_eq!(parsed.ports(), (40000, 53));
    }

    #[test]
    fn a_later_fragment_has_no_upper_layer() {
        let fragment = Ext::Fragment {
            offset: 185,
            more: false,
            id: 9,
        };
        let frame = frame6(
            addr(SRC),
            addr(DST),
            64,
            &[Ext::DestOpts(0), fragment],
            PROTO_UDP,
            // Data: too short for a UDP header, and not read as one.
            b"tail",
        );
        let parsed = parse6(&frame).unwrap();
        assert_eq!(parsed.transport, Transport::Fragment);
        assert_eq!(
            (parsed.protocol, parsed.l4, parsed.end),
            (PROTO_UDP, 54 + 16, 54 + 20)
        );
        assert_eq!(
            parsed.fragment,
            Some(Fragment6 {
                id: 9,
                offset: 185,
                more: false
            })
        );
        assert!(parsed.fragment.unwrap().is_later());
        assert_eq!(parsed.ports(), (0, 0));
    }

    #[test]
    fn esp_and_no_next_header_end_the_walk() {
        for protocol in [NEXT_ESP, NEXT_NONE] {
            let frame = frame6(
                addr(SRC),
                addr(DST),
                64,
                &[Ext::DestOpts(0)],
                protocol,
                &[1; 3],
            );
            let parsed = parse6(&frame).unwrap();
            assert_eq!(parsed.transport, Transport::Other { protocol });
            assert_eq!((parsed.protocol, parsed.l4), (protocol, 62));
        }
        let frame = frame6(addr(SRC), addr(DST), 64, &[], 132, b"");
        assert_eq!(
            parse6(&frame).map(|f| f.transport),
            Ok(Transport::Other { protocol: 132 })
        );
    }

    #[test]
    fn other_ethertypes_are_the_ipv4_parser_s_verdicts() {
        let mut frame = udp_frame(&[]);
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse6(&frame), kernel(KernelReason::NotIpv4));
        for tag in [[0x81, 0x00], [0x88, 0xa8], [0x91, 0x00]] {
            frame[12..14].copy_from_slice(&tag);
            assert_eq!(parse6(&frame), kernel(KernelReason::Vlan));
        }
    }

    #[test]
    fn multicast_goes_to_the_kernel() {
        let mut frame = udp_frame(&[]);
        frame[0] = 0x33;
        assert_eq!(parse6(&frame), kernel(KernelReason::Multicast));
        let frame = frame6(
            addr(SRC),
            addr("ff02::1:ff00:20"),
            255,
            &[],
            PROTO_ICMPV6,
            &icmp6(135, 0, [0; 4], &[0; 16]),
        );
        assert_eq!(parse6(&frame), kernel(KernelReason::Multicast));
        let frame = frame6(
            addr("fe80::1"),
            addr("ff0e::1"),
            64,
            &[],
            PROTO_UDP,
            &udp(1, 2, b""),
        );
        assert_eq!(parse6(&frame), kernel(KernelReason::Multicast));
    }

    #[test]
    fn link_scope_addresses_go_to_the_kernel() {
        let cases = [
            ("fe80::1", DST),
            (SRC, "fe80::1"),
            ("febf:ffff::1", DST),
            ("::", DST),
            ("::1", DST),
            (SRC, "::1"),
            (SRC, "::"),
        ];
        for (src, dst) in cases {
            let frame = frame6(
                addr(src),
                addr(dst),
                64,
                &[],
                PROTO_UDP,
                &udp(546, 547, b""),
            );
            assert_eq!(
                parse6(&frame),
                kernel(KernelReason::LinkLocal),
                "{src} -> {dst}"
            );
        }
        // fec0::/10 (deprecated site-local) is not link-local.
        let frame = frame6(
            addr("fec0::1"),
            addr(DST),
            64,
            &[],
            PROTO_UDP,
            &udp(1, 2, b""),
        );
        assert!(parse6(&frame).is_ok());
    }

    #[test]
    fn hop_by_hop_and_source_routing_go_to_the_kernel() {
        assert_eq!(
            parse6(&udp_frame(&[Ext::HopByHop])),
            kernel(KernelReason::Ipv6HopByHop)
        );
        // Out of place too (RFC 8200 forbids it; the kernel answers it).
        assert_eq!(
            parse6(&udp_frame(&[Ext::DestOpts(0), Ext::HopByHop])),
            kernel(KernelReason::Ipv6HopByHop)
        );
        assert_eq!(
            parse6(&udp_frame(&[Ext::Routing { segments_left: 1 }])),
            kernel(KernelReason::Ipv6Routing)
        );
        assert!(parse6(&udp_frame(&[Ext::Routing { segments_left: 0 }])).is_ok());
    }

    #[test]
    fn more_than_eight_extension_headers_are_dropped() {
        let eight = [Ext::DestOpts(0); MAX_EXTENSIONS];
        assert!(parse6(&udp_frame(&eight)).is_ok());
        let nine = [Ext::DestOpts(0); MAX_EXTENSIONS + 1];
        assert_eq!(
            parse6(&udp_frame(&nine)),
            dropped(DropReason::Ipv6Extensions)
        );
    }

    #[test]
    fn a_second_fragment_header_is_malformed() {
        let fragment = Ext::Fragment {
            offset: 0,
            more: true,
            id: 1,
        };
        assert_eq!(
            parse6(&udp_frame(&[fragment, fragment])),
            dropped(DropReason::Malformed)
        );
    }

    #[test]
    fn a_wrong_version_or_length_is_malformed() {
        let mut frame = udp_frame(&[]);
        frame[14] = 0x40;
        assert_eq!(parse6(&frame), dropped(DropReason::Malformed));
        let mut frame = udp_frame(&[]);
        frame[19] += 1;
        assert_eq!(parse6(&frame), dropped(DropReason::Malformed));
    }

    #[test]
    fn every_truncation_is_malformed() {
        let frames = [
            udp_frame(&[
                Ext::DestOpts(1),
                Ext::Ah(3),
                Ext::Routing { segments_left: 0 },
            ]),
            frame6(
                addr(SRC),
                addr(DST),
                64,
                &[Ext::DestOpts(0)],
                PROTO_TCP,
                &tcp(1, 2, 0x10, 0, b""),
            ),
            frame6(
                addr(SRC),
                addr(DST),
                64,
                &[],
                PROTO_ICMPV6,
                &echo(true, 1, 1, b""),
            ),
        ];
        for frame in frames {
            for cut in 0..frame.len() {
                assert_eq!(
                    parse6(&frame[..cut]),
                    dropped(DropReason::Malformed),
                    "{cut}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_of_the_headers_within_the_payload_length_is_malformed() {
        // The payload length says the packet ends inside a header.
        let packet = packet6(
            addr(SRC),
            addr(DST),
            64,
            &[
                Ext::DestOpts(1),
                Ext::Fragment {
                    offset: 0,
                    more: false,
                    id: 1,
                },
                Ext::Ah(3),
            ],
            PROTO_TCP,
            &tcp(1, 2, 0x10, 0, b""),
        );
        for payload_len in 0..packet.len() - 40 {
            let mut packet = packet.clone();
            packet[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
            assert_eq!(
                parse6(&ethernet(&packet)),
                dropped(DropReason::Malformed),
                "{payload_len}"
            );
        }
    }

    #[test]
    fn a_udp_length_past_the_packet_is_malformed_but_not_in_a_first_fragment() {
        let mut datagram = udp(1, 2, b"abcd");
        datagram[4..6].copy_from_slice(&20u16.to_be_bytes());
        let frame = frame6(addr(SRC), addr(DST), 64, &[], PROTO_UDP, &datagram);
        assert_eq!(parse6(&frame), dropped(DropReason::Malformed));
        let first = Ext::Fragment {
            offset: 0,
            more: true,
            id: 1,
        };
        let frame = frame6(addr(SRC), addr(DST), 64, &[first], PROTO_UDP, &datagram);
        assert!(parse6(&frame).is_ok());
        datagram[4..6].copy_from_slice(&7u16.to_be_bytes());
        let frame = frame6(addr(SRC), addr(DST), 64, &[first], PROTO_UDP, &datagram);
        assert_eq!(parse6(&frame), dropped(DropReason::Malformed));
    }

    #[test]
    fn udp_without_a_checksum_is_dropped() {
        let mut frame = udp_frame(&[]);
        frame[60..62].fill(0);
        assert_eq!(parse6(&frame), dropped(DropReason::UdpZeroChecksum6));
    }

    #[test]
    fn a_tcp_header_cut_inside_its_options_is_malformed() {
        let mut segment = tcp(1, 2, 0x10, 0, &[1, 1, 1, 1]);
        segment[12] = 7 << 4;
        let frame = frame6(addr(SRC), addr(DST), 64, &[], PROTO_TCP, &segment);
        assert_eq!(parse6(&frame), dropped(DropReason::Malformed));
    }

    proptest! {
        /// Random bytes never make the parser panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse6(&bytes);
            let mut frame = bytes;
            if frame.len() >= 15 {
                // Mostly IPv6 of version 6, to get past the first checks.
                frame[12] = 0x86;
                frame[13] = 0xdd;
                frame[0] &= 0xfe;
                frame[14] = 0x60 | (frame[14] & 0x0f);
            }
            let _ = parse6(&frame);
        }

        /// A valid frame with random bytes changed never makes it panic,
        /// and the offsets of anything parsed lie within the frame.
        #[test]
        fn mutated_frames_never_panic(src in global_addr(), dst in global_addr(),
                                      exts in forwardable_exts(),
                                      changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                                      cut in any::<usize>()) {
            let mut frame = frame6(src, dst, 64, &exts, PROTO_TCP, &tcp(1, 2, 0x12, 3, b"data"));
            for (at, byte) in changes {
                let at = 14 + at % (frame.len() - 14);
                frame[at] = byte;
            }
            let len = frame.len() - cut % 8;
            if let Ok(parsed) = parse6(&frame[..len]) {
                prop_assert!(parsed.l4 <= parsed.end && parsed.end <= len);
            }
        }

        /// Every forwardable chain parses, to the upper layer it ends at.
        #[test]
        fn forwardable_chains_parse(src in global_addr(), dst in global_addr(), exts in forwardable_exts(),
                                    src_port in any::<u16>(), dst_port in any::<u16>()) {
            let frame = frame6(src, dst, 64, &exts, PROTO_UDP, &udp(src_port, dst_port, b"x"));
            let parsed = parse6(&frame).unwrap();
            prop_assert_eq!(parsed.ports(), (src_port, dst_port));
            prop_assert_eq!(parsed.extensions, !exts.is_empty());
            prop_assert_eq!(parsed.l4, frame.len() - 9);
            prop_assert_eq!(parsed.end, frame.len());
        }
    }
}

//! Parsing a frame into the few fields the router decides on, with etherparse's
//! borrowed slices. The result is a plain copy ([`Frame`]): the router decides on
//! it and rewrites the buffer by offset afterwards.

use etherparse::{
    EtherType, Ethernet2HeaderSlice, Icmpv4Slice, IpNumber, Ipv4HeaderSlice, TcpHeaderSlice,
    UdpHeaderSlice,
};

use super::checksum;
use crate::verdict::{DropReason, KernelReason};

/// Offset of the IPv4 header: right after an untagged Ethernet II header.
pub const L3_OFFSET: usize = 14;

/// TCP flags the router looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// The transport layer as far as the router cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
        /// Sequence number.
        seq: u32,
        /// Sequence space the segment takes: payload bytes, plus one each for SYN and FIN.
        seq_len: u32,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        /// 0: the sender sent no checksum.
        checksum: u16,
    },
    /// ICMP echo request (type 8) or reply (type 0).
    IcmpEcho { request: bool, id: u16 },
    /// An ICMP error that quotes the packet it is about: destination
    /// unreachable (3), time exceeded (11) or parameter problem (12).
    IcmpError { icmp_type: u8, code: u8 },
    /// Any other ICMP message.
    IcmpOther { icmp_type: u8 },
    /// Another IP protocol.
    Other { protocol: u8 },
    /// A fragment other than the first: no transport header.
    Fragment,
}

/// Where a packet stands in fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragmentation {
    /// Not a fragment.
    Whole,
    /// Offset 0 with more fragments to come: carries the transport header.
    First,
    /// A later fragment: carries none.
    Later,
}

/// What could not be parsed, as the verdict it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseOutcome {
    Kernel(KernelReason),
    Drop(DropReason),
}

impl Transport {
    /// Source and destination ports (for ICMP echo, of either family, the
    /// identifier, as the source port of a request and the destination port
    /// of a reply).
    pub fn ports(&self) -> (u16, u16) {
        match *self {
            Transport::Tcp {
                src_port, dst_port, ..
            }
            | Transport::Udp {
                src_port, dst_port, ..
            } => (src_port, dst_port),
            Transport::IcmpEcho { request: true, id } => (id, 0),
            Transport::IcmpEcho { request: false, id } => (0, id),
            Transport::IcmpError { .. }
            | Transport::IcmpOther { .. }
            | Transport::Other { .. }
            | Transport::Fragment => (0, 0),
        }
    }
}

impl TcpFlags {
    /// The flags the router looks at, from a TCP header's flags byte.
    pub fn from_byte(flags: u8) -> TcpFlags {
        use super::wire::tcp_flag;
        TcpFlags {
            syn: flags & tcp_flag::SYN != 0,
            ack: flags & tcp_flag::ACK != 0,
            fin: flags & tcp_flag::FIN != 0,
            rst: flags & tcp_flag::RST != 0,
        }
    }
}

/// An untagged Ethernet II frame carrying an IPv4 packet, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub src_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub protocol: u8,
    /// The IP identification field (what groups fragments).
    pub ip_id: u16,
    /// The don't-fragment flag.
    pub dont_fragment: bool,
    pub fragmentation: Fragmentation,
    /// Offset of the transport header (from the IHL: after any IP options).
    pub l4: usize,
    /// End of the IP packet (Ethernet padding after it is not part of the packet).
    pub end: usize,
    pub transport: Transport,
}

impl Frame {
    /// Source and destination ports (for ICMP echo the identifier, as the
    /// source port of a request and the destination port of a reply).
    pub fn ports(&self) -> (u16, u16) {
        self.transport.ports()
    }

    /// A TCP segment with SYN set (SYN or SYN-ACK).
    pub fn is_syn(&self) -> bool {
        matches!(self.transport, Transport::Tcp { flags, .. } if flags.syn)
    }
}

/// What the flow layer records of any parsed frame, IPv4 or IPv6.
pub trait Parsed {
    /// End of the IP packet in the frame (its length on the wire).
    fn end(&self) -> usize;
    /// Offset of the transport header.
    fn l4(&self) -> usize;
    fn transport(&self) -> Transport;
}

impl Parsed for Frame {
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

/// ICMP types that are errors quoting a packet.
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// IP protocol numbers the router translates.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Parses `frame`; anything that is not untagged IPv4 unicast with a valid
/// header becomes the verdict it leads to.
pub fn parse(frame: &[u8]) -> Result<Frame, ParseOutcome> {
    let eth = Ethernet2HeaderSlice::from_slice(frame)
        .map_err(|_| ParseOutcome::Drop(DropReason::Malformed))?;
    let dst_mac = eth.destination();
    match eth.ether_type() {
        EtherType::IPV4 => {}
        EtherType::VLAN_TAGGED_FRAME
        | EtherType::PROVIDER_BRIDGING
        | EtherType::VLAN_DOUBLE_TAGGED_FRAME => {
            return Err(ParseOutcome::Kernel(KernelReason::Vlan))
        }
        _ => return Err(ParseOutcome::Kernel(KernelReason::NotIpv4)),
    }
    if dst_mac[0] & 1 != 0 {
        return Err(ParseOutcome::Kernel(KernelReason::Multicast));
    }
    let ip_bytes = &frame[L3_OFFSET..];
    let ip = Ipv4HeaderSlice::from_slice(ip_bytes)
        .map_err(|_| ParseOutcome::Drop(DropReason::Malformed))?;
    let header_len = ip.slice().len();
    let total_len = usize::from(ip.total_len());
    if total_len < header_len || total_len > ip_bytes.len() {
        return Err(ParseOutcome::Drop(DropReason::Malformed));
    }
    if checksum::fold(checksum::sum_bytes(0, ip.slice())) != 0xffff {
        return Err(ParseOutcome::Drop(DropReason::BadIpChecksum));
    }
    let dst = ip.destination();
    if dst[0] >= 224 {
        return Err(ParseOutcome::Kernel(KernelReason::Multicast));
    }
    let fragmentation = match (ip.fragments_offset().value(), ip.more_fragments()) {
        (0, false) => Fragmentation::Whole,
        (0, true) => Fragmentation::First,
        _ => Fragmentation::Later,
    };
    let l4 = L3_OFFSET + header_len;
    let end = L3_OFFSET + total_len;
    let payload = &frame[l4..end];
    let protocol = ip.protocol().0;
    let transport = match ip.protocol() {
        _ if fragmentation == Fragmentation::Later => Transport::Fragment,
        IpNumber::TCP => {
            let tcp = TcpHeaderSlice::from_slice(payload)
                .map_err(|_| ParseOutcome::Drop(DropReason::Malformed))?;
            Transport::Tcp {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                flags: TcpFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                },
                seq: tcp.sequence_number(),
                seq_len: (payload.len() - tcp.slice().len()) as u32
                    + u32::from(tcp.syn())
                    + u32::from(tcp.fin()),
            }
        }
        IpNumber::UDP => {
            let udp = UdpHeaderSlice::from_slice(payload)
                .map_err(|_| ParseOutcome::Drop(DropReason::Malformed))?;
            let length = usize::from(udp.length());
            // A first fragment holds only part of the datagram its length counts.
            let fits = length <= payload.len() || fragmentation == Fragmentation::First;
            if length < 8 || !fits {
                return Err(ParseOutcome::Drop(DropReason::Malformed));
            }
            Transport::Udp {
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
                checksum: udp.checksum(),
            }
        }
        IpNumber::ICMP => {
            let icmp = Icmpv4Slice::from_slice(payload)
                .map_err(|_| ParseOutcome::Drop(DropReason::Malformed))?;
            let [id_hi, id_lo, _, _] = icmp.bytes5to8();
            match icmp.type_u8() {
                0 | 8 if icmp.code_u8() == 0 => Transport::IcmpEcho {
                    request: icmp.type_u8() == 8,
                    id: u16::from_be_bytes([id_hi, id_lo]),
                },
                icmp_type @ (ICMP_DEST_UNREACHABLE
                | ICMP_TIME_EXCEEDED
                | ICMP_PARAMETER_PROBLEM) => Transport::IcmpError {
                    icmp_type,
                    code: icmp.code_u8(),
                },
                icmp_type => Transport::IcmpOther { icmp_type },
            }
        }
        _ => Transport::Other { protocol },
    };
    Ok(Frame {
        src_mac: eth.source(),
        src: ip.source(),
        dst,
        ttl: ip.ttl(),
        protocol,
        ip_id: ip.identification(),
        dont_fragment: ip.dont_fragment(),
        fragmentation,
        l4,
        end,
        transport,
    })
}

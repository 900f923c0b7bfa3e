//! Health probes on the wire, sent as whole Ethernet frames on an uplink's
//! interface, to its gateway's MAC and from its address (so a probe provably
//! takes that uplink, whatever the kernel's routes say, and needs no route
//! at all): ICMP echo requests, TCP SYNs (answered by a SYN-ACK or an RST;
//! a SYN-ACK gets an RST from us so the target keeps no half-open
//! connection) and DNS queries over UDP, over IPv4 or IPv6 (ICMPv6 echo,
//! from the uplink's IPv6 address to its IPv6 gateway's MAC). The answers
//! are read from raw sockets of the target's family bound to the interface,
//! one per protocol probed (an ICMPv6 one passes echo replies alone).
//!
//! A probe's echo identifier or source port lies outside the NAT range, so
//! the XDP program and the packet backend's nftables rules (`table ip xwan`,
//! `table ip6 xwan`) leave its answers to the kernel, where the raw sockets
//! see them. A TCP probe's sequence number and a DNS query's identifier
//! carry the probe's sequence.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, Icmpv6Slice, Icmpv6Type, NetSlice, PacketBuilder,
    PacketBuilderStep, SlicedPacket, TcpSlice, TransportSlice, UdpSlice,
};

use crate::config::{PortRange, ProbeTarget};
use crate::health::Answer;
use crate::io::sys;

/// The echo identifier (and TCP and UDP source port) of uplink `uplink`'s
/// probes: just above the NAT range, or just below it when the range ends at
/// 65535.
pub fn probe_id(nat: PortRange, uplink: u8) -> u16 {
    let above = u32::from(nat.hi) + 1 + u32::from(uplink);
    match u16::try_from(above) {
        Ok(id) => id,
        Err(_) => nat.lo.saturating_sub(1 + u16::from(uplink)),
    }
}

/// The low half of a TCP probe's sequence number ("xw"); the high half is the
/// probe's sequence.
const TCP_MAGIC: u32 = 0x7877;

/// `ICMP6_FILTER` (linux/icmpv6.h), at level `IPPROTO_ICMPV6`.
const ICMP6_FILTER: libc::c_int = 1;

/// ICMPv6 echo reply's type.
const ICMPV6_ECHO_REPLY: u8 = 129;

/// Where a probe frame goes from: the uplink's MAC and address (of the
/// family probed), the gateway's MAC (of that family) and the probe id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub id: u16,
}

/// The frame etherparse's `builder` (at its transport step) makes around `payload`.
macro_rules! frame {
    ($builder:expr, $payload:expr $(,)?) => {{
        let builder = $builder;
        let payload: &[u8] = $payload;
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut frame, payload)
            .expect("writing to a Vec cannot fail");
        frame
    }};
}

impl Origin {
    /// The IP step towards `dst`; None when `dst` is not of `src`'s family.
    fn builder(&self, dst: IpAddr) -> Option<PacketBuilderStep<etherparse::IpHeaders>> {
        let ethernet = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        match (self.src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                Some(ethernet.ipv4(src.octets(), dst.octets(), 64))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                Some(ethernet.ipv6(src.octets(), dst.octets(), 64))
            }
            _ => None,
        }
    }

    /// The frame probing `target` with sequence `seq`; None when the target
    /// is not of the origin's family.
    pub fn probe_frame(&self, target: &ProbeTarget, seq: u16) -> Option<Vec<u8>> {
        let builder = self.builder(target.addr())?;
        let echo = IcmpEchoHeader { id: self.id, seq };
        Some(match target {
            ProbeTarget::Icmp(IpAddr::V4(_)) => {
                frame!(builder.icmpv4(Icmpv4Type::EchoRequest(echo)), b"xwan-probe",)
            }
            ProbeTarget::Icmp(IpAddr::V6(_)) => {
                frame!(builder.icmpv6(Icmpv6Type::EchoRequest(echo)), b"xwan-probe",)
            }
            ProbeTarget::Tcp(addr) => frame!(
                builder.tcp(self.id, addr.port(), tcp_isn(seq), 1024).syn(),
                &[]
            ),
            ProbeTarget::Dns { name, .. } => {
                frame!(builder.udp(self.id, 53), &dns_query(seq, name))
            }
        })
    }

    /// The RST that closes what a SYN-ACK from `from` (acknowledging `ack`)
    /// opened; None when `from` is not of the origin's family.
    pub fn reset_frame(&self, from: SocketAddr, ack: u32) -> Option<Vec<u8>> {
        let builder = self.builder(from.ip())?;
        Some(frame!(builder.tcp(self.id, from.port(), ack, 0).rst(), &[]))
    }
}

fn tcp_isn(seq: u16) -> u32 {
    u32::from(seq) << 16 | TCP_MAGIC
}

/// A DNS query (RFC 1035) with identifier `id` for the A records of `name`,
/// recursion desired (over IPv6 too: any response answers).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A probe's answer seen by a raw socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub answer: Answer,
    /// The echo identifier, or the port the answer was sent to.
    pub id: u16,
    pub seq: u16,
    /// A SYN-ACK's acknowledgement number, which our RST must carry.
    pub syn_ack: Option<u32>,
}

/// Reads a probe's answer out of an IPv4 packet (as a raw socket returns it):
/// an echo reply, a SYN-ACK or RST to a TCP probe, a DNS response.
pub fn parse_reply(packet: &[u8]) -> Option<Reply> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let Some(NetSlice::Ipv4(ip)) = sliced.net else {
        return None;
    };
    answer_from(ip.header().source_addr().into(), sliced.transport?)
}

/// Reads a probe's answer out of what a raw IPv6 socket of `protocol`
/// returns (the transport header on, no IPv6 header), sent from `from`.
pub fn parse_reply6(from: Ipv6Addr, protocol: libc::c_int, payload: &[u8]) -> Option<Reply> {
    let transport = match protocol {
        libc::IPPROTO_ICMPV6 => TransportSlice::Icmpv6(Icmpv6Slice::from_slice(payload).ok()?),
        libc::IPPROTO_TCP => TransportSlice::Tcp(TcpSlice::from_slice(payload).ok()?),
        libc::IPPROTO_UDP => TransportSlice::Udp(UdpSlice::from_slice(payload).ok()?),
        _ => return None,
    };
    answer_from(from.into(), transport)
}

/// The answer `transport`, from `from`, gives to a probe, if it is one.
fn answer_from(from: IpAddr, transport: TransportSlice<'_>) -> Option<Reply> {
    let echo = |echo: IcmpEchoHeader| Reply {
        answer: Answer::Icmp(from),
        id: echo.id,
        seq: echo.seq,
        syn_ack: None,
    };
    match transport {
        TransportSlice::Icmpv4(icmp) => match icmp.icmp_type() {
            Icmpv4Type::EchoReply(reply) => Some(echo(reply)),
            _ => None,
        },
        TransportSlice::Icmpv6(icmp) => match icmp.icmp_type() {
            Icmpv6Type::EchoReply(reply) => Some(echo(reply)),
            _ => None,
        },
        TransportSlice::Tcp(tcp) => {
            let ack = tcp.acknowledgment_number().wrapping_sub(1);
            let answered = (tcp.syn() && tcp.ack()) || (tcp.rst() && tcp.ack());
            (answered && ack & 0xffff == TCP_MAGIC).then(|| Reply {
                answer: Answer::Tcp(SocketAddr::new(from, tcp.source_port())),
                id: tcp.destination_port(),
                seq: (ack >> 16) as u16,
                syn_ack: tcp.syn().then(|| tcp.acknowledgment_number()),
            })
        }
        TransportSlice::Udp(udp) => {
            let dns = udp.payload();
            let response = dns.len() >= 12 && dns[2] & 0x80 != 0;
            (udp.source_port() == 53 && response).then(|| Reply {
                answer: Answer::Dns(from),
                id: udp.destination_port(),
                seq: u16::from_be_bytes([dns[0], dns[1]]),
                syn_ack: None,
            })
        }
        _ => None,
    }
}

/// An AF_PACKET socket that sends whole Ethernet frames on one interface:
/// health probes on an uplink, and the RSTs of a failover on the LAN.
pub struct FrameSocket {
    ifindex: u32,
    fd: OwnedFd,
}

/// The sockets of one uplink's prober: frames out, and a raw socket per
/// protocol its targets answer with.
pub struct ProbeSocket {
    send: FrameSocket,
    recv: Vec<RawSocket>,
}

/// A raw socket reading one protocol's answers of one family.
struct RawSocket {
    fd: OwnedFd,
    /// The protocol, on an AF_INET6 socket; None on an AF_INET one (whose
    /// packets carry their IPv4 header).
    ipv6: Option<libc::c_int>,
}

impl FrameSocket {
    /// A send-only socket for the interface with index `ifindex` (protocol 0:
    /// it receives nothing).
    pub fn open(ifindex: u32) -> io::Result<FrameSocket> {
        let fd = sys::socket::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)?;
        Ok(FrameSocket { ifindex, fd })
    }

    /// Sends one whole Ethernet frame on the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shorter than an Ethernet header",
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&frame[..6]);
        sys::socket::send_to_link(&self.fd, frame, self.ifindex, mac).map(drop)
    }
}

impl ProbeSocket {
    /// Opens the sockets for the interface `name` (index `ifindex`) that
    /// the answers to `targets` need, of both families.
    pub fn open(name: &str, ifindex: u32, targets: &[ProbeTarget]) -> io::Result<ProbeSocket> {
        let send = FrameSocket::open(ifindex)?;
        let mut kinds: Vec<(bool, libc::c_int)> = targets
            .iter()
            .map(|t| {
                let protocol = match t {
                    ProbeTarget::Icmp(IpAddr::V4(_)) => libc::IPPROTO_ICMP,
                    ProbeTarget::Icmp(IpAddr::V6(_)) => libc::IPPROTO_ICMPV6,
                    ProbeTarget::Tcp(_) => libc::IPPROTO_TCP,
                    ProbeTarget::Dns { .. } => libc::IPPROTO_UDP,
                };
                (t.is_ipv6(), protocol)
            })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let recv = kinds
            .into_iter()
            .map(|(ipv6, protocol)| {
                let domain = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
                let fd = sys::socket::socket(
                    domain,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    protocol,
                )?;
                sys::socket::setsockopt(
                    &fd,
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    name.as_bytes(),
                )?;
                if protocol == libc::IPPROTO_ICMPV6 {
                    sys::socket::setsockopt(
                        &fd,
                        libc::IPPROTO_ICMPV6,
                        ICMP6_FILTER,
                        &echo_replies_only(),
                    )?;
                }
                Ok(RawSocket {
                    fd,
                    ipv6: ipv6.then_some(protocol),
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(ProbeSocket { send, recv })
    }

    /// Sends one whole Ethernet frame on the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.send.send(frame)
    }

    /// Waits until one of `sockets` has an answer to read, or `timeout` passes.
    pub fn wait(sockets: &[&ProbeSocket], timeout: std::time::Duration) {
        let mut fds: Vec<sys::poll::PollFd> = sockets
            .iter()
            .flat_map(|s| s.recv.iter().map(|r| sys::poll::readable(r.fd.as_raw_fd())))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        // An error (EINTR) only ends the wait early; the caller reads what is there.
        let _ = sys::poll::poll(&mut fds, timeout);
    }

    /// Every answer waiting (never blocks).
    pub fn recv(&self) -> Vec<Reply> {
        let mut buf = [0u8; 1500];
        let mut replies = Vec::new();
        for socket in &self.recv {
            loop {
                let (n, reply) = match socket.ipv6 {
                    None => match sys::socket::recv(&socket.fd, &mut buf, libc::MSG_DONTWAIT) {
                        Ok(n) => (n, parse_reply(&buf[..n])),
                        Err(_) => break,
                    },
                    Some(protocol) => {
                        match sys::socket::recv_from6(&socket.fd, &mut buf, libc::MSG_DONTWAIT) {
                            Ok((n, from)) => (n, parse_reply6(from, protocol, &buf[..n])),
                            Err(_) => break,
                        }
                    }
                };
                if n == 0 {
                    break;
                }
                replies.extend(reply);
            }
        }
        replies
    }
}

/// The `struct icmp6_filter` that passes echo replies alone (a set bit
/// blocks its type).
fn echo_replies_only() -> [u32; 8] {
    let mut filter = [u32::MAX; 8];
    filter[usize::from(ICMPV6_ECHO_REPLY >> 5)] &= !(1 << (ICMPV6_ECHO_REPLY & 31));
    filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn probe_ids_stay_out_of_the_nat_range() {
        let nat = PortRange {
            lo: 20000,
            hi: 59999,
        };
        assert_eq!(probe_id(nat, 0), 60000);
        assert_eq!(probe_id(nat, 1), 60001);
        let top = PortRange {
            lo: 1024,
            hi: 65535,
        };
        assert_eq!(probe_id(top, 0), 1023);
        assert!(!top.contains(probe_id(top, 3)));
    }

    fn origin() -> Origin {
        Origin {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src: Ipv4Addr::new(198, 18, 1, 2).into(),
            id: 60000,
        }
    }

    /// The IPv4 packet of `frame` as its target would send it back: addresses
    /// swapped (the checksums stay valid: the sum is the same).
    fn turned(frame: &[u8]) -> Vec<u8> {
        let mut packet = frame[14..].to_vec();
        for i in 12..16 {
            packet.swap(i, i + 4);
        }
        packet
    }

    #[test]
    fn echo_frame_round_trips_through_the_reply_parser() {
        let target = IpAddr::from(Ipv4Addr::new(198, 18, 11, 2));
        let frame = origin().probe_frame(&ProbeTarget::Icmp(target), 7).unwrap();
        crate::testing::check(&frame).expect("valid checksums");
        assert!(parse_reply(&frame[14..]).is_none(), "a request is no reply");
        let mut reply = turned(&frame);
        reply[20] = 0;
        let reply = parse_reply(&reply).unwrap();
        assert_eq!((reply.id, reply.seq), (60000, 7));
        assert_eq!(reply.answer, Answer::Icmp(target));
    }

    #[test]
    fn tcp_probe_is_answered_by_syn_ack_or_rst_and_reset_after() {
        let target = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 18, 11, 2), 443));
        let frame = origin()
            .probe_frame(&ProbeTarget::Tcp(target), 513)
            .unwrap();
        crate::testing::check(&frame).expect("valid checksums");
        assert!(parse_reply(&frame[14..]).is_none(), "a SYN is no answer");
        // The target's SYN-ACK: ports swapped, ack = our sequence + 1.
        let mut answer = turned(&frame);
        let tcp = 20;
        for i in 0..2 {
            answer.swap(tcp + i, tcp + 2 + i);
        }
        let isn = u32::from_be_bytes(answer[tcp + 4..tcp + 8].try_into().unwrap());
        answer[tcp + 8..tcp + 12].copy_from_slice(&(isn + 1).to_be_bytes());
        answer[tcp + 13] = 0x12;
        let reply = parse_reply(&answer).unwrap();
        assert_eq!(reply.answer, Answer::Tcp(target));
        assert_eq!(
            (reply.id, reply.seq, reply.syn_ack),
            (60000, 513, Some(isn + 1))
        );
        answer[tcp + 13] = 0x14;
        let reply = parse_reply(&answer).unwrap();
        assert_eq!(
            (reply.seq, reply.syn_ack),
            (513, None),
            "an RST answers too"
        );
        // Anything else to that port is no answer: another sequence's magic.
        answer[tcp + 8..tcp + 12].copy_from_slice(&1234u32.to_be_bytes());
        assert!(parse_reply(&answer).is_none());
        let rst = origin().reset_frame(target, isn + 1).unwrap();
        crate::testing::check(&rst).expect("valid checksums");
        assert_eq!(rst[14 + tcp + 13], 0x04);
    }

    #[test]
    fn dns_probe_is_a_real_query_answered_by_a_response() {
        let probe = ProbeTarget::Dns {
            server: Ipv4Addr::new(198, 18, 11, 2).into(),
            name: "example.com".into(),
        };
        let frame = origin().probe_frame(&probe, 9).unwrap();
        crate::testing::check(&frame).expect("valid checksums");
        let dns = &frame[14 + 28..];
        assert_eq!(&dns[..4], &[0, 9, 0x01, 0x00], "id 9, recursion desired");
        assert_eq!(&dns[12..], b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert!(
            parse_reply(&frame[14..]).is_none(),
            "a query is no response"
        );
        let mut answer = turned(&frame);
        for i in 0..2 {
            answer.swap(20 + i, 22 + i);
        }
        answer[28 + 2] |= 0x80;
        answer[26..28].copy_from_slice(&[0, 0]);
        let reply = parse_reply(&answer).unwrap();
        assert_eq!(
            reply.answer,
            Answer::Dns(Ipv4Addr::new(198, 18, 11, 2).into())
        );
        assert_eq!((reply.id, reply.seq), (60000, 9));
    }

    /// Whether the transport checksum of an IPv6 frame is right: the
    /// pseudo-header and the segment, checksum included, sum to 0xffff.
    fn checksum6_ok(frame: &[u8]) -> bool {
        use crate::packet::checksum::{fold, pseudo_header_sum6, sum_bytes};
        let ip = &frame[14..14 + 40];
        let segment = &frame[14 + 40..];
        let (src, dst) = (
            ip[8..24].try_into().unwrap(),
            ip[24..40].try_into().unwrap(),
        );
        let sum = pseudo_header_sum6(src, dst, ip[6], segment.len() as u32);
        fold(sum_bytes(sum, segment)) == 0xffff
    }

    fn origin6() -> Origin {
        Origin {
            src: "2001:db8:1::2".parse::<Ipv6Addr>().unwrap().into(),
            ..origin()
        }
    }

    /// What a raw IPv6 socket returns of the answer to `frame` (an IPv6
    /// probe): its transport part with the ports swapped (the checksum is
    /// the kernel's business, unread here), and the address it came from.
    fn turned6(frame: &[u8], ports: bool) -> (Ipv6Addr, Vec<u8>) {
        assert_eq!(&frame[12..14], &[0x86, 0xdd], "an IPv6 frame");
        let dst: [u8; 16] = frame[14 + 24..14 + 40].try_into().unwrap();
        let mut transport = frame[14 + 40..].to_vec();
        if ports {
            for i in 0..2 {
                transport.swap(i, 2 + i);
            }
        }
        (dst.into(), transport)
    }

    #[test]
    fn the_family_of_a_target_must_be_the_origins() {
        let v6 = ProbeTarget::Icmp("2001:db8::1".parse::<Ipv6Addr>().unwrap().into());
        let v4 = ProbeTarget::Icmp(Ipv4Addr::new(198, 18, 11, 2).into());
        assert!(origin().probe_frame(&v6, 1).is_none());
        assert!(origin6().probe_frame(&v4, 1).is_none());
        let from = SocketAddr::new(v4.addr(), 443);
        assert!(origin6().reset_frame(from, 1).is_none());
    }

    #[test]
    fn icmpv6_echo_round_trips_through_the_reply_parser() {
        let target: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let frame = origin6()
            .probe_frame(&ProbeTarget::Icmp(target.into()), 7)
            .unwrap();
        assert!(checksum6_ok(&frame), "valid checksum");
        assert_eq!(&frame[14 + 8..14 + 24], &origin6_src().octets());
        let (from, mut reply) = turned6(&frame, false);
        assert_eq!(from, target);
        assert_eq!(reply[0], 128, "an echo request");
        assert!(
            parse_reply6(target, libc::IPPROTO_ICMPV6, &reply).is_none(),
            "a request is no reply"
        );
        reply[0] = ICMPV6_ECHO_REPLY;
        let reply = parse_reply6(target, libc::IPPROTO_ICMPV6, &reply).unwrap();
        assert_eq!((reply.id, reply.seq), (60000, 7));
        assert_eq!(reply.answer, Answer::Icmp(target.into()));
        // The socket's filter passes echo replies and nothing else.
        let filter = echo_replies_only();
        let passes = |t: u8| filter[usize::from(t >> 5)] & (1 << (t & 31)) == 0;
        assert!(passes(129));
        assert!((0..=255u8).filter(|t| passes(*t)).eq([129]));
    }

    fn origin6_src() -> Ipv6Addr {
        "2001:db8:1::2".parse().unwrap()
    }

    #[test]
    fn tcp_probe6_is_answered_by_syn_ack_or_rst_and_reset_after() {
        let target: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let frame = origin6()
            .probe_frame(&ProbeTarget::Tcp(target), 513)
            .unwrap();
        assert!(checksum6_ok(&frame), "valid checksum");
        let (from, mut answer) = turned6(&frame, true);
        assert!(
            parse_reply6(from, libc::IPPROTO_TCP, &answer).is_none(),
            "a SYN is no answer"
        );
        let isn = u32::from_be_bytes(answer[4..8].try_into().unwrap());
        answer[8..12].copy_from_slice(&(isn + 1).to_be_bytes());
        answer[13] = 0x12;
        let reply = parse_reply6(from, libc::IPPROTO_TCP, &answer).unwrap();
        assert_eq!(reply.answer, Answer::Tcp(target));
        assert_eq!(
            (reply.id, reply.seq, reply.syn_ack),
            (60000, 513, Some(isn + 1))
        );
        answer[13] = 0x14;
        let reply = parse_reply6(from, libc::IPPROTO_TCP, &answer).unwrap();
        assert_eq!(
            (reply.seq, reply.syn_ack),
            (513, None),
            "an RST answers too"
        );
        let rst = origin6().reset_frame(target, isn + 1).unwrap();
        assert!(checksum6_ok(&rst), "valid checksum");
        assert_eq!(rst[14 + 40 + 13], 0x04);
    }

    #[test]
    fn dns_probe6_is_a_real_query_answered_by_a_response() {
        let server: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let probe = ProbeTarget::Dns {
            server: server.into(),
            name: "example.com".into(),
        };
        let frame = origin6().probe_frame(&probe, 9).unwrap();
        assert!(checksum6_ok(&frame), "valid checksum");
        let (from, mut answer) = turned6(&frame, true);
        let dns = 8;
        assert_eq!(&answer[dns..dns + 4], &[0, 9, 0x01, 0x00]);
        assert!(
            parse_reply6(from, libc::IPPROTO_UDP, &answer).is_none(),
            "a query is no response"
        );
        answer[dns + 2] |= 0x80;
        let reply = parse_reply6(from, libc::IPPROTO_UDP, &answer).unwrap();
        assert_eq!(reply.answer, Answer::Dns(server.into()));
        assert_eq!((reply.id, reply.seq), (60000, 9));
        assert!(parse_reply6(from, libc::IPPROTO_RAW, &answer).is_none());
    }
}

//! Health probes on the wire, sent as whole Ethernet frames on an uplink's
//! interface, to its gateway's MAC and from its address (so a probe provably
//! takes that uplink, whatever the kernel's routes say, and needs no route
//! at all): ICMP echo requests, TCP SYNs (answered by a SYN-ACK or an RST;
//! a SYN-ACK gets an RST from us so the target keeps no half-open
//! connection) and DNS queries over UDP. The answers are read from raw IPv4
//! sockets bound to the interface, one per protocol probed.
//!
//! A probe's echo identifier or source port lies outside the NAT range, so
//! the XDP program and the packet backend's nftables rules leave its answers
//! to the kernel, where the raw sockets see them. A TCP probe's sequence
//! number and a DNS query's identifier carry the probe's sequence.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
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

/// Where a probe frame goes from: the uplink's MACs, address and probe id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
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
    fn builder(&self, dst: Ipv4Addr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        PacketBuilder::ethernet2(self.src_mac, self.dst_mac).ipv4(
            self.src.octets(),
            dst.octets(),
            64,
        )
    }

    /// The frame probing `target` with sequence `seq`.
    pub fn probe_frame(&self, target: &ProbeTarget, seq: u16) -> Vec<u8> {
        match target {
            ProbeTarget::Icmp(addr) => frame!(
                self.builder(*addr)
                    .icmpv4(Icmpv4Type::EchoRequest(IcmpEchoHeader { id: self.id, seq })),
                b"xwan-probe",
            ),
            ProbeTarget::Tcp(addr) => frame!(
                self.builder(*addr.ip())
                    .tcp(self.id, addr.port(), tcp_isn(seq), 1024)
                    .syn(),
                &[]
            ),
            ProbeTarget::Dns { server, name } => {
                frame!(
                    self.builder(*server).udp(self.id, 53),
                    &dns_query(seq, name)
                )
            }
        }
    }

    /// The RST that closes what a SYN-ACK from `from` (acknowledging `ack`) opened.
    pub fn reset_frame(&self, from: SocketAddrV4, ack: u32) -> Vec<u8> {
        frame!(
            self.builder(*from.ip())
                .tcp(self.id, from.port(), ack, 0)
                .rst(),
            &[],
        )
    }
}

fn tcp_isn(seq: u16) -> u32 {
    u32::from(seq) << 16 | TCP_MAGIC
}

/// A DNS query (RFC 1035) with identifier `id` for the A records of `name`,
/// recursion desired.
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
    let from = ip.header().source_addr();
    match sliced.transport? {
        TransportSlice::Icmpv4(icmp) => match icmp.icmp_type() {
            Icmpv4Type::EchoReply(echo) => Some(Reply {
                answer: Answer::Icmp(from),
                id: echo.id,
                seq: echo.seq,
                syn_ack: None,
            }),
            _ => None,
        },
        TransportSlice::Tcp(tcp) => {
            let ack = tcp.acknowledgment_number().wrapping_sub(1);
            let answered = (tcp.syn() && tcp.ack()) || (tcp.rst() && tcp.ack());
            (answered && ack & 0xffff == TCP_MAGIC).then(|| Reply {
                answer: Answer::Tcp(SocketAddrV4::new(from, tcp.source_port())),
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
    recv: Vec<OwnedFd>,
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
    /// the answers to `targets` need.
    pub fn open(name: &str, ifindex: u32, targets: &[ProbeTarget]) -> io::Result<ProbeSocket> {
        let send = FrameSocket::open(ifindex)?;
        let mut protocols: Vec<libc::c_int> = targets
            .iter()
            .map(|t| match t {
                ProbeTarget::Icmp(_) => libc::IPPROTO_ICMP,
                ProbeTarget::Tcp(_) => libc::IPPROTO_TCP,
                ProbeTarget::Dns { .. } => libc::IPPROTO_UDP,
            })
            .collect();
        protocols.sort_unstable();
        protocols.dedup();
        let recv = protocols
            .into_iter()
            .map(|protocol| {
                let fd = sys::socket::socket(
                    libc::AF_INET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    protocol,
                )?;
                sys::socket::setsockopt(
                    &fd,
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    name.as_bytes(),
                )?;
                Ok(fd)
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
            .flat_map(|s| s.recv.iter().map(|fd| sys::poll::readable(fd.as_raw_fd())))
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
        for fd in &self.recv {
            while let Ok(n) = sys::socket::recv(fd, &mut buf, libc::MSG_DONTWAIT) {
                if n == 0 {
                    break;
                }
                replies.extend(parse_reply(&buf[..n]));
            }
        }
        replies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            src: Ipv4Addr::new(198, 18, 1, 2),
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
        let target = Ipv4Addr::new(198, 18, 11, 2);
        let frame = origin().probe_frame(&ProbeTarget::Icmp(target), 7);
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
        let target = SocketAddrV4::new(Ipv4Addr::new(198, 18, 11, 2), 443);
        let frame = origin().probe_frame(&ProbeTarget::Tcp(target), 513);
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
        let rst = origin().reset_frame(target, isn + 1);
        crate::testing::check(&rst).expect("valid checksums");
        assert_eq!(rst[14 + tcp + 13], 0x04);
    }

    #[test]
    fn dns_probe_is_a_real_query_answered_by_a_response() {
        let probe = ProbeTarget::Dns {
            server: Ipv4Addr::new(198, 18, 11, 2),
            name: "example.com".into(),
        };
        let frame = origin().probe_frame(&probe, 9);
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
        assert_eq!(reply.answer, Answer::Dns(Ipv4Addr::new(198, 18, 11, 2)));
        assert_eq!((reply.id, reply.seq), (60000, 9));
    }
}

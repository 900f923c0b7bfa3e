//! Health probes on the wire: ICMP echo requests sent as whole Ethernet frames
//! on an uplink's interface, to its gateway's MAC and from its address (so a
//! probe provably takes that uplink, whatever the kernel's routes say), and
//! the echo replies read from a raw ICMP socket bound to that interface.
//!
//! A probe's identifier lies outside the NAT range, so the XDP program and
//! the packet backend's nftables rules leave its replies to the kernel, where
//! the raw socket sees them.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use etherparse::{IcmpEchoHeader, Icmpv4Type, PacketBuilder};

use crate::config::PortRange;
use crate::io::sys;

/// The echo identifier of uplink `uplink`'s probes: just above the NAT range,
/// or just below it when the range ends at 65535.
pub fn probe_id(nat: PortRange, uplink: u8) -> u16 {
    let above = u32::from(nat.hi) + 1 + u32::from(uplink);
    match u16::try_from(above) {
        Ok(id) => id,
        Err(_) => nat.lo.saturating_sub(1 + u16::from(uplink)),
    }
}

/// An ICMP echo request frame from `src` to `target`.
pub fn echo_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    target: Ipv4Addr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), target.octets(), 64)
        .icmpv4(Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }));
    let payload = *b"xwan-probe";
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut frame, &payload)
        .expect("writing to a Vec cannot fail");
    frame
}

/// An echo reply seen by the raw socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply {
    pub from: Ipv4Addr,
    pub id: u16,
    pub seq: u16,
}

/// Reads an echo reply out of an IPv4 packet (as a raw ICMP socket returns it).
pub fn parse_reply(packet: &[u8]) -> Option<EchoReply> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(header_len..header_len + 8)?;
    if icmp[0] != 0 || icmp[1] != 0 {
        return None;
    }
    let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    Some(EchoReply {
        from,
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
    })
}

/// An AF_PACKET socket that sends whole Ethernet frames on one interface:
/// health probes on an uplink, and the RSTs of a failover on the LAN.
pub struct FrameSocket {
    ifindex: u32,
    fd: OwnedFd,
}

/// The two sockets of one uplink's prober.
pub struct ProbeSocket {
    send: FrameSocket,
    recv: OwnedFd,
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
    /// Opens the sockets for the interface `name` (index `ifindex`).
    pub fn open(name: &str, ifindex: u32) -> io::Result<ProbeSocket> {
        let send = FrameSocket::open(ifindex)?;
        let recv = sys::socket::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )?;
        sys::socket::setsockopt(
            &recv,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_bytes(),
        )?;
        Ok(ProbeSocket { send, recv })
    }

    /// Sends one whole Ethernet frame on the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.send.send(frame)
    }

    /// Waits until one of `sockets` has a reply to read, or `timeout` passes.
    pub fn wait(sockets: &[&ProbeSocket], timeout: std::time::Duration) {
        let mut fds: Vec<sys::poll::PollFd> = sockets
            .iter()
            .map(|s| sys::poll::readable(s.recv.as_raw_fd()))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        // An error (EINTR) only ends the wait early; the caller reads what is there.
        let _ = sys::poll::poll(&mut fds, timeout);
    }

    /// The next echo reply waiting, if any (never blocks).
    pub fn recv(&self) -> Option<EchoReply> {
        let mut buf = [0u8; 1500];
        loop {
            let n = match sys::socket::recv(&self.recv, &mut buf, libc::MSG_DONTWAIT) {
                Ok(n) if n > 0 => n,
                _ => return None,
            };
            if let Some(reply) = parse_reply(&buf[..n]) {
                return Some(reply);
            }
        }
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

    #[test]
    fn echo_frame_round_trips_through_the_reply_parser() {
        let frame = echo_frame(
            [2; 6],
            [4; 6],
            Ipv4Addr::new(198, 18, 1, 2),
            Ipv4Addr::new(198, 18, 11, 2),
            60000,
            7,
        );
        crate::testing::check(&frame).expect("valid checksums");
        // Turn it into the reply a target would send.
        let mut reply = frame[14..].to_vec();
        for i in 12..16 {
            reply.swap(i, i + 4);
        }
        reply[20] = 0;
        let reply = parse_reply(&reply).unwrap();
        assert_eq!((reply.id, reply.seq), (60000, 7));
        assert_eq!(reply.from, Ipv4Addr::new(198, 18, 11, 2));
        assert!(parse_reply(&frame[14..]).is_none(), "a request is no reply");
    }
}

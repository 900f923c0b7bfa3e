//! The kernel's neighbour tables (ARP and NDP), and asking the kernel to
//! resolve a neighbour.

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;

use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::rtnetlink::request;
use super::SystemError;
use crate::io::sys;

/// One entry of the kernel's neighbour table, IPv4 (ARP) or IPv6 (NDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub addr: IpAddr,
    /// The interface the entry is on.
    pub ifindex: u32,
    /// The link-layer address when the entry is valid (reachable, stale,
    /// delay, probe, permanent); None while incomplete or failed. Entries
    /// of broadcast and multicast addresses (NOARP) are not listed.
    pub mac: Option<[u8; 6]>,
}

/// The IPv4 and IPv6 neighbour tables of the calling thread's network
/// namespace (an `RTM_GETNEIGH` dump, as `ip neigh` asks for it).
pub fn neighbours() -> Result<Vec<Neighbour>, SystemError> {
    let dump = request(
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        NLM_F_DUMP,
    )?;
    Ok(dump.iter().filter_map(neighbour).collect())
}

fn neighbour(message: &RouteNetlinkMessage) -> Option<Neighbour> {
    let RouteNetlinkMessage::NewNeighbour(entry) = message else {
        return None;
    };
    let (mut addr, mut lladdr) = (None, None);
    for attribute in &entry.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a))
                if entry.header.family == AddressFamily::Inet =>
            {
                addr = Some(IpAddr::V4(*a));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a))
                if entry.header.family == AddressFamily::Inet6 =>
            {
                addr = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                lladdr = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            _ => {}
        }
    }
    // NUD_VALID in the kernel's words (what /proc/net/arp shows as ATF_COM),
    // less NOARP: entries for broadcast and multicast addresses, which are
    // nobody's MAC (and which /proc/net/arp leaves out).
    let valid = match entry.header.state {
        NeighbourState::Noarp => return None,
        NeighbourState::Reachable
        | NeighbourState::Stale
        | NeighbourState::Delay
        | NeighbourState::Probe
        | NeighbourState::Permanent => true,
        _ => false,
    };
    Some(Neighbour {
        addr: addr?,
        ifindex: entry.header.ifindex,
        mac: lladdr.filter(|_| valid),
    })
}

/// A netlink socket that asks the kernel to resolve neighbours (`NTF_USE`).
pub struct NeighbourProber {
    fd: OwnedFd,
    seq: u32,
}

const NLMSG_HDR_LEN: usize = 16;
const NDMSG_LEN: usize = 12;
const RTA_HDR_LEN: usize = 4;

impl NeighbourProber {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> Result<NeighbourProber, SystemError> {
        let fd = sys::socket::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
        .map_err(|err| SystemError::io("netlink socket", err))?;
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        sys::socket::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)
            .map_err(|err| SystemError::io("netlink SO_RCVTIMEO", err))?;
        Ok(NeighbourProber { fd, seq: 0 })
    }

    /// Asks the kernel to resolve `addr` (IPv4 or IPv6) on the interface
    /// `ifindex`: it creates the entry if there is none and runs its ARP or
    /// Neighbour Discovery state machine, as it would for its own traffic
    /// (`ip neigh replace ADDR dev DEV use`). Returns once the kernel acked.
    pub fn probe(&mut self, ifindex: u32, addr: impl Into<IpAddr>) -> Result<(), SystemError> {
        let addr = addr.into();
        self.seq = self.seq.wrapping_add(1);
        let request = neigh_use_request(self.seq, ifindex, addr);
        let what = || format!("netlink neighbour probe of {addr} on ifindex {ifindex}");
        // An unconnected netlink socket sends to the kernel.
        sys::socket::send(&self.fd, &request, 0).map_err(|err| SystemError::io(what(), err))?;
        let mut reply = [0u8; 512];
        loop {
            let got = sys::socket::recv(&self.fd, &mut reply, 0)
                .map_err(|err| SystemError::io(what(), err))?;
            match parse_ack(&reply[..got], self.seq) {
                Some(0) => return Ok(()),
                Some(errno) => {
                    return Err(SystemError::io(what(), io::Error::from_raw_os_error(errno)))
                }
                None => continue,
            }
        }
    }
}

/// `RTM_NEWNEIGH` with `NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK`, an `ndmsg` of
/// the address's family with `NTF_USE` and state `NUD_NONE`, and one `NDA_DST`
/// attribute (4 or 16 bytes: both keep the message 4-byte aligned).
fn neigh_use_request(seq: u32, ifindex: u32, addr: IpAddr) -> Vec<u8> {
    let (family, octets) = match addr {
        IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec()),
    };
    let rta_len = RTA_HDR_LEN + octets.len();
    let len = NLMSG_HDR_LEN + NDMSG_LEN + rta_len;
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
    let mut msg = vec![0u8; len];
    msg[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_NEWNEIGH.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // bytes 12..16: port id 0 (the kernel fills it in)
    let nd = NLMSG_HDR_LEN;
    msg[nd] = family as u8;
    msg[nd + 4..nd + 8].copy_from_slice(&ifindex.to_ne_bytes());
    msg[nd + 8..nd + 10].copy_from_slice(&libc::NUD_NONE.to_ne_bytes());
    msg[nd + 10] = libc::NTF_USE;
    let rta = NLMSG_HDR_LEN + NDMSG_LEN;
    msg[rta..rta + 2].copy_from_slice(&(rta_len as u16).to_ne_bytes());
    msg[rta + 2..rta + 4].copy_from_slice(&libc::NDA_DST.to_ne_bytes());
    msg[rta + 4..].copy_from_slice(&octets);
    msg
}

/// The errno of the `NLMSG_ERROR` acking `seq` in a netlink reply (0 for success),
/// or None if the reply holds no such message.
fn parse_ack(mut reply: &[u8], seq: u32) -> Option<i32> {
    while reply.len() >= NLMSG_HDR_LEN + 4 {
        let len = u32::from_ne_bytes(reply[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(reply[4..6].try_into().ok()?);
        let msg_seq = u32::from_ne_bytes(reply[8..12].try_into().ok()?);
        if len < NLMSG_HDR_LEN || len > reply.len() {
            return None;
        }
        if kind == libc::NLMSG_ERROR as u16 && msg_seq == seq {
            let error = i32::from_ne_bytes(reply[16..20].try_into().ok()?);
            return Some(-error);
        }
        let aligned = (len + 3) & !3;
        reply = reply.get(aligned..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::system::netns::TestNetns;
    use crate::io::system::rtnetlink::decode;
    use crate::io::system::test_bytes::{done, nlmsg, rta, RTM_NEWNEIGH};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    /// An `RTM_NEWNEIGH` as the kernel dumps it: `ndmsg`, `NDA_DST`, and
    /// `NDA_LLADDR` when given.
    fn entry(family: i32, ifindex: u32, state: u16, dst: &[u8], mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut payload = vec![family as u8, 0, 0, 0];
        payload.extend_from_slice(&ifindex.to_ne_bytes());
        payload.extend_from_slice(&state.to_ne_bytes());
        payload.extend_from_slice(&[0, libc::RTN_UNICAST]);
        payload.extend(rta(libc::NDA_DST, dst));
        if let Some(mac) = mac {
            payload.extend(rta(libc::NDA_LLADDR, &mac));
        }
        nlmsg(RTM_NEWNEIGH, &payload)
    }

    #[test]
    fn decodes_both_families_of_a_neighbour_dump() {
        let gw4: Ipv4Addr = "198.18.1.1".parse().unwrap();
        let gw6: Ipv6Addr = "fe80::1".parse().unwrap();
        let host6: Ipv6Addr = "fd00:50::10".parse().unwrap();
        let gone6: Ipv6Addr = "fd00:50::11".parse().unwrap();
        let mac = [2, 0, 0, 0, 1, 1];
        let mut data = entry(
            libc::AF_INET,
            3,
            libc::NUD_REACHABLE,
            &gw4.octets(),
            Some(mac),
        );
        data.extend(entry(
            libc::AF_INET6,
            3,
            libc::NUD_STALE,
            &gw6.octets(),
            Some(mac),
        ));
        data.extend(entry(
            libc::AF_INET6,
            2,
            libc::NUD_INCOMPLETE,
            &host6.octets(),
            None,
        ));
        // A failed entry may keep its old address: it is not valid.
        data.extend(entry(
            libc::AF_INET6,
            2,
            libc::NUD_FAILED,
            &gone6.octets(),
            Some(mac),
        ));
        // The LAN's broadcast address: nobody's MAC.
        let broadcast = [0xff; 6];
        let lan_broadcast = [192, 168, 50, 255];
        data.extend(entry(
            libc::AF_INET,
            2,
            libc::NUD_NOARP,
            &lan_broadcast,
            Some(broadcast),
        ));
        data.extend(done());
        let mut out = Vec::new();
        assert!(decode(&data, "test dump", &mut out).expect("decodes"));
        let table: Vec<Neighbour> = out.iter().filter_map(neighbour).collect();
        assert_eq!(
            table,
            vec![
                Neighbour {
                    addr: gw4.into(),
                    ifindex: 3,
                    mac: Some(mac),
                },
                Neighbour {
                    addr: gw6.into(),
                    ifindex: 3,
                    mac: Some(mac),
                },
                Neighbour {
                    addr: host6.into(),
                    ifindex: 2,
                    mac: None,
                },
                Neighbour {
                    addr: gone6.into(),
                    ifindex: 2,
                    mac: None,
                },
            ]
        );
        // Cut short: an error naming what was read, not a panic.
        let mut out = Vec::new();
        let err = decode(&data[..30], "test dump", &mut out).expect_err("truncated");
        assert!(err.to_string().starts_with("test dump"), "{err}");
    }

    #[test]
    fn use_request_carries_the_family_and_address() {
        let v4 = neigh_use_request(7, 3, "198.18.1.1".parse().unwrap());
        assert_eq!(v4.len(), 36);
        assert_eq!(v4[16], libc::AF_INET as u8);
        assert_eq!(&v4[28..30], &8u16.to_ne_bytes());
        assert_eq!(&v4[32..], &[198, 18, 1, 1]);
        let gw6: Ipv6Addr = "fe80::1".parse().unwrap();
        let v6 = neigh_use_request(8, 3, gw6.into());
        assert_eq!(v6.len(), 48);
        assert_eq!(&v6[0..4], &48u32.to_ne_bytes());
        assert_eq!(&v6[8..12], &8u32.to_ne_bytes());
        assert_eq!(v6[16], libc::AF_INET6 as u8);
        assert_eq!(&v6[20..24], &3u32.to_ne_bytes());
        assert_eq!(v6[26], libc::NTF_USE);
        assert_eq!(&v6[28..30], &20u16.to_ne_bytes());
        assert_eq!(&v6[30..32], &libc::NDA_DST.to_ne_bytes());
        assert_eq!(&v6[32..], &gw6.octets());
    }

    #[test]
    fn ack_parsing_finds_the_errno() {
        let mut ack = [0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        ack[8..12].copy_from_slice(&7u32.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-libc::ENODEV).to_ne_bytes());
        assert_eq!(parse_ack(&ack, 7), Some(libc::ENODEV));
        assert_eq!(parse_ack(&ack, 8), None);
        assert_eq!(parse_ack(&ack[..10], 7), None);
    }

    /// Probes `present` and `absent` on `ifindex` inside `ns` until the
    /// kernel has `present`'s MAC (5 s at most); returns both entries.
    fn probe_until_resolved(
        ns: &TestNetns,
        ifindex: u32,
        present: IpAddr,
        absent: IpAddr,
    ) -> (Option<Neighbour>, Option<Neighbour>) {
        ns.run(|| {
            let mut prober = NeighbourProber::open().expect("netlink socket");
            assert!(neighbours()
                .expect("table")
                .iter()
                .all(|n| n.addr != present));
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut resolved = None;
            while resolved.is_none() && Instant::now() < deadline {
                prober
                    .probe(ifindex, present)
                    .expect("probe present address");
                prober.probe(ifindex, absent).expect("probe absent address");
                std::thread::sleep(Duration::from_millis(50));
                resolved = neighbours()
                    .expect("table")
                    .into_iter()
                    .find(|n| n.addr == present && n.mac.is_some());
            }
            let missing = neighbours()
                .expect("table")
                .into_iter()
                .find(|n| n.addr == absent);
            (resolved, missing)
        })
    }

    /// Two namespaces joined by a veth: the prober makes the kernel resolve the
    /// peer (which then shows up, complete, in the table), and an absent address
    /// ends up incomplete or failed rather than with a MAC.
    #[test]
    fn probe_resolves_a_neighbour() {
        let router = TestNetns::new("neigh-r");
        let peer = TestNetns::new("neigh-p");
        router.veth("wan1", &peer, "isp1");
        router.ip(&["link", "set", "wan1", "address", "02:00:00:00:01:02", "up"]);
        router.ip(&["addr", "add", "198.18.1.2/24", "dev", "wan1"]);
        peer.ip(&["link", "set", "isp1", "address", "02:00:00:00:01:01", "up"]);
        peer.ip(&["addr", "add", "198.18.1.1/24", "dev", "isp1"]);
        let ifindex = router.ifindex("wan1");
        let gateway: Ipv4Addr = "198.18.1.1".parse().unwrap();
        let absent: Ipv4Addr = "198.18.1.99".parse().unwrap();

        let (resolved, missing) =
            probe_until_resolved(&router, ifindex, gateway.into(), absent.into());
        let resolved = resolved.expect("gateway resolved within 5 s");
        assert_eq!(resolved.ifindex, ifindex);
        assert_eq!(resolved.mac, Some([2, 0, 0, 0, 1, 1]));
        let missing = missing.expect("the probe created an entry for the absent address");
        assert_eq!(missing.mac, None);

        let err = router
            .run(|| NeighbourProber::open().and_then(|mut p| p.probe(9999, gateway)))
            .expect_err("no such ifindex");
        assert!(err.to_string().contains("ifindex 9999"), "{err}");
    }

    /// The same with IPv6: the gateway is the peer's link-local address, as
    /// router advertisements name it; Neighbour Discovery resolves it.
    #[test]
    fn probe_resolves_an_ipv6_neighbour() {
        let router = TestNetns::new("neigh6-r");
        let peer = TestNetns::new("neigh6-p");
        router.veth("wan1", &peer, "isp1");
        router.ipv6_without_dad("wan1");
        peer.ipv6_without_dad("isp1");
        router.ip(&["link", "set", "wan1", "address", "02:00:00:00:01:02", "up"]);
        router.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "wan1"]);
        peer.ip(&["link", "set", "isp1", "address", "02:00:00:00:01:01", "up"]);
        peer.ip(&["addr", "add", "fe80::1/64", "dev", "isp1"]);
        let ifindex = router.ifindex("wan1");
        let gateway: Ipv6Addr = "fe80::1".parse().unwrap();
        let absent: Ipv6Addr = "2001:db8:1::99".parse().unwrap();

        let (resolved, missing) =
            probe_until_resolved(&router, ifindex, gateway.into(), absent.into());
        let resolved = resolved.expect("IPv6 gateway resolved within 5 s");
        assert_eq!(resolved.ifindex, ifindex);
        assert_eq!(resolved.mac, Some([2, 0, 0, 0, 1, 1]));
        let missing = missing.expect("the probe created an entry for the absent address");
        assert_eq!(missing.mac, None);
    }
}

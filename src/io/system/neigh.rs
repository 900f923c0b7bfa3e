//! The kernel's IPv4 neighbour table, and asking the kernel to resolve a neighbour.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use super::{parse_mac, SystemError};
use crate::io::sys;

/// One entry of the kernel's neighbour table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub addr: Ipv4Addr,
    pub interface: String,
    /// The link-layer address when the entry is valid (reachable, stale, delay or
    /// probe); None while incomplete or failed.
    pub mac: Option<[u8; 6]>,
}

/// `ATF_COM` from `linux/if_arp.h`: the entry has a valid link-layer address.
const ATF_COM: u32 = 0x02;

/// The IPv4 neighbour table of the calling thread's network namespace.
pub fn neighbours() -> Result<Vec<Neighbour>, SystemError> {
    // thread-self, not self: a thread that entered another namespace reads its own.
    const PATH: &str = "/proc/thread-self/net/arp";
    let text = std::fs::read_to_string(PATH).map_err(|err| SystemError::io(PATH, err))?;
    parse_arp(&text)
}

fn parse_arp(text: &str) -> Result<Vec<Neighbour>, SystemError> {
    let bad = |line: &str| SystemError::Parse {
        what: "/proc/net/arp".to_owned(),
        content: line.to_owned(),
    };
    let mut found = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [addr, _hw_type, flags, mac, _mask, interface] = fields[..] else {
            return Err(bad(line));
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad(line))?;
        let flags =
            u32::from_str_radix(flags.trim_start_matches("0x"), 16).map_err(|_| bad(line))?;
        let mac = if flags & ATF_COM != 0 {
            Some(parse_mac(mac).ok_or_else(|| bad(line))?)
        } else {
            None
        };
        found.push(Neighbour {
            addr,
            interface: interface.to_owned(),
            mac,
        });
    }
    Ok(found)
}

/// A netlink socket that asks the kernel to resolve neighbours (`NTF_USE`).
pub struct NeighbourProber {
    fd: OwnedFd,
    seq: u32,
}

const NLMSG_HDR_LEN: usize = 16;
const NDMSG_LEN: usize = 12;
const RTA_DST_LEN: usize = 8;
const REQUEST_LEN: usize = NLMSG_HDR_LEN + NDMSG_LEN + RTA_DST_LEN;

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

    /// Asks the kernel to resolve `addr` on the interface `ifindex`: it creates the
    /// entry if there is none and runs its ARP state machine, as it would for its own
    /// traffic (`ip neigh replace ADDR dev DEV use`). Returns once the kernel acked.
    pub fn probe(&mut self, ifindex: u32, addr: Ipv4Addr) -> Result<(), SystemError> {
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

/// `RTM_NEWNEIGH` with `NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK`, an `ndmsg` with
/// `NTF_USE` and state `NUD_NONE`, and one `NDA_DST` attribute.
fn neigh_use_request(seq: u32, ifindex: u32, addr: Ipv4Addr) -> [u8; REQUEST_LEN] {
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
    let mut msg = [0u8; REQUEST_LEN];
    msg[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_NEWNEIGH.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // bytes 12..16: port id 0 (the kernel fills it in)
    let nd = NLMSG_HDR_LEN;
    msg[nd] = libc::AF_INET as u8;
    msg[nd + 4..nd + 8].copy_from_slice(&ifindex.to_ne_bytes());
    msg[nd + 8..nd + 10].copy_from_slice(&libc::NUD_NONE.to_ne_bytes());
    msg[nd + 10] = libc::NTF_USE;
    let rta = NLMSG_HDR_LEN + NDMSG_LEN;
    msg[rta..rta + 2].copy_from_slice(&(RTA_DST_LEN as u16).to_ne_bytes());
    msg[rta + 2..rta + 4].copy_from_slice(&libc::NDA_DST.to_ne_bytes());
    msg[rta + 4..rta + 8].copy_from_slice(&addr.octets());
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
    use std::time::{Duration, Instant};

    #[test]
    fn parses_proc_net_arp() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    198.18.1.1       0x1         0x2         02:00:00:00:01:01     *        wan1\n\
                    192.168.50.77    0x1         0x0         00:00:00:00:00:00     *        lan0\n";
        let table = parse_arp(text).expect("valid table");
        assert_eq!(
            table,
            vec![
                Neighbour {
                    addr: "198.18.1.1".parse().unwrap(),
                    interface: "wan1".into(),
                    mac: Some([2, 0, 0, 0, 1, 1]),
                },
                Neighbour {
                    addr: "192.168.50.77".parse().unwrap(),
                    interface: "lan0".into(),
                    mac: None,
                },
            ]
        );
        let err = parse_arp("header\n198.18.1.1 0x1 0x2\n").expect_err("short line");
        assert!(err.to_string().contains("198.18.1.1 0x1 0x2"), "{err}");
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

        let (resolved, missing) = router.run(|| {
            let mut prober = NeighbourProber::open().expect("netlink socket");
            assert!(neighbours()
                .expect("table")
                .iter()
                .all(|n| n.addr != gateway));
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut resolved = None;
            while resolved.is_none() && Instant::now() < deadline {
                prober.probe(ifindex, gateway).expect("probe gateway");
                prober.probe(ifindex, absent).expect("probe absent address");
                std::thread::sleep(Duration::from_millis(50));
                resolved = neighbours()
                    .expect("table")
                    .into_iter()
                    .find(|n| n.addr == gateway && n.mac.is_some());
            }
            let missing = neighbours()
                .expect("table")
                .into_iter()
                .find(|n| n.addr == absent);
            (resolved, missing)
        });
        let resolved = resolved.expect("gateway resolved within 5 s");
        assert_eq!(resolved.interface, "wan1");
        assert_eq!(resolved.mac, Some([2, 0, 0, 0, 1, 1]));
        let missing = missing.expect("the probe created an entry for the absent address");
        assert_eq!(missing.mac, None);

        let err = router
            .run(|| NeighbourProber::open().and_then(|mut p| p.probe(9999, gateway)))
            .expect_err("no such ifindex");
        assert!(err.to_string().contains("ifindex 9999"), "{err}");
    }
}

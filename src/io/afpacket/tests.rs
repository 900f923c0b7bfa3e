//! The packet backend's mechanics, with a MAC-swapping test processor in place of
//! the router core, in namespaces of the tests' own:
//!
//! ```text
//! host: eth0 192.168.50.10 ── lan0 [router: 192.168.50.1 | 198.18.1.2] wan1 ── eth0 198.18.1.1 :isp
//! ```
//!
//! The router namespace does not forward (ip_forward = 0), so whatever reaches the
//! ISP namespace went through the data path.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::filter::{ruleset, Ownership};
use super::socket::{TxScratch, BATCH};
use super::*;
use crate::config::PortRange;
use crate::io::system::netns::{enter_named, TestNetns};
use crate::io::{DataPathSetup, Interface, OwnedTraffic, ZeroCopy};
use crate::router::{DropReason, FrameMeta, KernelReason, Verdict};

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const ISP_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const UDP_PORT: u16 = 5555;

/// Forwards IPv4/UDP frames from the LAN to the WAN with the MACs rewritten (and
/// the UDP checksum completed when the kernel says it is partial); leaves the rest
/// to the kernel; records what it saw.
#[derive(Default)]
struct SwapForwarder {
    next_worker: AtomicUsize,
    forwarded: AtomicU64,
    checksum_partial: AtomicU64,
    from_wan: AtomicU64,
    workers_used: Mutex<HashSet<usize>>,
    vlan_tags: Mutex<Vec<u16>>,
    payloads: Mutex<HashSet<Vec<u8>>>,
}

impl FrameProcessor for SwapForwarder {
    type Worker = usize;

    fn worker(&self) -> usize {
        self.next_worker.fetch_add(1, Ordering::Relaxed)
    }

    fn process(&self, worker: &mut usize, frame: &mut [u8], meta: FrameMeta) -> Verdict {
        if meta.port != Port::Lan {
            // Only count what looks like a frame this forwarder sent (the ISP's own
            // IPv6 neighbour discovery and the like also arrive here).
            let ours = frame.len() >= 38
                && frame[12..14] == [0x08, 0x00]
                && frame[23] == 17
                && frame[36..38] == UDP_PORT.to_be_bytes();
            if ours {
                self.from_wan.fetch_add(1, Ordering::Relaxed);
            }
            return Verdict::Drop(DropReason::Rule);
        }
        if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] && frame[16..18] == [0x08, 0x00] {
            self.vlan_tags
                .lock()
                .unwrap()
                .push(u16::from_be_bytes([frame[14], frame[15]]));
            return Verdict::Kernel(KernelReason::Vlan);
        }
        if frame.len() < 42 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
            return Verdict::Kernel(KernelReason::NotIpv4);
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        let len = 14 + total;
        if frame.len() < len || total < ihl + 8 {
            return Verdict::Drop(DropReason::Malformed);
        }
        if meta.checksum_partial {
            self.checksum_partial.fetch_add(1, Ordering::Relaxed);
            complete_udp_checksum(&mut frame[14..len], ihl);
        }
        frame[0..6].copy_from_slice(&ISP_MAC);
        frame[6..12].copy_from_slice(&WAN_MAC);
        self.payloads
            .lock()
            .unwrap()
            .insert(frame[14 + ihl + 8..len].to_vec());
        self.workers_used.lock().unwrap().insert(*worker);
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        Verdict::Forward {
            port: Port::Wan(0),
            len,
        }
    }
}

/// Writes the full UDP checksum of an IPv4 packet (the header is `ihl` bytes).
fn complete_udp_checksum(packet: &mut [u8], ihl: usize) {
    let udp_len = packet.len() - ihl;
    let mut sum: u32 = 17 + udp_len as u32;
    for pair in packet[12..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    packet[ihl + 6] = 0;
    packet[ihl + 7] = 0;
    for chunk in packet[ihl..].chunks(2) {
        let hi = chunk[0];
        let lo = chunk.get(1).copied().unwrap_or(0);
        sum += u32::from(u16::from_be_bytes([hi, lo]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    packet[ihl + 6..ihl + 8].copy_from_slice(&checksum.to_be_bytes());
}

fn mac_text(mac: [u8; 6]) -> String {
    crate::io::system::format_mac(&mac)
}

struct Testbed {
    host: TestNetns,
    router: TestNetns,
    isp: TestNetns,
}

impl Testbed {
    fn new(tag: &str) -> Testbed {
        let host = TestNetns::new(&format!("{tag}-h"));
        let router = TestNetns::new(&format!("{tag}-r"));
        let isp = TestNetns::new(&format!("{tag}-i"));
        router.veth("lan0", &host, "eth0");
        router.veth("wan1", &isp, "eth0");
        router.ip(&["link", "set", "lan0", "address", &mac_text(LAN_MAC), "up"]);
        router.ip(&["link", "set", "wan1", "address", &mac_text(WAN_MAC), "up"]);
        router.ip(&["addr", "add", "192.168.50.1/24", "dev", "lan0"]);
        router.ip(&["addr", "add", "198.18.1.2/24", "dev", "wan1"]);
        host.ip(&["link", "set", "eth0", "address", &mac_text(HOST_MAC), "up"]);
        host.ip(&["addr", "add", "192.168.50.10/24", "dev", "eth0"]);
        host.ip(&["route", "add", "default", "via", "192.168.50.1"]);
        isp.ip(&["link", "set", "eth0", "address", &mac_text(ISP_MAC), "up"]);
        isp.ip(&["addr", "add", "198.18.1.1/24", "dev", "eth0"]);
        isp.ip(&["route", "add", "192.168.50.0/24", "via", "198.18.1.2"]);
        Testbed { host, router, isp }
    }

    fn setup(&self, queues: u32) -> DataPathSetup {
        DataPathSetup {
            interfaces: vec![
                Interface {
                    name: "lan0".into(),
                    ifindex: self.router.ifindex("lan0"),
                    mac: LAN_MAC,
                    port: Port::Lan,
                    rx_queues: 1,
                },
                Interface {
                    name: "wan1".into(),
                    ifindex: self.router.ifindex("wan1"),
                    mac: WAN_MAC,
                    port: Port::Wan(0),
                    rx_queues: 1,
                },
            ],
            queues,
            zero_copy: ZeroCopy::Off,
            cpus: Vec::new(),
            owned: OwnedTraffic {
                lan_networks: vec![Ipv4Net::new(Ipv4Addr::new(192, 168, 50, 0), 24).unwrap()],
                bypass: Vec::new(),
                local_addresses: vec![Ipv4Addr::new(192, 168, 50, 1), Ipv4Addr::new(198, 18, 1, 2)],
                wan_addresses: vec![Ipv4Addr::new(198, 18, 1, 2)],
                nat_ports: PortRange {
                    lo: 10000,
                    hi: 19999,
                },
                tcp_forwards: Vec::new(),
                udp_forwards: Vec::new(),
                v6: Default::default(),
            },
            stop: Arc::new(AtomicBool::new(false)),
            epoch: Instant::now(),
        }
    }

    /// Receives datagrams on 198.18.1.1:UDP_PORT in the ISP namespace until `want`
    /// arrived or nothing came for `quiet`; returns their payloads.
    fn receive_at_isp(
        &self,
        want: usize,
        quiet: Duration,
    ) -> (mpsc::Receiver<()>, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let (ready_tx, ready_rx) = mpsc::channel();
        let isp_name = self.isp.name().to_owned();
        let handle = std::thread::spawn(move || {
            enter_named(&isp_name);
            let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), UDP_PORT))
                .expect("bind in the ISP namespace");
            socket.set_read_timeout(Some(quiet)).unwrap();
            // Room for every datagram even if this thread is not scheduled for a while.
            let bytes: libc::c_int = 16 << 20;
            crate::io::sys::socket::setsockopt(
                &socket,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &bytes,
            )
            .expect("SO_RCVBUFFORCE");
            ready_tx.send(()).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while got.len() < want {
                match socket.recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(_) => break,
                }
            }
            got
        });
        (ready_rx, handle)
    }
}

/// Sends `count` datagrams from the LAN host to the ISP, spread over `flows`
/// source ports, each payload unique; paced so no queue overflows.
fn send_from_host(bed: &Testbed, count: usize, flows: usize) -> HashSet<Vec<u8>> {
    bed.host.run(|| {
        let sockets: Vec<UdpSocket> = (0..flows)
            .map(|_| UdpSocket::bind("192.168.50.10:0").expect("bind on the host"))
            .collect();
        let target = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), UDP_PORT);
        let mut sent = HashSet::new();
        for i in 0..count {
            let payload = format!("xwan packet test {i:06}").into_bytes();
            sockets[i % flows].send_to(&payload, target).expect("send");
            sent.insert(payload);
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        sent
    })
}

#[test]
fn forwards_each_frame_once_across_fanout_workers() {
    const COUNT: usize = 3000;
    let bed = Testbed::new("pkt-fwd");
    let setup = bed.setup(2);
    let forwarder = Arc::new(SwapForwarder::default());
    let path = bed
        .router
        .run(|| PacketDataPath::start(Arc::clone(&forwarder), &setup))
        .expect("data path starts");

    let (ready, receiver) = bed.receive_at_isp(COUNT, Duration::from_secs(2));
    ready.recv().expect("receiver ready");
    let sent = send_from_host(&bed, COUNT, 64);
    let received = receiver.join().expect("receiver thread");
    let report = path.stop().expect("workers stop cleanly");

    let total = report.total();
    assert_eq!(
        received.len(),
        COUNT,
        "datagrams at the ISP; data path: {total:?}"
    );
    let received: HashSet<Vec<u8>> = received.into_iter().collect();
    assert_eq!(received, sent, "every payload arrives intact, once");
    assert_eq!(forwarder.forwarded.load(Ordering::Relaxed), COUNT as u64);
    assert_eq!(*forwarder.payloads.lock().unwrap(), sent);
    assert_eq!(total.forwarded, COUNT as u64);
    assert_eq!(total.tx_failed, 0);
    assert_eq!(report.workers.len(), 2);
    assert_eq!(
        forwarder.workers_used.lock().unwrap().len(),
        2,
        "64 flows spread over both fanout workers"
    );
    // The host's veth offloads checksums: the kernel says so and the core is told.
    assert_eq!(
        forwarder.checksum_partial.load(Ordering::Relaxed),
        COUNT as u64
    );
    // Its own transmissions on wan1 never come back to the data path, and the
    // kernel's (the router's ARP reply to the host) are not even received
    // (PACKET_IGNORE_OUTGOING): nothing was counted as not for us.
    assert_eq!(forwarder.from_wan.load(Ordering::Relaxed), 0);
    assert_eq!(total.not_for_us, 0);
    assert!(
        total.to_kernel >= 1,
        "the host's ARP request went to the kernel"
    );
}

/// A VLAN-tagged IPv4 frame from the host to the router's MAC, as raw bytes (the
/// kernel here has no 8021q module, so no VLAN device can make one).
fn tagged_frame(tci: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&LAN_MAC);
    frame.extend_from_slice(&HOST_MAC);
    frame.extend_from_slice(&[0x81, 0x00]);
    frame.extend_from_slice(&tci.to_be_bytes());
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&[10, 100, 0, 10, 10, 100, 0, 1]);
    frame.extend_from_slice(&[0x30, 0x39, 0, 9, 0, 8, 0, 0]);
    frame
}

#[test]
fn restores_vlan_tags_and_skips_frames_for_other_hosts() {
    const TCI: u16 = 0x2064; // priority 1, VLAN 100
    let bed = Testbed::new("pkt-vlan");
    // A neighbour whose MAC is not the router's: frames to it reach lan0 as
    // PACKET_OTHERHOST.
    bed.host.ip(&[
        "neigh",
        "add",
        "192.168.50.99",
        "lladdr",
        "02:00:00:00:99:99",
        "dev",
        "eth0",
    ]);
    let setup = bed.setup(1);
    let forwarder = Arc::new(SwapForwarder::default());
    let path = bed
        .router
        .run(|| PacketDataPath::start(Arc::clone(&forwarder), &setup))
        .expect("data path starts");

    let host_eth0 = bed.host.ifindex("eth0");
    bed.host.run(|| {
        let raw = PacketSocket::open(host_eth0).expect("raw socket on the host");
        let frame = tagged_frame(TCI);
        let outcome = raw.send(
            std::iter::repeat_n(frame.as_slice(), 10),
            &mut TxScratch::new(BATCH),
        );
        assert_eq!(outcome.sent, 10, "{:?}", outcome.error);
        let other = UdpSocket::bind("192.168.50.10:0").expect("bind on eth0");
        for _ in 0..10 {
            other
                .send_to(b"other host", "192.168.50.99:9")
                .expect("send to other host");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while forwarder.vlan_tags.lock().unwrap().len() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let report = path.stop().expect("worker stops cleanly");

    let tags = forwarder.vlan_tags.lock().unwrap().clone();
    assert_eq!(
        tags,
        vec![TCI; 10],
        "every tagged frame reached the processor with its tag"
    );
    assert_eq!(report.total().not_for_us, 10);
    assert_eq!(forwarder.forwarded.load(Ordering::Relaxed), 0);
}

#[test]
fn rejects_bad_setups() {
    let bed = Testbed::new("pkt-bad");
    let forwarder = Arc::new(SwapForwarder::default());
    let mut setup = bed.setup(0);
    let err = PacketDataPath::start(Arc::clone(&forwarder), &setup)
        .err()
        .expect("no workers");
    assert!(matches!(err, PacketError::NoWorkers), "{err}");
    setup.queues = 1;
    setup.interfaces[1].port = Port::Lan;
    let err = PacketDataPath::start(Arc::clone(&forwarder), &setup)
        .err()
        .expect("two LAN ports");
    assert_eq!(err.to_string(), "interfaces lan0 and wan1 are both Lan");
    setup.interfaces.clear();
    let err = PacketDataPath::start(forwarder, &setup)
        .err()
        .expect("no interfaces");
    assert!(matches!(err, PacketError::NoInterfaces), "{err}");
}

fn rule(name: &str, action: crate::config::Action) -> crate::config::Rule {
    crate::config::Rule {
        name: name.into(),
        proto: crate::config::Proto::Any,
        src: Vec::new(),
        dst: Vec::new(),
        src6: Vec::new(),
        dst6: Vec::new(),
        src_port: Vec::new(),
        dst_port: Vec::new(),
        action,
        strict: false,
    }
}

#[test]
fn ruleset_mirrors_the_owned_traffic_and_rules() {
    use crate::config::{Action, Proto};
    let bed = Testbed::new("nft-text");
    let mut setup = bed.setup(1);
    setup.owned.tcp_forwards = vec![(Ipv4Addr::new(198, 18, 1, 2), 8080)];
    setup.owned.udp_forwards = vec![(Ipv4Addr::new(198, 18, 1, 2), 5353)];
    let mut docs = rule("docs \"bypass\"", Action::Bypass);
    docs.dst = vec![
        "203.0.113.0/24".parse().unwrap(),
        "203.0.113.128/25".parse().unwrap(),
    ];
    let mut ssh = rule("ssh", Action::Uplink(0));
    ssh.proto = Proto::Tcp;
    ssh.dst_port = vec![
        PortRange { lo: 22, hi: 22 },
        PortRange { lo: 20, hi: 23 },
        PortRange { lo: 24, hi: 30 },
    ];
    let mut ping_ports = rule("impossible", Action::Bypass);
    ping_ports.proto = Proto::Icmp;
    ping_ports.dst_port = vec![PortRange { lo: 1, hi: 2 }];
    let text = ruleset(&setup, &[docs, ssh, ping_ports], Ownership::None).expect("a LAN interface");
    assert!(
        text.contains("chain owned_ports {\n\t\tip frag-off & 0x1fff != 0 return\n"),
        "later fragments leave owned_ports before any port is read:\n{text}"
    );
    for line in [
        "meta l4proto { tcp, udp } th dport 10000-19999 drop",
        "icmp type echo-reply icmp id 10000-19999 drop",
        "ip daddr . tcp dport { 198.18.1.2 . 8080 } drop",
        "ip daddr . udp dport { 198.18.1.2 . 5353 } drop",
        "ip daddr { 203.0.113.0/24 } return comment \"rule docs _bypass_\"",
        "meta l4proto tcp th dport { 20-30 } drop comment \"rule ssh\"",
        "iifname \"lan0\" jump from_lan",
        "iifname . ip daddr { \"wan1\" . 198.18.1.2 } jump owned_ports",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains("impossible"),
        "a rule that matches nothing is left out:\n{text}"
    );
    let from_lan = text
        .split("chain from_lan {")
        .nth(1)
        .expect("from_lan chain");
    let docs_at = from_lan.find("rule docs").expect("docs rule");
    let ssh_at = from_lan.find("rule ssh").expect("ssh rule");
    let final_drop = from_lan.find("\t\tdrop\n").expect("final drop");
    assert!(
        docs_at < ssh_at && ssh_at < final_drop,
        "rules keep file order before the final drop"
    );

    let loaded = bed.router.run(|| {
        let filter = KernelFilter::install(&setup, &[], true).expect("nft accepts the ruleset");
        let listed = bed.router.exec(&["nft", "list", "table", "ip", TABLE]);
        filter.remove().expect("removed");
        String::from_utf8_lossy(&listed.stdout).into_owned()
    });
    assert!(
        loaded.contains("type filter hook prerouting priority raw; policy accept;"),
        "{loaded}"
    );
}

/// The kernel's own behaviour with and without the filter: LAN traffic forwarded by
/// the kernel, TCP RSTs and ICMP port-unreachables for NAT and forwarded ports.
#[test]
fn filter_stops_the_kernel_forwarding_and_answering_owned_traffic() {
    use std::io::ErrorKind;
    use std::net::TcpStream;

    let bed = Testbed::new("nft");
    let out = bed
        .router
        .exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bed.router
        .ip(&["route", "add", "default", "via", "198.18.1.1"]);
    let mut setup = bed.setup(1);
    setup.owned.tcp_forwards = vec![(Ipv4Addr::new(198, 18, 1, 2), 8080)];
    let wan = Ipv4Addr::new(198, 18, 1, 2);
    let timeout = Duration::from_millis(300);

    // What the kernel does with: a LAN datagram to the ISP; TCP to a NAT port, a
    // forwarded port and the router's own port 22 from the ISP; UDP to a NAT port.
    let observe = || {
        let (ready, receiver) = bed.receive_at_isp(1, Duration::from_millis(500));
        ready.recv().expect("receiver ready");
        bed.host.run(|| {
            UdpSocket::bind("192.168.50.10:0")
                .and_then(|s| s.send_to(b"lan to isp", (Ipv4Addr::new(198, 18, 1, 1), UDP_PORT)))
                .expect("send from the host");
        });
        let forwarded = !receiver.join().expect("receiver").is_empty();
        let tcp = |port: u16| {
            bed.isp.run(|| {
                match TcpStream::connect_timeout(&SocketAddrV4::new(wan, port).into(), timeout) {
                    Err(err) if err.kind() == ErrorKind::ConnectionRefused => "refused",
                    Err(err) if err.kind() == ErrorKind::TimedOut => "silent",
                    Err(err) => panic!("connect to port {port}: {err}"),
                    Ok(_) => "connected",
                }
            })
        };
        let udp = bed.isp.run(|| {
            let socket = UdpSocket::bind("198.18.1.1:0").expect("bind");
            socket.connect((wan, 15000)).expect("connect");
            socket.set_read_timeout(Some(timeout)).unwrap();
            socket.send(b"to a NAT port").expect("send");
            match socket.recv(&mut [0u8; 64]) {
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => "refused",
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    "silent"
                }
                other => panic!("udp to a NAT port: {other:?}"),
            }
        });
        (forwarded, tcp(15000), tcp(8080), tcp(22), udp)
    };

    assert_eq!(
        observe(),
        (true, "refused", "refused", "refused", "refused"),
        "kernel alone"
    );
    let filter = bed
        .router
        .run(|| KernelFilter::install(&setup, &[], true))
        .expect("filter installs");
    assert!(bed.router.run(KernelFilter::present).expect("nft list"));
    assert_eq!(
        observe(),
        (false, "silent", "silent", "refused", "silent"),
        "with the filter"
    );
    // The table is owned: its owner replaces it (a reload), another process
    // (or context) cannot.
    assert!(filter.owned(), "this kernel has owned tables (5.12+)");
    bed.router
        .run(|| filter.handle().replace(&setup, &[]))
        .expect("the owner replaces its table");
    assert_eq!(
        observe(),
        (false, "silent", "silent", "refused", "silent"),
        "after the replacement"
    );
    let second = bed.router.run(|| KernelFilter::install(&setup, &[], true));
    let refused = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refused.contains("owned by another running process"),
        "{refused:?}"
    );
    let text = ruleset(&setup, &[], Ownership::None).expect("a LAN interface");
    let by_cli = bed.router.run(|| nft_cli(&["-f", "-"], &text));
    assert!(!by_cli.status.success(), "nft changed an owned table");
    bed.router.run(|| drop(filter));
    assert!(!bed.router.run(KernelFilter::present).expect("nft list"));
    assert_eq!(
        observe(),
        (true, "refused", "refused", "refused", "refused"),
        "after removal"
    );
    // A table left by an xwan that could not own it (loaded by the nft
    // command here) is replaced by the next install.
    let stale = bed.router.run(|| nft_cli(&["-f", "-"], &text));
    assert!(stale.status.success(), "{stale:?}");
    let fresh = bed
        .router
        .run(|| KernelFilter::install(&setup, &[], true))
        .expect("replaces the stale table");
    assert!(fresh.owned());
    bed.router.run(|| fresh.remove()).expect("removed");
    assert!(!bed.router.run(KernelFilter::present).expect("nft list"));
}

/// Runs the nft command with `stdin`.
fn nft_cli(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes()).expect("write to nft");
    }
    child.wait_with_output().expect("nft output")
}

#[test]
fn the_ipv6_table_mirrors_the_owned_ipv6_traffic_and_rules() {
    use crate::config::{Action, Proto};
    use crate::io::{OwnedTraffic6, OwnedUplink6};
    let bed = Testbed::new("nft-text6");
    let mut setup = bed.setup(1);
    setup.owned.v6 = OwnedTraffic6 {
        lan_networks: vec!["fd00:50::/64".parse().unwrap()],
        local_addresses: vec!["fd00:50::1".parse().unwrap()],
        // The one uplink of this bed, with both kinds of IPv6 traffic.
        uplinks: vec![OwnedUplink6 {
            prefixes: vec!["2001:db8:100::/64".parse().unwrap()],
            address: Some("2001:db8:2::2".parse().unwrap()),
            forwards: vec![("tcp", 2022)],
        }],
        ..OwnedTraffic6::default()
    };
    let mut v6_only = rule("v6 only", Action::Bypass);
    v6_only.dst6 = vec!["2001:db8:ffff::/48".parse().unwrap()];
    let mut v4_only = rule("v4 only", Action::Uplink(1));
    v4_only.src = vec!["192.168.50.0/25".parse().unwrap()];
    let mut both = rule("both", Action::Uplink(0));
    both.proto = Proto::Icmp;
    let text =
        ruleset(&setup, &[v6_only, v4_only, both], Ownership::None).expect("a LAN interface");
    let (v4, v6) = text.split_once("table ip6 xwan {\n").expect("an ip6 table");
    for line in [
        "ip6 daddr { 2001:db8:ffff::/48 } return comment \"rule v6 only\"",
        "meta l4proto ipv6-icmp drop comment \"rule both\"",
        "icmpv6 type echo-reply icmpv6 id 10000-19999 drop",
        "iifname \"wan1\" ip6 daddr { 2001:db8:100::/64 } jump owned_prefixes",
        "iifname \"wan1\" ip6 daddr 2001:db8:2::2 jump owned_ports",
        "iifname \"wan1\" ip6 daddr 2001:db8:2::2 tcp dport 2022 drop",
        "ip6 hoplimit <= 1 drop",
    ] {
        assert!(
            v6.lines().any(|l| l.trim() == line),
            "missing {line:?} in\n{v6}"
        );
    }
    assert!(
        !v6.contains("rule v4 only"),
        "an IPv4-only rule stays out:\n{v6}"
    );
    assert!(
        !v4.contains("rule v6 only"),
        "an IPv6-only rule stays out:\n{v4}"
    );
    assert!(
        v4.contains("meta l4proto icmp drop comment \"rule both\""),
        "{v4}"
    );

    let (listed, gone) = bed.router.run(|| {
        let filter = KernelFilter::install(&setup, &[], true).expect("nft accepts the ruleset");
        let listed = bed.router.exec(&["nft", "list", "table", "ip6", TABLE]);
        filter.remove().expect("removed");
        let gone = bed.router.exec(&["nft", "list", "table", "ip6", TABLE]);
        (
            String::from_utf8_lossy(&listed.stdout).into_owned(),
            gone.status.success(),
        )
    });
    assert!(listed.contains("flags owner"), "{listed}");
    assert!(listed.contains("jump owned_prefixes"), "{listed}");
    assert!(!gone, "the ip6 table goes with the ip one");
}

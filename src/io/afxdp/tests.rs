//! The backend's mechanics, tested with a small forwarder in place of the router core
//! inside throwaway network namespaces (needs root, `ip`, `ethtool`, `ping`).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ipnet::Ipv4Net;

use super::*;
use crate::config::PortRange;
use crate::io::system::netns::enter_named;
use crate::io::{Interface, OwnedTraffic};
use crate::router::{DropReason, FrameMeta, KernelReason, Port, Verdict};

const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const ISP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const ISP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const NAT_PORTS: PortRange = PortRange {
    lo: 30000,
    hi: 60999,
};
const UDP_FORWARD: u16 = 5353;
const QUEUES: u32 = 2;

/// A one-host NAT: LAN host ↔ WAN address, MACs rewritten, TTL decremented.
/// Anything else to the WAN address is dropped, anything else on the LAN goes to the kernel.
struct OneHostNat;

impl FrameProcessor for OneHostNat {
    type Worker = ();

    fn worker(&self) {}

    fn process(&self, _worker: &mut (), frame: &mut [u8], meta: FrameMeta) -> Verdict {
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
            return Verdict::Kernel(KernelReason::NotIpv4);
        }
        let total_len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
        let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
        let (port, addr_at, new_addr, eth_dst, eth_src) = match meta.port {
            Port::Lan if src == HOST => (Port::Wan(0), 26, WAN_ADDR, ISP_MAC, WAN_MAC),
            Port::Wan(0) if dst == WAN_ADDR && frame[23] == 1 => {
                (Port::Lan, 30, HOST, HOST_MAC, LAN_MAC)
            }
            Port::Wan(_) => return Verdict::Drop(DropReason::NoMapping),
            Port::Lan => return Verdict::Kernel(KernelReason::NotInside),
        };
        frame[0..6].copy_from_slice(&eth_dst);
        frame[6..12].copy_from_slice(&eth_src);
        frame[addr_at..addr_at + 4].copy_from_slice(&new_addr.octets());
        frame[22] -= 1;
        frame[24..26].fill(0);
        let checksum = ip_checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&checksum.to_be_bytes());
        Verdict::Forward {
            port,
            len: 14 + total_len,
        }
    }
}

fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Three namespaces (LAN host, router, ISP), removed on drop.
struct Testbed {
    host: String,
    router: String,
    isp: String,
}

impl Testbed {
    fn new() -> Testbed {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let bed = Testbed {
            host: format!("xwxh{tag}"),
            router: format!("xwxr{tag}"),
            isp: format!("xwxi{tag}"),
        };
        for ns in [&bed.host, &bed.router, &bed.isp] {
            sh(&format!("ip netns add {ns}"));
        }
        let (h, r, i) = (&bed.host, &bed.router, &bed.isp);
        let q = QUEUES;
        sh(&format!(
            "ip -n {r} link add lan0 numtxqueues {q} numrxqueues {q} address {} type veth \
             peer name h0 netns {h} numtxqueues {q} numrxqueues {q} address {}",
            format_mac(LAN_MAC),
            format_mac(HOST_MAC)
        ));
        sh(&format!(
            "ip -n {r} link add wan1 numtxqueues {q} numrxqueues {q} address {} type veth \
             peer name i0 netns {i} numtxqueues {q} numrxqueues {q} address {}",
            format_mac(WAN_MAC),
            format_mac(ISP_MAC)
        ));
        sh(&format!("ip -n {r} addr add {LAN_ADDR}/24 dev lan0"));
        sh(&format!("ip -n {r} addr add {WAN_ADDR}/24 dev wan1"));
        sh(&format!("ip -n {h} addr add {HOST}/24 dev h0"));
        sh(&format!("ip -n {i} addr add {ISP}/24 dev i0"));
        for (ns, dev) in [
            (r, "lan0"),
            (r, "wan1"),
            (h, "h0"),
            (i, "i0"),
            (r, "lo"),
            (h, "lo"),
            (i, "lo"),
        ] {
            sh(&format!("ip -n {ns} link set {dev} up"));
        }
        sh(&format!("ip -n {h} route add default via {LAN_ADDR}"));
        // The router forwards nothing by itself: whatever crosses it went through xwan.
        sh(&format!(
            "ip netns exec {r} sysctl -qw net.ipv4.ip_forward=0"
        ));
        // Full checksums from the namespace ends (no CHECKSUM_PARTIAL frames).
        sh(&format!("ip netns exec {h} ethtool -K h0 tx off"));
        sh(&format!("ip netns exec {i} ethtool -K i0 tx off"));
        bed
    }

    fn interface(&self, name: &str, port: Port, mac: [u8; 6]) -> Interface {
        let out = sh(&format!(
            "ip netns exec {} cat /sys/class/net/{name}/ifindex",
            self.router
        ));
        Interface {
            name: name.to_string(),
            ifindex: out.trim().parse().expect("ifindex"),
            mac,
            port,
            rx_queues: QUEUES,
        }
    }

    fn setup(&self) -> DataPathSetup {
        DataPathSetup {
            interfaces: vec![
                self.interface("lan0", Port::Lan, LAN_MAC),
                self.interface("wan1", Port::Wan(0), WAN_MAC),
            ],
            queues: QUEUES,
            zero_copy: ZeroCopy::Auto,
            cpus: Vec::new(),
            owned: OwnedTraffic {
                lan_networks: vec![Ipv4Net::new(Ipv4Addr::new(192, 168, 50, 0), 24).unwrap()],
                bypass: vec![Ipv4Net::new(Ipv4Addr::new(203, 0, 113, 0), 24).unwrap()],
                local_addresses: vec![LAN_ADDR, WAN_ADDR],
                wan_addresses: vec![WAN_ADDR],
                nat_ports: NAT_PORTS,
                tcp_forwards: Vec::new(),
                udp_forwards: vec![(WAN_ADDR, UDP_FORWARD)],
                v6: Default::default(),
            },
            stop: Arc::new(AtomicBool::new(false)),
            epoch: Instant::now(),
        }
    }

    /// Runs `f` on a thread inside the router namespace.
    fn in_router<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let router = self.router.clone();
        std::thread::spawn(move || {
            enter_named(&router);
            f()
        })
        .join()
        .expect("router thread")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in [&self.host, &self.router, &self.isp] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn sh(command: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many echo replies `ping` got (it exits non-zero when some are lost).
fn ping(ns: &str, args: &str) -> u32 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ip netns exec {ns} ping -q {args}"))
        .output()
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(',')
        .find_map(|part| {
            part.trim()
                .strip_suffix(" received")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no ping summary in: {text}"))
}

#[test]
fn forwards_owned_traffic_and_leaves_the_rest_to_the_kernel() {
    let bed = Testbed::new();
    let setup = bed.setup();
    let started =
        bed.in_router(move || XdpDataPath::start_with(Arc::new(OneHostNat), &setup, false));
    let path = started.expect("start the AF_XDP data path");
    assert!(!path.zero_copy(), "veth has no zero-copy mode");
    assert_eq!(
        path.modes(),
        vec![
            ("lan0".to_string(), XdpMode::Native),
            ("wan1".to_string(), XdpMode::Native)
        ]
    );

    // Through xwan: echo requests LAN → WAN, replies (identifier in the NAT range) back.
    let count = 200;
    let through = ping(
        &bed.host,
        &format!("-c {count} -i 0.002 -W 2 -e 40000 {ISP}"),
    );
    // The kernel's: the router's own address, a bypassed prefix.
    let own = ping(&bed.host, &format!("-c 3 -i 0.05 -W 1 {LAN_ADDR}"));
    ping(&bed.host, "-c 2 -i 0.05 -W 0.3 203.0.113.10");
    // TTL 1 is xwan's too (the core answers time exceeded; the test NAT forwards it).
    // Its identifier is outside the NAT range, so the ISP's replies are the kernel's:
    // ping's default (its process id) falls in the range now and then.
    ping(
        &bed.host,
        &format!("-c 2 -i 0.05 -W 0.3 -t 1 -e 1000 {ISP}"),
    );
    // To the WAN address: an echo request and a UDP port outside the NAT range are the
    // kernel's; a NAT port and a forwarded port are xwan's (the test NAT drops them).
    let wan_own = ping(&bed.isp, &format!("-c 3 -i 0.05 -W 1 {WAN_ADDR}"));
    for port in [5000, 40001, UDP_FORWARD] {
        sh(&format!(
            "ip netns exec {} bash -c 'echo x > /dev/udp/{WAN_ADDR}/{port}'",
            bed.isp
        ));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));

    let report = path.stop().expect("stop");
    assert_eq!(through, count, "echo replies through the AF_XDP forwarder");
    assert_eq!(
        own, 3,
        "the router's own address answers through the kernel"
    );
    assert_eq!(
        wan_own, 3,
        "the WAN address answers pings through the kernel"
    );
    let rx: u64 = report.workers.iter().map(|(s, _)| s.rx).sum();
    let tx: u64 = report.workers.iter().map(|(s, _)| s.tx).sum();
    let dropped: u64 = report.workers.iter().map(|(s, _)| s.drop_verdicts).sum();
    let kernel: u64 = report.workers.iter().map(|(s, _)| s.kernel_verdicts).sum();
    assert_eq!(
        rx,
        2 * u64::from(count) + 4,
        "only owned frames reach the workers: {report:?}"
    );
    assert_eq!(tx, 2 * u64::from(count) + 2, "{report:?}");
    assert_eq!(dropped, 2, "the two owned UDP datagrams: {report:?}");
    assert_eq!(kernel, 0, "{report:?}");
    assert_eq!(
        report.frames_leaked, 0,
        "every frame back in its pool: {report:?}"
    );
    for (_, end) in &report.workers {
        assert_eq!(
            end.frames_free + end.frames_on_fill_rings,
            end.frames_total,
            "{end:?}"
        );
    }
    // Detached on stop: the interface has no XDP program left.
    let link = sh(&format!("ip -n {} link show lan0", bed.router));
    assert!(!link.contains("xdp"), "XDP still attached: {link}");
}

/// Drops every frame it gets, counted by the workers: what reaches it is
/// what the XDP program redirected.
struct Sink;

impl FrameProcessor for Sink {
    type Worker = ();

    fn worker(&self) {}

    fn process(&self, _worker: &mut (), _frame: &mut [u8], _meta: FrameMeta) -> Verdict {
        Verdict::Drop(DropReason::NoMapping)
    }
}

/// IPv6 by the program's rules (xwan.bpf.c, xdp_ipv6): what the core owns
/// reaches the workers, the rest the kernel, Neighbour Discovery included
/// (the kernel's answers to the pings need it), and a new NAT66 address
/// written by `OwnedMaps::update` takes over from the old one.
#[test]
fn owned_ipv6_reaches_the_workers_and_the_rest_the_kernel() {
    use crate::io::{OwnedTraffic6, OwnedUplink6};
    let bed = Testbed::new();
    let (h, r, i) = (&bed.host, &bed.router, &bed.isp);
    for (ns, address, dev) in [
        (r, "fd00:50::1/64", "lan0"),
        (h, "fd00:50::10/64", "h0"),
        (r, "2001:db8:2::2/64", "wan1"),
        (r, "2001:db8:2::3/64", "wan1"),
        (i, "2001:db8:2::1/64", "i0"),
    ] {
        sh(&format!("ip -n {ns} -6 addr add {address} dev {dev} nodad"));
    }
    sh(&format!("ip -n {h} -6 route add default via fd00:50::1"));
    sh(&format!(
        "ip -n {i} -6 route add 2001:db8:100::/64 via 2001:db8:2::2"
    ));
    let mut setup = bed.setup();
    setup.owned.v6 = OwnedTraffic6 {
        lan_networks: vec!["fd00:50::/64".parse().unwrap()],
        bypass: vec!["2001:db8:ee::/48".parse().unwrap()],
        local_addresses: ["fd00:50::1", "2001:db8:2::2", "2001:db8:2::3"]
            .map(|a| a.parse().unwrap())
            .to_vec(),
        // Both kinds of an uplink's IPv6 traffic on the one uplink.
        uplinks: vec![OwnedUplink6 {
            prefixes: vec!["2001:db8:100::/64".parse().unwrap()],
            address: Some("2001:db8:2::2".parse().unwrap()),
            forwards: vec![("udp", UDP_FORWARD)],
        }],
    };
    let owned = setup.owned.clone();
    let started = bed.in_router(move || XdpDataPath::start_with(Arc::new(Sink), &setup, false));
    let path = started.expect("start the AF_XDP data path");
    let udp = |to: &str, port: u16| {
        sh(&format!(
            "ip netns exec {i} bash -c 'echo x > /dev/udp/{to}/{port}'"
        ));
    };

    // The kernel's: the router's own addresses from either side, a bypassed
    // prefix; each ping needs the kernel's neighbour resolution.
    let lan = ping(h, "-6 -c 2 -i 0.05 -W 1 fd00:50::1");
    let wan = ping(i, "-6 -c 2 -i 0.05 -W 1 2001:db8:2::2");
    ping(h, "-6 -c 1 -W 0.3 2001:db8:ee::1");
    udp("2001:db8:2::2", 5000);
    udp("2001:db8:2::3", 40001);
    // xwan's: the Internet from the LAN, a NAT port and a forwarded port on
    // the NAT66 address, the mapped prefix.
    ping(h, "-6 -c 2 -i 0.05 -W 0.3 2001:db8:ffff::10");
    udp("2001:db8:2::2", 40001);
    udp("2001:db8:2::2", UDP_FORWARD);
    udp("2001:db8:100::5", 9);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let rx = |path: &XdpDataPath| -> u64 { path.stats().iter().map(|s| s.rx).sum() };
    let before = rx(&path);

    // The NAT66 address moves to 2001:db8:2::3.
    let maps = path
        .owned_maps(&bed.setup().interfaces, &owned)
        .expect("the owned maps");
    let mut moved = owned.clone();
    moved.v6.uplinks[0].address = Some("2001:db8:2::3".parse().unwrap());
    maps.update(&moved).expect("update the maps");
    udp("2001:db8:2::2", 40002);
    udp("2001:db8:2::3", 40002);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after = rx(&path);

    let report = path.stop().expect("stop");
    assert_eq!(
        lan, 2,
        "the router's LAN address answers through the kernel"
    );
    assert_eq!(wan, 2, "the NAT66 address answers pings through the kernel");
    assert_eq!(before, 5, "only owned IPv6 reaches the workers: {report:?}");
    assert_eq!(after, 6, "the new NAT66 address only: {report:?}");
    let dropped: u64 = report.workers.iter().map(|(s, _)| s.drop_verdicts).sum();
    assert_eq!(dropped, 6, "{report:?}");
}

#[test]
fn a_second_data_path_on_the_same_interfaces_is_refused() {
    let bed = Testbed::new();
    let first_setup = bed.setup();
    let second_setup = bed.setup();
    let (first, second) = bed.in_router(move || {
        let first = XdpDataPath::start_with(Arc::new(OneHostNat), &first_setup, false);
        let second = XdpDataPath::start_with(Arc::new(OneHostNat), &second_setup, false);
        (first, second)
    });
    let first = first.expect("first data path");
    let err = second.err().expect("the second data path must fail");
    assert!(
        matches!(err, XdpError::Busy { .. } | XdpError::Socket { .. }),
        "{err}"
    );
    let report = first.stop().expect("stop");
    assert_eq!(report.frames_leaked, 0);
}

#[test]
fn a_missing_interface_is_named() {
    let setup = Testbed::one_interface("xwan-missing0", 999_999, LAN_MAC, 1);
    let err = check_setup(&setup).expect_err("missing interface");
    assert!(
        matches!(err, XdpError::NoInterface(ref name) if name == "xwan-missing0"),
        "{err}"
    );
    assert!(err.to_string().contains("xwan-missing0"));
}

#[test]
fn an_mtu_too_large_for_a_frame_is_refused() {
    // The loopback interface (ifindex 1) has an MTU of 65536.
    let setup = Testbed::one_interface("lo", 1, [0; 6], 1);
    let err = check_setup(&setup).expect_err("MTU too large");
    assert!(
        matches!(err, XdpError::MtuTooLarge { mtu: 65536, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--io packet"), "{err}");
}

#[test]
fn queue_count_must_match_the_workers() {
    let setup = Testbed::one_interface("lo", 1, [0; 6], 2);
    let err = check_setup(&setup).expect_err("queue mismatch");
    assert!(
        matches!(
            err,
            XdpError::QueueMismatch {
                rx_queues: 1,
                queues: 2,
                ..
            }
        ),
        "{err}"
    );
}

impl Testbed {
    /// A setup of one LAN interface with one RX queue, for the checks that
    /// refuse a setup before any socket opens.
    fn one_interface(name: &str, ifindex: u32, mac: [u8; 6], queues: u32) -> DataPathSetup {
        DataPathSetup {
            interfaces: vec![Interface {
                name: name.to_string(),
                ifindex,
                mac,
                port: Port::Lan,
                rx_queues: 1,
            }],
            queues,
            ..Testbed::setup_without_bed()
        }
    }

    /// A setup for checks that never reach an interface.
    fn setup_without_bed() -> DataPathSetup {
        DataPathSetup {
            interfaces: Vec::new(),
            queues: 1,
            zero_copy: ZeroCopy::Off,
            cpus: Vec::new(),
            owned: OwnedTraffic {
                lan_networks: Vec::new(),
                bypass: Vec::new(),
                local_addresses: Vec::new(),
                wan_addresses: Vec::new(),
                nat_ports: NAT_PORTS,
                tcp_forwards: Vec::new(),
                udp_forwards: Vec::new(),
                v6: Default::default(),
            },
            stop: Arc::new(AtomicBool::new(false)),
            epoch: Instant::now(),
        }
    }
}

/// The id of the XDP program attached to `ifindex` in the calling thread's namespace.
fn attached_program(ifindex: u32) -> u32 {
    let mut id = 0;
    // SAFETY: id is a valid out-pointer for the call.
    let ret = unsafe { libbpf_rs::libbpf_sys::bpf_xdp_query_id(ifindex as i32, 0, &mut id) };
    assert_eq!(ret, 0, "bpf_xdp_query_id");
    id
}

/// Attaches the program `fd` to `ifindex` the old way (netlink, native mode), as a
/// crashed older xwan or `ip link set dev ... xdp` would leave it.
fn attach_by_netlink(fd: i32, ifindex: u32) {
    let opts = libbpf_rs::libbpf_sys::bpf_xdp_attach_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_xdp_attach_opts>() as _,
        ..Default::default()
    };
    // SAFETY: fd is a loaded XDP program, opts a valid, sized options struct.
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_xdp_attach(
            ifindex as i32,
            fd,
            libbpf_rs::libbpf_sys::XDP_FLAGS_DRV_MODE,
            &opts,
        )
    };
    assert_eq!(ret, 0, "bpf_xdp_attach");
}

#[test]
fn a_stale_xwan_program_is_replaced() {
    let bed = Testbed::new();
    let setup = bed.setup();
    let lan_ifindex = setup.interfaces[0].ifindex;
    let (stale, path) = bed.in_router(move || {
        let stale = program::Program::load(
            &setup.interfaces,
            &setup.owned,
            &[crate::io::bpf_object::BpfProgram::Xdp],
        )
        .expect("load");
        attach_by_netlink(stale.program_fd().expect("program fd"), lan_ifindex);
        drop(stale);
        let stale = attached_program(lan_ifindex);
        let path = XdpDataPath::start_with(Arc::new(OneHostNat), &setup, false);
        (stale, path)
    });
    assert_ne!(
        stale, 0,
        "the stale program stays attached after its loader is gone"
    );
    let path = path.expect("start over a stale xwan program");
    let through = ping(&bed.host, &format!("-c 20 -i 0.005 -W 2 -e 40000 {ISP}"));
    let report = path.stop().expect("stop");
    assert_eq!(through, 20);
    assert_eq!(report.frames_leaked, 0);
    // The link goes when its last file reference does: a child process that
    // another test forked in that instant holds one until it execs.
    let detached = (0..100).any(|_| {
        let gone = bed.in_router(move || attached_program(lan_ifindex)) == 0;
        if !gone {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        gone
    });
    assert!(detached, "nothing left attached after stop");
}

#[test]
fn another_programs_xdp_is_left_alone() {
    let bed = Testbed::new();
    let setup = bed.setup();
    let lan_ifindex = setup.interfaces[0].ifindex;
    let (foreign, result, after) = bed.in_router(move || {
        let foreign = load_pass_program();
        attach_by_netlink(foreign.as_raw_fd(), lan_ifindex);
        let id = attached_program(lan_ifindex);
        let result = XdpDataPath::start_with(Arc::new(OneHostNat), &setup, false).map(|_| ());
        (id, result, attached_program(lan_ifindex))
    });
    let err = result.expect_err("someone else's XDP program must not be replaced");
    assert!(matches!(err, XdpError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("xdp off"),
        "says what to do: {err}"
    );
    assert_eq!(after, foreign, "the other program is still attached");
}

/// A program named `foreign` that returns XDP_PASS.
fn load_pass_program() -> std::os::fd::OwnedFd {
    use libbpf_rs::libbpf_sys;
    use std::os::fd::FromRawFd;
    // SAFETY: bpf_insn is plain old data; all-zero is `mov r0, r0`-shaped filler we overwrite.
    let mut insns: [libbpf_sys::bpf_insn; 2] = unsafe { std::mem::zeroed() };
    insns[0].code = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: r0 = imm
    insns[0].imm = 2; // XDP_PASS
    insns[1].code = 0x95; // BPF_JMP | BPF_EXIT
                          // SAFETY: name, license and the instructions outlive the call; no options.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            c"foreign".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            std::ptr::null_mut(),
        )
    };
    assert!(fd >= 0, "bpf_prog_load: {fd}");
    // SAFETY: bpf_prog_load returned a new descriptor nothing else owns.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

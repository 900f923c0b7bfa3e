use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::LazyLock;

use super::discovery::{port_range_advice, Discovered};
use super::*;
use crate::config::PortRange;
use crate::io::afpacket::KernelFilter;
use crate::io::system::netns::{enter_named, TestNetns};
use crate::io::system::Link;
use crate::io::ZeroCopy;
use crate::router::Port;
use crate::testing::TWO_UPLINKS;
use ipnet::Ipv4Net;

/// [`TWO_UPLINKS`] with rules (a bypass after a pinning rule among them),
/// forwards, the NAT range and no state file.
static CONFIG: LazyLock<String> = LazyLock::new(|| format!("{TWO_UPLINKS}{EXTRAS}"));

const EXTRAS: &str = r#"
[[rule]]
name = "docs-direct"
dst = ["198.51.100.0/24"]
action = "bypass"

[[rule]]
name = "https-via-isp2"
proto = "tcp"
dst_port = "443"
action = "isp2"

[[rule]]
name = "after-a-pin"
dst = ["192.0.2.0/24"]
action = "bypass"

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.10:80"

[[forward]]
proto = "udp"
port = 5353
to = "192.168.50.10:5353"
wan = ["isp2"]

[nat]
ports = "20000-59999"

[control]
state = "off"
"#;

fn config(text: &str) -> Config {
    Config::from_toml(text, Path::new("test.toml")).expect("valid test config")
}

fn fake_link(name: &str, last: u8) -> Link {
    Link {
        name: name.into(),
        ifindex: u32::from(last),
        mac: [2, 0, 0, 0, 0, last],
        mtu: 1500,
        rx_queues: 1,
        up: true,
        running: true,
    }
}

#[test]
fn port_range_advice_prefers_ports_above_the_nat_range() {
    let advice = |lo, hi| port_range_advice(PortRange { lo, hi });
    assert!(advice(20000, 59999).contains("ip_local_port_range=\"60000 65535\""));
    assert!(advice(30000, 65535).contains("ip_local_port_range=\"1024 29999\""));
    assert!(advice(1024, 65000).starts_with("narrow [nat] ports"));
    let err = RunError::PortRangeOverlap {
        kernel: PortRange {
            lo: 32768,
            hi: 60999,
        },
        nat: PortRange {
            lo: 20000,
            hi: 59999,
        },
        advice: advice(20000, 59999),
    };
    assert!(
        err.to_string().starts_with(
            "net.ipv4.ip_local_port_range (32768 60999) overlaps [nat] ports (20000-59999): "
        ),
        "{err}"
    );
}

/// A destination-only bypass rule after a rule of another action: its
/// prefixes that the earlier rule cannot match are the XDP program's to pass.
#[test]
fn bypass_prefixes_no_earlier_rule_can_match_are_passed_by_the_program() {
    let rules = r#"
[[rule]]
name = "docs-via-isp1"
dst = ["203.0.113.0/24"]
action = "isp1"

[[rule]]
name = "vpn"
dst = ["10.0.0.0/8", "203.0.113.128/25"]
action = "bypass"

[[rule]]
name = "web"
proto = "tcp"
dst_port = "443"
action = "isp2"

[[rule]]
name = "after-any"
dst = ["172.16.0.0/12"]
action = "bypass"
"#;
    let config = config(&format!("{TWO_UPLINKS}{rules}"));
    let owned = owned_traffic(&config, &[]);
    assert_eq!(owned.bypass, vec!["10.0.0.0/8".parse::<Ipv4Net>().unwrap()]);
}

#[test]
fn owned_traffic_follows_the_config() {
    let config = config(&CONFIG);
    let found = Discovered {
        lan: fake_link("lan0", 1),
        wans: vec![fake_link("wan1", 2), fake_link("wan2", 3)],
        local_addresses: vec![Ipv4Addr::new(192, 168, 50, 1)],
    };
    let owned = owned_traffic(&config, &found.local_addresses);
    assert_eq!(owned.lan_networks, config.lan.networks);
    // Only the bypass rule ahead of the pinning rule (which matches any
    // destination) is unconditional.
    assert_eq!(
        owned.bypass,
        vec!["198.51.100.0/24".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(
        owned.wan_addresses,
        [Ipv4Addr::new(198, 18, 1, 2), Ipv4Addr::new(198, 18, 2, 2)]
    );
    assert_eq!(
        owned.tcp_forwards,
        [
            (Ipv4Addr::new(198, 18, 1, 2), 8080),
            (Ipv4Addr::new(198, 18, 2, 2), 8080)
        ]
    );
    assert_eq!(owned.udp_forwards, [(Ipv4Addr::new(198, 18, 2, 2), 5353)]);
    assert_eq!(
        owned.nat_ports,
        PortRange {
            lo: 20000,
            hi: 59999
        }
    );

    let interfaces = interfaces(&found);
    let ports: Vec<(&str, Port)> = interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.port))
        .collect();
    assert_eq!(
        ports,
        [
            ("lan0", Port::Lan),
            ("wan1", Port::Wan(0)),
            ("wan2", Port::Wan(1))
        ]
    );
}

#[test]
fn discovery_names_what_is_missing() {
    let ns = TestNetns::new("rt-disc");
    let config = config(&CONFIG);
    ns.ip(&[
        "link", "add", "lan0", "type", "veth", "peer", "name", "wan1",
    ]);
    let err = ns.run(|| discover(&config)).err().expect("no wan2");
    assert_eq!(err.to_string(), "interface wan2 not found");

    ns.ip(&[
        "link", "add", "wan2", "type", "veth", "peer", "name", "other",
    ]);
    ns.ip(&["addr", "add", "198.18.1.2/24", "dev", "wan1"]);
    let err = ns
        .run(|| discover(&config))
        .err()
        .expect("no address on wan2");
    assert_eq!(
        err.to_string(),
        "address 198.18.2.2 is not configured on interface wan2"
    );

    ns.ip(&["addr", "add", "198.18.2.2/24", "dev", "wan2"]);
    let found = ns.run(|| discover(&config)).expect("everything there");
    assert_eq!(found.wans[1].name, "wan2");
    assert!(found
        .local_addresses
        .contains(&Ipv4Addr::new(198, 18, 2, 2)));
}

/// Sets `net.ipv4.ip_local_port_range` in the test namespace.
fn set_local_port_range(ns: &TestNetns, value: &str) {
    let out = ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv4.ip_local_port_range={value}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kernel_port_range_must_leave_the_nat_range_alone() {
    let ns = TestNetns::new("rt-ports");
    let nat = PortRange {
        lo: 20000,
        hi: 59999,
    };
    let set = |value: &str| set_local_port_range(&ns, value);
    let explicit = config(&CONFIG);
    assert_eq!(explicit.nat.ports, nat);
    set("32768 60999");
    let err = ns.run(|| fit_nat_ports(&explicit)).expect_err("overlap");
    assert!(
        err.to_string()
            .contains("sysctl -w net.ipv4.ip_local_port_range=\"60000 65535\""),
        "{err}"
    );
    set("60000 65535");
    let fitted = ns.run(|| fit_nat_ports(&explicit)).expect("no overlap");
    assert_eq!(fitted.nat.ports, nat);
}

#[test]
fn the_default_nat_range_avoids_a_stock_kernels_ephemeral_ports() {
    let ns = TestNetns::new("rt-defports");
    let set = |value: &str| set_local_port_range(&ns, value);
    let default = config(&CONFIG.replace("[nat]\nports = \"20000-59999\"\n", ""));
    assert!(!default.nat.ports_set);
    set("32768 60999");
    let fitted = ns.run(|| fit_nat_ports(&default)).expect("narrowed");
    assert_eq!(
        fitted.nat.ports,
        PortRange {
            lo: 20000,
            hi: 32767
        }
    );
    set("60000 65535");
    let fitted = ns.run(|| fit_nat_ports(&default)).expect("clear");
    assert_eq!(fitted.nat.ports, crate::config::DEFAULT_NAT_PORTS);
    // Nothing sensible left: the refusal, with its advice.
    set("20500 59500");
    let err = ns.run(|| fit_nat_ports(&default)).expect_err("overlap");
    assert!(
        err.to_string()
            .contains("overlaps [nat] ports (20000-59999)"),
        "{err}"
    );
}

/// The whole of `xwan run --io packet` in namespaces: a LAN host, the router, and
/// two ISPs that each also hold the "internet" server 203.0.113.10 (a UDP echo that
/// answers with the source address it saw). The router namespace forwards
/// (ip_forward = 1), so only the kernel filter keeps it from also forwarding the
/// LAN's datagrams un-NATed.
#[test]
fn runs_in_packet_mode_and_cleans_up() {
    let host = TestNetns::new("rt-h");
    let router = TestNetns::new("rt-r");
    let isps = [TestNetns::new("rt-i1"), TestNetns::new("rt-i2")];
    router.veth("lan0", &host, "eth0");
    router.ip(&["addr", "add", "192.168.50.1/24", "dev", "lan0"]);
    router.ip(&["link", "set", "lan0", "up"]);
    host.ip(&["addr", "add", "192.168.50.10/24", "dev", "eth0"]);
    host.ip(&["link", "set", "eth0", "up"]);
    host.ip(&["route", "add", "default", "via", "192.168.50.1"]);
    // Every veth keeps its default offloads: the host's UDP checksums arrive
    // partial, and TCP crosses each veth as 64 KiB TSO super-frames.
    for (i, isp) in isps.iter().enumerate() {
        let n = i + 1;
        let wan = format!("wan{n}");
        router.veth(&wan, isp, "eth0");
        router.ip(&["addr", "add", &format!("198.18.{n}.2/24"), "dev", &wan]);
        router.ip(&["link", "set", &wan, "up"]);
        isp.ip(&["addr", "add", &format!("198.18.{n}.1/24"), "dev", "eth0"]);
        isp.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
        isp.ip(&["link", "set", "eth0", "up"]);
        isp.ip(&[
            "route",
            "add",
            "192.168.50.0/24",
            "via",
            &format!("198.18.{n}.2"),
        ]);
    }
    router.ip(&["route", "add", "default", "via", "198.18.1.1"]);
    for setting in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.ip_local_port_range=60000 65535",
    ] {
        let out = router.exec(&["sysctl", "-q", "-w", setting]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let stop_servers = Arc::new(AtomicBool::new(false));
    let servers: Vec<_> = isps
        .iter()
        .map(|isp| {
            let (name, stop) = (isp.name().to_owned(), Arc::clone(&stop_servers));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let handle = std::thread::spawn(move || echo_server(&name, &stop, ready_tx));
            ready_rx.recv().expect("echo server ready");
            handle
        })
        .collect();
    let sinks: Vec<_> = isps
        .iter()
        .map(|isp| {
            let (name, stop) = (isp.name().to_owned(), Arc::clone(&stop_servers));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let handle = std::thread::spawn(move || tcp_sink(&name, &stop, ready_tx));
            ready_rx.recv().expect("TCP sink ready");
            handle
        })
        .collect();

    // The workers' own GSO passthrough is what this checks: offload off, or
    // the in-kernel fast path would take the bulk transfer from them.
    let config = config(&format!("{}\n[dataplane]\noffload = \"off\"\n", *CONFIG));
    let options = RunOptions {
        io: IoMode::Packet,
        queues: None,
        zero_copy: ZeroCopy::Off,
        cpus: Vec::new(),
    };
    let running = router
        .run(|| Running::start(&config, &PathBuf::from("test.toml"), &options))
        .expect("xwan starts in the router namespace");
    assert!(
        router.run(KernelFilter::present).expect("nft list"),
        "filter installed"
    );

    // Eight flows from the host; each retries until it gets its echo (gateway and
    // host MACs are resolved in the background), for at most 5 s.
    let replies: Vec<SocketAddr> = host.run(|| {
        (0..8)
            .map(|_| {
                let socket = UdpSocket::bind("192.168.50.10:0").expect("bind");
                socket
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    assert!(Instant::now() < deadline, "no echo through xwan within 5 s");
                    socket.send_to(b"ping", "203.0.113.10:7").expect("send");
                    let mut buf = [0u8; 64];
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        assert_eq!(from, "203.0.113.10:7".parse::<SocketAddr>().unwrap());
                        let seen = std::str::from_utf8(&buf[..n]).expect("text");
                        break seen
                            .parse::<SocketAddr>()
                            .expect("the source the server saw");
                    }
                }
            })
            .collect()
    });
    // A reload whose file cannot be read is refused; the router carries on.
    let refused = running.reload().expect_err("test.toml does not exist");
    assert!(refused.starts_with("test.toml: cannot read"), "{refused}");
    // A TCP bulk transfer, compared byte for byte by the sink's digest.
    let (sent, received) = host.run(|| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(
            &"203.0.113.10:5001".parse().unwrap(),
            Duration::from_secs(3),
        )
        .expect("TCP through xwan");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let data = bulk_data();
        stream.write_all(&data).expect("send 4 MiB");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .expect("the sink's digest");
        (digest(&data), reply)
    });
    assert_eq!(received, sent, "the sink received exactly what was sent");
    let flows = running.router().stats();
    stop_servers.store(true, Ordering::Relaxed);
    for sink in sinks {
        sink.join().expect("TCP sink");
    }
    let seen_by_servers: Vec<HashSet<SocketAddr>> = servers
        .into_iter()
        .map(|h| h.join().expect("server"))
        .collect();
    let report = router.run(|| running.shutdown()).expect("clean shutdown");
    let DataPathReport::Packet(report) = report else {
        panic!("packet mode ran {report:?}")
    };
    let total = report.total();
    assert!(
        total.gso_passthrough > 0,
        "TSO super-frames were passed through whole: {total:?}"
    );
    assert_eq!(
        (total.truncated, total.unsplittable, total.tx_failed),
        (0, 0, 0),
        "{total:?}"
    );
    assert!(
        !router.run(KernelFilter::present).expect("nft list"),
        "filter removed"
    );

    let wan_addresses = [Ipv4Addr::new(198, 18, 1, 2), Ipv4Addr::new(198, 18, 2, 2)];
    for reply in &replies {
        let SocketAddr::V4(seen) = reply else {
            panic!("IPv6 source {reply}")
        };
        assert!(
            wan_addresses.contains(seen.ip()),
            "server saw {seen}, not a WAN address"
        );
        assert!(
            (20000..=59999).contains(&seen.port()),
            "port {} outside the NAT range",
            seen.port()
        );
    }
    for seen in &seen_by_servers {
        assert!(
            seen.iter().all(|s| match s {
                SocketAddr::V4(v4) => wan_addresses.contains(v4.ip()),
                SocketAddr::V6(_) => false,
            }),
            "the kernel forwarded LAN traffic itself: {seen:?}"
        );
    }
    assert!(flows.totals.forwarded > 0, "{flows:?}");
}

/// A UDP echo on 203.0.113.10:7 in the named namespace that answers with the
/// source address it saw; returns every source seen.
fn echo_server(
    ns: &str,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<()>,
) -> HashSet<SocketAddr> {
    enter_named(ns);
    let socket =
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 7)).expect("bind echo");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    ready.send(()).expect("test waiting");
    let mut seen = HashSet::new();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((_, from)) = socket.recv_from(&mut buf) {
            seen.insert(from);
            let _ = socket.send_to(from.to_string().as_bytes(), from);
        }
    }
    seen
}

/// 4 MiB of bytes that are not all alike.
fn bulk_data() -> Vec<u8> {
    (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Length and FNV-1a hash, as text.
fn digest(data: &[u8]) -> String {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{} {hash:016x}", data.len())
}

/// A TCP server on 203.0.113.10:5001 in the named namespace: reads each
/// connection to its end and answers with the digest of what it read.
fn tcp_sink(ns: &str, stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) {
    use std::io::{Read, Write};
    enter_named(ns);
    let listener = std::net::TcpListener::bind("203.0.113.10:5001").expect("bind sink");
    listener.set_nonblocking(true).unwrap();
    ready.send(()).expect("test waiting");
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut data = Vec::new();
                if stream.read_to_end(&mut data).is_ok() {
                    let _ = stream.write_all(digest(&data).as_bytes());
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

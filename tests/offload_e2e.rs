//! The in-kernel fast path (`[dataplane] offload`, on by default) in the
//! testbed, with `--io xdp` and `--io packet`, with real traffic and the peers untouched (no XDP
//! program or GRO switched on at the far ends): established packets go by
//! it (its counters rise, the workers' do not), `xwan flows` stays right,
//! idle flows still expire and busy ones do not, a failover's RST carries
//! the sequence the client expects, and a reload keeps it working. Needs root.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
#[path = "support/offload.rs"]
mod offload_support;
#[allow(dead_code)]
#[path = "support/parity.rs"]
mod parity;
#[allow(dead_code)]
mod support;

use std::io::Write;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use offload_support::{
    bulk_by_the_fast_path, connection, expect_reset, flow_to, iperf3, offload, pump, wait_entries,
};
use support::{config_toml, poll, RouterMode, Testbed, TxOffload, HOST1, SERVER1};
use xwan::control::{request, Reply, Request};

fn testbed(mode: RouterMode, extra: &str) -> Testbed {
    let mut tb = Testbed::up(TxOffload::On);
    let config = format!("{}\n{extra}", config_toml([1, 1], &tb.path("xwan.sock")));
    tb.start_router(mode, &config);
    tb
}

fn xdp_testbed(extra: &str) -> Testbed {
    testbed(RouterMode::XwanXdp, extra)
}

#[test]
fn established_tcp_takes_the_fast_path_and_flows_stay_right_xdp() {
    established_tcp_takes_the_fast_path(RouterMode::XwanXdp);
}

#[test]
fn established_tcp_takes_the_fast_path_and_flows_stay_right_packet() {
    established_tcp_takes_the_fast_path(RouterMode::XwanPacket);
}

fn established_tcp_takes_the_fast_path(mode: RouterMode) {
    let tb = testbed(mode, "");
    let report = offload(&tb);
    assert_eq!(report.state, "on");
    assert_eq!(report.hooks.len(), 3, "{report:?}");
    assert!(
        report.hooks.iter().all(|(_, hook)| hook == "tc"),
        "{report:?}"
    );

    let (client, conn) = connection(&tb, 5001, false);
    pump(&client, &conn, 1000, 1);
    assert!(wait_entries(&tb, 2), "entries: {:?}", offload(&tb));
    let size = bulk_by_the_fast_path(&tb, &client, &conn, &format!("{mode:?}"));

    let remote = format!("{SERVER1}:5001");
    let flow = flow_to(&tb, "tcp", &remote).expect("the flow is listed");
    assert_eq!(flow.state, "established");
    assert!(flow.offloaded, "{flow:?}");
    assert!(flow.idle_s <= 1, "{flow:?}");
    // Bytes counted with their Ethernet and IP headers: at least the payload.
    for bytes in [flow.bytes_out, flow.bytes_in] {
        assert!(bytes >= size as u64 && bytes < 2 * size as u64, "{flow:?}");
    }

    // A closing connection leaves the fast path, its FINs seen by the core.
    drop((client, conn));
    assert!(
        poll(Duration::from_secs(5), || offload(&tb).entries == 0),
        "{:?}",
        offload(&tb)
    );
    let closed = flow_to(&tb, "tcp", &remote).expect("the closing flow is listed");
    assert_ne!(closed.state, "established");
    assert!(!closed.offloaded, "{closed:?}");

    // iperf3 both ways (noisy: a sanity figure, not a benchmark).
    for reverse in [false, true] {
        let started = Instant::now();
        let bytes = iperf3(&tb, "h1", "inet", SERVER1, 2, reverse);
        eprintln!(
            "{mode:?}: iperf3 {} through the fast path: {:.2} Gbit/s ({:?})",
            if reverse { "download" } else { "upload" },
            bytes as f64 * 8.0 / 2.0 / 1e9,
            started.elapsed()
        );
        assert!(bytes > 0);
    }
}

#[test]
fn busy_udp_flows_stay_and_idle_ones_expire() {
    let tb = xdp_testbed("[timeouts]\nudp_s = 6\n");
    let server = tb.bind_udp("inet", SocketAddrV4::new(SERVER1, 5300));
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let client = tb.bind_udp("h1", SocketAddrV4::new(HOST1, 5301));
    let stop = AtomicBool::new(false);
    let peers = std::thread::scope(|s| {
        let echo = s.spawn(|| {
            let mut peers = std::collections::BTreeSet::new();
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = server.recv_from(&mut buf) {
                    peers.insert(peer);
                    server.send_to(&buf[..n], peer).expect("echo");
                }
            }
            peers
        });
        // Ten seconds of a datagram every 100 ms: longer than udp_s, so
        // only the fast path's counters keep the flow (and its mapping).
        let mut buf = [0u8; 1500];
        for i in 0..100u32 {
            client
                .send_to(&i.to_be_bytes(), SocketAddrV4::new(SERVER1, 5300))
                .expect("send");
            let (n, _) = client.recv_from(&mut buf).expect("the echo comes back");
            assert_eq!(&buf[..n], &i.to_be_bytes());
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        echo.join().expect("echo thread")
    });
    assert_eq!(peers.len(), 1, "one mapping all along: {peers:?}");
    let fast = offload(&tb).packets;
    assert!(fast > 100, "fast path packets {fast}");
    let remote = format!("{SERVER1}:5300");
    let flow = flow_to(&tb, "udp", &remote).expect("the flow is listed");
    assert!(
        flow.packets_out >= 100 && flow.packets_in >= 100,
        "{flow:?}"
    );
    // Idle: out of the map, then expired.
    assert!(
        poll(Duration::from_secs(15), || flow_to(&tb, "udp", &remote)
            .is_none()),
        "the idle flow expires"
    );
    assert_eq!(offload(&tb).entries, 0);
}

#[test]
fn failover_rst_carries_the_sequence_the_fast_path_saw_xdp() {
    failover_rst_carries_the_sequence_the_fast_path_saw(RouterMode::XwanXdp);
}

#[test]
fn failover_rst_carries_the_sequence_the_fast_path_saw_packet() {
    failover_rst_carries_the_sequence_the_fast_path_saw(RouterMode::XwanPacket);
}

fn failover_rst_carries_the_sequence_the_fast_path_saw(mode: RouterMode) {
    let tb = testbed(
        mode,
        "[health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\nup_after = 2\n",
    );
    let (mut client, mut conn) = connection(&tb, 5100, true);
    pump(&conn, &client, 1000, 1);
    assert!(wait_entries(&tb, 2), "entries: {:?}", offload(&tb));
    // The server's data goes by the fast path only: the core learns the
    // sequence the client expects from its counters.
    let fast0 = offload(&tb).packets;
    pump(&conn, &client, 1 << 20, 2);
    assert!(offload(&tb).packets > fast0 + 500, "{:?}", offload(&tb));

    tb.exec_ok("isp1", &["iptables", "-I", "FORWARD", "-j", "DROP"]);
    expect_reset(&mut client, Instant::now());
    assert!(
        poll(Duration::from_secs(3), || offload(&tb).entries == 0),
        "{:?}",
        offload(&tb)
    );
    let _ = conn.write_all(b"x");
}

#[test]
fn reload_keeps_established_flows_on_the_fast_path() {
    let tb = xdp_testbed("");
    let (client, conn) = connection(&tb, 5002, false);
    pump(&client, &conn, 1000, 1);
    assert!(wait_entries(&tb, 2), "entries: {:?}", offload(&tb));
    // Other weights and a smaller uplink MTU: the entries follow.
    let config = config_toml([2, 1], &tb.path("xwan.sock"))
        .replace(
            "gateway = \"198.18.1.1\"",
            "gateway = \"198.18.1.1\"\nmtu = 1400",
        )
        .replace(
            "gateway = \"198.18.2.1\"",
            "gateway = \"198.18.2.1\"\nmtu = 1400",
        );
    std::fs::write(tb.path("xwan.toml"), config).expect("write the config");
    match request(&tb.path("xwan.sock"), &Request::Reload) {
        Ok(Reply::Done { ok: true, .. }) => {}
        other => panic!("reload: {other:?}"),
    }
    let fast0 = offload(&tb).packets;
    pump(&client, &conn, 4 << 20, 2);
    pump(&conn, &client, 4 << 20, 3);
    assert!(offload(&tb).entries >= 2, "{:?}", offload(&tb));
    assert!(offload(&tb).packets > fast0 + 2000, "{:?}", offload(&tb));
}

#[test]
fn offload_off_leaves_every_packet_to_the_workers() {
    for mode in [
        RouterMode::XwanXdpOffloadOff,
        RouterMode::XwanPacketOffloadOff,
    ] {
        let mut tb = Testbed::up(TxOffload::On);
        let config = config_toml([1, 1], &tb.path("xwan.sock"));
        tb.start_router(mode, &config);
        let (client, conn) = connection(&tb, 5003, false);
        pump(&client, &conn, 1 << 20, 1);
        std::thread::sleep(Duration::from_millis(1500));
        pump(&conn, &client, 1 << 20, 2);
        let report = offload(&tb);
        assert_eq!(report.state, "off", "{mode:?}");
        assert_eq!((report.entries, report.packets), (0, 0), "{mode:?}");
    }
}

#[test]
fn ping_takes_the_fast_path_once_answered() {
    for mode in [RouterMode::XwanXdp, RouterMode::XwanPacket] {
        let tb = testbed(mode, "");
        let server = SERVER1.to_string();
        let out = tb.exec_ok("h1", &["ping", "-c", "30", "-i", "0.1", "-q", &server]);
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(summary.contains(" 0% packet loss"), "{mode:?}: {summary}");
        // After the first few pings (the flow answered, then synced within
        // 200 ms) every request and reply goes by the fast path.
        let fast = offload(&tb).packets;
        assert!(fast >= 30, "{mode:?}: fast path packets {fast}");
        let flow = flow_to(&tb, "icmp", &format!("{SERVER1}:0")).expect("the echo flow");
        assert!(flow.packets_out >= 30 && flow.packets_in >= 30, "{flow:?}");
    }
}

/// `--io xdp`: the XDP program forwards the fast path's frames itself, with
/// the core's bytes, to an interface whose driver accepts XDP frames and
/// that has no qdisc (a veth accepts them while its peer has GRO on: here
/// switched on at the peers for this test only), found at run time and
/// shown per interface: TCP both ways, UDP with and without a checksum, ICMP
/// echo. A qdisc on the interface (shaping) takes it back to TC, as do
/// partial checksums, and the peers' GRO switched off again; the connection
/// goes on throughout.
#[test]
fn xdp_forwards_itself_to_interfaces_that_accept_xdp_frames() {
    let mut tb = Testbed::up(TxOffload::Off);
    let config = config_toml([1, 1], &tb.path("xwan.sock"));
    tb.start_router(RouterMode::XwanXdp, &config);
    let hooks = |tb: &Testbed| offload(tb).hooks;
    let all_are = |tb: &Testbed, want: &str| hooks(tb).iter().all(|(_, hook)| hook == want);
    let hook_of = |tb: &Testbed, interface: &str| {
        hooks(tb)
            .into_iter()
            .find(|(name, _)| name == interface)
            .map(|(_, hook)| hook)
    };
    // The peers as a real network has them: TC everywhere.
    assert!(all_are(&tb, "tc"), "{:?}", hooks(&tb));

    let peers = [("isp1", "cust"), ("isp2", "cust"), ("sw", "rtr")];
    for (node, peer) in peers {
        tb.exec_ok(node, &["ethtool", "-K", peer, "gro", "on"]);
    }
    assert!(
        poll(Duration::from_secs(3), || all_are(&tb, "xdp")),
        "{:?}",
        hooks(&tb)
    );

    let (client, conn) = connection(&tb, 5004, true);
    pump(&client, &conn, 1000, 1);
    assert!(wait_entries(&tb, 2), "entries: {:?}", offload(&tb));
    let before = offload(&tb);
    let size = 8 << 20;
    pump(&client, &conn, size, 2);
    pump(&conn, &client, size, 3);
    let after = offload(&tb);
    let (fast, by_xdp) = (
        after.packets - before.packets,
        after.xdp_packets - before.xdp_packets,
    );
    eprintln!("8 MiB each way: {fast} packets on the fast path, {by_xdp} by the XDP program");
    // Over 5700 full segments each way, plus ACKs: nearly all by XDP (the
    // hosts' checksums are complete: transmit checksum offload off).
    assert!(by_xdp > 10_000, "{after:?}");
    assert!(by_xdp * 10 > fast * 9, "{after:?}");

    // UDP, with a checksum and without one (SO_NO_CHECK: 0 stays 0), and
    // ICMP echo: every datagram and reply back, byte for byte.
    let before = offload(&tb).xdp_packets;
    for (port, no_check) in [(5400, 0), (5401, 1)] {
        let echoed = udp_echoes(&tb, port, no_check);
        assert_eq!(echoed, 40, "port {port}: echoes back");
    }
    let server = SERVER1.to_string();
    let out = tb.exec_ok("h1", &["ping", "-c", "20", "-i", "0.05", "-q", &server]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(" 0% packet loss"), "{summary}");
    let by_xdp = offload(&tb).xdp_packets - before;
    eprintln!("UDP and ICMP: {by_xdp} packets by the XDP program");
    // 2 x 40 datagrams and their echoes after the first sync, and most of
    // the 20 pings and replies.
    assert!(by_xdp >= 2 * 2 * 30 + 20, "{:?}", offload(&tb));

    // A qdisc on wan1 (any: a shaper would be one): TC for what leaves
    // there; gone: XDP again.
    tb.exec_ok(
        "rtr",
        &["tc", "qdisc", "add", "dev", "wan1", "root", "pfifo"],
    );
    assert!(
        poll(Duration::from_secs(3), || hook_of(&tb, "wan1").as_deref()
            == Some("tc")),
        "{:?}",
        hooks(&tb)
    );
    assert_eq!(hook_of(&tb, "wan2").as_deref(), Some("xdp"));
    pump(&client, &conn, 1 << 20, 4);
    tb.exec_ok("rtr", &["tc", "qdisc", "del", "dev", "wan1", "root"]);
    assert!(
        poll(Duration::from_secs(3), || all_are(&tb, "xdp")),
        "{:?}",
        hooks(&tb)
    );

    // Checksums left partial by the hosts (transmit checksum offload on):
    // TC, which knows, rewrites those, and the bytes arrive right.
    for (node, interface) in [("h1", "eth0"), ("inet", "isp1")] {
        tb.exec_ok(node, &["ethtool", "-K", interface, "tx", "on"]);
    }
    let before = offload(&tb);
    pump(&client, &conn, size, 5);
    pump(&conn, &client, size, 6);
    let after = offload(&tb);
    assert!(after.packets - before.packets > 10_000, "{after:?}");
    assert!(
        (after.xdp_packets - before.xdp_packets) * 100 < after.packets - before.packets,
        "{after:?}"
    );

    // The peers' GRO off again: back to TC, and the connection goes on.
    for (node, peer) in peers {
        tb.exec_ok(node, &["ethtool", "-K", peer, "gro", "off"]);
    }
    assert!(
        poll(Duration::from_secs(3), || all_are(&tb, "tc")),
        "{:?}",
        hooks(&tb)
    );
    let before = offload(&tb);
    pump(&client, &conn, size, 7);
    pump(&conn, &client, size, 8);
    let after = offload(&tb);
    assert!(after.packets - before.packets > 10_000, "{after:?}");
    assert_eq!(after.xdp_packets, before.xdp_packets, "{after:?}");
}

/// UDP from h1 to an echo on SERVER1:`port` (python3 at both ends, the
/// sender with SO_NO_CHECK = `no_check`): one datagram answered, then, after
/// the fast path's sync, 40 more; how many came back unchanged.
fn udp_echoes(tb: &Testbed, port: u16, no_check: u32) -> usize {
    const ECHO: &str = "import socket,sys\ns=socket.socket(2,2)\ns.bind((sys.argv[1],int(sys.argv[2])))\ns.settimeout(5)\nwhile True:\n  try: d,a=s.recvfrom(2048)\n  except OSError: break\n  s.sendto(d,a)\n";
    const SEND: &str = "import socket,sys,time\ns=socket.socket(2,2)\ns.setsockopt(1,11,int(sys.argv[3]))\ns.settimeout(2)\nto=(sys.argv[1],int(sys.argv[2]))\ns.sendto(b'first',to); s.recvfrom(2048)\ntime.sleep(0.6)\nok=0\nfor i in range(40):\n  d=bytes([i])*1000\n  s.sendto(d,to)\n  try: ok+=s.recvfrom(2048)[0]==d\n  except OSError: pass\nprint(ok)\n";
    let server = SERVER1.to_string();
    let port = port.to_string();
    let mut echo = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &tb.ns("inet"),
            "python3",
            "-c",
            ECHO,
            &server,
            &port,
        ])
        .spawn()
        .expect("start the echo");
    std::thread::sleep(Duration::from_millis(300));
    let no_check = no_check.to_string();
    let out = tb.exec_ok("h1", &["python3", "-c", SEND, &server, &port, &no_check]);
    let _ = echo.kill();
    let _ = echo.wait();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the sender's count")
}

/// `offload = "tc"` keeps TC even for interfaces that accept XDP frames
/// (GRO on at the peers' veths).
#[test]
fn tc_setting_keeps_tc_for_interfaces_that_accept_xdp_frames() {
    let tb = xdp_testbed("[dataplane]\noffload = \"tc\"\n");
    for (node, peer) in [("isp1", "cust"), ("sw", "rtr")] {
        tb.exec_ok(node, &["ethtool", "-K", peer, "gro", "on"]);
    }
    let (client, conn) = connection(&tb, 5005, true);
    pump(&client, &conn, 1000, 1);
    assert!(wait_entries(&tb, 2), "entries: {:?}", offload(&tb));
    // Several syncs later (200 ms each): still TC, and TC forwards.
    std::thread::sleep(Duration::from_secs(1));
    pump(&client, &conn, 1 << 20, 2);
    let report = offload(&tb);
    assert!(
        report.hooks.iter().all(|(_, hook)| hook == "tc"),
        "{report:?}"
    );
    assert!(report.packets > 500, "{report:?}");
    assert_eq!(report.xdp_packets, 0, "{report:?}");
}

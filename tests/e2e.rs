//! End-to-end tests: real traffic through the router in a testbed of network
//! namespaces (`testbed/testbed.sh`). They need root: `cargo test --test e2e`.
//!
//! Every scenario runs for each router mode, with transmit checksum offload
//! on and off at the LAN hosts and servers, and in both xwan modes once more
//! with the in-kernel fast path off (`[dataplane] offload = "off"`; on is the
//! default). Which uplink a connection took is
//! what the server sees as its peer's address (the router's WAN address after
//! SNAT); the ISPs drop packets whose source is not their customer's address,
//! so a reply leaving by the wrong WAN fails.

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};

use support::{config_toml, ip_of, RouterMode, Testbed, TxOffload, HOST1, SERVER1, WAN1, WAN2};

/// For each scenario `fn name(RouterMode, TxOffload)`, a module `name` with
/// one test per mode and offload setting.
macro_rules! matrix {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::{RouterMode, TxOffload};

            #[test]
            fn kernel_tx_on() {
                super::$scenario(RouterMode::Kernel, TxOffload::On);
            }

            #[test]
            fn kernel_tx_off() {
                super::$scenario(RouterMode::Kernel, TxOffload::Off);
            }

            #[test]
            fn xwan_xdp_tx_on() {
                super::$scenario(RouterMode::XwanXdp, TxOffload::On);
            }

            #[test]
            fn xwan_xdp_tx_off() {
                super::$scenario(RouterMode::XwanXdp, TxOffload::Off);
            }

            #[test]
            fn xwan_packet_tx_on() {
                super::$scenario(RouterMode::XwanPacket, TxOffload::On);
            }

            #[test]
            fn xwan_packet_tx_off() {
                super::$scenario(RouterMode::XwanPacket, TxOffload::Off);
            }

            #[test]
            fn xwan_xdp_offload_off() {
                super::$scenario(RouterMode::XwanXdpOffloadOff, TxOffload::On);
            }

            #[test]
            fn xwan_packet_offload_off() {
                super::$scenario(RouterMode::XwanPacketOffloadOff, TxOffload::On);
            }

            #[test]
            fn xwan_auto() {
                super::$scenario(RouterMode::XwanAuto, TxOffload::On);
            }

            // Each fallback, on any kernel (XWAN_TEST_ABSENT).
            #[test]
            fn xwan_auto_without_xdp_or_tcx() {
                let absent = "xdp-program,af-xdp,tcx,rt-sched";
                super::$scenario(RouterMode::XwanAbsent { io: "auto", absent }, TxOffload::On);
            }

            #[test]
            fn xwan_xdp_without_tc_program() {
                let absent = "tc-program";
                super::$scenario(RouterMode::XwanAbsent { io: "xdp", absent }, TxOffload::On);
            }

            #[test]
            fn xwan_xdp_without_xdp_features() {
                let absent = "xdp-features,xdp-meta";
                super::$scenario(RouterMode::XwanAbsent { io: "xdp", absent }, TxOffload::Off);
            }

            #[test]
            fn xwan_packet_without_socket_filter() {
                let absent = "socket-filter";
                super::$scenario(RouterMode::XwanAbsent { io: "packet", absent }, TxOffload::On);
            }
        }
    )*};
}

matrix!(
    ping_crosses_the_router,
    nth_splits_equal_weights_evenly,
    nth_splits_two_to_one_exactly,
    https_rule_pins_isp2,
    bulk_tcp_both_ways_arrives_intact,
    udp_request_reply,
    port_forward_replies_leave_by_the_ingress_wan,
);

/// A testbed whose router runs the test config with these uplink weights.
fn routed_testbed(mode: RouterMode, tx: TxOffload, weights: [u32; 2]) -> Testbed {
    let mut testbed = Testbed::up(tx);
    let config = config_toml(weights, &testbed.path("xwan.sock"));
    testbed.start_router(mode, &config);
    testbed
}

fn ping_crosses_the_router(mode: RouterMode, tx: TxOffload) {
    let tb = routed_testbed(mode, tx, [1, 1]);
    let out = tb.exec_ok(
        "h1",
        &[
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "203.0.113.10",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 received"), "{stdout}");
}

/// Open `count` TCP connections from h1 to `server`, one after another, each
/// carrying a byte each way; how many the server saw from each peer address.
fn peers_of_connections(
    tb: &Testbed,
    server: SocketAddrV4,
    count: usize,
) -> BTreeMap<Ipv4Addr, usize> {
    let listener = tb.listen_tcp("inet", server);
    let mut seen = BTreeMap::new();
    for i in 0..count {
        let mut client = tb
            .connect_tcp("h1", server)
            .unwrap_or_else(|e| panic!("connection {i} to {server}: {e}"));
        let (mut conn, peer) = listener.accept();
        let byte = [u8::try_from(i % 256).unwrap_or(0)];
        let mut buf = [0u8; 1];
        client.write_all(&byte).expect("client sends");
        conn.read_exact(&mut buf).expect("server receives");
        conn.write_all(&buf).expect("server answers");
        client.read_exact(&mut buf).expect("client receives");
        assert_eq!(buf, byte);
        *seen.entry(ip_of(peer)).or_default() += 1;
    }
    seen
}

fn nth_splits_equal_weights_evenly(mode: RouterMode, tx: TxOffload) {
    let tb = routed_testbed(mode, tx, [1, 1]);
    let seen = peers_of_connections(&tb, SocketAddrV4::new(SERVER1, 5000), 60);
    assert_eq!(seen, BTreeMap::from([(WAN1, 30), (WAN2, 30)]));
}

fn nth_splits_two_to_one_exactly(mode: RouterMode, tx: TxOffload) {
    let tb = routed_testbed(mode, tx, [2, 1]);
    let seen = peers_of_connections(&tb, SocketAddrV4::new(SERVER1, 5000), 60);
    assert_eq!(seen, BTreeMap::from([(WAN1, 40), (WAN2, 20)]));
}

fn https_rule_pins_isp2(mode: RouterMode, tx: TxOffload) {
    let tb = routed_testbed(mode, tx, [1, 1]);
    let seen = peers_of_connections(&tb, SocketAddrV4::new(SERVER1, 443), 12);
    assert_eq!(seen, BTreeMap::from([(WAN2, 12)]));
}

/// `got` equals `want`; on a mismatch, says where (not 16 MiB of bytes).
fn bulk_tcp_both_ways_arrives_intact(mode: RouterMode, tx: TxOffload) {
    let tb = routed_testbed(mode, tx, [1, 1]);
    support::bulk::both_ways_intact(&tb, 16 << 20);
}

fn udp_request_reply(mode: RouterMode, tx: TxOffload) {
    let tb = routed_testbed(mode, tx, [1, 1]);
    let server_addr = SocketAddrV4::new(SERVER1, 5353);
    let server = tb.bind_udp("inet", server_addr);
    let mut seen: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut buf = [0u8; 64];
    // Every client socket stays open until the end: a closed one's port may
    // be handed out again, and a request from it would belong to the earlier
    // flow (the kernel's conntrack entry or xwan's flow) instead of opening a
    // new one, which once showed as 6 requests via one uplink and 4 via the
    // other.
    let mut clients = Vec::new();
    for i in 0..10 {
        // A new socket on a port no earlier request used, so a new flow.
        let client = tb.bind_udp("h1", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        let request = format!("request {i}");
        client
            .send_to(request.as_bytes(), server_addr)
            .expect("send the request");
        let (len, peer) = server.recv_from(&mut buf).expect("the request arrives");
        assert_eq!(&buf[..len], request.as_bytes());
        *seen.entry(ip_of(peer)).or_default() += 1;
        let reply = format!("reply {i}");
        server
            .send_to(reply.as_bytes(), peer)
            .expect("send the reply");
        let (len, from) = client.recv_from(&mut buf).expect("the reply arrives");
        assert_eq!(&buf[..len], reply.as_bytes());
        assert_eq!(from, server_addr.into());
        clients.push(client);
    }
    assert_eq!(seen, BTreeMap::from([(WAN1, 5), (WAN2, 5)]));
}

fn port_forward_replies_leave_by_the_ingress_wan(mode: RouterMode, tx: TxOffload) {
    let tb = routed_testbed(mode, tx, [1, 1]);
    let listener = tb.listen_tcp("h1", SocketAddrV4::new(HOST1, 80));
    // inet reaches 198.18.1.0/24 through isp1 and 198.18.2.0/24 through isp2,
    // from its address on that link.
    let ways = [
        (WAN1, Ipv4Addr::new(198, 18, 11, 2)),
        (WAN2, Ipv4Addr::new(198, 18, 12, 2)),
    ];
    for (wan, client_addr) in ways {
        for round in 0..3 {
            let target = SocketAddrV4::new(wan, 8080);
            let mut client = tb
                .connect_tcp("inet", target)
                .unwrap_or_else(|e| panic!("round {round}: connect to {target}: {e}"));
            let (mut conn, peer) = listener.accept();
            assert_eq!(
                ip_of(peer),
                client_addr,
                "the forward keeps the client's address"
            );
            let request = format!("hello via {wan} #{round}");
            client.write_all(request.as_bytes()).expect("send");
            let mut buf = vec![0u8; request.len()];
            conn.read_exact(&mut buf).expect("the request arrives");
            assert_eq!(buf, request.as_bytes());
            conn.write_all(b"answer").expect("answer");
            let mut answer = [0u8; 6];
            client
                .read_exact(&mut answer)
                .expect("the answer comes back");
            assert_eq!(&answer, b"answer");
        }
    }
}

/// The ISPs' source filter, which the port-forward test relies on: a packet
/// from the router's WAN2 address sent through ISP1 is lost.
#[test]
fn testbed_isps_drop_sources_of_the_other_wan() {
    let tb = Testbed::up(TxOffload::On);
    tb.exec_ok(
        "rtr",
        &["ip", "route", "add", "default", "via", "198.18.1.1"],
    );
    let ping_from = |source: &str| {
        tb.exec(
            "rtr",
            &[
                "ping",
                "-n",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                source,
                "203.0.113.10",
            ],
        )
    };
    assert!(ping_from("198.18.1.2").status.success());
    assert!(!ping_from("198.18.2.2").status.success());
}

/// Dropping a testbed removes all of its namespaces.
#[test]
fn testbed_drop_removes_every_namespace() {
    let list = || {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tb = Testbed::up(TxOffload::Off);
    let prefix = format!("{}-", tb.prefix());
    let ours = |names: &str| names.lines().filter(|l| l.starts_with(&prefix)).count();
    assert_eq!(ours(&list()), 7, "rtr, sw, isp1, isp2, inet, h1, h2");
    drop(tb);
    assert_eq!(ours(&list()), 0);
}

/// Applying the kernel recipe again replaces the first one: same rules, and
/// the router still forwards.
#[test]
fn kernel_recipe_applies_twice() {
    let mut tb = Testbed::up(TxOffload::On);
    let config = config_toml([2, 1], &tb.path("xwan.sock"));
    let state = |tb: &Testbed| {
        let rules = tb.exec_ok("rtr", &["iptables-save"]).stdout;
        let text = String::from_utf8_lossy(&rules);
        let rules: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with('-'))
            .map(str::to_string)
            .collect();
        let ip_rules = tb.exec_ok("rtr", &["ip", "rule", "show"]).stdout;
        (rules, ip_rules)
    };
    tb.start_router(RouterMode::Kernel, &config);
    let first = state(&tb);
    tb.start_router(RouterMode::Kernel, &config);
    assert_eq!(state(&tb), first);
    let seen = peers_of_connections(&tb, SocketAddrV4::new(SERVER1, 5000), 3);
    assert_eq!(seen, BTreeMap::from([(WAN1, 2), (WAN2, 1)]));
}

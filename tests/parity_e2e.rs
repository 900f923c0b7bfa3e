//! Parity with the kernel recipe (issue 12): what the kernel recipe finishes,
//! xwan finishes in both modes, each case run against the kernel recipe,
//! `xwan --io xdp` and `xwan --io packet` with real tools, on the testbed,
//! whose router namespace has no default route. In xdp mode every case ends
//! by checking that no frame was lost for want of the kernel: whatever the
//! core left to it went through the punt device. Needs root.

// Shared with the other end-to-end suites; not every helper is used here.
#[path = "support/parity.rs"]
mod parity;
#[allow(dead_code)]
mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread;

use parity::{assert_nothing_lost, config_with, hops};
use support::{
    exchange, ip_of, pattern, RouterMode, Testbed, TxOffload, HOST1, SERVER1, WAN1, WAN2,
};

/// For each case `fn name(RouterMode)`, a module `name` with one test per mode.
macro_rules! modes {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::RouterMode;

            #[test]
            fn kernel() {
                super::$case(RouterMode::Kernel);
            }

            #[test]
            fn xwan_xdp() {
                super::$case(RouterMode::XwanXdp);
            }

            #[test]
            fn xwan_packet() {
                super::$case(RouterMode::XwanPacket);
            }
        }
    )*};
}

modes!(
    hairpin_to_each_wan_address,
    fragmented_udp_reply_arrives_whole,
    frag_needed_names_the_uplink_interface_mtu,
    traceroute_shows_router_isp_server,
    bypass_rule_after_another_rule_reaches_the_kernel,
);

/// A testbed with the router started in `mode` on `config_with(extra)`.
fn routed(mode: RouterMode, extra: &str, before: impl FnOnce(&Testbed)) -> Testbed {
    let mut tb = Testbed::up(TxOffload::On);
    before(&tb);
    let config = config_with(&tb, extra);
    tb.start_router(mode, &config);
    tb
}

/// h2 reaches h1's server through the port forward on each WAN address.
fn hairpin_to_each_wan_address(mode: RouterMode) {
    let tb = routed(mode, "", |_| {});
    let listener = tb.listen_tcp("h1", SocketAddrV4::new(HOST1, 80));
    for (wan, seed) in [(WAN1, 1), (WAN2, 2)] {
        let client = tb
            .connect_tcp("h2", SocketAddrV4::new(wan, 8080))
            .unwrap_or_else(|e| panic!("{mode:?}: h2 -> {wan}:8080: {e}"));
        let (server, _) = listener.accept();
        let request = pattern(20_000, seed);
        let reply = pattern(30_000, seed + 10);
        let served = thread::scope(|s| {
            let served = s.spawn(|| exchange(&server, &reply));
            let got = exchange(&client, &request);
            assert!(got == reply, "{mode:?}: the reply through {wan} differs");
            served.join().expect("server thread")
        });
        assert!(
            served == request,
            "{mode:?}: the request through {wan} differs"
        );
    }
    assert_nothing_lost(&tb, mode, &[]);
}

/// A small UDP request answered with 4000 bytes, which reach the router in
/// fragments, arrives byte for byte.
fn fragmented_udp_reply_arrives_whole(mode: RouterMode) {
    let tb = routed(mode, "", |_| {});
    let server_addr = SocketAddrV4::new(SERVER1, 7000);
    let server = tb.bind_udp("inet", server_addr);
    let client = tb.bind_udp("h1", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let reply = pattern(4000, 7);
    thread::scope(|s| {
        let answered = s.spawn(|| {
            let mut buf = [0u8; 64];
            let (n, peer) = server.recv_from(&mut buf).expect("the request arrives");
            assert_eq!(&buf[..n], b"4000 please");
            server.send_to(&reply, peer).expect("send the reply");
            ip_of(peer)
        });
        client
            .send_to(b"4000 please", server_addr)
            .expect("send the request");
        let mut buf = vec![0u8; 65536];
        let (n, from) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{mode:?}: no reply: {e}"));
        assert_eq!(ip_of(from), SERVER1);
        assert!(
            buf[..n] == reply[..],
            "{mode:?}: {n} bytes, not the 4000 sent"
        );
        let peer = answered.join().expect("server thread");
        assert!(
            peer == WAN1 || peer == WAN2,
            "SNATed to a WAN address: {peer}"
        );
    });
    assert_nothing_lost(&tb, mode, &["fragment_out_of_order", "too_big"]);
}

/// wan1's interface MTU is 1400 (set on the router's interface only); a LAN
/// host pinging with DF and a 1450-byte packet out isp1 is told the MTU.
fn frag_needed_names_the_uplink_interface_mtu(mode: RouterMode) {
    let icmp_via_isp1 = "[[rule]]\nname = \"icmp-via-isp1\"\nproto = \"icmp\"\naction = \"isp1\"\n";
    let tb = routed(mode, icmp_via_isp1, |tb| {
        tb.exec_ok("rtr", &["ip", "link", "set", "dev", "wan1", "mtu", "1400"]);
    });
    let out = tb.exec(
        "h1",
        &[
            "ping",
            "-n",
            "-M",
            "do",
            "-s",
            "1422",
            "-c",
            "1",
            "-W",
            "3",
            &SERVER1.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Frag needed") && text.contains("mtu = 1400"),
        "{mode:?}: ping -M do -s 1422 said:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let small = tb.exec(
        "h1",
        &["ping", "-n", "-c", "1", "-W", "3", &SERVER1.to_string()],
    );
    assert!(
        small.status.success(),
        "{mode:?}: a small ping still passes"
    );
    assert_nothing_lost(&tb, mode, &[]);
}

/// traceroute from a LAN host: the router, then an ISP, then the server.
fn traceroute_shows_router_isp_server(mode: RouterMode) {
    let tb = routed(mode, "", |_| {});
    let out = tb.exec_ok(
        "h1",
        &[
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "2",
            "-m",
            "6",
            &SERVER1.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (hops, flagged) = hops(&text);
    let isps = [Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 1)];
    assert!(!flagged, "{mode:?}: an answer was flagged:\n{text}");
    assert_eq!(hops.len(), 3, "{mode:?}: three hops:\n{text}");
    assert_eq!(
        hops[0],
        Some(Ipv4Addr::new(192, 168, 50, 1)),
        "{mode:?}:\n{text}"
    );
    assert!(
        hops[1].is_some_and(|h| isps.contains(&h)),
        "{mode:?}: an ISP second:\n{text}"
    );
    assert_eq!(hops[2], Some(SERVER1), "{mode:?}:\n{text}");
    assert_nothing_lost(&tb, mode, &[]);
}

/// A bypass rule after the HTTPS rule: TCP to isp1's own address is
/// forwarded by the kernel (which the router namespace lets forward; with
/// xwan, untranslated, so isp1 sees the LAN host's own address).
fn bypass_rule_after_another_rule_reaches_the_kernel(mode: RouterMode) {
    let isp1 = Ipv4Addr::new(198, 18, 1, 1);
    let bypass = format!(
        "[[rule]]\nname = \"isp1-direct\"\nproto = \"tcp\"\ndst = \"{isp1}\"\naction = \"bypass\"\n"
    );
    let tb = routed(mode, &bypass, |tb| {
        tb.exec_ok("rtr", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        tb.exec_ok(
            "isp1",
            &["ip", "route", "add", "192.168.50.0/24", "via", "198.18.1.2"],
        );
    });
    let listener = tb.listen_tcp("isp1", SocketAddrV4::new(isp1, 9000));
    let client = tb
        .connect_tcp("h1", SocketAddrV4::new(isp1, 9000))
        .unwrap_or_else(|e| panic!("{mode:?}: h1 -> {isp1}:9000: {e}"));
    let (server, peer) = listener.accept();
    // xwan leaves a bypassed connection untranslated; the recipe's SNAT rules
    // match every LAN source leaving a WAN, bypassed or not.
    let expected = if mode == RouterMode::Kernel {
        WAN1
    } else {
        HOST1
    };
    assert_eq!(ip_of(peer), expected, "{mode:?}: the address isp1 sees");
    let data = pattern(10_000, 3);
    let served = thread::scope(|s| {
        let served = s.spawn(|| exchange(&server, &data));
        assert!(
            exchange(&client, &data) == data,
            "{mode:?}: the reply differs"
        );
        served.join().expect("server thread")
    });
    assert!(served == data, "{mode:?}: the request differs");
    let punted = assert_nothing_lost(&tb, mode, &[]);
    if mode == RouterMode::XwanXdp {
        assert!(
            punted > 0,
            "the bypassed connection went through the punt device"
        );
    }
}

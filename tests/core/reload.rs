//! Reconfiguring a running router core: new settings apply to new flows at
//! once, established flows keep their uplink and mapping, flows of removed
//! port forwards are closed with an RST to the LAN host.

use xwan::router::{KernelReason, Port, Verdict};
use xwan::testing::{self, ACK, SYN, SYN_ACK};

use super::*;

/// Opens a TCP connection from HOST's `port` to SERVER:`dst_port`; returns
/// the uplink it took and its outside port.
fn connect(b: &mut Bench, port: u16, dst_port: u16) -> (u8, u16) {
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, port, dst_port, SYN, b""));
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    b.forward(
        Port::Wan(uplink),
        testing::tcp(&wan, dst_port, out.src_port, SYN_ACK, b""),
        Port::Lan,
    );
    (uplink, out.src_port)
}

#[test]
fn a_new_rule_steers_new_connections_and_leaves_established_ones_alone() {
    let mut b = Bench::new("");
    // nth over two uplinks: the first connection takes isp1.
    let (uplink, outside_port) = connect(&mut b, 40000, 443);
    assert_eq!(uplink, 0);

    let reloaded = b.router.reconfigure(&config(
        "[[rule]]\nproto = \"tcp\"\ndst_port = \"443\"\naction = \"isp2\"\n",
    ));
    assert_eq!(reloaded.forward_flows_closed, 0);

    // The established connection still leaves by isp1 with its mapping.
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, 40000, 443, ACK, b"more"));
    assert_eq!((uplink, out.src, out.src_port), (0, ISP1, outside_port));
    assert_eq!(out.payload, b"more");
    // Every new one to 443 takes isp2.
    for port in 40001..40005 {
        assert_eq!(connect(&mut b, port, 443).0, 1);
    }
    assert_eq!(b.router.stats().table.flows, 5);
}

#[test]
fn weights_and_mode_change_and_uplink_state_carries_over() {
    let mut b = Bench::new("");
    let udp = |b: &mut Bench, port: u16| {
        let lan = from_host(HOST, SERVER);
        b.forward_any_wan(testing::udp(&lan, port, 53, b"q")).0
    };
    let picks: Vec<u8> = (0..4).map(|i| udp(&mut b, 1000 + i)).collect();
    assert_eq!(picks, [0, 1, 0, 1]);

    let text = BASE_CONFIG.replacen(
        "gateway = \"198.18.1.1\"",
        "gateway = \"198.18.1.1\"\nweight = 3",
        1,
    );
    let weighted = Config::from_toml(&text, Path::new("test.toml")).unwrap();
    b.router.reconfigure(&weighted);
    let picks: Vec<u8> = (0..8).map(|i| udp(&mut b, 2000 + i)).collect();
    assert_eq!(picks.iter().filter(|u| **u == 0).count(), 6, "{picks:?}");

    // An uplink that is down stays down through a reload.
    b.router.set_uplink_up(1, false);
    b.router.reconfigure(&config(""));
    assert!(!b.router.stats().uplinks[1].up);
    assert!((0..4).all(|i| udp(&mut b, 3000 + i) == 0));
    b.router.set_uplink_up(1, true);
    assert!((0..4).any(|i| udp(&mut b, 4000 + i) == 1));
}

#[test]
fn shorter_timeouts_apply_to_existing_flows() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    b.advance(20);
    assert_eq!(
        b.router.expire(b.now),
        0,
        "the default UDP timeout is 300 s"
    );
    b.router.reconfigure(&config("[timeouts]\nudp_s = 10\n"));
    assert_eq!(b.router.expire(b.now), 1);
}

#[test]
fn a_removed_forward_closes_its_flows_with_an_rst_to_the_lan_host() {
    let forward = "[[forward]]\nproto = \"tcp\"\nport = 8080\nto = \"192.168.50.10:80\"\n";
    let mut b = Bench::new(forward);
    let wan = from_internet(0, SERVER, ISP1);
    let syn = b.forward(
        Port::Wan(0),
        testing::tcp(&wan, 33000, 8080, SYN, b""),
        Port::Lan,
    );
    assert_eq!((syn.dst, syn.dst_port), (HOST, 80));
    let host = from_host(HOST, SERVER);
    b.forward(
        Port::Lan,
        testing::tcp(&host, 80, 33000, SYN_ACK, b""),
        Port::Wan(0),
    );
    // A connection of the LAN's own stays.
    connect(&mut b, 40000, 80);
    assert_eq!(b.router.stats().table.flows, 2);

    // Same forward again: nothing closes.
    assert_eq!(
        b.router.reconfigure(&config(forward)).forward_flows_closed,
        0
    );
    let reloaded = b.router.reconfigure(&config(""));
    assert_eq!(reloaded.forward_flows_closed, 1);
    assert_eq!(reloaded.resets.len(), 1);
    let rst = testing::check(&reloaded.resets[0]).expect("a valid RST frame");
    assert_eq!((rst.src, rst.src_port), (SERVER, 33000));
    assert_eq!((rst.dst, rst.dst_port), (HOST, 80));
    assert_eq!((rst.src_mac, rst.dst_mac), (LAN_MAC, HOST_MAC));
    assert_eq!(b.router.stats().table.flows, 1);
    assert_eq!(b.router.stats().uplinks[0].nat_in_use[0], 1);

    // The port is no longer the router's to translate.
    let (verdict, _) = b.send(Port::Wan(0), testing::tcp(&wan, 33001, 8080, SYN, b""));
    assert_eq!(verdict, Verdict::Kernel(KernelReason::RouterTraffic));
}

#[test]
fn mss_clamping_follows_a_reload() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    // A SYN announcing a jumbo MSS, from a new port each time.
    let mut port = 40000;
    let mut announced_after = |b: &mut Bench| {
        port += 1;
        let syn = testing::tcp_with_options(&lan, port, 443, SYN, &testing::mss_option(9000), b"");
        let (_, out) = b.send(Port::Lan, syn);
        testing::announced_mss(&out)
    };
    assert_eq!(announced_after(&mut b), Some(9000), "off by default");
    b.router.reconfigure(&config("[nat]\nmss_clamp = 1400\n"));
    assert_eq!(announced_after(&mut b), Some(1400));
    b.router
        .reconfigure(&config("[nat]\nmss_clamp = \"auto\"\n"));
    assert_eq!(announced_after(&mut b), Some(1460), "1500 - 40");
    b.router.reconfigure(&config(""));
    assert_eq!(announced_after(&mut b), Some(9000), "off again");
}

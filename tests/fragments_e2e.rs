//! End-to-end: fragments and neighbours (issue 12), in the testbed with real
//! frames, for the kernel recipe and xwan in packet and xdp modes.
//!
//! - A 4000-byte UDP datagram without DF crossing an uplink whose link has
//!   MTU 1400 (both ends, as on a PPPoE or VPN link; `mtu = 1400` in the
//!   config): the router fragments it again and the server gets it whole.
//! - Crafted fragments sent out of order (the last first, the first last)
//!   from a LAN host and, towards a flow's mapping, from the ISP's side of
//!   an uplink: held by the router until the first comes, then translated;
//!   the receiver's socket gets the datagram byte for byte; from a LAN host
//!   to a UDP port forward on a WAN address, hairpinned to another LAN host
//!   (xdp: every TCP or UDP fragment from the LAN to a WAN address is the
//!   core's, which holds the later ones). And towards the
//!   router itself (a port of the WAN address that is neither a NAT port nor
//!   forwarded): the router's own socket gets it whole (xdp: the core holds
//!   the later fragments until the first shows it is the kernel's, then
//!   punts them all), from a WAN and from the LAN.
//! - A LAN host sending with another host's address does not attract that
//!   host's port-forwarded traffic (LAN MACs come from the neighbour table).

#[path = "support/frames.rs"]
mod frames;
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use support::{config_toml, pattern, RouterMode, Testbed, TxOffload, HOST1, SERVER1, WAN1};
use xwan::testing::{self, Addressing};

/// For each scenario `fn name(RouterMode)`, a module `name` with one test
/// per mode in `$modes`.
macro_rules! modes {
    ($($scenario:ident: [$($mode:ident),*]),* $(,)?) => {$(
        mod $scenario {
            $(
                #[test]
                #[allow(non_snake_case)]
                fn $mode() {
                    super::$scenario(super::RouterMode::$mode);
                }
            )*
        }
    )*};
}

modes!(
    a_big_datagram_without_df_is_fragmented_for_a_smaller_uplink_mtu: [Kernel, XwanPacket, XwanXdp],
    out_of_order_fragments_from_the_lan_arrive_whole: [Kernel, XwanPacket, XwanXdp],
    out_of_order_fragments_from_a_wan_arrive_whole: [Kernel, XwanPacket, XwanXdp],
    out_of_order_fragments_hairpinned_to_a_forward_arrive_whole: [Kernel, XwanPacket, XwanXdp],
    out_of_order_fragments_to_the_router_itself_arrive_whole: [Kernel, XwanPacket, XwanXdp],
    out_of_order_fragments_from_the_lan_to_a_wan_address_reach_the_router: [Kernel, XwanPacket, XwanXdp],
    a_spoofing_lan_host_does_not_get_the_victims_forwarded_traffic: [Kernel, XwanPacket, XwanXdp],
);

/// h2, the LAN host that is not the forward's target.
const HOST2: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 11);

/// The UDP port whose traffic a rule pins to isp1.
const PINNED_PORT: u16 = 5555;

/// The test config with UDP to [`PINNED_PORT`] pinned to isp1, and isp1's
/// MTU when given.
fn config(tb: &Testbed, isp1_mtu: Option<u16>) -> String {
    let mut text = config_toml([1, 1], &tb.path("xwan.sock"));
    if let Some(mtu) = isp1_mtu {
        text = text.replacen(
            "gateway = \"198.18.1.1\"\n",
            &format!("gateway = \"198.18.1.1\"\nmtu = {mtu}\n"),
            1,
        );
    }
    text.push_str(&format!(
        "\n[[rule]]\nname = \"pinned\"\nproto = \"udp\"\ndst_port = \"{PINNED_PORT}\"\naction = \"isp1\"\n"
    ));
    text
}

fn a_big_datagram_without_df_is_fragmented_for_a_smaller_uplink_mtu(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    for (node, interface) in [("rtr", "wan1"), ("isp1", "cust")] {
        tb.exec_ok(node, &["ip", "link", "set", interface, "mtu", "1400"]);
    }
    let text = config(&tb, Some(1400));
    tb.start_router(mode, &text);
    let server = tb.bind_udp("inet", SocketAddrV4::new(SERVER1, PINNED_PORT));
    let payload = pattern(4000, 12);
    frames::send_udp_without_df(
        &tb,
        "h1",
        4000,
        &format!("{SERVER1}:{PINNED_PORT}"),
        &payload,
    );
    let mut buf = vec![0u8; 65536];
    let (n, peer) = server
        .recv_from(&mut buf)
        .expect("the datagram arrives at the server");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(WAN1), "it took isp1");
    assert_eq!(&buf[..n], &payload[..], "byte for byte");
}

/// `datagram` split into fragments of 1024 bytes of payload, last first.
fn out_of_order(datagram: &[u8], id: u16) -> Vec<Vec<u8>> {
    let mut pieces = testing::fragment(datagram, id, 1024);
    assert!(pieces.len() >= 3);
    pieces.reverse();
    pieces
}

/// A UDP datagram from the server's [`PINNED_PORT`] to `port` of isp1's
/// address, crafted with IP id `id` and sent out of order from isp1 straight
/// onto the uplink.
fn send_out_of_order_from_isp1(tb: &Testbed, port: u16, id: u16, payload: &[u8]) {
    let wan = Addressing {
        src_mac: frames::mac_of(tb, "isp1", "cust"),
        dst_mac: frames::mac_of(tb, "rtr", "wan1"),
        src: SERVER1,
        dst: WAN1,
        ttl: 60,
    };
    let mut datagram = testing::udp(&wan, PINNED_PORT, port, payload);
    testing::set_df_and_id(&mut datagram, false, id);
    frames::send_frames(tb, "isp1", "cust", &out_of_order(&datagram, id));
}

/// A UDP datagram `from` a LAN host (the namespace `host`) `to` an address,
/// crafted with IP id `id` and sent out of order from the host onto the LAN.
fn send_out_of_order_from_lan(
    tb: &Testbed,
    host: &str,
    from: SocketAddrV4,
    to: SocketAddrV4,
    id: u16,
    payload: &[u8],
) {
    let lan = Addressing {
        src_mac: frames::mac_of(tb, host, "eth0"),
        dst_mac: frames::mac_of(tb, "rtr", "lan0"),
        src: *from.ip(),
        dst: *to.ip(),
        ttl: 64,
    };
    let mut datagram = testing::udp(&lan, from.port(), to.port(), payload);
    testing::set_df_and_id(&mut datagram, false, id);
    frames::send_frames(tb, host, "eth0", &out_of_order(&datagram, id));
}

fn out_of_order_fragments_from_the_lan_arrive_whole(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb, None);
    tb.start_router(mode, &text);
    let server = tb.bind_udp("inet", SocketAddrV4::new(SERVER1, PINNED_PORT));
    let payload = pattern(3000, 21);
    send_out_of_order_from_lan(
        &tb,
        "h1",
        SocketAddrV4::new(HOST1, 4001),
        SocketAddrV4::new(SERVER1, PINNED_PORT),
        0x5151,
        &payload,
    );
    let mut buf = vec![0u8; 65536];
    let (n, peer) = server
        .recv_from(&mut buf)
        .expect("the datagram arrives at the server");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(WAN1));
    assert_eq!(&buf[..n], &payload[..], "byte for byte");
}

/// The UDP port forwarded on isp1's address to the same port of h1.
const FORWARDED_UDP: u16 = 9090;

fn out_of_order_fragments_hairpinned_to_a_forward_arrive_whole(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let mut text = config(&tb, None);
    text.push_str(&format!(
        "\n[[forward]]\nproto = \"udp\"\nport = {FORWARDED_UDP}\nto = \"{HOST1}:{FORWARDED_UDP}\"\nwan = [\"isp1\"]\n"
    ));
    tb.start_router(mode, &text);
    // h1 has talked through the router, so the router knows its MAC (the
    // core sends to LAN hosts the neighbour table has).
    tb.exec_ok("h1", &["ping", "-n", "-c", "1", "-W", "2", "203.0.113.10"]);
    std::thread::sleep(Duration::from_millis(600));
    let target = tb.bind_udp("h1", SocketAddrV4::new(HOST1, FORWARDED_UDP));
    let payload = pattern(3000, 24);
    send_out_of_order_from_lan(
        &tb,
        "h2",
        SocketAddrV4::new(HOST2, 4003),
        SocketAddrV4::new(WAN1, FORWARDED_UDP),
        0x6464,
        &payload,
    );
    let mut buf = vec![0u8; 65536];
    let (n, _) = target
        .recv_from(&mut buf)
        .expect("the datagram arrives at h1 through the forward");
    assert_eq!(&buf[..n], &payload[..], "byte for byte");
}

fn out_of_order_fragments_from_a_wan_arrive_whole(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb, None);
    tb.start_router(mode, &text);
    // A mapping: h1's request reaches the server through isp1.
    let server = tb.bind_udp("inet", SocketAddrV4::new(SERVER1, PINNED_PORT));
    let client = tb.bind_udp("h1", SocketAddrV4::new(HOST1, 4002));
    client
        .send_to(b"request", SocketAddrV4::new(SERVER1, PINNED_PORT))
        .expect("h1 sends");
    let mut buf = vec![0u8; 65536];
    let (_, peer) = server.recv_from(&mut buf).expect("the request arrives");
    let std::net::SocketAddr::V4(mapped) = peer else {
        panic!("{peer}");
    };
    assert_eq!(*mapped.ip(), WAN1);
    // The answer, crafted and sent out of order from isp1 straight onto the uplink.
    let payload = pattern(3000, 22);
    send_out_of_order_from_isp1(&tb, mapped.port(), 0x6262, &payload);
    let (n, from) = client
        .recv_from(&mut buf)
        .expect("the answer arrives at h1");
    assert_eq!(from, SocketAddrV4::new(SERVER1, PINNED_PORT).into());
    assert_eq!(&buf[..n], &payload[..], "byte for byte");
}

fn out_of_order_fragments_to_the_router_itself_arrive_whole(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb, None);
    tb.start_router(mode, &text);
    // Port 7000 of isp1's address: below the NAT range, not forwarded.
    let own = tb.bind_udp("rtr", SocketAddrV4::new(WAN1, 7000));
    let payload = pattern(3000, 23);
    send_out_of_order_from_isp1(&tb, 7000, 0x6363, &payload);
    let mut buf = vec![0u8; 65536];
    let (n, from) = own
        .recv_from(&mut buf)
        .expect("the datagram arrives at the router's own socket");
    assert_eq!(from, SocketAddrV4::new(SERVER1, PINNED_PORT).into());
    assert_eq!(&buf[..n], &payload[..], "byte for byte");
}

fn out_of_order_fragments_from_the_lan_to_a_wan_address_reach_the_router(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb, None);
    tb.start_router(mode, &text);
    // Port 7000 of isp1's address: below the NAT range, not forwarded.
    let own = tb.bind_udp("rtr", SocketAddrV4::new(WAN1, 7000));
    let payload = pattern(3000, 25);
    send_out_of_order_from_lan(
        &tb,
        "h1",
        SocketAddrV4::new(HOST1, 4004),
        SocketAddrV4::new(WAN1, 7000),
        0x6565,
        &payload,
    );
    let mut buf = vec![0u8; 65536];
    let (n, from) = own
        .recv_from(&mut buf)
        .expect("the datagram arrives at the router's own socket");
    assert_eq!(from, SocketAddrV4::new(HOST1, 4004).into());
    assert_eq!(&buf[..n], &payload[..], "byte for byte");
}

fn a_spoofing_lan_host_does_not_get_the_victims_forwarded_traffic(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb, None);
    tb.start_router(mode, &text);
    // The victim h1 has talked through the router (so the router's kernel
    // knows its MAC); then h2 sends with h1's address, from the forwarded port.
    tb.exec_ok("h1", &["ping", "-n", "-c", "1", "-W", "2", "203.0.113.10"]);
    let spoofed = Addressing {
        src_mac: frames::mac_of(&tb, "h2", "eth0"),
        dst_mac: frames::mac_of(&tb, "rtr", "lan0"),
        src: HOST1,
        dst: SERVER1,
        ttl: 64,
    };
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|i| testing::udp(&spoofed, 80, 9 + i, b"spoofed"))
        .collect();
    frames::send_frames(&tb, "h2", "eth0", &frames);
    std::thread::sleep(Duration::from_millis(600));

    // A connection to the forward reaches h1, which answers.
    let listener = tb.listen_tcp("h1", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80));
    let mut client = tb
        .connect_tcp("inet", SocketAddrV4::new(WAN1, 8080))
        .expect("the forward connects to h1");
    let (mut conn, _) = listener.accept();
    client.write_all(b"hello").expect("client sends");
    let mut got = [0u8; 5];
    conn.read_exact(&mut got).expect("h1 receives");
    assert_eq!(&got, b"hello");
    conn.write_all(b"world").expect("h1 answers");
    client.read_exact(&mut got).expect("the client receives");
    assert_eq!(&got, b"world");
}

//! IPv6 end to end, dual-stack: a LAN host reaches an internet server over
//! IPv6 and IPv4 at once through the router, in a testbed of network
//! namespaces (`testbed/testbed.sh up --ipv6`). Needs root, ip6tables,
//! nftables and dnsmasq (isp1's router advertisements):
//! `cargo test --test ipv6_e2e`.
//!
//! Which uplink carried a connection is the source address the server sees:
//! through isp1 the LAN prefix fd00:50::/64 mapped into the delegated
//! 2001:db8:100::/56 (nat6 "prefix", host bits kept), through isp2 the
//! router's one address there (nat6 "masquerade"). The ISPs drop any other
//! source, so a connection that left by the wrong WAN, or untranslated,
//! fails.
//!
//! Each scenario is a `fn(RouterMode)`, run by the kernel recipe where it
//! applies and by xwan in packet and xdp mode (in xdp mode the testbed
//! checks, as it goes down, that every frame the core left to the kernel
//! reached it through the punt device).

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
#[path = "support/offload.rs"]
mod offload_support;
#[allow(dead_code)]
#[path = "support/parity.rs"]
mod parity;
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::thread;
use std::time::{Duration, Instant};

use offload_support::{bulk_by_the_fast_path, expect_reset, flows, iperf3, offload, pump};
use support::{
    config_toml_dual, exchange, ip6_of, pattern, poll, RouterMode, Testbed, TxOffload, HOST1_6,
    SERVER1, SERVER1_6, WAN1, WAN1_6, WAN2, WAN2_6,
};

/// h1 (fd00:50::a) as the server sees it through isp1: the LAN's /64 maps
/// onto the /64 of the delegated 2001:db8:100::/56 that keeps the LAN
/// prefix's own bits 56..64 (here 0, since fd00:50::/64 is fd00:50:0:0::/64),
/// and the interface identifier is kept: 2001:db8:100::a.
const HOST1_VIA_ISP1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0xa);

#[test]
fn kernel() {
    scenario(RouterMode::Kernel);
}

#[test]
fn kernel_npt() {
    npt_scenario(RouterMode::Kernel);
}

#[test]
fn packet() {
    scenario(RouterMode::XwanPacket);
}

#[test]
fn packet_npt() {
    npt_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp() {
    scenario(RouterMode::XwanXdp);
}

#[test]
fn xdp_npt() {
    npt_scenario(RouterMode::XwanXdp);
}

/// `--io auto` with IPv6 in the configuration chooses as with IPv4 alone
/// (packet on veth, which has no zero-copy AF_XDP) and forwards both
/// families.
#[test]
fn auto() {
    scenario(RouterMode::XwanAuto);
}

#[test]
fn kernel_inbound() {
    inbound_scenario(RouterMode::Kernel);
}

#[test]
fn packet_inbound() {
    inbound_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_inbound() {
    inbound_scenario(RouterMode::XwanXdp);
}

#[test]
fn kernel_errors() {
    errors_scenario(RouterMode::Kernel);
}

#[test]
fn packet_errors() {
    errors_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_errors() {
    errors_scenario(RouterMode::XwanXdp);
}

/// A connection from the Internet to h1's outside address through isp1's
/// prefix mapping (no port forward): it reaches h1, both ways byte for
/// byte, and h1 sees the server's own address.
fn inbound_scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    let listener = tb.listen_tcp6("h1", SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 2222, 0, 0));
    let outside = SocketAddrV6::new(HOST1_VIA_ISP1, 2222, 0, 0);
    for i in 0..3u64 {
        let client = tb
            .connect_tcp6("inet", outside)
            .unwrap_or_else(|e| panic!("connection {i} to h1 through isp1's mapping: {e}"));
        let (conn, peer) = listener.accept();
        assert!(
            !matches!(peer.ip(), IpAddr::V6(a) if a.segments()[0] == 0xfd00),
            "h1 sees the Internet peer untranslated: {peer}"
        );
        let upload = pattern(32 << 10, 10 + i);
        let download = pattern(32 << 10, 20 + i);
        let (at_h1, at_server) = inbound_exchange(&conn, &client, &upload, &download);
        assert!(at_h1 == upload, "connection {i}: what h1 got differs");
        assert!(
            at_server == download,
            "connection {i}: what the server got differs"
        );
    }
}

/// On an inbound connection, `upload` from the Internet's end (`client`)
/// and `download` from h1's (`conn`) at once: what h1 got, and what the
/// Internet's end got.
fn inbound_exchange(
    conn: &std::net::TcpStream,
    client: &std::net::TcpStream,
    upload: &[u8],
    download: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    thread::scope(|s| {
        let h1 = s.spawn(|| exchange(conn, download));
        let at_server = exchange(client, upload);
        (h1.join().expect("h1 side"), at_server)
    })
}

/// The ICMPv6 errors a router owes: hop-limit expiry answered from the
/// router's LAN address (ping with hop limit 1, and traceroute6 through
/// both the router and an ISP, whose error comes back translated), and
/// packet too big over a 1400-byte uplink, after which a bulk upload
/// completes byte for byte.
fn errors_scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    for wan in ["wan1", "wan2"] {
        tb.exec_ok("rtr", &["ip", "link", "set", wan, "mtu", "1400"]);
    }
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    let server = SERVER1_6.to_string();
    let text = |out: std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let expired = text(tb.exec(
        "h1",
        &["ping", "-6", "-n", "-c", "1", "-W", "2", "-t", "1", &server],
    ));
    assert!(
        expired.contains("From fd00:50::1") && expired.contains("Time exceeded"),
        "{expired}"
    );
    let trace = text(tb.exec(
        "h1",
        &[
            "traceroute6",
            "-n",
            "-q",
            "1",
            "-w",
            "2",
            "-m",
            "5",
            &server,
        ],
    ));
    let hops: Vec<&str> = trace.lines().skip(1).collect();
    assert!(
        hops.first().is_some_and(|h| h.contains("fd00:50::1")),
        "the router is the first hop:\n{trace}"
    );
    assert!(
        hops.iter()
            .any(|h| h.contains("2001:db8:1::1") || h.contains("2001:db8:2::1")),
        "an ISP's error comes back through the router:\n{trace}"
    );
    assert!(
        hops.last().is_some_and(|h| h.contains(&server)),
        "the trace reaches the server:\n{trace}"
    );
    let too_big = text(tb.exec(
        "h1",
        &[
            "ping", "-6", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1452", &server,
        ],
    ));
    assert!(
        too_big.contains("Packet too big") && too_big.contains("mtu=1400"),
        "{too_big}"
    );
    let bulk = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 5002, 0, 0));
    let seen = tcp_connections(&tb, bulk, 2, 256 << 10);
    assert_eq!(seen.len(), 2);
}

/// TCP and UDP over IPv6 from h1, balanced 1:1 and pinned by the HTTPS
/// rule, with IPv4 beside them in the same run.
fn scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    let via = |peer: IpAddr| match peer {
        IpAddr::V6(a) if a == HOST1_VIA_ISP1 => "isp1",
        IpAddr::V6(a) if a == WAN2_6 => "isp2",
        IpAddr::V4(a) if a == WAN1 => "isp1",
        IpAddr::V4(a) if a == WAN2 => "isp2",
        other => panic!("the server saw {other}: neither uplink's address for h1"),
    };

    // UDP first: two flows, consecutive in the nth order, so one each.
    let udp = udp_flows(&tb, SocketAddrV6::new(SERVER1_6, 5353, 0, 0), 2);
    let udp: Vec<&str> = udp.into_iter().map(|p| via(IpAddr::V6(p))).collect();
    assert_eq!(count(&udp), count(&["isp1", "isp2"]), "UDP over IPv6");

    // Four balanced TCP connections: two each, whatever the phase.
    let server = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 5001, 0, 0));
    let tcp = tcp_connections(&tb, server, 4, 64 << 10);
    let tcp: Vec<&str> = tcp.into_iter().map(via).collect();
    assert_eq!(
        count(&tcp),
        count(&["isp1", "isp1", "isp2", "isp2"]),
        "TCP over IPv6"
    );

    // The HTTPS rule pins IPv6 to isp2 too.
    let https = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 443, 0, 0));
    let pinned = tcp_connections(&tb, https, 3, 16 << 10);
    assert_eq!(
        pinned.into_iter().map(via).collect::<Vec<_>>(),
        ["isp2"; 3],
        "HTTPS over IPv6"
    );

    // IPv4 in the same run: its own 1:1 balancing, the same rule.
    let server4 = SocketAddr::V4(SocketAddrV4::new(SERVER1, 5001));
    let tcp4 = tcp_connections(&tb, server4, 2, 64 << 10);
    let tcp4: Vec<&str> = tcp4.into_iter().map(via).collect();
    assert_eq!(count(&tcp4), count(&["isp1", "isp2"]), "TCP over IPv4");
    let https4 = SocketAddr::V4(SocketAddrV4::new(SERVER1, 443));
    let pinned4 = tcp_connections(&tb, https4, 1, 1024);
    assert_eq!(via(pinned4[0]), "isp2", "HTTPS over IPv4");
}

/// isp1 with nat6 = "npt": RFC 6296 onto the same 2001:db8:100::/64, so
/// the server sees h1 inside it but with a changed interface identifier
/// whose change the prefix's change cancels in the one's-complement sum (the
/// checksum-neutral mapping); isp2 masquerades as before. The kernel
/// recipe's TCP through isp1 holds here because isp1 also has the main
/// table's default route: after a SYN, conntrack sees an NPT connection's
/// packets from the LAN as INVALID, and they lose their mark (see the
/// recipe's header).
fn npt_scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock")).replacen(
        "prefix6 = ",
        "nat6 = \"npt\"\nprefix6 = ",
        1,
    );
    tb.start_router(mode, &config);
    let npt = |peer: Ipv6Addr| {
        let outside = peer.segments();
        outside[..4] == [0x2001, 0xdb8, 0x100, 0]
            && ones_sum(&outside) == ones_sum(&HOST1_6.segments())
            && peer != HOST1_VIA_ISP1
    };
    let via = |peer: IpAddr| match peer {
        IpAddr::V6(a) if npt(a) => "isp1",
        IpAddr::V6(a) if a == WAN2_6 => "isp2",
        other => panic!("the server saw {other}: neither uplink's address for h1"),
    };
    let udp = udp_flows(&tb, SocketAddrV6::new(SERVER1_6, 5353, 0, 0), 2);
    let udp: Vec<&str> = udp.into_iter().map(|p| via(IpAddr::V6(p))).collect();
    assert_eq!(count(&udp), count(&["isp1", "isp2"]), "UDP over IPv6");
    let server = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 5001, 0, 0));
    let tcp = tcp_connections(&tb, server, 4, 64 << 10);
    let tcp: Vec<&str> = tcp.into_iter().map(via).collect();
    assert_eq!(
        count(&tcp),
        count(&["isp1", "isp1", "isp2", "isp2"]),
        "TCP over IPv6"
    );
}

/// The 16-bit one's-complement sum of an address's words (0xffff and 0
/// being the same, folded to 0).
fn ones_sum(words: &[u16]) -> u16 {
    let mut sum: u32 = words.iter().map(|&w| u32::from(w)).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if sum == 0xffff {
        0
    } else {
        sum as u16
    }
}

/// How many times each uplink name occurs.
fn count<'a>(names: &[&'a str]) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(*name).or_default() += 1;
    }
    counts
}

/// Opens `connections` TCP connections from h1 to `server` (in inet), one
/// after another; on each, `size` bytes go each way at once and must arrive
/// byte for byte. The address the server saw for each.
fn tcp_connections(
    tb: &Testbed,
    server: SocketAddr,
    connections: usize,
    size: usize,
) -> Vec<IpAddr> {
    let listener = tb.listen_tcp_at("inet", server);
    (0..connections)
        .map(|i| {
            let client = tb
                .connect_tcp_to("h1", server)
                .unwrap_or_else(|e| panic!("connection {i} to {server}: {e}"));
            let (conn, peer) = listener.accept();
            let seed = 2 * i as u64;
            let upload = pattern(size, seed + 1);
            let download = pattern(size, seed + 2);
            let (at_server, at_client) = thread::scope(|s| {
                let server_side = s.spawn(|| exchange(&conn, &download));
                let at_client = exchange(&client, &upload);
                (server_side.join().expect("server side"), at_client)
            });
            assert!(
                at_server == upload,
                "connection {i} to {server}: upload differs"
            );
            assert!(
                at_client == download,
                "connection {i} to {server}: download differs"
            );
            peer.ip()
        })
        .collect()
}

/// `flows` UDP flows from h1 (each its own socket, all kept open so no port
/// is reused) to `server` (in inet): a request and a reply each, compared
/// byte for byte. The IPv6 address the server saw for each.
fn udp_flows(tb: &Testbed, server: SocketAddrV6, flows: usize) -> Vec<Ipv6Addr> {
    let listener = tb.bind_udp6("inet", server);
    let mut clients = Vec::new();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 2048];
    for i in 0..flows {
        let client = tb.bind_udp6("h1", SocketAddrV6::new(HOST1_6, 0, 0, 0));
        let request = pattern(1200, 100 + i as u64);
        client
            .send_to(&request, server)
            .unwrap_or_else(|e| panic!("flow {i}: send the request: {e}"));
        let (len, peer) = listener
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("flow {i}: the request does not arrive: {e}"));
        assert!(buf[..len] == request[..], "flow {i}: the request differs");
        let reply = pattern(1000, 200 + i as u64);
        listener.send_to(&reply, peer).expect("send the reply");
        let (len, from) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("flow {i}: the reply does not arrive: {e}"));
        assert!(buf[..len] == reply[..], "flow {i}: the reply differs");
        assert_eq!(from, SocketAddr::V6(server));
        seen.push(ip6_of(peer));
        clients.push(client);
    }
    seen
}

/// Applying the dual-stack kernel recipe again replaces the first one
/// (ip6tables, the nftables table, the IPv6 rules and tables), and the
/// router still forwards IPv6.
#[test]
fn kernel_recipe_applies_twice_dual_stack() {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    let state = |tb: &Testbed| {
        let text =
            |args: &[&str]| String::from_utf8_lossy(&tb.exec_ok("rtr", args).stdout).into_owned();
        let rules: Vec<String> = text(&["ip6tables-save"])
            .lines()
            .filter(|l| l.starts_with('-'))
            .map(str::to_string)
            .collect();
        (
            rules,
            text(&["nft", "list", "table", "ip6", "xwan_nat66"]),
            text(&["ip", "-6", "rule", "show"]),
            text(&["ip", "-6", "route", "show", "table", "101"]),
            text(&["ip", "-6", "route", "show", "table", "102"]),
        )
    };
    tb.start_router(RouterMode::Kernel, &config);
    let first = state(&tb);
    assert!(
        first.1.contains("snat prefix to 2001:db8:100::/64"),
        "{}",
        first.1
    );
    tb.start_router(RouterMode::Kernel, &config);
    assert_eq!(state(&tb), first);
    let server = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 5001, 0, 0));
    let seen = tcp_connections(&tb, server, 2, 1024);
    assert!(
        seen.contains(&IpAddr::V6(HOST1_VIA_ISP1)) && seen.contains(&IpAddr::V6(WAN2_6)),
        "{seen:?}"
    );
}

/// The testbed alone, before any router mode: the router has its SLAAC
/// address and isp1's RA default route; isp1 lets the router's own sources
/// out and drops isp2's (the anti-spoofing the uplink checks rely on).
#[test]
fn dual_stack_testbed_gives_the_router_its_isp_side() {
    let tb = Testbed::up_dual_stack(TxOffload::On);
    let addr = tb.exec_ok("rtr", &["ip", "-6", "addr", "show", "dev", "wan1"]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("inet6 2001:db8:1::2/64"),
        "{}",
        String::from_utf8_lossy(&addr.stdout)
    );
    let route = tb.exec_ok("rtr", &["ip", "-6", "route", "show", "default"]);
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.starts_with("default via fe80::1 dev wan1 proto ra"),
        "{route}"
    );
    assert_eq!(
        route.lines().count(),
        1,
        "no other IPv6 default route: {route}"
    );
    let ping_from = |source: &str| {
        tb.exec(
            "rtr",
            &[
                "ping",
                "-6",
                "-n",
                "-c",
                "1",
                "-W",
                "2",
                "-I",
                source,
                "2001:db8:ffff::10",
            ],
        )
    };
    assert!(ping_from("2001:db8:1::2").status.success());
    assert!(!ping_from("2001:db8:2::2").status.success());
    // The LAN host reaches the router.
    let out = tb.exec(
        "h1",
        &["ping", "-6", "-n", "-c", "1", "-W", "2", "fd00:50::1"],
    );
    assert!(out.status.success());
    // IPv4 as ever.
    let out = tb.exec("h1", &["ping", "-n", "-c", "1", "-W", "2", "192.168.50.1"]);
    assert!(out.status.success());
}

/// The dual-stack test config passes `xwan check` (no root needed).
#[test]
fn config_toml_dual_passes_xwan_check() {
    let dir = std::env::temp_dir().join(format!("xwan-ipv6-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let file = dir.join("dual.toml");
    std::fs::write(&file, config_toml_dual([1, 1], &dir.join("xwan.sock"))).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xwan"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .expect("run xwan check");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("prefix 2001:db8:100::/56  nat6 prefix"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ipv6 2001:db8:2::2 via fe80::1  nat6 masquerade"),
        "{stdout}"
    );
}

/// A restart (SIGTERM, then a new start) keeps IPv6 connections through
/// both uplinks, the mapped one and the masqueraded one: the state file
/// carries their flows and the hold table keeps the kernel off them in
/// between. Each transfer spans the gap and arrives byte for byte.
#[test]
fn packet_restart_keeps_ipv6_connections() {
    restart_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_restart_keeps_ipv6_connections() {
    restart_scenario(RouterMode::XwanXdp);
}

fn restart_scenario(mode: RouterMode) {
    use std::time::Duration;
    use support::restart::{paced_send, receive_all};
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    let server = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 5003, 0, 0));
    let listener = tb.listen_tcp_at("inet", server);
    let size = 512 << 10;
    let transfers: Vec<_> = (0..2u64)
        .map(|i| {
            let client = tb
                .connect_tcp_to("h1", server)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let (conn, peer) = listener.accept();
            let sender = paced_send(client, size, 40 + i, Duration::from_millis(60));
            (sender, receive_all(conn), peer.ip(), i)
        })
        .collect();
    let peers: Vec<IpAddr> = transfers.iter().map(|t| t.2).collect();
    assert!(
        peers.contains(&IpAddr::V6(HOST1_VIA_ISP1)) && peers.contains(&IpAddr::V6(WAN2_6)),
        "one connection by each uplink: {peers:?}"
    );
    thread::sleep(Duration::from_millis(500));
    tb.signal_xwan("TERM");
    tb.start_xwan_again(mode);
    for (sender, receiver, peer, i) in transfers {
        sender.join().expect("the sender");
        let got = receiver
            .join()
            .expect("the receiver")
            .unwrap_or_else(|e| panic!("the transfer from {peer} broke across the restart: {e}"));
        assert!(
            got == pattern(size, 40 + i),
            "transfer {i} from {peer} differs"
        );
    }
    let log = tb.xwan_log();
    assert!(log.contains("restored"), "{log}");
}

/// Happy Eyeballs: isp2 carries no IPv6, and isp1's IPv6 dies (its gateway
/// stops answering neighbour solicitations) while its IPv4 goes on. xwan
/// takes isp1 out of IPv6 service alone and answers new IPv6 connections at
/// once with unreachable, so `curl -6` fails at once with "couldn't connect"
/// (not a timeout), and a dual-stack `curl` given both of the server's
/// addresses gets its answer over IPv4.
#[test]
fn packet_happy_eyeballs_falls_back_to_ipv4() {
    happy_eyeballs_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_happy_eyeballs_falls_back_to_ipv4() {
    happy_eyeballs_scenario(RouterMode::XwanXdp);
}

fn happy_eyeballs_scenario(mode: RouterMode) {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    // isp2 carries IPv4 only.
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"))
        .replace("address6 = \"2001:db8:2::2\"\n", "")
        .replace("gateway6 = \"fe80::1\"\n", "");
    assert!(!config.contains("2001:db8:2::2"), "{config}");
    tb.start_router(mode, &config);
    // A dual-stack web server: one socket takes both families.
    let listener = tb.listen_tcp6("inet", SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 8000, 0, 0));
    // Three requests reach it: IPv6 before the cut, IPv4 after (the IPv6
    // attempt after the cut never leaves the router).
    let server = thread::spawn(move || {
        let mut served = 0;
        while served < 3 {
            let (mut conn, _) = listener.accept();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
            served += 1;
        }
    });
    let curl = |args: &[&str]| {
        let mut all = vec![
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{remote_ip}",
            "--connect-timeout",
            "5",
        ];
        all.extend_from_slice(args);
        tb.exec("h1", &all)
    };
    let v6_url = format!("http://[{SERVER1_6}]:8000/");
    // Both families work at first, IPv6 by isp1.
    let first = curl(&["-6", &v6_url]);
    assert!(first.status.success(), "{first:?}");
    // isp1's router stops answering neighbour solicitations, and the
    // router forgets its MAC.
    tb.exec_ok(
        "isp1",
        &[
            "ip6tables",
            "-A",
            "INPUT",
            "-i",
            "cust",
            "-p",
            "icmpv6",
            "--icmpv6-type",
            "neighbour-solicitation",
            "-j",
            "DROP",
        ],
    );
    tb.exec_ok("rtr", &["ip", "-6", "neigh", "flush", "dev", "wan1"]);
    let down6 = support::poll(Duration::from_secs(20), || {
        use xwan::control::{request, Reply, Request};
        let Ok(Reply::Status { status, .. }) = request(&tb.path("xwan.sock"), &Request::Status)
        else {
            return false;
        };
        let isp1 = &status.uplinks[0];
        isp1.up && isp1.ipv6.as_ref().is_some_and(|v6| !v6.up)
    });
    assert!(down6, "isp1 out of IPv6 service alone:\n{}", tb.xwan_log());
    let refused = curl(&["-6", &v6_url]);
    assert_eq!(
        refused.status.code(),
        Some(7),
        "curl -6 cannot connect at once (7), rather than timing out (28): {refused:?}"
    );
    let resolve = format!("web:8000:[{SERVER1_6}],{SERVER1}");
    let both = curl(&["--resolve", &resolve, "http://web:8000/"]);
    assert!(both.status.success(), "{both:?}");
    assert_eq!(
        String::from_utf8_lossy(&both.stdout),
        SERVER1.to_string(),
        "answered over IPv4"
    );
    let _ = curl(&["-4", &format!("http://{SERVER1}:8000/")]);
    server.join().expect("the server");
}

/// `prefix6 = "auto"` follows `xwan prefix6` (what a DHCPv6-PD client's
/// hook runs): without a prefix isp1 carries no IPv6 and every IPv6
/// connection takes isp2; once told, isp1 maps the LAN into it; a new
/// prefix (a redial) moves new connections onto it.
#[test]
fn packet_prefix6_follows_the_delegation() {
    prefix6_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_prefix6_follows_the_delegation() {
    prefix6_scenario(RouterMode::XwanXdp);
}

fn prefix6_scenario(mode: RouterMode) {
    use std::time::Duration;
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"))
        .replace("prefix6 = \"2001:db8:100::/56\"", "prefix6 = \"auto\"");
    assert!(config.contains("prefix6 = \"auto\""), "{config}");
    tb.start_router(mode, &config);
    let server = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 5004, 0, 0));
    let seen = tcp_connections(&tb, server, 2, 1024);
    assert_eq!(seen, [IpAddr::V6(WAN2_6); 2], "no prefix yet: isp2 only");

    let socket = tb.path("xwan.sock").display().to_string();
    let xwan = env!("CARGO_BIN_EXE_xwan");
    let tell = |prefix: &str| {
        let out = tb.exec_ok(
            "rtr",
            &[xwan, "prefix6", "isp1", prefix, "--socket", &socket],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        tell("2001:db8:100::/56").trim(),
        "isp1: prefix6 2001:db8:100::/56"
    );
    let mapped = |tb: &Testbed, via: Ipv6Addr| {
        support::poll(Duration::from_secs(10), || {
            tcp_connections(tb, server, 2, 1024).contains(&IpAddr::V6(via))
        })
    };
    assert!(mapped(&tb, HOST1_VIA_ISP1), "isp1 maps the LAN once told");

    // A redial: isp1 routes another /56 to the router now.
    for (node, args) in [
        (
            "isp1",
            &[
                "ip",
                "-6",
                "route",
                "add",
                "2001:db8:200::/56",
                "via",
                "2001:db8:1::2",
                "dev",
                "cust",
            ][..],
        ),
        (
            "isp1",
            &[
                "ip6tables",
                "-I",
                "FORWARD",
                "-i",
                "cust",
                "-s",
                "2001:db8:200::/56",
                "-j",
                "ACCEPT",
            ][..],
        ),
        (
            "inet",
            &[
                "ip",
                "-6",
                "route",
                "add",
                "2001:db8:200::/56",
                "via",
                "2001:db8:11::1",
            ][..],
        ),
    ] {
        tb.exec_ok(node, args);
    }
    // A connection open through the old prefix, which the ISP routes no
    // more: its client gets an RST as soon as xwan is told.
    let old_server = SocketAddrV6::new(SERVER1_6, 5104, 0, 0);
    let listener = tb.listen_tcp6("inet", old_server);
    let (mut client, _conn) = (0..4)
        .find_map(|_| {
            let client = tb.connect_tcp6("h1", old_server).expect("connect");
            let (conn, peer) = listener.accept();
            (peer.ip() == IpAddr::V6(HOST1_VIA_ISP1)).then_some((client, conn))
        })
        .expect("a connection through isp1's old prefix");
    let told = std::time::Instant::now();
    assert_eq!(
        tell("2001:db8:200::/56").trim(),
        "isp1: prefix6 2001:db8:200::/56"
    );
    expect_reset(&mut client, told);
    let new = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0xa);
    assert!(mapped(&tb, new), "new connections take the new prefix");
    // Refused: a prefix written in the file, garbage.
    let refused = tb.exec(
        "rtr",
        &[xwan, "prefix6", "isp1", "nonsense", "--socket", &socket],
    );
    assert!(!refused.status.success());
    let written = tb.exec(
        "rtr",
        &[
            xwan,
            "prefix6",
            "isp2",
            "2001:db8:300::/56",
            "--socket",
            &socket,
        ],
    );
    assert!(!written.status.success(), "isp2's prefix6 is not auto");
}

/// A port forward to an IPv6 target on isp2's NAT66 address: a connection
/// from the Internet reaches h1, byte for byte, and its replies leave by
/// isp2 from that address.
#[test]
fn packet_forward_to_an_ipv6_target() {
    forward6_scenario(RouterMode::XwanPacket);
}

#[test]
fn kernel_forward_to_an_ipv6_target() {
    forward6_scenario(RouterMode::Kernel);
}

#[test]
fn xdp_forward_to_an_ipv6_target() {
    forward6_scenario(RouterMode::XwanXdp);
}

fn forward6_scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = format!(
        "{}\n[[forward]]\nproto = \"tcp\"\nport = 2022\nto = \"[{HOST1_6}]:2222\"\n",
        config_toml_dual([1, 1], &tb.path("xwan.sock"))
    );
    tb.start_router(mode, &config);
    let listener = tb.listen_tcp6("h1", SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 2222, 0, 0));
    for i in 0..2u64 {
        let client = tb
            .connect_tcp6("inet", SocketAddrV6::new(WAN2_6, 2022, 0, 0))
            .unwrap_or_else(|e| panic!("connection {i} to the forward: {e}"));
        let (conn, peer) = listener.accept();
        assert!(
            !matches!(peer.ip(), IpAddr::V6(a) if a.segments()[0] == 0xfd00),
            "h1 sees the Internet peer: {peer}"
        );
        let (upload, download) = (pattern(16 << 10, 60 + i), pattern(16 << 10, 70 + i));
        let (at_h1, at_server) = inbound_exchange(&conn, &client, &upload, &download);
        assert!(
            at_h1 == upload && at_server == download,
            "connection {i} differs"
        );
    }
}

/// The router's own IPv6 traffic follows `[local]` as its IPv4 traffic
/// does: a service on the router answers through each WAN it is reached by
/// (isp2 too, though the kernel's only IPv6 default route is isp1's), and
/// its own connections leave by `[local] uplink`, by the other uplink while
/// that one is down; no rule is left behind.
#[test]
fn packet_router_own_ipv6_traffic_follows_local() {
    local_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_router_own_ipv6_traffic_follows_local() {
    local_scenario(RouterMode::XwanXdp);
}

fn local_scenario(mode: RouterMode) {
    use std::io::{Read, Write};
    use std::time::Duration;
    use xwan::control::{self, AdminState, Request};
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = format!(
        "{}\n[local]\nuplink = \"isp2\"\n",
        config_toml_dual([1, 1], &tb.path("xwan.sock"))
    );
    tb.start_router(mode, &config);
    let service = tb
        .in_ns("rtr", || std::net::TcpListener::bind("[::]:7000"))
        .expect("listen on the router");
    thread::spawn(move || {
        for conn in service.incoming().take(2) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4];
            if conn.read_exact(&mut buf).is_ok() {
                let _ = conn.write_all(&buf);
            }
        }
    });
    for wan in [WAN1_6, WAN2_6] {
        let mut stream = tb
            .connect_tcp6("inet", SocketAddrV6::new(wan, 7000, 0, 0))
            .unwrap_or_else(|e| panic!("the router's service through {wan}: {e}"));
        stream.write_all(b"ping").expect("send");
        let mut buf = [0u8; 4];
        stream
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("no answer through {wan}: {e}"));
        assert_eq!(&buf, b"ping");
    }
    let server = SocketAddrV6::new(SERVER1_6, 5400, 0, 0);
    let listener = tb.listen_tcp6("inet", server);
    let own = |tb: &Testbed| {
        let _client = tb.connect_tcp6("rtr", server).expect("the router connects");
        listener.accept().1.ip()
    };
    assert_eq!(own(&tb), IpAddr::V6(WAN2_6), "[local] uplink = isp2");
    let down = Request::Uplink {
        name: "isp2".into(),
        state: AdminState::Down,
    };
    control::request(&tb.path("xwan.sock"), &down).expect("isp2 down");
    assert!(
        support::poll(Duration::from_secs(3), || own(&tb) == IpAddr::V6(WAN1_6)),
        "the router's own IPv6 connections did not fail over"
    );
    tb.stop_xwan();
    let rules = tb.exec_ok("rtr", &["ip", "-6", "-d", "rule", "show"]);
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains("proto 88"), "rules left:\n{rules}");
}

/// A 3000-byte UDP datagram, which the sender's kernel fragments, crosses
/// the router both ways byte for byte: its later fragments follow the first
/// through the same translation.
#[test]
fn packet_fragmented_udp_crosses_both_ways() {
    fragments_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_fragmented_udp_crosses_both_ways() {
    fragments_scenario(RouterMode::XwanXdp);
}

fn fragments_scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    let server = SocketAddrV6::new(SERVER1_6, 5300, 0, 0);
    let listener = tb.bind_udp6("inet", server);
    let mut buf = vec![0u8; 8192];
    for i in 0..2u64 {
        let client = tb.bind_udp6("h1", SocketAddrV6::new(HOST1_6, 0, 0, 0));
        let request = pattern(3000, 300 + i);
        client.send_to(&request, server).expect("send");
        let (len, peer) = listener
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i}: the request does not arrive: {e}"));
        assert!(
            buf[..len] == request[..],
            "datagram {i}: the request differs"
        );
        let reply = pattern(3000, 400 + i);
        listener.send_to(&reply, peer).expect("reply");
        let (len, _) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i}: the reply does not arrive: {e}"));
        assert!(buf[..len] == reply[..], "datagram {i}: the reply differs");
    }
}

/// With the XDP program attached to every interface, Neighbour Discovery
/// and router advertisements stay the kernel's: isp1's default route
/// (`gateway6 = "auto"`) is learnt again from the RA that answers the
/// router's solicitation after it was deleted, and xwan resolves its
/// gateway again; the router and h1 resolve each other after both
/// neighbour tables are flushed, and an inbound connection to h1 through
/// isp1's mapping finds h1's MAC.
#[test]
fn xdp_leaves_neighbour_discovery_and_router_advertisements_to_the_kernel() {
    use std::time::Duration;
    use xwan::control::{request, Reply, Request};
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(RouterMode::XwanXdp, &config);
    let text = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    for interface in ["lan0", "wan1", "wan2"] {
        let link = text(tb.exec_ok("rtr", &["ip", "link", "show", interface]));
        assert!(link.contains("prog/xdp"), "no XDP on {interface}: {link}");
    }

    // The RA: the default route goes, the router solicits (setting its
    // token does), isp1's advertisement brings the route back.
    tb.exec_ok(
        "rtr",
        &["ip", "-6", "route", "del", "default", "dev", "wan1"],
    );
    tb.exec_ok("rtr", &["ip", "-6", "neigh", "flush", "dev", "wan1"]);
    tb.exec_ok("rtr", &["ip", "token", "set", "::2", "dev", "wan1"]);
    let relearnt = support::poll(Duration::from_secs(5), || {
        let route = text(tb.exec_ok("rtr", &["ip", "-6", "route", "show", "default"]));
        route.starts_with("default via fe80::1 dev wan1 proto ra")
    });
    assert!(relearnt, "no RA-learnt default route:\n{}", tb.xwan_log());
    let isp1_gateway6 = || {
        let Ok(Reply::Status { status, .. }) = request(&tb.path("xwan.sock"), &Request::Status)
        else {
            return false;
        };
        (status.uplinks[0].ipv6.as_ref()).is_some_and(|v6| v6.up && v6.gateway_mac.is_some())
    };
    assert!(
        support::poll(Duration::from_secs(10), isp1_gateway6),
        "isp1's IPv6 gateway not resolved again:\n{}",
        tb.xwan_log()
    );

    // The LAN: both sides forget each other, then resolve each other.
    tb.exec_ok("rtr", &["ip", "-6", "neigh", "flush", "dev", "lan0"]);
    tb.exec_ok("h1", &["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    let ping = |from: &str, to: &str| {
        tb.exec(from, &["ping", "-6", "-n", "-c", "1", "-W", "2", to])
            .status
            .success()
    };
    assert!(ping("h1", "fd00:50::1"), "h1 cannot reach the router");
    tb.exec_ok("rtr", &["ip", "-6", "neigh", "flush", "dev", "lan0"]);
    assert!(
        ping("rtr", &HOST1_6.to_string()),
        "the router cannot reach h1"
    );
    let neighbours = text(tb.exec_ok("rtr", &["ip", "-6", "neigh", "show", "dev", "lan0"]));
    assert!(
        neighbours.contains(&format!("{HOST1_6} lladdr")),
        "{neighbours}"
    );

    // xwan's own resolution of h1, for an inbound connection.
    tb.exec_ok("rtr", &["ip", "-6", "neigh", "flush", "dev", "lan0"]);
    let listener = tb.listen_tcp6("h1", SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 2222, 0, 0));
    let client = tb
        .connect_tcp6("inet", SocketAddrV6::new(HOST1_VIA_ISP1, 2222, 0, 0))
        .unwrap_or_else(|e| panic!("connection to h1 through isp1's mapping: {e}"));
    let (conn, _) = listener.accept();
    let (upload, download) = (pattern(8 << 10, 80), pattern(8 << 10, 81));
    let (at_h1, at_server) = inbound_exchange(&conn, &client, &upload, &download);
    assert!(
        at_h1 == upload && at_server == download,
        "the connection differs"
    );
}

/// In xdp mode the program hands the workers every fragment to a NAT66
/// address (a later one has no ports to tell); those of the router's own
/// packets go on to the kernel through the punt device: a 3000-byte ping
/// from the Internet to isp2's NAT66 address is answered, its fragments
/// counted as punted (the testbed checks, going down, that none was lost).
#[test]
fn xdp_punts_the_fragments_of_the_routers_own_ipv6_to_the_kernel() {
    use xwan::control::{request, Reply, Request};
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(RouterMode::XwanXdp, &config);
    let out = tb.exec(
        "inet",
        &[
            "ping",
            "-6",
            "-n",
            "-c",
            "2",
            "-W",
            "2",
            "-s",
            "3000",
            &WAN2_6.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let Ok(Reply::Status { status, .. }) = request(&tb.path("xwan.sock"), &Request::Status) else {
        panic!("no status");
    };
    let punted: u64 = status.workers.iter().map(|w| w.punted).sum();
    assert!(
        status
            .to_kernel
            .get("router_traffic")
            .is_some_and(|n| *n >= 6)
            && punted >= 6,
        "three fragments a ping, punted: {:?}, {punted}",
        status.to_kernel
    );
}

#[test]
fn packet_established_ipv6_takes_the_fast_path() {
    fast_path_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_established_ipv6_takes_the_fast_path() {
    fast_path_scenario(RouterMode::XwanXdp);
}

/// With the in-kernel fast path (on by default): an established IPv6 TCP
/// connection and a UDP stream go by it (its counters rise, the workers see
/// next to nothing), byte for byte; `xwan flows` shows the connection
/// offloaded, and it leaves the fast path once it closes. In xdp mode the
/// XDP program looks the flow up first and, the testbed's peers accepting
/// no XDP frames, passes its frames marked to TC.
fn fast_path_scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    assert_eq!(offload(&tb).state, "on");

    let server = SocketAddrV6::new(SERVER1_6, 5001, 0, 0);
    let listener = tb.listen_tcp6("inet", server);
    let client = tb.connect_tcp6("h1", server).expect("connect");
    let (conn, _) = listener.accept();
    pump(&client, &conn, 1000, 1);
    assert!(
        poll(Duration::from_secs(5), || offload(&tb).entries6 >= 2),
        "{:?}",
        offload(&tb)
    );
    let size = bulk_by_the_fast_path(&tb, &client, &conn, "IPv6");
    let remote = SocketAddr::V6(server).to_string();
    let listed = || {
        flows(&tb)
            .into_iter()
            .find(|f| f.protocol == "tcp" && f.remote == remote)
    };
    let flow = listed().expect("the flow is listed");
    assert_eq!(flow.state, "established");
    assert!(flow.offloaded, "{flow:?}");
    for bytes in [flow.bytes_out, flow.bytes_in] {
        assert!(bytes >= size as u64 && bytes < 2 * size as u64, "{flow:?}");
    }
    drop((client, conn));
    assert!(
        poll(Duration::from_secs(5), || offload(&tb).entries6 == 0),
        "{:?}",
        offload(&tb)
    );
    assert!(!listed().expect("the closing flow").offloaded);

    // iperf3 -6 both ways (noisy: a sanity figure, not a benchmark).
    for reverse in [false, true] {
        let bytes = iperf3(&tb, "h1", "inet", SERVER1_6, 2, reverse);
        eprintln!(
            "IPv6 iperf3 {} through the fast path: {:.2} Gbit/s",
            if reverse { "download" } else { "upload" },
            bytes as f64 * 8.0 / 2.0 / 1e9
        );
        assert!(bytes > 0);
    }

    // A UDP stream, each datagram echoed and compared.
    let server = SocketAddrV6::new(SERVER1_6, 5353, 0, 0);
    let echo = tb.bind_udp6("inet", server);
    let client = tb.bind_udp6("h1", SocketAddrV6::new(HOST1_6, 0, 0, 0));
    let mut buf = vec![0u8; 2048];
    let mut round = |i: u64| {
        let request = pattern(1200, 1000 + i);
        client.send_to(&request, server).expect("send");
        let (len, peer) = echo.recv_from(&mut buf).expect("the datagram arrives");
        assert!(buf[..len] == request[..], "datagram {i} differs");
        let reply = pattern(1100, 5000 + i);
        echo.send_to(&reply, peer).expect("echo");
        let (len, _) = client.recv_from(&mut buf).expect("the echo arrives");
        assert!(buf[..len] == reply[..], "echo {i} differs");
    };
    round(0);
    assert!(
        poll(Duration::from_secs(5), || offload(&tb).entries6 >= 2),
        "{:?}",
        offload(&tb)
    );
    let fast0 = offload(&tb).packets;
    let rounds = 2000;
    for i in 1..=rounds {
        round(i);
    }
    let fast = offload(&tb).packets - fast0;
    eprintln!(
        "IPv6 UDP: {fast} of {} datagrams on the fast path",
        2 * rounds
    );
    assert!(fast >= 2 * rounds * 9 / 10, "fast path packets {fast}");

    // ping -6: once the first echo is answered (and synced within 200 ms),
    // requests and replies go by the fast path, their ICMPv6 checksums
    // (which cover the pseudo-header) right, or ping would see no reply.
    let fast0 = offload(&tb).packets;
    let server = SERVER1_6.to_string();
    let out = tb.exec_ok(
        "h1",
        &["ping", "-6", "-c", "30", "-i", "0.1", "-q", &server],
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(" 0% packet loss"), "{summary}");
    let fast = offload(&tb).packets - fast0;
    assert!(fast >= 30, "fast path packets {fast}");
}

#[test]
fn packet_failover_rst_of_an_offloaded_ipv6_connection() {
    offloaded_failover_scenario(RouterMode::XwanPacket);
}

#[test]
fn xdp_failover_rst_of_an_offloaded_ipv6_connection() {
    offloaded_failover_scenario(RouterMode::XwanXdp);
}

/// An offloaded IPv6 TCP connection through isp1 whose server's data went
/// by the fast path alone: when isp1 fails, the client gets an RST with the
/// sequence it expects (Linux takes no other, RFC 5961), from the counters
/// the fast path kept.
fn offloaded_failover_scenario(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = format!(
        "{}\n[health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\nup_after = 2\n",
        config_toml_dual([1, 1], &tb.path("xwan.sock"))
    );
    tb.start_router(mode, &config);
    let server = SocketAddrV6::new(SERVER1_6, 5100, 0, 0);
    let listener = tb.listen_tcp6("inet", server);
    // nth balancing alternates the uplinks: one of two connections is isp1's.
    let (mut client, mut conn) = (0..4)
        .find_map(|_| {
            let client = tb.connect_tcp6("h1", server).expect("connect");
            let (conn, peer) = listener.accept();
            (peer.ip() == IpAddr::V6(HOST1_VIA_ISP1)).then_some((client, conn))
        })
        .expect("a connection through isp1");
    pump(&conn, &client, 1000, 1);
    assert!(
        poll(Duration::from_secs(5), || offload(&tb).entries6 >= 2),
        "{:?}",
        offload(&tb)
    );
    let fast0 = offload(&tb).packets;
    pump(&conn, &client, 1 << 20, 2);
    assert!(offload(&tb).packets > fast0 + 500, "{:?}", offload(&tb));

    for tables in ["iptables", "ip6tables"] {
        tb.exec_ok("isp1", &[tables, "-I", "FORWARD", "-j", "DROP"]);
    }
    expect_reset(&mut client, Instant::now());
    assert!(
        poll(Duration::from_secs(3), || offload(&tb).entries6 == 0),
        "{:?}",
        offload(&tb)
    );
    let _ = conn.write_all(b"x");
}

//! A restart without losing flows, end to end (issue 16): a paced TCP
//! download and a UDP exchange go on across SIGTERM and a new start, and
//! across SIGKILL after a checkpoint, byte-exact and with the same outside
//! endpoints; a state saved with an uplink the configuration no longer has
//! loses that uplink's flows only, with a log line and an RST. Needs root:
//! `cargo test --test restart_e2e`.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use support::poll;

use support::restart::{paced_send, receive_all};
use support::{config_toml, ip_of, pattern, RouterMode, Testbed, TxOffload, HOST1, SERVER1};

const DOWNLOAD: usize = 4 << 20;

/// A UDP request from `client` to the server and its answer; returns the
/// client's outside endpoint as the server saw it.
fn udp_round(client: &UdpSocket, server: &UdpSocket, n: u8) -> SocketAddr {
    client.send(&[n; 100]).expect("the client sends");
    let mut buf = [0u8; 200];
    let (len, peer) = server.recv_from(&mut buf).expect("the server receives");
    assert_eq!(&buf[..len], &[n; 100]);
    server
        .send_to(&[n + 100; 50], peer)
        .expect("the server answers");
    let len = client.recv(&mut buf).expect("the answer comes back");
    assert_eq!(&buf[..len], &[n + 100; 50]);
    peer
}

/// How the test stops xwan in the middle of the traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM to the process.
    Term,
    /// SIGTERM to the process and to its process group at once, as
    /// `timeout` forwards one: the same request twice, one orderly stop.
    TermTwiceAtOnce,
    /// SIGKILL after a checkpoint.
    Kill,
}

/// A paced 4 MiB download to h1 and a UDP exchange, xwan stopped by `stop`
/// and started again in the middle; both carry on, byte-exact, from the
/// same outside endpoints.
fn survives_a_restart(mode: RouterMode, stop: Stop) {
    let mut tb = Testbed::up(TxOffload::Off);
    if stop == Stop::TermTwiceAtOnce {
        tb.own_process_group();
    }
    let config = format!(
        "{}checkpoint_s = 1\n",
        config_toml([1, 1], &tb.path("xwan.sock"))
    );
    tb.start_router(mode, &config);

    let tcp_server = SocketAddrV4::new(SERVER1, 5200);
    let listener = tb.listen_tcp("inet", tcp_server);
    let client = tb.connect_tcp("h1", tcp_server).expect("connect");
    let (conn, tcp_peer) = listener.accept();
    let sender = paced_send(conn, DOWNLOAD, 7, Duration::from_millis(20));
    let receiver = receive_all(client);

    let udp_server = tb.bind_udp("inet", SocketAddrV4::new(SERVER1, 5300));
    let udp_client = tb.bind_udp("h1", SocketAddrV4::new(HOST1, 41000));
    udp_client
        .connect(SocketAddrV4::new(SERVER1, 5300))
        .expect("connect the UDP client");
    let udp_peer = udp_round(&udp_client, &udp_server, 1);

    // Past a checkpoint (every second), mid-download.
    std::thread::sleep(Duration::from_millis(1500));
    let status = match stop {
        Stop::Term => tb.signal_xwan("TERM"),
        Stop::Kill => tb.signal_xwan("KILL"),
        Stop::TermTwiceAtOnce => {
            tb.signal_router_and_group("TERM");
            tb.wait_router_exit(Duration::from_secs(15))
                .unwrap_or_else(|| panic!("xwan did not exit:\n{}", tb.xwan_log()))
        }
    };
    let log = tb.xwan_log();
    if stop != Stop::Kill {
        // The orderly stop, whole: the state saved, the rules removed.
        assert!(status.success(), "{status}:\n{log}");
        assert!(log.contains("saved the state for the next start"), "{log}");
        assert!(!log.contains("forcing the exit"), "{log}");
        let table = tb.exec("rtr", &["nft", "list", "table", "ip", "xwan"]);
        assert!(!table.status.success(), "table ip xwan left behind:\n{log}");
        if mode == RouterMode::XwanPacket {
            assert!(log.contains("removed nftables table ip xwan"), "{log}");
        } else {
            assert!(log.contains("XDP data path stopped"), "{log}");
        }
    }
    tb.start_xwan_again(mode);
    let log = tb.xwan_log();
    assert!(log.contains("restored the saved state"), "{log}");

    assert_eq!(
        udp_round(&udp_client, &udp_server, 2),
        udp_peer,
        "same outside endpoint"
    );
    sender.join().expect("the server sent everything");
    let received = receiver
        .join()
        .expect("receiver thread")
        .unwrap_or_else(|e| panic!("the download broke: {e}\n{}", tb.xwan_log()));
    assert_eq!(received.len(), DOWNLOAD);
    assert!(received == pattern(DOWNLOAD, 7), "byte-exact");
    // The connection the server sees is the one it accepted: the same
    // outside endpoint all along (a new one would have needed a new SYN).
    assert!([support::WAN1, support::WAN2].contains(&ip_of(tcp_peer)));
}

#[test]
fn tcp_and_udp_survive_sigterm_and_a_new_start_xdp() {
    survives_a_restart(RouterMode::XwanXdp, Stop::Term);
}

#[test]
fn tcp_and_udp_survive_sigterm_and_a_new_start_packet() {
    survives_a_restart(RouterMode::XwanPacket, Stop::Term);
}

#[test]
fn sigterm_to_the_process_and_its_group_at_once_is_one_orderly_stop_xdp() {
    survives_a_restart(RouterMode::XwanXdp, Stop::TermTwiceAtOnce);
}

#[test]
fn sigterm_to_the_process_and_its_group_at_once_is_one_orderly_stop_packet() {
    survives_a_restart(RouterMode::XwanPacket, Stop::TermTwiceAtOnce);
}

#[test]
fn tcp_and_udp_survive_sigkill_after_a_checkpoint_xdp() {
    survives_a_restart(RouterMode::XwanXdp, Stop::Kill);
}

#[test]
fn tcp_and_udp_survive_sigkill_after_a_checkpoint_packet() {
    survives_a_restart(RouterMode::XwanPacket, Stop::Kill);
}

/// Two connections, one through each uplink; isp2 is renamed isp3 in the
/// configuration before the new start: its connection is reset with a log
/// line, the other goes on.
#[test]
fn a_removed_uplink_loses_its_flows_only() {
    let mut tb = Testbed::up(TxOffload::Off);
    let config = config_toml([1, 1], &tb.path("xwan.sock"));
    tb.start_router(RouterMode::XwanPacket, &config);
    let server = SocketAddrV4::new(SERVER1, 5400);
    let listener = tb.listen_tcp("inet", server);
    let mut by_uplink = Vec::new();
    for _ in 0..2 {
        let mut client = tb.connect_tcp("h1", server).expect("connect");
        let (mut conn, peer) = listener.accept();
        conn.write_all(b"hello").expect("server sends");
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).expect("client receives");
        by_uplink.push((ip_of(peer), client, conn));
    }
    by_uplink.sort_by_key(|(ip, _, _)| *ip);
    assert_eq!(
        by_uplink.iter().map(|(ip, _, _)| *ip).collect::<Vec<_>>(),
        [support::WAN1, support::WAN2]
    );
    tb.signal_xwan("TERM");
    std::fs::write(
        tb.path("xwan.toml"),
        config
            .replace("name = \"isp2\"", "name = \"isp3\"")
            .replace("action = \"isp2\"", "action = \"isp3\"")
            .replace("wan = [\"isp1\", \"isp2\"]", "wan = [\"isp1\", \"isp3\"]"),
    )
    .expect("rewrite the config");
    tb.start_xwan_again(RouterMode::XwanPacket);
    let log = tb.xwan_log();
    assert!(
        log.lines()
            .any(|l| l.contains("saved flows dropped") && l.contains("uplink_gone=1")),
        "{log}"
    );
    assert!(log.lines().any(|l| l.contains("restored=1")), "{log}");

    let (_, mut kept_client, mut kept_conn) = by_uplink.remove(0);
    let (_, mut gone_client, _gone_conn) = by_uplink.remove(0);
    // The isp2 connection's client got an RST.
    gone_client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let reset = gone_client.read(&mut buf);
    assert!(
        matches!(&reset, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{reset:?}"
    );
    // The isp1 one goes on both ways.
    kept_conn.write_all(b"still").expect("server sends");
    kept_client
        .read_exact(&mut buf[..5])
        .expect("client receives");
    assert_eq!(&buf[..5], b"still");
    kept_client.write_all(b"there").expect("client sends");
    kept_conn
        .read_exact(&mut buf[..5])
        .expect("server receives");
    assert_eq!(&buf[..5], b"there");
}

/// The MAC of h1's interface.
fn h1_mac(tb: &Testbed) -> String {
    let out = tb.exec_ok("h1", &["cat", "/sys/class/net/eth0/address"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A UDP flow through one testbed; xwan stopped (the state saved); the
/// testbed rebuilt (the same addresses, new veths: new MACs) and xwan
/// started there on the saved state. Before h1 sends anything, the router
/// asks the kernel for h1's MAC (a restored flow trusts none saved with
/// it), and the first datagram the server sends to the restored flow's
/// outside endpoint reaches h1 (had the core not heard of the MAC yet, it
/// would wait for it); h1's answer leaves by the same endpoint.
fn a_restored_flow_reaches_its_host_at_a_new_mac(mode: RouterMode) {
    let server_at = SocketAddrV4::new(SERVER1, 5300);
    let client_at = SocketAddrV4::new(HOST1, 41000);
    let (state, old_mac, peer) = {
        let mut tb = Testbed::up(TxOffload::Off);
        tb.start_router(mode, &config_toml([1, 1], &tb.path("xwan.sock")));
        let server = tb.bind_udp("inet", server_at);
        let client = tb.bind_udp("h1", client_at);
        client.connect(server_at).expect("connect the UDP client");
        let peer = udp_round(&client, &server, 1);
        let status = tb.signal_xwan("TERM");
        assert!(status.success(), "{status}:\n{}", tb.xwan_log());
        let state = std::fs::read(tb.path("xwan.state")).expect("the saved state");
        (state, h1_mac(&tb), peer)
    };
    let mut tb = Testbed::up(TxOffload::Off);
    assert_ne!(h1_mac(&tb), old_mac, "the rebuilt testbed has new MACs");
    std::fs::write(tb.path("xwan.state"), state).expect("move the state over");
    tb.start_router(mode, &config_toml([1, 1], &tb.path("xwan.sock")));
    let log = tb.xwan_log();
    assert!(log.lines().any(|l| l.contains("restored=1")), "{log}");
    // h1 has sent nothing: only xwan's request makes the kernel resolve it.
    let resolved = poll(Duration::from_secs(3), || {
        let out = tb.exec_ok("rtr", &["ip", "-4", "neigh", "show", "192.168.50.10"]);
        String::from_utf8_lossy(&out.stdout).contains(&h1_mac(&tb))
    });
    assert!(resolved, "the restored flow's host was not resolved");
    let server = tb.bind_udp("inet", server_at);
    let client = tb.bind_udp("h1", client_at);
    client.connect(server_at).expect("connect the UDP client");
    server
        .send_to(&[7; 60], peer)
        .expect("the server sends first");
    let mut buf = [0u8; 100];
    let len = client.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "the first datagram to the restored flow: {e}\n{}",
            tb.xwan_log()
        )
    });
    assert_eq!(&buf[..len], &[7; 60]);
    assert_eq!(
        udp_round(&client, &server, 2),
        peer,
        "same outside endpoint"
    );
}

#[test]
fn a_restored_flow_reaches_its_host_at_a_new_mac_xdp() {
    a_restored_flow_reaches_its_host_at_a_new_mac(RouterMode::XwanXdp);
}

#[test]
fn a_restored_flow_reaches_its_host_at_a_new_mac_packet() {
    a_restored_flow_reaches_its_host_at_a_new_mac(RouterMode::XwanPacket);
}

/// The hold table is loaded in-process through libnftables, as the main
/// table is: xwan started with no `nft` binary on its PATH still loads it,
/// with its drop of the NAT range on the WAN addresses, and leaves it in
/// place when it stops.
#[test]
fn the_hold_table_needs_no_nft_binary() {
    let mut tb = Testbed::up(TxOffload::Off);
    let config = config_toml([1, 1], &tb.path("xwan.sock"));
    // A PATH with `ip` alone (it starts xwan in the router's namespace).
    let bin = tb.path("bin");
    std::fs::create_dir_all(&bin).expect("a bin directory");
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("iproute2's ip");
    std::os::unix::fs::symlink(ip, bin.join("ip")).expect("link ip");
    let path = bin.to_string_lossy().into_owned();
    tb.start_xwan_with_env(RouterMode::XwanPacket, &config, &[("PATH", &path)]);
    let log = tb.xwan_log();
    assert!(log.contains("loaded table ip xwan_hold"), "{log}");
    let listed = |tb: &Testbed| {
        let out = tb.exec_ok("rtr", &["nft", "list", "table", "ip", "xwan_hold"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rules = listed(&tb);
    assert!(
        rules.contains("ip daddr { 198.18.1.2, 198.18.2.2 } meta l4proto { tcp, udp } th dport 20000-59999 drop"),
        "{rules}"
    );
    assert!(tb.signal_xwan("TERM").success(), "{}", tb.xwan_log());
    assert_eq!(listed(&tb), rules, "left in place at the stop");
}

//! Frames waiting for a LAN host's MAC (issue 24), end to end: the first
//! SYN of a port forward to a LAN host the router has never heard from
//! waits while xwan has the kernel resolve the host, then goes on, so the
//! connection opens without the client's SYN retransmission (a second).
//! The same over IPv6 on the dual-stack testbed: the first SYN of an inbound
//! connection through isp1's prefix mapping waits for h1's IPv6 neighbour.
//! Needs root: `cargo test --test neighbour_wait_e2e`.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use support::{
    config_toml, config_toml_dual, RouterMode, Testbed, TxOffload, HOST1, HOST1_6, WAN1,
};
use xwan::control::{self, Reply, Request};

/// Well below the client's first SYN retransmission (1 s).
const OPEN_LIMIT: Duration = Duration::from_millis(700);

fn a_forwards_first_syn_waits_for_its_host(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::Off);
    let socket = tb.path("xwan.sock");
    tb.start_router(mode, &config_toml([1, 1], &socket));
    // h1 has sent nothing: the router's kernel does not know it.
    let known = tb.exec_ok("rtr", &["ip", "-4", "neigh", "show", &HOST1.to_string()]);
    assert!(
        !String::from_utf8_lossy(&known.stdout).contains("lladdr"),
        "h1 is known already: {}",
        String::from_utf8_lossy(&known.stdout)
    );

    let listener = tb.listen_tcp("h1", SocketAddrV4::new(HOST1, 80));
    let started = Instant::now();
    let client = tb
        .connect_tcp("inet", SocketAddrV4::new(WAN1, 8080))
        .expect("connect through the port forward");
    opened_at_once(&tb, &socket, started, client, listener.accept().0);
}

/// h1's mapped address through isp1's delegated prefix.
const HOST1_VIA_ISP1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0xa);

fn an_inbound_ipv6_syn_waits_for_its_host(mode: RouterMode) {
    let mut tb = Testbed::up_dual_stack(TxOffload::Off);
    let socket = tb.path("xwan.sock");
    tb.start_router(mode, &config_toml_dual([1, 1], &socket));
    let listener = tb.listen_tcp6("h1", SocketAddrV6::new(HOST1_6, 22, 0, 0));
    // Whatever h1 said at start (its address's duplicate detection, a
    // router solicitation), the router's kernel forgets it: xwan must ask.
    tb.exec_ok("rtr", &["ip", "-6", "neigh", "flush", "dev", "lan0"]);
    let known = tb.exec_ok("rtr", &["ip", "-6", "neigh", "show", &HOST1_6.to_string()]);
    assert!(
        !String::from_utf8_lossy(&known.stdout).contains("lladdr"),
        "h1 is known already: {}",
        String::from_utf8_lossy(&known.stdout)
    );
    let started = Instant::now();
    let client = tb
        .connect_tcp6("inet", SocketAddrV6::new(HOST1_VIA_ISP1, 22, 0, 0))
        .expect("connect through isp1's mapping");
    opened_at_once(&tb, &socket, started, client, listener.accept().0);
}

/// The connection `client`-`conn`, whose connect started at `started`,
/// opened before the client's SYN retransmission, carries data, and no
/// frame was dropped waiting for a neighbour.
fn opened_at_once(
    tb: &Testbed,
    socket: &std::path::Path,
    started: Instant,
    mut client: std::net::TcpStream,
    mut conn: std::net::TcpStream,
) {
    let took = started.elapsed();
    eprintln!("the connection opened in {took:?}");
    assert!(
        took < OPEN_LIMIT,
        "opened in {took:?}: the first SYN was lost and sent again\n{}",
        tb.xwan_log()
    );
    client.write_all(b"ping").expect("the client sends");
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).expect("h1 receives");
    assert_eq!(&buf, b"ping");

    let Ok(Reply::Status { status, .. }) = control::request(socket, &Request::Status) else {
        panic!("no status");
    };
    for reason in [
        "neighbour_unresolved",
        "neighbour_timeout",
        "neighbour_send_failed",
    ] {
        let n = status.drops.get(reason).copied().unwrap_or(0);
        assert_eq!(n, 0, "{reason}: {:?}", status.drops);
    }
}

#[test]
fn a_forwards_first_syn_waits_for_its_host_xdp() {
    a_forwards_first_syn_waits_for_its_host(RouterMode::XwanXdp);
}

#[test]
fn a_forwards_first_syn_waits_for_its_host_packet() {
    a_forwards_first_syn_waits_for_its_host(RouterMode::XwanPacket);
}

#[test]
fn an_inbound_ipv6_syn_waits_for_its_host_xdp() {
    an_inbound_ipv6_syn_waits_for_its_host(RouterMode::XwanXdp);
}

#[test]
fn an_inbound_ipv6_syn_waits_for_its_host_packet() {
    an_inbound_ipv6_syn_waits_for_its_host(RouterMode::XwanPacket);
}

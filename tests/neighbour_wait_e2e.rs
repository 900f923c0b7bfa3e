//! Frames waiting for a LAN host's MAC (issue 24), end to end: the first
//! SYN of a port forward to a LAN host the router has never heard from
//! waits while xwan has the kernel resolve the host, then goes on, so the
//! connection opens without the client's SYN retransmission (a second).
//! Needs root: `cargo test --test neighbour_wait_e2e`.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use support::{config_toml, RouterMode, Testbed, TxOffload, HOST1, WAN1};
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
    let mut client = tb
        .connect_tcp("inet", SocketAddrV4::new(WAN1, 8080))
        .expect("connect through the port forward");
    let took = started.elapsed();
    eprintln!("the forward's connection opened in {took:?}");
    let (mut conn, _) = listener.accept();
    assert!(
        took < OPEN_LIMIT,
        "opened in {took:?}: the first SYN was lost and sent again\n{}",
        tb.xwan_log()
    );
    client.write_all(b"ping").expect("the client sends");
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).expect("h1 receives");
    assert_eq!(&buf, b"ping");

    let Ok(Reply::Status { status, .. }) = control::request(&socket, &Request::Status) else {
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

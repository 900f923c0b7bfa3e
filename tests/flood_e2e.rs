//! Floods end to end (issue 16): one LAN host's SYN flood at the table's
//! limit does not stop another host's download nor its new connections,
//! and the table is usable again right after; a spoofed UDP flood from many
//! Internet sources at a forwarded port does not stop the forward's target
//! host from opening its own connections. Needs root:
//! `cargo test --test flood_e2e`.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::restart::{paced_send, receive_all};
use support::{config_toml, pattern, RouterMode, Testbed, TxOffload, SERVER1, SERVER2, WAN1};
use xwan::control::{self, Reply, Request, StatusReport};

fn status(tb: &Testbed) -> StatusReport {
    match control::request(&tb.path("xwan.sock"), &Request::Status) {
        Ok(Reply::Status { status, .. }) => *status,
        other => panic!("status: {other:?}"),
    }
}

/// A one-byte round trip on a new connection from `node` to `server`.
fn round_trip(tb: &Testbed, node: &str, server: SocketAddrV4, listener: &support::Listener) {
    let mut client = tb
        .connect_tcp(node, server)
        .unwrap_or_else(|e| panic!("{node} cannot connect to {server}: {e}"));
    let (mut conn, _) = listener.accept();
    client.write_all(b"?").expect("client sends");
    let mut byte = [0u8; 1];
    conn.read_exact(&mut byte).expect("server receives");
    conn.write_all(b"!").expect("server answers");
    client.read_exact(&mut byte).expect("client receives");
}

fn syn_flood_leaves_others_working(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::Off);
    let config = format!(
        "{}\n[limits]\nmax_flows = 64\nmax_flows_per_host = 0\n",
        config_toml([1, 1], &tb.path("xwan.sock"))
    );
    tb.start_router(mode, &config);
    // SYNs to SERVER2:9 are never answered.
    tb.exec_ok(
        "inet",
        &[
            "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP",
        ],
    );
    let server = SocketAddrV4::new(SERVER1, 5500);
    let listener = tb.listen_tcp("inet", server);
    // h2's download, running through the flood.
    let client = tb.connect_tcp("h2", server).expect("h2 connects");
    let (conn, _) = listener.accept();
    const LEN: usize = 2 << 20;
    let sender = paced_send(conn, LEN, 3, Duration::from_millis(25));
    let receiver = receive_all(client);

    let flooding = AtomicBool::new(true);
    let attempts = AtomicUsize::new(0);
    let (tb_ref, flooding_ref, attempts_ref) = (&tb, &flooding, &attempts);
    thread::scope(|s| {
        // h1: connection attempts from new ports as fast as it can, each
        // given up after 1 ms (one unanswered SYN each).
        s.spawn(move || {
            tb_ref.in_ns("h1", || {
                let target = SocketAddrV4::new(SERVER2, 9).into();
                while flooding_ref.load(Ordering::Relaxed) {
                    let _ = TcpStream::connect_timeout(&target, Duration::from_millis(1));
                    attempts_ref.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        thread::sleep(Duration::from_millis(1000));
        let during = status(&tb);
        assert_eq!(during.flow_table.flows, 64, "the flood fills the table");
        // h2 opens new connections during the flood.
        for _ in 0..5 {
            round_trip(&tb, "h2", server, &listener);
        }
        thread::sleep(Duration::from_millis(500));
        flooding.store(false, Ordering::Relaxed);
    });
    // Right after the flood, h1 itself gets new connections at once.
    let after = Instant::now();
    round_trip(&tb, "h1", server, &listener);
    assert!(
        after.elapsed() < Duration::from_secs(3),
        "{:?}",
        after.elapsed()
    );

    sender.join().expect("the download was sent");
    let received = receiver.join().expect("receiver").expect("h2's download");
    assert!(received == pattern(LEN, 3), "h2's download is byte-exact");
    let st = status(&tb);
    let attempts = attempts.load(Ordering::Relaxed) as u64;
    assert!(attempts > 200, "a flood: {attempts} attempts");
    assert!(
        st.flow_table.evictions > 100,
        "early drop made room: {:?}, {attempts} attempts",
        st.flow_table
    );
    assert_eq!(
        st.drops.get("table_full").copied().unwrap_or(0),
        0,
        "{:?}",
        st.drops
    );
}

#[test]
fn a_syn_flood_at_the_table_limit_leaves_others_working_xdp() {
    syn_flood_leaves_others_working(RouterMode::XwanXdp);
}

#[test]
fn a_syn_flood_at_the_table_limit_leaves_others_working_packet() {
    syn_flood_leaves_others_working(RouterMode::XwanPacket);
}

/// UDP to a port forwarded to h1, from 600 spoofed sources at isp1: the
/// forward's own limit refuses most of it, and h1's own connections open.
#[test]
fn a_spoofed_flood_at_a_forward_leaves_its_target_host_working() {
    let mut tb = Testbed::up(TxOffload::Off);
    let config = format!(
        "{}\n[[forward]]\nproto = \"udp\"\nport = 5353\nto = \"192.168.50.10:5353\"\n\n\
         [limits]\nmax_flows = 256\nmax_flows_per_host = 16\nmax_flows_per_forward = 32\n",
        config_toml([1, 1], &tb.path("xwan.sock"))
    );
    tb.start_router(RouterMode::XwanXdp, &config);
    // h1 talks first, so the router knows its MAC.
    let server = SocketAddrV4::new(SERVER1, 5600);
    let listener = tb.listen_tcp("inet", server);
    round_trip(&tb, "h1", server, &listener);
    // isp1 may send from any address of 100.64.0.0/16 (AnyIP).
    tb.exec_ok(
        "isp1",
        &["ip", "route", "add", "local", "100.64.0.0/16", "dev", "lo"],
    );
    // The router resolves h1 on the first packet for it (LAN MACs come
    // from the kernel's neighbour table): one packet until it opens a flow.
    let probe = tb.in_ns("isp1", || {
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 1), 7000)).expect("bind")
    });
    let resolved = support::poll(Duration::from_secs(10), || {
        let _ = probe.send_to(b"probe", SocketAddrV4::new(WAN1, 5353));
        thread::sleep(Duration::from_millis(200));
        status(&tb).flow_table.flows >= 2
    });
    assert!(resolved, "h1 never resolved: {:?}", status(&tb).drops);
    let sent = tb.in_ns("isp1", || {
        let mut sent = 0;
        for i in 0..600u32 {
            let source = Ipv4Addr::new(100, 64, (i / 200) as u8 + 1, (i % 200) as u8 + 1);
            let socket =
                UdpSocket::bind(SocketAddrV4::new(source, 7000)).expect("bind a spoofed source");
            if socket
                .send_to(b"flood", SocketAddrV4::new(WAN1, 5353))
                .is_ok()
            {
                sent += 1;
            }
        }
        sent
    });
    assert_eq!(sent, 600);
    let refused = || status(&tb).drops.get("forward_limit").copied().unwrap_or(0);
    assert!(
        support::poll(Duration::from_secs(5), || refused() >= 500),
        "forward_limit drops: {:?}",
        status(&tb).drops
    );
    // h1, the forward's target, opens all its connections.
    for _ in 0..12 {
        round_trip(&tb, "h1", server, &listener);
    }
    let st = status(&tb);
    assert_eq!(
        st.drops.get("host_limit").copied().unwrap_or(0),
        0,
        "{:?}",
        st.drops
    );
}

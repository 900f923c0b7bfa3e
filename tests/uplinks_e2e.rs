//! Real uplinks in the testbed, in both xwan modes: an address and gateway
//! from DHCP ("auto", dnsmasq at isp1, dhclient on the router) followed
//! without a restart when the ISP hands out a new one; carrier loss failed
//! over at once; a service on the router itself answering through each WAN
//! with one default route; the router's own connections following
//! `[local]` and health. Needs root, dnsmasq and dhclient.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use support::{config_toml, ip_of, poll, RouterMode, Testbed, TxOffload, SERVER1, WAN1, WAN2};
use xwan::control::{self, AdminState, Reply, Request, StatusReport};

const MODES: [RouterMode; 2] = [RouterMode::XwanXdp, RouterMode::XwanPacket];
const ISP1_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const LEASE1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 50);
const LEASE2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 60);

fn status(tb: &Testbed) -> Option<StatusReport> {
    match control::request(&tb.path("xwan.sock"), &Request::Status) {
        Ok(Reply::Status { status, .. }) => Some(*status),
        _ => None,
    }
}

fn isp1_up(tb: &Testbed) -> bool {
    status(tb).is_some_and(|s| s.uplinks[0].up)
}

/// The address the server sees for a new connection from h1.
fn seen_as(tb: &Testbed, listener: &support::Listener, server: SocketAddrV4) -> Ipv4Addr {
    let _client = tb.connect_tcp("h1", server).expect("connect");
    ip_of(listener.accept().1)
}

/// A connection from h1 that the server sees coming from `from`, with data
/// through it both ways.
fn connection_from(
    tb: &Testbed,
    listener: &support::Listener,
    server: SocketAddrV4,
    from: Ipv4Addr,
) -> (TcpStream, TcpStream) {
    for _ in 0..6 {
        let mut client = tb.connect_tcp("h1", server).expect("connect");
        let (mut conn, peer) = listener.accept();
        if ip_of(peer) == from {
            conn.write_all(b"hello").expect("server sends");
            let mut buf = [0u8; 5];
            client.read_exact(&mut buf).expect("client receives");
            return (client, conn);
        }
    }
    panic!("no connection through {from} in 6 tries");
}

/// Waits for the client's RST; how long it took from `since`.
fn reset_within(client: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    client.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 16];
    match client.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => since.elapsed(),
        other => panic!("expected an RST, got {other:?}"),
    }
}

/// The testbed config with isp1's address and gateway "auto".
fn auto_config(tb: &Testbed) -> String {
    config_toml([1, 1], &tb.path("xwan.sock")).replacen(
        "address = \"198.18.1.2\"\ngateway = \"198.18.1.1\"",
        "address = \"auto\"\ngateway = \"auto\"",
        1,
    )
}

#[test]
fn dhcp_address_is_followed_without_a_restart() {
    for mode in MODES {
        let mut tb = Testbed::up(TxOffload::Off);
        // isp1 hands out addresses by DHCP: the router's static one goes, and
        // the ISP lets out the whole customer network.
        tb.exec_ok("rtr", &["ip", "addr", "flush", "dev", "wan1"]);
        tb.exec_ok(
            "isp1",
            &[
                "iptables",
                "-R",
                "FORWARD",
                "1",
                "-i",
                "cust",
                "!",
                "-s",
                "198.18.1.0/24",
                "-j",
                "DROP",
            ],
        );
        tb.dhcp_server("isp1", LEASE1, ISP1_GATEWAY);
        tb.dhcp_client("wan1");
        tb.start_router(mode, &auto_config(&tb));

        let up = status(&tb).expect("status");
        assert_eq!(up.uplinks[0].address, LEASE1, "{mode:?}");
        assert!(up.uplinks[0].address_auto);
        assert_eq!(up.uplinks[0].gateway, ISP1_GATEWAY);
        let check = tb.exec_ok(
            "rtr",
            &[
                env!("CARGO_BIN_EXE_xwan"),
                "check",
                "-c",
                &tb.path("xwan.toml").to_string_lossy(),
            ],
        );
        let summary = String::from_utf8_lossy(&check.stdout);
        assert!(
            summary.contains(&format!("auto (now {LEASE1} on wan1)")),
            "{summary}"
        );

        let server = SocketAddrV4::new(SERVER1, 5200);
        let listener = tb.listen_tcp("inet", server);
        let (mut client, _conn) = connection_from(&tb, &listener, server, LEASE1);

        // The ISP hands out another address: release, then a new lease.
        tb.dhcp_server("isp1", LEASE2, ISP1_GATEWAY);
        let change = Instant::now();
        tb.dhcp_release("wan1");
        let reset = reset_within(&mut client, change, Duration::from_secs(5));
        tb.dhcp_client("wan1");
        let mut seen = Vec::new();
        let followed = poll(Duration::from_secs(10), || {
            seen.push(seen_as(&tb, &listener, server));
            seen.ends_with(&[LEASE2])
        });
        let took = change.elapsed();
        assert!(
            followed,
            "{mode:?}: new connections never used {LEASE2}: {seen:?}"
        );
        assert!(isp1_up(&tb), "{mode:?}: isp1 back up with its new address");
        eprintln!(
            "{mode:?}: address change: RST {:.0} ms after the release, new address in use {:.2} s after it",
            reset.as_secs_f64() * 1000.0,
            took.as_secs_f64()
        );
    }
}

#[test]
fn carrier_loss_fails_over_at_once() {
    for mode in MODES {
        let mut tb = Testbed::up(TxOffload::Off);
        let config = format!(
            "{}\n[health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\nup_after = 2\n",
            config_toml([1, 1], &tb.path("xwan.sock"))
        );
        tb.start_router(mode, &config);
        let server = SocketAddrV4::new(SERVER1, 5300);
        let listener = tb.listen_tcp("inet", server);
        let (mut client, _conn) = connection_from(&tb, &listener, server, WAN1);

        let cut = Instant::now();
        tb.exec_ok("isp1", &["ip", "link", "set", "cust", "down"]);
        let reset = reset_within(&mut client, cut, Duration::from_secs(2));
        let down = poll(Duration::from_secs(2), || !isp1_up(&tb));
        let down_after = cut.elapsed();
        assert!(down, "{mode:?}: isp1 still up");
        assert!(
            reset < Duration::from_millis(500),
            "{mode:?}: failover took {reset:?}"
        );
        for _ in 0..4 {
            assert_eq!(seen_as(&tb, &listener, server), WAN2, "{mode:?}");
        }

        // Carrier back: up after up_after good probe rounds, not at once.
        let back = Instant::now();
        tb.exec_ok("isp1", &["ip", "link", "set", "cust", "up"]);
        assert!(
            poll(Duration::from_secs(5), || isp1_up(&tb)),
            "{mode:?}: isp1 never came back"
        );
        let up_after = back.elapsed();
        assert!(
            up_after >= Duration::from_millis(300),
            "{mode:?}: back after {up_after:?}, before its probe rounds"
        );
        eprintln!(
            "{mode:?}: carrier loss: RST {:.0} ms, status down {:.0} ms; carrier back: up after {:.0} ms",
            reset.as_secs_f64() * 1000.0,
            down_after.as_secs_f64() * 1000.0,
            up_after.as_secs_f64() * 1000.0
        );
    }
}

/// Echoes one line on every connection to `listener`, in the background.
fn echo_server(listener: std::net::TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 64];
            if let Ok(n) = stream.read(&mut buf) {
                let _ = stream.write_all(&buf[..n]);
            }
        }
    });
}

#[test]
fn router_services_answer_through_each_wan_and_own_traffic_follows_local() {
    for mode in MODES {
        let mut tb = Testbed::up(TxOffload::Off);
        // One default route, through isp1, as a real box has.
        tb.exec_ok(
            "rtr",
            &["ip", "route", "add", "default", "via", "198.18.1.1"],
        );
        let config = format!(
            "{}\n[local]\nuplink = \"isp2\"\n\n[[local.rule]]\nproto = \"tcp\"\ndst = \"203.0.113.0/24\"\ndst_port = \"5401\"\nuplink = \"isp1\"\n",
            config_toml([1, 1], &tb.path("xwan.sock"))
        );
        tb.start_router(mode, &config);
        let service = tb
            .in_ns("rtr", || std::net::TcpListener::bind("0.0.0.0:7000"))
            .expect("listen on the router");
        echo_server(service);
        for wan in [WAN1, WAN2] {
            let mut stream = tb
                .connect_tcp("inet", SocketAddrV4::new(wan, 7000))
                .unwrap_or_else(|e| panic!("{mode:?}: the router's service through {wan}: {e}"));
            stream.write_all(b"ping").expect("send");
            let mut buf = [0u8; 4];
            stream
                .read_exact(&mut buf)
                .unwrap_or_else(|e| panic!("{mode:?}: no answer through {wan}: {e}"));
            assert_eq!(&buf, b"ping");
        }

        // The router's own connections: by isp2, to port 5401 by isp1 (the
        // [[local.rule]]), and all by isp1 while isp2 is down.
        let server = SocketAddrV4::new(SERVER1, 5400);
        let listener = tb.listen_tcp("inet", server);
        let own = |tb: &Testbed| {
            let _client = tb.connect_tcp("rtr", server).expect("the router connects");
            ip_of(listener.accept().1)
        };
        assert_eq!(own(&tb), WAN2, "{mode:?}");
        let ruled = SocketAddrV4::new(SERVER1, 5401);
        let ruled_listener = tb.listen_tcp("inet", ruled);
        let _client = tb.connect_tcp("rtr", ruled).expect("the router connects");
        assert_eq!(
            ip_of(ruled_listener.accept().1),
            WAN1,
            "{mode:?}: [[local.rule]]"
        );
        let down = Request::Uplink {
            name: "isp2".into(),
            state: AdminState::Down,
        };
        control::request(&tb.path("xwan.sock"), &down).expect("isp2 down");
        assert!(
            poll(Duration::from_secs(2), || own(&tb) == WAN1),
            "{mode:?}: the router's own connections did not fail over"
        );
        tb.stop_xwan();
        let rules = tb.exec_ok("rtr", &["ip", "-d", "rule", "show"]);
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(
            !rules.contains("proto 88"),
            "{mode:?}: rules left:\n{rules}"
        );
    }
}

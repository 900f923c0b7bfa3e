//! Failover in the testbed: the path behind isp1 is cut while its gateway
//! stays up; probes take isp1 down, the client of a connection through it gets
//! an RST at once, new connections all go through isp2; after the repair
//! balancing returns. Needs root.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use support::{config_toml, ip_of, poll, RouterMode, Testbed, TxOffload, SERVER1, WAN1, WAN2};
use xwan::control::{self, Reply, Request};

fn isp1_up(tb: &Testbed) -> bool {
    matches!(
        control::request(&tb.path("xwan.sock"), &Request::Status),
        Ok(Reply::Status { status, .. }) if status.uplinks[0].up
    )
}

fn connections(
    tb: &Testbed,
    listener: &support::Listener,
    server: SocketAddrV4,
    n: usize,
) -> BTreeMap<std::net::Ipv4Addr, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let mut client = tb
            .connect_tcp("h1", server)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let (mut conn, peer) = listener.accept();
        client.write_all(b"x").expect("client sends");
        let mut buf = [0u8; 1];
        conn.read_exact(&mut buf).expect("server receives");
        *seen.entry(ip_of(peer)).or_default() += 1;
    }
    seen
}

#[test]
fn cut_behind_isp1_fails_over_and_back() {
    for mode in [RouterMode::XwanXdp, RouterMode::XwanPacket] {
        let mut tb = Testbed::up(TxOffload::Off);
        let config = format!(
            "{}\n[health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\nup_after = 2\n",
            config_toml([1, 1], &tb.path("xwan.sock"))
        );
        tb.start_router(mode, &config);
        let server = SocketAddrV4::new(SERVER1, 5100);
        let listener = tb.listen_tcp("inet", server);

        // A long-lived connection through isp1.
        let mut through_isp1 = None;
        for _ in 0..4 {
            let client = tb.connect_tcp("h1", server).expect("connect");
            let (conn, peer) = listener.accept();
            if ip_of(peer) == WAN1 {
                through_isp1 = Some((client, conn));
                break;
            }
        }
        let (mut client, mut conn) = through_isp1.expect("nth gives isp1 one of two connections");
        conn.write_all(&[1u8; 1000]).expect("server sends");
        let mut buf = [0u8; 1000];
        client.read_exact(&mut buf).expect("client receives");

        // Cut the path behind isp1; its gateway still answers ARP.
        // Timed from before the command, so the figure includes its start-up.
        let cut = Instant::now();
        tb.exec_ok("isp1", &["iptables", "-I", "FORWARD", "-j", "DROP"]);
        client
            .set_read_timeout(Some(Duration::from_secs(8)))
            .expect("timeout");
        let reset = client.read(&mut buf);
        let reset_after = cut.elapsed();
        assert!(
            matches!(&reset, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "{mode:?}: the client should get an RST, got {reset:?}"
        );
        // interval 300 ms, down after 3 rounds of 250 ms: about 1 s.
        assert!(
            reset_after < Duration::from_secs(4),
            "{mode:?}: RST after {reset_after:?}"
        );
        let seen = connections(&tb, &listener, server, 10);
        eprintln!("{mode:?}: RST {reset_after:?} after the cut; new connections all succeed {:?} after it", cut.elapsed());
        assert_eq!(seen, BTreeMap::from([(WAN2, 10)]), "{mode:?}");

        // Repair: balancing returns.
        tb.exec_ok("isp1", &["iptables", "-D", "FORWARD", "-j", "DROP"]);
        assert!(
            poll(Duration::from_secs(5), || isp1_up(&tb)),
            "{mode:?}: isp1 back up"
        );
        let seen = connections(&tb, &listener, server, 10);
        assert_eq!(seen, BTreeMap::from([(WAN1, 5), (WAN2, 5)]), "{mode:?}");
    }
}

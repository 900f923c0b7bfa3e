//! Health per family, end to end, on the dual-stack testbed
//! (`testbed/testbed.sh up --ipv6`, `--io packet` and `--io xdp`): isp1 probes an IPv4
//! target and an IPv6 one (the inet server 2001:db8:ffff::10, ICMPv6 echo
//! sent as a whole frame from isp1's SLAAC address to its IPv6 gateway's
//! MAC; again with a TCP SYN to a closed port, answered by an RST). Cutting isp1's IPv6 alone (ip6tables DROP in isp1's FORWARD chain)
//! takes isp1 out of IPv6 service and nothing else: `xwan status` shows it
//! up for IPv4 and down for IPv6, new IPv6 connections from h1 all leave by
//! isp2, IPv4 keeps balancing over both, and `xwan events` carries an
//! IPv6 event. Repaired, isp1's IPv6 comes back (failback) and takes new
//! IPv6 connections again. With IPv6 connections being made, a cut IPv6
//! path is judged within a second by the TCP evidence (their SYNs go
//! unanswered), before the probes' rounds would. Needs root, ip6tables, nftables and dnsmasq:
//! `cargo test --test health6_e2e`.

// Shared with the other end-to-end suites; not every helper is used here.
#[path = "support/health.rs"]
#[allow(dead_code)]
mod health_support;
#[allow(dead_code)]
mod support;

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use health_support::{connection_churn, status, tcp_sink, unix_ms, Events};
use support::{
    config_toml_dual, poll, RouterMode, Testbed, TxOffload, SERVER1, SERVER1_6, SERVER2_6, WAN1,
    WAN2, WAN2_6,
};

/// How long a family's verdict may take: three failed rounds of 300 ms,
/// with room for a loaded 2-core machine.
const VERDICT: Duration = Duration::from_secs(8);

/// isp1's IPv6 FORWARD rule that cuts it (and nothing else).
const CUT: [&str; 7] = ["ip6tables", "-w", "-I", "FORWARD", "1", "-j", "DROP"];
const REPAIR: [&str; 6] = ["ip6tables", "-w", "-D", "FORWARD", "-j", "DROP"];

/// ICMPv6 echo to the inet server.
#[test]
fn ipv6_alone_fails_over_and_back_on_its_own_probes() {
    scenario(RouterMode::XwanPacket, &SERVER1_6.to_string());
}

#[test]
fn xdp_ipv6_alone_fails_over_and_back_on_its_own_probes() {
    scenario(RouterMode::XwanXdp, &SERVER1_6.to_string());
}

/// A TCP SYN to a closed port of the inet server, answered by its RST.
#[test]
fn tcp_probes_over_ipv6_judge_it_the_same() {
    scenario(RouterMode::XwanPacket, &format!("tcp://[{SERVER1_6}]:9"));
}

#[test]
fn xdp_tcp_probes_over_ipv6_judge_it_the_same() {
    scenario(RouterMode::XwanXdp, &format!("tcp://[{SERVER1_6}]:9"));
}

/// New IPv6 connections to five servers while isp1's IPv6 path dies behind
/// its live gateway: their unanswered SYNs start a burst of isp1's IPv6
/// probes, which takes its IPv6 side down with cause "traffic", well before
/// three failed rounds of 500 ms would; its IPv4 side stays up.
#[test]
fn ipv6_connections_left_unanswered_fail_its_ipv6_over_from_tcp_evidence() {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    // Five servers: nth 1:1 sends every one of them by isp1 in turn.
    let extra = [
        "2001:db8:ffff::12",
        "2001:db8:ffff::13",
        "2001:db8:ffff::14",
    ];
    for addr in extra {
        tb.exec_ok(
            "inet",
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{addr}/128"),
                "dev",
                "lo",
            ],
        );
    }
    let mut dests = vec![SERVER1_6, SERVER2_6];
    dests.extend(
        extra
            .iter()
            .map(|a| a.parse::<std::net::Ipv6Addr>().unwrap()),
    );
    let stop_sink = tcp_sink(
        &tb,
        "inet",
        SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, 5200, 0, 0),
    );
    // Default health settings: interval 500 ms, timeout 1 s, down after 3.
    let config = config_toml_dual([1, 1], &tb.path("xwan.sock")).replace(
        "probe = [\"198.18.11.2\"]\n",
        &format!("probe = [\"198.18.11.2\", \"{SERVER1_6}\"]\n"),
    );
    tb.start_router(RouterMode::XwanPacket, &config);
    wait_for_isp1(&tb, (true, true), "up for both families at start");
    let events = Events::subscribe(&tb);
    let stop = AtomicBool::new(false);
    let (down, connected, cut_at) = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            connection_churn(
                &tb,
                "h1",
                &dests,
                5200,
                Duration::from_millis(20),
                &stop,
                Duration::from_secs(15),
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        let cut_at = unix_ms();
        tb.exec_ok("isp1", &CUT);
        let down = events.wait_for("isp1", "down", Duration::from_secs(6));
        stop.store(true, Ordering::Relaxed);
        (down, churn.join().expect("churn"), cut_at)
    });
    let down = down.expect("isp1's IPv6 never went down");
    let after_ms = down.time_ms.saturating_sub(cut_at);
    eprintln!(
        "IPv6 upstream death with traffic: isp1's IPv6 down {after_ms} ms after the cut ({}; {connected} connections made)",
        down.reason
    );
    assert_eq!(down.family.as_deref(), Some("ipv6"), "{down:?}");
    assert_eq!(down.cause.as_str(), "traffic", "{down:?}");
    // The probes alone take 2 s and more with these settings.
    assert!(after_ms < 1500, "{after_ms} ms");
    let isp1 = status(&tb).uplinks.swap_remove(0);
    assert!(isp1.up, "IPv4 stays up: {isp1:?}");
    stop_sink.store(true, Ordering::Relaxed);
}

/// isp1 probes 198.18.11.2 (ICMP) and `target6`; its IPv6 is cut and
/// repaired, with xwan in `mode`.
fn scenario(mode: RouterMode, target6: &str) {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let config = format!(
        "{}\n[health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\nup_after = 2\n",
        config_toml_dual([1, 1], &tb.path("xwan.sock")).replace(
            "probe = [\"198.18.11.2\"]\n",
            &format!("probe = [\"198.18.11.2\", \"{target6}\"]\n"),
        )
    );
    assert!(config.contains(target6), "isp1 probes IPv6");
    tb.start_router(mode, &config);
    let started = wait_for_isp1(&tb, (true, true), "up for both families at start");
    let events = Events::subscribe(&tb);
    let server6 = SocketAddr::V6(SocketAddrV6::new(SERVER1_6, 5001, 0, 0));
    let server4 = SocketAddr::V4(SocketAddrV4::new(SERVER1, 5001));
    assert_eq!(isp1_share(&tb, server6), (2, 4), "IPv6 balanced before");

    // isp1's IPv6 cut beyond its gateway: IPv4 goes on.
    tb.exec_ok("isp1", &CUT);
    let failed_over = wait_for_isp1(&tb, (true, false), "up for IPv4, down for IPv6");
    let isp1 = status(&tb).uplinks.swap_remove(0);
    let cause6 = isp1.ipv6.as_ref().and_then(|v6| v6.down_cause);
    assert_eq!(cause6.map(|c| c.as_str()), Some("probes"), "{isp1:?}");
    assert_eq!(isp1.down_cause, None, "IPv4 up: {isp1:?}");
    assert!(
        status(&tb).uplinks[1].ipv6.as_ref().is_some_and(|v6| v6.up),
        "isp2 untouched"
    );
    let down = events
        .wait_for("isp1", "down", Duration::from_secs(2))
        .expect("an event for isp1's IPv6");
    assert_eq!(down.family.as_deref(), Some("ipv6"), "{down:?}");
    let all = events.all();
    let ipv6_alone = all.iter().all(|e| e.family.as_deref() == Some("ipv6"));
    assert!(ipv6_alone, "no IPv4 change: {all:?}");
    assert_eq!(
        isp1_share(&tb, server6),
        (0, 4),
        "new IPv6 connections avoid isp1"
    );
    assert_eq!(isp1_share(&tb, server4), (2, 4), "IPv4 still balanced");

    // Repaired: isp1's IPv6 comes back after up_after good rounds.
    tb.exec_ok("isp1", &REPAIR);
    let failed_back = wait_for_isp1(&tb, (true, true), "back for IPv6");
    assert_eq!(isp1_share(&tb, server6), (2, 4), "IPv6 balanced again");
    eprintln!(
        "{target6}: isp1 up for both families {} ms after the start; its IPv6 down {} ms after the cut, back {} ms after the repair",
        started.as_millis(),
        failed_over.as_millis(),
        failed_back.as_millis()
    );
}

/// Waits, at most [`VERDICT`], until isp1 is (up for IPv4, up for IPv6) =
/// `want`, as `xwan status` shows it; how long that took.
fn wait_for_isp1(tb: &Testbed, want: (bool, bool), what: &str) -> Duration {
    let families = || {
        let s = status(tb);
        let isp1 = &s.uplinks[0];
        (isp1.up, isp1.ipv6.as_ref().is_some_and(|v6| v6.up))
    };
    let start = Instant::now();
    assert!(
        poll(VERDICT, || families() == want),
        "isp1 {what}: {:?}",
        status(tb).uplinks[0]
    );
    start.elapsed()
}

/// Opens 4 TCP connections from h1 to `server` (in inet), one after
/// another: how many left by isp1 (the server saw isp1's address or its
/// delegated prefix), and how many in all (any other address than isp2's
/// fails the test).
fn isp1_share(tb: &Testbed, server: SocketAddr) -> (usize, usize) {
    let listener = tb.listen_tcp_at("inet", server);
    let peers: Vec<IpAddr> = (0..4)
        .map(|i| {
            let _client = tb
                .connect_tcp_to("h1", server)
                .unwrap_or_else(|e| panic!("connection {i} to {server}: {e}"));
            listener.accept().1.ip()
        })
        .collect();
    let isp1 = peers
        .iter()
        .filter(|peer| match peer {
            IpAddr::V6(a) if *a == WAN2_6 => false,
            IpAddr::V6(a) => a.segments()[..3] == [0x2001, 0xdb8, 0x100],
            IpAddr::V4(a) if *a == WAN2 => false,
            IpAddr::V4(a) => *a == WAN1,
        })
        .count();
    let isp2 = peers
        .iter()
        .filter(|p| **p == IpAddr::V6(WAN2_6) || **p == IpAddr::V4(WAN2))
        .count();
    assert_eq!(
        isp1 + isp2,
        peers.len(),
        "neither uplink's address for h1: {peers:?}"
    );
    (isp1, peers.len())
}

//! Health checks in the testbed: a latency trigger (a DNS probe answered
//! late by a delaying responder: this kernel has no sch_netem) that fires and
//! recovers with hysteresis, seen by `xwan events` and the hook; ICMP filtered
//! at the ISP while TCP probes keep the uplink up; an upstream that dies
//! behind a live gateway while new connections flow, failed over from the
//! TCP evidence and a burst of probes, with one dead destination first
//! (no false positive). Needs root.

// Shared with the other end-to-end suites; not every helper is used here.
#[path = "support/health.rs"]
mod health_support;
#[allow(dead_code)]
mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use health_support::{
    connection_churn, output_within, status, tcp_sink, unix_ms, uplink_state, DnsResponder, Events,
};
use support::{config_toml, poll, RouterMode, Testbed, TxOffload};

/// `config_toml` with isp1's probes replaced and `extra` appended.
fn config_with(tb: &Testbed, isp1_probes: &str, isp1_health: &str, extra: &str) -> String {
    let base = config_toml([1, 1], &tb.path("xwan.sock")).replace(
        "probe = [\"198.18.11.2\"]\n",
        &format!("probe = {isp1_probes}\n\n[wan.health]\n{isp1_health}\n"),
    );
    format!("{base}\n{extra}\n")
}

#[test]
fn latency_trigger_fires_and_recovers_with_hysteresis() {
    let mut tb = Testbed::up(TxOffload::Off);
    let dns = DnsResponder::start(
        &tb,
        "inet",
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 11, 2), 53),
    );
    let hook_log = tb.path("hook.log");
    let config = config_with(
        &tb,
        "[\"dns://198.18.11.2/example.com\"]",
        "failure_latency_ms = 60\nrecovery_latency_ms = 20\ninitial_state = \"down\"",
        &format!(
            "[health]\ninterval_ms = 200\ntimeout_ms = 500\ndown_after = 3\nup_after = 3\n\
             hook = \"echo \\\"$XWAN_UPLINK $XWAN_STATE $XWAN_CAUSE $XWAN_INTERFACE $XWAN_REASON\\\" >> {}\"\n",
            hook_log.display()
        ),
    );
    tb.start_router(RouterMode::XwanXdp, &config);
    assert!(
        poll(Duration::from_secs(5), || uplink_state(&tb, 0).0),
        "isp1 (initial_state down) up once its DNS probes answer: {:?}",
        status(&tb).uplinks[0]
    );
    // `xwan events` (the command) prints the two changes to come.
    let events_cmd = Command::new(env!("CARGO_BIN_EXE_xwan"))
        .args(["events", "--count", "2", "--socket"])
        .arg(tb.path("xwan.sock"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("xwan events");
    let events = Events::subscribe(&tb);

    let slow = Instant::now();
    dns.set_delay(Duration::from_millis(100));
    let down = events
        .wait_for("isp1", "down", Duration::from_secs(5))
        .expect("isp1 down on latency");
    let fired = slow.elapsed();
    assert_eq!(down.cause.as_str(), "latency", "{down:?}");
    assert_eq!(uplink_state(&tb, 0), (false, Some("latency".into())));
    assert!(uplink_state(&tb, 1).0, "isp2 untouched");

    // 40 ms: under the failure threshold, over the recovery one: stays down.
    dns.set_delay(Duration::from_millis(40));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        uplink_state(&tb, 0),
        (false, Some("latency".into())),
        "hysteresis"
    );
    let fast = Instant::now();
    dns.set_delay(Duration::ZERO);
    let up = events
        .wait_for("isp1", "up", Duration::from_secs(5))
        .expect("isp1 back up");
    let recovered = fast.elapsed();
    eprintln!(
        "latency trigger: down {fired:?} after the delay began ({}), back {recovered:?} after it ended",
        down.reason
    );
    assert!(fired < Duration::from_secs(3), "{fired:?}");
    assert!(up.reason.contains("good probe rounds"), "{up:?}");

    let out = output_within(events_cmd, Duration::from_secs(5));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        (
            &lines[0]["uplink"],
            &lines[0]["state"],
            &lines[0]["cause"],
            &lines[0]["interface"]
        ),
        (
            &"isp1".into(),
            &"down".into(),
            &"latency".into(),
            &"wan1".into()
        )
    );
    assert_eq!(lines[1]["state"], "up");
    // isp1's hook runs: up at start (proven), down on latency, up again.
    let isp1 = || -> Vec<String> {
        let text = std::fs::read_to_string(&hook_log).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("isp1 "))
            .map(str::to_string)
            .collect()
    };
    assert!(
        poll(Duration::from_secs(3), || isp1().len() >= 3),
        "{:?}",
        isp1()
    );
    let lines = isp1();
    assert!(
        lines[0].starts_with("isp1 up probes wan1 3 good probe rounds"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("isp1 down latency wan1 mean round trip"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("isp1 up probes wan1 "), "{lines:?}");
}

#[test]
fn icmp_filtered_at_the_isp_tcp_probes_keep_the_uplink_up() {
    for mode in [RouterMode::XwanXdp, RouterMode::XwanPacket] {
        let mut tb = Testbed::up(TxOffload::Off);
        let stop_sink = tcp_sink(
            &tb,
            "inet",
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 11, 2), 5300),
        );
        // isp1 probes by TCP (a listener) and isp2 by ICMP; both ISPs drop ICMP.
        let config = config_with(
            &tb,
            "[\"tcp://198.18.11.2:5300\"]",
            "",
            "[health]\ninterval_ms = 200\ntimeout_ms = 300\ndown_after = 3\nup_after = 2\n",
        );
        tb.start_router(mode, &config);
        let events = Events::subscribe(&tb);
        for isp in ["isp1", "isp2"] {
            tb.exec_ok(
                isp,
                &["iptables", "-I", "FORWARD", "-p", "icmp", "-j", "DROP"],
            );
        }
        let isp2_down = events.wait_for("isp2", "down", Duration::from_secs(5));
        assert!(
            isp2_down.is_some(),
            "{mode:?}: ICMP probes fail through a filtering ISP"
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            uplink_state(&tb, 0),
            (true, None),
            "{mode:?}: TCP probes keep isp1 up"
        );
        assert_eq!(
            uplink_state(&tb, 1),
            (false, Some("probes".into())),
            "{mode:?}"
        );
        assert!(
            events.wait_for("isp1", "down", Duration::ZERO).is_none(),
            "{mode:?}"
        );
        let s = status(&tb);
        assert!(
            s.uplinks[0].probe_loss < 0.2,
            "{mode:?}: {:?}",
            s.uplinks[0]
        );
        // The TCP probes really test the path: drop TCP at isp1 and it goes down.
        tb.exec_ok(
            "isp1",
            &["iptables", "-I", "FORWARD", "-p", "tcp", "-j", "DROP"],
        );
        let down = events.wait_for("isp1", "down", Duration::from_secs(5));
        assert_eq!(down.map(|e| e.cause.as_str()), Some("probes"), "{mode:?}");
        tb.exec_ok(
            "isp1",
            &["iptables", "-D", "FORWARD", "-p", "tcp", "-j", "DROP"],
        );
        assert!(
            events
                .wait_for("isp1", "up", Duration::from_secs(5))
                .is_some(),
            "{mode:?}"
        );
        stop_sink.store(true, Ordering::Relaxed);
    }
}

/// Destinations of the churn: the testbed's two servers and three more (an
/// odd number, so nth balancing over two uplinks gives each all of them).
const DESTS: [Ipv4Addr; 5] = [
    Ipv4Addr::new(203, 0, 113, 10),
    Ipv4Addr::new(203, 0, 113, 11),
    Ipv4Addr::new(203, 0, 113, 12),
    Ipv4Addr::new(203, 0, 113, 13),
    Ipv4Addr::new(203, 0, 113, 14),
];

#[test]
fn upstream_death_with_traffic_fails_over_from_tcp_evidence() {
    for mode in [RouterMode::XwanXdp, RouterMode::XwanPacket] {
        let mut tb = Testbed::up(TxOffload::Off);
        for d in &DESTS[2..] {
            tb.exec_ok(
                "inet",
                &["ip", "addr", "add", &format!("{d}/32"), "dev", "lo"],
            );
        }
        let stop_sink = tcp_sink(&tb, "inet", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5200));
        // Default health settings: interval 500 ms, timeout 1 s, down after 3.
        tb.start_router(mode, &config_toml([1, 1], &tb.path("xwan.sock")));
        let events = Events::subscribe(&tb);
        let stop = AtomicBool::new(false);
        let (cut_at, connected) = std::thread::scope(|s| {
            let churn = s.spawn(|| {
                connection_churn(
                    &tb,
                    "h1",
                    &DESTS,
                    5200,
                    Duration::from_millis(20),
                    &stop,
                    Duration::from_secs(20),
                )
            });
            // One dead remote host behind isp1 while traffic flows: no false positive.
            std::thread::sleep(Duration::from_secs(1));
            tb.exec_ok(
                "isp1",
                &[
                    "iptables",
                    "-I",
                    "FORWARD",
                    "-d",
                    "203.0.113.13",
                    "-j",
                    "DROP",
                ],
            );
            std::thread::sleep(Duration::from_secs(3));
            let false_positive = events.wait_for("isp1", "down", Duration::ZERO);
            // The upstream dies behind a live gateway.
            let cut_at = unix_ms();
            tb.exec_ok("isp1", &["iptables", "-I", "FORWARD", "-j", "DROP"]);
            let down = events.wait_for("isp1", "down", Duration::from_secs(6));
            stop.store(true, Ordering::Relaxed);
            let connected = churn.join().expect("churn");
            assert!(
                false_positive.is_none(),
                "{mode:?}: one dead destination took isp1 down: {false_positive:?}"
            );
            (
                down.map(|d| (d.time_ms.saturating_sub(cut_at), d)),
                connected,
            )
        });
        let (after_ms, down) = cut_at.unwrap_or_else(|| panic!("{mode:?}: isp1 never went down"));
        eprintln!(
            "{mode:?}: upstream death with traffic: isp1 down {after_ms} ms after the cut ({}; {connected} connections made)",
            down.reason
        );
        assert_eq!(down.cause.as_str(), "traffic", "{mode:?}: {down:?}");
        // The probes alone take 2 s and more with these settings.
        assert!(after_ms < 1500, "{mode:?}: {after_ms} ms");
        assert!(uplink_state(&tb, 1).0, "{mode:?}: isp2 untouched");
        stop_sink.store(true, Ordering::Relaxed);
    }
}

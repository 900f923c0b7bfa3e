//! The optional kernel features in the testbed: `xwan run` probes them at
//! start and says, one line each, what it does without one; `xwan status`,
//! its JSON and the metrics show the same lines; an explicit `--io xdp` that
//! cannot run here is refused with the feature it lacks; `auto` picks a
//! backend by itself. Absences are forced with the test switch
//! `XWAN_TEST_ABSENT`, so every fallback runs on any kernel. The traffic of
//! each fallback is checked byte for byte by the scenarios of `tests/e2e.rs`.
//! Needs root.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::{config_toml, RouterMode, Testbed, TxOffload};
use xwan::control::protocol::{FeatureState, StatusReport};
use xwan::control::{request, Reply, Request};

/// Where xwan serves metrics inside the router's namespace.
const METRICS: &str = "127.0.0.1:9848";

fn config(tb: &Testbed) -> String {
    format!(
        "{}metrics = \"{METRICS}\"\n",
        config_toml([1, 1], &tb.path("xwan.sock"))
    )
}

fn status(tb: &Testbed) -> StatusReport {
    match request(&tb.path("xwan.sock"), &Request::Status).expect("status") {
        Reply::Status { status, .. } => *status,
        other => panic!("status: {other:?}"),
    }
}

fn state_of(status: &StatusReport, name: &str) -> FeatureState {
    status
        .features
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no feature {name} in {:?}", status.features))
        .state
}

fn metrics(tb: &Testbed) -> String {
    tb.http_get("rtr", METRICS, "/metrics")
}

#[test]
fn a_forced_absence_is_one_line_in_the_log_status_and_metrics() {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb);
    tb.start_router(
        RouterMode::XwanAbsent {
            io: "packet",
            absent: "tcx,xdp-meta",
        },
        &text,
    );
    let status = status(&tb);
    assert_eq!(status.io, "packet");
    assert_eq!(state_of(&status, "tcx"), FeatureState::Forced);
    assert_eq!(state_of(&status, "tc-program"), FeatureState::Available);
    assert_eq!(status.features.len(), 11, "{:?}", status.features);
    assert_eq!(
        status.offload.state, "on (TC by clsact: no TCX)",
        "the fast path says how it attached"
    );
    let log = tb.router_log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("feature tcx:")).collect();
    assert_eq!(lines.len(), 1, "one line for tcx:\n{log}");
    assert!(
        lines[0].contains("forced-absent") && lines[0].contains("clsact filter"),
        "{}",
        lines[0]
    );
    assert!(!log.contains("PROG LOAD LOG"), "no verifier log:\n{log}");
    let text = metrics(&tb);
    assert!(
        text.contains("xwan_feature{name=\"tcx\",state=\"forced-absent\"} 1"),
        "{text}"
    );
    assert!(text.contains("xwan_feature{name=\"socket-filter\",state=\"available\"} 1"));
    let shown = tb.exec_ok(
        "rtr",
        &[
            env!("CARGO_BIN_EXE_xwan"),
            "status",
            "--socket",
            &tb.path("xwan.sock").to_string_lossy(),
        ],
    );
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains("features:\n"), "{shown}");
    assert!(shown.contains("  tcx: forced-absent (XWAN_TEST_ABSENT); the fast path attaches by"));
}

/// The TC program's filters on the router's interfaces (clsact ingress).
fn clsact_filters(tb: &Testbed) -> usize {
    ["lan0", "wan1", "wan2"]
        .iter()
        .map(|dev| {
            let out = tb.exec("rtr", &["tc", "filter", "show", "dev", dev, "ingress"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("xwan_offload"))
                .count()
        })
        .sum()
}

/// Without TCX the fast path attaches by clsact filters: one per interface,
/// removed by the orderly stop; a crash leaves them, and the next start
/// replaces them (still one each), so no stale program forwards beside it.
#[test]
fn without_tcx_the_fast_path_attaches_by_clsact_and_cleans_up() {
    let mode = RouterMode::XwanAbsent {
        io: "packet",
        absent: "tcx",
    };
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb);
    tb.start_router(mode, &text);
    assert_eq!(clsact_filters(&tb), 3);
    tb.signal_router("TERM");
    assert!(tb.wait_router_exit(Duration::from_secs(15)).is_some());
    assert_eq!(clsact_filters(&tb), 0, "the orderly stop removes them");

    tb.start_router(mode, &text);
    tb.signal_router("KILL");
    assert!(tb.wait_router_exit(Duration::from_secs(15)).is_some());
    assert_eq!(clsact_filters(&tb), 3, "a crash leaves them");
    tb.start_router(mode, &text);
    assert_eq!(clsact_filters(&tb), 3, "replaced, not added beside");
    assert_eq!(status(&tb).offload.state, "on (TC by clsact: no TCX)");
    // A start of another kind (TCX here, or the fast path off) removes
    // what a crash left too: no stale filter forwards beside it.
    tb.signal_router("KILL");
    assert!(tb.wait_router_exit(Duration::from_secs(15)).is_some());
    assert_eq!(clsact_filters(&tb), 3);
    tb.start_router(RouterMode::XwanPacketOffloadOff, &text);
    assert_eq!(clsact_filters(&tb), 0, "removed at start");
    assert!(tb
        .router_log()
        .contains("removed the clsact filter a stopped xwan left behind"));
}

#[test]
fn auto_runs_what_this_machine_offers_and_says_why() {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb);
    tb.start_router(RouterMode::XwanAuto, &text);
    let status = status(&tb);
    let log = tb.router_log();
    let zero_copy = state_of(&status, "xsk-zerocopy") == FeatureState::Available;
    // veth has no zero-copy AF_XDP: auto takes packet with the fast path.
    let expected = if zero_copy { "xdp" } else { "packet" };
    assert!(status.io.starts_with(expected), "{} / {log}", status.io);
    assert!(log.contains(&format!("io {expected}: auto: ")), "{log}");
    assert_eq!(status.offload.state, "on");
    assert!(!log.contains("PROG LOAD LOG"), "no verifier log:\n{log}");
}

#[test]
fn auto_without_xdp_takes_packet_and_explicit_xdp_is_refused() {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb);
    tb.start_router(
        RouterMode::XwanAbsent {
            io: "auto",
            absent: "xdp-program",
        },
        &text,
    );
    let status = status(&tb);
    assert_eq!(status.io, "packet");
    assert_eq!(status.offload.state, "on", "the fast path needs no XDP");
    drop(tb);

    let tb = Testbed::up(TxOffload::On);
    let path = tb.path("xwan.toml");
    std::fs::write(&path, config(&tb)).expect("write the config");
    let out = tb.exec(
        "rtr",
        &[
            "env",
            "XWAN_TEST_ABSENT=xdp-program",
            env!("CARGO_BIN_EXE_xwan"),
            "run",
            "--io",
            "xdp",
            "-c",
            &path.to_string_lossy(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused: {stderr}");
    assert!(
        stderr.contains("xwan run: --io xdp cannot run here: xdp-program: forced-absent"),
        "{stderr}"
    );
}

#[test]
fn check_kernel_prints_every_feature_and_the_plan() {
    let tb = Testbed::up(TxOffload::On);
    let path = tb.path("xwan.toml");
    std::fs::write(&path, config(&tb)).expect("write the config");
    let path = path.to_string_lossy();
    let xwan = env!("CARGO_BIN_EXE_xwan");
    let out = tb.exec_ok("rtr", &[xwan, "check", "--kernel", "-c", &path]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in [
        "xdp-program",
        "tc-program",
        "socket-filter",
        "tcx",
        "af-xdp",
        "xsk-zerocopy",
        "xdp-features",
        "xdp-meta",
        "rt-sched",
        "nft-owner",
        "capabilities",
    ] {
        assert!(text.contains(&format!("\n  {name}: ")), "{name}:\n{text}");
    }
    assert!(text.contains("xwan run would use: io "), "{text}");
    // The interfaces of the file are asked: the testbed's veths report
    // XDP features.
    assert!(
        text.contains("xdp-features: available (on lan0, wan1, wan2)"),
        "{text}"
    );

    let out = tb.exec(
        "rtr",
        &[
            "env",
            "XWAN_TEST_ABSENT=af-xdp",
            xwan,
            "check",
            "--kernel",
            "--json",
            "--io",
            "xdp",
            "-c",
            &path,
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["features"].as_array().map(Vec::len), Some(11));
    let af_xdp = json["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "af-xdp")
        .expect("af-xdp");
    assert_eq!(af_xdp["state"], "forced-absent");
    assert!(
        json["io"]["Err"]
            .as_str()
            .is_some_and(|e| e.contains("af-xdp")),
        "{json}"
    );
}

/// `table ip xwan` in the router's namespace, as nft lists it (empty: none).
fn xwan_table(tb: &Testbed) -> String {
    let out = tb.exec("rtr", &["nft", "list", "table", "ip", "xwan"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Without owned nftables tables, `--io packet`'s table is loaded without
/// the flag: the orderly stop removes it, a crash leaves it (the kernel
/// cannot), and the next start replaces it. With the flag (this kernel) a
/// crash takes it away.
#[test]
fn without_owned_tables_the_packet_table_is_replaced_after_a_crash() {
    let unowned = RouterMode::XwanAbsent {
        io: "packet",
        absent: "nft-owner",
    };
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb);
    tb.start_router(unowned, &text);
    let table = xwan_table(&tb);
    assert!(table.contains("table ip xwan"), "{table}");
    assert!(!table.contains("owner"), "not owned: {table}");
    assert_eq!(state_of(&status(&tb), "nft-owner"), FeatureState::Forced);
    tb.signal_router("KILL");
    assert!(tb.wait_router_exit(Duration::from_secs(15)).is_some());
    assert!(
        xwan_table(&tb).contains("table ip xwan"),
        "a crash leaves it"
    );
    tb.start_router(unowned, &text);
    assert_eq!(xwan_table(&tb).matches("table ip xwan").count(), 1);
    tb.signal_router("TERM");
    assert!(tb.wait_router_exit(Duration::from_secs(15)).is_some());
    assert!(xwan_table(&tb).is_empty(), "the orderly stop removes it");

    tb.start_router(RouterMode::XwanPacket, &text);
    if state_of(&status(&tb), "nft-owner") == FeatureState::Available {
        assert!(xwan_table(&tb).contains("owner"), "owned here");
        tb.signal_router("KILL");
        assert!(tb.wait_router_exit(Duration::from_secs(15)).is_some());
        assert!(
            xwan_table(&tb).is_empty(),
            "the kernel deleted it with xwan"
        );
    }
}

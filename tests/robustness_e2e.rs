//! End-to-end robustness tests (issue 16): a panic anywhere stops the whole
//! router and leaves nothing in the kernel. They need root:
//! `cargo test --test robustness_e2e`.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::{config_toml, RouterMode, Testbed, TxOffload};

/// The interfaces xwan attaches to in the testbed's router namespace.
const INTERFACES: [&str; 3] = ["lan0", "wan1", "wan2"];

/// Whether any XDP program is attached to an interface of the router.
fn xdp_attached(tb: &Testbed) -> Vec<String> {
    INTERFACES
        .iter()
        .filter(|interface| {
            let out = tb.exec_ok("rtr", &["ip", "link", "show", "dev", interface]);
            String::from_utf8_lossy(&out.stdout).contains("xdp")
        })
        .map(|interface| (*interface).to_string())
        .collect()
}

/// Whether the packet mode's nftables table exists in the router namespace.
fn nft_table_present(tb: &Testbed) -> bool {
    tb.exec("rtr", &["nft", "list", "table", "ip", "xwan"])
        .status
        .success()
}

/// xwan runs in `mode`, its sweeper thread panics (injected): the process
/// exits with an error after one log line naming the panic, and nothing of
/// it is left in the kernel.
fn panic_stops_everything(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let config = config_toml([1, 1], &tb.path("xwan.sock"));
    tb.start_xwan_with_env(mode, &config, &[("XWAN_INJECT_PANIC", "sweeper@4")]);
    match mode {
        RouterMode::XwanXdp => assert_eq!(xdp_attached(&tb), INTERFACES, "attached while running"),
        _ => assert!(nft_table_present(&tb), "table ip xwan while running"),
    }
    let status = tb
        .wait_router_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("xwan still runs after the panic:\n{}", tb.router_log()));
    let log = tb.router_log();
    assert!(!status.success(), "exit status {status}:\n{log}");
    let panic_lines: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert!(
        panic_lines.len() == 2
            && panic_lines[0].contains("thread xwan-sweeper panicked at")
            && panic_lines[0].contains("injected by XWAN_INJECT_PANIC")
            && panic_lines[1].contains("stopped after a panic: thread xwan-sweeper"),
        "one log line for the panic, one for the exit:\n{log}"
    );
    assert!(log.contains("stopping"), "the orderly stop ran:\n{log}");
    assert!(xdp_attached(&tb).is_empty(), "XDP left attached:\n{log}");
    assert!(!nft_table_present(&tb), "table ip xwan left behind:\n{log}");
}

#[test]
fn panic_in_a_thread_stops_xwan_xdp() {
    panic_stops_everything(RouterMode::XwanXdp);
}

#[test]
fn panic_in_a_thread_stops_xwan_packet() {
    panic_stops_everything(RouterMode::XwanPacket);
}

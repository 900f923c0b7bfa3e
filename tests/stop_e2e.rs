//! A stop that waits on nothing outside xwan (issue 24): with the control
//! socket's file removed while xwan runs (a temporary directory cleaned,
//! tmpfiles, an operator), or its interfaces deleted, SIGTERM still ends the
//! process within [`STOP_LIMIT`], with the orderly stop's work done: the
//! state saved, the kernel changes undone. Needs root:
//! `cargo test --test stop_e2e`.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use support::{config_toml, RouterMode, Testbed, TxOffload};

/// The bound on an orderly stop in the testbed (docs/service.md): the
/// housekeeping threads notice the stop within 50 ms, the control and
/// metrics servers within 100 ms, the workers within their poll timeout.
const STOP_LIMIT: Duration = Duration::from_secs(3);

/// Whether the packet mode's nftables table exists in the router namespace.
fn nft_table_present(tb: &Testbed) -> bool {
    tb.exec("rtr", &["nft", "list", "table", "ip", "xwan"])
        .status
        .success()
}

/// Sends SIGTERM to xwan and checks the orderly stop: the exit within
/// [`STOP_LIMIT`] with status 0, by the signal, the state saved, table ip
/// xwan gone. `what` names what the test did to xwan first.
fn stops_in_order(tb: &mut Testbed, what: &str) {
    let asked = Instant::now();
    tb.signal_router("TERM");
    let status = tb.wait_router_exit(STOP_LIMIT);
    let took = asked.elapsed();
    let log = tb.xwan_log();
    let status =
        status.unwrap_or_else(|| panic!("xwan still runs {STOP_LIMIT:?} after SIGTERM:\n{log}"));
    eprintln!("stopped in {took:?} with {what}");
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(log.contains("saved the state for the next start"), "{log}");
    assert!(!nft_table_present(tb), "table ip xwan left behind:\n{log}");
}

fn stops_without_its_socket_file(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let socket = tb.path("xwan.sock");
    tb.start_router(mode, &config_toml([1, 1], &socket));
    std::fs::remove_file(&socket).expect("remove the control socket's file");
    stops_in_order(&mut tb, "its socket file removed");
    assert!(!socket.exists(), "a socket file reappeared");
}

#[test]
fn stops_within_the_bound_with_its_socket_file_removed_xdp() {
    stops_without_its_socket_file(RouterMode::XwanXdp);
}

#[test]
fn stops_within_the_bound_with_its_socket_file_removed_packet() {
    stops_without_its_socket_file(RouterMode::XwanPacket);
}

/// Its interfaces deleted under it (a veth removed, a USB NIC pulled).
fn stops_without_its_interfaces(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    tb.start_router(mode, &config_toml([1, 1], &tb.path("xwan.sock")));
    for interface in ["lan0", "wan1", "wan2"] {
        tb.exec_ok("rtr", &["ip", "link", "del", interface]);
    }
    stops_in_order(&mut tb, "its interfaces deleted");
}

#[test]
fn stops_within_the_bound_with_its_interfaces_deleted_xdp() {
    stops_without_its_interfaces(RouterMode::XwanXdp);
}

#[test]
fn stops_within_the_bound_with_its_interfaces_deleted_packet() {
    stops_without_its_interfaces(RouterMode::XwanPacket);
}

/// The orderly stop stuck on the file system (the state's temporary file is
/// a FIFO nobody reads: the save blocks in `open`): a second SIGTERM 1.2 s
/// after the first forces the exit, which tries the save for 2 s on a
/// thread of its own, says what it skipped, and exits with status 1.
#[test]
fn an_insisting_sigterm_forces_the_exit_of_a_stuck_stop() {
    let mut tb = Testbed::up(TxOffload::On);
    let socket = tb.path("xwan.sock");
    tb.start_router(RouterMode::XwanPacket, &config_toml([1, 1], &socket));
    let tmp = tb.path("xwan.state.tmp");
    let made = std::process::Command::new("mkfifo")
        .arg(&tmp)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", tmp.display());
    tb.signal_router("TERM");
    assert!(
        tb.wait_router_exit(Duration::from_millis(1200)).is_none(),
        "the stop did not block on the FIFO:\n{}",
        tb.xwan_log()
    );
    let insisted = Instant::now();
    tb.signal_router("TERM");
    let status = tb.wait_router_exit(STOP_LIMIT);
    let log = tb.xwan_log();
    let status = status.unwrap_or_else(|| panic!("the forced exit took too long:\n{log}"));
    eprintln!(
        "forced exit {:?} after the second SIGTERM",
        insisted.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("SIGTERM again: forcing the exit"), "{log}");
    assert!(log.contains("the state was not saved within 2s"), "{log}");
    assert!(
        log.contains("forced exit: the rest of the orderly stop is skipped"),
        "{log}"
    );
}

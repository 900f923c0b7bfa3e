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

/// xwan runs in `mode`, one of its housekeeping threads panics (injected):
/// the process exits with an error after one log line naming the panic, and
/// nothing of it is left in the kernel.
fn panic_stops_everything(mode: RouterMode, thread: &str) {
    let mut tb = Testbed::up(TxOffload::On);
    let config = config_toml([1, 1], &tb.path("xwan.sock"));
    let inject = format!("{thread}@4");
    tb.start_xwan_with_env(mode, &config, &[("XWAN_INJECT_PANIC", &inject)]);
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
            && panic_lines[0].contains(&format!("thread xwan-{thread} panicked at"))
            && panic_lines[0].contains("injected by XWAN_INJECT_PANIC")
            && panic_lines[1].contains(&format!("stopped after a panic: thread xwan-{thread}")),
        "one log line for the panic, one for the exit:\n{log}"
    );
    assert!(log.contains("stopping"), "the orderly stop ran:\n{log}");
    assert!(xdp_attached(&tb).is_empty(), "XDP left attached:\n{log}");
    assert!(!nft_table_present(&tb), "table ip xwan left behind:\n{log}");
}

#[test]
fn panic_in_the_sweeper_stops_xwan_xdp() {
    panic_stops_everything(RouterMode::XwanXdp, "sweeper");
}

#[test]
fn panic_in_the_health_thread_stops_xwan_packet() {
    panic_stops_everything(RouterMode::XwanPacket, "health");
}

/// Runs `xwan ARGS --socket SOCKET` as uid 65534 (nobody) with primary group
/// `gid` and no other groups.
fn xwan_as_nobody(gid: u32, args: &[&str], socket: &std::path::Path) -> std::process::Output {
    std::process::Command::new("timeout")
        .args(["10", "setpriv", "--reuid=65534"])
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", env!("CARGO_BIN_EXE_xwan")])
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run setpriv")
}

/// With `[control] group` set to nobody's group, the socket is mode 0660 in
/// that group from the start; a member reads status and flows but cannot
/// change the router, and someone outside the group is refused with a clear
/// message (not "is xwan running?").
#[test]
fn control_socket_group_reads_and_root_changes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let mut tb = Testbed::up(TxOffload::On);
    let socket = tb.path("xwan.sock");
    let config = format!("{}group = \"65534\"\n", config_toml([1, 1], &socket));
    tb.start_router(RouterMode::XwanPacket, &config);
    let meta = std::fs::metadata(&socket).expect("the socket exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534);

    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let status = xwan_as_nobody(65534, &["status"], &socket);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("isp1"), "{}", text(&status));
    let flows = xwan_as_nobody(65534, &["flows"], &socket);
    assert!(flows.status.success(), "{}", text(&flows));

    let reload = xwan_as_nobody(65534, &["reload"], &socket);
    assert!(!reload.status.success(), "{}", text(&reload));
    assert!(
        text(&reload)
            .contains("permission denied: `xwan reload` changes the router and needs root"),
        "{}",
        text(&reload)
    );
    let down = xwan_as_nobody(65534, &["uplink", "isp1", "down"], &socket);
    assert!(
        !down.status.success() && text(&down).contains("`xwan uplink` changes the router"),
        "{}",
        text(&down)
    );

    let outsider = xwan_as_nobody(12345, &["status"], &socket);
    assert!(!outsider.status.success(), "{}", text(&outsider));
    assert!(
        text(&outsider).contains("permission denied on the control socket")
            && !text(&outsider).contains("is `xwan run` running"),
        "{}",
        text(&outsider)
    );

    // Root still changes the router.
    let reload = std::process::Command::new(env!("CARGO_BIN_EXE_xwan"))
        .args(["reload", "--socket"])
        .arg(&socket)
        .output()
        .expect("run xwan reload");
    assert!(reload.status.success(), "{}", text(&reload));
}

/// xwan killed with SIGKILL (no orderly stop at all) leaves nothing behind:
/// the kernel closes its BPF links and deletes the nftables table it owns.
fn sigkill_leaves_nothing(mode: RouterMode) {
    let mut tb = Testbed::up(TxOffload::On);
    let config = config_toml([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    match mode {
        RouterMode::XwanXdp => assert_eq!(xdp_attached(&tb), INTERFACES, "attached while running"),
        _ => {
            assert!(nft_table_present(&tb), "table ip xwan while running");
            assert!(
                tb.router_log().contains("owned by xwan"),
                "{}",
                tb.router_log()
            );
        }
    }
    tb.signal_router("KILL");
    let status = tb
        .wait_router_exit(Duration::from_secs(5))
        .expect("xwan ends on SIGKILL");
    assert!(!status.success());
    let gone = support::poll(Duration::from_secs(2), || {
        xdp_attached(&tb).is_empty() && !nft_table_present(&tb)
    });
    assert!(
        gone,
        "left behind: XDP on {:?}, table ip xwan: {}",
        xdp_attached(&tb),
        nft_table_present(&tb)
    );
}

#[test]
fn sigkill_leaves_nothing_xdp() {
    sigkill_leaves_nothing(RouterMode::XwanXdp);
}

#[test]
fn sigkill_leaves_nothing_packet() {
    sigkill_leaves_nothing(RouterMode::XwanPacket);
}

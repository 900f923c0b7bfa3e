//! xwan as the Debian package runs it: the binary (the installed
//! /usr/sbin/xwan when `XWAN_INSTALLED_BIN` names it, as scripts/test-package
//! does; the one cargo built otherwise) started with no `-c`, so it reads
//! /etc/xwan/xwan.toml (a temporary copy of the testbed's configuration;
//! whatever was there is put back after), under a fake systemd: a notify
//! socket that must get READY=1, watchdog pings while the workers turn, and
//! STOPPING=1. The router's namespace keeps the kernel's stock
//! ip_local_port_range (32768-60999) and the file sets no `[nat] ports`, so
//! this is also the first start on a stock kernel. Needs root:
//! `cargo test --test installed_e2e`.

#[allow(dead_code)]
mod support;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{config_toml, poll, Testbed, TxOffload};

const ETC_DIR: &str = "/etc/xwan";
const ETC_CONFIG: &str = "/etc/xwan/xwan.toml";

fn binary() -> PathBuf {
    std::env::var_os("XWAN_INSTALLED_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_xwan")))
}

/// /etc/xwan/xwan.toml replaced for the test's life, then put back as it was
/// (the packaged conffile, or nothing).
struct EtcConfig {
    backup: Option<PathBuf>,
    created_dir: bool,
}

impl EtcConfig {
    fn install(text: &str) -> EtcConfig {
        let created_dir = !Path::new(ETC_DIR).exists();
        fs::create_dir_all(ETC_DIR).expect("create /etc/xwan");
        let backup = Path::new(ETC_CONFIG).exists().then(|| {
            let backup = PathBuf::from(format!("{ETC_CONFIG}.e2e-{}", std::process::id()));
            fs::rename(ETC_CONFIG, &backup).expect("set the installed config aside");
            backup
        });
        let guard = EtcConfig {
            backup,
            created_dir,
        };
        fs::write(ETC_CONFIG, text).expect("write /etc/xwan/xwan.toml");
        guard
    }
}

impl Drop for EtcConfig {
    fn drop(&mut self) {
        let _ = fs::remove_file(ETC_CONFIG);
        if let Some(backup) = &self.backup {
            let _ = fs::rename(backup, ETC_CONFIG);
        } else if self.created_dir {
            let _ = fs::remove_dir(ETC_DIR);
        }
    }
}

/// Kills the router if the test fails before stopping it.
struct Router(Child);

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every datagram the notify socket received within `limit`, until `until`
/// has been seen.
fn notifications(socket: &UnixDatagram, until: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !seen.iter().any(|m: &String| m.contains(until)) {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    seen
}

#[test]
fn installed_binary_runs_from_etc_xwan_under_systemd_notify() {
    let tb = Testbed::up(TxOffload::On);
    let socket = tb.path("xwan.sock");
    let _etc = EtcConfig::install(&config_toml([1, 1], &socket));
    let bin = binary();

    // check, with no -c, reads /etc/xwan/xwan.toml.
    let check = Command::new(&bin)
        .arg("check")
        .env_remove("XWAN_CONFIG")
        .output()
        .expect("run xwan check");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(stdout.starts_with("/etc/xwan/xwan.toml: OK"), "{stdout}");

    let notify_path = tb.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let log_path = tb.path("xwan.log");
    let log = fs::File::create(&log_path).expect("log file");
    let child = Command::new("ip")
        .args(["netns", "exec", &tb.ns("rtr")])
        .arg(&bin)
        .arg("run")
        .env_remove("XWAN_CONFIG")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn xwan run");
    let mut router = Router(child);
    let read_log = || fs::read_to_string(&log_path).unwrap_or_default();

    let ready = notifications(&notify, "READY=1", Duration::from_secs(20));
    assert!(
        ready
            .iter()
            .any(|m| m.contains("READY=1") && m.contains("STATUS=forwarding with")),
        "no READY=1 in {ready:?}; log:\n{}",
        read_log()
    );
    // Pings every half second while the workers turn.
    let pings = notifications(&notify, "WATCHDOG=1", Duration::from_secs(5));
    assert!(
        pings.iter().any(|m| m == "WATCHDOG=1\n"),
        "no watchdog ping in {pings:?}; log:\n{}",
        read_log()
    );

    // The default NAT range left the stock kernel's ephemeral ports alone.
    let log = read_log();
    assert!(
        log.contains(
            "nat ports 20000-32767: the default 20000-59999 less the kernel's ephemeral ports"
        ),
        "{log}"
    );
    // One line per event, no colour in a file.
    assert!(!log.contains('\u{1b}'), "ANSI escapes in the log:\n{log}");

    // It forwards (once the gateways resolve).
    let forwarded = poll(Duration::from_secs(15), || {
        let out = tb.exec("h1", &["ping", "-n", "-c", "1", "-W", "1", "203.0.113.10"]);
        out.status.success()
    });
    assert!(
        forwarded,
        "no ping through the router; log:\n{}",
        read_log()
    );

    // The status command, reaching the socket the file names.
    let status = Command::new(&bin)
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .expect("xwan status");
    assert!(status.status.success(), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("config /etc/xwan/xwan.toml"));

    Command::new("kill")
        .args(["-TERM", &router.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    let stopping = notifications(&notify, "STOPPING=1", Duration::from_secs(10));
    assert!(
        stopping.iter().any(|m| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
    let exited = poll(
        Duration::from_secs(10),
        || matches!(router.0.try_wait(), Ok(Some(status)) if status.success()),
    );
    assert!(
        exited,
        "xwan did not exit cleanly on SIGTERM; log:\n{}",
        read_log()
    );
}

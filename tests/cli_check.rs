//! The `xwan` binary: `check` on good and bad files, `--help`, `--version`,
//! and the exit codes of the commands not yet carried out by this build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const XWAN: &str = env!("CARGO_BIN_EXE_xwan");

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testbed/configs/example.toml");

fn xwan(args: &[&str]) -> Output {
    Command::new(XWAN)
        .args(args)
        .output()
        .expect("run the xwan binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file under this test target's temporary directory, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, contents: &str) -> TempConfig {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("cli-check-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, contents).expect("write a temporary config");
        TempConfig(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The example configuration with `from` replaced by `to` (which must occur).
fn example_with(from: &str, to: &str) -> String {
    let example = std::fs::read_to_string(EXAMPLE).expect("read the example config");
    assert!(example.contains(from), "{from:?} not in the example");
    example.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).expect("needle in text")]
        .matches('\n')
        .count()
        + 1
}

/// Run `check` on a bad file: exit 1, nothing on stdout, one clean line on
/// stderr that starts with `file:line:` and names the key.
fn check_fails(name: &str, contents: &str, key: &str, at: &str, message: &str) {
    let file = TempConfig::new(name, contents);
    let out = xwan(&["check", "-c", file.path()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let location = format!("{}:{}:", file.path(), line_of(contents, at));
    assert!(
        stderr.starts_with(&location),
        "{stderr:?} should start with {location:?}"
    );
    assert!(
        stderr.contains(&format!(": {key}: ")),
        "{stderr:?} should name {key}"
    );
    assert!(
        stderr.contains(message),
        "{stderr:?} should say {message:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    for debug in ["panicked", "Error {", "Spanned", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(debug), "debug output in {stderr:?}");
    }
}

#[test]
fn check_accepts_the_example_and_prints_a_summary() {
    let out = xwan(&["check", "-c", EXAMPLE]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    for needle in [
        "OK",
        "isp1  wan1  198.18.1.2 via 198.18.1.1",
        "isp2  wan2  198.18.2.2 via 198.18.2.1",
        "tcp to any port 443 -> isp2",
        "tcp 8080 -> 192.168.50.10:80 on isp1, isp2",
        "udp 5353 -> 192.168.50.10:5353 on isp1, isp2",
        "20000-59999",
        "/run/xwan/xwan.sock",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn check_names_an_unknown_uplink_in_an_action() {
    let bad = example_with("action = \"isp2\"", "action = \"isp3\"");
    check_fails(
        "action",
        &bad,
        "rule[1].action",
        "action = \"isp3\"",
        "\"isp3\" names no uplink (uplinks: isp1, isp2",
    );
}

#[test]
fn check_names_an_unknown_key() {
    let bad = example_with("weight = 1", "wieght = 1");
    check_fails("unknown", &bad, "wan[1].wieght", "wieght", "unknown key");
}

#[test]
fn check_names_a_missing_key() {
    let bad = example_with("gateway = \"198.18.2.1\"\n", "");
    check_fails(
        "missing",
        &bad,
        "wan[2].gateway",
        "[[wan]]\nname = \"isp2\"",
        "required key is missing",
    );
}

#[test]
fn check_names_a_wrong_type() {
    let bad = example_with("port = 8080", "port = \"8080\"");
    check_fails(
        "type",
        &bad,
        "forward[1].port",
        "port = \"8080\"",
        "expected an integer",
    );
}

#[test]
fn check_names_a_forward_inside_the_nat_range() {
    let bad = example_with("port = 8080", "port = 20080");
    check_fails(
        "natoverlap",
        &bad,
        "forward[1].port",
        "port = 20080",
        "NAT port range",
    );
}

#[test]
fn check_names_a_bad_cidr() {
    let bad = example_with("\"192.168.50.0/24\"", "\"192.168.50.0/40\"");
    check_fails("cidr", &bad, "lan.networks[1]", "192.168.50.0/40", "CIDR");
}

#[test]
fn check_reports_toml_syntax_errors_with_a_location() {
    let bad = example_with("mode = \"nth\"", "mode = nth");
    let file = TempConfig::new("syntax", &bad);
    let out = xwan(&["check", "-c", file.path()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let location = format!(
        "{}:{}:8: invalid TOML",
        file.path(),
        line_of(&bad, "mode = nth")
    );
    assert!(
        stderr.starts_with(&location),
        "{stderr:?} should start with {location:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_reports_a_missing_file() {
    let out = xwan(&["check", "-c", "/nonexistent/xwan.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.starts_with("/nonexistent/xwan.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn help_lists_every_subcommand() {
    let out = xwan(&["--help"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for command in [
        "run",
        "check",
        "status",
        "flows",
        "kernel-script",
        "reload",
        "uplink",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from:\n{stdout}"
        );
    }
    let run_help = text(&xwan(&["run", "--help"]).stdout);
    for option in [
        "--config",
        "--io",
        "--queues",
        "--zero-copy",
        "--cpus",
        "--verbose",
    ] {
        assert!(
            run_help.contains(option),
            "{option} missing from:\n{run_help}"
        );
    }
}

#[test]
fn version_is_printed() {
    let out = xwan(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let version = text(&out.stdout);
    let version = version.trim();
    assert!(
        version.starts_with(&format!("xwan {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // The git revision (12 hex digits), or "unknown" outside a checkout.
    let revision = version.rsplit('(').next().unwrap().trim_end_matches(')');
    assert!(
        revision == "unknown"
            || (revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit())),
        "{version}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = xwan(&["check", "--config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--config"),
        "{}",
        text(&out.stderr)
    );
    let out = xwan(&["uplink", "isp1", "sideways"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_commands_load_the_config_first() {
    let bad = example_with("action = \"isp2\"", "action = \"isp3\"");
    let file = TempConfig::new("runbad", &bad);
    for command in ["run", "kernel-script"] {
        let out = xwan(&[command, "-c", file.path()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains(": rule[1].action: "), "{command}: {stderr}");
    }
}

#[test]
fn xwan_config_names_the_file_and_c_overrides_it() {
    let bad = TempConfig::new("envbad", "not toml");
    let by_env = |args: &[&str], value: &str| {
        Command::new(XWAN)
            .args(args)
            .env("XWAN_CONFIG", value)
            .output()
            .expect("run xwan")
    };
    let out = by_env(&["check"], EXAMPLE);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("{EXAMPLE}: OK")));
    let out = by_env(&["check", "-c", EXAMPLE], bad.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = by_env(&["check"], bad.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(bad.path()),
        "{}",
        text(&out.stderr)
    );
    // Without either: /etc/xwan/xwan.toml, named in the error when it is missing.
    if !Path::new("/etc/xwan/xwan.toml").exists() {
        let out = Command::new(XWAN)
            .arg("check")
            .env_remove("XWAN_CONFIG")
            .output()
            .expect("run xwan");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).starts_with("/etc/xwan/xwan.toml: cannot read"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn check_json_reports_a_good_file_a_bad_one_and_missing_interfaces() {
    let out = xwan(&["check", "--json", "-c", EXAMPLE]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let good: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(good["ok"], true);
    assert_eq!(good["file"], EXAMPLE);
    assert_eq!(good["uplinks"][1]["name"], "isp2");
    assert_eq!(good["uplinks"][1]["interface"], "wan2");
    assert!(good["summary"].as_str().unwrap().contains("isp2  wan2"));
    // The testbed's interfaces exist only in its namespaces, not here.
    let notes: Vec<&str> = good["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    if !Path::new("/sys/class/net/wan2").exists() {
        assert!(
            notes
                .iter()
                .any(|n| n
                    .starts_with("interface wan2 (isp2) does not exist on this machine: edit ")),
            "{notes:?}"
        );
    }

    let bad = TempConfig::new(
        "jsonbad",
        &example_with("action = \"isp2\"", "action = \"isp3\""),
    );
    let out = xwan(&["check", "--json", "-c", bad.path()]);
    assert_eq!(out.status.code(), Some(1));
    let bad_report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(bad_report["ok"], false);
    assert!(bad_report["line"].as_u64().unwrap() > 1);
    assert!(bad_report["error"]
        .as_str()
        .unwrap()
        .contains(": rule[1].action: "));
}

#[test]
fn check_notes_go_to_stderr_and_keep_exit_0() {
    if Path::new("/sys/class/net/wan1").exists() {
        return;
    }
    let out = xwan(&["check", "-c", EXAMPLE]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("note: interface wan1 (isp1) does not exist on this machine: edit "),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("note:"));
}

#[test]
fn check_says_which_nat_ports_an_unset_range_gets_on_this_machine() {
    let kernel = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("read ip_local_port_range");
    let unset = TempConfig::new(
        "natunset",
        &example_with("ports = \"20000-59999\"", "# ports unset"),
    );
    let out = xwan(&["check", "--json", "-c", unset.path()]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["nat_ports_set"], false);
    assert_eq!(report["nat_ports"], "20000-59999");
    let fields: Vec<&str> = kernel.split_whitespace().collect();
    if fields == ["32768", "60999"] {
        assert_eq!(report["nat_ports_here"], "20000-32767");
        let text = text(&xwan(&["check", "-c", unset.path()]).stdout);
        assert!(
            text.contains(
                "NAT here  ports 20000-32767: the default less this kernel's ephemeral ports"
            ),
            "{text}"
        );
    }
    // A range set in the file is what it is.
    let out = xwan(&["check", "--json", "-c", EXAMPLE]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["nat_ports_set"], true);
    assert!(report["nat_ports_here"].is_null());
}

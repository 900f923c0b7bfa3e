//! Helpers of the parity suite (`tests/parity_e2e.rs`): the router's
//! configuration with extra rules, its status over the control socket, the
//! check that nothing the core left to the kernel was lost, and traceroute's
//! hops.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use xwan::control::protocol::StatusReport;
use xwan::control::{request, Reply, Request};

use crate::support::{config_toml, punt, RouterMode, Testbed};

/// The suite's configuration: the e2e test config (port 8080 on both WANs
/// forwarded to h1:80, HTTPS pinned to isp2) followed by `extra` (more
/// `[[rule]]` tables, after the HTTPS rule).
pub fn config_with(testbed: &Testbed, extra: &str) -> String {
    format!(
        "{}\n{extra}",
        config_toml([1, 1], &testbed.path("xwan.sock"))
    )
}

/// What `xwan status` says.
pub fn status(testbed: &Testbed) -> StatusReport {
    match request(&testbed.path("xwan.sock"), &Request::Status) {
        Ok(Reply::Status { status, .. }) => *status,
        other => panic!("xwan status: {other:?}"),
    }
}

/// In xdp mode: every frame the core left to the kernel went to it through
/// the punt device (none refused, none dropped for want of the kernel:
/// [`punt::lost`], which every testbed also checks as it goes down), and
/// none of `drops` was counted. Returns how many were punted. The kernel
/// recipe and packet mode hand the kernel the frame itself: nothing to check.
pub fn assert_nothing_lost(testbed: &Testbed, mode: RouterMode, drops: &[&str]) -> u64 {
    if mode != RouterMode::XwanXdp {
        return 0;
    }
    if let Some(lost) = punt::lost(&testbed.path("xwan.toml")) {
        panic!("{lost}");
    }
    let s = status(testbed);
    let counted: BTreeMap<&str, u64> = drops
        .iter()
        .map(|&reason| (reason, s.drops.get(reason).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(counted.is_empty(), "dropped: {counted:?}");
    s.workers.iter().map(|w| w.punted).sum()
}

/// The address answering each hop of `traceroute -n -q 1` output, in order
/// (None for a hop that timed out), and whether any answer was flagged
/// (`!N`, `!H`, ...).
pub fn hops(output: &str) -> (Vec<Option<Ipv4Addr>>, bool) {
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    let hops = lines
        .iter()
        .map(|l| l.split_whitespace().nth(1).and_then(|a| a.parse().ok()))
        .collect();
    let flagged = lines
        .iter()
        .any(|l| l.split_whitespace().any(|w| w.starts_with('!')));
    (hops, flagged)
}

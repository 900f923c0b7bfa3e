//! The check every end-to-end test makes as its testbed goes down, in xdp
//! mode: every frame the core left to the kernel reached it through the punt
//! device (none refused by the device, none dropped), and the core left none
//! to it for want of the kernel (issue 12). The kernel recipe and packet mode hand the kernel the frame
//! itself: nothing to check there.

use std::path::Path;
use std::time::Duration;

use xwan::config::Config;
use xwan::control::protocol::StatusReport;
use xwan::control::{request, Reply, Request};

use super::poll;

/// What the core leaves to the kernel only for want of what it needs to
/// finish the frame itself (an address to answer from): never in the testbed,
/// whose LAN interface has an address.
const FOR_WANT_OF_THE_KERNEL: [&str; 2] = ["ttl_expired", "frag_needed"];

/// Whether `status` shows every frame left to the kernel punted to it, and
/// none left to it for want of the kernel.
fn all_punted(status: &StatusReport) -> bool {
    let to_kernel: u64 = status.to_kernel.values().sum();
    let punted: u64 = status.workers.iter().map(|w| w.punted).sum();
    let failed: u64 = status.workers.iter().map(|w| w.punt_failed).sum();
    let wanting = FOR_WANT_OF_THE_KERNEL
        .iter()
        .any(|reason| status.to_kernel.get(*reason).is_some_and(|n| *n > 0));
    failed == 0 && punted == to_kernel && !wanting
}

/// What went to the kernel and was lost on the way, as a failure message;
/// None when nothing was, or when the xwan configured by `config_path` no
/// longer answers (a test that stopped or killed it checks for itself).
/// The workers count their punts after each batch: a second to settle.
pub fn lost(config_path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config_path).ok()?;
    let socket = Config::from_toml(&text, config_path).ok()?.control.socket;
    let status = || match request(&socket, &Request::Status) {
        Ok(Reply::Status { status, .. }) => Some(*status),
        _ => None,
    };
    let mut last = status()?;
    if poll(Duration::from_secs(1), || {
        status().is_some_and(|s| {
            let done = all_punted(&s);
            last = s;
            done
        })
    }) {
        return None;
    }
    Some(format!(
        "xdp mode lost frames left to the kernel, or left some for want of it: to_kernel {:?}, punted {:?}, punt_failed {:?}",
        last.to_kernel,
        last.workers.iter().map(|w| w.punted).collect::<Vec<_>>(),
        last.workers
            .iter()
            .map(|w| w.punt_failed)
            .collect::<Vec<_>>(),
    ))
}

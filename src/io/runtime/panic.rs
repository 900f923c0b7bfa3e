//! A panic anywhere stops the whole of `xwan run`.
//!
//! Without this, a panicking worker, sweeper, health, neighbour or control
//! thread would end alone and leave a process that no longer forwards but
//! still runs, so a supervisor (systemd's `Restart=on-failure`) would never
//! restart it. [`PanicWatch::install`] replaces the panic hook: the first panic
//! logs one line (thread, place, message), sets the router's stop flag so the
//! main thread makes the orderly stop (workers joined, the XDP links closed,
//! the nftables table deleted), and `xwan run` then exits with an error. If
//! that stop has not finished within [`STOP_GRACE`] (a lock held for ever, a
//! thread stuck), the process aborts: the kernel still detaches the XDP
//! program (BPF links die with their process) and removes an owned nftables
//! table.
//!
//! Builds with debug assertions (the test builds) can inject a panic into a
//! housekeeping thread with `XWAN_INJECT_PANIC=THREAD@SECONDS` (for example
//! `sweeper@3`): that thread panics once the router has run that long. Release
//! builds have no such trigger.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::error;

use crate::io::sync;

/// How long the orderly stop after a panic may take before the process aborts.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the hook shares with `run`: the first panic, and the stop flag to set.
#[derive(Default)]
struct Shared {
    first: Mutex<Option<String>>,
    stop: Mutex<Option<Arc<AtomicBool>>>,
}

/// The installed panic hook of `xwan run`.
pub struct PanicWatch {
    shared: Arc<Shared>,
}

impl PanicWatch {
    /// Replaces the process's panic hook with one that stops xwan.
    pub fn install() -> PanicWatch {
        let shared = Arc::new(Shared::default());
        let hook_shared = Arc::clone(&shared);
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let thread = thread.name().unwrap_or("unnamed").to_string();
            let message = payload_text(info.payload());
            let place = info
                .location()
                .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
            let backtrace = std::backtrace::Backtrace::capture();
            let backtrace = match backtrace.status() {
                std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
                _ => String::new(),
            };
            error!(
                "thread {thread} panicked{place}: {message}; stopping xwan (it exits with an error){backtrace}"
            );
            let first = {
                let mut first = sync::lock(&hook_shared.first);
                let is_first = first.is_none();
                if is_first {
                    *first = Some(format!("thread {thread} panicked{place}: {message}"));
                }
                is_first
            };
            if let Some(stop) = sync::lock(&hook_shared.stop).as_ref() {
                stop.store(true, Ordering::Relaxed);
            }
            if first {
                arm_watchdog();
            }
        }));
        PanicWatch { shared }
    }

    /// From now on a panic sets `stop`; set at once if one happened already.
    pub fn stop_on_panic(&self, stop: Arc<AtomicBool>) {
        if self.panicked().is_some() {
            stop.store(true, Ordering::Relaxed);
        }
        *sync::lock(&self.shared.stop) = Some(stop);
    }

    /// The first panic, described, if any thread panicked.
    pub fn panicked(&self) -> Option<String> {
        sync::lock(&self.shared.first).clone()
    }
}

/// Aborts the process if it is still alive [`STOP_GRACE`] after the first panic.
fn arm_watchdog() {
    let spawned = std::thread::Builder::new()
        .name("xwan-panic-watchdog".into())
        .spawn(|| {
            std::thread::sleep(STOP_GRACE);
            error!(
                "the orderly stop after a panic did not finish within {} s: aborting",
                STOP_GRACE.as_secs()
            );
            std::process::abort();
        });
    if let Err(err) = spawned {
        error!("cannot start the panic watchdog ({err}): aborting");
        std::process::abort();
    }
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// The housekeeping thread `name` panics after the router has run for the
/// time `XWAN_INJECT_PANIC=NAME@SECONDS` gives (debug-assertion builds only).
#[cfg(debug_assertions)]
pub fn injected(name: &str) {
    let Ok(spec) = std::env::var("XWAN_INJECT_PANIC") else {
        return;
    };
    let Some((thread, seconds)) = spec.split_once('@') else {
        return;
    };
    if thread != name {
        return;
    }
    if let Ok(seconds) = seconds.parse::<u64>() {
        std::thread::sleep(Duration::from_secs(seconds));
        panic!("injected by XWAN_INJECT_PANIC={spec}");
    }
}

#[cfg(test)]
mod tests {
    use super::payload_text;

    #[test]
    fn payload_text_reads_both_string_kinds() {
        assert_eq!(payload_text(&"static"), "static");
        assert_eq!(payload_text(&String::from("owned")), "owned");
        assert_eq!(payload_text(&42u32), "(no message)");
    }
}

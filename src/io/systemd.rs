//! systemd integration (`Type=notify`, `WatchdogSec=`), through the sd-notify
//! crate; without `NOTIFY_SOCKET` (not started by systemd) every call does
//! nothing.
//!
//! - [`ready`]: `READY=1` once the data path forwards, with a status line.
//! - [`stopping`]: `STOPPING=1` when the shutdown starts.
//! - [`Watchdog`]: `WATCHDOG=1` every half `WatchdogSec`, but only while every
//!   worker's loop is turning: each worker bumps a counter every round, busy or
//!   idle (an idle worker wakes from poll() at least every 100 ms), so a worker
//!   stuck on a lock, in a tight loop outside its round, or dead stops the
//!   pings and systemd restarts xwan.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Tells systemd the router is up; `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the router is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        warn!("cannot notify systemd ($NOTIFY_SOCKET): {err}");
    }
}

/// Per-worker round counters: each on its own cache line, bumped by its worker.
#[derive(Debug)]
pub struct Progress(Box<[Round]>);

#[derive(Debug, Default)]
#[repr(align(64))]
struct Round(AtomicU64);

impl Progress {
    pub fn new(workers: usize) -> Arc<Progress> {
        Arc::new(Progress((0..workers).map(|_| Round::default()).collect()))
    }

    /// One round of worker `worker`'s loop.
    pub fn beat(&self, worker: usize) {
        if let Some(round) = self.0.get(worker) {
            round.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every worker's rounds so far.
    pub fn read(&self) -> Vec<u64> {
        self.0.iter().map(|r| r.0.load(Ordering::Relaxed)).collect()
    }
}

/// Reads a counter per worker that grows while that worker's loop turns.
pub type ProgressSource = Box<dyn Fn() -> Vec<u64> + Send>;

/// Feeds systemd's watchdog from the workers' progress.
pub struct Watchdog {
    period: Duration,
    progress: ProgressSource,
    last: Vec<u64>,
    /// Whether the last check found a stalled worker (logged once per stall).
    stalled: bool,
}

impl Watchdog {
    /// None unless systemd set a watchdog for this process (`WATCHDOG_USEC`).
    pub fn from_env(progress: ProgressSource) -> Option<Watchdog> {
        let timeout = sd_notify::watchdog_enabled()?;
        Some(Watchdog::new(timeout, progress))
    }

    fn new(timeout: Duration, progress: ProgressSource) -> Watchdog {
        let last = progress();
        Watchdog {
            period: timeout / 2,
            progress,
            last,
            stalled: false,
        }
    }

    /// How often [`Watchdog::check`] should run: half the timeout.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Whether every worker made progress since the last check; pings systemd
    /// when they all did.
    pub fn check(&mut self) -> bool {
        let now = (self.progress)();
        let stalled: Vec<usize> = now
            .iter()
            .zip(&self.last)
            .enumerate()
            .filter(|(_, (now, last))| now <= last)
            .map(|(worker, _)| worker)
            .collect();
        let healthy = now.len() == self.last.len() && stalled.is_empty();
        self.last = now;
        if healthy {
            if self.stalled {
                warn!("workers are turning again; feeding the systemd watchdog");
            }
            debug!("watchdog: every worker made progress");
            notify(&[NotifyState::Watchdog]);
        } else if !self.stalled {
            warn!(
                "worker(s) {stalled:?} made no progress in {:?}: not feeding the systemd watchdog",
                self.period
            );
        }
        self.stalled = !healthy;
        healthy
    }

    /// Checks every [`Watchdog::period`] until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        let step = Duration::from_millis(50).min(self.period);
        let mut waited = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(step);
            waited += step;
            if waited >= self.period {
                waited = Duration::ZERO;
                self.check();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_only_while_every_worker_turns() {
        let progress = Progress::new(2);
        let source = Arc::clone(&progress);
        let mut dog = Watchdog::new(Duration::from_secs(2), Box::new(move || source.read()));
        assert_eq!(dog.period(), Duration::from_secs(1));
        // Nothing turned yet.
        assert!(!dog.check());
        progress.beat(0);
        progress.beat(1);
        assert!(dog.check());
        // Worker 1 is stuck.
        progress.beat(0);
        assert!(!dog.check());
        progress.beat(0);
        progress.beat(1);
        assert!(dog.check());
        // A worker index out of range is ignored, not a panic.
        progress.beat(7);
        assert_eq!(progress.read().len(), 2);
    }
}

//! The signal handlers of `xwan run`, on a thread of their own (signal-hook's
//! self-pipe: the handlers only record the signal).
//!
//! SIGINT and SIGTERM: the first sets the stop flag. Another one forces the
//! exit only when someone insists ([`Insistence`]): a second request a second
//! or more after the first, or a third. Signals within [`TOGETHER`] of the
//! previous one are the same request: `timeout`, for one, sends its SIGTERM
//! to its child and to the child's process group, so xwan gets it twice
//! within microseconds. A forced exit first saves the state (within
//! [`FORCED_SAVE_LIMIT`], on a thread of its own, so a stuck file system
//! cannot hold the exit), says what it skipped, and exits with status 1.
//!
//! SIGHUP sets the reload flag.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals as SignalIterator};
use tracing::{info, warn};

use super::options::RunError;
use super::state_file;
use crate::router::Router;

/// Signals this close to the previous one are the same request.
pub(super) const TOGETHER: Duration = Duration::from_millis(100);

/// A second request this long after the first forces the exit.
pub(super) const INSIST_AFTER: Duration = Duration::from_secs(1);

/// How long a forced exit waits for the state to be saved.
pub(super) const FORCED_SAVE_LIMIT: Duration = Duration::from_secs(2);

/// What a SIGINT or SIGTERM asks for, given the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    /// The first: the orderly stop.
    Stop,
    /// Part of a request already counted (within [`TOGETHER`] of the
    /// previous signal): nothing new.
    Same,
    /// A second request within [`INSIST_AFTER`] of the first: the stop
    /// goes on, a third forces the exit.
    Again,
    /// Someone insists: exit now.
    Force,
}

/// The SIGINT and SIGTERM seen so far.
#[derive(Debug, Default)]
pub(super) struct Insistence {
    first: Option<Instant>,
    last: Option<Instant>,
    requests: u32,
}

impl Insistence {
    /// What a signal arriving at `now` asks for.
    pub(super) fn on_signal(&mut self, now: Instant) -> Asked {
        let previous = self.last.replace(now);
        let Some(first) = self.first else {
            self.first = Some(now);
            self.requests = 1;
            return Asked::Stop;
        };
        if previous.is_some_and(|last| now.saturating_duration_since(last) < TOGETHER) {
            return Asked::Same;
        }
        self.requests += 1;
        if self.requests >= 3 || now.saturating_duration_since(first) >= INSIST_AFTER {
            Asked::Force
        } else {
            Asked::Again
        }
    }
}

/// Saves the state; the number of flows written.
type Save = dyn Fn() -> std::io::Result<usize> + Send + Sync;

/// Where a forced exit saves the state, and how; None until the router
/// exists, or with `[control] state` off.
type LastSave = Mutex<Option<(PathBuf, Arc<Save>)>>;

/// The signal thread. Dropping this stops and joins it and unregisters the
/// handlers.
pub(super) struct Signals {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    /// What a forced exit saves, once the router exists.
    save: Arc<LastSave>,
}

impl Signals {
    pub(super) fn register(
        stop: &Arc<AtomicBool>,
        reload: &Arc<AtomicBool>,
    ) -> Result<Signals, RunError> {
        let mut signals =
            SignalIterator::new([SIGINT, SIGTERM, SIGHUP]).map_err(RunError::Signal)?;
        let handle = signals.handle();
        let save: Arc<LastSave> = Arc::default();
        let thread = {
            let (stop, reload, save) = (Arc::clone(stop), Arc::clone(reload), Arc::clone(&save));
            std::thread::Builder::new()
                .name("xwan-signals".into())
                .spawn(move || {
                    let mut insistence = Insistence::default();
                    for signal in signals.forever() {
                        if signal == SIGHUP {
                            reload.store(true, Ordering::Relaxed);
                            continue;
                        }
                        let name = if signal == SIGINT {
                            "SIGINT"
                        } else {
                            "SIGTERM"
                        };
                        match insistence.on_signal(Instant::now()) {
                            Asked::Stop => {
                                info!("{name}: stopping");
                                stop.store(true, Ordering::Relaxed);
                            }
                            Asked::Same => {}
                            Asked::Again => info!(
                                "{name} again: the orderly stop goes on (another one, or one \
                                 a second after the first, forces the exit)"
                            ),
                            Asked::Force => forced_exit(name, &save),
                        }
                    }
                })
                .map_err(RunError::Signal)?
        };
        Ok(Signals {
            handle,
            thread: Some(thread),
            save,
        })
    }

    /// From now on a forced exit first saves `router`'s state (its clock
    /// started at `epoch`) to `path`, if there is one.
    pub(super) fn save_on_forced_exit(
        &self,
        path: Option<&Path>,
        router: &Arc<Router>,
        epoch: Instant,
    ) {
        let Some(path) = path else { return };
        let (at, router) = (path.to_path_buf(), Arc::clone(router));
        let save: Arc<Save> = Arc::new(move || state_file::save(&at, &router, epoch.elapsed()));
        *self.save.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((path.to_path_buf(), save));
    }
}

/// Saves the state if it can within [`FORCED_SAVE_LIMIT`], says what the
/// exit skips, and exits with status 1.
fn forced_exit(name: &str, save: &LastSave) -> ! {
    warn!("{name} again: forcing the exit");
    let save = save.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some((path, save)) = save {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("xwan-last-save".into())
            .spawn(move || {
                let _ = tx.send(save());
            });
        let saved = match spawned {
            Ok(_) => rx.recv_timeout(FORCED_SAVE_LIMIT),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        };
        match saved {
            Ok(Ok(flows)) => {
                info!(path = %path.display(), flows, "saved the state for the next start")
            }
            Ok(Err(e)) => warn!(path = %path.display(), error = %e, "cannot save the state"),
            Err(_) => warn!(
                path = %path.display(),
                "the state was not saved within {FORCED_SAVE_LIMIT:?}: the next start restores \
                 the last checkpoint"
            ),
        }
    }
    warn!(
        "forced exit: the rest of the orderly stop is skipped; the XDP links, the fast path \
         and table ip xwan go with the process, the next start removes the routes, rules and \
         control socket left"
    );
    std::process::exit(1)
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(offsets_ms: &[u64]) -> Vec<Asked> {
        let start = Instant::now();
        let mut insistence = Insistence::default();
        offsets_ms
            .iter()
            .map(|ms| insistence.on_signal(start + Duration::from_millis(*ms)))
            .collect()
    }

    #[test]
    fn two_at_once_are_one_request() {
        assert_eq!(asked(&[0, 0]), [Asked::Stop, Asked::Same]);
        assert_eq!(asked(&[0, 1, 50]), [Asked::Stop, Asked::Same, Asked::Same]);
    }

    #[test]
    fn a_second_request_a_second_later_forces() {
        assert_eq!(asked(&[0, 1000]), [Asked::Stop, Asked::Force]);
        assert_eq!(
            asked(&[0, 0, 1500]),
            [Asked::Stop, Asked::Same, Asked::Force]
        );
    }

    #[test]
    fn a_second_request_soon_after_does_not_force_a_third_does() {
        assert_eq!(asked(&[0, 300]), [Asked::Stop, Asked::Again]);
        assert_eq!(
            asked(&[0, 300, 600]),
            [Asked::Stop, Asked::Again, Asked::Force]
        );
    }
}

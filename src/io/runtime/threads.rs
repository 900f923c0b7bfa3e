//! The housekeeping threads of `xwan run` and the loop they tick in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::options::RunError;

/// The housekeeping threads. Dropping this sets the stop flag and waits for
/// every thread, so a start-up that fails after some threads started stops them.
pub(super) struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    /// No threads yet; `stop` is the flag every thread's loop watches.
    pub(super) fn new(stop: Arc<AtomicBool>) -> Threads {
        Threads {
            stop,
            handles: Vec::new(),
        }
    }

    /// Starts a thread named `xwan-NAME` (in builds with debug assertions, one
    /// that `XWAN_INJECT_PANIC` may name panics first: see [`super::panic`]).
    pub(super) fn spawn(
        &mut self,
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), RunError> {
        let handle = std::thread::Builder::new()
            .name(format!("xwan-{name}"))
            .spawn(move || {
                #[cfg(debug_assertions)]
                super::panic::injected(name);
                body();
            })
            .map_err(|source| RunError::Thread { name, source })?;
        self.handles.push(handle);
        Ok(())
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Runs `tick` every `period` until `stop` is set (checking it every 50 ms).
pub(super) fn every(period: Duration, stop: &AtomicBool, mut tick: impl FnMut()) {
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            tick();
            next = now + period;
        }
        std::thread::sleep((next - Instant::now().min(next)).min(Duration::from_millis(50)));
    }
}

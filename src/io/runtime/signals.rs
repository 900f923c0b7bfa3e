//! The signal handlers of `xwan run`, and the loop its housekeeping threads tick in.

use super::options::RunError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The SIGINT and SIGTERM handlers: the first signal sets the stop flag, a second
/// one while stopping ends the process at once (exit 1); and the SIGHUP handler,
/// which sets the reload flag. Dropping this restores the default handling.
pub(super) struct Signals(Vec<signal_hook::SigId>);

impl Signals {
    pub(super) fn register(
        stop: &Arc<AtomicBool>,
        reload: &Arc<AtomicBool>,
    ) -> Result<Signals, RunError> {
        let mut signals = Signals(Vec::new());
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let forced =
                signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(stop))
                    .map_err(RunError::Signal)?;
            signals.0.push(forced);
            let flag =
                signal_hook::flag::register(signal, Arc::clone(stop)).map_err(RunError::Signal)?;
            signals.0.push(flag);
        }
        let hup = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(reload))
            .map_err(RunError::Signal)?;
        signals.0.push(hup);
        Ok(signals)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
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

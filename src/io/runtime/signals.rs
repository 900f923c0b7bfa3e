//! The signal handlers of `xwan run`.

use super::options::RunError;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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

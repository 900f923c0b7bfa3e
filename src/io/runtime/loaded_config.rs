//! The configuration in force, shared by the control socket, the reloads and
//! the housekeeping threads.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::config::{Config, RunningConfig};
use crate::io::sync;

struct Loaded {
    running: Arc<RunningConfig>,
    at: Instant,
    generation: u64,
}

/// The configuration in force, shared by the control socket and the
/// housekeeping threads; its generation counts reloads.
pub struct LoadedConfig {
    file: PathBuf,
    loaded: RwLock<Loaded>,
}

impl LoadedConfig {
    pub fn new(config: Config, file: PathBuf) -> LoadedConfig {
        LoadedConfig {
            file,
            loaded: RwLock::new(Loaded {
                running: Arc::new(RunningConfig::new(config)),
                at: Instant::now(),
                generation: 0,
            }),
        }
    }

    /// The configuration in force and its generation.
    pub fn current(&self) -> (Arc<RunningConfig>, u64) {
        let loaded = sync::read(&self.loaded);
        (Arc::clone(&loaded.running), loaded.generation)
    }

    pub fn running(&self) -> Arc<RunningConfig> {
        self.current().0
    }

    /// The file it is read from.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    pub(super) fn loaded_at(&self) -> Instant {
        sync::read(&self.loaded).at
    }

    pub(super) fn replace(&self, running: RunningConfig) {
        let mut loaded = sync::write(&self.loaded);
        loaded.running = Arc::new(running);
        loaded.at = Instant::now();
        loaded.generation += 1;
    }
}

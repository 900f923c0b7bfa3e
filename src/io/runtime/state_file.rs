//! The state file of `[control] state`: the router's [`Snapshot`] written
//! on an orderly stop and every `[control] checkpoint_s`, and restored at
//! start before the data path forwards. Written atomically (a temporary
//! file beside it, fsync, rename, fsync of the directory) with mode 0600,
//! so a crash mid-write leaves the previous file whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::router::{Restored, Router, Snapshot};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Saves the router's state at `now` (its clock) to `path`; returns how
/// many flows were written.
pub fn save(path: &Path, router: &Router, now: Duration) -> io::Result<usize> {
    // One save at a time: a forced exit's may start while the orderly
    // stop's (or a checkpoint) still writes the same temporary file.
    static SAVING: Mutex<()> = Mutex::new(());
    let _one = SAVING.lock().unwrap_or_else(PoisonError::into_inner);
    let started = Instant::now();
    let mut snapshot = router.save_state(now);
    snapshot.saved_at = unix_now();
    let bytes = snapshot.encode();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    tracing::debug!(
        path = %path.display(),
        flows = snapshot.flows.len(),
        bytes = bytes.len(),
        ms = started.elapsed().as_millis() as u64,
        "state saved"
    );
    Ok(snapshot.flows.len())
}

/// Restores the state saved at `path` into `router` at `now` (its clock),
/// logging what it found; returns what was restored, None when nothing was
/// (no file, or one that cannot be read or is not a state this xwan reads:
/// reported and ignored).
pub fn restore(path: &Path, router: &Router, now: Duration) -> Option<Restored> {
    let started = Instant::now();
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            info!(path = %path.display(), "no saved state: starting with an empty flow table");
            return None;
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the saved state; starting with an empty flow table");
            return None;
        }
    };
    let mut snapshot = match Snapshot::decode(&bytes) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "saved state ignored; starting with an empty flow table");
            return None;
        }
    };
    if snapshot.saved_at != 0 {
        let down = unix_now().saturating_sub(snapshot.saved_at);
        snapshot.age_by(u32::try_from(down).unwrap_or(u32::MAX));
    }
    let restored = router.restore_state(&snapshot, now);
    info!(
        path = %path.display(),
        saved = snapshot.flows.len(),
        restored = restored.flows,
        sticky_clients = restored.sticky_clients,
        ms = started.elapsed().as_millis() as u64,
        "restored the saved state"
    );
    if restored.dropped() > 0 {
        warn!(
            uplink_gone = restored.uplink_gone,
            address_changed = restored.address_changed,
            range_changed = restored.range_changed,
            forward_gone = restored.forward_gone,
            refused = restored.refused,
            tcp_reset = restored.resets.len(),
            "saved flows dropped: the configuration no longer allows them"
        );
    }
    Some(restored)
}

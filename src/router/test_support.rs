//! What the two families' established fast path tests share
//! (`established.rs`, `ipv6/established.rs`): the clock they run at, the
//! flows they open, and the check that the fast path is the general path.

use std::time::Duration;

use proptest::prop_assert_eq;
use proptest::test_runner::TestCaseError;

use super::{FrameMeta, Port, Verdict};

pub const NOW: Duration = Duration::from_secs(1000);

/// A frame that came in on `port` at [`NOW`], whole.
pub fn meta(port: Port) -> FrameMeta {
    FrameMeta {
        port,
        now: NOW,
        checksum_partial: false,
        gso: None,
    }
}

/// One flow, opened through `process`: the inside side's addressing and
/// ports and the outside side's, as their packets arrive, and its uplink.
#[derive(Debug)]
pub struct Opened<A> {
    pub tcp: bool,
    pub lan: A,
    pub lan_ports: (u16, u16),
    pub uplink: u8,
    pub wan: A,
    pub wan_ports: (u16, u16),
}

/// What both families' property tests check of a frame, `bytes` with
/// `edits` (offset, value) made to it: when the `fast` path takes it, the
/// `general` path gives the same verdict and the same bytes; when it
/// declines, the frame is left as it was and the packets `recorded` are as
/// many as before.
pub fn fast_is_general(
    mut bytes: Vec<u8>,
    edits: &[(usize, u8)],
    fast: impl FnOnce(&mut [u8]) -> Option<Verdict>,
    general: impl FnOnce(&mut [u8]) -> Verdict,
    recorded: impl Fn() -> u64,
) -> Result<(), TestCaseError> {
    for &(at, value) in edits {
        if let Some(byte) = bytes.get_mut(at) {
            *byte = value;
        }
    }
    let before = recorded();
    let mut taken = bytes.clone();
    match fast(&mut taken) {
        Some(verdict) => {
            let mut general_bytes = bytes;
            prop_assert_eq!(general(&mut general_bytes), verdict);
            prop_assert_eq!(taken, general_bytes);
        }
        None => {
            prop_assert_eq!(&taken, &bytes, "a declined frame is left as it was");
            prop_assert_eq!(recorded(), before, "and nothing is recorded");
        }
    }
    Ok(())
}

//! Entering a network namespace (used by the tests' namespaces).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Moves the calling thread into the network namespace `ns` is a handle of
/// (a file under `/run/netns`).
pub fn enter_net(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes no pointers; ns is an open descriptor for the call.
    super::check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

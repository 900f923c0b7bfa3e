//! Waiting for descriptors.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub use libc::pollfd as PollFd;

/// A `pollfd` waiting for input on `fd` (a closed or invalid descriptor only
/// makes `poll` report `POLLNVAL` for it).
pub fn readable(fd: RawFd) -> PollFd {
    PollFd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Blocks until one of `fds` is ready or `timeout` passes (rounded down to
/// milliseconds); the number of ready descriptors. `revents` says which.
pub fn poll(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
    let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: fds is a valid, writable array of the length passed, for the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    super::check(rc).map(|n| n as usize)
}

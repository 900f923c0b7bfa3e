//! The one idle policy of both backends' workers: after a round that found
//! nothing to do, spin a bounded number of rounds (a busy link sends the next
//! frame within microseconds, sooner than a sleep would wake), then sleep in
//! `poll()` until a socket is readable or a timeout passes (which bounds how long
//! a stop takes to be seen).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::sys::poll::{self, PollFd};

/// How long a worker spins before it sleeps, and how long one sleep lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Empty rounds in a row before the worker sleeps in `poll()`.
    pub spin_rounds: u32,
    /// Longest one sleep lasts.
    pub poll_timeout: Duration,
}

/// Where a worker is in its [`IdlePolicy`]: the sockets it sleeps on and how
/// many empty rounds it has spun.
pub struct Idle {
    policy: IdlePolicy,
    fds: Vec<PollFd>,
    empty_rounds: u32,
}

impl Idle {
    /// Sleeps wait for input on `fds`.
    pub fn new(policy: IdlePolicy, fds: impl IntoIterator<Item = RawFd>) -> Idle {
        Idle {
            policy,
            fds: fds.into_iter().map(poll::readable).collect(),
            empty_rounds: 0,
        }
    }

    /// A round that found work: spinning starts over.
    pub fn busy(&mut self) {
        self.empty_rounds = 0;
    }

    /// A round that found nothing. Once [`IdlePolicy::spin_rounds`] of them came
    /// in a row, sleeps in `poll()` (and says so: true); a sleep that ends on a
    /// readable socket starts the spinning over. An interrupted sleep is no error.
    pub fn empty(&mut self) -> io::Result<bool> {
        self.empty_rounds = self.empty_rounds.saturating_add(1);
        if self.empty_rounds < self.policy.spin_rounds {
            return Ok(false);
        }
        match poll::poll(&mut self.fds, self.policy.poll_timeout) {
            Ok(0) => {}
            Ok(_) => self.empty_rounds = 0,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    const POLICY: IdlePolicy = IdlePolicy {
        spin_rounds: 3,
        poll_timeout: Duration::from_millis(20),
    };

    #[test]
    fn spins_then_sleeps_until_the_timeout() {
        let (quiet, _peer) = UnixStream::pair().unwrap();
        let mut idle = Idle::new(POLICY, [quiet.as_raw_fd()]);
        assert!(!idle.empty().unwrap());
        assert!(!idle.empty().unwrap());
        let start = Instant::now();
        assert!(idle.empty().unwrap(), "the third empty round sleeps");
        assert!(start.elapsed() >= Duration::from_millis(15));
        assert!(idle.empty().unwrap(), "still idle: sleeps again at once");
    }

    #[test]
    fn work_or_a_readable_socket_restarts_the_spin() {
        let (readable, mut peer) = UnixStream::pair().unwrap();
        let mut idle = Idle::new(POLICY, [readable.as_raw_fd()]);
        idle.empty().unwrap();
        idle.busy();
        assert!(!idle.empty().unwrap());
        assert!(!idle.empty().unwrap());
        peer.write_all(b"x").unwrap();
        let start = Instant::now();
        assert!(idle.empty().unwrap());
        assert!(
            start.elapsed() < Duration::from_millis(15),
            "woken by input"
        );
        assert!(!idle.empty().unwrap(), "spinning again after a wake-up");
    }
}

//! The one idle policy of both backends' workers: after the last round that
//! found work, keep spinning for a bounded time (a busy link sends the next
//! frame within microseconds, sooner than a sleep would wake), then sleep in
//! `poll()` until a socket is readable or a timeout passes (which bounds how long
//! a stop takes to be seen). The policy is in time, not rounds, so it does
//! not depend on how long a round takes; the clock is read only in empty
//! rounds, never on the packet path. Each worker runs at the lowest
//! real-time priority, so that its wake-up from that sleep is prompt
//! ([`prefer_prompt_wakeups`]).

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::sys::poll::{self, PollFd};
use super::sys::sched;

/// Gives the calling worker thread the lowest real-time priority, so that
/// woken from its sleep by a frame it runs at once instead of waiting for
/// its turn behind the threads that share its CPU (a load generator, a
/// compiler, the ping-pong's own ends); where that is not allowed it keeps
/// normal priority and says so. Measured in the testbed on a busy 2-CPU
/// machine (README, "Benchmark results"): ping through the router p99
/// 0.95-3.7 ms at normal priority, 0.27-0.50 ms at `SCHED_FIFO` 1 with
/// `--io xdp`, 3.3-12.9 ms against 0.16-0.23 ms (most rounds) with
/// `--io packet`; throughput not lower in either.
/// The start-up's `rt-sched` feature line says once whether it is allowed;
/// each worker says so at debug level.
pub fn prefer_prompt_wakeups(worker: &str) {
    if super::features::forced_absent().contains(&super::features::Feature::RtSched) {
        tracing::debug!(worker, "worker at normal priority (rt-sched forced absent)");
        return;
    }
    if let Err(err) = sched::set_lowest_realtime() {
        tracing::debug!(worker, %err, "worker at normal priority (real-time scheduling not allowed)");
    }
}

/// How long a worker spins before it sleeps, and how long one sleep lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// How long a worker keeps spinning after its last busy round before it
    /// sleeps in `poll()`.
    pub spin: Duration,
    /// Longest one sleep lasts.
    pub poll_timeout: Duration,
}

/// Where a worker is in its [`IdlePolicy`]: the sockets it sleeps on and
/// since when it has found nothing to do.
pub struct Idle {
    policy: IdlePolicy,
    fds: Vec<PollFd>,
    idle_since: Option<Instant>,
}

impl Idle {
    /// Sleeps wait for input on `fds`.
    pub fn new(policy: IdlePolicy, fds: impl IntoIterator<Item = RawFd>) -> Idle {
        Idle {
            policy,
            fds: fds.into_iter().map(poll::readable).collect(),
            idle_since: None,
        }
    }

    /// A round that found work: spinning starts over.
    pub fn busy(&mut self) {
        self.idle_since = None;
    }

    /// A round that found nothing. Once rounds have found nothing for
    /// [`IdlePolicy::spin`], sleeps in `poll()` (and says so: true); a sleep
    /// that ends on a readable socket starts the spinning over. An
    /// interrupted sleep is no error.
    pub fn empty(&mut self) -> io::Result<bool> {
        let now = Instant::now();
        let since = *self.idle_since.get_or_insert(now);
        if now.duration_since(since) < self.policy.spin {
            return Ok(false);
        }
        match poll::poll(&mut self.fds, self.policy.poll_timeout) {
            Ok(0) => {}
            Ok(_) => self.idle_since = None,
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
        spin: Duration::from_millis(50),
        poll_timeout: Duration::from_millis(20),
    };

    #[test]
    fn spins_then_sleeps_until_the_timeout() {
        let (quiet, _peer) = UnixStream::pair().unwrap();
        let mut idle = Idle::new(POLICY, [quiet.as_raw_fd()]);
        assert!(!idle.empty().unwrap(), "the first empty round spins");
        assert!(!idle.empty().unwrap());
        std::thread::sleep(POLICY.spin);
        let start = Instant::now();
        assert!(idle.empty().unwrap(), "idle for the spin time: sleeps");
        assert!(start.elapsed() >= Duration::from_millis(15));
        assert!(idle.empty().unwrap(), "still idle: sleeps again at once");
    }

    #[test]
    fn work_or_a_readable_socket_restarts_the_spin() {
        let (readable, mut peer) = UnixStream::pair().unwrap();
        let mut idle = Idle::new(POLICY, [readable.as_raw_fd()]);
        idle.empty().unwrap();
        std::thread::sleep(POLICY.spin);
        idle.busy();
        assert!(!idle.empty().unwrap(), "work restarts the spin time");
        std::thread::sleep(POLICY.spin);
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

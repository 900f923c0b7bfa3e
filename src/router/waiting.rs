//! Frames waiting for a LAN host's MAC, as the kernel queues them while it
//! resolves a neighbour (`unres_qlen`): a reply to a LAN host, or a port
//! forward's first packet, whose host the neighbour table does not have yet
//! is translated whole, kept with its destination MAC blank
//! ([`Verdict::Taken`]), and handed back with the MAC filled in once the
//! table has it ([`Router::release_waiting`]), for the I/O layer to send out
//! the LAN port. Bounded: [`MAX_PER_HOST`] frames per host,
//! [`MAX_BYTES`] in all, each for [`MAX_WAIT`]; a frame beyond a bound is
//! dropped as `neighbour_unresolved`, one that waited too long as
//! `neighbour_timeout`. Only a whole frame that fits the LAN's MTU waits (a
//! fragment or a GSO super-frame is dropped as before). IPv4 and IPv6 hosts
//! share the queue and its bounds.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use super::counters::LaneCounters;
use super::{lock, Router};
use crate::verdict::DropReason;

/// Frames kept per LAN host.
pub const MAX_PER_HOST: usize = 3;

/// Bytes kept in all.
pub const MAX_BYTES: usize = 64 * 1024;

/// How long a frame waits: as long as the kernel's resolution of a host
/// that does not answer (three ARP requests, a second apart).
pub const MAX_WAIT: Duration = Duration::from_secs(3);

/// One frame waiting for `addr`'s MAC.
struct Waiting {
    addr: IpAddr,
    since: Duration,
    frame: Vec<u8>,
}

/// The frames waiting, oldest first.
#[derive(Default)]
pub(super) struct Queue {
    frames: VecDeque<Waiting>,
    bytes: usize,
}

impl Queue {
    /// Drops the frames that waited [`MAX_WAIT`] at `now`; how many.
    fn expire(&mut self, now: Duration) -> u64 {
        let mut expired = 0;
        while let Some(oldest) = self.frames.front() {
            if now.saturating_sub(oldest.since) < MAX_WAIT {
                break;
            }
            self.bytes -= oldest.frame.len();
            self.frames.pop_front();
            expired += 1;
        }
        expired
    }

    /// Keeps `frame` for `addr`, unless a bound is reached.
    fn push(&mut self, addr: IpAddr, frame: &[u8], now: Duration) -> bool {
        let for_host = self.frames.iter().filter(|w| w.addr == addr).count();
        if for_host >= MAX_PER_HOST || self.bytes + frame.len() > MAX_BYTES {
            return false;
        }
        self.bytes += frame.len();
        self.frames.push_back(Waiting {
            addr,
            since: now,
            frame: frame.to_vec(),
        });
        true
    }

    /// Takes `addr`'s frames, oldest first.
    fn take(&mut self, addr: IpAddr) -> Vec<Vec<u8>> {
        let (mine, others): (VecDeque<Waiting>, VecDeque<Waiting>) =
            self.frames.drain(..).partition(|w| w.addr == addr);
        self.frames = others;
        self.bytes -= mine.iter().map(|w| w.frame.len()).sum::<usize>();
        mine.into_iter().map(|w| w.frame).collect()
    }
}

/// The queue and the counters of what it drops on its own (summed into
/// [`Router::stats`]).
pub(super) struct NeighbourWait {
    queue: std::sync::Mutex<Queue>,
    pub(super) counters: LaneCounters,
}

impl NeighbourWait {
    pub(super) fn new(uplinks: usize) -> NeighbourWait {
        NeighbourWait {
            queue: std::sync::Mutex::default(),
            counters: LaneCounters::new(uplinks),
        }
    }

    /// Keeps the translated `frame` (its destination MAC blank) for
    /// `addr` at `now`; false when a bound is reached.
    pub(super) fn push(&self, addr: IpAddr, frame: &[u8], now: Duration) -> bool {
        let mut queue = lock(&self.queue);
        let expired = queue.expire(now);
        self.counters
            .count_drops(DropReason::NeighbourTimeout, expired);
        queue.push(addr, frame, now)
    }

    fn take(&self, addr: IpAddr, now: Duration) -> Vec<Vec<u8>> {
        let mut queue = lock(&self.queue);
        let expired = queue.expire(now);
        self.counters
            .count_drops(DropReason::NeighbourTimeout, expired);
        queue.take(addr)
    }
}

impl Router {
    /// The frames that waited for `addr`'s MAC, which the table has now,
    /// with it filled in, oldest first, for the I/O layer to send out the LAN
    /// port; those that waited [`MAX_WAIT`] by `now` are dropped and
    /// counted. Empty while the table has no MAC for `addr`.
    pub fn release_waiting(&self, addr: impl Into<IpAddr>, now: Duration) -> Vec<Vec<u8>> {
        let addr = addr.into();
        let mac = match addr {
            IpAddr::V4(v4) => self.lan_hosts.get(&v4.octets()).map(|m| *m),
            IpAddr::V6(v6) => self.v6.lan_hosts.get(&v6.octets()).map(|m| *m),
        };
        let Some(mac) = mac else {
            return Vec::new();
        };
        let mut frames = self.waiting.take(addr, now);
        for frame in &mut frames {
            frame[..6].copy_from_slice(&mac);
        }
        frames
    }

    /// Counts `n` released frames the I/O layer could not send.
    pub fn count_waiting_unsent(&self, n: u64) {
        self.waiting
            .counters
            .count_drops(DropReason::NeighbourSendFailed, n);
    }

    /// Drops and counts the frames that waited [`MAX_WAIT`] by `now` (the
    /// I/O layer calls this now and then: a frame whose host never
    /// resolves is counted even if nothing else comes).
    pub fn expire_waiting(&self, now: Duration) {
        let expired = lock(&self.waiting.queue).expire(now);
        self.waiting
            .counters
            .count_drops(DropReason::NeighbourTimeout, expired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 50, 10));
    const OTHER: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0x50, 0, 0, 0, 0, 0, 0xb));

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_few_frames_per_host_in_order() {
        let mut queue = Queue::default();
        for n in 0..MAX_PER_HOST as u8 {
            assert!(queue.push(HOST, &[n; 60], at(0)));
        }
        assert!(!queue.push(HOST, &[9; 60], at(0)), "one too many");
        assert!(queue.push(OTHER, &[7; 60], at(0)), "another host has room");
        let taken = queue.take(HOST);
        assert_eq!(
            taken,
            (0..MAX_PER_HOST as u8)
                .map(|n| vec![n; 60])
                .collect::<Vec<_>>()
        );
        assert_eq!(queue.take(OTHER), [vec![7; 60]]);
        assert_eq!(queue.bytes, 0);
    }

    #[test]
    fn bounded_in_bytes() {
        let mut queue = Queue::default();
        let big = vec![0; 1500];
        let mut kept = 0;
        for host in 0..=255u8 {
            if queue.push(IpAddr::from([10, 0, 0, host]), &big, at(0)) {
                kept += 1;
            }
        }
        assert_eq!(kept, MAX_BYTES / 1500);
        assert!(queue.bytes <= MAX_BYTES);
    }

    #[test]
    fn frames_expire_after_the_wait_and_are_counted() {
        let mut queue = Queue::default();
        assert!(queue.push(HOST, &[1; 60], at(0)));
        assert!(queue.push(HOST, &[2; 60], at(2000)));
        assert_eq!(queue.expire(at(2999)), 0);
        assert_eq!(queue.expire(at(3000)), 1);
        assert_eq!(queue.take(HOST), [vec![2; 60]]);
        assert_eq!(queue.bytes, 0);
    }
}

//! Health from real traffic: the core counts, per worker and uplink, the SYNs
//! of new connections sent out an uplink (with their latest destinations) and
//! the SYN-ACKs and RSTs that came back. An uplink whose SYNs have gone
//! unanswered for [`STALL`], towards at least [`MIN_DESTINATIONS`]
//! destinations, while another uplink had an answer within [`OTHER_WINDOW`],
//! is suspect: [`super::Monitor::traffic`] then probes it in a burst, and the
//! burst decides (so one dead remote host, or a slow one, takes nothing down).

use std::time::Duration;

use crate::router::{SynCounts, RECENT_SYNS};

/// How long SYNs must stay unanswered before the uplink is suspect.
pub const STALL: Duration = Duration::from_millis(100);

/// How many distinct destinations the unanswered SYNs must span.
pub const MIN_DESTINATIONS: usize = 3;

/// How recent another uplink's answer must be.
pub const OTHER_WINDOW: Duration = Duration::from_secs(2);

/// Why an uplink is suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// SYNs sent since the last answer.
    pub unanswered: u64,
    /// Distinct destinations among the latest of them.
    pub destinations: usize,
    /// Since the first of them.
    pub waited: Duration,
}

#[derive(Debug, Clone, Default)]
struct Track {
    answers: u64,
    answered_at: Option<Duration>,
    /// Each worker's SYN count at the last answer.
    base: Vec<u64>,
    unanswered_since: Option<Duration>,
}

/// Follows the core's TCP counters of every uplink.
#[derive(Debug, Clone)]
pub struct TrafficTracker {
    uplinks: Vec<Track>,
}

impl TrafficTracker {
    pub fn new(uplinks: usize) -> TrafficTracker {
        TrafficTracker {
            uplinks: vec![Track::default(); uplinks],
        }
    }

    /// Takes a reading (`lanes[worker][uplink]`) at `now`; `up[uplink]` says
    /// which uplinks carry new connections (one that does not starts afresh).
    /// Returns the evidence against each suspect uplink.
    pub fn sample(
        &mut self,
        lanes: &[Vec<SynCounts>],
        up: &[bool],
        now: Duration,
    ) -> Vec<Option<Evidence>> {
        for (id, track) in self.uplinks.iter_mut().enumerate() {
            let count = |l: &Vec<SynCounts>| l.get(id).copied().unwrap_or_default();
            let syns: Vec<u64> = lanes.iter().map(|l| count(l).syns).collect();
            let answers: u64 = lanes.iter().map(|l| count(l).answers).sum();
            let fresh = track.base.len() != lanes.len() || !up.get(id).copied().unwrap_or(false);
            if answers != track.answers || fresh {
                if answers != track.answers {
                    track.answered_at = Some(now);
                }
                track.answers = answers;
                track.base = syns;
                track.unanswered_since = None;
            } else if track.unanswered_since.is_none()
                && syns.iter().zip(&track.base).any(|(n, base)| n > base)
            {
                track.unanswered_since = Some(now);
            }
        }
        (0..self.uplinks.len())
            .map(|id| self.evidence(id, lanes, now))
            .collect()
    }

    fn evidence(&self, id: usize, lanes: &[Vec<SynCounts>], now: Duration) -> Option<Evidence> {
        let track = &self.uplinks[id];
        let waited = now.saturating_sub(track.unanswered_since?);
        if waited < STALL {
            return None;
        }
        let other_answers = self.uplinks.iter().enumerate().any(|(other, t)| {
            other != id
                && t.answered_at
                    .is_some_and(|at| now.saturating_sub(at) <= OTHER_WINDOW)
        });
        if !other_answers {
            return None;
        }
        let mut destinations = Vec::new();
        let mut unanswered = 0;
        for (lane, base) in lanes.iter().zip(&track.base) {
            let c = lane.get(id).copied().unwrap_or_default();
            unanswered += c.syns.saturating_sub(*base);
            let first = (*base).max(c.syns.saturating_sub(RECENT_SYNS as u64));
            destinations.extend((first..c.syns).map(|n| c.recent[n as usize % RECENT_SYNS]));
        }
        destinations.sort_unstable();
        destinations.dedup();
        (destinations.len() >= MIN_DESTINATIONS).then_some(Evidence {
            unanswered,
            destinations: destinations.len(),
            waited,
        })
    }
}

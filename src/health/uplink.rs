//! One uplink's health as the [`Monitor`](super::Monitor) keeps it: its
//! probe rounds in flight and recent history, its streaks, a running burst,
//! and the loss and latency figures its quality triggers judge.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::ProbeTarget;

use super::{AdminState, Cause, Evidence, Settings, Setup};

#[derive(Debug, Clone)]
pub(super) struct Round {
    pub(super) seq: u16,
    pub(super) sent: Duration,
    /// Round-trip time per target, once answered.
    pub(super) rtts: Vec<Option<Duration>>,
}

/// Rounds kept for the RTT and loss figures and the loss trigger.
pub(super) const HISTORY: usize = 10;

/// A burst: probes sent [`BURST_PROBES`] times, [`BURST_GAP`] apart, to every
/// target; judged [`BURST_WAIT`] (at most the uplink's timeout) after the first.
pub(super) const BURST_PROBES: u32 = 3;
pub(super) const BURST_GAP: Duration = Duration::from_millis(40);
pub(super) const BURST_WAIT: Duration = Duration::from_millis(250);

/// After a burst that was answered, the least time before the next one.
pub(super) const BURST_QUIET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub(super) struct Burst {
    pub(super) started: Duration,
    /// The sequence of each probe round of the burst sent so far.
    pub(super) seqs: Vec<u16>,
    pub(super) answered: bool,
    /// The evidence that started it, for the reason.
    pub(super) evidence: Evidence,
}

#[derive(Debug, Clone)]
pub(super) struct UplinkHealth {
    pub(super) settings: Settings,
    pub(super) targets: Vec<ProbeTarget>,
    pub(super) pending: VecDeque<Round>,
    pub(super) history: VecDeque<Round>,
    pub(super) next_round: Duration,
    pub(super) next_seq: u16,
    pub(super) good_streak: u32,
    pub(super) bad_streak: u32,
    /// What the probes (or the link) say.
    pub(super) healthy: bool,
    /// Why the probes say down.
    pub(super) cause: Cause,
    pub(super) admin: AdminState,
    pub(super) since: Duration,
    pub(super) link_ok: bool,
    pub(super) burst: Option<Burst>,
    pub(super) quiet_until: Duration,
}

impl UplinkHealth {
    pub(super) fn new(setup: Setup, now: Duration) -> UplinkHealth {
        let healthy = setup.settings.initial_up || setup.targets.is_empty();
        UplinkHealth {
            settings: setup.settings,
            targets: setup.targets,
            pending: VecDeque::new(),
            history: VecDeque::new(),
            next_round: now,
            next_seq: 1,
            good_streak: 0,
            bad_streak: 0,
            healthy,
            cause: Cause::Initial,
            admin: AdminState::Auto,
            since: now,
            link_ok: true,
            burst: None,
            quiet_until: now,
        }
    }

    pub(super) fn up(&self) -> bool {
        match self.admin {
            AdminState::Up => true,
            AdminState::Down => false,
            AdminState::Auto => self.healthy && self.link_ok,
        }
    }

    /// Why it is down, if it is.
    pub(super) fn cause(&self) -> Option<Cause> {
        match self.admin {
            _ if self.up() => None,
            AdminState::Down => Some(Cause::Admin),
            _ if !self.link_ok => Some(Cause::Link),
            _ => Some(self.cause),
        }
    }

    pub(super) fn take_seq(&mut self) -> u16 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Loss (0 to 1) over the recent rounds and the mean round-trip time of
    /// the last `window` of them.
    pub(super) fn quality(&self, window: usize) -> (f64, Option<Duration>) {
        let answered = |r: &Round| r.rtts.iter().flatten().count();
        let probes: usize = self.history.iter().map(|r| r.rtts.len()).sum();
        let got: usize = self.history.iter().map(answered).sum();
        let loss = if probes == 0 {
            0.0
        } else {
            1.0 - got as f64 / probes as f64
        };
        let rtts: Vec<Duration> = self
            .history
            .iter()
            .rev()
            .take(window)
            .flat_map(|r| r.rtts.iter().flatten().copied())
            .collect();
        let mean = (!rtts.is_empty()).then(|| rtts.iter().sum::<Duration>() / rtts.len() as u32);
        (loss, mean)
    }

    /// The quality trigger that holds the uplink down (`failing`: over a
    /// failure threshold; otherwise over a recovery one), with its reason.
    pub(super) fn quality_fault(&self, failing: bool) -> Option<(Cause, String)> {
        let s = &self.settings;
        let window = if failing { s.down_after } else { s.up_after };
        let (loss, mean) = self.quality(window as usize);
        let loss_pct = loss * 100.0;
        if let Some(t) = s.loss {
            let limit = if failing { t.failure } else { t.recovery };
            let over = if failing {
                loss_pct >= f64::from(limit)
            } else {
                loss_pct > f64::from(limit)
            };
            if over {
                let word = if failing { "failure" } else { "recovery" };
                return Some((
                    Cause::Loss,
                    format!("loss {loss_pct:.0}% over the recent rounds (the {word} threshold is {limit}%)"),
                ));
            }
        }
        if let (Some(t), Some(mean)) = (s.latency, mean) {
            let limit = if failing { t.failure } else { t.recovery };
            let over = if failing { mean >= limit } else { mean > limit };
            if over {
                let word = if failing { "failure" } else { "recovery" };
                return Some((
                    Cause::Latency,
                    format!(
                        "mean round trip {:.1} ms over the last {window} rounds (the {word} threshold is {} ms)",
                        mean.as_secs_f64() * 1000.0,
                        limit.as_millis()
                    ),
                ));
            }
        }
        None
    }
}

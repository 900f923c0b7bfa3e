//! Uplink health: ICMP echo probes to each uplink's targets, judged in
//! rounds, with separate thresholds to go down and to come back up, and an
//! operator's override. Pure logic with the clock passed in: the I/O layer
//! sends the probes this asks for and reports the replies it sees.
//!
//! A round is one probe to every target of an uplink, every `interval_ms`;
//! it succeeds when at least `reliability` targets answer within
//! `timeout_ms`. An uplink goes down after `down_after` failed rounds in a
//! row and up after `up_after` good ones. An uplink without targets is up
//! while its link is up and its gateway resolves. Every uplink starts up (so
//! traffic flows at once) and probes take it down if they fail.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, UplinkId};

/// An operator's override of an uplink's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Out of service whatever the health checks say.
    Down,
    /// In service whatever the health checks say.
    Up,
    /// The health checks decide.
    Auto,
}

/// A probe the I/O layer must send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub uplink: UplinkId,
    pub target: Ipv4Addr,
    pub seq: u16,
}

/// An uplink's change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub uplink: UplinkId,
    pub up: bool,
    /// Why, for the log and the hook.
    pub reason: String,
}

/// What `xwan status` shows of an uplink's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthReport {
    pub up: bool,
    pub admin: AdminState,
    /// When `up` last changed.
    pub since: Duration,
    /// Mean round-trip time of the answered probes of the recent rounds.
    pub rtt_ms: Option<f64>,
    /// Share of probes unanswered in the recent rounds, 0 to 1.
    pub loss: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
    pub reliability: u32,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            interval: Duration::from_millis(config.health.interval_ms),
            timeout: Duration::from_millis(config.health.timeout_ms),
            down_after: config.health.down_after,
            up_after: config.health.up_after,
            reliability: config.health.reliability,
        }
    }
}

#[derive(Debug, Clone)]
struct Round {
    seq: u16,
    sent: Duration,
    /// Round-trip time per target, once answered.
    rtts: Vec<Option<Duration>>,
}

/// Rounds kept for the RTT and loss figures.
const HISTORY: usize = 10;

#[derive(Debug, Clone)]
struct UplinkHealth {
    targets: Vec<Ipv4Addr>,
    pending: VecDeque<Round>,
    history: VecDeque<Round>,
    next_round: Duration,
    next_seq: u16,
    good_streak: u32,
    bad_streak: u32,
    /// What the probes (or the link) say.
    healthy: bool,
    admin: AdminState,
    since: Duration,
    link_ok: bool,
}

impl UplinkHealth {
    fn up(&self) -> bool {
        match self.admin {
            AdminState::Up => true,
            AdminState::Down => false,
            AdminState::Auto => self.healthy && self.link_ok,
        }
    }
}

/// The health of every uplink.
#[derive(Debug, Clone)]
pub struct Monitor {
    settings: Settings,
    uplinks: Vec<UplinkHealth>,
}

impl Monitor {
    /// `targets[i]` are uplink `i`'s probe targets; every uplink starts up.
    pub fn new(settings: Settings, targets: Vec<Vec<Ipv4Addr>>, now: Duration) -> Monitor {
        Monitor {
            settings,
            uplinks: targets
                .into_iter()
                .map(|targets| UplinkHealth {
                    targets,
                    pending: VecDeque::new(),
                    history: VecDeque::new(),
                    next_round: now,
                    next_seq: 1,
                    good_streak: 0,
                    bad_streak: 0,
                    healthy: true,
                    admin: AdminState::Auto,
                    since: now,
                    link_ok: true,
                })
                .collect(),
        }
    }

    pub fn is_up(&self, uplink: UplinkId) -> bool {
        self.uplinks[usize::from(uplink)].up()
    }

    /// New settings and targets from a reloaded configuration (one target
    /// list per uplink, in the same order). An uplink whose targets changed
    /// starts judging afresh (its rounds, streaks and figures are dropped)
    /// but keeps its state until the new rounds say otherwise (an uplink left
    /// without targets is judged by its link alone at once); overrides stay.
    pub fn reconfigure(
        &mut self,
        settings: Settings,
        targets: Vec<Vec<Ipv4Addr>>,
        now: Duration,
    ) -> Vec<Transition> {
        self.settings = settings;
        let mut transitions = Vec::new();
        for (id, targets) in targets.into_iter().enumerate().take(self.uplinks.len()) {
            let was_up = self.uplinks[id].up();
            let u = &mut self.uplinks[id];
            if u.targets == targets {
                continue;
            }
            if targets.is_empty() {
                u.healthy = true;
            }
            u.targets = targets;
            u.pending.clear();
            u.history.clear();
            u.good_streak = 0;
            u.bad_streak = 0;
            u.next_round = now;
            transitions.extend(self.settle(id as UplinkId, was_up, now, || {
                "probe targets changed".to_string()
            }));
        }
        transitions
    }

    /// Applies a change of the effective state, returning the transition.
    fn settle(
        &mut self,
        uplink: UplinkId,
        was_up: bool,
        now: Duration,
        reason: impl FnOnce() -> String,
    ) -> Option<Transition> {
        let u = &mut self.uplinks[usize::from(uplink)];
        let up = u.up();
        (up != was_up).then(|| {
            u.since = now;
            Transition {
                uplink,
                up,
                reason: reason(),
            }
        })
    }

    /// The link and gateway state the I/O layer sees (both must be good).
    /// An uplink with probes whose link goes down must then pass `up_after`
    /// probe rounds again once it is back.
    pub fn set_link(&mut self, uplink: UplinkId, ok: bool, now: Duration) -> Option<Transition> {
        let was_up = self.is_up(uplink);
        let u = &mut self.uplinks[usize::from(uplink)];
        if !ok && u.link_ok && !u.targets.is_empty() {
            u.healthy = false;
            u.good_streak = 0;
        }
        u.link_ok = ok;
        self.settle(uplink, was_up, now, || {
            if ok {
                "link up and gateway resolved".to_string()
            } else {
                "link down or gateway unresolved".to_string()
            }
        })
    }

    /// An operator's override.
    pub fn set_admin(
        &mut self,
        uplink: UplinkId,
        admin: AdminState,
        now: Duration,
    ) -> Option<Transition> {
        let was_up = self.is_up(uplink);
        self.uplinks[usize::from(uplink)].admin = admin;
        self.settle(uplink, was_up, now, || {
            format!("operator set {admin:?}").to_lowercase()
        })
    }

    /// Records a probe reply from `from` with sequence `seq`.
    pub fn reply(&mut self, uplink: UplinkId, from: Ipv4Addr, seq: u16, now: Duration) {
        let timeout = self.settings.timeout;
        let Some(u) = self.uplinks.get_mut(usize::from(uplink)) else {
            return;
        };
        let Some(target) = u.targets.iter().position(|t| *t == from) else {
            return;
        };
        if let Some(round) = u.pending.iter_mut().find(|r| r.seq == seq) {
            let rtt = now.saturating_sub(round.sent);
            if rtt <= timeout {
                round.rtts[target] = Some(rtt);
            }
        }
    }

    /// Advances to `now`: judges the rounds whose time is up and says which
    /// probes to send and which uplinks changed state.
    pub fn tick(&mut self, now: Duration) -> (Vec<Probe>, Vec<Transition>) {
        let mut probes = Vec::new();
        let mut transitions = Vec::new();
        for id in 0..self.uplinks.len() {
            let uplink = id as UplinkId;
            if self.uplinks[id].targets.is_empty() {
                continue;
            }
            while let Some(round) = self.uplinks[id].pending.front() {
                if now < round.sent + self.settings.timeout {
                    break;
                }
                let round = self.uplinks[id].pending.pop_front().expect("front exists");
                transitions.extend(self.judge(uplink, round, now));
            }
            let u = &mut self.uplinks[id];
            if now >= u.next_round {
                let seq = u.next_seq;
                u.next_seq = u.next_seq.wrapping_add(1);
                u.next_round = now + self.settings.interval;
                u.pending.push_back(Round {
                    seq,
                    sent: now,
                    rtts: vec![None; u.targets.len()],
                });
                probes.extend(u.targets.iter().map(|target| Probe {
                    uplink,
                    target: *target,
                    seq,
                }));
            }
        }
        (probes, transitions)
    }

    fn judge(&mut self, uplink: UplinkId, round: Round, now: Duration) -> Option<Transition> {
        let was_up = self.is_up(uplink);
        let settings = self.settings;
        let u = &mut self.uplinks[usize::from(uplink)];
        let answered = round.rtts.iter().filter(|r| r.is_some()).count() as u32;
        let needed = settings.reliability.min(u.targets.len() as u32).max(1);
        let good = answered >= needed;
        if good {
            u.good_streak += 1;
            u.bad_streak = 0;
        } else {
            u.bad_streak += 1;
            u.good_streak = 0;
        }
        u.history.push_back(round);
        if u.history.len() > HISTORY {
            u.history.pop_front();
        }
        if u.healthy && u.bad_streak >= settings.down_after {
            u.healthy = false;
        } else if !u.healthy && u.good_streak >= settings.up_after {
            u.healthy = true;
        }
        let (bad, good_streak) = (u.bad_streak, u.good_streak);
        self.settle(uplink, was_up, now, || {
            if good {
                format!("{good_streak} good probe rounds in a row")
            } else {
                format!("{bad} failed probe rounds in a row")
            }
        })
    }

    pub fn report(&self, uplink: UplinkId) -> HealthReport {
        let u = &self.uplinks[usize::from(uplink)];
        let rtts: Vec<f64> = u
            .history
            .iter()
            .flat_map(|r| r.rtts.iter().flatten())
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        let probes: usize = u.history.iter().map(|r| r.rtts.len()).sum();
        HealthReport {
            up: u.up(),
            admin: u.admin,
            since: u.since,
            rtt_ms: (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64),
            loss: if probes == 0 {
                0.0
            } else {
                1.0 - rtts.len() as f64 / probes as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: Ipv4Addr = Ipv4Addr::new(198, 18, 11, 2);
    const T2: Ipv4Addr = Ipv4Addr::new(198, 18, 12, 2);

    fn settings() -> Settings {
        Settings {
            interval: Duration::from_millis(300),
            timeout: Duration::from_millis(250),
            down_after: 3,
            up_after: 2,
            reliability: 1,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs the monitor for `rounds` rounds; `answers(uplink, target)` says
    /// whether a probe gets a reply (after 10 ms). Returns the transitions.
    fn run(
        monitor: &mut Monitor,
        start: u64,
        rounds: u64,
        answers: impl Fn(UplinkId, Ipv4Addr) -> bool,
    ) -> Vec<(u64, Transition)> {
        let mut out = Vec::new();
        let mut t = start;
        while t < start + rounds * 300 {
            let (probes, transitions) = monitor.tick(ms(t));
            out.extend(transitions.into_iter().map(|tr| (t, tr)));
            for p in probes {
                if answers(p.uplink, p.target) {
                    monitor.reply(p.uplink, p.target, p.seq, ms(t + 10));
                }
            }
            t += 10;
        }
        out
    }

    #[test]
    fn goes_down_after_down_after_failed_rounds_and_back_after_up_after() {
        let mut m = Monitor::new(settings(), vec![vec![T1], vec![T2]], ms(0));
        assert!(run(&mut m, 0, 5, |_, _| true).is_empty());
        // The path behind uplink 0 dies.
        let transitions = run(&mut m, 1500, 6, |u, _| u != 0);
        assert_eq!(transitions.len(), 1, "{transitions:?}");
        let (at, t) = &transitions[0];
        assert_eq!((t.uplink, t.up), (0, false));
        // Three rounds sent at 1500, 1800, 2100, each judged 250 ms later.
        assert_eq!(*at, 2350);
        assert!(!m.is_up(0) && m.is_up(1));
        assert!(m.report(0).loss >= 0.5, "recent rounds mostly lost");
        let transitions = run(&mut m, 3300, 4, |_, _| true);
        assert_eq!(transitions.len(), 1);
        assert_eq!((transitions[0].1.uplink, transitions[0].1.up), (0, true));
        assert!(m.report(0).rtt_ms.unwrap() > 9.0);
    }

    #[test]
    fn late_replies_count_as_lost() {
        let mut m = Monitor::new(settings(), vec![vec![T1]], ms(0));
        let mut t = 0;
        let mut transitions = Vec::new();
        while t < 3000 {
            let (probes, tr) = m.tick(ms(t));
            transitions.extend(tr);
            for p in probes {
                m.reply(p.uplink, p.target, p.seq, ms(t + 260));
            }
            t += 10;
        }
        assert_eq!(transitions.len(), 1);
        assert!(!transitions[0].up);
    }

    #[test]
    fn reliability_needs_k_of_n_targets() {
        let mut s = settings();
        s.reliability = 2;
        let mut m = Monitor::new(s, vec![vec![T1, T2]], ms(0));
        // One of two targets answers: not enough.
        let transitions = run(&mut m, 0, 5, |_, t| t == T1);
        assert_eq!(transitions.len(), 1);
        assert!(!transitions[0].1.up);
        assert_eq!(m.report(0).loss, 0.5);
    }

    #[test]
    fn reconfigured_targets_start_afresh_and_settings_apply() {
        let mut m = Monitor::new(settings(), vec![vec![T1], vec![T2]], ms(0));
        // Uplink 0's probes die: down.
        let transitions = run(&mut m, 0, 5, |u, _| u != 0);
        assert_eq!(transitions.len(), 1);
        assert!(!m.is_up(0));
        // New targets for uplink 0 (that answer) and a quicker way back up.
        let mut quick = settings();
        quick.up_after = 1;
        assert!(m
            .reconfigure(quick, vec![vec![T2], vec![T2]], ms(1500))
            .is_empty());
        assert!(!m.is_up(0), "state kept until the new rounds judge");
        assert!(m.report(0).rtt_ms.is_none(), "figures start afresh");
        let transitions = run(&mut m, 1500, 2, |_, _| true);
        assert_eq!(transitions.len(), 1);
        assert_eq!((transitions[0].1.uplink, transitions[0].1.up), (0, true));
        // No targets: up while the link is.
        run(&mut m, 2200, 5, |u, _| u == 0);
        assert!(!m.is_up(1));
        let transitions = m.reconfigure(settings(), vec![vec![T2], vec![]], ms(3700));
        assert_eq!(transitions.len(), 1);
        assert_eq!((transitions[0].uplink, transitions[0].up), (1, true));
        assert!(m.tick(ms(3800)).0.iter().all(|p| p.uplink == 0));
    }

    #[test]
    fn operator_override_and_link_state() {
        let mut m = Monitor::new(settings(), vec![vec![], vec![T2]], ms(0));
        let t = m.set_admin(0, AdminState::Down, ms(5)).unwrap();
        assert!(!t.up);
        assert!(m.set_admin(0, AdminState::Down, ms(6)).is_none());
        assert!(m.set_admin(0, AdminState::Auto, ms(7)).unwrap().up);
        // No targets: up while the link is.
        assert!(!m.set_link(0, false, ms(8)).unwrap().up);
        assert!(m.tick(ms(9)).1.is_empty());
        assert!(m.set_admin(0, AdminState::Up, ms(10)).unwrap().up);
        assert_eq!(m.report(0).since, ms(10));
    }

    #[test]
    fn link_loss_is_at_once_and_its_return_waits_for_up_after_rounds() {
        let mut m = Monitor::new(settings(), vec![vec![T1], vec![T2]], ms(0));
        assert!(run(&mut m, 0, 3, |_, _| true).is_empty());
        let t = m.set_link(0, false, ms(1000)).expect("down at once");
        assert!(!t.up && !m.is_up(0) && m.is_up(1));
        // Back: still down until up_after good rounds.
        assert!(m.set_link(0, true, ms(1100)).is_none());
        let transitions = run(&mut m, 1100, 4, |_, _| true);
        assert_eq!(transitions.len(), 1, "{transitions:?}");
        let (at, t) = &transitions[0];
        assert_eq!((t.uplink, t.up), (0, true));
        assert!(
            *at >= 1100 + 250,
            "up at {at} ms, before a round was judged"
        );
    }
}

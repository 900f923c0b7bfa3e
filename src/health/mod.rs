//! Uplink health: probes to each uplink's targets (ICMP echo, TCP SYN, DNS
//! query), judged in rounds, with separate thresholds to go down and to come
//! back up, quality triggers on loss and latency with hysteresis, evidence
//! from the uplink's own TCP traffic that calls for a burst of probes at
//! once, and an operator's override. Pure logic with the clock passed in: the
//! I/O layer sends the probes this asks for and reports the replies it sees.
//!
//! A round is one probe to every target of an uplink, every `interval_ms`;
//! it succeeds when at least `reliability` targets answer within
//! `timeout_ms`. An uplink goes down after `down_after` failed rounds in a
//! row, when the loss of its last 10 rounds reaches its failure threshold,
//! or when the mean round-trip time of its last `down_after` rounds does; it
//! comes back after `up_after` good rounds in a row once the loss of the last
//! 10 and the mean round trip of the last `up_after` are at or under their
//! recovery thresholds. Each uplink has its own settings. An uplink without targets is up while its link is up and its
//! gateway resolves. An uplink starts in its `initial_state` (up: traffic
//! flows at once and probes take it down if they fail; down: it waits for
//! `up_after` good rounds).

mod traffic;
mod uplink;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ProbeTarget, Trigger, UplinkId, Wan};
pub use traffic::{Evidence, TrafficTracker};
use uplink::{
    Burst, Round, UplinkHealth, BURST_GAP, BURST_PROBES, BURST_QUIET, BURST_WAIT, HISTORY,
};

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

/// Why an uplink is down (or, in a transition to up, what brought it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// `down_after` failed rounds in a row, or not yet `up_after` good ones.
    Probes,
    /// Loss over the failure threshold.
    Loss,
    /// Mean round-trip time over the failure threshold.
    Latency,
    /// New TCP connections unanswered and a burst of probes failed.
    Traffic,
    /// The link is down or the gateway does not resolve.
    Link,
    /// An operator's override.
    Admin,
    /// `initial_state = "down"`, not yet proven.
    Initial,
    /// The probe targets changed with a reload.
    Reload,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Probes => "probes",
            Cause::Loss => "loss",
            Cause::Latency => "latency",
            Cause::Traffic => "traffic",
            Cause::Link => "link",
            Cause::Admin => "admin",
            Cause::Initial => "initial",
            Cause::Reload => "reload",
        }
    }
}

/// A probe the I/O layer must send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub uplink: UplinkId,
    pub target: ProbeTarget,
    pub seq: u16,
}

/// What answered a probe, as the I/O layer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An echo reply from this address.
    Icmp(IpAddr),
    /// A SYN-ACK or an RST from this address and port.
    Tcp(SocketAddr),
    /// A DNS response from this server.
    Dns(IpAddr),
}

impl Answer {
    fn answers(&self, target: &ProbeTarget) -> bool {
        match (self, target) {
            (Answer::Icmp(a), ProbeTarget::Icmp(t)) => a == t,
            (Answer::Tcp(a), ProbeTarget::Tcp(t)) => a == t,
            (Answer::Dns(a), ProbeTarget::Dns { server, .. }) => a == server,
            _ => false,
        }
    }
}

/// An uplink's change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub uplink: UplinkId,
    /// Made by the IPv6 monitor ([`Monitor::new6`]): about the uplink's
    /// IPv6 side alone.
    pub ipv6: bool,
    pub up: bool,
    pub cause: Cause,
    /// Why, in words, for the log, the hook and the event stream.
    pub reason: String,
}

/// What `xwan status` shows of an uplink's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthReport {
    pub up: bool,
    pub admin: AdminState,
    /// Why it is down; None while up.
    pub cause: Option<Cause>,
    /// When `up` last changed.
    pub since: Duration,
    /// Mean round-trip time of the answered probes of the recent rounds.
    pub rtt_ms: Option<f64>,
    /// Share of probes unanswered in the recent rounds, 0 to 1.
    pub loss: f64,
}

/// One uplink's health settings, from `[health]` and its `[wan.health]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
    pub reliability: u32,
    /// Loss thresholds, in percent.
    pub loss: Option<Trigger<u32>>,
    pub latency: Option<Trigger<Duration>>,
    pub initial_up: bool,
}

impl Settings {
    pub fn for_uplink(wan: &Wan) -> Settings {
        let h = &wan.health;
        Settings {
            interval: Duration::from_millis(h.interval_ms),
            timeout: Duration::from_millis(h.timeout_ms),
            down_after: h.down_after,
            up_after: h.up_after,
            reliability: h.reliability,
            loss: h.loss,
            latency: h.latency_ms.map(|t| Trigger {
                failure: Duration::from_millis(t.failure),
                recovery: Duration::from_millis(t.recovery),
            }),
            initial_up: h.initial_up,
        }
    }
}

/// What the monitor needs of one uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub settings: Settings,
    pub targets: Vec<ProbeTarget>,
}

impl Setup {
    /// One per uplink of `config`, for the uplink's own verdict: its IPv4
    /// targets, or its IPv6 targets when it has no IPv4 ones (a family
    /// without targets follows the other's verdict). A removed uplink
    /// (`removed[i]`) probes nothing.
    pub fn all(config: &Config, removed: &[bool]) -> Vec<Setup> {
        Setup::each(config, removed, |wan| {
            let v4: Vec<ProbeTarget> = wan.probe.iter().filter(|t| !t.is_ipv6()).cloned().collect();
            if v4.is_empty() {
                wan.probe.clone()
            } else {
                v4
            }
        })
    }

    /// One per uplink of `config`, for the IPv6 monitor: the IPv6 targets of
    /// the uplinks whose IPv6 side is judged apart ([`judged_apart6`]);
    /// none for the others.
    pub fn all6(config: &Config, removed: &[bool]) -> Vec<Setup> {
        Setup::each(config, removed, |wan| {
            if judged_apart6(wan) {
                wan.probe.iter().filter(|t| t.is_ipv6()).cloned().collect()
            } else {
                Vec::new()
            }
        })
    }

    fn each(
        config: &Config,
        removed: &[bool],
        targets: impl Fn(&Wan) -> Vec<ProbeTarget>,
    ) -> Vec<Setup> {
        config
            .wans
            .iter()
            .enumerate()
            .map(|(id, wan)| Setup {
                settings: Settings::for_uplink(wan),
                targets: if removed.get(id).copied().unwrap_or(false) {
                    Vec::new()
                } else {
                    targets(wan)
                },
            })
            .collect()
    }
}

/// Whether an uplink's one verdict is made by IPv6 targets: it has
/// targets, all IPv6 ([`Setup::all`]).
pub fn judged_by6(wan: &Wan) -> bool {
    !wan.probe.is_empty() && wan.probe.iter().all(ProbeTarget::is_ipv6)
}

/// Whether an uplink's IPv6 side is judged apart from its IPv4 side: it
/// carries IPv6 and has probe targets of both families. Otherwise one
/// verdict (by the targets it has) holds for both families.
pub fn judged_apart6(wan: &Wan) -> bool {
    wan.ipv6.is_some()
        && wan.probe.iter().any(ProbeTarget::is_ipv6)
        && wan.probe.iter().any(|t| !t.is_ipv6())
}

/// The health of every uplink.
#[derive(Debug, Clone)]
pub struct Monitor {
    uplinks: Vec<UplinkHealth>,
    /// Judges the uplinks' IPv6 sides (its transitions say so).
    ipv6: bool,
}

impl Monitor {
    /// One [`Setup`] per uplink; each starts in its `initial_state`.
    pub fn new(setups: Vec<Setup>, now: Duration) -> Monitor {
        Monitor {
            uplinks: setups
                .into_iter()
                .map(|setup| UplinkHealth::new(setup, now))
                .collect(),
            ipv6: false,
        }
    }

    /// The monitor of the uplinks' IPv6 sides ([`Setup::all6`]): the same
    /// judging, its transitions marked `ipv6`.
    pub fn new6(setups: Vec<Setup>, now: Duration) -> Monitor {
        Monitor {
            ipv6: true,
            ..Monitor::new(setups, now)
        }
    }

    /// Whether the uplink has targets here (else it is judged by its link).
    pub fn probes(&self, uplink: UplinkId) -> bool {
        self.uplinks
            .get(usize::from(uplink))
            .is_some_and(|u| !u.targets.is_empty())
    }

    pub fn is_up(&self, uplink: UplinkId) -> bool {
        self.uplinks[usize::from(uplink)].up()
    }

    /// New settings and targets from a reloaded configuration (one per
    /// uplink, in the same order). New settings apply from the next round.
    /// An uplink whose targets changed starts judging afresh (its rounds,
    /// streaks and figures are dropped) but keeps its state until the new
    /// rounds say otherwise (an uplink left without targets is judged by its
    /// link alone at once); overrides stay.
    pub fn reconfigure(&mut self, setups: Vec<Setup>, now: Duration) -> Vec<Transition> {
        let mut transitions = Vec::new();
        for (id, setup) in setups.into_iter().enumerate().take(self.uplinks.len()) {
            let was_up = self.uplinks[id].up();
            let u = &mut self.uplinks[id];
            u.settings = setup.settings;
            if u.targets == setup.targets {
                continue;
            }
            if setup.targets.is_empty() {
                u.healthy = true;
            }
            u.targets = setup.targets;
            u.pending.clear();
            u.history.clear();
            u.burst = None;
            u.good_streak = 0;
            u.bad_streak = 0;
            u.next_round = now;
            transitions.extend(self.settle(id as UplinkId, was_up, now, Cause::Reload, || {
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
        cause: Cause,
        reason: impl FnOnce() -> String,
    ) -> Option<Transition> {
        let u = &mut self.uplinks[usize::from(uplink)];
        let up = u.up();
        (up != was_up).then(|| {
            u.since = now;
            Transition {
                uplink,
                ipv6: self.ipv6,
                up,
                cause,
                reason: reason(),
            }
        })
    }

    /// The link and gateway state the I/O layer sees (both must be good).
    /// An uplink with probes whose link goes down must then pass `up_after`
    /// probe rounds again once it is back.
    pub fn set_link(&mut self, uplink: UplinkId, ok: bool, now: Duration) -> Option<Transition> {
        let fault = (!ok).then_some("link down or gateway unresolved");
        self.set_link_because(uplink, fault, now)
    }

    /// As [`Monitor::set_link`], with what is wrong (None: nothing), in the
    /// words of a transition down.
    pub fn set_link_because(
        &mut self,
        uplink: UplinkId,
        fault: Option<&str>,
        now: Duration,
    ) -> Option<Transition> {
        let ok = fault.is_none();
        let was_up = self.is_up(uplink);
        let u = &mut self.uplinks[usize::from(uplink)];
        if !ok && u.link_ok && !u.targets.is_empty() {
            u.healthy = false;
            u.cause = Cause::Link;
            u.good_streak = 0;
        }
        u.link_ok = ok;
        self.settle(uplink, was_up, now, Cause::Link, || {
            fault.map_or_else(
                || "link up and gateway resolved".to_string(),
                str::to_string,
            )
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
        self.settle(uplink, was_up, now, Cause::Admin, || {
            format!("operator set {admin:?}").to_lowercase()
        })
    }

    /// Records a probe answer with sequence `seq`.
    pub fn reply(&mut self, uplink: UplinkId, answer: Answer, seq: u16, now: Duration) {
        let Some(u) = self.uplinks.get_mut(usize::from(uplink)) else {
            return;
        };
        let Some(target) = u.targets.iter().position(|t| answer.answers(t)) else {
            return;
        };
        if let Some(burst) = &mut u.burst {
            if burst.seqs.contains(&seq) {
                burst.answered = true;
                return;
            }
        }
        let timeout = u.settings.timeout;
        if let Some(round) = u.pending.iter_mut().find(|r| r.seq == seq) {
            let rtt = now.saturating_sub(round.sent);
            if rtt <= timeout {
                round.rtts[target] = Some(rtt);
            }
        }
    }

    /// Takes the TCP evidence of every uplink (from [`TrafficTracker`]): an
    /// uplink that is up, probes, and whose new connections go unanswered
    /// while another uplink's are answered gets a burst of probes at once.
    pub fn traffic(&mut self, evidence: &[Option<Evidence>], now: Duration) {
        for (id, evidence) in evidence.iter().enumerate().take(self.uplinks.len()) {
            let u = &mut self.uplinks[id];
            let Some(evidence) = evidence else { continue };
            if u.burst.is_some()
                || now < u.quiet_until
                || u.targets.is_empty()
                || u.admin != AdminState::Auto
                || !u.up()
            {
                continue;
            }
            u.burst = Some(Burst {
                started: now,
                seqs: Vec::new(),
                answered: false,
                evidence: *evidence,
            });
        }
    }

    /// Advances to `now`: judges the rounds and bursts whose time is up and
    /// says which probes to send and which uplinks changed state.
    pub fn tick(&mut self, now: Duration) -> (Vec<Probe>, Vec<Transition>) {
        let mut probes = Vec::new();
        let mut transitions = Vec::new();
        for id in 0..self.uplinks.len() {
            let uplink = id as UplinkId;
            if self.uplinks[id].targets.is_empty() {
                continue;
            }
            transitions.extend(self.burst(uplink, now, &mut probes));
            let timeout = self.uplinks[id].settings.timeout;
            while let Some(round) = self.uplinks[id].pending.front() {
                if now < round.sent + timeout {
                    break;
                }
                let round = self.uplinks[id].pending.pop_front().expect("front exists");
                transitions.extend(self.judge(uplink, round, now));
            }
            let u = &mut self.uplinks[id];
            if now >= u.next_round {
                let seq = u.take_seq();
                u.next_round = now + u.settings.interval;
                u.pending.push_back(Round {
                    seq,
                    sent: now,
                    rtts: vec![None; u.targets.len()],
                });
                probes.extend(u.targets.iter().map(|target| Probe {
                    uplink,
                    target: target.clone(),
                    seq,
                }));
            }
        }
        (probes, transitions)
    }

    /// Sends a running burst's probes and judges it when its time is up: no
    /// answer takes the uplink down at once.
    fn burst(
        &mut self,
        uplink: UplinkId,
        now: Duration,
        probes: &mut Vec<Probe>,
    ) -> Option<Transition> {
        let was_up = self.is_up(uplink);
        let u = &mut self.uplinks[usize::from(uplink)];
        let burst = u.burst.as_mut()?;
        if burst.answered {
            u.burst = None;
            u.quiet_until = now + BURST_QUIET;
            return None;
        }
        let wait = BURST_WAIT.min(u.settings.timeout);
        if now >= burst.started + wait {
            let burst = u.burst.take().expect("a burst runs");
            u.quiet_until = now + BURST_QUIET;
            u.healthy = false;
            u.cause = Cause::Traffic;
            u.good_streak = 0;
            let e = burst.evidence;
            let sent = burst.seqs.len() * u.targets.len();
            return self.settle(uplink, was_up, now, Cause::Traffic, || {
                format!(
                    "{} new TCP connections to {} destinations unanswered for {} ms while another uplink's were answered; {sent} burst probes unanswered in {} ms",
                    e.unanswered,
                    e.destinations,
                    e.waited.as_millis(),
                    wait.as_millis()
                )
            });
        }
        let sent = burst.seqs.len() as u32;
        if sent < BURST_PROBES && now >= burst.started + BURST_GAP * sent {
            let seq = u.take_seq();
            u.burst.as_mut().expect("a burst runs").seqs.push(seq);
            probes.extend(u.targets.iter().map(|target| Probe {
                uplink,
                target: target.clone(),
                seq,
            }));
        }
        None
    }

    fn judge(&mut self, uplink: UplinkId, round: Round, now: Duration) -> Option<Transition> {
        let was_up = self.is_up(uplink);
        let u = &mut self.uplinks[usize::from(uplink)];
        let settings = u.settings;
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
        let mut reason = None;
        if u.healthy {
            if u.bad_streak >= settings.down_after {
                u.healthy = false;
                u.cause = Cause::Probes;
                reason = Some(format!("{} failed probe rounds in a row", u.bad_streak));
            } else if u.history.len() >= settings.down_after as usize {
                if let Some((cause, why)) = u.quality_fault(true) {
                    u.healthy = false;
                    u.cause = cause;
                    reason = Some(why);
                }
            }
        } else if u.good_streak >= settings.up_after {
            match u.quality_fault(false) {
                Some((cause, _)) => u.cause = cause,
                None => {
                    u.healthy = true;
                    u.cause = Cause::Probes;
                    let (loss, mean) = u.quality(settings.up_after as usize);
                    reason = Some(format!(
                        "{} good probe rounds in a row (loss {:.0}%, mean round trip {})",
                        u.good_streak,
                        loss * 100.0,
                        mean.map_or("-".to_string(), |m| format!(
                            "{:.1} ms",
                            m.as_secs_f64() * 1000.0
                        ))
                    ));
                }
            }
        } else if u.cause == Cause::Initial && u.bad_streak > 0 {
            u.cause = Cause::Probes;
        }
        let cause = u.cause;
        let reason = reason.unwrap_or_default();
        self.settle(uplink, was_up, now, cause, || reason)
    }

    pub fn report(&self, uplink: UplinkId) -> HealthReport {
        let u = &self.uplinks[usize::from(uplink)];
        let (loss, mean) = u.quality(HISTORY);
        HealthReport {
            up: u.up(),
            admin: u.admin,
            cause: u.cause(),
            since: u.since,
            rtt_ms: mean.map(|d| d.as_secs_f64() * 1000.0),
            loss,
        }
    }
}

#[cfg(test)]
mod tests;

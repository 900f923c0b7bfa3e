use super::*;
use crate::router::SynCounts;

use std::net::Ipv4Addr;

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 11, 2));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 12, 2));
const T1: ProbeTarget = ProbeTarget::Icmp(A1);
const T2: ProbeTarget = ProbeTarget::Icmp(A2);

fn settings() -> Settings {
    Settings {
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(250),
        down_after: 3,
        up_after: 2,
        reliability: 1,
        loss: None,
        latency: None,
        initial_up: true,
    }
}

/// A monitor with `settings` for every uplink and these targets.
fn monitor(settings: Settings, targets: Vec<Vec<ProbeTarget>>, now: Duration) -> Monitor {
    Monitor::new(setups(settings, targets), now)
}

fn setups(settings: Settings, targets: Vec<Vec<ProbeTarget>>) -> Vec<Setup> {
    targets
        .into_iter()
        .map(|targets| Setup { settings, targets })
        .collect()
}

/// The answer a probe of `target` gets.
fn answer(target: &ProbeTarget) -> Answer {
    match target {
        ProbeTarget::Icmp(a) => Answer::Icmp(*a),
        ProbeTarget::Tcp(a) => Answer::Tcp(*a),
        ProbeTarget::Dns { server, .. } => Answer::Dns(*server),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs the monitor for `rounds` rounds of 300 ms; `answers(uplink,
/// target)` says whether a probe gets a reply (after 10 ms). Returns the
/// transitions.
fn run(
    monitor: &mut Monitor,
    start: u64,
    rounds: u64,
    answers: impl Fn(UplinkId, IpAddr) -> bool,
) -> Vec<(u64, Transition)> {
    run_with_rtt(monitor, start, rounds, |u, t| answers(u, t).then_some(10))
}

/// As [`run`], with `rtt(uplink, target)` the reply's delay in ms, if any.
fn run_with_rtt(
    monitor: &mut Monitor,
    start: u64,
    rounds: u64,
    rtt: impl Fn(UplinkId, IpAddr) -> Option<u64>,
) -> Vec<(u64, Transition)> {
    let mut out = Vec::new();
    let mut t = start;
    let mut due: Vec<(u64, UplinkId, Answer, u16)> = Vec::new();
    while t < start + rounds * 300 {
        for (_, uplink, answer, seq) in due.iter().filter(|d| d.0 <= t) {
            monitor.reply(*uplink, *answer, *seq, ms(t));
        }
        due.retain(|d| d.0 > t);
        let (probes, transitions) = monitor.tick(ms(t));
        out.extend(transitions.into_iter().map(|tr| (t, tr)));
        for p in probes {
            if let Some(delay) = rtt(p.uplink, p.target.addr()) {
                due.push((t + delay, p.uplink, answer(&p.target), p.seq));
            }
        }
        t += 10;
    }
    out
}

#[test]
fn goes_down_after_down_after_failed_rounds_and_back_after_up_after() {
    let mut m = monitor(settings(), vec![vec![T1], vec![T2]], ms(0));
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
    let mut m = monitor(settings(), vec![vec![T1]], ms(0));
    let mut t = 0;
    let mut transitions = Vec::new();
    while t < 3000 {
        let (probes, tr) = m.tick(ms(t));
        transitions.extend(tr);
        for p in probes {
            m.reply(p.uplink, answer(&p.target), p.seq, ms(t + 260));
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
    let mut m = monitor(s, vec![vec![T1, T2]], ms(0));
    // One of two targets answers: not enough.
    let transitions = run(&mut m, 0, 5, |_, t| t == A1);
    assert_eq!(transitions.len(), 1);
    assert!(!transitions[0].1.up);
    assert_eq!(m.report(0).loss, 0.5);
}

#[test]
fn reconfigured_targets_start_afresh_and_settings_apply() {
    let mut m = monitor(settings(), vec![vec![T1], vec![T2]], ms(0));
    // Uplink 0's probes die: down.
    let transitions = run(&mut m, 0, 5, |u, _| u != 0);
    assert_eq!(transitions.len(), 1);
    assert!(!m.is_up(0));
    // New targets for uplink 0 (that answer) and a quicker way back up.
    let mut quick = settings();
    quick.up_after = 1;
    assert!(m
        .reconfigure(setups(quick, vec![vec![T2], vec![T2]]), ms(1500))
        .is_empty());
    assert!(!m.is_up(0), "state kept until the new rounds judge");
    assert!(m.report(0).rtt_ms.is_none(), "figures start afresh");
    let transitions = run(&mut m, 1500, 2, |_, _| true);
    assert_eq!(transitions.len(), 1);
    assert_eq!((transitions[0].1.uplink, transitions[0].1.up), (0, true));
    // No targets: up while the link is.
    run(&mut m, 2200, 5, |u, _| u == 0);
    assert!(!m.is_up(1));
    let transitions = m.reconfigure(setups(settings(), vec![vec![T2], vec![]]), ms(3700));
    assert_eq!(transitions.len(), 1);
    assert_eq!((transitions[0].uplink, transitions[0].up), (1, true));
    assert!(m.tick(ms(3800)).0.iter().all(|p| p.uplink == 0));
}

#[test]
fn operator_override_and_link_state() {
    let mut m = monitor(settings(), vec![vec![], vec![T2]], ms(0));
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
    let mut m = monitor(settings(), vec![vec![T1], vec![T2]], ms(0));
    assert!(run(&mut m, 0, 3, |_, _| true).is_empty());
    let t = m.set_link(0, false, ms(1000)).expect("down at once");
    assert!(!t.up && !m.is_up(0) && m.is_up(1));
    assert_eq!(t.cause, Cause::Link);
    assert_eq!(m.report(0).cause, Some(Cause::Link));
    // Back: still down until up_after good rounds.
    assert!(m.set_link(0, true, ms(1100)).is_none());
    assert_eq!(m.report(0).cause, Some(Cause::Link), "not yet proven");
    let transitions = run(&mut m, 1100, 4, |_, _| true);
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let (at, t) = &transitions[0];
    assert_eq!((t.uplink, t.up), (0, true));
    assert!(
        *at >= 1100 + 250,
        "up at {at} ms, before a round was judged"
    );
}

#[test]
fn latency_trigger_goes_down_and_recovers_with_hysteresis() {
    let mut s = settings();
    s.timeout = ms(280);
    s.latency = Some(Trigger {
        failure: ms(100),
        recovery: ms(40),
    });
    let mut m = monitor(s, vec![vec![T1], vec![T2]], ms(0));
    assert!(run(&mut m, 0, 5, |_, _| true).is_empty());
    // Uplink 0's round trips grow to 150 ms: down on latency, not on loss.
    let t = run_with_rtt(&mut m, 1500, 5, |u, _| Some(if u == 0 { 150 } else { 10 }));
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (t[0].1.uplink, t[0].1.up, t[0].1.cause),
        (0, false, Cause::Latency)
    );
    assert!(
        t[0].1.reason.contains("failure threshold is 100 ms"),
        "{}",
        t[0].1.reason
    );
    // The mean of the last three rounds (10, 150, 150 ms) passes 100 ms when
    // the round sent at 1800 ms is judged, 280 ms later.
    assert_eq!(t[0].0, 2080);
    assert_eq!(m.report(0).cause, Some(Cause::Latency));
    // 60 ms: under the failure threshold but over the recovery one: stays down.
    assert!(run_with_rtt(&mut m, 3000, 12, |_, _| Some(60)).is_empty());
    assert_eq!(m.report(0).cause, Some(Cause::Latency));
    // 10 ms: back as soon as the last up_after (2) rounds' mean (60 and 10 ms)
    // is under 40 ms, when the first 10-ms round is judged.
    let t = run_with_rtt(&mut m, 6600, 4, |_, _| Some(10));
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].1.up);
    assert_eq!(t[0].0, 6600 + 280);
    assert_eq!(m.report(0).cause, None);
}

#[test]
fn loss_trigger_goes_down_before_down_after_and_recovers_under_its_threshold() {
    let mut s = settings();
    s.down_after = 5;
    s.loss = Some(Trigger {
        failure: 30,
        recovery: 10,
    });
    let mut m = monitor(s, vec![vec![T1], vec![T2]], ms(0));
    // Every other round of uplink 0 is lost: never 5 in a row, but 50% loss.
    let odd = std::cell::Cell::new(0u32);
    let t = run(&mut m, 0, 8, |u, _| {
        if u != 0 {
            return true;
        }
        odd.set(odd.get() + 1);
        odd.get() % 2 == 0
    });
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!((t[0].1.up, t[0].1.cause), (false, Cause::Loss));
    // Clean again: up_after (2) good rounds are not enough while the recent
    // rounds still hold over 10% loss; back once they do not.
    let t = run(&mut m, 2400, 2, |_, _| true);
    assert!(t.is_empty(), "{t:?}");
    let t = run(&mut m, 3000, 10, |_, _| true);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].1.up);
    assert!(m.report(0).loss <= 0.1);
}

#[test]
fn initial_state_down_waits_for_up_after_good_rounds() {
    let mut s = settings();
    s.initial_up = false;
    let mut m = monitor(s, vec![vec![T1], vec![]], ms(0));
    assert!(!m.is_up(0));
    assert!(m.is_up(1), "an uplink without probes is judged by its link");
    assert_eq!(m.report(0).cause, Some(Cause::Initial));
    let t = run(&mut m, 0, 4, |_, _| true);
    assert_eq!(t.len(), 1);
    // Rounds at 0 and 300 ms, judged 250 ms after each.
    assert_eq!((t[0].0, t[0].1.up), (550, true));
    // Down until proven: probes that never answer keep it down, for that reason.
    let mut m = monitor(s, vec![vec![T1]], ms(0));
    assert!(run(&mut m, 0, 4, |_, _| false).is_empty());
    assert_eq!(m.report(0).cause, Some(Cause::Probes));
}

#[test]
fn probe_kinds_are_matched_by_their_own_answers() {
    let tcp = ProbeTarget::Tcp("198.18.11.2:443".parse().unwrap());
    let dns = ProbeTarget::Dns {
        server: A1,
        name: "example.com".into(),
    };
    let mut s = settings();
    s.reliability = 2;
    let mut m = monitor(s, vec![vec![tcp.clone(), dns]], ms(0));
    let (probes, _) = m.tick(ms(0));
    assert_eq!(probes.len(), 2);
    let seq = probes[0].seq;
    // An echo reply from the same address answers neither.
    m.reply(0, Answer::Icmp(A1), seq, ms(5));
    m.reply(
        0,
        Answer::Tcp("198.18.11.2:80".parse().unwrap()),
        seq,
        ms(5),
    );
    m.tick(ms(260));
    assert_eq!(m.report(0).loss, 1.0);
    let (probes, _) = m.tick(ms(300));
    for p in &probes {
        m.reply(0, answer(&p.target), p.seq, ms(310));
    }
    m.tick(ms(560));
    assert_eq!(
        m.report(0).loss,
        0.5,
        "the second round was answered in full"
    );
}

/// The core's counters of two uplinks on one worker.
#[derive(Default)]
struct Core {
    lanes: Vec<Vec<SynCounts>>,
}

impl Core {
    fn new() -> Core {
        Core {
            lanes: vec![vec![SynCounts::default(); 2]],
        }
    }

    fn syn(&mut self, uplink: usize, dst: u32) {
        let c = &mut self.lanes[0][uplink];
        c.recent[c.syns as usize % crate::router::RECENT_SYNS] = dst;
        c.syns += 1;
    }

    fn answer(&mut self, uplink: usize) {
        self.lanes[0][uplink].answers += 1;
    }
}

/// Drives traffic and probes: every 20 ms each uplink opens a connection to
/// destination `n % dests`; `answered(uplink, dst)` says whether its SYN is
/// answered (next tick); `probe_ok(uplink)` whether its probes are. Returns
/// the transitions, with their times.
fn traffic_run(
    m: &mut Monitor,
    until: u64,
    dests: u32,
    answered: impl Fn(usize, u32) -> bool,
    probe_ok: impl Fn(UplinkId) -> bool,
) -> Vec<(u64, Transition)> {
    let mut core = Core::new();
    let mut tracker = TrafficTracker::new(2);
    let mut out = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    let mut n = 0;
    let mut t = 0;
    while t < until {
        for uplink in pending.drain(..) {
            core.answer(uplink);
        }
        if t % 20 == 0 {
            for uplink in 0..2 {
                let dst = n % dests;
                n += 1;
                core.syn(uplink, dst);
                if answered(uplink, dst) {
                    pending.push(uplink);
                }
            }
        }
        let up = [m.is_up(0), m.is_up(1)];
        let evidence = tracker.sample(&core.lanes, &up, ms(t));
        m.traffic(&evidence, ms(t));
        let (probes, transitions) = m.tick(ms(t));
        out.extend(transitions.into_iter().map(|tr| (t, tr)));
        for p in probes {
            if probe_ok(p.uplink) {
                m.reply(p.uplink, answer(&p.target), p.seq, ms(t + 1));
            }
        }
        t += 5;
    }
    out
}

fn default_settings() -> Settings {
    Settings {
        interval: ms(500),
        timeout: ms(1000),
        down_after: 3,
        up_after: 3,
        reliability: 1,
        loss: None,
        latency: None,
        initial_up: true,
    }
}

#[test]
fn traffic_evidence_and_a_failed_burst_take_a_dead_uplink_down_in_half_a_second() {
    let mut m = monitor(default_settings(), vec![vec![T1], vec![T2]], ms(0));
    // Uplink 0's upstream is dead from the start: its SYNs and probes go unanswered.
    let dead = |u: usize| u == 0;
    let t = traffic_run(&mut m, 1600, 8, |u, _| !dead(u), |u| !dead(usize::from(u)));
    assert_eq!(t.len(), 1, "{t:?}");
    let (at, tr) = &t[0];
    assert_eq!((tr.uplink, tr.up, tr.cause), (0, false, Cause::Traffic));
    assert!(
        tr.reason.contains("burst probes unanswered"),
        "{}",
        tr.reason
    );
    // Without traffic, three failed rounds of 500 ms and a 1 s timeout: 2 s.
    assert!(*at <= 500, "down at {at} ms");
}

#[test]
fn no_false_positive_from_one_dead_destination_or_a_live_uplink() {
    // One remote host (destination 3) never answers, on either uplink: the
    // other destinations' answers keep both uplinks' evidence clean.
    let mut m = monitor(default_settings(), vec![vec![T1], vec![T2]], ms(0));
    assert!(traffic_run(&mut m, 3000, 8, |_, d| d != 3, |_| true).is_empty());
    // Every connection of uplink 0 goes to dead hosts (many of them), yet
    // its probes answer: the burst clears it.
    let mut m = monitor(default_settings(), vec![vec![T1], vec![T2]], ms(0));
    assert!(traffic_run(&mut m, 3000, 8, |u, _| u != 0, |_| true).is_empty());
    assert!(m.is_up(0));
    // Unanswered SYNs to two destinations only are no evidence: no burst,
    // even with probes that fail (the rounds decide, after 2 s).
    let mut m = monitor(default_settings(), vec![vec![T1], vec![T2]], ms(0));
    let t = traffic_run(&mut m, 1900, 2, |u, _| u != 0, |u| u != 0);
    assert!(t.is_empty(), "{t:?}");
}

/// A dual-stack configuration: isp1 probes both families, isp2 IPv6 alone,
/// isp3 IPv4 alone.
fn dual() -> Config {
    let wans: String = [
        r#"["198.18.11.2", "tcp://[2001:db8::1]:443"]"#,
        r#""2001:db8::1""#,
        r#""198.18.12.2""#,
    ]
    .iter()
    .zip(1..)
    .map(|(probe, n)| {
        format!(
            "[[wan]]\nname = \"isp{n}\"\ninterface = \"wan{n}\"\naddress = \"198.18.{n}.2\"\n\
             gateway = \"198.18.{n}.1\"\naddress6 = \"2001:db8:{n}::2\"\ngateway6 = \"fe80::1\"\n\
             probe = {probe}\n"
        )
    })
    .collect();
    let text = format!(
        "[lan]\ninterface = \"lan0\"\nnetworks = [\"192.168.50.0/24\", \"fd00:50::/64\"]\n{wans}\
         [health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\n"
    );
    Config::from_toml(&text, std::path::Path::new("xwan.toml")).unwrap()
}

#[test]
fn each_family_is_judged_by_its_own_targets_or_follows_the_other() {
    let config = dual();
    let targets = |setups: Vec<Setup>| -> Vec<Vec<String>> {
        setups
            .iter()
            .map(|s| s.targets.iter().map(ToString::to_string).collect())
            .collect()
    };
    // The uplink's own verdict: IPv4 targets, else the IPv6 ones.
    assert_eq!(
        targets(Setup::all(&config, &[])),
        [
            vec!["198.18.11.2"],
            vec!["2001:db8::1"],
            vec!["198.18.12.2"]
        ]
    );
    // IPv6 apart only where both families have targets.
    assert_eq!(
        targets(Setup::all6(&config, &[])),
        [vec!["tcp://[2001:db8::1]:443"], vec![], vec![]]
    );
    assert_eq!(
        targets(Setup::all6(&config, &[true, false, false])),
        [Vec::<String>::new(), vec![], vec![]]
    );
    let apart: Vec<bool> = config.wans.iter().map(judged_apart6).collect();
    assert_eq!(apart, [true, false, false]);
    let by6: Vec<bool> = config.wans.iter().map(judged_by6).collect();
    assert_eq!(by6, [false, true, false]);

    // The IPv6 monitor judges isp1's IPv6 target alone, its transitions
    // marked as IPv6; an IPv6 answer means nothing to the IPv4 monitor.
    let mut v6 = Monitor::new6(Setup::all6(&config, &[]), ms(0));
    let mut v4 = Monitor::new(Setup::all(&config, &[]), ms(0));
    assert!(v6.probes(0) && !v6.probes(1) && v4.probes(0));
    let transitions = run(&mut v6, 0, 4, |_, _| false);
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let (_, down) = &transitions[0];
    assert!(down.ipv6 && !down.up && down.uplink == 0, "{down:?}");
    assert!(!v6.is_up(0));
    let target: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let (probes, _) = v4.tick(ms(0));
    let seq = probes[0].seq;
    v4.reply(0, Answer::Tcp(target), seq, ms(10));
    let transitions = run(&mut v4, 0, 4, |_, t| t.is_ipv6());
    assert!(
        transitions
            .iter()
            .any(|(_, t)| t.uplink == 0 && !t.up && !t.ipv6),
        "IPv4 down on its own targets: {transitions:?}"
    );
    assert!(v4.is_up(1), "isp2's IPv6 target answers for the uplink");
}

//! The health thread: sends the probes [`crate::health::Monitor`] asks for,
//! feeds it the replies, the link and gateway state and the core's TCP
//! evidence (every [`TICK`], so a stalled uplink is burst-probed within
//! milliseconds), and applies every
//! change of an uplink's state to the router core: new flows stop (or start)
//! going to it, and the flows pinned to an uplink that went down are failed
//! over (TCP clients get an RST, sent out the LAN interface; UDP and ICMP
//! flows are re-mapped on their next packet). Each change is logged, runs
//! the uplink's hook and is published to `xwan events`. After a reload the
//! thread takes the new probe targets (opening or closing probe sockets) on
//! its next round.
//!
//! Two monitors judge: one the uplinks as a whole (by their IPv4 targets,
//! or their IPv6 ones when they have no IPv4 ones), one the IPv6 sides of
//! the uplinks with targets of both families ([`judged_apart6`]). Such an
//! uplink's IPv4 transitions touch IPv4 alone, and its IPv6 transitions
//! IPv6 alone (the uplink monitor keeps the others' IPv6 in line with their
//! one verdict).

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::fast_path::FastPath;
use super::kernel_uplinks::KernelUplinks;
use super::loaded_config::LoadedConfig;
use crate::config::{Config, ProbeTarget, UplinkId, Wan};
use crate::control::{Event, EventBus};
use crate::health::{
    judged_apart6, judged_by6, AdminState, Cause, HealthReport, Monitor, Setup, TrafficTracker,
    Transition,
};
use crate::io::probe::{probe_id, FrameSocket, Origin, ProbeSocket};
use crate::io::sync;
use crate::io::system::Link;
use crate::router::Router;

/// How often the thread wakes up.
const TICK: Duration = Duration::from_millis(5);

/// How long an uplink without probes may wait for its gateway's MAC at start.
const GATEWAY_GRACE: Duration = Duration::from_secs(3);

/// How long a hook may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The monitors, shared with the control socket and the uplink monitor.
pub type SharedMonitor = Arc<Mutex<Monitors>>;

/// New monitors for `config`: every uplink in its initial state, probing
/// its targets.
pub fn monitor(config: &Config, epoch: Instant) -> SharedMonitor {
    Arc::new(Mutex::new(Monitors::new(config, epoch.elapsed())))
}

/// The uplinks' health: each uplink's own verdict ([`Setup::all`]) and,
/// apart, the IPv6 sides of the uplinks with targets of both families
/// ([`Setup::all6`]).
pub struct Monitors {
    pub v4: Monitor,
    pub v6: Monitor,
}

impl Monitors {
    pub fn new(config: &Config, now: Duration) -> Monitors {
        Monitors {
            v4: Monitor::new(Setup::all(config, &[]), now),
            v6: Monitor::new6(Setup::all6(config, &[]), now),
        }
    }

    /// Whether the uplink is up (for IPv4, and for IPv6 unless judged apart).
    pub fn is_up(&self, uplink: UplinkId) -> bool {
        self.v4.is_up(uplink)
    }

    /// The IPv6 monitor's verdict on an uplink whose IPv6 side it judges;
    /// None for the others (their IPv6 follows [`Monitors::is_up`]).
    pub fn verdict6(&self, uplink: UplinkId) -> Option<bool> {
        self.v6.probes(uplink).then(|| self.v6.is_up(uplink))
    }

    pub fn report(&self, uplink: UplinkId) -> HealthReport {
        self.v4.report(uplink)
    }

    /// Why the uplink's IPv6 side is down, where the IPv6 monitor judges it.
    pub fn cause6(&self, uplink: UplinkId) -> Option<Cause> {
        self.v6
            .probes(uplink)
            .then(|| self.v6.report(uplink).cause)
            .flatten()
    }

    /// An operator's override, of both families.
    pub fn set_admin(
        &mut self,
        uplink: UplinkId,
        admin: AdminState,
        now: Duration,
    ) -> Vec<Transition> {
        let v6 = self.v6.set_admin(uplink, admin, now);
        let v6 = v6.filter(|_| self.v6.probes(uplink));
        self.v4
            .set_admin(uplink, admin, now)
            .into_iter()
            .chain(v6)
            .collect()
    }

    /// New settings and targets from a reloaded configuration (`removed`:
    /// the uplinks a reload took out).
    pub fn reconfigure(
        &mut self,
        config: &Config,
        removed: &[bool],
        now: Duration,
    ) -> Vec<Transition> {
        let mut transitions = self.v4.reconfigure(Setup::all(config, removed), now);
        transitions.extend(self.v6.reconfigure(Setup::all6(config, removed), now));
        transitions
    }
}

struct Prober {
    socket: Option<ProbeSocket>,
    /// The targets `socket` was opened for (of both families).
    targets: Vec<ProbeTarget>,
    interface: String,
    ifindex: u32,
    /// The uplink's MAC.
    mac: [u8; 6],
    /// The uplink's IPv4 address (its IPv6 one is read from the running
    /// configuration as a probe goes).
    src: Ipv4Addr,
    /// The echo identifier and source port of its probes.
    id: u16,
}

/// Everything the health thread needs.
pub struct HealthThread {
    router: Arc<Router>,
    monitor: SharedMonitor,
    config: Arc<LoadedConfig>,
    /// The configuration generation the probers were made for.
    generation: u64,
    probers: Vec<Prober>,
    changes: Arc<StateChanges>,
    /// Each uplink's link, address and gateway, from the event monitor.
    kernel: Arc<KernelUplinks>,
    /// The core's TCP evidence over IPv4, and apart over IPv6.
    traffic: TrafficTracker,
    traffic6: TrafficTracker,
    epoch: Instant,
}

/// Applies uplink state changes to the router: used by the health thread, the
/// control socket's overrides and reloads.
pub struct StateChanges {
    router: Arc<Router>,
    config: Arc<LoadedConfig>,
    /// Sends failover RSTs on the LAN interface; None if it could not be opened.
    lan: Option<FrameSocket>,
    /// Where `xwan events` subscribers listen.
    pub events: EventBus,
    /// Synced before a failover (the RSTs' sequence numbers) and after it.
    fast_path: Arc<FastPath>,
}

impl StateChanges {
    /// Opens the LAN socket for the RSTs (a failure is logged: failovers then
    /// only remove the flows, and TCP clients wait for their own timeouts).
    pub fn new(
        router: Arc<Router>,
        config: Arc<LoadedConfig>,
        lan: &Link,
        fast_path: Arc<FastPath>,
    ) -> StateChanges {
        let lan = match FrameSocket::open(lan.ifindex) {
            Ok(socket) => Some(socket),
            Err(e) => {
                warn!(interface = %lan.name, error = %e, "cannot open a socket to send failover RSTs on the LAN");
                None
            }
        };
        StateChanges {
            router,
            config,
            lan,
            events: EventBus::default(),
            fast_path,
        }
    }

    /// Applies a transition to the router (failing over an uplink that went
    /// down, its RSTs sent to the LAN hosts), logs it, runs the hook and
    /// publishes it to `xwan events`. A transition of the IPv6 monitor
    /// touches IPv6 alone; one of an uplink whose IPv6 side is judged apart
    /// ([`judged_apart6`]), IPv4 alone; any other, both families.
    pub fn apply(&self, transition: &Transition) {
        let running = self.config.running();
        let Some(wan) = running.config.wans.get(usize::from(transition.uplink)) else {
            return;
        };
        let family = if transition.ipv6 {
            self.apply6(wan, transition);
            Some("ipv6")
        } else if judged_apart6(wan) {
            self.apply4(wan, transition, true);
            Some("ipv4")
        } else {
            self.apply4(wan, transition, false);
            None
        };
        let event = Event {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            uplink: wan.name.clone(),
            interface: wan.interface.clone(),
            state: if transition.up { "up" } else { "down" }.to_string(),
            cause: transition.cause,
            reason: transition.reason.clone(),
            family: family.map(str::to_string),
        };
        if let Some(hook) = &wan.health.hook {
            run_hook(hook, &event);
        }
        self.events.publish(&event);
    }

    /// The uplink (IPv4 alone with `alone`) in or out of service.
    fn apply4(&self, wan: &Wan, transition: &Transition, alone: bool) {
        let (uplink, name) = (transition.uplink, wan.name.as_str());
        let family = if alone { "ipv4" } else { "both" };
        if alone {
            self.router.set_uplink_up4(uplink, transition.up);
        } else {
            self.router.set_uplink_up(uplink, transition.up);
        }
        if transition.up {
            info!(uplink = %name, family, reason = %transition.reason, "uplink up");
            return;
        }
        self.fast_path.sync(&self.router);
        let failed = if alone {
            self.router.fail_over4(uplink)
        } else {
            self.router.fail_over(uplink)
        };
        self.fast_path.sync(&self.router);
        let sent = self.send_resets(&failed.resets);
        warn!(
            uplink = %name,
            family,
            reason = %transition.reason,
            tcp_reset = failed.reset,
            rst_sent = sent,
            remapped = failed.remapped,
            forwards_dropped = failed.forwards,
            "uplink down"
        );
    }

    /// The uplink's IPv6 side in or out of service (the uplink monitor
    /// takes it out again within a wake if that side does not resolve).
    fn apply6(&self, wan: &Wan, transition: &Transition) {
        let (uplink, name) = (transition.uplink, wan.name.as_str());
        self.router.set_uplink_up6(uplink, transition.up);
        if transition.up {
            info!(uplink = %name, reason = %transition.reason, "IPv6 up");
            return;
        }
        // Marked down for IPv6: the sync takes its IPv6 flows off the fast
        // path (their final counters read) before their RSTs are built.
        self.fast_path.sync(&self.router);
        let failed = self.router.fail_over6(uplink);
        self.fast_path.sync(&self.router);
        let sent = self.send_resets(&failed.resets);
        warn!(
            uplink = %name,
            reason = %transition.reason,
            tcp_reset = failed.reset,
            rst_sent = sent,
            remapped = failed.remapped,
            "IPv6 down"
        );
    }

    /// Sends frames out the LAN interface; returns how many went.
    pub fn send_resets(&self, frames: &[Vec<u8>]) -> usize {
        let Some(lan) = &self.lan else {
            return 0;
        };
        let mut sent = 0;
        for frame in frames {
            match lan.send(frame) {
                Ok(()) => sent += 1,
                Err(e) => tracing::debug!(
                    interface = %self.config.running().config.lan.interface,
                    error = %e,
                    "RST not sent"
                ),
            }
        }
        sent
    }
}

/// Runs `hook` through `sh -c` with XWAN_UPLINK, XWAN_STATE (up or down),
/// XWAN_CAUSE (one word: probes, loss, latency, traffic, link, admin,
/// initial, reload), XWAN_REASON (in words), XWAN_INTERFACE and, for a
/// change of one family alone, XWAN_FAMILY (ipv4 or ipv6) set, in a thread
/// of its own; it is killed after [`HOOK_TIMEOUT`].
fn run_hook(hook: &str, event: &Event) {
    let mut command = Command::new("sh");
    if let Some(family) = &event.family {
        command.env("XWAN_FAMILY", family);
    }
    let spawned = command
        .arg("-c")
        .arg(hook)
        .env("XWAN_UPLINK", &event.uplink)
        .env("XWAN_STATE", &event.state)
        .env("XWAN_CAUSE", event.cause.as_str())
        .env("XWAN_REASON", &event.reason)
        .env("XWAN_INTERFACE", &event.interface)
        .stdin(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            warn!(uplink = %event.uplink, %hook, error = %e, "health hook did not start");
            return;
        }
    };
    let (hook, uplink) = (hook.to_string(), event.uplink.clone());
    let _ = std::thread::Builder::new()
        .name("xwan-hook".into())
        .spawn(move || {
            let deadline = Instant::now() + HOOK_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if !status.success() => {
                        warn!(%uplink, %hook, %status, "health hook failed");
                        return;
                    }
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        warn!(
                            %uplink,
                            %hook,
                            "health hook killed after {} s",
                            HOOK_TIMEOUT.as_secs()
                        );
                        return;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Err(_) => return,
                }
            }
        });
}

impl HealthThread {
    pub fn new(
        router: Arc<Router>,
        config: Arc<LoadedConfig>,
        monitor: SharedMonitor,
        changes: Arc<StateChanges>,
        kernel: Arc<KernelUplinks>,
        wans: &[Link],
        epoch: Instant,
    ) -> HealthThread {
        let (running, generation) = config.current();
        let probers = running
            .config
            .wans
            .iter()
            .zip(wans)
            .enumerate()
            .map(|(id, (wan, link))| Prober {
                socket: None,
                targets: Vec::new(),
                interface: wan.interface.clone(),
                ifindex: link.ifindex,
                mac: link.mac,
                src: wan.address,
                id: probe_id(running.config.nat.ports, id as UplinkId),
            })
            .collect();
        let traffic = TrafficTracker::new(running.config.wans.len());
        let traffic6 = TrafficTracker::new(running.config.wans.len());
        let mut thread = HealthThread {
            router,
            monitor,
            config,
            generation,
            probers,
            changes,
            kernel,
            traffic,
            traffic6,
            epoch,
        };
        thread.open_sockets(&running.config, &running.removed);
        thread
    }

    /// Opens the probe sockets of the uplinks that probe (again when their
    /// targets changed), closes the others'; probes go from each uplink's
    /// address as it is now.
    fn open_sockets(&mut self, config: &Config, removed: &[bool]) {
        for ((prober, wan), removed) in self.probers.iter_mut().zip(&config.wans).zip(removed) {
            prober.src = wan.address;
            let probes = !wan.probe.is_empty() && !removed;
            if !probes {
                prober.socket = None;
            } else if prober.socket.is_none() || prober.targets != wan.probe {
                prober.targets = wan.probe.clone();
                match ProbeSocket::open(&prober.interface, prober.ifindex, &wan.probe) {
                    Ok(socket) => prober.socket = Some(socket),
                    Err(e) => {
                        prober.socket = None;
                        warn!(uplink = %wan.name, error = %e, "cannot open probe sockets: its probes will fail");
                    }
                }
            }
        }
    }

    /// Runs until `stop` is set, waking up for every probe reply (so round
    /// trips are timed to the reply) and at least every [`TICK`].
    pub fn run(mut self, stop: &AtomicBool) {
        // The first rounds wait for the gateways (at most GATEWAY_GRACE), so
        // an uplink is not judged on probes that could not be sent yet.
        while !stop.load(Ordering::Relaxed)
            && self.epoch.elapsed() < GATEWAY_GRACE
            && self.unresolved_probing_gateway()
        {
            std::thread::sleep(TICK);
        }
        while !stop.load(Ordering::Relaxed) {
            let (running, generation) = self.config.current();
            if generation != self.generation {
                self.generation = generation;
                self.open_sockets(&running.config, &running.removed);
            }
            self.round();
            let sockets: Vec<&ProbeSocket> = self
                .probers
                .iter()
                .filter_map(|p| p.socket.as_ref())
                .collect();
            ProbeSocket::wait(&sockets, TICK);
        }
    }

    /// Whether an uplink with probes still waits for its gateway's MAC.
    fn unresolved_probing_gateway(&self) -> bool {
        let stats = self.router.stats();
        self.probers
            .iter()
            .zip(&stats.uplinks)
            .any(|(p, u)| p.socket.is_some() && u.gateway_mac.is_none())
    }

    fn round(&mut self) {
        let now = self.epoch.elapsed();
        let stats = self.router.stats();
        let running = self.config.running();
        let wans = &running.config.wans;
        let mut transitions = Vec::new();
        let mut resets = Vec::new();
        let up: Vec<bool> = stats.uplinks.iter().map(|u| u.up).collect();
        let evidence = self.traffic.sample(&self.router.syn_counts(), &up, now);
        let up6: Vec<bool> = stats
            .uplinks
            .iter()
            .map(|u| u.ipv6.as_ref().is_some_and(|v6| v6.up))
            .collect();
        let evidence6 = self.traffic6.sample(&self.router.syn_counts6(), &up6, now);
        let probes = {
            let mut monitors = sync::lock(&self.monitor);
            let Monitors { v4, v6 } = &mut *monitors;
            v4.traffic(&evidence, now);
            // Unanswered IPv6 SYNs start a burst by the monitor that judges
            // the uplink's IPv6 side: the IPv6 one where the uplink has IPv6
            // targets, else the uplink's own (its IPv6 follows that verdict).
            let (apart, along): (Vec<_>, Vec<_>) = evidence6
                .iter()
                .enumerate()
                .map(|(id, e)| match v6.probes(id as UplinkId) {
                    true => (*e, None),
                    false => (None, *e),
                })
                .unzip();
            v6.traffic(&apart, now);
            v4.traffic(&along, now);
            for (id, prober) in self.probers.iter().enumerate() {
                let uplink = id as UplinkId;
                // An uplink with probes is judged by them (an unresolved gateway
                // fails its rounds); one without is up while its link is up and,
                // after a grace period to resolve it at start, its gateway resolves.
                let gateway_ok = prober.socket.is_some()
                    || now < GATEWAY_GRACE
                    || stats.uplinks[id].gateway_mac.is_some();
                let ok = self.kernel.usable(id) && gateway_ok;
                let wan = wans.get(id);
                let fault6 = |wan| self.fault6(id, wan, gateway_mac6(&stats, id), now);
                // An uplink judged by IPv6 targets alone needs its IPv6 side
                // to send them.
                let fault = match wan {
                    _ if !ok => Some("link down or gateway unresolved"),
                    Some(wan) if judged_by6(wan) => fault6(wan),
                    _ => None,
                };
                transitions.extend(v4.set_link_because(uplink, fault, now));
                if let (true, Some(wan)) = (v6.probes(uplink), wan) {
                    transitions.extend(v6.set_link_because(uplink, fault6(wan), now));
                }
                if let Some(socket) = &prober.socket {
                    for reply in socket.recv() {
                        if reply.id != prober.id {
                            continue;
                        }
                        // Each monitor takes the answers of its own targets.
                        v4.reply(uplink, reply.answer, reply.seq, now);
                        v6.reply(uplink, reply.answer, reply.seq, now);
                        if let (Some(ack), crate::health::Answer::Tcp(from)) =
                            (reply.syn_ack, reply.answer)
                        {
                            resets.push((id, from, ack));
                        }
                    }
                }
            }
            let (mut probes, judged) = v4.tick(now);
            transitions.extend(judged);
            let (probes6, judged6) = v6.tick(now);
            probes.extend(probes6);
            transitions.extend(judged6);
            probes
        };
        let frames = probes
            .iter()
            .map(|p| (usize::from(p.uplink), Some(p), None))
            .chain(
                resets
                    .into_iter()
                    .map(|(id, from, ack)| (id, None, Some((from, ack)))),
            );
        for (id, probe, reset) in frames {
            let prober = &self.probers[id];
            let to = match (probe, reset) {
                (Some(probe), _) => probe.target.addr(),
                (None, Some((from, _))) => from.ip(),
                (None, None) => continue,
            };
            let (Some(socket), Some(origin)) = (
                &prober.socket,
                origin(prober, id, to.is_ipv6(), &stats, wans.get(id)),
            ) else {
                continue;
            };
            let frame = match (probe, reset) {
                (Some(probe), _) => origin.probe_frame(&probe.target, probe.seq),
                (None, Some((from, ack))) => origin.reset_frame(from, ack),
                (None, None) => None,
            };
            let Some(frame) = frame else { continue };
            if let Err(e) = socket.send(&frame) {
                tracing::debug!(interface = %prober.interface, error = %e, "probe not sent");
            }
        }
        for transition in &transitions {
            self.changes.apply(transition);
        }
    }

    /// What keeps an uplink's IPv6 probes from going out (its IPv6 side is
    /// then down, with these words), if anything: the link, no IPv6
    /// address to send from, an unresolved IPv6 side, or (after
    /// [`GATEWAY_GRACE`] at start) no MAC for the IPv6 gateway.
    fn fault6(
        &self,
        id: usize,
        wan: &Wan,
        gateway_mac: Option<[u8; 6]>,
        now: Duration,
    ) -> Option<&'static str> {
        if !self.kernel.usable(id) {
            Some("link down")
        } else if address6(wan).is_none() {
            Some("no IPv6 address to send probes from (address6)")
        } else if !self.kernel.usable6(id) {
            Some("IPv6 side unresolved (gateway6, or the prefix nat6 needs)")
        } else if gateway_mac.is_none() && now >= GATEWAY_GRACE {
            Some("IPv6 gateway unresolved")
        } else {
            None
        }
    }
}

/// An uplink's IPv6 address as the running configuration has it now, if known.
fn address6(wan: &Wan) -> Option<std::net::Ipv6Addr> {
    wan.ipv6
        .as_ref()
        .map(|v6| v6.address)
        .filter(|a| !a.is_unspecified())
}

/// The MAC of an uplink's IPv6 gateway, as the core has it.
fn gateway_mac6(stats: &crate::router::Stats, id: usize) -> Option<[u8; 6]> {
    stats.uplinks.get(id)?.ipv6.as_ref()?.gateway_mac
}

/// Where uplink `id`'s probes of one family go from: its address of that
/// family and its gateway's MAC of that family (None while either is
/// unknown: the probe is not sent, and its round fails).
fn origin(
    prober: &Prober,
    id: usize,
    ipv6: bool,
    stats: &crate::router::Stats,
    wan: Option<&Wan>,
) -> Option<Origin> {
    let (src, dst_mac) = if ipv6 {
        (IpAddr::V6(address6(wan?)?), gateway_mac6(stats, id)?)
    } else {
        (IpAddr::V4(prober.src), stats.uplinks.get(id)?.gateway_mac?)
    };
    Some(Origin {
        src_mac: prober.mac,
        dst_mac,
        src,
        id: prober.id,
    })
}

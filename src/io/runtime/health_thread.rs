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

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::fast_path::FastPath;
use super::kernel_uplinks::KernelUplinks;
use super::loaded_config::LoadedConfig;
use crate::config::{Config, ProbeTarget, UplinkId};
use crate::control::{Event, EventBus};
use crate::health::{Monitor, Setup, TrafficTracker, Transition};
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

/// The monitor, shared with the control socket.
pub type SharedMonitor = Arc<Mutex<Monitor>>;

/// A new monitor for `config`: every uplink in its initial state, probing
/// its targets.
pub fn monitor(config: &Config, epoch: Instant) -> SharedMonitor {
    Arc::new(Mutex::new(Monitor::new(
        Setup::all(config, &[]),
        epoch.elapsed(),
    )))
}

struct Prober {
    socket: Option<ProbeSocket>,
    /// The targets `socket` was opened for.
    targets: Vec<ProbeTarget>,
    interface: String,
    ifindex: u32,
    /// The uplink's MAC, address and probe id (the gateway's MAC is filled
    /// in when a probe goes).
    origin: Origin,
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
    traffic: TrafficTracker,
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
    /// publishes it to `xwan events`.
    pub fn apply(&self, transition: &Transition) {
        let running = self.config.running();
        let Some(wan) = running.config.wans.get(usize::from(transition.uplink)) else {
            return;
        };
        let name = wan.name.as_str();
        self.router.set_uplink_up(transition.uplink, transition.up);
        if transition.up {
            info!(uplink = %name, reason = %transition.reason, "uplink up");
        } else {
            self.fast_path.sync(&self.router);
            let failed = self.router.fail_over(transition.uplink);
            self.fast_path.sync(&self.router);
            let sent = self.send_resets(&failed.resets);
            warn!(
                uplink = %name,
                reason = %transition.reason,
                tcp_reset = failed.reset,
                rst_sent = sent,
                remapped = failed.remapped,
                forwards_dropped = failed.forwards,
                "uplink down"
            );
        }
        let event = Event {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            uplink: wan.name.clone(),
            interface: wan.interface.clone(),
            state: if transition.up { "up" } else { "down" }.to_string(),
            cause: transition.cause,
            reason: transition.reason.clone(),
        };
        if let Some(hook) = &wan.health.hook {
            run_hook(hook, &event);
        }
        self.events.publish(&event);
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
/// initial, reload), XWAN_REASON (in words) and XWAN_INTERFACE set, in a
/// thread of its own; it is killed after [`HOOK_TIMEOUT`].
fn run_hook(hook: &str, event: &Event) {
    let spawned = Command::new("sh")
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
                origin: Origin {
                    src_mac: link.mac,
                    dst_mac: [0; 6],
                    src: wan.address,
                    id: probe_id(running.config.nat.ports, id as UplinkId),
                },
            })
            .collect();
        let traffic = TrafficTracker::new(running.config.wans.len());
        let mut thread = HealthThread {
            router,
            monitor,
            config,
            generation,
            probers,
            changes,
            kernel,
            traffic,
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
            prober.origin.src = wan.address;
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
        let mut transitions = Vec::new();
        let mut resets = Vec::new();
        let up: Vec<bool> = stats.uplinks.iter().map(|u| u.up).collect();
        let evidence = self.traffic.sample(&self.router.syn_counts(), &up, now);
        let probes = {
            let mut monitor = sync::lock(&self.monitor);
            monitor.traffic(&evidence, now);
            for (id, prober) in self.probers.iter().enumerate() {
                // An uplink with probes is judged by them (an unresolved gateway
                // fails its rounds); one without is up while its link is up and,
                // after a grace period to resolve it at start, its gateway resolves.
                let gateway_ok = prober.socket.is_some()
                    || now < GATEWAY_GRACE
                    || stats.uplinks[id].gateway_mac.is_some();
                let ok = self.kernel.usable(id) && gateway_ok;
                transitions.extend(monitor.set_link(id as UplinkId, ok, now));
                if let Some(socket) = &prober.socket {
                    for reply in socket.recv() {
                        if reply.id != prober.origin.id {
                            continue;
                        }
                        monitor.reply(id as UplinkId, reply.answer, reply.seq, now);
                        if let (Some(ack), crate::health::Answer::Tcp(from)) =
                            (reply.syn_ack, reply.answer)
                        {
                            resets.push((id, from, ack));
                        }
                    }
                }
            }
            let (probes, judged) = monitor.tick(now);
            transitions.extend(judged);
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
            let (Some(socket), Some(gateway)) = (&prober.socket, stats.uplinks[id].gateway_mac)
            else {
                continue;
            };
            let origin = Origin {
                dst_mac: gateway,
                ..prober.origin
            };
            let frame = match (probe, reset) {
                (Some(probe), _) => origin.probe_frame(&probe.target, probe.seq),
                (None, Some((from, ack))) => origin.reset_frame(from, ack),
                (None, None) => continue,
            };
            if let Err(e) = socket.send(&frame) {
                tracing::debug!(interface = %prober.interface, error = %e, "probe not sent");
            }
        }
        for transition in &transitions {
            self.changes.apply(transition);
        }
    }
}

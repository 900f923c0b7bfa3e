//! The health thread: sends the probes [`crate::health::Monitor`] asks for,
//! feeds it the replies and the link and gateway state, and applies every
//! change of an uplink's state to the router core: new flows stop (or start)
//! going to it, and the flows pinned to an uplink that went down are failed
//! over (TCP clients get an RST, sent out the LAN interface; UDP and ICMP
//! flows are re-mapped on their next packet). Each change is logged and runs
//! the configured hook. After a reload the thread takes the new probe targets
//! (opening or closing probe sockets) on its next round.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::kernel_uplinks::KernelUplinks;
use super::loaded_config::LoadedConfig;
use crate::config::{Config, UplinkId};
use crate::health::{Monitor, Settings, Transition};
use crate::io::probe::{echo_frame, probe_id, FrameSocket, ProbeSocket};
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

/// A new monitor for `config`: every uplink up, probing its targets.
pub fn monitor(config: &Config, epoch: Instant) -> SharedMonitor {
    Arc::new(Mutex::new(Monitor::new(
        Settings::from_config(config),
        config.wans.iter().map(|w| w.probe.clone()).collect(),
        epoch.elapsed(),
    )))
}

struct Prober {
    socket: Option<ProbeSocket>,
    interface: String,
    ifindex: u32,
    mac: [u8; 6],
    address: Ipv4Addr,
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
    epoch: Instant,
}

/// Applies uplink state changes to the router: used by the health thread, the
/// control socket's overrides and reloads.
pub struct StateChanges {
    router: Arc<Router>,
    config: Arc<LoadedConfig>,
    /// Sends failover RSTs on the LAN interface; None if it could not be opened.
    lan: Option<FrameSocket>,
}

impl StateChanges {
    /// Opens the LAN socket for the RSTs (a failure is logged: failovers then
    /// only remove the flows, and TCP clients wait for their own timeouts).
    pub fn new(router: Arc<Router>, config: Arc<LoadedConfig>, lan: &Link) -> StateChanges {
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
        }
    }

    /// Applies a transition to the router (failing over an uplink that went
    /// down, its RSTs sent to the LAN hosts), logs it and runs the hook.
    pub fn apply(&self, transition: &Transition) {
        let running = self.config.running();
        let name = running
            .config
            .wans
            .get(usize::from(transition.uplink))
            .map_or("?", |w| w.name.as_str());
        self.router.set_uplink_up(transition.uplink, transition.up);
        if transition.up {
            info!(uplink = %name, reason = %transition.reason, "uplink up");
        } else {
            let failed = self.router.fail_over(transition.uplink);
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
        if let Some(hook) = &running.config.health.hook {
            run_hook(hook, name, transition.up);
        }
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

/// Runs `hook` through `sh -c` with XWAN_UPLINK and XWAN_STATE set, in a
/// thread of its own; it is killed after [`HOOK_TIMEOUT`].
fn run_hook(hook: &str, uplink: &str, up: bool) {
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(hook)
        .env("XWAN_UPLINK", uplink)
        .env("XWAN_STATE", if up { "up" } else { "down" })
        .stdin(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            warn!(%uplink, %hook, error = %e, "health hook did not start");
            return;
        }
    };
    let (hook, uplink) = (hook.to_string(), uplink.to_string());
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
                interface: wan.interface.clone(),
                ifindex: link.ifindex,
                mac: link.mac,
                address: wan.address,
                id: probe_id(running.config.nat.ports, id as UplinkId),
            })
            .collect();
        let mut thread = HealthThread {
            router,
            monitor,
            config,
            generation,
            probers,
            changes,
            kernel,
            epoch,
        };
        thread.open_sockets(&running.config, &running.removed);
        thread
    }

    /// Opens the probe sockets of the uplinks that probe, closes the others';
    /// probes go from each uplink's address as it is now.
    fn open_sockets(&mut self, config: &Config, removed: &[bool]) {
        for ((prober, wan), removed) in self.probers.iter_mut().zip(&config.wans).zip(removed) {
            prober.address = wan.address;
            let probes = !wan.probe.is_empty() && !removed;
            if !probes {
                prober.socket = None;
            } else if prober.socket.is_none() {
                match ProbeSocket::open(&prober.interface, prober.ifindex) {
                    Ok(socket) => prober.socket = Some(socket),
                    Err(e) => {
                        warn!(uplink = %wan.name, error = %e, "cannot open probe sockets: its probes will fail");
                    }
                }
            }
        }
    }

    /// Runs until `stop` is set, waking up for every probe reply (so round
    /// trips are timed to the reply) and at least every [`TICK`].
    pub fn run(mut self, stop: &AtomicBool) {
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

    fn round(&self) {
        let now = self.epoch.elapsed();
        let stats = self.router.stats();
        let mut transitions = Vec::new();
        let probes = {
            let mut monitor = sync::lock(&self.monitor);
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
                    while let Some(reply) = socket.recv() {
                        if reply.id == prober.id {
                            monitor.reply(id as UplinkId, reply.from, reply.seq, now);
                        }
                    }
                }
            }
            let (probes, judged) = monitor.tick(now);
            transitions.extend(judged);
            probes
        };
        for probe in probes {
            let prober = &self.probers[usize::from(probe.uplink)];
            let (Some(socket), Some(gateway)) = (
                &prober.socket,
                stats.uplinks[usize::from(probe.uplink)].gateway_mac,
            ) else {
                continue;
            };
            let frame = echo_frame(
                prober.mac,
                gateway,
                prober.address,
                probe.target,
                prober.id,
                probe.seq,
            );
            if let Err(e) = socket.send(&frame) {
                tracing::debug!(interface = %prober.interface, error = %e, "probe not sent");
            }
        }
        for transition in &transitions {
            self.changes.apply(transition);
        }
    }
}

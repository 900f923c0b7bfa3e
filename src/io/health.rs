//! The health thread: sends the probes [`crate::health::Monitor`] asks for,
//! feeds it the replies and the link and gateway state, and applies every
//! change of an uplink's state to the router core: new flows stop (or start)
//! going to it, and the flows pinned to an uplink that went down are failed
//! over (TCP clients get an RST, UDP and ICMP flows are re-mapped on their
//! next packet). Each change is logged and runs the configured hook.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::probe::{echo_frame, probe_id, ProbeSocket};
use super::system::Link;
use crate::config::{Config, UplinkId};
use crate::health::{Monitor, Settings, Transition};
use crate::router::Router;

/// How often the thread wakes up.
const TICK: Duration = Duration::from_millis(5);

/// How long an uplink without probes may wait for its gateway's MAC at start.
const GATEWAY_GRACE: Duration = Duration::from_secs(3);

/// How long a hook may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The monitor, shared with the control socket.
pub type SharedMonitor = Arc<Mutex<Monitor>>;

pub fn lock(monitor: &SharedMonitor) -> MutexGuard<'_, Monitor> {
    monitor
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Prober {
    socket: Option<ProbeSocket>,
    interface: String,
    mac: [u8; 6],
    address: Ipv4Addr,
    id: u16,
}

/// Everything the health thread needs.
pub struct HealthThread {
    router: Arc<Router>,
    monitor: SharedMonitor,
    probers: Vec<Prober>,
    names: Vec<String>,
    hook: Option<String>,
    epoch: Instant,
}

/// Applies a transition to the router, logs it and runs the hook.
pub fn apply(router: &Router, names: &[String], hook: Option<&str>, transition: &Transition) {
    let name = &names[usize::from(transition.uplink)];
    router.set_uplink_up(transition.uplink, transition.up);
    if transition.up {
        info!(uplink = %name, reason = %transition.reason, "uplink up");
    } else {
        let failed = router.fail_over(transition.uplink);
        warn!(
            uplink = %name,
            reason = %transition.reason,
            tcp_reset = failed.reset,
            remapped = failed.remapped,
            forwards_dropped = failed.forwards,
            "uplink down"
        );
    }
    if let Some(hook) = hook {
        run_hook(hook, name, transition.up);
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
            warn!(%hook, error = %e, "health hook did not start");
            return;
        }
    };
    let hook = hook.to_string();
    let _ = std::thread::Builder::new()
        .name("xwan-hook".into())
        .spawn(move || {
            let deadline = Instant::now() + HOOK_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if !status.success() => {
                        warn!(%hook, %status, "health hook failed");
                        return;
                    }
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        warn!(%hook, "health hook killed after {} s", HOOK_TIMEOUT.as_secs());
                        return;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Err(_) => return,
                }
            }
        });
}

/// Up with a carrier, asked of the kernel in this thread's network namespace
/// (`/sys/class/net` shows the namespace that mounted sysfs instead).
fn link_is_up(interface: &str) -> bool {
    super::system::link_is_up(interface)
}

impl HealthThread {
    pub fn new(
        router: Arc<Router>,
        config: &Config,
        wans: &[Link],
        epoch: Instant,
    ) -> (HealthThread, SharedMonitor) {
        let monitor = Arc::new(Mutex::new(Monitor::new(
            Settings::from_config(config),
            config.wans.iter().map(|w| w.probe.clone()).collect(),
            epoch.elapsed(),
        )));
        let probers = config
            .wans
            .iter()
            .zip(wans)
            .enumerate()
            .map(|(id, (wan, link))| {
                let socket = if wan.probe.is_empty() {
                    None
                } else {
                    match ProbeSocket::open(&wan.interface, link.ifindex) {
                        Ok(socket) => Some(socket),
                        Err(e) => {
                            warn!(uplink = %wan.name, error = %e, "cannot open probe sockets: its probes will fail");
                            None
                        }
                    }
                };
                Prober {
                    socket,
                    interface: wan.interface.clone(),
                    mac: link.mac,
                    address: wan.address,
                    id: probe_id(config.nat.ports, id as UplinkId),
                }
            })
            .collect();
        let thread = HealthThread {
            router,
            monitor: Arc::clone(&monitor),
            probers,
            names: config.wans.iter().map(|w| w.name.clone()).collect(),
            hook: config.health.hook.clone(),
            epoch,
        };
        (thread, monitor)
    }

    /// Runs until `stop` is set, waking up for every probe reply (so round
    /// trips are timed to the reply) and at least every [`TICK`].
    pub fn run(self, stop: &AtomicBool) {
        let sockets: Vec<&ProbeSocket> = self
            .probers
            .iter()
            .filter_map(|p| p.socket.as_ref())
            .collect();
        while !stop.load(Ordering::Relaxed) {
            self.round();
            ProbeSocket::wait(&sockets, TICK);
        }
    }

    fn round(&self) {
        let now = self.epoch.elapsed();
        let stats = self.router.stats();
        let mut transitions = Vec::new();
        let probes = {
            let mut monitor = lock(&self.monitor);
            for (id, prober) in self.probers.iter().enumerate() {
                // An uplink with probes is judged by them (an unresolved gateway
                // fails its rounds); one without is up while its link is up and,
                // after a grace period to resolve it at start, its gateway resolves.
                let gateway_ok = prober.socket.is_some()
                    || now < GATEWAY_GRACE
                    || stats.uplinks[id].gateway_mac.is_some();
                let ok = link_is_up(&prober.interface) && gateway_ok;
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
                tracing::debug!(uplink = %self.names[usize::from(probe.uplink)], error = %e, "probe not sent");
            }
        }
        for transition in &transitions {
            apply(&self.router, &self.names, self.hook.as_deref(), transition);
        }
    }
}

//! The running router's answers on the control socket, its reloads
//! (`xwan reload` and SIGHUP) and its metrics.
//!
//! A reload reads and checks the configuration file again. A file that does
//! not load (the error names file, line, column and key) or that changes what
//! only a restart can change ([`crate::config::RunningConfig::reload`] names
//! the key) is refused and the running configuration stays. Otherwise it is
//! applied in this order:
//! 1. the kernel side of the data path: the XDP program's maps of forwarded
//!    ports and bypassed prefixes, or the packet backend's nftables table
//!    (replaced in one transaction); if that fails nothing has changed;
//! 2. the router core ([`Router::reconfigure`]): rules, balancing, stickiness,
//!    forwards, MTUs, timeouts, for new flows at once, while established
//!    flows keep their uplink and mapping; the flows of removed forwards are
//!    closed and their LAN hosts get an RST;
//! 3. health: new probe settings and targets; a removed uplink is taken out
//!    of service the way a failed one is (its TCP clients get an RST, its UDP
//!    and ICMP flows are re-mapped on their next packet); one named again
//!    comes back under the health checks;
//! 4. the housekeeping threads pick up the new configuration (gateways, probe
//!    sockets) from [`LoadedConfig`] on their next round.

use std::net::Ipv4Addr;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::{info, warn};

use super::data_path::{KernelUpdate, WorkerStatsSource};
use super::fast_path::FastPath;
use super::health_thread::{SharedMonitor, StateChanges};
use super::kernel_uplinks::KernelUplinks;
use super::loaded_config::LoadedConfig;
use crate::config::{Config, RunningConfig, UplinkId, Wan6};
use crate::control::metrics::{self, MetricsSource};
use crate::control::page::{History, PageDocument, TOP_FLOWS};
use crate::control::protocol::{
    AdminState, FlowReport, Reply, Request, StatusReport, UplinkControl,
};
use crate::control::{Event, Handler};
use crate::io::features::FeatureLine;
use crate::io::sync;
use crate::router::Router;

/// What [`RuntimeControl`] is made of.
pub struct ControlParts {
    pub router: Arc<Router>,
    pub config: Arc<LoadedConfig>,
    pub monitor: SharedMonitor,
    pub changes: Arc<StateChanges>,
    pub epoch: Instant,
    /// The data path, in words (`xdp (copy)`, `packet`).
    pub io: String,
    pub workers: WorkerStatsSource,
    pub kernel: KernelUpdate,
    /// What "auto" addresses and gateways resolve to now.
    pub uplinks: Arc<KernelUplinks>,
    /// The in-kernel fast path: synced before the flows are shown.
    pub fast_path: Arc<FastPath>,
    /// The kernel features probed at start, one line each.
    pub features: Vec<FeatureLine>,
}

pub struct RuntimeControl {
    parts: ControlParts,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// What the status page draws beyond a status (bounded).
    history: Mutex<History>,
    /// The status of the history's last sample, which the page is served.
    last_status: Mutex<Option<StatusReport>>,
}

impl RuntimeControl {
    pub fn new(parts: ControlParts) -> RuntimeControl {
        RuntimeControl {
            parts,
            reloading: Mutex::new(()),
            history: Mutex::new(History::default()),
            last_status: Mutex::new(None),
        }
    }

    fn uplink_id(&self, running: &RunningConfig, name: &str) -> Result<UplinkId, Reply> {
        running.uplink_id(name).ok_or_else(|| {
            Reply::error(format!(
                "no uplink {name:?} (uplinks: {})",
                running.uplink_names().join(", ")
            ))
        })
    }

    /// Health and override figures of every uplink, by id.
    fn controls(&self, running: &RunningConfig) -> Vec<UplinkControl> {
        let now = self.parts.epoch.elapsed();
        let monitor = sync::lock(&self.parts.monitor);
        (0..running.config.wans.len())
            .map(|id| {
                let report = monitor.report(id as UplinkId);
                UplinkControl {
                    admin: report.admin,
                    cause: report.cause,
                    cause6: monitor.cause6(id as UplinkId),
                    since_s: now.saturating_sub(report.since).as_secs(),
                    rtt_ms: report.rtt_ms,
                    loss: report.loss,
                }
            })
            .collect()
    }

    fn status(&self) -> Reply {
        Reply::Status {
            ok: true,
            status: Box::new(self.status_report()),
        }
    }

    /// The status as `xwan status` shows it, the fast path synced first.
    fn status_report(&self) -> StatusReport {
        self.parts.fast_path.sync(&self.parts.router);
        self.status_now()
    }

    /// The status with the fast path's counters as the sweeper last read
    /// them (at most a second old), for the status page.
    fn status_now(&self) -> StatusReport {
        let running = self.parts.config.running();
        let stats = self.parts.router.stats();
        let controls = self.controls(&running);
        let mut status = StatusReport::new(&running.config, &stats, &controls);
        // Uplinks removed by a reload are out of the picture.
        let mut id = 0;
        status.uplinks.retain(|_| {
            id += 1;
            !running.removed[id - 1]
        });
        status.config_file = self.parts.config.file().display().to_string();
        status.config_age_s = self.parts.config.loaded_at().elapsed().as_secs();
        status.uptime_s = self.parts.epoch.elapsed().as_secs();
        status.io = self.parts.io.clone();
        status.workers = (self.parts.workers)();
        status.offload = self.parts.fast_path.report();
        status.features = self.parts.features.clone();
        status
    }

    /// The uplink events for the status page's history (a subscription of
    /// its own; one that finds every slot taken gets none).
    pub fn subscribe_page(&self) -> Receiver<Event> {
        self.parts
            .changes
            .events
            .subscribe()
            .unwrap_or_else(|| std::sync::mpsc::channel().1)
    }

    /// One second of the status page's history: the status sampled (no
    /// sync of the fast path of its own: the sweeper's is at most a second
    /// old), the uplink events since the last call from `events`, and with
    /// `top_flows` (allowed, and due) the busiest flows among the first
    /// [`TOP_FLOWS_SCANNED`] of the table. The page's requests are served
    /// from this sample, so a client costs the router nothing more.
    pub fn sample_history(&self, events: &Receiver<Event>, top_flows: bool) {
        let status = self.status_now();
        let at_ms = self.parts.epoch.elapsed().as_millis() as u64;
        let flows = top_flows.then(|| self.top_flows());
        let mut history = sync::lock(&self.history);
        history.record(&status, at_ms);
        for event in events.try_iter() {
            history.record_event(event);
        }
        if let Some(flows) = flows {
            history.set_top_flows(flows);
        }
        *sync::lock(&self.last_status) = Some(status);
    }

    /// The [`TOP_FLOWS`] busiest of the first [`TOP_FLOWS_SCANNED`] flows.
    fn top_flows(&self) -> Vec<FlowReport> {
        let running = self.parts.config.running();
        let mut flows =
            self.parts
                .router
                .flows(self.parts.epoch.elapsed(), TOP_FLOWS_SCANNED, |_| true);
        flows.sort_by_key(|f| std::cmp::Reverse(f.bytes[0] + f.bytes[1]));
        flows.truncate(TOP_FLOWS);
        let carried = self.parts.fast_path.carried();
        flows
            .iter()
            .map(|f| flow_report(&running, &carried, f))
            .collect()
    }

    fn flows(&self, uplink: Option<&str>, host: Option<Ipv4Addr>, limit: Option<usize>) -> Reply {
        self.parts.fast_path.sync(&self.parts.router);
        let running = self.parts.config.running();
        let uplink = match uplink
            .map(|name| self.uplink_id(&running, name))
            .transpose()
        {
            Ok(uplink) => uplink,
            Err(reply) => return reply,
        };
        let host = host.map(|h| h.octets());
        // Every flow is looked at, so `total` counts all that match; the
        // first `limit` of them are reported.
        let (limit, total) = (limit.unwrap_or(usize::MAX), std::cell::Cell::new(0usize));
        let flows = self
            .parts
            .router
            .flows(self.parts.epoch.elapsed(), usize::MAX, |spec| {
                let matches = uplink.is_none_or(|u| spec.uplink == u)
                    && host.is_none_or(|h| {
                        spec.inside.addr == h || spec.outside.addr == h || spec.remote.addr == h
                    });
                if matches {
                    total.set(total.get() + 1);
                }
                matches && total.get() <= limit
            });
        // IPv6 flows after (a host filter is an IPv4 address: none match).
        let flows6 = self
            .parts
            .router
            .flows6(self.parts.epoch.elapsed(), usize::MAX, |spec| {
                let matches = uplink.is_none_or(|u| spec.uplink == u) && host.is_none();
                if matches {
                    total.set(total.get() + 1);
                }
                matches && total.get() <= limit
            });
        let carried = self.parts.fast_path.carried();
        let carried6 = self.parts.fast_path.carried6();
        Reply::Flows {
            ok: true,
            total: total.get(),
            flows: flows
                .iter()
                .map(|f| flow_report(&running, &carried, f))
                .chain(flows6.iter().map(|f| flow_report(&running, &carried6, f)))
                .collect(),
        }
    }

    fn uplink(&self, name: &str, state: AdminState) -> Reply {
        let running = self.parts.config.running();
        let id = match self.uplink_id(&running, name) {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let now = self.parts.epoch.elapsed();
        let transitions = sync::lock(&self.parts.monitor).set_admin(id, state, now);
        for transition in &transitions {
            self.parts.changes.apply(transition);
        }
        let up = sync::lock(&self.parts.monitor).is_up(id);
        Reply::done(format!(
            "{name}: {} ({})",
            if up { "up" } else { "down" },
            format!("{state:?}").to_lowercase()
        ))
    }

    /// `xwan prefix6 NAME PREFIX|none`: the prefix an uplink whose
    /// `prefix6 = "auto"` is delegated now. The mappings follow at once
    /// (the core, the kernel side), and the flows of an old prefix fail
    /// over, as for any other "auto" value the kernel changes.
    fn prefix6(&self, name: &str, prefix: Option<&str>) -> Reply {
        let running = self.parts.config.running();
        let id = match self.uplink_id(&running, name) {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let wan = &running.config.wans[usize::from(id)];
        let Some(v6) = wan.ipv6.as_ref().filter(|v6| v6.prefix_auto) else {
            return Reply::error(format!(
                "{name}: its prefix6 is not \"auto\" in the configuration"
            ));
        };
        let prefix = match prefix.map(str::parse::<ipnet::Ipv6Net>).transpose() {
            Ok(prefix) => prefix.map(|p| p.trunc()),
            Err(_) => {
                return Reply::error(format!(
                    "{:?} is not an IPv6 prefix (like 2001:db8:100::/56) nor \"none\"",
                    prefix.unwrap_or_default()
                ))
            }
        };
        if let Some(prefix) = prefix {
            let lan = &running.config.lan.networks6;
            let short = prefix.prefix_len() > 64
                || lan.iter().any(|n| n.prefix_len() < prefix.prefix_len());
            if short && v6.nat != crate::config::Nat6::Masquerade {
                return Reply::error(format!(
                    "{prefix} cannot hold the LAN's IPv6 prefixes ({}): a delegated prefix \
                     must be /64 or shorter, and no longer than any of them",
                    lan.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        self.parts
            .uplinks
            .delegate6(&running.config.wans, &wan.interface, prefix);
        self.follow_kernel();
        Reply::done(match prefix {
            Some(prefix) => format!("{name}: prefix6 {prefix}"),
            None => format!("{name}: no prefix6"),
        })
    }

    /// Reloads the configuration file (see the module documentation); the
    /// outcome, in words, is logged and returned.
    pub fn reload(&self) -> Result<String, String> {
        let outcome = self.try_reload();
        match &outcome {
            Ok(message) => info!("{message}"),
            Err(error) => warn!("reload refused: {error}"),
        }
        outcome
    }

    fn try_reload(&self) -> Result<String, String> {
        let _one = sync::lock(&self.reloading);
        let file = self.parts.config.file().to_path_buf();
        let new = Config::load(&file).map_err(|e| e.to_string())?;
        let mut new = super::discovery::fit_nat_ports(&new).map_err(|e| e.to_string())?;
        self.parts.uplinks.fill(&mut new);
        let running = self.parts.config.running();
        let plan = running.reload(&new, &file).map_err(|e| e.to_string())?;
        let config = &plan.next.config;
        (self.parts.kernel)(config).map_err(|e| {
            format!(
                "{}: the kernel side of the data path refused it: {e} (the running configuration is kept)",
                file.display()
            )
        })?;
        let fast_path = &self.parts.fast_path;
        let router = &self.parts.router;
        let reconfigured = router.reconfigure_with(config, || fast_path.sync(router));
        fast_path.sync(router);
        let rst_sent = self.parts.changes.send_resets(&reconfigured.resets);
        let now = self.parts.epoch.elapsed();
        let transitions = {
            let mut monitor = sync::lock(&self.parts.monitor);
            let mut transitions = monitor.reconfigure(config, &plan.next.removed, now);
            for id in &plan.removed {
                transitions.extend(monitor.set_admin(*id, AdminState::Down, now));
            }
            for id in &plan.restored {
                transitions.extend(monitor.set_admin(*id, AdminState::Auto, now));
            }
            transitions
        };
        let mut changes = plan.changes.clone();
        self.parts.config.replace(plan.next);
        for transition in &transitions {
            self.parts.changes.apply(transition);
        }
        if reconfigured.forward_flows_closed > 0 {
            changes.push(format!(
                "{} flow(s) of removed port forwards closed ({rst_sent} RST sent)",
                reconfigured.forward_flows_closed
            ));
        }
        Ok(if changes.is_empty() {
            format!("reloaded {}: no changes", file.display())
        } else {
            format!("reloaded {}: {}", file.display(), changes.join("; "))
        })
    }
}

impl RuntimeControl {
    /// Applies what the kernel says "auto" addresses and gateways of both
    /// families are now (after [`KernelUplinks::update`]): the kernel side
    /// of the data path first (the XDP maps' or the nftables table's WAN
    /// addresses), then each new address to the core, for new flows at
    /// once, the flows of an IPv4 address that went away failed over (their
    /// TCP clients get an RST), a new IPv6 address or prefix taken by new
    /// connections; the housekeeping threads follow the new gateways and
    /// addresses from [`LoadedConfig`]. The values "auto" had at start are
    /// the core's already (the start fills them before building it), so the
    /// first call changes only what moved since.
    pub fn follow_kernel(&self) {
        let _one = sync::lock(&self.reloading);
        let running = self.parts.config.running();
        let mut config = running.config.clone();
        self.parts.uplinks.fill(&mut config);
        if config == running.config {
            return;
        }
        if let Err(e) = (self.parts.kernel)(&config) {
            warn!(error = %e, "the kernel side of the data path did not take the new addresses");
        }
        for (id, (was, now)) in running.config.wans.iter().zip(&config.wans).enumerate() {
            if was.address != now.address {
                self.parts
                    .fast_path
                    .sync_without(&self.parts.router, id as UplinkId);
                let failed = self
                    .parts
                    .router
                    .set_uplink_address(id as UplinkId, now.address);
                self.parts.fast_path.sync(&self.parts.router);
                let sent = self.parts.changes.send_resets(&failed.resets);
                info!(
                    uplink = %now.name,
                    tcp_reset = failed.reset,
                    rst_sent = sent,
                    remapped = failed.remapped,
                    forwards_dropped = failed.forwards,
                    "address {} (was {})",
                    now.address_text(),
                    was.address_text()
                );
            }
            if was.gateway != now.gateway {
                info!(uplink = %now.name, "gateway {} (was {})", now.gateway_text(), was.gateway_text());
            }
            if let (Some(was6), Some(now6)) = (&was.ipv6, &now.ipv6) {
                self.follow_kernel6(id as UplinkId, &now.name, was6, now6);
            }
        }
        self.parts.config.replace(RunningConfig {
            config,
            removed: running.removed.clone(),
        });
    }

    /// Fails over the IPv6 flows of an uplink whose IPv6 went down alone,
    /// their RSTs sent to the LAN hosts; returns (resets made, sent, flows
    /// re-mapped).
    pub(super) fn fail_over6(&self, uplink: UplinkId) -> (usize, usize, usize) {
        // Marked down for IPv6 already: the sync takes its IPv6 flows off
        // the fast path (their final counters read) before their RSTs are
        // built.
        self.parts.fast_path.sync(&self.parts.router);
        let failed = self.parts.router.fail_over6(uplink);
        self.parts.fast_path.sync(&self.parts.router);
        let sent = self.parts.changes.send_resets(&failed.resets);
        (failed.reset, sent, failed.remapped)
    }

    /// The IPv6 health verdict on an uplink whose IPv6 side has probe
    /// targets of its own; None for the others (their IPv6 follows the
    /// uplink's one verdict).
    pub(super) fn verdict6(&self, uplink: UplinkId) -> Option<bool> {
        sync::lock(&self.parts.monitor).verdict6(uplink)
    }

    /// An uplink's IPv6 side as the kernel has it now: a new address or
    /// prefix to the core (new connections take it at once; open flows keep
    /// the outside addresses they have), one line each in the log.
    fn follow_kernel6(&self, id: UplinkId, name: &str, was: &Wan6, now: &Wan6) {
        let router = &self.parts.router;
        let fast_path = &self.parts.fast_path;
        if was.address != now.address || was.prefix != now.prefix {
            // The flows of the old address or prefix fail over: off the
            // fast path first, so their RSTs carry the final sequence.
            fast_path.sync_without(router, id);
        }
        let mut failed = Vec::new();
        if was.address != now.address {
            failed.push(
                router.set_uplink_address6(id, Some(now.address).filter(|a| !a.is_unspecified())),
            );
            info!(
                uplink = %name,
                "IPv6 address {} (was {})",
                auto6_text(now.address, now.address_auto),
                auto6_text(was.address, was.address_auto)
            );
        }
        if was.prefix != now.prefix {
            failed.push(router.set_uplink_prefix6(id, now.prefix));
            let text =
                |p: Option<ipnet::Ipv6Net>| p.map_or_else(|| "none".to_owned(), |p| p.to_string());
            info!(uplink = %name, "IPv6 prefix {} (was {})", text(now.prefix), text(was.prefix));
        }
        if was.address != now.address || was.prefix != now.prefix {
            fast_path.sync(router);
        }
        // The TCP clients of the old address or prefix learn at once that
        // their connections are gone.
        for failed in failed
            .iter()
            .filter(|f| f.reset + f.remapped + f.forwards > 0)
        {
            let sent = self.parts.changes.send_resets(&failed.resets);
            info!(
                uplink = %name,
                tcp_reset = failed.reset,
                rst_sent = sent,
                remapped = failed.remapped,
                forwards_dropped = failed.forwards,
                "IPv6 flows of the old address or prefix failed over"
            );
        }
        if was.gateway != now.gateway {
            info!(
                uplink = %name,
                "IPv6 gateway {} (was {})",
                auto6_text(now.gateway, now.gateway_auto),
                auto6_text(was.gateway, was.gateway_auto)
            );
        }
    }

    /// The configuration in force.
    pub fn running(&self) -> Arc<RunningConfig> {
        self.parts.config.running()
    }
}

impl Handler for RuntimeControl {
    fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Status => self.status(),
            Request::Flows {
                uplink,
                host,
                limit,
            } => self.flows(uplink.as_deref(), host, limit),
            Request::Uplink { name, state } => self.uplink(&name, state),
            Request::Prefix6 { name, prefix } => self.prefix6(&name, prefix.as_deref()),
            Request::Reload => match self.reload() {
                Ok(message) => Reply::done(message),
                Err(error) => Reply::error(error),
            },
            Request::Events => Reply::error("events stream on their own connection"),
        }
    }

    fn subscribe(&self) -> Result<std::sync::mpsc::Receiver<Event>, String> {
        self.parts
            .changes
            .events
            .subscribe()
            .ok_or_else(|| "too many event subscribers".to_string())
    }
}

/// Flows looked at for the status page's top flows: a bound on the work of
/// one look (every 2 s) when the table holds more; the page lists the
/// busiest of these.
pub const TOP_FLOWS_SCANNED: usize = 20_000;

impl MetricsSource for RuntimeControl {
    fn page_document(&self) -> String {
        let status = sync::lock(&self.last_status)
            .clone()
            .unwrap_or_else(|| self.status_now());
        let history = sync::lock(&self.history);
        serde_json::to_string(&PageDocument {
            status: &status,
            history: &history,
        })
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    fn metrics(&self) -> String {
        self.parts.fast_path.sync(&self.parts.router);
        let running = self.parts.config.running();
        let stats = self.parts.router.stats();
        let controls = self.controls(&running);
        let uplinks = running
            .config
            .wans
            .iter()
            .zip(&running.removed)
            .zip(stats.uplinks.iter().zip(&controls))
            .filter(|((_, removed), _)| !**removed)
            .map(|((wan, _), (s, c))| metrics::Uplink {
                name: &wan.name,
                stats: s,
                control: c,
            })
            .collect::<Vec<_>>();
        let workers = (self.parts.workers)();
        let mut out = metrics::render(&metrics::Snapshot {
            uplinks: &uplinks,
            stats: &stats,
            workers: &workers,
            uptime_s: self.parts.epoch.elapsed().as_secs_f64(),
        });
        out.push_str(&metrics::render_offload(&self.parts.fast_path.report()));
        out.push_str(&metrics::render_features(&self.parts.features));
        out
    }
}

/// An IPv6 address or gateway as the log shows it: `2001:db8:1::2`, `auto
/// (now 2001:db8:1::2)` or `auto (unresolved)`.
fn auto6_text(addr: std::net::Ipv6Addr, auto: bool) -> String {
    match (auto, addr.is_unspecified()) {
        (false, _) => addr.to_string(),
        (true, true) => "auto (unresolved)".to_owned(),
        (true, false) => format!("auto (now {addr})"),
    }
}

/// A flow as `xwan flows` shows it: its uplink's name, and whether the
/// fast path carries it (`carried`: the LAN-side keys it holds now).
fn flow_report<A: crate::packet::Family>(
    running: &RunningConfig,
    carried: &std::collections::HashSet<crate::flow::FlowKey<A>>,
    f: &crate::flow::FlowInfo<A>,
) -> FlowReport {
    let name = running
        .config
        .wans
        .get(usize::from(f.spec.uplink))
        .map_or("?", |w| w.name.as_str());
    FlowReport {
        offloaded: carried.contains(&f.spec.lan_key()),
        ..FlowReport::new(f, name)
    }
}

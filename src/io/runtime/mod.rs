//! `xwan run`: find the interfaces, check the kernel, build the router core, start a
//! backend and the housekeeping threads, and undo every kernel change on SIGINT or
//! SIGTERM.
//!
//! Kernel changes: in packet mode, the nftables table `ip xwan` described in
//! [`crate::io::afpacket::KernelFilter`], removed at exit; in XDP mode, whatever the
//! XDP backend attaches (it detaches it when stopped); in both, with `[local]
//! routes`, xwan's routing tables and rules for the router's own traffic
//! ([`local_routes`]), removed at exit; with `[control] state`, the hold table
//! of `hold.rs`, left in place on purpose. No sysctl is written: if
//! `net.ipv4.ip_local_port_range` overlaps `[nat] ports`, xwan refuses to start and
//! says which value to set, because the kernel could otherwise give one of the
//! router's own connections a port the NAT hands out.
//!
//! Housekeeping threads, on the same clock as the workers
//! ([`DataPathSetup::epoch`]):
//! - the sweeper calls [`Router::expire`] every second, after bringing the
//!   flow table and the in-kernel fast path in line (`fast_path`); with
//!   the fast path on, the offload thread does that every 200 ms too while
//!   the table is small, so established flows reach it sooner;
//! - the checkpoint thread saves the state every `[control] checkpoint_s`;
//! - the health thread probes the uplinks ([`health_thread`]);
//! - the reloader reloads the configuration on SIGHUP, as `xwan reload` does
//!   ([`RuntimeControl::reload`]);
//! - the uplink monitor ([`uplink_monitor`]), on rtnetlink events: the
//!   interfaces' MTUs and the router's addresses ([`interfaces`]), each
//!   uplink's link and "auto" address and gateway (applied to the core, the
//!   kernel side of the data path and the configuration in force), the
//!   routes and rules of the router's own traffic ([`local_routes`]), and on
//!   a neighbour event or every 500 ms the neighbour table: gateway and LAN
//!   host MACs handed to the core (a gateway's cleared when the kernel marks
//!   it failed), and resolutions asked of the kernel for gateways and the LAN
//!   hosts the core is missing (a netlink `NTF_USE` request: see
//!   [`crate::io::system::NeighbourProber`]); after a reload it follows the
//!   new gateways.
//!
//! The control socket and, with `[control] metrics`, the Prometheus endpoint
//! are served on threads of their own.
//!
//! Start-up reads in one direction: **probe** (`discovery`: privileges,
//! interfaces, addresses, the kernel's port range, the traffic xwan owns;
//! [`crate::io::features`]: what this kernel offers), then **choose**
//! (`plan`: the backend and the fast path), then **build** (`data_path`: the
//! backend and its kernel change, undone on drop; `fast_path`: the in-kernel
//! fast path, detached on drop; `neighbours`, `health_thread`,
//! `kernel_uplinks`, `local_routes`, removed on drop; `runtime_control`: the
//! answers on the control socket, reloads, metrics), then **run** (`threads`:
//! the housekeeping threads, stopped and joined on drop; `uplink_monitor`,
//! `signals`). Beside them: `options` (what `xwan run` is asked to do and its
//! errors), `interfaces` (MTUs and the router's addresses, followed live),
//! `loaded_config`, `panic` (the hook that turns a panic in any thread into
//! the orderly stop and an error exit), `state_file` (the state saved for the
//! next start, restored before forwarding) and `hold` (the table that keeps
//! the kernel off the saved flows while xwan is not running). No file imports
//! one that comes after it in that order. [`Running`] holds the parts in the
//! order they stop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::config::{Config, UplinkId};
use crate::io::features::Features;
use crate::io::system::{KernelState, RouteEvents};
use crate::router::{InterfaceMacs, Router};

use super::afpacket::TABLE;
use super::systemd::{self, Watchdog};
use super::{sync, DataPathSetup};
use crate::control::metrics::PageAccess;
use crate::control::{ControlServer, MetricsServer};
use health_thread::{HealthThread, StateChanges};
use loaded_config::LoadedConfig;
use runtime_control::{ControlParts, RuntimeControl};

mod data_path;
mod discovery;
mod fast_path;
mod health_thread;
mod hold;
mod interfaces;
mod kernel_uplinks;
mod loaded_config;
mod local_routes;
mod neighbours;
mod options;
mod panic;
mod plan;
mod runtime_control;
mod signals;
mod state_file;
mod threads;
mod uplink_monitor;

pub use data_path::DataPathReport;
use data_path::{
    io_name, kernel_update, progress_source, start_data_path, worker_stats_source, DataPath,
};
use discovery::{
    check_privileges, discover, fit_nat_ports, interfaces, log_summary, owned_traffic,
    probed_interfaces,
};
use fast_path::FastPath;
use interfaces::InterfaceWatch;
pub use kernel_uplinks::resolve_auto;
use kernel_uplinks::KernelUplinks;
use local_routes::LocalRoutes;
use neighbours::NeighbourThread;
pub use options::{IoMode, RunError, RunOptions};
use signals::Signals;
use threads::{every, Threads};
use uplink_monitor::UplinkMonitor;

/// What `xwan check --kernel` prints: every optional feature as probed here
/// (for the interfaces `config` names, those this machine has; none
/// without one), and how
/// `xwan run` with `options` would run. Starts nothing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelReport {
    pub kernel: String,
    pub features: Vec<crate::io::features::FeatureLine>,
    /// The backend `xwan run` would take ("xdp", "packet"), or why it
    /// would refuse to start.
    pub io: Result<String, String>,
    pub why: String,
    /// "on (TC by TCX link)", "on (TC by clsact filter, and XDP where the
    /// egress takes XDP frames)", "off" or "unavailable (...)".
    pub fast_path: String,
}

pub fn kernel_report(config: Option<&Config>, options: &RunOptions) -> KernelReport {
    let names = config.map_or_else(Vec::new, |config| {
        std::iter::once(&config.lan.interface)
            .chain(config.wans.iter().map(|w| &w.interface))
            .collect()
    });
    let interfaces: Vec<_> = names
        .into_iter()
        .filter_map(|name| {
            let (ifindex, _) = crate::io::system::index_and_mtu(name).ok()?;
            Some(crate::io::features::ProbedInterface {
                name: name.clone(),
                ifindex,
            })
        })
        .collect();
    let features = Features::probe(&interfaces);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "Linux (release unknown)".to_string());
    let chosen = plan::choose(
        &features,
        options.io,
        options.zero_copy,
        config.map_or(crate::config::Offload::Auto, |c| c.dataplane.offload),
    );
    let (io, why, fast_path) = match chosen {
        Ok(plan) => (
            Ok(plan.backend.name().to_string()),
            plan.why,
            match plan.fast_path {
                Ok(f) => format!(
                    "on (TC by {}{})",
                    match f.attach {
                        crate::io::offload::TcAttach::Tcx => "TCX link",
                        crate::io::offload::TcAttach::Clsact => "clsact filter",
                    },
                    if f.xdp_hook {
                        ", and XDP where the egress takes XDP frames"
                    } else {
                        ""
                    }
                ),
                Err(why) => why,
            },
        ),
        Err(e) => (Err(e.to_string()), String::new(), String::new()),
    };
    KernelReport {
        kernel,
        features: features.lines(),
        io,
        why,
        fast_path,
    }
}

/// Runs the router until SIGINT or SIGTERM (or a worker fails), then undoes every
/// kernel change; SIGHUP reloads the configuration. Logs go to whatever
/// subscriber the caller installed.
pub fn run(config: Config, config_path: &Path, options: RunOptions) -> Result<(), RunError> {
    let panics = panic::PanicWatch::install();
    let running = Running::start(&config, config_path, &options)?;
    panics.stop_on_panic(running.stop_flag());
    systemd::ready(&format!("forwarding with {}", io_name(&running.data_path)));
    running.wait();
    systemd::stopping();
    let stopped = running.shutdown().map(drop);
    match panics.panicked() {
        Some(what) => Err(RunError::Panicked(what)),
        None => stopped,
    }
}

/// The started router: the core, a backend, the housekeeping threads and the
/// signal handlers. [`Running::shutdown`] stops everything and undoes the kernel
/// changes, and reports.
///
/// Every part undoes itself when dropped, in the order of the fields: the
/// servers stop, the threads are stopped and joined, the workers stop, the
/// kernel changes are undone (the nftables table by [`KernelFilter`]'s drop, the
/// XDP program by closing its BPF links), the signal handlers are restored. So a
/// start-up that fails half-way needs no rollback of its own: what it started is
/// dropped with the error.
///
/// [`KernelFilter`]: crate::io::afpacket::KernelFilter
pub struct Running {
    control: Option<ControlServer>,
    metrics: Option<MetricsServer>,
    threads: Threads,
    data_path: DataPath,
    /// The in-kernel fast path, detached after the data path.
    fast_path: Arc<FastPath>,
    signals: Signals,
    router: Arc<Router>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    runtime: Arc<RuntimeControl>,
    /// `[control] state`: saved on the orderly stop.
    state: Option<PathBuf>,
}

impl Running {
    pub fn start(
        config: &Config,
        config_path: &Path,
        options: &RunOptions,
    ) -> Result<Running, RunError> {
        check_privileges()?;
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        // From here on SIGINT/SIGTERM stop xwan the orderly way, start-up included.
        let signals = Signals::register(&stop, &reload)?;
        let found = discover(config)?;
        // Probe, then choose: what this kernel offers, and how to run on it.
        let features = Features::probe(&probed_interfaces(&found));
        features.log();
        let plan = plan::choose(
            &features,
            options.io,
            options.zero_copy,
            config.dataplane.offload,
        )?;
        info!("io {}: {}", plan.backend.name(), plan.why);
        let mut config = fit_nat_ports(config)?;
        // "auto" addresses and gateways as the kernel has them now.
        let uplinks = Arc::new(KernelUplinks::new(config.wans.len()));
        uplinks.update(&KernelState::read()?, &config.wans);
        uplinks.fill(&mut config);
        let config = &config;

        let queues = options
            .queues
            .unwrap_or_else(|| {
                std::iter::once(&found.lan)
                    .chain(&found.wans)
                    .map(|l| l.rx_queues)
                    .max()
                    .unwrap_or(1)
            })
            .max(1);
        let router = Arc::new(Router::new(
            config,
            InterfaceMacs {
                lan: found.lan.mac,
                wans: found.wans.iter().map(|l| l.mac).collect(),
            },
        ));
        for (id, wan) in config.wans.iter().enumerate() {
            // An uplink that starts down waits for its probes (health_thread).
            let up = wan.health.initial_up || wan.probe.is_empty();
            router.set_uplink_up(id as UplinkId, up);
        }
        let loaded = Arc::new(LoadedConfig::new(config.clone(), config_path.to_path_buf()));
        let local = Arc::new(RwLock::new(found.local_addresses.clone()));
        let watch = Arc::new(InterfaceWatch::new(
            Arc::clone(&router),
            Arc::clone(&loaded),
            Arc::clone(&local),
        ));
        watch.refresh().map_err(RunError::Interfaces)?;
        let epoch = Instant::now();
        let setup = DataPathSetup {
            interfaces: interfaces(&found),
            queues,
            zero_copy: options.zero_copy,
            cpus: options.cpus.clone(),
            owned: owned_traffic(config, &sync::read(&local)),
            stop: Arc::clone(&stop),
            epoch,
        };
        let mut neighbours =
            NeighbourThread::new(Arc::clone(&router), Arc::clone(&loaded), &found, epoch)?;
        neighbours.refresh();

        log_summary(
            config,
            config_path,
            &found,
            &setup,
            &neighbours.gateway_macs,
        );
        // The saved flows go back before the first frame is forwarded, and
        // the kernel never answers their packets while xwan is not running.
        if config.control.state.is_some() {
            hold::hold(config);
        } else {
            hold::release();
        }
        let restored = config
            .control
            .state
            .as_deref()
            .and_then(|path| state_file::restore(path, &router, epoch.elapsed()));
        crate::io::offload::remove_stale_filters(&setup.interfaces);
        let data_path = start_data_path(&router, &setup, config, &plan)?;
        let fast_path = Arc::new(FastPath::start(&data_path, &setup, &plan.fast_path));
        let kernel = kernel_update(&data_path, &setup, local)?;
        watch.follow_with(Arc::clone(&kernel));
        let monitor = health_thread::monitor(config, epoch);
        let changes = Arc::new(StateChanges::new(
            Arc::clone(&router),
            Arc::clone(&loaded),
            &found.lan,
            Arc::clone(&fast_path),
        ));
        if let Some(restored) = restored.filter(|r| !r.resets.is_empty()) {
            let sent = changes.send_resets(&restored.resets);
            info!(
                rst_sent = sent,
                "reset the TCP connections of the saved flows dropped"
            );
        }
        let health = HealthThread::new(
            Arc::clone(&router),
            Arc::clone(&loaded),
            Arc::clone(&monitor),
            Arc::clone(&changes),
            Arc::clone(&uplinks),
            &found.wans,
            epoch,
        );
        let runtime = Arc::new(RuntimeControl::new(ControlParts {
            router: Arc::clone(&router),
            config: loaded,
            monitor,
            changes,
            epoch,
            io: io_name(&data_path).to_string(),
            workers: worker_stats_source(&data_path),
            kernel,
            uplinks: Arc::clone(&uplinks),
            fast_path: Arc::clone(&fast_path),
            features: features.lines(),
        }));
        let local_routes =
            LocalRoutes::start(config, found.wans.iter().map(|l| l.ifindex).collect())?;
        signals.save_on_forced_exit(config.control.state.as_deref(), &router, epoch);
        let mut running = Running {
            control: None,
            metrics: None,
            threads: Threads::new(Arc::clone(&stop)),
            data_path,
            fast_path,
            signals,
            router,
            stop,
            epoch,
            runtime,
            state: config.control.state.clone(),
        };
        let monitor = UplinkMonitor {
            events: RouteEvents::open()?,
            neighbours,
            watch,
            runtime: Arc::clone(&running.runtime),
            uplinks,
            router: Arc::clone(&running.router),
            local: local_routes,
            last_error: None,
        };
        running.start_housekeeping(monitor, health, reload)?;
        running.start_checkpoints(config.control.checkpoint_s)?;
        running.control = Some(ControlServer::start(
            &config.control.socket,
            config.control.group.clone(),
            running.runtime.clone(),
        )?);
        if let Some(addr) = config.control.metrics {
            let page = &config.control.page;
            let access = PageAccess {
                on: page.on,
                token: page.token.clone(),
            };
            let server = MetricsServer::start(addr, running.runtime.clone(), access)?;
            let addr = server.local_addr();
            if page.on {
                running.start_page_history(page.flows)?;
                info!("metrics on http://{addr}/metrics, status page on http://{addr}/");
            } else {
                info!("metrics on http://{addr}/metrics");
            }
            running.metrics = Some(server);
        }
        info!("running; SIGINT or SIGTERM stops xwan and undoes its kernel changes");
        Ok(running)
    }

    fn start_housekeeping(
        &mut self,
        monitor: UplinkMonitor,
        health: HealthThread,
        reload: Arc<AtomicBool>,
    ) -> Result<(), RunError> {
        let (router, stop, epoch) = (Arc::clone(&self.router), Arc::clone(&self.stop), self.epoch);
        let fast_path = Arc::clone(&self.fast_path);
        self.threads.spawn("sweeper", move || {
            every(Duration::from_secs(1), &stop, || {
                // The fast path's counters first (a busy flow is not idle),
                // and its entries of flows about to expire out of the map.
                fast_path.sync(&router);
                let removed = router.expire(epoch.elapsed());
                if removed > 0 {
                    debug!(removed, "expired idle flows");
                }
            })
        })?;
        if self.fast_path.is_on() {
            let (router, stop) = (Arc::clone(&self.router), Arc::clone(&self.stop));
            let fast_path = Arc::clone(&self.fast_path);
            self.threads.spawn("offload", move || {
                every(fast_path::QUICK_SYNC, &stop, || {
                    fast_path.quick_sync(&router)
                })
            })?;
        }
        let stop = Arc::clone(&self.stop);
        self.threads
            .spawn("uplink-monitor", move || monitor.run(&stop))?;
        let stop = Arc::clone(&self.stop);
        self.threads.spawn("health", move || health.run(&stop))?;
        if let Some(watchdog) = Watchdog::from_env(progress_source(&self.data_path)) {
            info!(
                "feeding the systemd watchdog every {:?} while the workers turn",
                watchdog.period()
            );
            let stop = Arc::clone(&self.stop);
            self.threads
                .spawn("watchdog", move || watchdog.run(&stop))?;
        }
        let (stop, runtime) = (Arc::clone(&self.stop), Arc::clone(&self.runtime));
        self.threads.spawn("reloader", move || {
            every(Duration::from_millis(100), &stop, || {
                if reload.swap(false, Ordering::Relaxed) {
                    info!("SIGHUP: reloading the configuration");
                    // The outcome is logged either way.
                    let _ = runtime.reload();
                }
            })
        })
    }

    /// Feeds the status page's history once a second: the status, the
    /// uplink events, and every 2 s with `top_flows` the busiest flows.
    fn start_page_history(&mut self, top_flows: bool) -> Result<(), RunError> {
        let (runtime, stop) = (Arc::clone(&self.runtime), Arc::clone(&self.stop));
        let events = runtime.subscribe_page();
        let mut tick = 0u64;
        self.threads.spawn("page-history", move || {
            every(Duration::from_secs(1), &stop, || {
                runtime.sample_history(&events, top_flows && tick % 2 == 0);
                tick += 1;
            })
        })
    }

    /// Saves the state every `checkpoint_s` seconds (0: only at the stop),
    /// so a crash loses only the newest flows.
    fn start_checkpoints(&mut self, checkpoint_s: u32) -> Result<(), RunError> {
        let Some(path) = self.state.as_ref().filter(|_| checkpoint_s > 0) else {
            return Ok(());
        };
        let path = path.clone();
        let (router, stop, epoch) = (Arc::clone(&self.router), Arc::clone(&self.stop), self.epoch);
        self.threads.spawn("checkpoint", move || {
            every(Duration::from_secs(u64::from(checkpoint_s)), &stop, || {
                if let Err(e) = state_file::save(&path, &router, epoch.elapsed()) {
                    warn!(path = %path.display(), error = %e, "checkpoint of the state failed");
                }
            })
        })
    }

    /// Reloads the configuration file, as `xwan reload` and SIGHUP do: the
    /// outcome in words, or why the running configuration was kept.
    pub fn reload(&self) -> Result<String, String> {
        self.runtime.reload()
    }

    /// The shared router core (for the control socket and health checks).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The epoch of the router's clock: pass `epoch.elapsed()` as `now`.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Set to stop the router; signals and failing workers set it too.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Blocks until the stop flag is set.
    pub fn wait(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the workers and threads, removes the kernel filter, restores the
    /// default signal handling; returns the data path's counters, or the first
    /// error met.
    pub fn shutdown(mut self) -> Result<DataPathReport, RunError> {
        self.stop.store(true, Ordering::Relaxed);
        info!("stopping");
        if let Some(control) = self.control.take() {
            control.stop();
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.stop();
        }
        drop(self.threads);
        let result = match self.data_path {
            DataPath::Packet { path, filter } => {
                let stopped = path.stop();
                let removed = filter.remove();
                if removed.is_ok() {
                    info!("removed nftables table ip {TABLE}");
                }
                match (stopped, removed) {
                    (Ok(report), Ok(())) => {
                        let t = report.total();
                        info!(
                            received = t.received,
                            forwarded = t.forwarded,
                            to_kernel = t.to_kernel,
                            dropped = t.dropped,
                            tx_failed = t.tx_failed,
                            segmented = t.segmented,
                            gso_passthrough = t.gso_passthrough,
                            truncated = t.truncated,
                            socket_drops = t.socket_drops,
                            "packet data path stopped"
                        );
                        Ok(DataPathReport::Packet(report))
                    }
                    (Err(err), _) => Err(err.into()),
                    (_, Err(err)) => Err(err.into()),
                }
            }
            DataPath::Xdp(path) => path
                .stop()
                .inspect(|report| info!("XDP data path stopped: {report:?}"))
                .map(DataPathReport::Xdp)
                .map_err(RunError::from),
        };
        self.fast_path.stop(&self.router);
        // Workers stopped, the fast path detached: the table is final.
        if let Some(path) = &self.state {
            let started = Instant::now();
            match state_file::save(path, &self.router, self.epoch.elapsed()) {
                Ok(flows) => info!(
                    path = %path.display(),
                    flows,
                    ms = started.elapsed().as_millis() as u64,
                    "saved the state for the next start"
                ),
                Err(e) => warn!(path = %path.display(), error = %e, "cannot save the state"),
            }
        }
        drop(self.signals);
        result
    }
}

#[cfg(test)]
mod tests;

//! `xwan run`: find the interfaces, check the kernel, build the router core, start a
//! backend and the housekeeping threads, and undo every kernel change on SIGINT or
//! SIGTERM.
//!
//! Kernel changes: in packet mode, the nftables table `ip xwan` described in
//! [`crate::io::packet::KernelFilter`], removed at exit; in XDP mode, whatever the
//! XDP backend attaches (it detaches it when stopped). No sysctl is written: if
//! `net.ipv4.ip_local_port_range` overlaps `[nat] ports`, xwan refuses to start and
//! says which value to set, because the kernel could otherwise give one of the
//! router's own connections a port the NAT hands out.
//!
//! Housekeeping threads, on the same clock as the workers
//! ([`DataPathSetup::epoch`]):
//! - the sweeper calls [`Router::expire`] every second;
//! - the health thread probes the uplinks ([`super::health`]);
//! - the reloader reloads the configuration on SIGHUP, as `xwan reload` does
//!   ([`RuntimeControl::reload`]);
//! - the neighbour thread, every 500 ms, reads the kernel's neighbour table, hands
//!   gateway and LAN host MACs to the core (and clears a gateway's MAC when the
//!   kernel marks it failed), and asks the kernel to resolve gateways and the LAN
//!   hosts the core is missing (a netlink `NTF_USE` request: see
//!   [`crate::io::system::NeighbourProber`]); after a reload it follows the
//!   new gateways.
//!
//! The control socket and, with `[control] metrics`, the Prometheus endpoint
//! are served on threads of their own.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tracing::{debug, info, warn};

use crate::config::{Action, Config, PortRange, Proto, UplinkId};
use crate::router::{InterfaceMacs, Port, Router};

use super::control::{ControlParts, KernelUpdate, LoadedConfig, RuntimeControl, WorkerStatsSource};
use super::health::{self, HealthThread, StateChanges};
use super::packet::{FilterError, KernelFilter, PacketDataPath, PacketError, PacketReport, TABLE};
use super::system::{self, format_mac, Link, NeighbourProber, SystemError};
use super::xdp::{XdpDataPath, XdpError, XdpReport};
use super::{DataPathSetup, Interface, OwnedTraffic, ZeroCopy};
use crate::control::protocol::WorkerReport;
use crate::control::{ControlError, ControlServer, MetricsServer};

mod panic;

/// Which backend moves the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// XDP program + AF_XDP sockets.
    Xdp,
    /// AF_PACKET raw sockets (the kernel keeps a copy of every frame).
    Packet,
}

/// How `xwan run` runs, from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// None: XDP, falling back to packet if XDP cannot start.
    pub io: Option<IoMode>,
    /// Worker threads; None: the largest RX queue count of the interfaces.
    pub queues: Option<u32>,
    pub zero_copy: ZeroCopy,
    /// CPUs to pin workers to (wrapping); empty: no pinning.
    pub cpus: Vec<usize>,
    /// 0: info, 1: debug, 2 or more: trace.
    pub verbose: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("xwan run needs root: {0} missing from the effective capabilities")]
    NotPrivileged(String),
    #[error(transparent)]
    System(#[from] SystemError),
    #[error(
        "net.ipv4.ip_local_port_range ({} {}) overlaps [nat] ports ({}-{}): the kernel could give the router's own \
         connections a NAT port; {advice}",
        kernel.lo, kernel.hi, nat.lo, nat.hi
    )]
    PortRangeOverlap {
        kernel: PortRange,
        nat: PortRange,
        advice: String,
    },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("installing the SIGINT/SIGTERM/SIGHUP handlers: {0}")]
    Signal(#[source] std::io::Error),
    #[error("stopped after a panic: {0}")]
    Panicked(String),
    #[error("starting the {name} thread: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the router until SIGINT or SIGTERM (or a worker fails), then undoes every
/// kernel change; SIGHUP reloads the configuration. Logs go to stderr.
pub fn run(config: Config, config_path: &Path, options: RunOptions) -> Result<(), RunError> {
    init_logging(options.verbose);
    let panics = panic::PanicWatch::install();
    let running = Running::start(&config, config_path, &options)?;
    panics.stop_on_panic(running.stop_flag());
    running.wait();
    let stopped = running.shutdown().map(drop);
    match panics.panicked() {
        Some(what) => Err(RunError::Panicked(what)),
        None => stopped,
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    // A subscriber set earlier (by a test, or by the caller) stays in place.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .try_init();
}

/// The started router: the core, a backend, the housekeeping threads and the
/// signal handlers. [`Running::shutdown`] stops everything and undoes the kernel
/// changes.
pub struct Running {
    router: Arc<Router>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    data_path: DataPath,
    threads: Vec<JoinHandle<()>>,
    signals: Signals,
    control: Option<ControlServer>,
    metrics: Option<MetricsServer>,
    runtime: Arc<RuntimeControl>,
}

enum DataPath {
    Packet {
        path: PacketDataPath,
        filter: KernelFilter,
    },
    Xdp(XdpDataPath),
}

/// The interfaces and addresses found for a configuration.
struct Discovered {
    lan: Link,
    /// One per uplink, in config order.
    wans: Vec<Link>,
    local_addresses: Vec<Ipv4Addr>,
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
        check_port_ranges(config.nat.ports)?;

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
        let epoch = Instant::now();
        let setup = DataPathSetup {
            interfaces: interfaces(&found),
            queues,
            zero_copy: options.zero_copy,
            cpus: options.cpus.clone(),
            owned: owned_traffic(config, &found.local_addresses),
            stop: Arc::clone(&stop),
            epoch,
        };

        let router = Arc::new(Router::new(
            config,
            InterfaceMacs {
                lan: found.lan.mac,
                wans: found.wans.iter().map(|l| l.mac).collect(),
            },
        ));
        for id in 0..config.wans.len() {
            router.set_uplink_up(id as UplinkId, true);
        }
        let loaded = Arc::new(LoadedConfig::new(config.clone(), config_path.to_path_buf()));
        let mut neighbours =
            NeighbourThread::new(Arc::clone(&router), Arc::clone(&loaded), &found)?;
        neighbours.refresh();

        log_summary(config, config_path, &found, &setup, options, &neighbours);
        let data_path = start_data_path(&router, &setup, config, options.io)?;
        let kernel = match kernel_update(&data_path, &setup, &found.local_addresses) {
            Ok(kernel) => kernel,
            Err(err) => {
                stop_data_path(data_path);
                return Err(err);
            }
        };
        let monitor = health::monitor(config, epoch);
        let changes = Arc::new(StateChanges::new(
            Arc::clone(&router),
            Arc::clone(&loaded),
            &found.lan,
        ));
        let health = HealthThread::new(
            Arc::clone(&router),
            Arc::clone(&loaded),
            Arc::clone(&monitor),
            Arc::clone(&changes),
            &found.wans,
            epoch,
        );
        let runtime = Arc::new(RuntimeControl::new(ControlParts {
            router: Arc::clone(&router),
            config: loaded,
            monitor,
            changes,
            epoch,
            io: match &data_path {
                DataPath::Packet { .. } => "packet".to_string(),
                DataPath::Xdp(path) if path.zero_copy() => "xdp (zero-copy)".to_string(),
                DataPath::Xdp(_) => "xdp (copy)".to_string(),
            },
            workers: worker_stats_source(&data_path),
            kernel,
        }));
        let mut running = Running {
            router,
            stop,
            epoch,
            data_path,
            threads: Vec::new(),
            signals,
            control: None,
            metrics: None,
            runtime,
        };
        if let Err(err) = running.start_housekeeping(neighbours, health, reload) {
            let _ = running.shutdown();
            return Err(err);
        }
        match ControlServer::start(
            &config.control.socket,
            config.control.group.clone(),
            running.runtime.clone(),
        ) {
            Ok(server) => running.control = Some(server),
            Err(err) => {
                let _ = running.shutdown();
                return Err(RunError::Control(err));
            }
        }
        if let Some(addr) = config.control.metrics {
            match MetricsServer::start(addr, running.runtime.clone()) {
                Ok(server) => {
                    info!("metrics on http://{}/metrics", server.local_addr());
                    running.metrics = Some(server);
                }
                Err(err) => {
                    let _ = running.shutdown();
                    return Err(RunError::Control(err));
                }
            }
        }
        info!("running; SIGINT or SIGTERM stops xwan and undoes its kernel changes");
        Ok(running)
    }

    fn start_housekeeping(
        &mut self,
        mut neighbours: NeighbourThread,
        health: HealthThread,
        reload: Arc<AtomicBool>,
    ) -> Result<(), RunError> {
        let (router, stop, epoch) = (Arc::clone(&self.router), Arc::clone(&self.stop), self.epoch);
        self.spawn("sweeper", move || {
            every(Duration::from_secs(1), &stop, || {
                let removed = router.expire(epoch.elapsed());
                if removed > 0 {
                    debug!(removed, "expired idle flows");
                }
            })
        })?;
        let stop = Arc::clone(&self.stop);
        self.spawn("neighbour", move || {
            every(Duration::from_millis(500), &stop, || neighbours.refresh())
        })?;
        let stop = Arc::clone(&self.stop);
        self.spawn("health", move || health.run(&stop))?;
        let (stop, runtime) = (Arc::clone(&self.stop), Arc::clone(&self.runtime));
        self.spawn("reloader", move || {
            every(Duration::from_millis(100), &stop, || {
                if reload.swap(false, Ordering::Relaxed) {
                    info!("SIGHUP: reloading the configuration");
                    // The outcome is logged either way.
                    let _ = runtime.reload();
                }
            })
        })
    }

    /// Reloads the configuration file, as `xwan reload` and SIGHUP do: the
    /// outcome in words, or why the running configuration was kept.
    pub fn reload(&self) -> Result<String, String> {
        self.runtime.reload()
    }

    fn spawn(
        &mut self,
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), RunError> {
        let handle = std::thread::Builder::new()
            .name(format!("xwan-{name}"))
            .spawn(move || {
                #[cfg(debug_assertions)]
                panic::injected(name);
                body();
            })
            .map_err(|source| RunError::Thread { name, source })?;
        self.threads.push(handle);
        Ok(())
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
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
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
        drop(self.signals);
        result
    }
}

/// Per-worker figures for `xwan status`: the AF_XDP workers' live counters;
/// the packet backend reports its counters only when it stops.
fn worker_stats_source(data_path: &DataPath) -> WorkerStatsSource {
    match data_path {
        DataPath::Xdp(path) => {
            let read = path.stats_reader();
            Box::new(move || {
                read()
                    .into_iter()
                    .map(|w| WorkerReport {
                        queue: w.queue,
                        rx_packets: w.rx,
                        tx_packets: w.tx,
                        batches: w.batches,
                        idle_ratio: w.idle_polls as f64 / (w.idle_polls + w.batches).max(1) as f64,
                    })
                    .collect()
            })
        }
        DataPath::Packet { .. } => Box::new(Vec::new),
    }
}

/// What the data path did, from [`Running::shutdown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataPathReport {
    Packet(PacketReport),
    Xdp(XdpReport),
}

/// The SIGINT and SIGTERM handlers: the first signal sets the stop flag, a second
/// one while stopping ends the process at once (exit 1); and the SIGHUP handler,
/// which sets the reload flag. Dropping this restores the default handling.
struct Signals(Vec<signal_hook::SigId>);

impl Signals {
    fn register(stop: &Arc<AtomicBool>, reload: &Arc<AtomicBool>) -> Result<Signals, RunError> {
        let mut signals = Signals(Vec::new());
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let forced =
                signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(stop))
                    .map_err(RunError::Signal)?;
            signals.0.push(forced);
            let flag =
                signal_hook::flag::register(signal, Arc::clone(stop)).map_err(RunError::Signal)?;
            signals.0.push(flag);
        }
        let hup = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(reload))
            .map_err(RunError::Signal)?;
        signals.0.push(hup);
        Ok(signals)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Runs `tick` every `period` until `stop` is set (checking it every 50 ms).
fn every(period: Duration, stop: &AtomicBool, mut tick: impl FnMut()) {
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            tick();
            next = now + period;
        }
        std::thread::sleep((next - Instant::now().min(next)).min(Duration::from_millis(50)));
    }
}

fn start_data_path(
    router: &Arc<Router>,
    setup: &DataPathSetup,
    config: &Config,
    io: Option<IoMode>,
) -> Result<DataPath, RunError> {
    let packet = || -> Result<DataPath, RunError> {
        // The filter goes in first: until the workers run, owned traffic is dropped
        // rather than forwarded un-NATed by the kernel.
        let filter = KernelFilter::install(setup, &config.rules)?;
        if filter.owned() {
            info!(
                "installed nftables table ip {TABLE}, owned by xwan (the kernel leaves xwan's traffic alone, \
                 and deletes the table when xwan ends)"
            );
        } else {
            info!("installed nftables table ip {TABLE} (the kernel leaves xwan's traffic alone)");
        }
        let path = PacketDataPath::start(Arc::clone(router), setup)?;
        info!(workers = setup.queues, "AF_PACKET data path started");
        Ok(DataPath::Packet { path, filter })
    };
    match io {
        Some(IoMode::Packet) => packet(),
        Some(IoMode::Xdp) => Ok(DataPath::Xdp(XdpDataPath::start(
            Arc::clone(router),
            setup,
        )?)),
        None => match XdpDataPath::start(Arc::clone(router), setup) {
            Ok(path) => Ok(DataPath::Xdp(path)),
            Err(err) => {
                warn!("XDP data path unavailable ({err}); falling back to AF_PACKET");
                packet()
            }
        },
    }
}

/// CAP_NET_ADMIN and CAP_NET_RAW, from `/proc/self/status`.
fn check_privileges() -> Result<(), RunError> {
    const NEEDED: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW")];
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| SystemError::io("/proc/self/status", err))?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RunError::NotPrivileged(missing.join(" and ")))
    }
}

/// Finds every configured interface (the config guarantees each is used once) and
/// checks that each WAN address is configured on its interface.
fn discover(config: &Config) -> Result<Discovered, RunError> {
    let lan = system::link(&config.lan.interface)?;
    let wans = config
        .wans
        .iter()
        .map(|wan| system::link(&wan.interface))
        .collect::<Result<Vec<_>, _>>()?;
    let addresses = system::ipv4_addresses()?;
    for wan in &config.wans {
        system::check_address(&addresses, &wan.interface, wan.address)?;
    }
    let mut local_addresses: Vec<Ipv4Addr> = addresses.iter().map(|a| a.net.addr()).collect();
    local_addresses.sort();
    local_addresses.dedup();
    Ok(Discovered {
        lan,
        wans,
        local_addresses,
    })
}

/// Refuses to start when the kernel's ephemeral ports overlap the NAT range.
fn check_port_ranges(nat: PortRange) -> Result<(), RunError> {
    let kernel = system::local_port_range()?;
    if !kernel.overlaps(&nat) {
        return Ok(());
    }
    Err(RunError::PortRangeOverlap {
        kernel,
        nat,
        advice: port_range_advice(nat),
    })
}

/// What to set `ip_local_port_range` to: the ports above the NAT range if they are
/// at least 1000, else those between 1024 and the NAT range.
fn port_range_advice(nat: PortRange) -> String {
    let above = (nat.hi < u16::MAX).then(|| PortRange {
        lo: nat.hi.max(1023) + 1,
        hi: u16::MAX,
    });
    let below = (nat.lo > 1024).then(|| PortRange {
        lo: 1024,
        hi: nat.lo - 1,
    });
    match [above, below].into_iter().flatten().find(|r| r.len() >= 1000) {
        Some(r) => format!(
            "move the kernel's range out of it, e.g. `sysctl -w net.ipv4.ip_local_port_range=\"{} {}\"` \
             (and in /etc/sysctl.d to keep it)",
            r.lo, r.hi
        ),
        None => "narrow [nat] ports to leave the kernel at least 1000 ports above 1024, then set \
                 net.ipv4.ip_local_port_range to them"
            .to_owned(),
    }
}

fn interfaces(found: &Discovered) -> Vec<Interface> {
    let one = |link: &Link, port: Port| Interface {
        name: link.name.clone(),
        ifindex: link.ifindex,
        mac: link.mac,
        port,
        rx_queues: link.rx_queues,
    };
    std::iter::once(one(&found.lan, Port::Lan))
        .chain(
            found
                .wans
                .iter()
                .enumerate()
                .map(|(id, link)| one(link, Port::Wan(id as UplinkId))),
        )
        .collect()
}

/// What a reload changes on the kernel side: the XDP program's maps of
/// forwarded ports and bypassed prefixes, or the packet backend's nftables
/// table (replaced in one transaction).
fn kernel_update(
    data_path: &DataPath,
    setup: &DataPathSetup,
    local_addresses: &[Ipv4Addr],
) -> Result<KernelUpdate, RunError> {
    let local = local_addresses.to_vec();
    Ok(match data_path {
        DataPath::Xdp(path) => {
            let maps = path.owned_maps(&setup.owned)?;
            Box::new(move |config: &Config| {
                maps.update(&owned_traffic(config, &local))
                    .map_err(|e| e.to_string())
            })
        }
        DataPath::Packet { filter, .. } => {
            let (setup, filter) = (setup.clone(), filter.handle());
            Box::new(move |config: &Config| {
                let setup = DataPathSetup {
                    owned: owned_traffic(config, &local),
                    ..setup.clone()
                };
                filter
                    .replace(&setup, &config.rules)
                    .map_err(|e| e.to_string())
            })
        }
    })
}

/// Stops a data path that started, when the start-up fails after it.
fn stop_data_path(data_path: DataPath) {
    match data_path {
        DataPath::Packet { path, filter } => {
            let _ = path.stop();
            let _ = filter.remove();
        }
        DataPath::Xdp(path) => {
            let _ = path.stop();
        }
    }
}

fn owned_traffic(config: &Config, local_addresses: &[Ipv4Addr]) -> OwnedTraffic {
    // Destination-only bypass rules ahead of every other rule: whatever they match
    // is the kernel's whatever else the packet holds.
    let bypass: Vec<Ipv4Net> = config
        .rules
        .iter()
        .take_while(|r| r.action == Action::Bypass)
        .filter(|r| {
            r.proto == Proto::Any
                && r.src.is_empty()
                && r.src_port.is_empty()
                && r.dst_port.is_empty()
        })
        .flat_map(|r| r.dst.iter().copied())
        .collect();
    let forwards = |proto: Proto| -> Vec<(Ipv4Addr, u16)> {
        config
            .forwards
            .iter()
            .filter(|f| f.proto == proto)
            .flat_map(|f| {
                f.wans
                    .iter()
                    .filter_map(|&id| config.wans.get(usize::from(id)))
                    .map(move |wan| (wan.address, f.port))
            })
            .collect()
    };
    OwnedTraffic {
        lan_networks: config.lan.networks.clone(),
        bypass,
        local_addresses: local_addresses.to_vec(),
        wan_addresses: config.wans.iter().map(|w| w.address).collect(),
        nat_ports: config.nat.ports,
        tcp_forwards: forwards(Proto::Tcp),
        udp_forwards: forwards(Proto::Udp),
    }
}

fn log_summary(
    config: &Config,
    config_path: &Path,
    found: &Discovered,
    setup: &DataPathSetup,
    options: &RunOptions,
    neighbours: &NeighbourThread,
) {
    let mode = match options.io {
        Some(IoMode::Xdp) => "xdp",
        Some(IoMode::Packet) => "packet",
        None => "xdp (packet if XDP cannot start)",
    };
    info!(
        "xwan {} starting: config {}, io {mode}, {} worker(s), cpus {:?}",
        crate::cli::VERSION,
        config_path.display(),
        setup.queues,
        setup.cpus
    );
    let nets: Vec<String> = config
        .lan
        .networks
        .iter()
        .map(ToString::to_string)
        .collect();
    info!(
        "lan on {}: ifindex {}, mac {}, mtu {}, {} rx queue(s), networks {}",
        found.lan.name,
        found.lan.ifindex,
        format_mac(&found.lan.mac),
        found.lan.mtu,
        found.lan.rx_queues,
        nets.join(", ")
    );
    for ((wan, link), gateway) in config
        .wans
        .iter()
        .zip(&found.wans)
        .zip(&neighbours.gateway_macs)
    {
        info!(
            "uplink {} on {}: ifindex {}, mac {}, mtu {}, {} rx queue(s), address {}, gateway {} ({})",
            wan.name,
            link.name,
            link.ifindex,
            format_mac(&link.mac),
            link.mtu,
            link.rx_queues,
            wan.address,
            wan.gateway,
            gateway.map_or_else(|| "resolving".to_owned(), |mac| format!("at {}", format_mac(&mac)))
        );
    }
    info!(
        "nat ports {}-{}, {} port forward(s), {} rule(s)",
        config.nat.ports.lo,
        config.nat.ports.hi,
        config.forwards.len(),
        config.rules.len()
    );
    for link in std::iter::once(&found.lan).chain(&found.wans) {
        if !link.up {
            warn!("interface {} is down", link.name);
        }
    }
}

/// Keeps the core's neighbour MACs in step with the kernel's neighbour table.
struct NeighbourThread {
    router: Arc<Router>,
    config: Arc<LoadedConfig>,
    /// The configuration generation `gateways` was taken from.
    generation: u64,
    prober: NeighbourProber,
    lan_interface: String,
    lan_ifindex: u32,
    lan_networks: Vec<Ipv4Net>,
    /// Per uplink: interface, ifindex, gateway.
    gateways: Vec<(String, u32, Ipv4Addr)>,
    gateway_macs: Vec<Option<[u8; 6]>>,
    lan_macs: HashMap<Ipv4Addr, [u8; 6]>,
    last_error: Option<String>,
}

/// At most this many LAN hosts are probed per refresh (a scan of the LAN from
/// outside must not turn into a flood of ARP requests).
const MAX_LAN_PROBES: usize = 64;

impl NeighbourThread {
    fn new(
        router: Arc<Router>,
        loaded: Arc<LoadedConfig>,
        found: &Discovered,
    ) -> Result<NeighbourThread, RunError> {
        let (running, generation) = loaded.current();
        let config = &running.config;
        Ok(NeighbourThread {
            router,
            config: loaded,
            generation,
            prober: NeighbourProber::open()?,
            lan_interface: found.lan.name.clone(),
            lan_ifindex: found.lan.ifindex,
            lan_networks: config.lan.networks.clone(),
            gateways: config
                .wans
                .iter()
                .zip(&found.wans)
                .map(|(wan, link)| (link.name.clone(), link.ifindex, wan.gateway))
                .collect(),
            gateway_macs: vec![None; config.wans.len()],
            lan_macs: HashMap::new(),
            last_error: None,
        })
    }

    /// One round; errors are logged (once until they change) and the round ends.
    fn refresh(&mut self) {
        match self.try_refresh() {
            Ok(()) => self.last_error = None,
            Err(err) => {
                let text = err.to_string();
                if self.last_error.as_deref() != Some(text.as_str()) {
                    warn!("neighbour refresh: {text}");
                    self.last_error = Some(text);
                }
            }
        }
    }

    /// After a reload: a changed gateway is resolved afresh (the core keeps
    /// the old one's MAC until the new one's is known).
    fn follow_config(&mut self) {
        let (running, generation) = self.config.current();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        for (id, wan) in running.config.wans.iter().enumerate() {
            let Some(entry) = self.gateways.get_mut(id) else {
                continue;
            };
            if entry.2 != wan.gateway {
                info!(
                    "uplink {}: gateway {} replaces {}",
                    wan.name, wan.gateway, entry.2
                );
                entry.2 = wan.gateway;
                self.gateway_macs[id] = None;
            }
        }
    }

    fn try_refresh(&mut self) -> Result<(), SystemError> {
        self.follow_config();
        let table = system::neighbours()?;
        for (id, (interface, ifindex, gateway)) in self.gateways.iter().enumerate() {
            let entry = table
                .iter()
                .find(|n| n.addr == *gateway && n.interface == *interface);
            let known = self.gateway_macs[id];
            match entry.map(|n| n.mac) {
                Some(Some(mac)) if known != Some(mac) => {
                    match known {
                        Some(old) => warn!(
                            "gateway {gateway} on {interface} moved from {} to {}",
                            format_mac(&old),
                            format_mac(&mac)
                        ),
                        None => info!(
                            "gateway {gateway} on {interface} is at {}",
                            format_mac(&mac)
                        ),
                    }
                    self.router.set_gateway_mac(id as UplinkId, Some(mac));
                    self.gateway_macs[id] = Some(mac);
                }
                Some(None) if known.is_some() => {
                    warn!("gateway {gateway} on {interface} stopped answering ARP");
                    self.router.set_gateway_mac(id as UplinkId, None);
                    self.gateway_macs[id] = None;
                }
                _ => {}
            }
            // Keeps the entry confirmed (a stale entry gets a unicast probe, a
            // missing or failed one a new resolution); a reachable one is untouched.
            self.prober.probe(*ifindex, *gateway)?;
        }
        for n in &table {
            let Some(mac) = n.mac else { continue };
            if n.interface == self.lan_interface
                && self.lan_networks.iter().any(|net| net.contains(&n.addr))
                && self.lan_macs.get(&n.addr) != Some(&mac)
            {
                self.router.set_lan_mac(n.addr, mac);
                self.lan_macs.insert(n.addr, mac);
            }
        }
        let missing = self.router.unresolved_lan_hosts();
        for addr in missing.into_iter().take(MAX_LAN_PROBES) {
            if !self.lan_macs.contains_key(&addr) {
                self.prober.probe(self.lan_ifindex, addr)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

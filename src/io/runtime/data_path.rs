//! The backend `xwan run` drives, and the kernel changes that come with it.

use super::discovery::{owned_traffic, LocalAddresses};
use super::options::RunError;
use super::plan::{Backend, Plan};
use crate::config::Config;
use crate::control::protocol::WorkerReport;
use crate::io::afpacket::{KernelFilter, PacketDataPath, PacketReport, TABLE};
use crate::io::afxdp::{XdpDataPath, XdpMode, XdpReport};
use crate::io::systemd::ProgressSource;
use crate::io::{sync, DataPathSetup, ZeroCopy};
use crate::router::Router;
use std::sync::Arc;
use tracing::{info, warn};

/// Per-worker figures from the data path, read when `xwan status` asks.
pub(super) type WorkerStatsSource = Box<dyn Fn() -> Vec<WorkerReport> + Send + Sync>;

/// Brings the kernel side of the data path to a reloaded configuration (laid
/// out by uplink id); the error says what failed.
pub(super) type KernelUpdate = Arc<dyn Fn(&Config) -> Result<(), String> + Send + Sync>;

/// The running backend. Dropped without [`super::Running::shutdown`], it stops
/// its workers first and then undoes its kernel change (field order).
pub(super) enum DataPath {
    Packet {
        path: PacketDataPath,
        filter: KernelFilter,
    },
    Xdp(XdpDataPath),
}

/// Per-worker figures for `xwan status`: the workers' live counters.
pub(super) fn worker_stats_source(data_path: &DataPath) -> WorkerStatsSource {
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
                        punted: w.punted,
                        punt_failed: w.punt_failed,
                        gso_passthrough: 0,
                        gso_passthrough_bytes: 0,
                    })
                    .collect()
            })
        }
        DataPath::Packet { path, .. } => {
            let read = path.stats_reader();
            Box::new(move || {
                read()
                    .into_iter()
                    .enumerate()
                    .map(|(queue, w)| WorkerReport {
                        queue: queue as u32,
                        rx_packets: w.received,
                        tx_packets: w.forwarded,
                        batches: w.batches,
                        idle_ratio: w.idle_rounds as f64
                            / (w.idle_rounds + w.batches).max(1) as f64,
                        punted: 0,
                        punt_failed: 0,
                        gso_passthrough: w.gso_passthrough,
                        gso_passthrough_bytes: w.gso_passthrough_bytes,
                    })
                    .collect()
            })
        }
    }
}

/// The backend as `xwan status` and systemd show it.
pub(super) fn io_name(data_path: &DataPath) -> &'static str {
    match data_path {
        DataPath::Packet { .. } => "packet",
        DataPath::Xdp(path) if path.zero_copy() => "xdp (zero-copy)",
        DataPath::Xdp(_) => "xdp (copy)",
    }
}

/// Per worker, a count that grows every round of its loop, busy or idle.
pub(super) fn progress_source(data_path: &DataPath) -> ProgressSource {
    match data_path {
        DataPath::Xdp(path) => {
            let read = path.stats_reader();
            Box::new(move || read().iter().map(|w| w.batches + w.idle_polls).collect())
        }
        DataPath::Packet { path, .. } => {
            let progress = path.progress();
            Box::new(move || progress.read())
        }
    }
}

/// What the data path did, from [`super::Running::shutdown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataPathReport {
    Packet(PacketReport),
    Xdp(XdpReport),
}

/// Starts the backend of `plan`; with `--io auto`, an AF_XDP data path that
/// fails to start anyway (an attach the driver refuses) gives way to packet.
pub(super) fn start_data_path(
    router: &Arc<Router>,
    setup: &DataPathSetup,
    config: &Config,
    plan: &Plan,
) -> Result<DataPath, RunError> {
    let packet = || -> Result<DataPath, RunError> {
        // The filter goes in first: until the workers run, owned traffic is dropped
        // rather than forwarded un-NATed by the kernel.
        let filter = KernelFilter::install(setup, &config.rules, plan.nft_owner)?;
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
    match plan.backend {
        Backend::Packet => packet(),
        Backend::Xdp if plan.auto => {
            // Auto took AF_XDP for zero-copy: nothing less (copy mode, or
            // the program in generic mode) is worth it over packet.
            let strict = DataPathSetup {
                zero_copy: ZeroCopy::On,
                ..setup.clone()
            };
            let offload = plan.fast_path.is_ok();
            match XdpDataPath::start(Arc::clone(router), &strict, offload) {
                Ok(path) if path.modes().iter().all(|(_, m)| *m == XdpMode::Native) => {
                    Ok(DataPath::Xdp(path))
                }
                Ok(path) => {
                    let generic: Vec<String> = path
                        .modes()
                        .into_iter()
                        .filter(|(_, m)| *m != XdpMode::Native)
                        .map(|(i, _)| i)
                        .collect();
                    drop(path);
                    warn!(
                        "auto: XDP runs in generic mode on {} (no zero-copy there); AF_PACKET instead",
                        generic.join(", ")
                    );
                    packet()
                }
                Err(err) => {
                    warn!("auto: zero-copy AF_XDP did not start ({err}); AF_PACKET instead");
                    packet()
                }
            }
        }
        Backend::Xdp => Ok(DataPath::Xdp(XdpDataPath::start(
            Arc::clone(router),
            setup,
            plan.fast_path.is_ok(),
        )?)),
    }
}

/// What a reload, a change of the router's addresses or a new "auto" uplink
/// address changes on the kernel side: the XDP program's maps of forwarded
/// ports, bypassed prefixes, local addresses and WAN addresses, or the packet backend's nftables table (replaced in
/// one transaction), laid out with the addresses in `local` at the time.
pub(super) fn kernel_update(
    data_path: &DataPath,
    setup: &DataPathSetup,
    local: LocalAddresses,
) -> Result<KernelUpdate, RunError> {
    let owned = move |config: &Config| owned_traffic(config, &sync::read(&local));
    Ok(match data_path {
        DataPath::Xdp(path) => {
            let maps = path.owned_maps(&setup.interfaces, &setup.owned)?;
            Arc::new(move |config: &Config| maps.update(&owned(config)).map_err(|e| e.to_string()))
        }
        DataPath::Packet { filter, .. } => {
            let (setup, filter) = (setup.clone(), filter.handle());
            Arc::new(move |config: &Config| {
                let setup = DataPathSetup {
                    owned: owned(config),
                    ..setup.clone()
                };
                filter
                    .replace(&setup, &config.rules)
                    .map_err(|e| e.to_string())
            })
        }
    })
}

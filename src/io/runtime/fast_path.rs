//! `[dataplane] offload` at run time: whether the in-kernel fast path runs
//! ([`crate::io::offload`]), and its figures for status and metrics.
//!
//! With `--io xdp` the XDP program forwards the fast path's frames itself
//! to interfaces that accept XDP frames and passes the others to TC;
//! with `--io packet` the workers' AF_PACKET sockets, which see every frame
//! before TC ingress, get a socket filter that keeps those frames from them.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::data_path::DataPath;
use super::plan::FastPathPlan;
use crate::config::UplinkId;
use crate::control::protocol::OffloadReport;
use crate::flow::FlowKey;
use crate::io::afxdp::load_offload_parts;
use crate::io::offload::{Offload, TcAttach, MAX_ENTRIES};
use crate::packet::Addr6;

/// How often the offload thread picks up newly established flows while the
/// table is small enough to scan cheaply (at most [`MAX_ENTRIES`] flows, the
/// map's own size); a bigger table is scanned once a second, by the sweeper.
pub(super) const QUICK_SYNC: Duration = Duration::from_millis(200);
use crate::io::DataPathSetup;
use crate::router::Router;

/// The fast path, if it runs, and why not otherwise.
pub(super) struct FastPath {
    pub offload: Option<Arc<Offload>>,
    /// "on", "off" or "unavailable (why)".
    state: String,
    /// The router's clock.
    epoch: Instant,
}

impl FastPath {
    /// Starts the fast path as `plan` says, or records why it does not run
    /// ("off", or the feature it lacks); one that fails to attach leaves the
    /// workers every packet, and says why.
    pub fn start(
        data_path: &DataPath,
        setup: &DataPathSetup,
        plan: &Result<FastPathPlan, String>,
    ) -> FastPath {
        let without = |state: String| FastPath {
            offload: None,
            state,
            epoch: setup.epoch,
        };
        let plan = match plan {
            Ok(plan) => *plan,
            Err(why) => return without(why.clone()),
        };
        let started = match data_path {
            DataPath::Xdp(path) => path.offload_parts().map_err(|e| e.to_string()),
            // No XDP program runs: the object, loaded for the maps and the
            // TC program, and the sockets' filter keeps the fast path's
            // frames from the workers before TC takes them.
            DataPath::Packet { path, .. } => load_offload_parts(&setup.owned)
                .map_err(|e| format!("loading its BPF programs: {e}"))
                .and_then(|parts| {
                    let tap = parts
                        .tap
                        .as_ref()
                        .ok_or_else(|| "no socket filter".to_string())?;
                    path.attach_filter(tap.as_raw_fd())
                        .map_err(|e| e.to_string())?;
                    Ok(parts)
                }),
        }
        .and_then(|parts| {
            // An auto start that gave way to packet runs no XDP program.
            let xdp_hook = plan.xdp_hook && matches!(data_path, DataPath::Xdp(_));
            Offload::start(parts, &setup.interfaces, plan.attach, xdp_hook)
                .map_err(|e| e.to_string())
        });
        match started {
            Ok(offload) => FastPath {
                offload: Some(Arc::new(offload)),
                state: match plan.attach {
                    TcAttach::Tcx => "on".to_string(),
                    TcAttach::Clsact => "on (TC by clsact: no TCX)".to_string(),
                },
                epoch: setup.epoch,
            },
            Err(why) => {
                warn!("offload unavailable ({why}): established flows stay with the workers");
                without(format!("unavailable ({why})"))
            }
        }
    }

    pub fn report(&self) -> OffloadReport {
        let Some(offload) = &self.offload else {
            return OffloadReport {
                state: self.state.clone(),
                ..OffloadReport::default()
            };
        };
        let stats = offload.stats();
        OffloadReport {
            state: self.state.clone(),
            hooks: offload
                .hooks()
                .into_iter()
                .map(|(interface, hook)| (interface, hook.name().to_string()))
                .collect(),
            entries: stats.entries,
            // One map per family.
            capacity: 2 * u64::from(MAX_ENTRIES),
            entries6: stats.entries6,
            refused_full: stats.refused_full,
            map_errors: stats.map_errors,
            lost: stats.lost,
            packets: stats.packets,
            bytes: stats.bytes,
            xdp_packets: stats.by_xdp,
        }
    }

    /// Brings the flow table up to date with the fast path (see
    /// [`Offload::sync`]); nothing without it.
    pub fn sync(&self, router: &Router) {
        if let Some(offload) = &self.offload {
            offload.sync(router, self.epoch.elapsed());
        }
    }

    /// [`FastPath::sync`] that also takes `uplink`'s flows off the fast path
    /// (their final counters read), before its address changes under them.
    pub fn sync_without(&self, router: &Router, uplink: UplinkId) {
        if let Some(offload) = &self.offload {
            offload.sync_without(router, self.epoch.elapsed(), uplink);
        }
    }

    /// The LAN-side keys of the IPv4 flows on the fast path now (none
    /// without it).
    pub fn carried(&self) -> HashSet<FlowKey> {
        self.offload
            .as_ref()
            .map_or_else(HashSet::new, |offload| offload.carried())
    }

    /// [`FastPath::carried`] for IPv6.
    pub fn carried6(&self) -> HashSet<FlowKey<Addr6>> {
        self.offload
            .as_ref()
            .map_or_else(HashSet::new, |offload| offload.carried6())
    }

    /// Whether the fast path runs.
    pub fn is_on(&self) -> bool {
        self.offload.is_some()
    }

    /// The offload thread's tick: which hook serves each interface
    /// ([`Offload::detect_hooks`]), and while the table is small newly
    /// established flows into the map ([`Offload::refresh`]; the counters
    /// are read back by [`FastPath::sync`]).
    pub fn quick_sync(&self, router: &Router) {
        if let Some(offload) = &self.offload {
            offload.detect_hooks();
            if router.flow_count() <= MAX_ENTRIES {
                offload.refresh(router, self.epoch.elapsed());
            }
        }
    }

    /// Detaches the program and takes its last counters into the flow table.
    pub fn stop(&self, router: &Router) {
        if let Some(offload) = &self.offload {
            offload.stop(router, self.epoch.elapsed());
        }
    }
}

//! The running router's answers on the control socket.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use super::health::{self, SharedMonitor};
use crate::config::{Config, UplinkId};
use crate::control::protocol::{
    FlowReport, Reply, Request, StatusReport, UplinkControl, WorkerReport,
};
use crate::control::Handler;
use crate::router::Router;

/// Per-worker figures from the data path, read when `xwan status` asks.
pub type WorkerStatsSource = Box<dyn Fn() -> Vec<WorkerReport> + Send + Sync>;

pub struct RuntimeControl {
    pub router: Arc<Router>,
    pub config: Config,
    pub config_file: String,
    pub loaded: Instant,
    pub epoch: Instant,
    pub io: String,
    pub monitor: SharedMonitor,
    pub workers: WorkerStatsSource,
}

impl RuntimeControl {
    fn uplink_id(&self, name: &str) -> Result<UplinkId, Reply> {
        self.config
            .wans
            .iter()
            .position(|w| w.name == name)
            .map(|i| i as UplinkId)
            .ok_or_else(|| {
                let names: Vec<&str> = self.config.wans.iter().map(|w| w.name.as_str()).collect();
                Reply::error(format!(
                    "no uplink {name:?} (uplinks: {})",
                    names.join(", ")
                ))
            })
    }

    fn status(&self) -> Reply {
        let now = self.epoch.elapsed();
        let stats = self.router.stats();
        let controls: Vec<UplinkControl> = {
            let monitor = health::lock(&self.monitor);
            (0..self.config.wans.len())
                .map(|id| {
                    let report = monitor.report(id as UplinkId);
                    UplinkControl {
                        admin: report.admin,
                        since_s: now.saturating_sub(report.since).as_secs(),
                        rtt_ms: report.rtt_ms,
                        loss: report.loss,
                    }
                })
                .collect()
        };
        let mut status = StatusReport::new(&self.config, &stats, &controls);
        status.config_file = self.config_file.clone();
        status.config_age_s = self.loaded.elapsed().as_secs();
        status.uptime_s = now.as_secs();
        status.io = self.io.clone();
        status.workers = (self.workers)();
        Reply::Status {
            ok: true,
            status: Box::new(status),
        }
    }

    fn flows(&self, uplink: Option<&str>, host: Option<Ipv4Addr>, limit: Option<usize>) -> Reply {
        let uplink = match uplink.map(|name| self.uplink_id(name)).transpose() {
            Ok(uplink) => uplink,
            Err(reply) => return reply,
        };
        let host = host.map(|h| h.octets());
        let flows = self
            .router
            .flows(self.epoch.elapsed(), limit.unwrap_or(usize::MAX), |spec| {
                uplink.is_none_or(|u| spec.uplink == u)
                    && host.is_none_or(|h| {
                        spec.inside.addr == h || spec.outside.addr == h || spec.remote.addr == h
                    })
            });
        Reply::Flows {
            ok: true,
            flows: flows
                .iter()
                .map(|f| FlowReport::new(f, &self.config.wans[usize::from(f.spec.uplink)].name))
                .collect(),
        }
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
            Request::Uplink { name, state } => {
                let id = match self.uplink_id(&name) {
                    Ok(id) => id,
                    Err(reply) => return reply,
                };
                let now = self.epoch.elapsed();
                let transition = health::lock(&self.monitor).set_admin(id, state, now);
                let names: Vec<String> = self.config.wans.iter().map(|w| w.name.clone()).collect();
                if let Some(transition) = &transition {
                    health::apply(
                        &self.router,
                        &names,
                        self.config.health.hook.as_deref(),
                        transition,
                    );
                }
                let up = health::lock(&self.monitor).is_up(id);
                Reply::done(format!(
                    "{name}: {} ({})",
                    if up { "up" } else { "down" },
                    format!("{state:?}").to_lowercase()
                ))
            }
            Request::Reload => Reply::error(
                "reload is not implemented yet: restart xwan to apply a changed configuration",
            ),
        }
    }
}

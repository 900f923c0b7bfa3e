//! The control plane around a running router: a Unix socket speaking
//! line-delimited JSON (`xwan status`, `flows`, `uplink`, `reload`, `events`), and the
//! Prometheus metrics endpoint.

mod client;
mod events;
pub mod metrics;
pub mod page;
pub mod protocol;
mod server;

use std::path::PathBuf;

pub use client::{request, subscribe};
pub use events::EventBus;
pub use metrics::{MetricsServer, MetricsSource};
pub use protocol::{AdminState, Event, FlowReport, Reply, Request, StatusReport, UplinkControl};
pub use server::{ControlServer, Handler};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {}: another xwan is running and answers on it", .0.display())]
    InUse(PathBuf),
    #[error("control socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "permission denied on the control socket {}: xwan status and flows need root or membership \
         of the [control] group; uplink and reload need root",
        .0.display()
    )]
    PermissionDenied(PathBuf),
    #[error("cannot reach xwan at {}: {source} (is `xwan run` running? is this the right --socket?)", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("unexpected reply from xwan: {0}")]
    Protocol(String),
}

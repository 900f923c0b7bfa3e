//! What `xwan run` is asked to do, and why it can fail to start.

use crate::config::PortRange;
use crate::control::ControlError;
use crate::io::afpacket::{FilterError, PacketError};
use crate::io::afxdp::XdpError;
use crate::io::system::SystemError;
use crate::io::ZeroCopy;

/// Which backend moves the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// The faster of the two that this machine can run (`plan`).
    Auto,
    /// XDP program + AF_XDP sockets.
    Xdp,
    /// AF_PACKET raw sockets (the kernel keeps a copy of every frame).
    Packet,
}

/// How `xwan run` runs, from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub io: IoMode,
    /// Worker threads; None: the largest RX queue count of the interfaces.
    pub queues: Option<u32>,
    pub zero_copy: ZeroCopy,
    /// CPUs to pin workers to (wrapping); empty: no pinning.
    pub cpus: Vec<usize>,
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
    #[error("{0}")]
    Unsupported(String),
    #[error("reading the interfaces' MTUs and addresses: {0}")]
    Interfaces(String),
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

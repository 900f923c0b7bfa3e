//! The router core: one frame in, rewritten in place, one verdict out.
//! No I/O and no clock of its own: time is passed in.

mod verdict;

use std::net::Ipv4Addr;
use std::time::Duration;

pub use verdict::*;

use crate::config::{Config, UplinkId};

/// MAC addresses of the router's own interfaces, as the I/O layer found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceMacs {
    pub lan: [u8; 6],
    /// One per uplink, in config order.
    pub wans: Vec<[u8; 6]>,
}

/// What the I/O layer knows about a frame besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    /// Where it came in.
    pub port: Port,
    /// Monotonic time since an epoch the caller chooses (the same for every call).
    pub now: Duration,
    /// The L4 checksum is partial (CHECKSUM_PARTIAL from a local sender):
    /// the core writes a full checksum.
    pub checksum_partial: bool,
}

/// The shared router: one per process, used by every worker thread at once.
pub struct Router {
    _private: (),
}

/// A worker thread's handle: holds that worker's counters.
pub struct Worker {
    _private: (),
}

impl Router {
    pub fn new(_config: &Config, _macs: InterfaceMacs) -> Router {
        todo!("core under construction")
    }

    /// A handle for one worker thread; its counters are part of [`Router::stats`].
    pub fn worker(&self) -> Worker {
        todo!("core under construction")
    }

    /// Process one frame: rewrite it in place and say where it goes.
    pub fn process(&self, _worker: &mut Worker, _frame: &mut [u8], _meta: FrameMeta) -> Verdict {
        todo!("core under construction")
    }

    /// Set the MAC of an uplink's gateway (from the kernel's neighbour table).
    pub fn set_gateway_mac(&self, _uplink: UplinkId, _mac: Option<[u8; 6]>) {
        todo!("core under construction")
    }

    /// Set the MAC of a LAN host (from the kernel's neighbour table).
    pub fn set_lan_mac(&self, _addr: Ipv4Addr, _mac: [u8; 6]) {
        todo!("core under construction")
    }

    /// LAN addresses whose MAC the core needed and did not have.
    pub fn unresolved_lan_hosts(&self) -> Vec<Ipv4Addr> {
        todo!("core under construction")
    }

    /// Health input: whether an uplink may take new flows.
    pub fn set_uplink_up(&self, _uplink: UplinkId, _up: bool) {
        todo!("core under construction")
    }

    /// Expire idle flows and free their NAT ports; returns how many were removed.
    pub fn expire(&self, _now: Duration) -> usize {
        todo!("core under construction")
    }
}

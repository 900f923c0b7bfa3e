//! The I/O layer: it moves frames between the interfaces and the router core,
//! and is the only part of xwan that talks to the kernel.
//!
//! - [`afxdp`]: AF_XDP sockets fed by an XDP program that redirects only the traffic
//!   xwan owns; one `QueueWorker` thread per RX queue index.
//! - [`afpacket`]: AF_PACKET raw sockets, for machines or drivers without AF_XDP, and
//!   the nftables table that keeps the kernel from also handling xwan's traffic.
//!
//! Both take a [`DataPathSetup`], run one worker thread per queue index and share
//! the idle policy of `idle` (spin, then sleep in `poll`).
//!
//! - `sys`: every libc and libbpf C call, each behind a checked wrapper with its
//!   safety contract written down; nothing else in `io` calls C directly.
//! - [`system`]: what the data path needs from the kernel (interfaces, addresses,
//!   neighbours, sysctls).
//! - `probe`: health probes on the wire; `sync`: poison-tolerant locks.
//! - [`run`]: `xwan run` (in `runtime`), which ties the router core, a backend and
//!   the kernel together: start-up and discovery, signals, the housekeeping threads,
//!   the neighbour and health threads, the control-socket glue, and a guard for
//!   every kernel change so a failed start or a stop undoes them.

pub mod afpacket;
pub mod afxdp;
mod bpf_object;
pub mod features;
mod idle;
pub mod offload;
mod probe;
mod runtime;
mod sync;
mod sys;
pub mod system;
mod systemd;

pub use runtime::{
    kernel_report, resolve_auto, run, DataPathReport, IoMode, KernelReport, RunError, RunOptions,
    Running,
};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::config::PortRange;
use crate::router::{FrameMeta, Lane, Port, Router, Verdict};

/// What a backend's workers call for every frame: the router core in production,
/// simpler processors in the backends' own tests.
pub trait FrameProcessor: Send + Sync + 'static {
    /// Per-thread state (counters); made on the worker thread that uses it.
    type Worker;

    fn worker(&self) -> Self::Worker;

    /// Rewrites the frame in place and says where it goes.
    fn process(&self, worker: &mut Self::Worker, frame: &mut [u8], meta: FrameMeta) -> Verdict;

    /// Hands `send` the frames the last `process` call made besides the one
    /// it returned (later fragments, fragments it had held, an ICMP error
    /// bigger than the frame it answers), each with the
    /// port it goes out by, in order; called after every `process`.
    fn drain(&self, _worker: &mut Self::Worker, _send: &mut dyn FnMut(Port, &[u8])) {}

    /// Hands `punt` the frames the last `process` call left to the kernel
    /// besides the one it returned (the held later fragments of a packet
    /// whose first fragment the kernel gets), in order. Only a backend whose
    /// kernel does not see every frame itself takes them (AF_XDP's punt path).
    fn drain_kernel(&self, _worker: &mut Self::Worker, _punt: &mut dyn FnMut(&mut [u8])) {}
}

impl FrameProcessor for Router {
    type Worker = Lane;

    fn worker(&self) -> Lane {
        Router::lane(self)
    }

    fn process(&self, worker: &mut Lane, frame: &mut [u8], meta: FrameMeta) -> Verdict {
        Router::process(self, worker, frame, meta)
    }

    fn drain(&self, worker: &mut Lane, send: &mut dyn FnMut(Port, &[u8])) {
        worker.drain(send);
    }

    fn drain_kernel(&self, worker: &mut Lane, punt: &mut dyn FnMut(&mut [u8])) {
        worker.drain_kernel(punt);
    }
}

/// One interface the data path attaches to.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// What this interface is to the router core.
    pub port: Port,
    /// Number of RX queues the interface has.
    pub rx_queues: u32,
}

/// Whether AF_XDP sockets bind in zero-copy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy where the driver supports it, copy mode otherwise.
    Auto,
    On,
    Off,
}

/// The traffic xwan owns, so the XDP program (or the kernel-side filters of the
/// packet backend) can leave everything else to the kernel.
#[derive(Debug, Clone)]
pub struct OwnedTraffic {
    /// Inside prefixes: LAN traffic from these to anywhere else is xwan's.
    pub lan_networks: Vec<Ipv4Net>,
    /// Destinations always left to the kernel (bypass rules that match on
    /// destination only, less what an earlier rule of another action can match).
    pub bypass: Vec<Ipv4Net>,
    /// The router's own addresses on every interface: traffic to them is the kernel's.
    pub local_addresses: Vec<Ipv4Addr>,
    /// One per uplink, in config order: that uplink's SNAT address.
    pub wan_addresses: Vec<Ipv4Addr>,
    /// The SNAT port range.
    pub nat_ports: PortRange,
    /// TCP ports forwarded to the LAN (per WAN address they listen on).
    pub tcp_forwards: Vec<(Ipv4Addr, u16)>,
    /// UDP ports forwarded to the LAN (per WAN address they listen on).
    pub udp_forwards: Vec<(Ipv4Addr, u16)>,
    /// The IPv6 traffic xwan owns; empty without IPv6 in the configuration.
    pub v6: OwnedTraffic6,
}

/// The IPv6 traffic xwan owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedTraffic6 {
    /// Inside prefixes: LAN traffic from these to anywhere else is xwan's.
    pub lan_networks: Vec<Ipv6Net>,
    /// Destinations always left to the kernel, as [`OwnedTraffic::bypass`].
    pub bypass: Vec<Ipv6Net>,
    /// The router's own global addresses (its LAN address, the uplinks'):
    /// traffic to them is the kernel's, but for NAT66 ports.
    pub local_addresses: Vec<Ipv6Addr>,
    /// One per uplink, in config order.
    pub uplinks: Vec<OwnedUplink6>,
}

/// What of an uplink's IPv6 traffic is xwan's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedUplink6 {
    /// Whole prefixes: the LAN prefixes mapped onto the uplink's (prefix,
    /// npt), or the LAN prefixes it routes (off).
    pub prefixes: Vec<Ipv6Net>,
    /// The NAT66 address (masquerade), whose NAT ports are xwan's.
    pub address: Option<Ipv6Addr>,
    /// Ports forwarded on that address: (protocol name, port).
    pub forwards: Vec<(&'static str, u16)>,
}

/// Everything a backend needs to start.
#[derive(Debug, Clone)]
pub struct DataPathSetup {
    /// The LAN interface first, then one per uplink in config order.
    pub interfaces: Vec<Interface>,
    /// Worker threads, one per RX queue index.
    pub queues: u32,
    pub zero_copy: ZeroCopy,
    /// CPUs to pin workers to, in worker order (wrapping); none: no pinning.
    pub cpus: Vec<usize>,
    pub owned: OwnedTraffic,
    /// Set to true to make every worker stop.
    pub stop: Arc<AtomicBool>,
    /// The router's clock: `FrameMeta::now` is the time since this instant, and
    /// `Router::expire` must be given times from the same epoch.
    pub epoch: Instant,
}

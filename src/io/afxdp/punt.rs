//! The punt path: a frame the XDP program redirected to a worker but the core
//! leaves to the kernel ([`Verdict::Kernel`](crate::router::Verdict): a bypass
//! rule anywhere in the rule list, traffic to the router the program could not
//! tell apart such as the fragments of its own packets, TTL expiry the core
//! cannot answer) is handed to the kernel
//! instead of being dropped, as VPP's and DPDK's exception paths do: it is
//! written to a TAP device, [`DEVICE`], and the kernel receives it there as if
//! it had come in on a NIC, and routes, forwards or delivers it as it would
//! have.
//!
//! How the kernel sees a punted frame:
//! - its ingress device is the TAP device, not the LAN or WAN interface it came
//!   in by: the device's `rp_filter` is turned off, so the reverse-path check
//!   does not refuse a LAN source arriving there (a strict
//!   `net.ipv4.conf.all.rp_filter = 1` still would: the kernel takes the
//!   higher of the two, and xwan warns at start);
//! - its destination MAC is rewritten to the device's own, so the kernel takes
//!   it as addressed to it (not `PACKET_OTHERHOST`);
//! - the kernel's answers and what it forwards leave by its routes and
//!   neighbour table as usual, never through the TAP device (it has no address
//!   and no route).
//!
//! IPv6 frames are punted the same way (the fragments of the router's own
//! packets to a NAT66 address, a bypass rule the program cannot tell): the
//! kernel reassembles, delivers or forwards them as it would have; the
//! core completed a partial IPv6 checksum before it gave its verdict, so
//! [`Punt::inject`] completes IPv4's alone.
//!
//! The device is not persistent: it disappears when xwan exits, even killed.
//!
//! Besides the frame a worker gets back from the core, the core can leave
//! the kernel frames it held (the later fragments of a packet whose first
//! fragment turned out to be the kernel's): [`Punting`] punts those after
//! each frame, counted with the worker's own.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::warn;

use super::worker::WorkerCounters;
use super::XdpError;
use crate::io::{sys, system, FrameProcessor};
use crate::packet;
use crate::router::{FrameMeta, Port, Verdict};

/// The TAP device's name, one per network namespace (one xwan runs per
/// namespace: the XDP program refuses a second).
pub const DEVICE: &str = "xwan-punt";

/// The TAP device frames go to the kernel through.
pub struct Punt {
    tap: sys::tap::Tap,
    mac: [u8; 6],
}

impl Punt {
    /// Creates the TAP device, brings it up and turns its `rp_filter` off.
    pub fn open() -> Result<Punt, XdpError> {
        let setup = |what: &str, detail: String| {
            XdpError::Setup(format!("the punt device {DEVICE}: {what}: {detail}"))
        };
        let tap = sys::tap::Tap::create(DEVICE).map_err(|err| match err.raw_os_error() {
            Some(libc::EBUSY) => XdpError::Busy {
                interface: DEVICE.to_string(),
                detail: "another xwan in this network namespace holds it; stop that one first"
                    .to_string(),
            },
            _ => setup("cannot create it (is /dev/net/tun there?)", err.to_string()),
        })?;
        let mac = system::link(tap.name())
            .map_err(|err| setup("cannot read its MAC", err.to_string()))?
            .mac;
        system::write_sysctl(&format!("net.ipv4.conf.{}.rp_filter", tap.name()), "0")
            .map_err(|err| setup("cannot turn its rp_filter off", err.to_string()))?;
        if system::read_sysctl("net.ipv4.conf.all.rp_filter").is_ok_and(|v| v == "1") {
            warn!(
                "net.ipv4.conf.all.rp_filter is 1 (strict): the kernel refuses frames xwan \
                 punts to it from LAN hosts through {DEVICE}; 2 (loose) or 0 lets them in"
            );
        }
        Ok(Punt { tap, mac })
    }

    /// Hands `frame` to the kernel; its destination MAC becomes the
    /// device's, and a partial TCP/UDP checksum (a LAN host's checksum
    /// offload: AF_XDP carries no flag for it, and the TAP device tells the
    /// kernel every checksum is complete) is completed.
    pub fn inject(&self, frame: &mut [u8]) -> std::io::Result<()> {
        if let Ok(parsed) = packet::parse(frame) {
            packet::complete_partial_checksum(frame, &parsed);
        }
        if let Some(dst) = frame.get_mut(..6) {
            dst.copy_from_slice(&self.mac);
        }
        self.tap.inject(frame)
    }
}

/// What an AF_XDP worker runs: the processor `P`, with the frames it leaves
/// to the kernel besides the one it returns punted after its other frames,
/// counted in the worker's `kernel_verdicts`, `punted` and `punt_failed`.
pub(super) struct Punting<P> {
    pub(super) inner: Arc<P>,
    pub(super) punt: Arc<Punt>,
    pub(super) counters: Arc<WorkerCounters>,
}

impl<P: FrameProcessor> FrameProcessor for Punting<P> {
    type Worker = P::Worker;

    fn worker(&self) -> P::Worker {
        self.inner.worker()
    }

    fn process(&self, worker: &mut P::Worker, frame: &mut [u8], meta: FrameMeta) -> Verdict {
        self.inner.process(worker, frame, meta)
    }

    fn drain(&self, worker: &mut P::Worker, send: &mut dyn FnMut(Port, &[u8])) {
        self.inner.drain(worker, send);
        self.inner.drain_kernel(worker, &mut |frame| {
            self.counters
                .kernel_verdicts
                .fetch_add(1, Ordering::Relaxed);
            let outcome = match self.punt.inject(frame) {
                Ok(()) => &self.counters.punted,
                Err(_) => &self.counters.punt_failed,
            };
            outcome.fetch_add(1, Ordering::Relaxed);
        });
    }
}

//! The AF_PACKET backend: raw sockets, for machines or drivers without AF_XDP.
//!
//! Each worker owns one socket per interface. With more than one worker, the
//! sockets of an interface form a `PACKET_FANOUT_HASH` group, so the kernel hands
//! each frame to exactly one worker, keeping a flow on one worker. A worker receives
//! up to [`socket::BATCH`] frames per `recvmmsg`, runs each through the router core
//! ([`worker`]),
//! and sends the forwarded ones with one `sendmmsg` per output interface.
//!
//! Super-frames (a local sender's unsplit TSO segments, GRO-merged packets: the
//! kernel shows them to packet sockets whole, up to 64 KiB, behind a
//! `virtio_net_hdr`) of TCP over IPv4 go through the core whole: translated once,
//! their checksum left partial, and sent whole behind a `virtio_net_hdr` asking
//! for the same segmentation, so the egress device or the kernel cuts them (GSO
//! passthrough). Any other super-frame, or one the core cannot pass whole
//! (segments too big for the egress MTU, say), is cut into segments here first,
//! as the kernel would cut them ([`gso`]), and each goes through the core on its
//! own; no interface offload setting needs changing either way.
//!
//! The kernel keeps its own copy of every frame in this mode: frames the core leaves
//! to the kernel need no work here, and the kernel must be kept from also forwarding
//! (or answering) the traffic xwan owns, which is what [`KernelFilter`] does.

mod filter;
mod gso;
mod socket;
mod worker;

pub use filter::{FilterError, FilterHandle, KernelFilter, TABLE};

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::router::Port;

use super::systemd::Progress;
use super::{DataPathSetup, FrameProcessor};
use socket::{PacketSocket, RxBatch};
use worker::PacketWorker;

/// The longest frame a receive slot holds: a 64 KiB IP super-frame behind an
/// Ethernet header and two VLAN tags.
const FRAME_ROOM: usize = 65536 + 14 + 8;

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("the packet data path needs at least one interface")]
    NoInterfaces,
    #[error("the packet data path needs at least one worker (queues = 0)")]
    NoWorkers,
    #[error("interfaces {first} and {second} are both {port:?}")]
    DuplicatePort {
        first: String,
        second: String,
        port: Port,
    },
    #[error("interface {interface}: {op}: {source}")]
    Socket {
        interface: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("starting packet worker {worker}: {source}")]
    Spawn {
        worker: usize,
        #[source]
        source: io::Error,
    },
    #[error("packet worker {0} panicked")]
    WorkerPanicked(usize),
}

/// Counters of one worker (or, summed, of the data path).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PacketCounters {
    /// Frames received from the sockets.
    pub received: u64,
    /// Frames the core forwarded and the kernel took for sending.
    pub forwarded: u64,
    /// Frames the core forwarded that the kernel refused to send.
    pub tx_failed: u64,
    /// Frames the core left to the kernel (which has its own copy).
    pub to_kernel: u64,
    /// Frames the core dropped.
    pub dropped: u64,
    /// Frames addressed to another host's MAC (promiscuous interface), not routed.
    pub not_for_us: u64,
    /// Frames longer than a receive slot (64 KiB): not processed.
    pub truncated: u64,
    /// Super-frames cut into segments (each segment then counts as received).
    pub segmented: u64,
    /// Super-frames passed through whole: translated once and sent whole for the
    /// egress device or the kernel to cut (counted in `forwarded` too).
    pub gso_passthrough: u64,
    /// Bytes of those super-frames (Ethernet header included).
    pub gso_passthrough_bytes: u64,
    /// Super-frames that could not be cut (not IPv4 TCP or UDP): dropped.
    pub unsplittable: u64,
    /// Frames the kernel could not hand over (a receive error other than "none
    /// queued"): lost.
    pub rx_errors: u64,
    /// Forward verdicts naming a port without an interface, or a length beyond
    /// the frame: not sent.
    pub bad_verdict: u64,
    /// Frames the kernel dropped because a socket's receive queue was full.
    pub socket_drops: u64,
}

impl std::ops::AddAssign for PacketCounters {
    fn add_assign(&mut self, other: PacketCounters) {
        self.received += other.received;
        self.forwarded += other.forwarded;
        self.tx_failed += other.tx_failed;
        self.to_kernel += other.to_kernel;
        self.dropped += other.dropped;
        self.not_for_us += other.not_for_us;
        self.truncated += other.truncated;
        self.segmented += other.segmented;
        self.gso_passthrough += other.gso_passthrough;
        self.gso_passthrough_bytes += other.gso_passthrough_bytes;
        self.unsplittable += other.unsplittable;
        self.rx_errors += other.rx_errors;
        self.bad_verdict += other.bad_verdict;
        self.socket_drops += other.socket_drops;
    }
}

/// A worker's figures while it runs, for `xwan status` and the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PacketWorkerStats {
    pub received: u64,
    pub forwarded: u64,
    /// Loop rounds that received something, and rounds that found nothing.
    pub batches: u64,
    pub idle_rounds: u64,
    pub gso_passthrough: u64,
    pub gso_passthrough_bytes: u64,
}

/// Where a worker publishes its [`PacketWorkerStats`] once per loop round.
#[derive(Default)]
struct LiveStats {
    received: AtomicU64,
    forwarded: AtomicU64,
    batches: AtomicU64,
    idle_rounds: AtomicU64,
    gso_passthrough: AtomicU64,
    gso_passthrough_bytes: AtomicU64,
}

impl LiveStats {
    fn publish(&self, counters: &PacketCounters, batches: u64, idle_rounds: u64) {
        for (cell, value) in [
            (&self.received, counters.received),
            (&self.forwarded, counters.forwarded),
            (&self.batches, batches),
            (&self.idle_rounds, idle_rounds),
            (&self.gso_passthrough, counters.gso_passthrough),
            (&self.gso_passthrough_bytes, counters.gso_passthrough_bytes),
        ] {
            cell.store(value, Ordering::Relaxed);
        }
    }

    fn read(&self) -> PacketWorkerStats {
        PacketWorkerStats {
            received: self.received.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            idle_rounds: self.idle_rounds.load(Ordering::Relaxed),
            gso_passthrough: self.gso_passthrough.load(Ordering::Relaxed),
            gso_passthrough_bytes: self.gso_passthrough_bytes.load(Ordering::Relaxed),
        }
    }
}

/// What the data path did, per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketReport {
    pub workers: Vec<PacketCounters>,
}

impl PacketReport {
    pub fn total(&self) -> PacketCounters {
        let mut total = PacketCounters::default();
        for worker in &self.workers {
            total += *worker;
        }
        total
    }
}

/// The running AF_PACKET data path: its worker threads.
pub struct PacketDataPath {
    workers: Vec<JoinHandle<Result<PacketCounters, PacketError>>>,
    stop: Arc<AtomicBool>,
    live: Arc<[LiveStats]>,
    progress: Arc<Progress>,
    /// Every worker socket (another descriptor of it) and its interface's
    /// name, for [`PacketDataPath::attach_filter`].
    sockets: Vec<(String, OwnedFd)>,
}

/// One interface as a worker sees it.
struct Attached {
    name: String,
    port: Port,
    socket: PacketSocket,
}

impl PacketDataPath {
    /// Opens the sockets (in the calling thread's network namespace), joins the
    /// fanout groups and starts `setup.queues` workers. A worker that fails sets
    /// `setup.stop`, so every other stops too; [`PacketDataPath::stop`] reports why.
    pub fn start<P: FrameProcessor>(
        processor: Arc<P>,
        setup: &DataPathSetup,
    ) -> Result<PacketDataPath, PacketError> {
        if setup.interfaces.is_empty() {
            return Err(PacketError::NoInterfaces);
        }
        if setup.queues == 0 {
            return Err(PacketError::NoWorkers);
        }
        for (i, a) in setup.interfaces.iter().enumerate() {
            if let Some(b) = setup.interfaces[..i].iter().find(|b| b.port == a.port) {
                return Err(PacketError::DuplicatePort {
                    first: b.name.clone(),
                    second: a.name.clone(),
                    port: a.port,
                });
            }
        }
        let workers = setup.queues as usize;
        let mut sockets: Vec<Vec<Attached>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let mut own = Vec::with_capacity(setup.interfaces.len());
            for interface in &setup.interfaces {
                let socket = PacketSocket::open(interface.ifindex).map_err(|source| {
                    PacketError::Socket {
                        interface: interface.name.clone(),
                        op: "opening an AF_PACKET socket",
                        source,
                    }
                })?;
                own.push(Attached {
                    name: interface.name.clone(),
                    port: interface.port,
                    socket,
                });
            }
            sockets.push(own);
        }
        if workers > 1 {
            join_fanout_groups(&sockets)?;
        }
        let mut dups = Vec::with_capacity(workers * setup.interfaces.len());
        for attached in sockets.iter().flatten() {
            let fd = attached
                .socket
                .dup()
                .map_err(|source| PacketError::Socket {
                    interface: attached.name.clone(),
                    op: "duplicating an AF_PACKET socket",
                    source,
                })?;
            dups.push((attached.name.clone(), fd));
        }

        let mut path = PacketDataPath {
            workers: Vec::with_capacity(workers),
            stop: Arc::clone(&setup.stop),
            live: (0..workers).map(|_| LiveStats::default()).collect(),
            progress: Progress::new(workers),
            sockets: dups,
        };
        for (index, attached) in sockets.into_iter().enumerate() {
            let worker = PacketWorker {
                index,
                processor: Arc::clone(&processor),
                attached,
                epoch: setup.epoch,
                stop: Arc::clone(&setup.stop),
                live: Arc::clone(&path.live),
                cpu: (!setup.cpus.is_empty()).then(|| setup.cpus[index % setup.cpus.len()]),
                progress: Arc::clone(&path.progress),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("xwan-pkt{index}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(handle) => path.workers.push(handle),
                Err(source) => {
                    let _ = path.stop();
                    return Err(PacketError::Spawn {
                        worker: index,
                        source,
                    });
                }
            }
        }
        Ok(path)
    }

    /// Attaches the socket filter program `prog` to every worker socket:
    /// the frames it refuses no longer reach the workers (the in-kernel
    /// fast path's, `io/offload`).
    pub fn attach_filter(&self, prog: RawFd) -> Result<(), PacketError> {
        for (name, fd) in &self.sockets {
            socket::attach_filter(fd, prog).map_err(|source| PacketError::Socket {
                interface: name.clone(),
                op: "attaching the offload socket filter",
                source,
            })?;
        }
        Ok(())
    }

    /// Reads every worker's live figures, in worker order.
    pub fn stats_reader(&self) -> impl Fn() -> Vec<PacketWorkerStats> + Send + Sync + 'static {
        let live = Arc::clone(&self.live);
        move || live.iter().map(LiveStats::read).collect()
    }

    /// The workers' loop rounds, for the systemd watchdog.
    pub(crate) fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Stops every worker and returns their counters, or the first worker's error.
    pub fn stop(mut self) -> Result<PacketReport, PacketError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut workers = Vec::with_capacity(self.workers.len());
        let mut first_error = None;
        for (index, handle) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(counters)) => workers.push(counters),
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(_) => {
                    first_error.get_or_insert(PacketError::WorkerPanicked(index));
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(PacketReport { workers }),
        }
    }
}

/// Dropping a data path that was not stopped stops its workers and waits for them.
impl Drop for PacketDataPath {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Puts socket `i` of every worker in one fanout group per interface, then drops
/// whatever each socket received on its own before it joined (the kernel has its
/// own copy of those frames; they are lost to xwan only during start-up).
fn join_fanout_groups(sockets: &[Vec<Attached>]) -> Result<(), PacketError> {
    let fanout_error = |attached: &Attached| {
        let name = attached.name.clone();
        move |source| PacketError::Socket {
            interface: name,
            op: "joining the PACKET_FANOUT group",
            source,
        }
    };
    for i in 0..sockets[0].len() {
        let first = &sockets[0][i];
        // Kernels before 6.7 refuse the flag: the workers then skip the kernel's
        // outgoing frames by their packet type instead.
        let mut flags = libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        let group = match first.socket.join_fanout(None, flags) {
            Ok(group) => group,
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                flags = 0;
                first
                    .socket
                    .join_fanout(None, flags)
                    .map_err(fanout_error(first))?
            }
            Err(err) => return Err(fanout_error(first)(err)),
        };
        for worker in &sockets[1..] {
            worker[i]
                .socket
                .join_fanout(Some(group), flags)
                .map_err(fanout_error(&worker[i]))?;
        }
    }
    let mut scratch = RxBatch::new(FRAME_ROOM);
    for attached in sockets.iter().flatten() {
        attached
            .socket
            .drain(&mut scratch)
            .map_err(|source| PacketError::Socket {
                interface: attached.name.clone(),
                op: "draining frames received before the fanout",
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

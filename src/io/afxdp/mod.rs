//! The AF_XDP backend (`xwan run --io xdp`).
//!
//! An XDP program ([`program`], source in `xwan.bpf.c`) runs on the LAN and on every
//! WAN interface and redirects only the frames xwan owns to AF_XDP sockets; the
//! kernel keeps everything else (ARP, IPv6, the router's own traffic, bypassed
//! prefixes). One worker thread per RX queue index ([`worker`]) owns that
//! queue's socket on every interface, all on one UMEM, runs each frame through a
//! [`FrameProcessor`] (the router core) and moves forwarded frames' descriptors from
//! one socket's RX ring to another's TX ring.
//!
//! Frames the core hands to the kernel ([`Verdict::Kernel`](crate::router::Verdict))
//! go to it through the punt path ([`punt`]: a TAP device), counted in
//! `kernel_verdicts`, `punted` and `punt_failed`.

mod program;
mod punt;
mod worker;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

pub use program::{OwnedMaps, XdpMode};
use program::{Program, MAX_QUEUES};
pub use punt::DEVICE as PUNT_DEVICE;
use punt::{Punt, Punting};
use worker::{BindMode, QueueWorker, FRAME_SIZE};
pub use worker::{WorkerCounters, WorkerEnd};

use crate::io::bpf_object::BpfProgram;
use crate::io::offload::OffloadParts;
use crate::io::system::{self, SystemError};
use crate::io::{sys, DataPathSetup, FrameProcessor, ZeroCopy};
use crate::router::Router;

/// The largest interface MTU the backend accepts: a frame (MTU + Ethernet and VLAN
/// headers) must fit in a UMEM frame of [`FRAME_SIZE`] bytes less the kernel's
/// 256-byte headroom, and native XDP on veth refuses MTUs much above 3000 anyway.
pub const MAX_MTU: u32 = 3000;

/// Why the AF_XDP backend cannot start or run. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {0} does not exist in this network namespace: check the interface names in the config")]
    NoInterface(String),
    #[error("{0} needs root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW): run xwan as root, or try --io packet")]
    Permission(String),
    #[error("interface {interface} cannot run XDP ({detail}): try --io packet")]
    XdpUnsupported { interface: String, detail: String },
    #[error("AF_XDP sockets are not available on {interface} ({detail}): try --io packet")]
    AfXdpUnsupported { interface: String, detail: String },
    #[error(
        "zero-copy AF_XDP is not supported on {interface} ({detail}): set zero-copy to auto or off"
    )]
    ZeroCopyUnsupported { interface: String, detail: String },
    #[error(
        "{interface} has MTU {mtu}, the AF_XDP backend handles at most {max} (frames of {frame} bytes): \
         lower it (ip link set dev {interface} mtu 1500) or try --io packet"
    )]
    MtuTooLarge {
        interface: String,
        mtu: u32,
        max: u32,
        frame: u32,
    },
    #[error(
        "{interface} has {rx_queues} RX queue(s) but xwan runs {queues} worker(s), one per queue index: \
         make them equal (the queues setting, or ethtool -L {interface} ...), or frames on the other queues \
         would not reach xwan"
    )]
    QueueMismatch {
        interface: String,
        rx_queues: u32,
        queues: u32,
    },
    #[error("cannot attach XDP to {interface}: {detail}")]
    Busy { interface: String, detail: String },
    #[error("cannot load the XDP program: {0}; if the kernel lacks BPF support, try --io packet")]
    Load(String),
    #[error("cannot fill the XDP program's map {map}: {detail}")]
    Map { map: String, detail: String },
    #[error("AF_XDP socket on {interface} queue {queue}: {detail}")]
    Socket {
        interface: String,
        queue: u32,
        detail: String,
    },
    #[error("cannot pin the worker of queue {queue} to CPU {cpu}: {source}")]
    Pin {
        queue: u32,
        cpu: usize,
        source: io::Error,
    },
    #[error("AF_XDP worker: {0}")]
    Thread(String),
    #[error("invalid data path setup: {0}")]
    Setup(String),
}

/// One worker's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub queue: u32,
    /// Frames received from the XDP program.
    pub rx: u64,
    /// Frames put on a TX ring.
    pub tx: u64,
    /// Non-empty RX batches.
    pub batches: u64,
    /// Times the worker blocked in poll() after idle rounds.
    pub idle_polls: u64,
    /// Frames the core handed to the kernel.
    pub kernel_verdicts: u64,
    /// Of those, frames the punt device took to the kernel.
    pub punted: u64,
    /// Of those, frames the punt device refused: lost.
    pub punt_failed: u64,
    /// Frames the core dropped.
    pub drop_verdicts: u64,
    /// Forwarded frames dropped because the TX ring was full.
    pub tx_ring_full: u64,
    /// Forward verdicts to a port without an interface, or with a length outside the frame.
    pub bad_forwards: u64,
    /// Frames the core made besides the ones it returned (fragments) that
    /// found no free UMEM frame.
    pub no_free_frame: u64,
}

impl WorkerStats {
    fn read(queue: u32, counters: &WorkerCounters) -> WorkerStats {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            queue,
            rx: get(&counters.rx),
            tx: get(&counters.tx),
            batches: get(&counters.batches),
            idle_polls: get(&counters.idle_polls),
            kernel_verdicts: get(&counters.kernel_verdicts),
            punted: get(&counters.punted),
            punt_failed: get(&counters.punt_failed),
            drop_verdicts: get(&counters.drop_verdicts),
            tx_ring_full: get(&counters.tx_ring_full),
            bad_forwards: get(&counters.bad_forwards),
            no_free_frame: get(&counters.no_free_frame),
        }
    }
}

/// What a stopped data path reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpReport {
    pub workers: Vec<(WorkerStats, WorkerEnd)>,
    /// Frames not back in a worker's pool (free or on a fill ring): must be 0.
    pub frames_leaked: u64,
    pub zero_copy: bool,
    /// How the program ran on each interface.
    pub modes: Vec<(String, XdpMode)>,
}

struct WorkerHandle {
    queue: u32,
    counters: Arc<WorkerCounters>,
    thread: JoinHandle<Result<WorkerEnd, XdpError>>,
}

/// A running AF_XDP data path. Stop it with [`XdpDataPath::stop`]; dropping it stops
/// the workers too, without a report.
pub struct XdpDataPath {
    program: Program,
    workers: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
    zero_copy: bool,
}

impl XdpDataPath {
    /// Starts the data path with the router core; with `offload`, the
    /// object's fast path (`xwan_offload`) is loaded beside the XDP program,
    /// for [`XdpDataPath::offload_parts`].
    pub fn start(
        router: Arc<Router>,
        setup: &DataPathSetup,
        offload: bool,
    ) -> Result<XdpDataPath, XdpError> {
        XdpDataPath::start_with(router, setup, offload)
    }

    /// Starts the data path with any frame processor: checks the interfaces, loads
    /// and fills the XDP program, opens the sockets, attaches the program, and starts
    /// one pinned worker per queue index.
    pub fn start_with<P: FrameProcessor>(
        processor: Arc<P>,
        setup: &DataPathSetup,
        offload: bool,
    ) -> Result<XdpDataPath, XdpError> {
        check_setup(setup)?;
        let programs: &[BpfProgram] = if offload {
            &[BpfProgram::Xdp, BpfProgram::Offload]
        } else {
            &[BpfProgram::Xdp]
        };
        let mut program = Program::load(&setup.interfaces, &setup.owned, programs)?;
        let punt = Arc::new(Punt::open()?);
        let (workers, zero_copy) = open_workers(setup, &punt)?;
        for worker in &workers {
            for (slot, fd) in worker.socket_fds() {
                program.register_socket(slot, worker.queue, fd)?;
            }
        }
        program.attach(&setup.interfaces)?;

        let mut path = XdpDataPath {
            program,
            workers: Vec::with_capacity(workers.len()),
            stop: Arc::clone(&setup.stop),
            zero_copy,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for (index, worker) in workers.into_iter().enumerate() {
            let queue = worker.queue;
            let counters = Arc::new(WorkerCounters::default());
            let cpu = (!setup.cpus.is_empty()).then(|| setup.cpus[index % setup.cpus.len()]);
            let thread = {
                let processor = Punting {
                    inner: Arc::clone(&processor),
                    punt: Arc::clone(&punt),
                    counters: Arc::clone(&counters),
                };
                let counters = Arc::clone(&counters);
                let stop = Arc::clone(&setup.stop);
                let ready = ready_tx.clone();
                let epoch = setup.epoch;
                std::thread::Builder::new()
                    .name(format!("xwan-xdp-q{queue}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            if let Err(source) = sys::sched::pin_to_cpu(cpu) {
                                let _ = ready.send(Err(XdpError::Pin { queue, cpu, source }));
                                return Ok(WorkerEnd::default());
                            }
                        }
                        let _ = ready.send(Ok(()));
                        drop(ready);
                        let result = worker.run(&processor, &counters, &stop, epoch);
                        if result.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        result
                    })
            };
            match thread {
                Ok(thread) => path.workers.push(WorkerHandle {
                    queue,
                    counters,
                    thread,
                }),
                Err(err) => {
                    path.abort();
                    return Err(XdpError::Thread(format!(
                        "cannot start a worker thread: {err}"
                    )));
                }
            }
        }
        drop(ready_tx);
        for _ in 0..path.workers.len() {
            let started = ready_rx
                .recv()
                .map_err(|_| XdpError::Thread("a worker ended while starting".to_string()))
                .and_then(|r| r);
            if let Err(err) = started {
                path.abort();
                return Err(err);
            }
        }
        Ok(path)
    }

    /// A function that reads every worker's counters, for other threads.
    pub fn stats_reader(&self) -> impl Fn() -> Vec<WorkerStats> + Send + Sync + 'static {
        let workers: Vec<(u32, Arc<WorkerCounters>)> = self
            .workers
            .iter()
            .map(|w| (w.queue, Arc::clone(&w.counters)))
            .collect();
        move || {
            workers
                .iter()
                .map(|(queue, counters)| WorkerStats::read(*queue, counters))
                .collect()
        }
    }

    /// Every worker's counters now.
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.workers
            .iter()
            .map(|w| WorkerStats::read(w.queue, &w.counters))
            .collect()
    }

    /// Whether the sockets run in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The program's maps of owned traffic (port forwards, bypass prefixes,
    /// addresses), to update them on a reload or an address change; `interfaces`
    /// and `owned` must be what the data path started with.
    pub fn owned_maps(
        &self,
        interfaces: &[crate::io::Interface],
        owned: &crate::io::OwnedTraffic,
    ) -> Result<OwnedMaps, XdpError> {
        self.program.owned_maps(interfaces, owned)
    }

    /// The in-kernel fast path's program and maps (`io/offload`).
    pub fn offload_parts(&self) -> Result<OffloadParts, XdpError> {
        self.program.offload_parts()
    }

    /// How the XDP program runs on each interface.
    pub fn modes(&self) -> Vec<(String, XdpMode)> {
        self.program.modes()
    }

    /// Stops the workers (sets the setup's stop flag), waits for them, detaches the
    /// program, and reports. The first worker error, if any, is returned instead.
    pub fn stop(mut self) -> Result<XdpReport, XdpError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut workers = Vec::new();
        let mut first_error = None;
        for handle in std::mem::take(&mut self.workers) {
            let stats = WorkerStats::read(handle.queue, &handle.counters);
            match handle.thread.join() {
                Ok(Ok(end)) => workers.push((stats, end)),
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(_) => {
                    first_error.get_or_insert(XdpError::Thread(format!(
                        "the worker of queue {} panicked",
                        handle.queue
                    )));
                }
            }
        }
        let modes = self.program.modes();
        let zero_copy = self.zero_copy;
        drop(self);
        if let Some(err) = first_error {
            return Err(err);
        }
        let frames_leaked = workers.iter().map(|(_, end)| end.frames_leaked).sum();
        Ok(XdpReport {
            workers,
            frames_leaked,
            zero_copy,
            modes,
        })
    }

    /// Stops and joins the workers without a report.
    fn abort(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in std::mem::take(&mut self.workers) {
            let _ = handle.thread.join();
        }
    }
}

impl Drop for XdpDataPath {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Interfaces exist with the ifindex given, their MTU fits a frame, and each has
/// exactly one RX queue per worker.
fn check_setup(setup: &DataPathSetup) -> Result<(), XdpError> {
    if setup.queues == 0 || setup.queues > MAX_QUEUES {
        return Err(XdpError::Setup(format!(
            "{} queues: the AF_XDP backend runs 1 to {MAX_QUEUES} workers",
            setup.queues
        )));
    }
    if setup.interfaces.is_empty() {
        return Err(XdpError::Setup("no interfaces".to_string()));
    }
    for interface in &setup.interfaces {
        let (ifindex, mtu) = system::index_and_mtu(&interface.name).map_err(|err| match err {
            SystemError::InterfaceNotFound(_) | SystemError::InvalidInterfaceName(_) => {
                XdpError::NoInterface(interface.name.clone())
            }
            _ => XdpError::Setup(format!("cannot read {}'s MTU: {err}", interface.name)),
        })?;
        if ifindex != interface.ifindex {
            return Err(XdpError::Setup(format!(
                "{} has ifindex {ifindex}, not {} as given",
                interface.name, interface.ifindex
            )));
        }
        if interface.rx_queues != setup.queues {
            return Err(XdpError::QueueMismatch {
                interface: interface.name.clone(),
                rx_queues: interface.rx_queues,
                queues: setup.queues,
            });
        }
        if mtu > MAX_MTU {
            return Err(XdpError::MtuTooLarge {
                interface: interface.name.clone(),
                mtu,
                max: MAX_MTU,
                frame: FRAME_SIZE,
            });
        }
    }
    Ok(())
}

/// Opens every queue's sockets in the requested mode; `Auto` tries zero-copy on
/// every interface first and falls back to copy mode (veth has no zero-copy).
fn open_workers(
    setup: &DataPathSetup,
    punt: &Arc<Punt>,
) -> Result<(Vec<QueueWorker>, bool), XdpError> {
    let open = |mode| -> Result<Vec<QueueWorker>, XdpError> {
        (0..setup.queues)
            .map(|queue| QueueWorker::open(queue, &setup.interfaces, mode, Arc::clone(punt)))
            .collect()
    };
    let workers = match setup.zero_copy {
        ZeroCopy::On => open(BindMode::ZeroCopy)?,
        ZeroCopy::Off => open(BindMode::Copy)?,
        ZeroCopy::Auto => match open(BindMode::ZeroCopy) {
            Ok(workers) => workers,
            Err(XdpError::ZeroCopyUnsupported { .. }) | Err(XdpError::Socket { .. }) => {
                open(BindMode::Copy)?
            }
            Err(err) => return Err(err),
        },
    };
    let zero_copy = match workers.first() {
        Some(worker) => worker.zero_copy()?,
        None => false,
    };
    Ok((workers, zero_copy))
}

/// The fast path's programs and maps from the BPF object loaded for no
/// interface and without its XDP program (`--io packet`, which runs none,
/// and the tests): the TC program and the workers' socket filter.
pub fn load_offload_parts(owned: &crate::io::OwnedTraffic) -> Result<OffloadParts, XdpError> {
    Program::load(&[], owned, &[BpfProgram::Offload, BpfProgram::Tap])?.offload_parts()
}

/// The fast path's parts as `--io xdp` loads them (with the XDP program, so
/// TC looks for its mark), never attached, and a descriptor of the XDP
/// program: for the tests.
#[cfg(test)]
pub fn load_xdp_offload_parts(
    owned: &crate::io::OwnedTraffic,
) -> Result<(OffloadParts, std::os::fd::OwnedFd), XdpError> {
    let program = Program::load(&[], owned, &[BpfProgram::Xdp, BpfProgram::Offload])?;
    let xdp = program.program_of(BpfProgram::Xdp)?;
    Ok((program.offload_parts()?, xdp))
}

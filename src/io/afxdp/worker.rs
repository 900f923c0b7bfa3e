//! One worker: the AF_XDP sockets of one queue index on every interface, all on one
//! UMEM, so forwarding moves a descriptor from one socket's RX ring to another's TX
//! ring without copying the frame.
//!
//! Where a frame is at any time: in the free stack, on a fill ring (or in the
//! kernel's hands between fill and RX), in the current batch, or on a TX ring (or
//! in the kernel's hands between TX and completion). The worker counts frames put
//! on and taken off each ring, so at shutdown every frame is accounted for.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xsk_rs::config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::punt::Punt;
use super::XdpError;
use crate::io::idle::{Idle, IdlePolicy};
use crate::io::{sys, FrameProcessor, Interface};
use crate::router::{FrameMeta, Port, Verdict};

/// UMEM frame size; the packet data room is this minus the kernel's 256-byte headroom.
pub const FRAME_SIZE: u32 = 4096;
/// Size of every ring (fill, completion, RX, TX).
const RING_SIZE: u32 = 2048;
/// Frames in the UMEM per socket.
const FRAMES_PER_SOCKET: u32 = 2048;
/// Frames kept on each socket's fill ring; the rest absorb TX in flight.
const FILL_TARGET: u32 = 1024;
/// Descriptors taken off an RX or completion ring at once.
const BATCH: usize = 64;
/// How long the worker spins after its last frame before it blocks in poll(),
/// and how long one poll() blocks, which bounds how long a stop takes to be seen.
const IDLE: IdlePolicy = IdlePolicy {
    spin: Duration::from_micros(50),
    poll_timeout: Duration::from_millis(10),
};
/// Frames one copy-mode TX wakeup may send (`XDP_MAX_TX_SKB_BUDGET`, Linux
/// 6.17 and later; the kernel's default is 32): room for a whole round's
/// frames to one socket, so one wakeup per socket and round sends them all.
const TX_BUDGET: u32 = 4 * BATCH as u32;
/// `XDP_MAX_TX_SKB_BUDGET` from linux/if_xdp.h (not in the libc crate yet).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// Wakeups per socket and round at most: a kernel without the budget option
/// sends 32 frames per wakeup.
const MAX_TX_KICKS: usize = 8;
/// How long shutdown waits for frames on TX rings to complete.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(200);

/// How sockets bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy or fail.
    ZeroCopy,
    /// Copy mode.
    Copy,
}

/// A worker's live counters; written only by its thread, read by anyone.
/// Aligned to cache lines of their own, so no other data shares them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerCounters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub batches: AtomicU64,
    pub idle_polls: AtomicU64,
    pub kernel_verdicts: AtomicU64,
    pub punted: AtomicU64,
    pub punt_failed: AtomicU64,
    pub drop_verdicts: AtomicU64,
    pub tx_ring_full: AtomicU64,
    pub bad_forwards: AtomicU64,
    /// Frames the core made besides the ones it returned (fragments) that
    /// found no free UMEM frame to be copied into.
    pub no_free_frame: AtomicU64,
}

/// Adds to a counter only this thread writes (no atomic read-modify-write needed).
fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Frame accounting and kernel drop counts at a worker's end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerEnd {
    pub frames_total: u64,
    pub frames_free: u64,
    pub frames_on_fill_rings: u64,
    /// Frames neither free nor on a fill ring: lost, or still not completed by TX.
    pub frames_leaked: u64,
    /// Frames the kernel dropped for this worker's sockets (RX ring full, no buffer).
    pub kernel_rx_dropped: u64,
    /// Times the kernel found a fill ring empty.
    pub fill_ring_empty: u64,
}

/// One socket of the worker.
struct XskSocket {
    interface: String,
    queue: u32,
    port: Port,
    rx: RxQueue,
    tx: TxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Frames given to the fill ring and not yet received.
    in_fill: u32,
    /// Frames given to the TX ring and not yet completed.
    in_tx: u32,
}

/// Where each port's socket is in the worker's list.
struct PortSlots {
    lan: Option<usize>,
    wans: Vec<Option<usize>>,
}

impl PortSlots {
    fn new(interfaces: &[Interface]) -> PortSlots {
        let mut slots = PortSlots {
            lan: None,
            wans: Vec::new(),
        };
        for (slot, interface) in interfaces.iter().enumerate() {
            match interface.port {
                Port::Lan => slots.lan = Some(slot),
                Port::Wan(uplink) => {
                    let uplink = usize::from(uplink);
                    if slots.wans.len() <= uplink {
                        slots.wans.resize(uplink + 1, None);
                    }
                    slots.wans[uplink] = Some(slot);
                }
            }
        }
        slots
    }

    fn get(&self, port: Port) -> Option<usize> {
        match port {
            Port::Lan => self.lan,
            Port::Wan(uplink) => self.wans.get(usize::from(uplink)).copied().flatten(),
        }
    }
}

/// The sockets of one queue index, ready to run.
pub struct QueueWorker {
    pub queue: u32,
    umem: Umem,
    sockets: Vec<XskSocket>,
    slots: PortSlots,
    free: Vec<FrameDesc>,
    total: usize,
    punt: Arc<Punt>,
}

impl QueueWorker {
    /// Opens a socket on `queue` of every interface, all on one new UMEM.
    pub fn open(
        queue: u32,
        interfaces: &[Interface],
        mode: BindMode,
        punt: Arc<Punt>,
    ) -> Result<QueueWorker, XdpError> {
        let setup_error = |what: String| XdpError::Setup(format!("AF_XDP configuration: {what}"));
        let ring = QueueSize::new(RING_SIZE).map_err(|e| setup_error(e.to_string()))?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| setup_error(e.to_string()))?)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| setup_error(e.to_string()))?;
        let frame_count = NonZeroU32::new(FRAMES_PER_SOCKET * interfaces.len() as u32)
            .ok_or_else(|| setup_error("no interfaces".to_string()))?;
        let (umem, free) = Umem::new(umem_config, frame_count, false).map_err(|err| {
            XdpError::Setup(format!(
                "cannot create the AF_XDP UMEM of queue {queue}: {err}: {}",
                source_text(&err)
            ))
        })?;
        let bind = match mode {
            BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
            BindMode::Copy => BindFlags::XDP_COPY,
        } | BindFlags::XDP_USE_NEED_WAKEUP;
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind)
            .build();

        let mut sockets = Vec::with_capacity(interfaces.len());
        for interface in interfaces {
            let name = interface
                .name
                .parse()
                .map_err(|_| XdpError::NoInterface(interface.name.clone()))?;
            // SAFETY: every socket is created with XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD,
            // which Socket::new requires when a UMEM is shared.
            let created = unsafe { Socket::new(socket_config, &umem, &name, queue) };
            let (tx, rx, rings) =
                created.map_err(|err| socket_error(interface, queue, mode, &err))?;
            let (fq, cq) = rings.ok_or_else(|| XdpError::Socket {
                interface: interface.name.clone(),
                queue,
                detail: "the queue already has an AF_XDP socket on this UMEM".to_string(),
            })?;
            if mode == BindMode::Copy {
                if let Err(err) = sys::socket::setsockopt(
                    tx.fd(),
                    libc::SOL_XDP,
                    XDP_MAX_TX_SKB_BUDGET,
                    &TX_BUDGET,
                ) {
                    tracing::debug!(interface = %interface.name, %err,
                        "no XDP_MAX_TX_SKB_BUDGET (Linux < 6.17): 32 frames per TX wakeup");
                }
            }
            sockets.push(XskSocket {
                interface: interface.name.clone(),
                queue,
                port: interface.port,
                rx,
                tx,
                fq,
                cq,
                in_fill: 0,
                in_tx: 0,
            });
        }
        let total = free.len();
        Ok(QueueWorker {
            queue,
            umem,
            sockets,
            slots: PortSlots::new(interfaces),
            free,
            total,
            punt,
        })
    }

    /// The socket descriptors, by interface slot, for the XSKMAP.
    pub fn socket_fds(&self) -> impl Iterator<Item = (usize, RawFd)> + '_ {
        self.sockets
            .iter()
            .enumerate()
            .map(|(slot, s)| (slot, s.rx.fd().as_raw_fd()))
    }

    /// Whether the kernel bound the sockets in zero-copy mode.
    pub fn zero_copy(&self) -> Result<bool, XdpError> {
        let Some(socket) = self.sockets.first() else {
            return Ok(false);
        };
        let options: libc::xdp_options =
            sys::socket::getsockopt(socket.rx.fd(), libc::SOL_XDP, libc::XDP_OPTIONS).map_err(
                |err| XdpError::Socket {
                    interface: socket.interface.clone(),
                    queue: self.queue,
                    detail: format!("reading XDP_OPTIONS: {err}"),
                },
            )?;
        Ok(options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }

    /// Runs until `stop` is set (or the worker fails, which sets it too), then
    /// waits for TX to complete and accounts for every frame.
    pub fn run<P: FrameProcessor>(
        mut self,
        processor: &P,
        counters: &WorkerCounters,
        stop: &AtomicBool,
        epoch: Instant,
    ) -> Result<WorkerEnd, XdpError> {
        crate::io::idle::prefer_prompt_wakeups(&format!("xdp queue {}", self.queue));
        let mut state = processor.worker();
        let mut batch = [FrameDesc::default(); BATCH];
        let mut outgoing: Vec<Vec<FrameDesc>> = self
            .sockets
            .iter()
            .map(|_| Vec::with_capacity(BATCH))
            .collect();
        let mut idle = Idle::new(IDLE, self.sockets.iter().map(|s| s.rx.fd().as_raw_fd()));

        while !stop.load(Ordering::Relaxed) {
            let completed = self.reclaim_completions(&mut batch);
            self.refill();
            let now = epoch.elapsed();
            let mut received = 0;
            for input in 0..self.sockets.len() {
                received += self.receive_batch(
                    input,
                    &mut batch,
                    &mut outgoing,
                    processor,
                    &mut state,
                    now,
                    counters,
                );
            }
            if received > 0 {
                self.transmit(&mut outgoing, counters)?;
            }
            if received > 0 || completed > 0 {
                idle.busy();
            } else if idle
                .empty()
                .map_err(|err| XdpError::Thread(format!("poll on AF_XDP sockets: {err}")))?
            {
                bump(&counters.idle_polls, 1);
            }
        }
        Ok(self.shut_down(&mut batch))
    }

    /// Takes completed TX frames back into the free stack.
    fn reclaim_completions(&mut self, scratch: &mut [FrameDesc; BATCH]) -> usize {
        let mut reclaimed = 0;
        for socket in &mut self.sockets {
            loop {
                // SAFETY: completion entries are frames of this UMEM the kernel has
                // finished sending; from here on only this thread touches them.
                let n = unsafe { socket.cq.consume(scratch) };
                if n == 0 {
                    break;
                }
                self.free.extend_from_slice(&scratch[..n]);
                socket.in_tx -= n as u32;
                reclaimed += n;
            }
        }
        reclaimed
    }

    /// Tops every fill ring up to FILL_TARGET frames from the free stack.
    fn refill(&mut self) {
        for socket in &mut self.sockets {
            let want = (FILL_TARGET - socket.in_fill).min(self.free.len() as u32);
            if want > 0 {
                let room = socket.fq.nb_free(want).min(want) as usize;
                let start = self.free.len() - room;
                // SAFETY: the frames come off the free stack: no ring holds them and
                // nothing else refers to them.
                let given = unsafe { socket.fq.produce(&self.free[start..]) };
                self.free.truncate(self.free.len() - given);
                socket.in_fill += given as u32;
            }
            if socket.fq.needs_wakeup() {
                // A zero-timeout poll is the fill ring's wakeup; its result does not matter.
                let _ = socket.fq.wakeup(socket.rx.fd_mut(), 0);
            }
        }
    }

    /// Receives one batch on socket `input` and runs the processor on each
    /// frame; the forwarded ones wait in `outgoing` for [`Self::transmit`].
    #[allow(clippy::too_many_arguments)]
    fn receive_batch<P: FrameProcessor>(
        &mut self,
        input: usize,
        batch: &mut [FrameDesc; BATCH],
        outgoing: &mut [Vec<FrameDesc>],
        processor: &P,
        state: &mut P::Worker,
        now: Duration,
        counters: &WorkerCounters,
    ) -> usize {
        let socket = &mut self.sockets[input];
        // SAFETY: the descriptors filled in are frames of this UMEM that the kernel
        // has handed back; only this thread touches them until they go on a ring.
        let received = unsafe { socket.rx.consume(batch) };
        if received == 0 {
            return 0;
        }
        socket.in_fill -= received as u32;
        let meta = FrameMeta {
            port: socket.port,
            now,
            checksum_partial: false,
            gso: None,
        };

        let (mut kernel, mut punt_failed, mut dropped, mut bad, mut no_frame) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for desc in &mut batch[..received] {
            // SAFETY: this descriptor was just received: the frame is this thread's
            // alone until it is put on a ring again.
            let mut data = unsafe { self.umem.data_mut(desc) };
            let verdict = processor.process(state, data.contents_mut(), meta);
            let target = match verdict {
                Verdict::Forward { port, len } => match self.slots.get(port) {
                    Some(slot) if len > 0 && len <= data.contents().len() => {
                        data.cursor().set_pos(len);
                        Some(slot)
                    }
                    _ => {
                        bad += 1;
                        None
                    }
                },
                Verdict::Taken => None,
                Verdict::Kernel(_) => {
                    kernel += 1;
                    if self.punt.inject(data.contents_mut()).is_err() {
                        punt_failed += 1;
                    }
                    None
                }
                Verdict::Drop(_) => {
                    dropped += 1;
                    None
                }
            };
            match target {
                Some(slot) => outgoing[slot].push(*desc),
                None => self.free.push(*desc),
            }
            // The frames the core made besides this one: each copied into a
            // free UMEM frame and sent after it.
            let (umem, free, slots) = (&self.umem, &mut self.free, &self.slots);
            processor.drain(state, &mut |port, bytes| {
                let Some(slot) = slots.get(port) else {
                    bad += 1;
                    return;
                };
                let Some(mut extra) = free.pop() else {
                    no_frame += 1;
                    return;
                };
                // SAFETY: the frame comes off the free stack: no ring holds it and
                // nothing else refers to it.
                let mut data = unsafe { umem.data_mut(&mut extra) };
                let mut cursor = data.cursor();
                cursor.set_pos(0);
                if io::Write::write_all(&mut cursor, bytes).is_ok() {
                    outgoing[slot].push(extra);
                } else {
                    bad += 1;
                    free.push(extra);
                }
            });
        }

        bump(&counters.rx, received as u64);
        bump(&counters.batches, 1);
        bump(&counters.kernel_verdicts, kernel);
        bump(&counters.punted, kernel - punt_failed);
        bump(&counters.punt_failed, punt_failed);
        bump(&counters.drop_verdicts, dropped);
        bump(&counters.bad_forwards, bad);
        bump(&counters.no_free_frame, no_frame);
        received
    }

    /// Puts a round's forwarded frames on their sockets' TX rings and wakes
    /// each socket that got some once (see [`kick_tx`]): the round's only
    /// syscalls while traffic flows.
    fn transmit(
        &mut self,
        outgoing: &mut [Vec<FrameDesc>],
        counters: &WorkerCounters,
    ) -> Result<(), XdpError> {
        let (mut sent, mut ring_full) = (0u64, 0u64);
        for (slot, frames) in outgoing.iter_mut().enumerate() {
            if frames.is_empty() {
                continue;
            }
            let socket = &mut self.sockets[slot];
            let want = frames.len() as u32;
            let room = socket.tx.nb_free(want).min(want) as usize;
            // SAFETY: these frames were received by this worker and are on no ring.
            let produced = unsafe { socket.tx.produce(&frames[..room]) };
            socket.in_tx += produced as u32;
            sent += produced as u64;
            ring_full += (frames.len() - produced) as u64;
            self.free.extend_from_slice(&frames[produced..]);
            frames.clear();
            kick_tx(socket)?;
        }
        bump(&counters.tx, sent);
        bump(&counters.tx_ring_full, ring_full);
        Ok(())
    }

    /// Waits (bounded) for TX to complete, then accounts for every frame.
    fn shut_down(mut self, scratch: &mut [FrameDesc; BATCH]) -> WorkerEnd {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            self.reclaim_completions(scratch);
            if self.sockets.iter().all(|s| s.in_tx == 0) || Instant::now() >= deadline {
                break;
            }
            for socket in &mut self.sockets {
                if socket.in_tx > 0 {
                    // Best effort: a failed kick shows up as frames not returned.
                    let _ = kick_tx(socket);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }

        let mut addrs: Vec<usize> = self.free.iter().map(FrameDesc::addr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        let on_fill: u64 = self.sockets.iter().map(|s| u64::from(s.in_fill)).sum();
        let mut end = WorkerEnd {
            frames_total: self.total as u64,
            frames_free: addrs.len() as u64,
            frames_on_fill_rings: on_fill,
            frames_leaked: (self.total as u64).saturating_sub(addrs.len() as u64 + on_fill),
            ..WorkerEnd::default()
        };
        for socket in &self.sockets {
            if let Ok(stats) = socket.rx.fd().xdp_statistics() {
                end.kernel_rx_dropped += stats.rx_dropped() + stats.rx_ring_full();
                end.fill_ring_empty += stats.rx_fill_ring_empty_descs();
            }
        }
        end
    }
}

/// Makes the kernel send what is on the TX ring: one wakeup sends up to
/// [`TX_BUDGET`] frames in copy mode (32 on kernels before 6.17), so wake it
/// until the ring is empty (bounded; one wakeup where the budget is set).
fn kick_tx(socket: &mut XskSocket) -> Result<(), XdpError> {
    for _ in 0..MAX_TX_KICKS {
        if !socket.tx.needs_wakeup() || socket.tx.nb_free_exact() == RING_SIZE {
            break;
        }
        socket.tx.wakeup().map_err(|err| XdpError::Socket {
            interface: socket.interface.clone(),
            queue: socket.queue,
            detail: format!("TX wakeup: {err}"),
        })?;
    }
    Ok(())
}

fn source_text(err: &dyn std::error::Error) -> String {
    err.source().map(|s| s.to_string()).unwrap_or_default()
}

fn socket_error(
    interface: &Interface,
    queue: u32,
    mode: BindMode,
    err: &xsk_rs::socket::SocketCreateError,
) -> XdpError {
    let errno = std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error);
    let detail = format!("{err}: {}", source_text(err));
    match errno {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            XdpError::Permission(format!("creating AF_XDP sockets on {}", interface.name))
        }
        Some(libc::ENODEV) | Some(libc::ENXIO) => XdpError::NoInterface(interface.name.clone()),
        Some(libc::EOPNOTSUPP) if mode == BindMode::ZeroCopy => XdpError::ZeroCopyUnsupported {
            interface: interface.name.clone(),
            detail,
        },
        Some(libc::EAFNOSUPPORT) | Some(libc::EOPNOTSUPP) => XdpError::AfXdpUnsupported {
            interface: interface.name.clone(),
            detail,
        },
        Some(libc::EBUSY) => XdpError::Busy {
            interface: interface.name.clone(),
            detail: format!(
                "queue {queue} already has an AF_XDP socket (is another xwan running?): stop that program first"
            ),
        },
        _ => XdpError::Socket { interface: interface.name.clone(), queue, detail },
    }
}

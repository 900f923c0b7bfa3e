//! One AF_PACKET worker: its loop over its sockets (receive a batch, run each
//! frame through the core, send what it forwards with one `sendmmsg` per output
//! interface), the cutting of super-frames the core cannot pass whole, and its
//! counters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::router::{DropReason, FrameMeta, Gso, Port, Verdict};

use super::super::idle::{Idle, IdlePolicy};
use super::super::systemd::Progress;
use super::super::{sys, FrameProcessor};
use super::gso::Segments;
use super::socket::{self, RxBatch, RxInfo, TxScratch, BATCH};
use super::{Attached, LiveStats, PacketCounters, PacketError, FRAME_ROOM};

/// How long a worker keeps polling its sockets after its last frame before
/// it sleeps in `poll()`, and the longest a sleeping worker waits before it
/// looks at the stop flag again.
const IDLE: IdlePolicy = IdlePolicy {
    spin: Duration::from_micros(50),
    poll_timeout: Duration::from_millis(100),
};

pub(super) struct PacketWorker<P> {
    pub(super) index: usize,
    pub(super) processor: Arc<P>,
    pub(super) attached: Vec<Attached>,
    pub(super) epoch: Instant,
    pub(super) stop: Arc<AtomicBool>,
    /// Every worker's live figures; this one's is at `index`.
    pub(super) live: Arc<[LiveStats]>,
    pub(super) cpu: Option<usize>,
    pub(super) progress: Arc<Progress>,
}

impl<P: FrameProcessor> PacketWorker<P> {
    pub(super) fn run(self) -> Result<PacketCounters, PacketError> {
        let result = self.forward();
        if result.is_err() {
            self.stop.store(true, Ordering::Relaxed);
        }
        result
    }

    fn forward(&self) -> Result<PacketCounters, PacketError> {
        if let Some(cpu) = self.cpu {
            if let Err(err) = sys::sched::pin_to_cpu(cpu) {
                warn!(
                    worker = self.index,
                    cpu, "could not pin the packet worker: {err}"
                );
            }
        }
        crate::io::idle::prefer_prompt_wakeups(&format!("packet worker {}", self.index));
        let mut state = WorkerState {
            core: self.processor.worker(),
            counters: PacketCounters::default(),
            outgoing: self
                .attached
                .iter()
                .map(|_| Vec::with_capacity(BATCH))
                .collect(),
            tx: TxScratch::new(BATCH),
            segments: Segments::new(),
            routed: Vec::with_capacity(64),
        };
        let mut rx: Vec<RxBatch> = self
            .attached
            .iter()
            .map(|_| RxBatch::new(FRAME_ROOM))
            .collect();
        let mut idle = Idle::new(IDLE, self.attached.iter().map(|a| a.socket.raw_fd()));
        let mut link_down = vec![false; self.attached.len()];
        let (mut batches, mut idle_rounds) = (0u64, 0u64);
        while !self.stop.load(Ordering::Relaxed) {
            self.progress.beat(self.index);
            let mut busy = false;
            for (i, attached) in self.attached.iter().enumerate() {
                let batch = &mut rx[i];
                match attached.socket.recv(batch) {
                    Ok(0) => continue,
                    Ok(_) => link_down[i] = false,
                    Err(err) if err.raw_os_error() == Some(libc::ENETDOWN) => {
                        if !link_down[i] {
                            warn!(interface = %attached.name, "link down");
                            link_down[i] = true;
                        }
                        continue;
                    }
                    // The kernel could not describe a frame (a super-frame of a kind
                    // virtio_net_hdr has no words for): that frame is lost.
                    Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                        state.counters.rx_errors += 1;
                        continue;
                    }
                    Err(source) => {
                        return Err(PacketError::Socket {
                            interface: attached.name.clone(),
                            op: "receiving",
                            source,
                        })
                    }
                }
                busy = true;
                self.process_batch(&mut state, attached.port, batch);
            }
            if busy {
                batches += 1;
            } else {
                idle_rounds += 1;
            }
            self.live[self.index].publish(&state.counters, batches, idle_rounds);
            if busy {
                idle.busy();
            } else if let Err(source) = idle.empty() {
                return Err(PacketError::Socket {
                    interface: "(every interface)".to_string(),
                    op: "waiting in poll",
                    source,
                });
            }
        }
        for attached in &self.attached {
            if let Ok((_, drops)) = attached.socket.kernel_stats() {
                state.counters.socket_drops += drops;
            }
        }
        Ok(state.counters)
    }

    /// Runs every frame of a batch through the core and sends the forwarded ones,
    /// in order: a super-frame's segments go out after the frames before it.
    fn process_batch(&self, state: &mut WorkerState<P::Worker>, port: Port, batch: &mut RxBatch) {
        let now = self.epoch.elapsed();
        for k in 0..batch.len() {
            let (frame, start, info) = batch.frame(k);
            state.counters.received += 1;
            if info.truncated {
                state.counters.truncated += 1;
                continue;
            }
            if info.pkttype == libc::PACKET_OTHERHOST || info.pkttype == libc::PACKET_OUTGOING {
                state.counters.not_for_us += 1;
                continue;
            }
            if let Some(vnet) = info.gso {
                let whole = info.vlan.is_none().then(|| vnet.whole(frame)).flatten();
                if whole.is_some() {
                    let decision = self.decide(
                        &mut state.core,
                        &mut state.counters,
                        (port, frame, info, whole),
                        now,
                    );
                    self.send_extra(state);
                    match decision {
                        Decision::Send(j, len) => {
                            self.flush(state, batch);
                            let frame = batch.bytes(start, len);
                            let header = vnet.passthrough(frame);
                            let outcome =
                                self.attached[j]
                                    .socket
                                    .send_with(&header, frame, &mut state.tx);
                            if outcome.sent > 0 && header.gso().is_some() {
                                state.counters.gso_passthrough += 1;
                                state.counters.gso_passthrough_bytes += len as u64;
                            }
                            count_send(&mut state.counters, &self.attached[j].name, outcome);
                            continue;
                        }
                        Decision::Done => continue,
                        Decision::Cut => {}
                    }
                }
                let Some(gso) = vnet.gso() else { continue };
                if state.segments.split(frame, gso) {
                    state.counters.segmented += 1;
                    self.flush(state, batch);
                    self.forward_segments(state, port, now);
                } else if matches!(
                    self.decide(
                        &mut state.core,
                        &mut state.counters,
                        (port, frame, info, None),
                        now
                    ),
                    Decision::Send(..)
                ) {
                    // Not IPv4 TCP/UDP yet forwarded: too long for the wire.
                    state.counters.unsplittable += 1;
                }
                continue;
            }
            if let Decision::Send(j, len) = self.decide(
                &mut state.core,
                &mut state.counters,
                (port, frame, info, None),
                now,
            ) {
                state.outgoing[j].push((start, len));
            }
            self.send_extra(state);
        }
        self.flush(state, batch);
    }

    /// Sends at once the frames the core made besides the one it returned
    /// (the later fragments of a packet it fragmented, fragments it held, an
    /// ICMP error bigger than the frame it answers).
    fn send_extra(&self, state: &mut WorkerState<P::Worker>) {
        let WorkerState {
            core, counters, tx, ..
        } = state;
        self.processor.drain(core, &mut |port, bytes| match self
            .attached
            .iter()
            .position(|a| a.port == port)
        {
            Some(j) => {
                let outcome = self.attached[j].socket.send(std::iter::once(bytes), tx);
                count_send(counters, &self.attached[j].name, outcome);
            }
            None => counters.bad_verdict += 1,
        });
    }

    /// Runs one frame (from `port`, as received, to pass whole when `gso` says
    /// how) through the core: for a forward, the interface index and length to
    /// send. Counts every other outcome but a super-frame left to be cut.
    fn decide(
        &self,
        core: &mut P::Worker,
        counters: &mut PacketCounters,
        (port, frame, info, gso): (Port, &mut [u8], RxInfo, Option<Gso>),
        now: Duration,
    ) -> Decision {
        let meta = FrameMeta {
            port,
            now,
            checksum_partial: info.checksum_partial,
            gso,
        };
        match self.processor.process(core, frame, meta) {
            Verdict::Forward { port, len } => {
                match self.attached.iter().position(|a| a.port == port) {
                    Some(j) if len <= frame.len() => return Decision::Send(j, len),
                    _ => counters.bad_verdict += 1,
                }
            }
            Verdict::Taken => {}
            Verdict::Drop(DropReason::GsoNotWhole) => return Decision::Cut,
            Verdict::Kernel(_) => counters.to_kernel += 1,
            Verdict::Drop(_) => counters.dropped += 1,
        }
        Decision::Done
    }

    /// Cut segments: each is a frame of its own, with full checksums.
    fn forward_segments(&self, state: &mut WorkerState<P::Worker>, port: Port, now: Duration) {
        let info = RxInfo {
            truncated: false,
            pkttype: libc::PACKET_HOST,
            checksum_partial: false,
            vlan: None,
            gso: None,
        };
        let WorkerState {
            core,
            counters,
            segments,
            routed,
            ..
        } = state;
        routed.clear();
        for i in 0..segments.len() {
            counters.received += 1;
            let frame = segments.get_mut(i);
            if let Decision::Send(j, len) =
                self.decide(core, counters, (port, frame, info, None), now)
            {
                routed.push((i, j, len));
            }
        }
        self.send_extra(state);
        for j in 0..self.attached.len() {
            let segments = &state.segments;
            let frames = state
                .routed
                .iter()
                .filter(|&&(_, dest, _)| dest == j)
                .map(|&(i, _, len)| segments.bytes(i, len));
            let outcome = self.attached[j].socket.send(frames, &mut state.tx);
            count_send(&mut state.counters, &self.attached[j].name, outcome);
        }
    }

    /// Sends the frames of `batch` waiting in `state.outgoing`.
    fn flush(&self, state: &mut WorkerState<P::Worker>, batch: &RxBatch) {
        for (j, spans) in state.outgoing.iter_mut().enumerate() {
            if spans.is_empty() {
                continue;
            }
            let frames = spans.iter().map(|&(start, len)| batch.bytes(start, len));
            let outcome = self.attached[j].socket.send(frames, &mut state.tx);
            count_send(&mut state.counters, &self.attached[j].name, outcome);
            spans.clear();
        }
    }
}

/// What becomes of a frame the core has seen.
enum Decision {
    /// Forwarded: send its first `len` bytes on interface `j`.
    Send(usize, usize),
    /// A super-frame the core cannot pass whole, unchanged: cut it.
    Cut,
    /// Left to the kernel or dropped (counted).
    Done,
}

/// A worker's buffers and counters.
struct WorkerState<W> {
    core: W,
    counters: PacketCounters,
    /// Per output interface: (start, length) of frames in the current batch.
    outgoing: Vec<Vec<(usize, usize)>>,
    tx: TxScratch,
    segments: Segments,
    /// Per cut segment forwarded: (segment, output interface, length).
    routed: Vec<(usize, usize, usize)>,
}

fn count_send(counters: &mut PacketCounters, interface: &str, outcome: socket::SendOutcome) {
    counters.forwarded += outcome.sent as u64;
    counters.tx_failed += outcome.failed as u64;
    if let Some(err) = outcome.error {
        debug!(interface, "send refused {} frames: {err}", outcome.failed);
    }
}

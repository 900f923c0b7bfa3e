//! Per-worker counters: each worker writes only its own (no shared cache line
//! on the packet path); readers add them up.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{DropReason, KernelReason, Port, Verdict};
use crate::packet::{icmp, Addr6, Error6, Frame, Frame6, Transport};

/// Packets and bytes through one uplink, each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
}

/// The ICMPv6 errors the core sent, by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Icmp6Sent {
    pub time_exceeded: u64,
    pub packet_too_big: u64,
    pub unreachable: u64,
}

/// The counters of one worker, in cache lines of their own: no other
/// worker's counters (nor anything else) share a line with them, so a worker
/// counting a packet never writes a line another CPU holds.
#[derive(Debug)]
pub struct LaneCounters {
    lines: Box<[Line]>,
    uplinks: usize,
    /// Per uplink: the SYNs of new connections and their answers, over
    /// IPv4 and, apart, over IPv6 (an uplink's IPv6 may fail alone).
    tcp: Box<[TcpCounters]>,
    tcp6: Box<[TcpCounters]>,
}

/// How many of the latest SYNs' destinations each worker keeps per uplink.
pub const RECENT_SYNS: usize = 8;

/// One worker's TCP evidence of one uplink's health, in a cache line of its
/// own like the other counters.
#[derive(Debug, Default)]
#[repr(align(128))]
struct TcpCounters {
    /// SYNs (without ACK) sent out the uplink.
    syns: AtomicU64,
    /// SYN-ACKs and RSTs that came in on it.
    answers: AtomicU64,
    /// Destination address of SYN number `n` at `n % RECENT_SYNS` (an
    /// IPv6 one folded to 32 bits: [`fold_address`]).
    recent: [AtomicU32; RECENT_SYNS],
}

/// A reading of one worker's [`TcpCounters`] for one uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynCounts {
    pub syns: u64,
    pub answers: u64,
    /// Destination of SYN number `n` (for the last [`RECENT_SYNS`] of them)
    /// at `n % RECENT_SYNS`, as a big-endian address.
    pub recent: [u32; RECENT_SYNS],
}

/// One cache line of counters (128 bytes: two 64-byte lines, as the
/// adjacent-line prefetcher pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line([AtomicU64; PER_LINE]);

const PER_LINE: usize = 16;

/// Where each counter is, in counters from the first: forwarded, taken
/// (frames whose buffer the core was done with without sending it), held
/// (later fragments held until their first came), the ICMP errors the core
/// made (ICMPv4 time exceeded and fragmentation needed, ICMPv6 time
/// exceeded, packet too big and unreachable), one per kernel reason,
/// one per drop reason, then per uplink: packets out, bytes out, packets in,
/// bytes in (from an even index, so a packets/bytes pair is never split
/// across two lines: the compiler then checks one line for both).
const FORWARDED: usize = 0;
const TAKEN: usize = 1;
const HELD: usize = 2;
const ICMP_SENT: usize = 3;
const ICMP6_SENT: usize = 5;
const KERNEL: usize = 8;
const DROPS: usize = KERNEL + KernelReason::ALL.len();
const UPLINKS: usize = (DROPS + DropReason::ALL.len()).next_multiple_of(2);

/// Adds to a counter only this thread writes: a plain load and store, no
/// read-modify-write on the packet path.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// An IPv6 destination as the 32 bits [`TcpCounters::recent`] keeps: its
/// four words XORed, so that distinct hosts stay distinct.
fn fold_address(addr: &Addr6) -> u32 {
    addr.chunks_exact(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .fold(0, |a, w| a ^ w)
}

/// Counts in `counters` (one per uplink) a TCP segment that is evidence of
/// an uplink's health: a SYN out to `dst`, or a SYN-ACK or RST in.
fn count_evidence(
    counters: &[TcpCounters],
    from: Port,
    transport: &Transport,
    dst: u32,
    verdict: &Verdict,
) {
    let Transport::Tcp { flags, .. } = *transport else {
        return;
    };
    if !flags.syn && !flags.rst {
        return;
    }
    match (from, *verdict) {
        (
            Port::Lan,
            Verdict::Forward {
                port: Port::Wan(uplink),
                ..
            },
        ) if flags.syn && !flags.ack => {
            if let Some(c) = counters.get(usize::from(uplink)) {
                let n = c.syns.load(Ordering::Relaxed);
                c.recent[n as usize % RECENT_SYNS].store(dst, Ordering::Relaxed);
                c.syns.store(n + 1, Ordering::Release);
            }
        }
        (
            Port::Wan(uplink),
            Verdict::Forward {
                port: Port::Lan, ..
            },
        ) if flags.ack || flags.rst => {
            if let Some(c) = counters.get(usize::from(uplink)) {
                bump(&c.answers, 1);
            }
        }
        _ => {}
    }
}

fn read_syn_counts(counters: &[TcpCounters]) -> Vec<SynCounts> {
    counters
        .iter()
        .map(|c| SynCounts {
            syns: c.syns.load(Ordering::Acquire),
            answers: c.answers.load(Ordering::Relaxed),
            recent: std::array::from_fn(|i| c.recent[i].load(Ordering::Relaxed)),
        })
        .collect()
}

impl LaneCounters {
    pub fn new(uplinks: usize) -> LaneCounters {
        let count = UPLINKS + 4 * uplinks;
        LaneCounters {
            lines: (0..count.div_ceil(PER_LINE))
                .map(|_| Line::default())
                .collect(),
            uplinks,
            tcp: (0..uplinks).map(|_| TcpCounters::default()).collect(),
            tcp6: (0..uplinks).map(|_| TcpCounters::default()).collect(),
        }
    }

    #[inline]
    fn at(&self, i: usize) -> &AtomicU64 {
        &self.lines[i / PER_LINE].0[i % PER_LINE]
    }

    fn read(&self, i: usize) -> u64 {
        self.at(i).load(Ordering::Relaxed)
    }

    /// Counts a forwarded TCP segment that is evidence of an uplink's
    /// health: a SYN out (with its destination), or a SYN-ACK or RST in.
    pub fn tcp_evidence(&self, from: Port, frame: &Frame, verdict: &Verdict) {
        let dst = u32::from_be_bytes(frame.dst);
        count_evidence(&self.tcp, from, &frame.transport, dst, verdict);
    }

    /// [`LaneCounters::tcp_evidence`] for an IPv6 segment, counted apart.
    pub fn tcp_evidence6(&self, from: Port, frame: &Frame6, verdict: &Verdict) {
        let dst = fold_address(&frame.dst);
        count_evidence(&self.tcp6, from, &frame.transport, dst, verdict);
    }

    /// This worker's TCP evidence over IPv4, per uplink.
    pub fn syn_counts(&self) -> Vec<SynCounts> {
        read_syn_counts(&self.tcp)
    }

    /// This worker's TCP evidence over IPv6, per uplink.
    pub fn syn_counts6(&self) -> Vec<SynCounts> {
        read_syn_counts(&self.tcp6)
    }

    /// Counts an ICMP error the core made (its frame is counted as forwarded too).
    pub fn icmp_sent(&self, error: icmp::Error) {
        let i = match error {
            icmp::Error::TimeExceeded => 0,
            icmp::Error::FragmentationNeeded { .. } => 1,
        };
        bump(self.at(ICMP_SENT + i), 1);
    }

    /// Counts an ICMPv6 error the core made (its frame is counted as
    /// forwarded, or taken when it went from a bigger buffer, too).
    pub fn icmp6_sent(&self, error: Error6) {
        let i = match error {
            Error6::TimeExceeded => 0,
            Error6::PacketTooBig { .. } => 1,
            Error6::Unreachable { .. } => 2,
        };
        bump(self.at(ICMP6_SENT + i), 1);
    }

    /// Counts a later fragment held until its first comes.
    pub fn held(&self) {
        bump(self.at(HELD), 1);
    }

    /// Counts `n` drops of frames the core had held.
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        if n > 0 {
            bump(self.at(DROPS + reason as usize), n);
        }
    }

    /// Counts one verdict for a frame that came in on `from`.
    #[inline]
    pub fn count(&self, from: Port, verdict: &Verdict) {
        match *verdict {
            Verdict::Forward { port, len } => {
                bump(self.at(FORWARDED), 1);
                let (uplink, base) = match (from, port) {
                    (_, Port::Wan(uplink)) => (uplink, 0),
                    (Port::Wan(uplink), Port::Lan) => (uplink, 2),
                    (Port::Lan, Port::Lan) => return,
                };
                let uplink = usize::from(uplink);
                if uplink < self.uplinks {
                    let at = UPLINKS + 4 * uplink + base;
                    bump(self.at(at), 1);
                    bump(self.at(at + 1), len as u64);
                }
            }
            Verdict::Taken => bump(self.at(TAKEN), 1),
            Verdict::Kernel(reason) => bump(self.at(KERNEL + reason as usize), 1),
            Verdict::Drop(reason) => bump(self.at(DROPS + reason as usize), 1),
        }
    }
}

/// Totals over every worker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Totals {
    pub forwarded: u64,
    /// Frames the core was done with without sending them ([`Verdict::Taken`]):
    /// later fragments held, frames answered with an error bigger than themselves.
    pub taken: u64,
    /// Later fragments held until their first came (each forwarded or
    /// dropped afterwards, and counted again then).
    pub held: u64,
    pub kernel: Vec<(KernelReason, u64)>,
    pub drops: Vec<(DropReason, u64)>,
    /// ICMP time-exceeded errors the core sent.
    pub time_exceeded_sent: u64,
    /// ICMP fragmentation-needed errors the core sent.
    pub frag_needed_sent: u64,
    /// ICMPv6 errors the core sent: time exceeded, packet too big,
    /// unreachable (no uplink carries IPv6).
    pub icmp6_sent: Icmp6Sent,
    pub uplinks: Vec<Traffic>,
}

impl Totals {
    pub fn sum<'a>(uplinks: usize, workers: impl Iterator<Item = &'a LaneCounters>) -> Totals {
        let mut totals = Totals {
            forwarded: 0,
            taken: 0,
            held: 0,
            kernel: KernelReason::ALL.iter().map(|r| (*r, 0)).collect(),
            drops: DropReason::ALL.iter().map(|r| (*r, 0)).collect(),
            time_exceeded_sent: 0,
            frag_needed_sent: 0,
            icmp6_sent: Icmp6Sent::default(),
            uplinks: vec![Traffic::default(); uplinks],
        };
        for worker in workers {
            totals.forwarded += worker.read(FORWARDED);
            totals.taken += worker.read(TAKEN);
            totals.held += worker.read(HELD);
            totals.time_exceeded_sent += worker.read(ICMP_SENT);
            totals.frag_needed_sent += worker.read(ICMP_SENT + 1);
            totals.icmp6_sent.time_exceeded += worker.read(ICMP6_SENT);
            totals.icmp6_sent.packet_too_big += worker.read(ICMP6_SENT + 1);
            totals.icmp6_sent.unreachable += worker.read(ICMP6_SENT + 2);
            for (i, total) in totals.kernel.iter_mut().enumerate() {
                total.1 += worker.read(KERNEL + i);
            }
            for (i, total) in totals.drops.iter_mut().enumerate() {
                total.1 += worker.read(DROPS + i);
            }
            for (i, total) in totals.uplinks.iter_mut().take(worker.uplinks).enumerate() {
                let at = UPLINKS + 4 * i;
                total.packets_out += worker.read(at);
                total.bytes_out += worker.read(at + 1);
                total.packets_in += worker.read(at + 2);
                total.bytes_in += worker.read(at + 3);
            }
        }
        totals
    }

    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    pub fn kernel_count(&self, reason: KernelReason) -> u64 {
        self.kernel
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

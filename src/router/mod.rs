//! The router core: one frame in, rewritten in place, one verdict out.
//! No I/O and no clock of its own: time is passed in. One [`Router`] is shared
//! by every worker thread; each worker holds a [`Lane`] with its counters.
//!
//! What the core does with a frame (a whole TCP or UDP packet of a known
//! flow takes a fast path through the same steps: `established.rs`):
//! - From the LAN to the Internet: the first packet of a connection gets a flow
//!   (rules, balancing, SNAT mapping), every packet leaves by its flow's uplink.
//! - From the Internet to a WAN address: the reply direction of a flow, or a
//!   port forward that opens one (DNAT). Addressed to a WAN address from a
//!   LAN source: dropped as spoofed.
//! - From the LAN to a port forwarded on a WAN address: hairpinning, DNAT to
//!   the forward's target and SNAT to the WAN address, back out the LAN, so
//!   the target sees the client's outside address (RFC 4787 REQ-9) and
//!   replies through the router.
//! - ICMP errors about a flow's packets, either way: translated together
//!   with the packet they quote (`icmp.rs`).
//! - Fragments: the first one is translated with its flow, the later ones
//!   follow it through a small table (`fragments.rs`); a later one that comes
//!   first is held (bounded) and sent after its first. The later fragments of
//!   a first fragment left to the kernel go to the kernel too, the held ones
//!   from the lane's outbox ([`Lane::drain_kernel`]).
//! - TTL of 1 or less: answered with time-exceeded from the router's address
//!   on the side the frame came in by (on the LAN, `[lan] address` or else the
//!   LAN interface's, which the I/O layer reports: `interfaces.rs`; without
//!   either the frame goes to the kernel, `ttl_expired`).
//! - Bigger than the egress MTU (the `mtu` key, else the interface's, which
//!   the I/O layer reports): with DF, answered with fragmentation-needed
//!   and the egress MTU, the same way (`frag_needed` to the kernel without a
//!   LAN address). Without DF: fragmented (RFC 791), the later fragments
//!   handed to the I/O layer after the first ([`Lane::drain`]).
//! - TCP SYNs: MSS clamped when `[nat] mss_clamp` says so.
//!
//! An ICMP error the core makes overwrites the frame it is about and goes
//! back out the port that frame came in by, as a [`Verdict::Forward`]. A
//! frame held (a later fragment before its first), or answered with an
//! error bigger than itself, is [`Verdict::Taken`]; the frames one call makes
//! besides the one it returns wait in the lane's outbox for the I/O layer
//! ([`Lane::drain`]).

#![forbid(unsafe_code)]

mod counters;
mod egress;
mod established;
mod failover;
mod flows;
mod fragments;
mod hairpin;
mod hosts;
mod icmp;
mod interfaces;
mod ipv6;
mod lan;
mod neighbours;
mod offload;
mod outbox;
mod reconfigure;
mod state;
#[cfg(test)]
mod test_support;
mod waiting;
mod wan;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;

pub use crate::verdict::{DropReason, KernelReason, Port, Verdict};
pub use counters::{Icmp6Sent, LaneCounters, SynCounts, Totals, Traffic, RECENT_SYNS};
pub use failover::Failover;
pub use fragments::{
    FragmentStats, LIFETIME as FRAGMENT_LIFETIME, MAX_ENTRIES as MAX_FRAGMENTS,
    MAX_HELD as MAX_HELD_FRAGMENTS, MAX_HELD_BYTES as MAX_HELD_FRAGMENT_BYTES,
};
pub use ipv6::Uplink6Stats;
pub use offload::{OffloadCredit, OffloadEntry, OffloadFamily, OffloadFlow, EXPIRY_MARGIN_S};
pub use reconfigure::Reconfigured;
pub use state::{Restored, Snapshot, StateError, STATE_VERSION};

use crate::config::{Config, PortRange, UplinkId};
use crate::flow::{FlowInfo, FlowKey, FlowSpec, FlowTable, Side, TableStats};
use crate::nat::PortAllocator;
use crate::packet::{
    self, Endpoint, Fragmentation, Frame, ParseOutcome, Rewrite, PROTO_TCP, PROTO_UDP,
};
use crate::policy::{Policy, Rules};
use flows::opens_connection;
use fragments::Fragments;
use hosts::Allowances;
use interfaces::{LanAddress, Mtu};
use neighbours::{unpack_mac, NeighbourCache};
use outbox::Outbox;
use reconfigure::{Live, LiveCache, MssCell, TimeoutCell};

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
    /// A GSO super-frame to pass whole (None for every other frame).
    pub gso: Option<Gso>,
}

/// A GSO super-frame (AF_PACKET with virtio-net headers): a TCP/IPv4 packet
/// longer than the MTU that the egress device or the kernel cuts into
/// segments of `size` payload bytes. Its TCP checksum is partial (the field
/// holds the pseudo-header sum; the sum over the segment from `csum_start`
/// goes `csum_offset` bytes further): the core keeps it partial, following
/// the new addresses as Linux's NAT does for CHECKSUM_PARTIAL, and skips the
/// MTU check when the segments fit the egress MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Payload bytes per segment.
    pub size: u16,
    /// Where the checksummed data starts, from the start of the frame.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

/// One worker thread's lane through the router: its own counters, so
/// workers never write to shared counters. (The I/O layer's thread that
/// holds it is an `io` worker.)
pub struct Lane {
    counters: Arc<LaneCounters>,
    /// Frames made besides the one `process` returns ([`Lane::drain`]).
    outbox: RefCell<Outbox>,
    /// LAN hosts' MACs for the established fast path's replies.
    neighbours: NeighbourCache,
    /// The settings in force, for new connections.
    live: LiveCache,
    /// The router's own IPv6 addresses, which classifying each IPv6
    /// packet reads.
    addresses6: ipv6::AddressCache6,
}

/// Per-uplink state besides the policy's.
struct Uplink {
    /// `[[wan]] name`: what a saved state knows the uplink by.
    name: String,
    /// The SNAT address as a big-endian u32, 0 while unknown ("auto" and the
    /// kernel has none); changed by [`Router::set_uplink_address`].
    address: AtomicU32,
    mac: [u8; 6],
    /// Changed by [`Router::reconfigure`]; a relaxed load costs a plain read.
    mtu: Mtu,
    /// The gateway's MAC with bit 48 set, or 0 while unknown.
    gateway_mac: AtomicU64,
    /// Port allocators for TCP, UDP and ICMP echo identifiers.
    nat: [Mutex<PortAllocator>; 3],
    flows: AtomicU32,
    /// What the in-kernel fast path forwarded by this uplink, as credited
    /// back ([`Router::credit_offloaded`]): packets and bytes out (from the
    /// LAN), then in. The workers' own are counted by their lanes.
    offloaded: [AtomicU64; 4],
}

impl Uplink {
    fn address(&self) -> [u8; 4] {
        self.address.load(Ordering::Relaxed).to_be_bytes()
    }
}

/// Totals and state for `xwan status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub totals: Totals,
    pub table: TableStats,
    pub uplinks: Vec<UplinkStats>,
    pub sticky_clients: usize,
    pub fragments: FragmentStats,
    /// LAN hosts with flows counted against `limits.max_flows_per_host`.
    pub limited_hosts: usize,
    /// The IPv6 flow table (all zero without IPv6).
    pub table6: TableStats,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkStats {
    pub up: bool,
    pub gateway_mac: Option<[u8; 6]>,
    pub flows: u32,
    /// NAT mappings in use: TCP, UDP, ICMP.
    pub nat_in_use: [usize; 3],
    pub traffic: Traffic,
    /// Its IPv6 side; None where it carries no IPv6.
    pub ipv6: Option<Uplink6Stats>,
}

/// Where a translated packet goes and what it becomes (an IPv6 one:
/// `Egress<Rewrite6>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Egress<R = Rewrite> {
    port: Port,
    rewrite: R,
}

/// What the router knows about the frame it is processing besides its bytes.
struct FrameContext<'a> {
    meta: FrameMeta,
    /// `meta.now` in whole seconds, the flow table's clock.
    now: u32,
    counters: &'a LaneCounters,
    outbox: &'a RefCell<Outbox>,
    neighbours: &'a NeighbourCache,
    live: &'a LiveCache,
    /// A key the established fast path found no flow for (so the general
    /// path does not search for it again).
    absent: Cell<Option<(Side, FlowKey)>>,
    /// The same for IPv6.
    absent6: Cell<Option<(Side, FlowKey<packet::Addr6>)>>,
    /// The router's own IPv6 addresses as this lane last copied them.
    addresses6: &'a ipv6::AddressCache6,
}

impl<'a> FrameContext<'a> {
    /// The context of a frame `meta` describes, processed on `lane`.
    fn new(lane: &'a Lane, meta: FrameMeta) -> FrameContext<'a> {
        FrameContext {
            meta,
            now: seconds(meta.now),
            counters: &lane.counters,
            outbox: &lane.outbox,
            neighbours: &lane.neighbours,
            live: &lane.live,
            absent: Cell::new(None),
            absent6: Cell::new(None),
            addresses6: &lane.addresses6,
        }
    }

    /// Queues a frame besides the one `process` returns, counted as forwarded.
    fn send_also(&self, port: Port, frame: &[u8]) {
        self.counters.count(
            self.meta.port,
            &Verdict::Forward {
                port,
                len: frame.len(),
            },
        );
        self.outbox.borrow_mut().push(port, frame);
    }

    /// Queues a frame for the kernel besides the one `process` returns,
    /// counted as left to it for `reason`.
    fn to_kernel_also(&self, reason: KernelReason, frame: &[u8]) {
        self.counters
            .count(self.meta.port, &Verdict::Kernel(reason));
        self.outbox.borrow_mut().push_kernel(frame);
    }
}

/// The shared router.
///
/// What a reload may change lives in `Live` (reconfigure.rs), swapped whole
/// by [`Router::reconfigure`] and read only for new connections and port
/// forwards; the MTUs and timeouts, which every packet of an established flow
/// reads, and MSS clamping are atomics. Everything else is fixed for the router's life.
pub struct Router {
    lan_networks: Vec<(u32, u32)>,
    lan_mac: [u8; 6],
    lan_mtu: Mtu,
    lan_interface_address: LanAddress,
    uplinks: Vec<Uplink>,
    nat_ports: PortRange,
    mss_clamp: MssCell,
    live: ArcSwap<Live>,
    /// Moves on every swap of `live`: the lanes' [`LiveCache`]s are valid
    /// for one epoch.
    live_epoch: AtomicU64,
    /// Serialises uplink state changes with reconfiguration, so neither is lost.
    reconfiguring: Mutex<()>,
    table: FlowTable,
    timeouts: TimeoutCell,
    /// `[limits]`, LAN hosts and sources keyed by address as a big-endian
    /// u32 (one word for the hasher).
    allowances: Allowances<u32, Endpoint>,
    fragments: Fragments,
    lan_hosts: DashMap<[u8; 4], [u8; 6], ahash::RandomState>,
    /// Moves on every change of `lan_hosts`: the lanes' [`NeighbourCache`]s
    /// are valid for one epoch.
    neighbour_epoch: AtomicU64,
    unresolved: Mutex<HashSet<[u8; 4]>>,
    /// Set when an address joins `unresolved`, for the I/O layer to ask
    /// for it without waiting for its next round.
    unresolved_news: AtomicBool,
    /// Frames waiting for a LAN host's MAC (`waiting.rs`).
    waiting: waiting::NeighbourWait,
    workers: Mutex<Vec<Arc<LaneCounters>>>,
    /// Everything IPv6 (`ipv6/`).
    v6: ipv6::Ipv6State,
}

/// The most LAN addresses remembered as waiting for resolution.
const MAX_UNRESOLVED: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the
    // data it guards is consistent between statements, so keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn nat_index(protocol: u8) -> usize {
    match protocol {
        PROTO_TCP => 0,
        PROTO_UDP => 1,
        _ => 2,
    }
}

/// Seconds on the router's clock.
fn seconds(now: Duration) -> u32 {
    u32::try_from(now.as_secs()).unwrap_or(u32::MAX)
}

/// The tuple of a frame as it arrived.
fn key_of(frame: &Frame) -> FlowKey {
    let (src_port, dst_port) = frame.ports();
    FlowKey {
        protocol: frame.protocol,
        src: Endpoint::new(frame.src, src_port),
        dst: Endpoint::new(frame.dst, dst_port),
    }
}

impl Router {
    /// A router for `config`. Every uplink starts down: the health layer (or
    /// the caller) marks them up with [`Router::set_uplink_up`].
    ///
    /// # Panics
    /// If `macs.wans` does not have one MAC per configured uplink.
    pub fn new(config: &Config, macs: InterfaceMacs) -> Router {
        assert_eq!(
            macs.wans.len(),
            config.wans.len(),
            "one interface MAC per uplink"
        );
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        let policy = Policy::new(
            Rules::new(&config.rules),
            &config.balance,
            &config.wans,
            config.limits.max_flows as usize,
            seed,
        );
        let policy6 = Policy::new(
            Rules::new(&config.rules),
            &config.balance,
            &config.wans,
            config.limits.max_flows as usize,
            seed.rotate_left(17),
        );
        Router {
            lan_networks: config
                .lan
                .networks
                .iter()
                .map(|n| (u32::from(n.network()), u32::from(n.netmask())))
                .collect(),
            lan_mac: macs.lan,
            lan_mtu: Mtu::new(config.lan.mtu),
            lan_interface_address: LanAddress::default(),
            uplinks: config
                .wans
                .iter()
                .zip(&macs.wans)
                .map(|(wan, mac)| Uplink {
                    name: wan.name.clone(),
                    address: AtomicU32::new(u32::from(wan.address)),
                    mac: *mac,
                    mtu: Mtu::new(wan.mtu),
                    gateway_mac: AtomicU64::new(0),
                    nat: [(); 3].map(|_| Mutex::new(PortAllocator::new(config.nat.ports))),
                    flows: AtomicU32::new(0),
                    offloaded: [(); 4].map(|_| AtomicU64::new(0)),
                })
                .collect(),
            nat_ports: config.nat.ports,
            mss_clamp: MssCell::new(config.nat.mss_clamp),
            live: ArcSwap::from_pointee(Live::new(config, policy, policy6)),
            live_epoch: AtomicU64::new(0),
            reconfiguring: Mutex::new(()),
            table: FlowTable::new(config.limits.max_flows),
            timeouts: TimeoutCell::new(&config.timeouts),
            allowances: Allowances::new(&config.limits),
            fragments: Fragments::default(),
            lan_hosts: DashMap::default(),
            neighbour_epoch: AtomicU64::new(0),
            unresolved: Mutex::new(HashSet::new()),
            unresolved_news: AtomicBool::new(false),
            waiting: waiting::NeighbourWait::new(config.wans.len()),
            workers: Mutex::new(Vec::new()),
            v6: ipv6::Ipv6State::new(config),
        }
    }

    /// A lane for one worker thread; its counters are part of [`Router::stats`].
    pub fn lane(&self) -> Lane {
        let counters = Arc::new(LaneCounters::new(self.uplinks.len()));
        lock(&self.workers).push(Arc::clone(&counters));
        Lane {
            counters,
            outbox: RefCell::default(),
            neighbours: NeighbourCache::default(),
            live: LiveCache::new(self),
            addresses6: ipv6::AddressCache6::new(self),
        }
    }

    /// Processes one frame: rewrites it in place and says where it goes.
    /// Frames it makes besides (fragments) wait in the lane until
    /// [`Lane::drain`]; the next call forgets those not drained.
    pub fn process(&self, lane: &mut Lane, frame: &mut [u8], meta: FrameMeta) -> Verdict {
        lane.outbox.get_mut().clear();
        let ctx = FrameContext::new(lane, meta);
        // The established fast path, for a plain frame; what it read goes on
        // to the general path when it declines. IPv6 has its own, tried
        // only once the IPv4 reader declined (IPv4 pays nothing for it).
        let fast = meta.gso.is_none() && !meta.checksum_partial;
        let plain = if fast {
            packet::parse_plain(frame)
        } else {
            None
        };
        let taken = plain
            .as_ref()
            .and_then(|plain| self.established(frame, plain, &ctx));
        let verdict = match taken {
            Some(verdict) => verdict,
            None if plain.is_none() && self.v6.enabled() && packet::carries_ipv6(frame) => {
                self.ipv6_frame(frame, fast, &ctx)
            }
            None => self.general(frame, plain, &ctx),
        };
        lane.counters.count(meta.port, &verdict);
        verdict
    }

    /// The general path: every frame the established fast path declines
    /// but IPv6 (`ipv6_frame`), with what it read of it (the general
    /// parser's [`Frame`], so it is not parsed twice), if anything.
    fn general(&self, frame: &mut [u8], parsed: Option<Frame>, ctx: &FrameContext) -> Verdict {
        let parsed = match parsed {
            Some(parsed) => Ok(parsed),
            None => packet::parse(frame),
        };
        match parsed {
            Ok(parsed) => {
                let verdict = match ctx.meta.port {
                    Port::Lan => self.lan_ingress(frame, &parsed, ctx),
                    Port::Wan(_) => self.wan_ingress(frame, &parsed, ctx),
                };
                if let (Verdict::Kernel(reason), Fragmentation::First) =
                    (verdict, parsed.fragmentation)
                {
                    self.first_to_kernel(&parsed, reason, ctx);
                }
                ctx.counters.tcp_evidence(ctx.meta.port, &parsed, &verdict);
                verdict
            }
            Err(ParseOutcome::Kernel(reason)) => Verdict::Kernel(reason),
            Err(ParseOutcome::Drop(reason)) => Verdict::Drop(reason),
        }
    }

    fn is_lan(&self, addr: [u8; 4]) -> bool {
        let addr = u32::from_be_bytes(addr);
        self.lan_networks
            .iter()
            .any(|(net, mask)| addr & mask == *net)
    }

    fn uplink_with_address(&self, addr: [u8; 4]) -> Option<UplinkId> {
        self.uplinks
            .iter()
            .position(|u| u.address() == addr)
            .map(|i| i as UplinkId)
    }

    /// Whether an uplink takes new flows (as health last said).
    pub fn uplink_up(&self, uplink: UplinkId) -> bool {
        self.live.load().policy.balancer().is_up(uplink)
    }

    /// Health input: whether an uplink may take new flows, of both
    /// families (IPv6 only where the uplink carries it and can translate;
    /// [`Router::set_uplink_up6`] says it for IPv6 alone).
    pub fn set_uplink_up(&self, uplink: UplinkId, up: bool) {
        let _reconfiguring = lock(&self.reconfiguring);
        let live = self.live.load();
        live.policy.balancer().set_up(uplink, up);
        live.policy6
            .balancer()
            .set_up(uplink, up && self.v6.carries(uplink));
    }

    /// Health input for IPv4 alone, for an uplink whose IPv6 side is judged
    /// by probes of its own ([`Router::set_uplink_up6`]).
    pub fn set_uplink_up4(&self, uplink: UplinkId, up: bool) {
        let _reconfiguring = lock(&self.reconfiguring);
        self.live.load().policy.balancer().set_up(uplink, up);
    }

    /// Expires idle flows and sticky clients, freeing their NAT ports; returns
    /// how many flows were removed.
    pub fn expire(&self, now: Duration) -> usize {
        let now = seconds(now);
        let removed = self.table.expire(now, &self.timeouts.get());
        for flow in &removed {
            self.release(&flow.spec);
        }
        let live = self.live.load();
        live.policy.expire(now);
        live.policy6.expire(now);
        removed.len() + self.expire6(now)
    }

    /// Copies of the flows `keep` says yes to, at most `limit`.
    pub fn flows(
        &self,
        now: Duration,
        limit: usize,
        keep: impl Fn(&FlowSpec) -> bool,
    ) -> Vec<FlowInfo> {
        self.table.snapshot(seconds(now), limit, keep)
    }

    /// Copies of the IPv6 flows `keep` says yes to, at most `limit`.
    pub fn flows6(
        &self,
        now: Duration,
        limit: usize,
        keep: impl Fn(&FlowSpec<packet::Addr6>) -> bool,
    ) -> Vec<FlowInfo<packet::Addr6>> {
        self.v6.table.snapshot(seconds(now), limit, keep)
    }

    /// Every worker's TCP evidence, per worker then per uplink (read by the
    /// health checks).
    pub fn syn_counts(&self) -> Vec<Vec<SynCounts>> {
        lock(&self.workers).iter().map(|w| w.syn_counts()).collect()
    }

    /// [`Router::syn_counts`] over IPv6, counted apart.
    pub fn syn_counts6(&self) -> Vec<Vec<SynCounts>> {
        lock(&self.workers)
            .iter()
            .map(|w| w.syn_counts6())
            .collect()
    }

    pub fn stats(&self) -> Stats {
        let workers = lock(&self.workers);
        let counters = workers.iter().map(|w| w.as_ref());
        let totals = Totals::sum(
            self.uplinks.len(),
            counters.chain(std::iter::once(&self.waiting.counters)),
        );
        let live = self.live.load();
        Stats {
            uplinks: self
                .uplinks
                .iter()
                .enumerate()
                .map(|(id, u)| UplinkStats {
                    up: live.policy.balancer().is_up(id as UplinkId),
                    gateway_mac: unpack_mac(u.gateway_mac.load(Ordering::Relaxed)),
                    flows: u.flows.load(Ordering::Relaxed),
                    nat_in_use: [0, 1, 2].map(|i| lock(&u.nat[i]).in_use()),
                    traffic: {
                        let mut traffic = totals.uplinks[id];
                        let offloaded = u.offloaded.each_ref().map(|c| c.load(Ordering::Relaxed));
                        traffic.packets_out += offloaded[0];
                        traffic.bytes_out += offloaded[1];
                        traffic.packets_in += offloaded[2];
                        traffic.bytes_in += offloaded[3];
                        traffic
                    },
                    ipv6: self.uplink6_stats(id as UplinkId, &live.policy6),
                })
                .collect(),
            totals,
            table: self.table.stats(),
            sticky_clients: live.policy.sticky_clients(),
            fragments: self.fragments.stats(),
            limited_hosts: self.allowances.hosts.hosts() + self.v6.allowances.hosts.hosts(),
            table6: self.v6.table.stats(),
        }
    }
}

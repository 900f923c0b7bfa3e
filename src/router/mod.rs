//! The router core: one frame in, rewritten in place, one verdict out.
//! No I/O and no clock of its own: time is passed in. One [`Router`] is shared
//! by every worker thread; each worker holds a [`Worker`] with its counters.
//!
//! What the core does with a frame:
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
//!   follow it through a small table (`fragments.rs`).
//! - TTL of 1 or less: left to the kernel, which sends time-exceeded;
//!   [`Router::set_time_exceeded`] makes the core answer it itself (for an
//!   I/O path that cannot hand frames to the kernel).
//! - Bigger than the egress MTU: with DF, answered with fragmentation-needed
//!   and the next-hop MTU, from the router's address on the side the frame
//!   came in by (on the LAN that needs `[lan] address`; without it the frame
//!   goes to the kernel, `frag_needed`). Without DF: dropped (`too_big`): the
//!   core does not fragment, and the kernel must not forward it un-NATed.
//! - TCP SYNs: MSS clamped when `[nat] mss_clamp` says so.
//!
//! An ICMP error the core makes overwrites the frame it is about and goes
//! back out the port that frame came in by, as a [`Verdict::Forward`].

#![forbid(unsafe_code)]

mod counters;
mod failover;
mod fragments;
mod hosts;
mod icmp;
mod reconfigure;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;

pub use crate::verdict::{DropReason, KernelReason, Port, Verdict};
pub use counters::{Totals, Traffic, WorkerCounters};
pub use failover::Failover;
pub use fragments::{FragmentStats, LIFETIME as FRAGMENT_LIFETIME, MAX_ENTRIES as MAX_FRAGMENTS};
pub use reconfigure::Reconfigured;

use crate::config::{Action, Config, MssClamp, PortRange, UplinkId};
use crate::flow::{
    tcp_flags_for, Flow, FlowInfo, FlowKey, FlowSpec, FlowTable, InsertError, Origin, Side,
    TableStats,
};
use crate::nat::PortAllocator;
use crate::packet::{
    self, icmp as icmp_packet, Endpoint, Fragmentation, Frame, ParseOutcome, Rewrite, Transport,
    L3_OFFSET, PROTO_TCP, PROTO_UDP,
};
use crate::policy::{Choice, NewConnection, Policy, Rules};
use fragments::Fragments;
use hosts::HostLimit;
use reconfigure::{Live, MssCell, TimeoutCell};

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

/// A worker thread's handle: holds that worker's counters.
pub struct Worker {
    counters: Arc<WorkerCounters>,
}

/// Per-uplink state besides the policy's.
struct Uplink {
    address: [u8; 4],
    mac: [u8; 6],
    /// Changed by [`Router::reconfigure`]; a relaxed load costs a plain read.
    mtu: AtomicU16,
    /// The gateway's MAC with bit 48 set, or 0 while unknown.
    gateway_mac: AtomicU64,
    /// Port allocators for TCP, UDP and ICMP echo identifiers.
    nat: [Mutex<PortAllocator>; 3],
    flows: AtomicU32,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkStats {
    pub up: bool,
    pub gateway_mac: Option<[u8; 6]>,
    pub flows: u32,
    /// NAT mappings in use: TCP, UDP, ICMP.
    pub nat_in_use: [usize; 3],
    pub traffic: Traffic,
}

/// Where a translated packet goes and what it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Egress {
    port: Port,
    rewrite: Rewrite,
}

/// One frame's circumstances.
struct Cx<'a> {
    meta: FrameMeta,
    /// `meta.now` in whole seconds, the flow table's clock.
    now: u32,
    counters: &'a WorkerCounters,
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
    lan_mtu: AtomicU16,
    uplinks: Vec<Uplink>,
    nat_ports: PortRange,
    mss_clamp: MssCell,
    live: ArcSwap<Live>,
    /// Serialises uplink state changes with reconfiguration, so neither is lost.
    reconfiguring: Mutex<()>,
    table: FlowTable,
    timeouts: TimeoutCell,
    hosts: HostLimit,
    fragments: Fragments,
    time_exceeded: AtomicBool,
    lan_hosts: DashMap<[u8; 4], [u8; 6], ahash::RandomState>,
    unresolved: Mutex<HashSet<[u8; 4]>>,
    workers: Mutex<Vec<Arc<WorkerCounters>>>,
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
        Router {
            lan_networks: config
                .lan
                .networks
                .iter()
                .map(|n| (u32::from(n.network()), u32::from(n.netmask())))
                .collect(),
            lan_mac: macs.lan,
            lan_mtu: AtomicU16::new(config.lan.mtu),
            uplinks: config
                .wans
                .iter()
                .zip(&macs.wans)
                .map(|(wan, mac)| Uplink {
                    address: wan.address.octets(),
                    mac: *mac,
                    mtu: AtomicU16::new(wan.mtu),
                    gateway_mac: AtomicU64::new(0),
                    nat: [(); 3].map(|_| Mutex::new(PortAllocator::new(config.nat.ports))),
                    flows: AtomicU32::new(0),
                })
                .collect(),
            nat_ports: config.nat.ports,
            mss_clamp: MssCell::new(config.nat.mss_clamp),
            live: ArcSwap::from_pointee(Live::new(config, policy)),
            reconfiguring: Mutex::new(()),
            table: FlowTable::new(config.limits.max_flows),
            timeouts: TimeoutCell::new(&config.timeouts),
            hosts: HostLimit::new(config.limits.max_flows_per_host),
            fragments: Fragments::default(),
            time_exceeded: AtomicBool::new(false),
            lan_hosts: DashMap::default(),
            unresolved: Mutex::new(HashSet::new()),
            workers: Mutex::new(Vec::new()),
        }
    }

    /// A handle for one worker thread; its counters are part of [`Router::stats`].
    pub fn worker(&self) -> Worker {
        let counters = Arc::new(WorkerCounters::new(self.uplinks.len()));
        lock(&self.workers).push(Arc::clone(&counters));
        Worker { counters }
    }

    /// Processes one frame: rewrites it in place and says where it goes.
    pub fn process(&self, worker: &mut Worker, frame: &mut [u8], meta: FrameMeta) -> Verdict {
        let cx = Cx {
            meta,
            now: seconds(meta.now),
            counters: &worker.counters,
        };
        let verdict = match packet::parse(frame) {
            Ok(parsed) => match meta.port {
                Port::Lan => self.lan_ingress(frame, &parsed, &cx),
                Port::Wan(_) => self.wan_ingress(frame, &parsed, &cx),
            },
            Err(ParseOutcome::Kernel(reason)) => Verdict::Kernel(reason),
            Err(ParseOutcome::Drop(reason)) => Verdict::Drop(reason),
        };
        worker.counters.count(meta.port, &verdict);
        verdict
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
            .position(|u| u.address == addr)
            .map(|i| i as UplinkId)
    }

    fn lan_ingress(&self, buf: &mut [u8], frame: &Frame, cx: &Cx) -> Verdict {
        let wan_address = self.uplink_with_address(frame.dst);
        if self.is_lan(frame.dst) || (wan_address.is_some() && !self.is_lan(frame.src)) {
            return Verdict::Kernel(KernelReason::LocalDestination);
        }
        if !self.is_lan(frame.src) {
            return Verdict::Kernel(KernelReason::NotInside);
        }
        let ports = match (frame.transport, wan_address) {
            (Transport::Fragment, _) => return self.later_fragment(buf, frame, cx),
            (Transport::IcmpError { .. }, _) => return self.icmp_error_from_lan(buf, frame, cx),
            (_, Some(uplink)) => return self.to_wan_address(buf, frame, uplink, cx),
            (Transport::Tcp { .. } | Transport::Udp { .. }, None) => Some(frame.ports()),
            (Transport::IcmpEcho { request: true, .. }, None) => None,
            (Transport::IcmpEcho { request: false, .. } | Transport::IcmpOther { .. }, None) => {
                return Verdict::Kernel(KernelReason::IcmpOther)
            }
            (Transport::Other { .. }, None) => {
                return Verdict::Drop(DropReason::UnsupportedProtocol)
            }
        };
        if frame.ttl <= 1 {
            return self.ttl_expired(buf, frame, cx);
        }
        let key = key_of(frame);
        if let Some(spec) = self.established(Side::Lan, &key, frame, cx.now) {
            return self.outbound(buf, frame, &spec, cx);
        }

        let conn = NewConnection {
            protocol: frame.protocol,
            src: frame.src,
            dst: frame.dst,
            ports,
        };
        let live = self.live.load();
        let decision = live.policy.decide(&conn);
        if let Some(verdict) = self.refuse_new(decision.action, frame) {
            return verdict;
        }
        let uplink = match live.policy.assign(decision, &conn, cx.now) {
            Choice::Uplink(uplink) => uplink,
            Choice::Bypass => return Verdict::Kernel(KernelReason::Bypass),
            Choice::Drop(reason) => return Verdict::Drop(reason),
        };
        let nat = &self.uplinks[usize::from(uplink)].nat[nat_index(frame.protocol)];
        let Some(outside_port) = lock(nat).acquire(key.src) else {
            return Verdict::Drop(DropReason::PortsExhausted);
        };
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside: key.src,
            outside: Endpoint::new(self.uplinks[usize::from(uplink)].address, outside_port),
            remote: key.dst,
            uplink,
            origin: Origin::Lan,
            lan_mac: frame.src_mac,
        };
        self.lan_hosts.insert(frame.src, frame.src_mac);
        match self.insert(spec, Side::Lan, frame, cx.now) {
            Ok(spec) => self.outbound(buf, frame, &spec, cx),
            Err(verdict) => verdict,
        }
    }

    /// A LAN host's frame to a WAN address: to a forwarded port, hairpinned to
    /// the forward's target; to a NAT port, the target's reply in a hairpinned
    /// flow; anything else is for the router itself.
    fn to_wan_address(&self, buf: &mut [u8], frame: &Frame, uplink: UplinkId, cx: &Cx) -> Verdict {
        let (Transport::Tcp { .. } | Transport::Udp { .. }) = frame.transport else {
            return Verdict::Kernel(KernelReason::LocalDestination);
        };
        let key = key_of(frame);
        let live = self.live.load();
        let forward = live.forwards.get(&(frame.protocol, key.dst.port, uplink));
        if forward.is_none() && !self.nat_ports.contains(key.dst.port) {
            return Verdict::Kernel(KernelReason::LocalDestination);
        }
        if frame.ttl <= 1 {
            return self.ttl_expired(buf, frame, cx);
        }
        let Some(target) = forward else {
            return match self.established(Side::Wan, &key, frame, cx.now) {
                Some(spec) if matches!(spec.origin, Origin::Hairpin { .. }) => {
                    self.emit(buf, frame, self.inbound(&spec), cx)
                }
                _ => Verdict::Drop(DropReason::NoMapping),
            };
        };
        let lan_key = FlowKey {
            dst: *target,
            ..key
        };
        if let Some(spec) = self.established(Side::Lan, &lan_key, frame, cx.now) {
            return self.outbound(buf, frame, &spec, cx);
        }
        if !opens_connection(frame) {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        if let Err(verdict) = self.lan_host_mac(target.addr) {
            return verdict;
        }
        let nat = &self.uplinks[usize::from(uplink)].nat[nat_index(frame.protocol)];
        let Some(outside_port) = lock(nat).acquire(key.src) else {
            return Verdict::Drop(DropReason::PortsExhausted);
        };
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside: key.src,
            outside: Endpoint::new(frame.dst, outside_port),
            remote: *target,
            uplink,
            origin: Origin::Hairpin { port: key.dst.port },
            lan_mac: frame.src_mac,
        };
        self.lan_hosts.insert(frame.src, frame.src_mac);
        match self.insert(spec, Side::Lan, frame, cx.now) {
            Ok(spec) => self.outbound(buf, frame, &spec, cx),
            Err(verdict) => verdict,
        }
    }

    /// Rules' bypass and drop decisions, and TCP segments that cannot open a
    /// connection: the verdict for a new connection that gets no flow.
    fn refuse_new(&self, action: Action, frame: &Frame) -> Option<Verdict> {
        match action {
            Action::Bypass => Some(Verdict::Kernel(KernelReason::Bypass)),
            Action::Drop => Some(Verdict::Drop(DropReason::Rule)),
            _ if !opens_connection(frame) => Some(Verdict::Drop(DropReason::TcpNoFlow)),
            _ => None,
        }
    }

    /// The spec of the live flow `key` belongs to, with this packet recorded;
    /// an expired flow is removed and None returned.
    fn established(&self, side: Side, key: &FlowKey, frame: &Frame, now: u32) -> Option<FlowSpec> {
        let timeouts = self.timeouts.get();
        let found = self.table.with_flow(side, key, |flow| {
            if flow.is_expired(now, &timeouts) {
                return None;
            }
            record(flow, side, frame, now);
            Some(flow.spec)
        })?;
        if found.is_none() {
            if let Some(spec) = self.table.remove_if_expired(side, key, now, &timeouts) {
                self.release(&spec);
            }
        }
        found
    }

    /// The spec of the live flow `key` belongs to, recording nothing (for
    /// ICMP errors, which never refresh nor remove a flow: RFC 7857).
    fn peek(&self, side: Side, key: &FlowKey, now: u32) -> Option<FlowSpec> {
        let timeouts = self.timeouts.get();
        self.table
            .with_flow(side, key, |flow| {
                (!flow.is_expired(now, &timeouts)).then_some(flow.spec)
            })
            .flatten()
    }

    /// Inserts a new flow and records its first packet; on failure, gives back
    /// what was taken for it and returns the verdict.
    fn insert(
        &self,
        spec: FlowSpec,
        side: Side,
        frame: &Frame,
        now: u32,
    ) -> Result<FlowSpec, Verdict> {
        if !self.hosts.take(spec.inside.addr) {
            self.release_mapping(&spec);
            return Err(Verdict::Drop(DropReason::HostLimit));
        }
        match self.table.insert(spec, now) {
            Ok(actual) => {
                if actual == spec {
                    self.uplinks[usize::from(spec.uplink)]
                        .flows
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    // Another worker created this flow first: use it.
                    self.release_mapping(&spec);
                    self.hosts.give_back(spec.inside.addr);
                }
                self.table.with_flow(side, &actual.key(side), |flow| {
                    record(flow, side, frame, now)
                });
                Ok(actual)
            }
            Err(error) => {
                self.release_mapping(&spec);
                self.hosts.give_back(spec.inside.addr);
                Err(Verdict::Drop(match error {
                    InsertError::Full => DropReason::TableFull,
                    InsertError::Clash => DropReason::TupleClash,
                }))
            }
        }
    }

    /// The MAC of a LAN host, or the verdict when it is unknown (and the
    /// address noted for the I/O layer to resolve).
    fn lan_host_mac(&self, addr: [u8; 4]) -> Result<[u8; 6], Verdict> {
        if let Some(mac) = self.lan_hosts.get(&addr) {
            return Ok(*mac);
        }
        let mut unresolved = lock(&self.unresolved);
        if unresolved.len() < MAX_UNRESOLVED {
            unresolved.insert(addr);
        }
        Err(Verdict::Drop(DropReason::NeighbourUnresolved))
    }

    /// Where a flow's packets from the inside host go: out its uplink, or
    /// for a hairpinned flow back out the LAN to the forward's target.
    fn outward(&self, spec: &FlowSpec) -> Result<Egress, Verdict> {
        let (port, src_mac, dst_mac) = match spec.origin {
            Origin::Hairpin { .. } => (
                Port::Lan,
                self.lan_mac,
                self.lan_host_mac(spec.remote.addr)?,
            ),
            Origin::Lan | Origin::Wan => {
                let uplink = &self.uplinks[usize::from(spec.uplink)];
                let gateway = unpack_mac(uplink.gateway_mac.load(Ordering::Relaxed))
                    .ok_or(Verdict::Drop(DropReason::NeighbourUnresolved))?;
                (Port::Wan(spec.uplink), uplink.mac, gateway)
            }
        };
        Ok(Egress {
            port,
            rewrite: Rewrite {
                src_mac,
                dst_mac,
                src: spec.outside,
                dst: spec.remote,
            },
        })
    }

    /// Where a flow's replies go: to the inside host.
    fn inbound(&self, spec: &FlowSpec) -> Egress {
        Egress {
            port: Port::Lan,
            rewrite: Rewrite {
                src_mac: self.lan_mac,
                dst_mac: spec.lan_mac,
                src: spec.lan_peer(),
                dst: spec.inside,
            },
        }
    }

    fn outbound(&self, buf: &mut [u8], frame: &Frame, spec: &FlowSpec, cx: &Cx) -> Verdict {
        match self.outward(spec) {
            Ok(egress) => self.emit(buf, frame, egress, cx),
            Err(verdict) => verdict,
        }
    }

    fn mtu(&self, port: Port) -> u16 {
        match port {
            Port::Lan => self.lan_mtu.load(Ordering::Relaxed),
            Port::Wan(uplink) => self.uplinks[usize::from(uplink)]
                .mtu
                .load(Ordering::Relaxed),
        }
    }

    /// The MSS a SYN between `cx`'s ingress and `egress` is clamped to, if any.
    fn mss_limit(&self, egress: Port, cx: &Cx) -> Option<u16> {
        let lan_mtu = self.lan_mtu.load(Ordering::Relaxed);
        match self.mss_clamp.get() {
            MssClamp::Off => None,
            MssClamp::Fixed(mss) => Some(mss),
            MssClamp::Auto => {
                let uplink_mtu = match (cx.meta.port, egress) {
                    (Port::Wan(uplink), _) | (_, Port::Wan(uplink)) => self
                        .uplinks
                        .get(usize::from(uplink))
                        .map_or(lan_mtu, |u| u.mtu.load(Ordering::Relaxed)),
                    (Port::Lan, Port::Lan) => lan_mtu,
                };
                Some(uplink_mtu.min(lan_mtu) - 40)
            }
        }
    }

    /// Sends a translated packet on its way: the egress MTU check, MSS
    /// clamping, the rewrite, and for a first fragment a note for the later
    /// ones.
    fn emit(&self, buf: &mut [u8], frame: &Frame, egress: Egress, cx: &Cx) -> Verdict {
        let mtu = self.mtu(egress.port);
        if frame.end - L3_OFFSET > usize::from(mtu) {
            if !frame.dont_fragment {
                return Verdict::Drop(DropReason::TooBig);
            }
            let error = icmp_packet::Error::FragmentationNeeded { mtu };
            return self
                .answer(buf, frame, error, cx)
                .unwrap_or(Verdict::Kernel(KernelReason::FragNeeded));
        }
        let whole = frame.fragmentation == Fragmentation::Whole;
        let partial =
            whole && (cx.meta.checksum_partial || packet::carries_partial_checksum(buf, frame));
        if frame.is_syn() {
            if let Some(mss) = self.mss_limit(egress.port, cx) {
                packet::clamp_mss(buf, frame, mss, partial);
            }
        }
        packet::apply(buf, frame, &egress.rewrite, partial);
        if frame.fragmentation == Fragmentation::First {
            self.fragments
                .first(cx.meta.port, frame, egress, cx.meta.now);
        }
        Verdict::Forward {
            port: egress.port,
            len: frame.end,
        }
    }

    /// A later fragment: translated as its first fragment was.
    fn later_fragment(&self, buf: &mut [u8], frame: &Frame, cx: &Cx) -> Verdict {
        if frame.ttl <= 1 {
            return Verdict::Kernel(KernelReason::TtlExpired);
        }
        let Some(egress) = self.fragments.later(cx.meta.port, frame, cx.meta.now) else {
            return Verdict::Drop(DropReason::FragmentOutOfOrder);
        };
        if frame.end - L3_OFFSET > usize::from(self.mtu(egress.port)) {
            return Verdict::Drop(DropReason::TooBig);
        }
        packet::apply(buf, frame, &egress.rewrite, false);
        Verdict::Forward {
            port: egress.port,
            len: frame.end,
        }
    }

    /// A packet whose TTL would expire here.
    fn ttl_expired(&self, buf: &mut [u8], frame: &Frame, cx: &Cx) -> Verdict {
        if self.time_exceeded.load(Ordering::Relaxed) {
            if let Some(verdict) = self.answer(buf, frame, icmp_packet::Error::TimeExceeded, cx) {
                return verdict;
            }
        }
        Verdict::Kernel(KernelReason::TtlExpired)
    }

    /// Turns the frame into `error` about itself, back to its sender from the
    /// router's address on the port it came in by; None when that may not be
    /// done (an error about an error, a later fragment, no LAN address) or
    /// does not fit in the frame.
    fn answer(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        error: icmp_packet::Error,
        cx: &Cx,
    ) -> Option<Verdict> {
        if !icmp_packet::may_answer(frame) {
            return None;
        }
        let from = match cx.meta.port {
            Port::Lan => (self.live.load().lan_address?, self.lan_mac),
            Port::Wan(uplink) => {
                let uplink = self.uplinks.get(usize::from(uplink))?;
                (uplink.address, uplink.mac)
            }
        };
        let len = icmp_packet::make_error(buf, frame, error, from)?;
        cx.counters.icmp_sent(error);
        Some(Verdict::Forward {
            port: cx.meta.port,
            len,
        })
    }

    fn wan_ingress(&self, buf: &mut [u8], frame: &Frame, cx: &Cx) -> Verdict {
        let Some(uplink) = self.uplink_with_address(frame.dst) else {
            return Verdict::Kernel(KernelReason::RouterTraffic);
        };
        if self.is_lan(frame.src) {
            return Verdict::Drop(DropReason::SpoofedSource);
        }
        match frame.transport {
            Transport::Tcp { .. } | Transport::Udp { .. } => {}
            Transport::IcmpEcho { request: false, .. } => {}
            Transport::IcmpEcho { request: true, .. } | Transport::Other { .. } => {
                return Verdict::Kernel(KernelReason::RouterTraffic)
            }
            Transport::IcmpOther { .. } => return Verdict::Kernel(KernelReason::IcmpOther),
            Transport::IcmpError { .. } => return self.icmp_error_from_wan(buf, frame, uplink, cx),
            Transport::Fragment => return self.later_fragment(buf, frame, cx),
        }
        if frame.ttl <= 1 {
            return self.ttl_expired(buf, frame, cx);
        }
        let key = key_of(frame);
        if let Some(spec) = self.established(Side::Wan, &key, frame, cx.now) {
            return self.emit(buf, frame, self.inbound(&spec), cx);
        }
        let live = self.live.load();
        let Some(inside) = live.forwards.get(&(frame.protocol, key.dst.port, uplink)) else {
            return if self.owns_port(frame.protocol, key.dst.port, uplink) {
                Verdict::Drop(DropReason::NoMapping)
            } else {
                Verdict::Kernel(KernelReason::RouterTraffic)
            };
        };
        if !opens_connection(frame) {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        let lan_mac = match self.lan_host_mac(inside.addr) {
            Ok(mac) => mac,
            Err(verdict) => return verdict,
        };
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside: *inside,
            outside: key.dst,
            remote: key.src,
            uplink,
            origin: Origin::Wan,
            lan_mac,
        };
        match self.insert(spec, Side::Wan, frame, cx.now) {
            Ok(spec) => self.emit(buf, frame, self.inbound(&spec), cx),
            Err(verdict) => verdict,
        }
    }

    /// Whether `port` (an echo identifier for ICMP) on `uplink`'s address is
    /// the core's: in the NAT range, or forwarded.
    fn owns_port(&self, protocol: u8, port: u16, uplink: UplinkId) -> bool {
        match protocol {
            PROTO_TCP | PROTO_UDP => {
                self.nat_ports.contains(port)
                    || self
                        .live
                        .load()
                        .forwards
                        .contains_key(&(protocol, port, uplink))
            }
            _ => self.nat_ports.contains(port),
        }
    }

    /// Gives back the NAT mapping a flow spec took.
    fn release_mapping(&self, spec: &FlowSpec) {
        if spec.is_snat() {
            let uplink = &self.uplinks[usize::from(spec.uplink)];
            lock(&uplink.nat[nat_index(spec.protocol)]).release(spec.inside);
        }
    }

    /// Accounts for a flow that left the table.
    fn release(&self, spec: &FlowSpec) {
        self.release_mapping(spec);
        self.hosts.give_back(spec.inside.addr);
        self.uplinks[usize::from(spec.uplink)]
            .flows
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the MAC of an uplink's gateway (from the kernel's neighbour table).
    pub fn set_gateway_mac(&self, uplink: UplinkId, mac: Option<[u8; 6]>) {
        self.uplinks[usize::from(uplink)]
            .gateway_mac
            .store(mac.map_or(0, pack_mac), Ordering::Relaxed);
    }

    /// Sets the MAC of a LAN host (from the kernel's neighbour table).
    pub fn set_lan_mac(&self, addr: Ipv4Addr, mac: [u8; 6]) {
        self.lan_hosts.insert(addr.octets(), mac);
        lock(&self.unresolved).remove(&addr.octets());
    }

    /// LAN addresses whose MAC the core needed and did not have.
    pub fn unresolved_lan_hosts(&self) -> Vec<Ipv4Addr> {
        lock(&self.unresolved)
            .iter()
            .map(|a| Ipv4Addr::from(*a))
            .collect()
    }

    /// Health input: whether an uplink may take new flows.
    pub fn set_uplink_up(&self, uplink: UplinkId, up: bool) {
        let _reconfiguring = lock(&self.reconfiguring);
        self.live.load().policy.balancer().set_up(uplink, up);
    }

    /// Whether the core answers packets whose TTL expires here with an ICMP
    /// time-exceeded itself (when the frame can hold it), instead of handing
    /// them to the kernel ([`KernelReason::TtlExpired`], the default). For an
    /// I/O path whose frames the kernel never sees.
    pub fn set_time_exceeded(&self, in_core: bool) {
        self.time_exceeded.store(in_core, Ordering::Relaxed);
    }

    /// Expires idle flows and sticky clients, freeing their NAT ports; returns
    /// how many flows were removed.
    pub fn expire(&self, now: Duration) -> usize {
        let now = seconds(now);
        let removed = self.table.expire(now, &self.timeouts.get());
        for flow in &removed {
            self.release(&flow.spec);
        }
        self.live.load().policy.expire(now);
        removed.len()
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

    pub fn stats(&self) -> Stats {
        let workers = lock(&self.workers);
        let totals = Totals::sum(self.uplinks.len(), workers.iter().map(|w| w.as_ref()));
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
                    traffic: totals.uplinks[id],
                })
                .collect(),
            totals,
            table: self.table.stats(),
            sticky_clients: live.policy.sticky_clients(),
            fragments: self.fragments.stats(),
            limited_hosts: self.hosts.hosts(),
        }
    }
}

/// Whether a segment may open a connection: anything but TCP, or a TCP SYN
/// without ACK.
fn opens_connection(frame: &Frame) -> bool {
    match frame.transport {
        Transport::Tcp { flags, .. } => flags.syn && !flags.ack,
        _ => true,
    }
}

/// Records a packet of `flow` that arrived on `side`: counters, last seen
/// (inbound RSTs do not refresh a mapping: RFC 7857), TCP state, and the
/// sequence the LAN host expects next.
fn record(flow: &Flow, side: Side, frame: &Frame, now: u32) {
    let (syn, fin, rst) = tcp_bits(frame);
    let refresh = !(side == Side::Wan && rst);
    FlowTable::touch(
        flow,
        side,
        frame.end,
        now,
        refresh,
        tcp_flags_for(side, syn, fin, rst),
    );
    if let (Side::Wan, Transport::Tcp { seq, seq_len, .. }) = (side, frame.transport) {
        FlowTable::track_seq_to_lan(flow, seq, seq_len);
    }
}

fn tcp_bits(frame: &Frame) -> (bool, bool, bool) {
    match frame.transport {
        Transport::Tcp { flags, .. } => (flags.syn, flags.fin, flags.rst),
        _ => (false, false, false),
    }
}

const MAC_PRESENT: u64 = 1 << 48;

fn pack_mac(mac: [u8; 6]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&mac);
    u64::from_be_bytes(bytes) | MAC_PRESENT
}

fn unpack_mac(packed: u64) -> Option<[u8; 6]> {
    if packed & MAC_PRESENT == 0 {
        return None;
    }
    let bytes = packed.to_be_bytes();
    bytes[2..].try_into().ok()
}

//! The router core: one frame in, rewritten in place, one verdict out.
//! No I/O and no clock of its own: time is passed in. One [`Router`] is shared
//! by every worker thread; each worker holds a [`Worker`] with its counters.

mod counters;
mod verdict;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;

pub use counters::{Totals, Traffic, WorkerCounters};
pub use verdict::*;

use crate::config::{Action, Config, PortRange, Proto, Timeouts, UplinkId};
use crate::flow::{
    tcp_flags_for, FlowInfo, FlowKey, FlowSpec, FlowTable, InsertError, Origin, Side, TableStats,
};
use crate::nat::PortAllocator;
use crate::packet::{
    self, Endpoint, Frame, ParseOutcome, Rewrite, Transport, PROTO_TCP, PROTO_UDP,
};
use crate::policy::{Choice, NewConnection, Policy, Rules};

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

/// The shared router.
pub struct Router {
    lan_networks: Vec<(u32, u32)>,
    lan_mac: [u8; 6],
    uplinks: Vec<Uplink>,
    nat_ports: PortRange,
    /// (protocol, port, uplink) → inside endpoint.
    forwards: HashMap<(u8, u16, UplinkId), Endpoint>,
    policy: Policy,
    table: FlowTable,
    timeouts: Timeouts,
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
        let mut forwards = HashMap::new();
        for forward in &config.forwards {
            let protocol = if forward.proto == Proto::Udp {
                PROTO_UDP
            } else {
                PROTO_TCP
            };
            for uplink in &forward.wans {
                forwards.insert(
                    (protocol, forward.port, *uplink),
                    Endpoint::new(forward.to_addr.octets(), forward.to_port),
                );
            }
        }
        Router {
            lan_networks: config
                .lan
                .networks
                .iter()
                .map(|n| (u32::from(n.network()), u32::from(n.netmask())))
                .collect(),
            lan_mac: macs.lan,
            uplinks: config
                .wans
                .iter()
                .zip(&macs.wans)
                .map(|(wan, mac)| Uplink {
                    address: wan.address.octets(),
                    mac: *mac,
                    gateway_mac: AtomicU64::new(0),
                    nat: [(); 3].map(|_| Mutex::new(PortAllocator::new(config.nat.ports))),
                    flows: AtomicU32::new(0),
                })
                .collect(),
            nat_ports: config.nat.ports,
            forwards,
            policy: Policy::new(
                Rules::new(&config.rules),
                &config.balance,
                &config.wans,
                config.limits.max_flows as usize,
                seed,
            ),
            table: FlowTable::new(config.limits.max_flows),
            timeouts: config.timeouts.clone(),
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
        let verdict = match packet::parse(frame) {
            Ok(parsed) => match meta.port {
                Port::Lan => self.lan_ingress(frame, &parsed, meta),
                Port::Wan(_) => self.wan_ingress(frame, &parsed, meta),
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

    fn lan_ingress(&self, buf: &mut [u8], frame: &Frame, meta: FrameMeta) -> Verdict {
        if self.is_lan(frame.dst) || self.uplink_with_address(frame.dst).is_some() {
            return Verdict::Kernel(KernelReason::LocalDestination);
        }
        if !self.is_lan(frame.src) {
            return Verdict::Kernel(KernelReason::NotInside);
        }
        let ports = match frame.transport {
            Transport::Tcp { .. } | Transport::Udp { .. } => Some(frame.ports()),
            Transport::IcmpEcho { request: true, .. } => None,
            Transport::IcmpEcho { request: false, .. } | Transport::IcmpOther { .. } => {
                return Verdict::Kernel(KernelReason::IcmpOther)
            }
            Transport::Other { .. } => return Verdict::Drop(DropReason::UnsupportedProtocol),
        };
        if frame.ttl <= 1 {
            return Verdict::Kernel(KernelReason::TtlExpired);
        }
        let (src_port, dst_port) = frame.ports();
        let key = FlowKey {
            protocol: frame.protocol,
            src: Endpoint::new(frame.src, src_port),
            dst: Endpoint::new(frame.dst, dst_port),
        };
        let now = seconds(meta.now);
        if let Some(spec) = self.established(Side::Lan, &key, frame, now) {
            return self.to_wan(buf, frame, &spec, meta);
        }

        let conn = NewConnection {
            protocol: frame.protocol,
            src: frame.src,
            dst: frame.dst,
            ports,
        };
        let decision = self.policy.decide(&conn);
        if let Some(verdict) = self.refuse_new(decision.action, frame) {
            return verdict;
        }
        let uplink = match self.policy.assign(decision, &conn, now) {
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
        match self.insert(spec, Side::Lan, frame, now) {
            Ok(spec) => self.to_wan(buf, frame, &spec, meta),
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
        let (syn, fin, rst) = tcp_bits(frame);
        let flags = tcp_flags_for(side, syn, fin, rst);
        // Inbound RSTs do not refresh a mapping (RFC 7857).
        let refresh = !(side == Side::Wan && rst);
        let found = self.table.with_flow(side, key, |flow| {
            if flow.is_expired(now, &self.timeouts) {
                return None;
            }
            FlowTable::touch(flow, side, frame.end, now, refresh, flags);
            Some(flow.spec)
        })?;
        if found.is_none() {
            if let Some(spec) = self.table.remove_if_expired(side, key, now, &self.timeouts) {
                self.release(&spec);
            }
        }
        found
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
        match self.table.insert(spec, now) {
            Ok(actual) => {
                if actual == spec {
                    self.uplinks[usize::from(spec.uplink)]
                        .flows
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    // Another worker created this flow first: use it.
                    self.release_mapping(&spec);
                }
                let (syn, fin, rst) = tcp_bits(frame);
                let flags = tcp_flags_for(side, syn, fin, rst);
                self.table.with_flow(side, &actual.key(side), |flow| {
                    FlowTable::touch(flow, side, frame.end, now, true, flags)
                });
                Ok(actual)
            }
            Err(error) => {
                self.release_mapping(&spec);
                Err(Verdict::Drop(match error {
                    InsertError::Full => DropReason::TableFull,
                    InsertError::Clash => DropReason::TupleClash,
                }))
            }
        }
    }

    fn to_wan(&self, buf: &mut [u8], frame: &Frame, spec: &FlowSpec, meta: FrameMeta) -> Verdict {
        let uplink = &self.uplinks[usize::from(spec.uplink)];
        let Some(gateway) = unpack_mac(uplink.gateway_mac.load(Ordering::Relaxed)) else {
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        };
        let rewrite = Rewrite {
            src_mac: uplink.mac,
            dst_mac: gateway,
            src: spec.outside,
            dst: spec.remote,
        };
        packet::apply(buf, frame, &rewrite, meta.checksum_partial);
        Verdict::Forward {
            port: Port::Wan(spec.uplink),
            len: frame.end,
        }
    }

    fn to_lan(&self, buf: &mut [u8], frame: &Frame, spec: &FlowSpec, meta: FrameMeta) -> Verdict {
        let rewrite = Rewrite {
            src_mac: self.lan_mac,
            dst_mac: spec.lan_mac,
            src: spec.remote,
            dst: spec.inside,
        };
        packet::apply(buf, frame, &rewrite, meta.checksum_partial);
        Verdict::Forward {
            port: Port::Lan,
            len: frame.end,
        }
    }

    fn wan_ingress(&self, buf: &mut [u8], frame: &Frame, meta: FrameMeta) -> Verdict {
        let Some(uplink) = self.uplink_with_address(frame.dst) else {
            return Verdict::Kernel(KernelReason::RouterTraffic);
        };
        match frame.transport {
            Transport::Tcp { .. } | Transport::Udp { .. } => {}
            Transport::IcmpEcho { request: false, .. } => {}
            Transport::IcmpEcho { request: true, .. } | Transport::Other { .. } => {
                return Verdict::Kernel(KernelReason::RouterTraffic)
            }
            Transport::IcmpOther { .. } => return Verdict::Kernel(KernelReason::IcmpOther),
        }
        if frame.ttl <= 1 {
            return Verdict::Kernel(KernelReason::TtlExpired);
        }
        let (src_port, dst_port) = frame.ports();
        let key = FlowKey {
            protocol: frame.protocol,
            src: Endpoint::new(frame.src, src_port),
            dst: Endpoint::new(frame.dst, dst_port),
        };
        let now = seconds(meta.now);
        if let Some(spec) = self.established(Side::Wan, &key, frame, now) {
            return self.to_lan(buf, frame, &spec, meta);
        }
        let Some(inside) = self.forwards.get(&(frame.protocol, dst_port, uplink)) else {
            let nat_port = match frame.transport {
                Transport::IcmpEcho { .. } => true,
                _ => self.nat_ports.contains(dst_port),
            };
            return if nat_port {
                Verdict::Drop(DropReason::NoMapping)
            } else {
                Verdict::Kernel(KernelReason::RouterTraffic)
            };
        };
        if !opens_connection(frame) {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        let Some(lan_mac) = self.lan_hosts.get(&inside.addr).map(|mac| *mac) else {
            let mut unresolved = lock(&self.unresolved);
            if unresolved.len() < MAX_UNRESOLVED {
                unresolved.insert(inside.addr);
            }
            return Verdict::Drop(DropReason::NeighbourUnresolved);
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
        match self.insert(spec, Side::Wan, frame, now) {
            Ok(spec) => self.to_lan(buf, frame, &spec, meta),
            Err(verdict) => verdict,
        }
    }

    /// Gives back the NAT mapping a flow spec took.
    fn release_mapping(&self, spec: &FlowSpec) {
        if spec.origin == Origin::Lan {
            let uplink = &self.uplinks[usize::from(spec.uplink)];
            lock(&uplink.nat[nat_index(spec.protocol)]).release(spec.inside);
        }
    }

    /// Accounts for a flow that left the table.
    fn release(&self, spec: &FlowSpec) {
        self.release_mapping(spec);
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
        self.policy.balancer().set_up(uplink, up);
    }

    /// Expires idle flows and sticky clients, freeing their NAT ports; returns
    /// how many flows were removed.
    pub fn expire(&self, now: Duration) -> usize {
        let now = seconds(now);
        let removed = self.table.expire(now, &self.timeouts);
        for spec in &removed {
            self.release(spec);
        }
        self.policy.expire(now);
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
        Stats {
            uplinks: self
                .uplinks
                .iter()
                .enumerate()
                .map(|(id, u)| UplinkStats {
                    up: self.policy.balancer().is_up(id as UplinkId),
                    gateway_mac: unpack_mac(u.gateway_mac.load(Ordering::Relaxed)),
                    flows: u.flows.load(Ordering::Relaxed),
                    nat_in_use: [0, 1, 2].map(|i| lock(&u.nat[i]).in_use()),
                    traffic: totals.uplinks[id],
                })
                .collect(),
            totals,
            table: self.table.stats(),
            sticky_clients: self.policy.sticky_clients(),
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

//! IPv6: the same router for the other family. A frame with ethertype
//! 0x86DD comes here when the configuration has IPv6 (`[lan] networks` with
//! an IPv6 prefix); without it every IPv6 frame stays the kernel's, as
//! before.
//!
//! What the core does with an IPv6 frame:
//! - From the LAN: the first packet of a connection goes through the same
//!   rules and a balancer of its own (over the uplinks that carry IPv6 and
//!   are up for it) and opens a flow pinned to its uplink; every packet
//!   leaves translated the way that uplink's `nat6` says (`lan.rs`): the
//!   LAN prefix mapped onto the uplink's (host bits kept, or RFC 6296), NAT66
//!   to the uplink's address with a port, or untouched.
//! - From a WAN: replies of known flows go back to their LAN host; with a
//!   prefix mapping (or `nat6 = "off"`), a new connection to a LAN host's
//!   outside address opens a flow pinned to the uplink it came in by, so
//!   its replies leave that way (`wan.rs`).
//! - ICMPv6 errors about a flow's packets are translated with the packet
//!   they quote; the core answers hop-limit expiry (time exceeded), packets
//!   bigger than the egress MTU (packet too big: routers never fragment
//!   IPv6) and new connections no uplink can carry (unreachable, so a Happy
//!   Eyeballs client falls back to IPv4 at once) (`icmp.rs`).
//! - Fragments: a first fragment goes with its flow, the later ones follow
//!   it (`fragments.rs`).
//! - Neighbour Discovery, MLD, link-local traffic, Hop-by-Hop options and
//!   routing headers with segments left stay the kernel's.
//!
//! A whole TCP or UDP packet of a known flow takes a fast path through the
//! same steps (`established.rs`), as IPv4's does.
//!
//! IPv6 flows live in a table of their own (`FlowTable<Addr6>`), so IPv4
//! flows keep their size.

mod addresses;
mod established;
mod fragments;
mod icmp;
mod lan;
mod offload;
mod wan;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub(super) use addresses::AddressCache6;
use std::sync::{Mutex, RwLock};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use ipnet::Ipv6Net;

use super::hosts::Allowances;
use super::neighbours::{pack_mac, unpack_mac};
use super::state::Drop;
use super::{lock, nat_index, Failover, FrameContext, Router};
use crate::config::{Config, Nat6, UplinkId};
use crate::flow::{idle_timeout, FlowKey, FlowKind, FlowSpec, FlowTable, SavedFlow};
use crate::nat::prefix::{outside_prefix, PrefixMap, PrefixTranslation};
use crate::nat::PortAllocator;
use crate::packet::{self, Addr6, Endpoint6, Frame6, ParseOutcome};
use crate::verdict::{DropReason, Port, Verdict};

/// The router's IPv6 state.
pub(super) struct Ipv6State {
    lan_networks: Vec<Ipv6Net>,
    /// The same as (network, mask), for the per-packet test.
    lan_ranges: Vec<(u128, u128)>,
    /// `[lan] address6`, else the LAN interface's (the I/O layer tells).
    lan_address: RwLock<Option<Addr6>>,
    lan_address_configured: Option<Addr6>,
    uplinks: Vec<Uplink6>,
    /// Moves on every change of `lan_address` or of an uplink's
    /// addressing: the lanes' [`AddressCache6`]s are valid for one epoch.
    epoch: AtomicU64,
    pub(super) table: FlowTable<Addr6>,
    /// LAN hosts' MACs: from the kernel's neighbour table, and learnt from
    /// the frames they send (an inbound connection needs its host's MAC).
    pub(super) lan_hosts: DashMap<Addr6, [u8; 6], ahash::RandomState>,
    /// LAN hosts whose MAC a frame needed and the core did not have, for
    /// the I/O layer to ask the kernel for (bounded).
    unresolved: Mutex<HashSet<Addr6>>,
    /// Where the later fragments of the datagrams whose first went through go.
    fragments: fragments::Fragments6,
    /// `[limits]` for IPv6 flows: per LAN host, per inbound connection's
    /// target (a port forward's, or a host reached by a prefix mapping)
    /// and per Internet source.
    pub(super) allowances: Allowances<Addr6, Endpoint6>,
}

/// One uplink's IPv6 side.
struct Uplink6 {
    /// None: the uplink carries no IPv6.
    nat: Option<Nat6>,
    addressing: ArcSwap<Addressing6>,
    /// The gateway's MAC with bit 48 set, or 0 while unknown.
    gateway_mac: AtomicU64,
    /// NAT66 port allocators for TCP, UDP and ICMPv6 echo identifiers.
    ports: [Mutex<PortAllocator<Addr6>>; 3],
    flows: AtomicU32,
}

/// What an uplink's translation needs to know of its addresses, swapped
/// whole when the kernel's change (a new SLAAC address, a delegated prefix
/// that changed).
#[derive(Debug, Default)]
struct Addressing6 {
    address: Option<Addr6>,
    prefix: Option<Ipv6Net>,
    /// One map per LAN prefix, onto its prefix inside `prefix` (prefix and
    /// npt); empty otherwise.
    maps: Vec<PrefixMap>,
}

impl Addressing6 {
    fn new(
        nat: Option<Nat6>,
        address: Option<Addr6>,
        prefix: Option<Ipv6Net>,
        lan: &[Ipv6Net],
    ) -> Addressing6 {
        let translation = match nat {
            Some(Nat6::Prefix) => Some(PrefixTranslation::KeepHostBits),
            Some(Nat6::Npt) => Some(PrefixTranslation::ChecksumNeutral),
            _ => None,
        };
        let maps = match (translation, prefix) {
            (Some(translation), Some(prefix)) => lan
                .iter()
                .filter_map(|inside| {
                    let outside = outside_prefix(*inside, prefix).ok()?;
                    PrefixMap::new(*inside, outside, translation).ok()
                })
                .collect(),
            _ => Vec::new(),
        };
        Addressing6 {
            address,
            prefix,
            maps,
        }
    }

    /// Whether new connections can be translated.
    fn usable(&self, nat: Nat6) -> bool {
        match nat {
            Nat6::Masquerade => self.address.is_some(),
            Nat6::Prefix | Nat6::Npt => !self.maps.is_empty(),
            Nat6::Off => self.prefix.is_some(),
        }
    }
}

impl Ipv6State {
    pub(super) fn new(config: &Config) -> Ipv6State {
        let lan = &config.lan.networks6;
        Ipv6State {
            lan_networks: lan.clone(),
            lan_ranges: lan
                .iter()
                .map(|net| (u128::from(net.network()), u128::from(net.netmask())))
                .collect(),
            lan_address: RwLock::new(config.lan.address6.map(|a| a.octets())),
            lan_address_configured: config.lan.address6.map(|a| a.octets()),
            uplinks: config
                .wans
                .iter()
                .map(|wan| {
                    let v6 = wan.ipv6.as_ref();
                    let nat = v6.map(|v6| v6.nat);
                    let address = v6.map(|v6| v6.address.octets()).filter(|a| *a != [0; 16]);
                    let prefix = v6.and_then(|v6| v6.prefix);
                    Uplink6 {
                        nat,
                        addressing: ArcSwap::from_pointee(Addressing6::new(
                            nat, address, prefix, lan,
                        )),
                        gateway_mac: AtomicU64::new(0),
                        ports: [(); 3].map(|_| Mutex::new(PortAllocator::new(config.nat.ports))),
                        flows: AtomicU32::new(0),
                    }
                })
                .collect(),
            epoch: AtomicU64::new(0),
            table: FlowTable::new(config.limits.max_flows),
            lan_hosts: DashMap::default(),
            unresolved: Mutex::new(HashSet::new()),
            fragments: fragments::Fragments6::default(),
            allowances: Allowances::new(&config.limits),
        }
    }

    /// Whether the configuration gives the core IPv6 to forward.
    pub(super) fn enabled(&self) -> bool {
        !self.lan_networks.is_empty()
    }

    fn is_lan(&self, addr: Addr6) -> bool {
        let addr = u128::from_be_bytes(addr);
        self.lan_ranges
            .iter()
            .any(|(net, mask)| addr & mask == *net)
    }

    /// Whether `uplink` carries IPv6 and can translate a new connection now.
    pub(super) fn carries(&self, uplink: UplinkId) -> bool {
        self.uplinks
            .get(usize::from(uplink))
            .and_then(|u| Some(u.addressing.load().usable(u.nat?)))
            .unwrap_or(false)
    }
}

/// An uplink's IPv6 side for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink6Stats {
    /// Takes new IPv6 connections.
    pub up: bool,
    pub nat: Nat6,
    pub address: Option<std::net::Ipv6Addr>,
    pub prefix: Option<Ipv6Net>,
    pub gateway_mac: Option<[u8; 6]>,
    pub flows: u32,
    /// NAT66 mappings in use: TCP, UDP, ICMPv6.
    pub nat_in_use: [usize; 3],
}

/// The tuple of an IPv6 frame as it arrived.
fn key_of(frame: &Frame6) -> FlowKey<Addr6> {
    let (src_port, dst_port) = frame.ports();
    FlowKey {
        protocol: frame.protocol,
        src: Endpoint6::new(frame.src, src_port),
        dst: Endpoint6::new(frame.dst, dst_port),
    }
}

impl Router {
    /// An IPv6 frame: when `fast` (no GSO, no partial checksum) and plain,
    /// a packet of a known flow through the fast path; any other through
    /// the general path, with what the fast path read of it.
    pub(super) fn ipv6_frame(&self, buf: &mut [u8], fast: bool, ctx: &FrameContext) -> Verdict {
        let plain = if fast {
            packet::parse_plain6(buf)
        } else {
            None
        };
        if let Some(verdict) = (plain.as_ref()).and_then(|plain| self.established6(buf, plain, ctx))
        {
            return verdict;
        }
        self.general6(buf, plain, ctx)
    }

    /// The general path for IPv6: parsed (unless `parse_plain6` read it
    /// already), then by where it came in.
    fn general6(&self, buf: &mut [u8], parsed: Option<Frame6>, ctx: &FrameContext) -> Verdict {
        let parsed = match parsed {
            Some(parsed) => Ok(parsed),
            None => packet::parse6(buf),
        };
        let frame = match parsed {
            Ok(frame) => frame,
            Err(ParseOutcome::Kernel(reason)) => return Verdict::Kernel(reason),
            Err(ParseOutcome::Drop(reason)) => return Verdict::Drop(reason),
        };
        if ctx.meta.gso.is_some() {
            // The I/O layer passes IPv6 super-frames whole to no one: it
            // cuts them first.
            return Verdict::Drop(crate::verdict::DropReason::GsoNotWhole);
        }
        if ctx.meta.checksum_partial || packet::carries_partial_checksum6(buf, &frame) {
            packet::complete_partial_checksum6(buf, &frame);
        }
        let verdict = match ctx.meta.port {
            Port::Lan => self.lan_ingress6(buf, &frame, ctx),
            Port::Wan(uplink) => self.wan_ingress6(buf, &frame, uplink, ctx),
        };
        ctx.counters.tcp_evidence6(ctx.meta.port, &frame, &verdict);
        verdict
    }

    /// Health input for IPv6 alone: whether an uplink may take new IPv6
    /// connections (an uplink can be up for IPv4 and down for IPv6). Only
    /// an uplink that carries IPv6 can be up for it.
    pub fn set_uplink_up6(&self, uplink: UplinkId, up: bool) {
        let _reconfiguring = lock(&self.reconfiguring);
        let up = up && self.v6.carries(uplink);
        self.live.load().policy6.balancer().set_up(uplink, up);
    }

    /// Whether an uplink takes new IPv6 connections.
    pub fn uplink_up6(&self, uplink: UplinkId) -> bool {
        self.live.load().policy6.balancer().is_up(uplink)
    }

    /// Sets an uplink's own IPv6 address (`address6 = "auto"`: the kernel's
    /// global address on its interface), None while it has none. With NAT66
    /// the flows of the old address, which can no longer reach it, are
    /// failed over as [`Router::fail_over6`] does.
    pub fn set_uplink_address6(
        &self,
        uplink: UplinkId,
        address: Option<std::net::Ipv6Addr>,
    ) -> Failover {
        self.readdress6(uplink, |old| (address.map(|a| a.octets()), old.prefix))
    }

    /// Sets the prefix an uplink's ISP delegates (a PPPoE redial gives a new
    /// one): the mappings of the LAN prefixes follow at once, and the flows
    /// whose outside address lay in the old prefix, which the ISP routes no
    /// more, are failed over.
    pub fn set_uplink_prefix6(&self, uplink: UplinkId, prefix: Option<Ipv6Net>) -> Failover {
        self.readdress6(uplink, |old| (old.address, prefix.map(|p| p.trunc())))
    }

    fn readdress6(
        &self,
        uplink: UplinkId,
        change: impl FnOnce(&Addressing6) -> (Option<Addr6>, Option<Ipv6Net>),
    ) -> Failover {
        let Some(state) = self.v6.uplinks.get(usize::from(uplink)) else {
            return Failover::default();
        };
        let (address, prefix) = change(&state.addressing.load());
        let new = std::sync::Arc::new(Addressing6::new(
            state.nat,
            address,
            prefix,
            &self.v6.lan_networks,
        ));
        // New connections take the new addresses first; then the flows of
        // the old ones go.
        state.addressing.store(std::sync::Arc::clone(&new));
        self.v6.epoch.fetch_add(1, Ordering::Release);
        let kept = |outside: Addr6| match state.nat {
            Some(Nat6::Masquerade) => new.address == Some(outside),
            Some(Nat6::Prefix | Nat6::Npt) => new.maps.iter().any(|m| m.inbound(outside).is_some()),
            Some(Nat6::Off) | None => true,
        };
        self.fail_over6_where(uplink, |spec| !kept(spec.outside.addr))
    }

    /// Sets the MAC of an uplink's IPv6 gateway (from the kernel's
    /// neighbour table).
    pub fn set_gateway_mac6(&self, uplink: UplinkId, mac: Option<[u8; 6]>) {
        if let Some(state) = self.v6.uplinks.get(usize::from(uplink)) {
            state
                .gateway_mac
                .store(mac.map_or(0, pack_mac), Ordering::Relaxed);
        }
    }

    /// Sets the MAC of a LAN host's IPv6 address (from the kernel's
    /// neighbour table).
    pub fn set_lan_mac6(&self, addr: std::net::Ipv6Addr, mac: [u8; 6]) {
        self.v6.lan_hosts.insert(addr.octets(), mac);
        lock(&self.v6.unresolved).remove(&addr.octets());
    }

    /// LAN hosts' IPv6 addresses whose MAC the core needed and did not have
    /// (an inbound connection's first packet, which waits for it:
    /// `waiting.rs`).
    pub fn unresolved_lan_hosts6(&self) -> Vec<std::net::Ipv6Addr> {
        lock(&self.v6.unresolved)
            .iter()
            .map(|a| std::net::Ipv6Addr::from(*a))
            .collect()
    }

    /// Notes a LAN host whose MAC is unknown for the I/O layer to resolve.
    fn unresolved6(&self, addr: Addr6) -> Verdict {
        let mut unresolved = lock(&self.v6.unresolved);
        if unresolved.len() < super::MAX_UNRESOLVED && unresolved.insert(addr) {
            self.unresolved_news.store(true, Ordering::Relaxed);
        }
        Verdict::Drop(crate::verdict::DropReason::NeighbourUnresolved)
    }

    /// The LAN interface's IPv6 address, used as the source of the ICMPv6
    /// errors sent to LAN hosts unless `[lan] address6` says otherwise.
    pub fn set_lan_interface_address6(&self, addr: Option<std::net::Ipv6Addr>) {
        if self.v6.lan_address_configured.is_none() {
            if let Ok(mut address) = self.v6.lan_address.write() {
                *address = addr.map(|a| a.octets());
            }
            self.v6.epoch.fetch_add(1, Ordering::Release);
        }
    }

    /// The IPv6 flows and each uplink's share of them, for status.
    pub fn ipv6_flow_count(&self) -> (u32, Vec<u32>) {
        (
            self.v6.table.len(),
            self.v6
                .uplinks
                .iter()
                .map(|u| u.flows.load(Ordering::Relaxed))
                .collect(),
        )
    }

    /// Expires idle IPv6 flows, freeing their NAT66 ports; returns how many
    /// were removed.
    pub(super) fn expire6(&self, now: u32) -> usize {
        let removed = self.v6.table.expire(now, &self.timeouts.get());
        for flow in &removed {
            self.release6(&flow.spec);
        }
        removed.len()
    }

    /// Gives back what an IPv6 flow held: its NAT66 port, its count.
    pub(in crate::router) fn release6(&self, spec: &FlowSpec<Addr6>) {
        self.give_back_allowance6(spec);
        if let Some(uplink) = self.v6.uplinks.get(usize::from(spec.uplink)) {
            if uplink.nat == Some(Nat6::Masquerade) && spec.is_snat() {
                lock(&uplink.ports[nat_index(spec.protocol)]).release(spec.inside);
            }
            uplink.flows.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn uplink6_stats(
        &self,
        uplink: UplinkId,
        policy6: &crate::policy::Policy,
    ) -> Option<Uplink6Stats> {
        let state = self.v6.uplinks.get(usize::from(uplink))?;
        let addressing = state.addressing.load();
        Some(Uplink6Stats {
            up: policy6.balancer().is_up(uplink),
            nat: state.nat?,
            address: addressing.address.map(std::net::Ipv6Addr::from),
            prefix: addressing.prefix,
            gateway_mac: self.gateway_mac6(uplink),
            flows: state.flows.load(Ordering::Relaxed),
            nat_in_use: [0, 1, 2].map(|i| lock(&state.ports[i]).in_use()),
        })
    }

    /// Restores a saved IPv6 flow (see `Router::restore_state`): kept when
    /// its uplink (by name, `ids` mapping the saved ids) still carries IPv6
    /// and still stands for its inside host at the same outside address
    /// (the same NAT66 address and a port in range, or the same mapping),
    /// its inside host is still inside the LAN, and the limits allow it.
    pub(in crate::router) fn restore_flow6(
        &self,
        ids: &[Option<UplinkId>],
        saved: &SavedFlow<Addr6>,
        now: u32,
    ) -> Result<(), Drop> {
        if saved.idle_s > idle_timeout(saved.spec.protocol, saved.tcp, &self.timeouts.get()) {
            return Err(Drop::Expired);
        }
        let uplink =
            (ids.get(usize::from(saved.spec.uplink)).copied().flatten()).ok_or(Drop::UplinkGone)?;
        let state = &self.v6.uplinks[usize::from(uplink)];
        let nat = state.nat.ok_or(Drop::UplinkGone)?;
        let mut spec = saved.spec;
        spec.uplink = uplink;
        spec.lan_mac = super::neighbours::NO_MAC;
        if !self.v6.is_lan(spec.inside.addr) {
            return Err(Drop::RangeChanged);
        }
        let addressing = state.addressing.load();
        let same = match nat {
            Nat6::Masquerade => addressing.address == Some(spec.outside.addr),
            Nat6::Prefix | Nat6::Npt => {
                let inside = addressing
                    .maps
                    .iter()
                    .find_map(|m| m.inbound(spec.outside.addr));
                inside == Some(spec.inside.addr)
            }
            Nat6::Off => spec.outside == spec.inside,
        };
        if !same {
            return Err(Drop::AddressChanged);
        }
        let masquerade = nat == Nat6::Masquerade && spec.is_snat();
        if masquerade {
            if !self.nat_ports.contains(spec.outside.port) {
                return Err(Drop::RangeChanged);
            }
            let ports = &state.ports[nat_index(spec.protocol)];
            if !lock(ports).acquire_port(spec.inside, spec.outside.port) {
                return Err(Drop::Refused);
            }
        }
        let taken = self.take_allowance6(&spec).is_ok();
        if !taken
            || (self.v6.table)
                .restore(&SavedFlow { spec, ..*saved }, now)
                .is_err()
        {
            if masquerade {
                lock(&state.ports[nat_index(spec.protocol)]).release(spec.inside);
            }
            if taken {
                self.give_back_allowance6(&spec);
            }
            return Err(Drop::Refused);
        }
        state.flows.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a new IPv6 flow against `[limits]` (see `Allowances::take`).
    pub(super) fn take_allowance6(&self, spec: &FlowSpec<Addr6>) -> Result<(), DropReason> {
        let inbound = spec.kind == FlowKind::Dnat;
        (self.v6.allowances).take(inbound, spec.inside.addr, spec.inside, spec.remote.addr)
    }

    fn give_back_allowance6(&self, spec: &FlowSpec<Addr6>) {
        let inbound = spec.kind == FlowKind::Dnat;
        (self.v6.allowances).give_back(inbound, spec.inside.addr, spec.inside, spec.remote.addr);
    }

    fn gateway_mac6(&self, uplink: UplinkId) -> Option<[u8; 6]> {
        let state = self.v6.uplinks.get(usize::from(uplink))?;
        unpack_mac(state.gateway_mac.load(Ordering::Relaxed))
    }

    fn lan_address6(&self) -> Option<Addr6> {
        self.v6.lan_address.read().ok().and_then(|a| *a)
    }
}

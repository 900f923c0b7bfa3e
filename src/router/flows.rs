//! The flow lifecycle as the router sees it: finding a packet's flow and
//! recording the packet on it, opening a source-NATed flow (the one place
//! that does), inserting, and giving back what a flow held when it leaves.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use super::{lock, nat_index, FrameContext, Router};
use crate::config::UplinkId;
use crate::flow::{tcp_flags_for, Flow, FlowKey, FlowKind, FlowSpec, FlowTable, InsertError, Side};
use crate::packet::{Addr4, Addr6, ChecksumDeltas, Endpoint, Family, Frame, Parsed, Transport};
use crate::verdict::{DropReason, Verdict};

impl Router {
    /// Opens a source-NATed flow for a LAN host's new connection to `remote`
    /// over `uplink` (a LAN-originated flow, or a hairpinned one), and sends
    /// the packet on: a NAT port for the inside endpoint, the LAN host's MAC
    /// from the kernel's neighbour table (the frame's source MAC only for
    /// this flow's replies while the table has none, see neighbours.rs), the
    /// flow inserted and its first packet recorded.
    pub(super) fn open_snat_flow(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        remote: Endpoint,
        uplink: UplinkId,
        kind: FlowKind,
        ctx: &FrameContext,
    ) -> Verdict {
        let inside = Endpoint::new(frame.src, frame.ports().0);
        let address = self.uplinks[usize::from(uplink)].address();
        if address == [0; 4] {
            return Verdict::Drop(DropReason::NoUplink);
        }
        let nat = &self.uplinks[usize::from(uplink)].nat[nat_index(frame.protocol)];
        let Some(outside_port) = lock(nat).acquire(inside) else {
            return Verdict::Drop(DropReason::PortsExhausted);
        };
        let spec = FlowSpec {
            protocol: frame.protocol,
            inside,
            outside: Endpoint::new(address, outside_port),
            remote,
            uplink,
            kind,
            lan_mac: self
                .lan_host_mac_cached(frame.src, ctx.neighbours)
                .unwrap_or(frame.src_mac),
        };
        match self.insert(spec, Side::Lan, frame, ctx.now) {
            Ok((spec, deltas)) => {
                // A source-NATed flow's first packet is rewritten with the
                // checksum deltas its flow just computed.
                let deltas = (kind == FlowKind::Snat).then_some(deltas);
                self.forward_to_remote(buf, frame, &spec, deltas, ctx)
            }
            Err(verdict) => verdict,
        }
    }

    /// Records this packet on the live flow `key` belongs to (counters, last
    /// seen, TCP state) and returns the flow's spec; a flow found expired is
    /// removed instead, what it held given back, and None returned. One
    /// lookup under one lock, none when the established fast path found no
    /// flow for `key` in this frame already. For either family.
    pub(super) fn record_or_expire<A: Family>(
        &self,
        side: Side,
        key: &FlowKey<A>,
        frame: &impl Parsed,
        ctx: &FrameContext,
    ) -> Option<FlowSpec<A>>
    where
        Router: FamilyFlows<A>,
    {
        if Router::absent(ctx).get() == Some((side, *key)) {
            return None;
        }
        let now = ctx.now;
        let timeouts = self.timeouts.get();
        let table = self.flow_table();
        let found = table.with_flow(side, key, |flow| {
            if flow.is_expired(now, &timeouts) {
                return None;
            }
            record(flow, side, frame, now);
            Some(flow.spec)
        })?;
        if found.is_none() {
            if let Some(spec) = table.remove_if_expired(side, key, now, &timeouts) {
                self.release_flow(&spec);
            }
        }
        found
    }

    /// The spec of the live flow `key` belongs to, recording nothing (for
    /// ICMP errors, which never refresh nor remove a flow: RFC 7857).
    pub(super) fn peek(&self, side: Side, key: &FlowKey, now: u32) -> Option<FlowSpec> {
        let timeouts = self.timeouts.get();
        self.table
            .with_flow(side, key, |flow| {
                (!flow.is_expired(now, &timeouts)).then_some(flow.spec)
            })
            .flatten()
    }

    /// Inserts a new flow and records its first packet, and returns the
    /// flow's spec and its checksum deltas for packets from `side`; on
    /// failure, gives back what was taken for it and returns the verdict.
    pub(super) fn insert(
        &self,
        spec: FlowSpec,
        side: Side,
        frame: &Frame,
        now: u32,
    ) -> Result<(FlowSpec, ChecksumDeltas), Verdict> {
        if let Err(reason) = self.take_allowance(&spec) {
            self.release_mapping(&spec);
            return Err(Verdict::Drop(reason));
        }
        let deltas = Cell::new(ChecksumDeltas::default());
        let first = |flow: &Flow| {
            record(flow, side, frame, now);
            deltas.set(flow.deltas[side as usize]);
        };
        match self.insert_or_evict(&self.table, spec, now, first, |s| self.release(s)) {
            Ok(actual) => {
                if actual == spec {
                    self.uplinks[usize::from(spec.uplink)]
                        .flows
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    // Another worker created this flow first: use it.
                    self.release_mapping(&spec);
                    self.give_back_allowance(&spec);
                }
                Ok((actual, deltas.get()))
            }
            Err(error) => {
                self.release_mapping(&spec);
                self.give_back_allowance(&spec);
                Err(Verdict::Drop(match error {
                    InsertError::Full => DropReason::TableFull,
                    InsertError::Clash => DropReason::TupleClash,
                }))
            }
        }
    }

    /// Inserts a flow into `table` (the IPv4 or the IPv6 one) and runs
    /// `first` on it under the insert lock (see `FlowTable::insert`); when
    /// the table is full, first evicts a batch of unanswered flows (early
    /// drop: a 64th of the table, 1 to 4096), each given back by `release`,
    /// and tries once more.
    pub(super) fn insert_or_evict<A: Family>(
        &self,
        table: &FlowTable<A>,
        spec: FlowSpec<A>,
        now: u32,
        first: impl Fn(&Flow<A>),
        release: impl Fn(&FlowSpec<A>),
    ) -> Result<FlowSpec<A>, InsertError> {
        match table.insert(spec, now, &first) {
            Err(InsertError::Full) => {
                let batch = (table.stats().max_flows as usize / 64).clamp(1, 4096);
                let evicted = table.evict_unanswered(now, batch);
                if evicted.is_empty() {
                    return Err(InsertError::Full);
                }
                for flow in &evicted {
                    release(&flow.spec);
                }
                table.insert(spec, now, first)
            }
            other => other,
        }
    }

    /// Counts a new flow against its limits: a flow opened from the
    /// Internet against its forward's target and its source, any other
    /// against its LAN host.
    pub(super) fn take_allowance(&self, spec: &FlowSpec) -> Result<(), DropReason> {
        let (inbound, host, source) = allowance_keys(spec);
        self.allowances.take(inbound, host, spec.inside, source)
    }

    pub(super) fn give_back_allowance(&self, spec: &FlowSpec) {
        let (inbound, host, source) = allowance_keys(spec);
        self.allowances
            .give_back(inbound, host, spec.inside, source);
    }

    /// Gives back the NAT mapping a flow spec took.
    pub(super) fn release_mapping(&self, spec: &FlowSpec) {
        if spec.is_snat() {
            let uplink = &self.uplinks[usize::from(spec.uplink)];
            lock(&uplink.nat[nat_index(spec.protocol)]).release(spec.inside);
        }
    }

    /// Accounts for a flow that left the table.
    pub(super) fn release(&self, spec: &FlowSpec) {
        self.release_mapping(spec);
        self.give_back_allowance(spec);
        self.uplinks[usize::from(spec.uplink)]
            .flows
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the flow lifecycle reads of one family's own state.
pub(super) trait FamilyFlows<A: Family> {
    /// Its flow table.
    fn flow_table(&self) -> &FlowTable<A>;
    /// The key its established fast path found no flow for in this frame.
    fn absent<'c>(ctx: &'c FrameContext) -> &'c Cell<Option<(Side, FlowKey<A>)>>;
    /// Gives back what a flow held once it left the table.
    fn release_flow(&self, spec: &FlowSpec<A>);
}

impl FamilyFlows<Addr4> for Router {
    fn flow_table(&self) -> &FlowTable {
        &self.table
    }
    fn absent<'c>(ctx: &'c FrameContext) -> &'c Cell<Option<(Side, FlowKey)>> {
        &ctx.absent
    }
    fn release_flow(&self, spec: &FlowSpec) {
        self.release(spec);
    }
}

impl FamilyFlows<Addr6> for Router {
    fn flow_table(&self) -> &FlowTable<Addr6> {
        &self.v6.table
    }
    fn absent<'c>(ctx: &'c FrameContext) -> &'c Cell<Option<(Side, FlowKey<Addr6>)>> {
        &ctx.absent6
    }
    fn release_flow(&self, spec: &FlowSpec<Addr6>) {
        self.release6(spec);
    }
}

/// What an IPv4 flow is counted by: opened from the Internet or not, its
/// LAN host and its Internet source as big-endian u32s (one word for the
/// hasher).
fn allowance_keys(spec: &FlowSpec) -> (bool, u32, u32) {
    (
        spec.kind == FlowKind::Dnat,
        u32::from_be_bytes(spec.inside.addr),
        u32::from_be_bytes(spec.remote.addr),
    )
}

/// Whether a segment may open a connection: anything but TCP, or a TCP SYN
/// without ACK.
pub(super) fn opens_connection(frame: &impl Parsed) -> bool {
    match frame.transport() {
        Transport::Tcp { flags, .. } => flags.syn && !flags.ack,
        _ => true,
    }
}

/// Records a packet of `flow` that arrived on `side`: counters, last seen
/// (inbound RSTs do not refresh a mapping: RFC 7857), TCP state, and the
/// sequence the LAN host expects next.
pub(super) fn record<A: Family>(flow: &Flow<A>, side: Side, frame: &impl Parsed, now: u32) {
    record_with(flow, side, frame, now, tcp_bits(frame));
}

/// [`record`] with the segment's SYN, FIN and RST bits known (the
/// established fast path takes none of them: constants there).
#[inline]
pub(super) fn record_with<A: Family>(
    flow: &Flow<A>,
    side: Side,
    frame: &impl Parsed,
    now: u32,
    (syn, fin, rst): (bool, bool, bool),
) {
    let refresh = !(side == Side::Wan && rst);
    FlowTable::touch(
        flow,
        side,
        frame.end(),
        now,
        refresh,
        tcp_flags_for(side, syn, fin, rst),
    );
    if let (Side::Wan, Transport::Tcp { seq, seq_len, .. }) = (side, frame.transport()) {
        FlowTable::track_seq_to_lan(flow, seq, seq_len);
    }
}

#[inline]
pub(super) fn tcp_bits(frame: &impl Parsed) -> (bool, bool, bool) {
    match frame.transport() {
        Transport::Tcp { flags, .. } => (flags.syn, flags.fin, flags.rst),
        _ => (false, false, false),
    }
}

//! The flow table: the CONNMARK equivalent. Every connection through the router
//! has one entry, found from either side, holding its uplink, its NAT mapping,
//! the LAN host's MAC, its TCP state, when it was last seen and its counters.

#![forbid(unsafe_code)]

mod table;

pub use table::{
    tcp_flags_for, Flow, FlowInfo, FlowTable, InsertError, Removed, SavedFlow, TableStats,
};

use crate::config::{Timeouts, UplinkId};
use std::hash::{Hash, Hasher};

use crate::packet::{Addr4, ChecksumDeltas, Endpoint, Family, PROTO_TCP, PROTO_UDP};

/// Which of a flow's two keys a frame is looked up by: the tuple it has on
/// the LAN, or on a WAN. (A [`Port`](crate::verdict::Port) without the uplink:
/// the table indexes both keys of a flow by this bit.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Lan = 0,
    Wan = 1,
}

/// A 5-tuple as seen on the wire (ICMP echo: the identifier stands for the
/// source port of a request and the destination port of a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey<A = Addr4> {
    pub protocol: u8,
    pub src: Endpoint<A>,
    pub dst: Endpoint<A>,
}

impl<A: Family> Hash for FlowKey<A> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.protocol.hash(state);
        self.src.hash(state);
        self.dst.hash(state);
    }
}

/// Which translation a flow gets, from who opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// Opened by a LAN host: source-NATed.
    Snat,
    /// Opened from the Internet through a port forward: destination-NATed.
    Dnat,
    /// A LAN host, through a port forward on a WAN address (hairpinning,
    /// RFC 4787 REQ-9): source-NATed to `outside` and destination-NATed to
    /// `remote`, the forward's target, another LAN host. `port` is the
    /// forwarded port the LAN host connected to, on `outside`'s address.
    Hairpin { port: u16 },
}

/// What a flow is: fixed for its lifetime. Its packets from the inside host
/// go `inside → lan_peer` on the LAN and leave as `outside → remote`; replies
/// arrive as `remote → outside` and reach the inside host as
/// `lan_peer → inside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpec<A = Addr4> {
    pub protocol: u8,
    /// The LAN host's endpoint.
    pub inside: Endpoint<A>,
    /// The endpoint on the WAN address that stands for `inside`.
    pub outside: Endpoint<A>,
    /// The Internet endpoint.
    pub remote: Endpoint<A>,
    pub uplink: UplinkId,
    pub kind: FlowKind,
    pub lan_mac: [u8; 6],
}

impl<A: Family> FlowSpec<A> {
    /// The tuple of this flow's packets as they arrive from the LAN (for a
    /// hairpinned flow: once the forwarded port is resolved to its target).
    pub fn lan_key(&self) -> FlowKey<A> {
        FlowKey {
            protocol: self.protocol,
            src: self.inside,
            dst: self.remote,
        }
    }

    /// The tuple of this flow's packets as they arrive from the WAN (for a
    /// hairpinned flow: from the forward's target, on the LAN).
    pub fn wan_key(&self) -> FlowKey<A> {
        FlowKey {
            protocol: self.protocol,
            src: self.remote,
            dst: self.outside,
        }
    }

    /// The endpoint the inside host talks to: the remote endpoint, or for a
    /// hairpinned flow the forwarded port on the WAN address.
    pub fn lan_peer(&self) -> Endpoint<A> {
        match self.kind {
            FlowKind::Hairpin { port } => Endpoint::new(self.outside.addr, port),
            FlowKind::Snat | FlowKind::Dnat => self.remote,
        }
    }

    /// Whether the flow holds a mapping from the uplink's port allocator.
    pub fn is_snat(&self) -> bool {
        !matches!(self.kind, FlowKind::Dnat)
    }

    pub fn key(&self, side: Side) -> FlowKey<A> {
        match side {
            Side::Lan => self.lan_key(),
            Side::Wan => self.wan_key(),
        }
    }

    /// The endpoints (source, destination) this flow's packets arriving on
    /// `side` leave with: `outside → remote` towards the remote end,
    /// `lan_peer → inside` to the inside host.
    pub fn translated(&self, side: Side) -> (Endpoint<A>, Endpoint<A>) {
        match side {
            Side::Lan => (self.outside, self.remote),
            Side::Wan => (self.lan_peer(), self.inside),
        }
    }

    /// The checksum deltas of this flow's whole TCP and UDP packets arriving
    /// on `side` with the tuple [`FlowSpec::key`] (not a hairpinned flow's
    /// packets from the LAN, which arrive addressed to the forwarded port),
    /// translated to [`FlowSpec::translated`], their TTL decremented: the
    /// one computation both the core's established fast path and an
    /// offload of the flow read. The flow table keeps them in `Flow::deltas`.
    pub fn checksum_deltas(&self, side: Side) -> ChecksumDeltas {
        let key = self.key(side);
        ChecksumDeltas::new((key.src, key.dst), self.translated(side))
    }
}

/// TCP state as flags seen in each direction: enough to tell the
/// established timer from the transitory one (RFC 5382, RFC 7857).
pub mod tcp_state {
    pub const SYN_FROM_LAN: u8 = 1;
    pub const SYN_FROM_WAN: u8 = 2;
    pub const FIN_FROM_LAN: u8 = 4;
    pub const FIN_FROM_WAN: u8 = 8;
    pub const RST: u8 = 16;

    /// Both SYNs seen, not closed by FINs both ways nor by a RST.
    pub fn is_established(state: u8) -> bool {
        state & (SYN_FROM_LAN | SYN_FROM_WAN) == SYN_FROM_LAN | SYN_FROM_WAN
            && state & (FIN_FROM_LAN | FIN_FROM_WAN) != FIN_FROM_LAN | FIN_FROM_WAN
            && state & RST == 0
    }

    pub fn name(state: u8) -> &'static str {
        if state & RST != 0 {
            "closed"
        } else if state & (FIN_FROM_LAN | FIN_FROM_WAN) != 0 {
            if is_established(state) {
                "closing"
            } else {
                "time_wait"
            }
        } else if is_established(state) {
            "established"
        } else {
            "syn_sent"
        }
    }
}

/// How long a flow may stay idle, by protocol and TCP state.
pub fn idle_timeout(protocol: u8, tcp: u8, timeouts: &Timeouts) -> u32 {
    match protocol {
        PROTO_TCP if tcp_state::is_established(tcp) => timeouts.tcp_established_s,
        PROTO_TCP => timeouts.tcp_transitory_s,
        PROTO_UDP => timeouts.udp_s,
        _ => timeouts.icmp_s,
    }
}

//! The kernel's links, IPv4 addresses and default routes over rtnetlink
//! (netlink-packet-route's messages on a netlink-sys socket), a socket that
//! wakes on their changes, and the few routing changes xwan makes for the
//! router's own traffic (routes in its own tables, `ip rule`s), each tagged
//! with [`XWAN_PROTOCOL`] so a later start finds and removes what a crashed
//! one left.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::{AddressFamily, IpProtocol, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::os::fd::AsRawFd;

use super::SystemError;
use crate::config::{PortRange, Proto};
use crate::io::sys::{self, poll};
use ipnet::Ipv4Net;

/// The routing protocol number on every route and rule xwan adds
/// (`ip route show proto 88`, `ip rule show proto 88`).
pub const XWAN_PROTOCOL: u8 = 88;

/// rtnetlink multicast groups (`RTNLGRP_*` in linux/rtnetlink.h).
const GROUP_LINK: u32 = 1;
const GROUP_NEIGH: u32 = 3;
const GROUP_IPV4_IFADDR: u32 = 5;
const GROUP_IPV4_ROUTE: u32 = 7;

/// The main routing table.
const MAIN_TABLE: u32 = 254;

/// An interface as rtnetlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub ifindex: u32,
    pub name: String,
    /// Administratively up (`ip link set up`).
    pub up: bool,
    /// Carrier (IFF_LOWER_UP).
    pub carrier: bool,
}

/// A default route through a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub ifindex: u32,
    pub gateway: Ipv4Addr,
    pub table: u32,
    pub metric: u32,
    pub protocol: u8,
}

/// Links, primary IPv4 addresses and default routes (every table), read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    pub links: Vec<LinkState>,
    /// (ifindex, address), primary addresses only, in the kernel's order.
    pub addresses: Vec<(u32, Ipv4Addr)>,
    pub defaults: Vec<DefaultRoute>,
}

impl KernelState {
    /// Dumps the three tables of the calling thread's network namespace.
    pub fn read() -> Result<KernelState, SystemError> {
        let mut state = KernelState::default();
        let links = request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        state.links = links.iter().filter_map(link_state).collect();
        let mut address = AddressMessage::default();
        address.header.family = AddressFamily::Inet;
        let addresses = request(RouteNetlinkMessage::GetAddress(address), NLM_F_DUMP)?;
        state.addresses = addresses.iter().filter_map(primary_address).collect();
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        let routes = request(RouteNetlinkMessage::GetRoute(route), NLM_F_DUMP)?;
        state.defaults = routes.iter().filter_map(default_route).collect();
        Ok(state)
    }

    pub fn link(&self, name: &str) -> Option<&LinkState> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The interface's first primary IPv4 address.
    pub fn address_of(&self, ifindex: u32) -> Option<Ipv4Addr> {
        self.addresses
            .iter()
            .find(|(i, _)| *i == ifindex)
            .map(|(_, a)| *a)
    }

    /// The gateway of the default route through the interface, as a DHCP
    /// client installs it in any table: the lowest metric, the main table
    /// first; xwan's own routes do not count.
    pub fn gateway_of(&self, ifindex: u32) -> Option<Ipv4Addr> {
        self.defaults
            .iter()
            .filter(|r| r.ifindex == ifindex && r.protocol != XWAN_PROTOCOL)
            .min_by_key(|r| (r.table != MAIN_TABLE, r.metric))
            .map(|r| r.gateway)
    }
}

/// The kind of each interface's root queueing discipline ("noqueue", "mq",
/// "fq_codel", "cake", ...), by ifindex.
pub fn root_qdiscs() -> Result<HashMap<u32, String>, SystemError> {
    let all = request(
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        NLM_F_DUMP,
    )?;
    Ok(all
        .iter()
        .filter_map(|message| {
            let RouteNetlinkMessage::NewQueueDiscipline(qdisc) = message else {
                return None;
            };
            if qdisc.header.parent != TcHandle::ROOT {
                return None;
            }
            let kind = qdisc.attributes.iter().find_map(|a| match a {
                TcAttribute::Kind(kind) => Some(kind.clone()),
                _ => None,
            })?;
            Some((u32::try_from(qdisc.header.index).ok()?, kind))
        })
        .collect())
}

fn link_state(message: &RouteNetlinkMessage) -> Option<LinkState> {
    let RouteNetlinkMessage::NewLink(link) = message else {
        return None;
    };
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })?;
    let flags = link.header.flags;
    Some(LinkState {
        ifindex: link.header.index,
        name,
        up: flags.contains(LinkFlags::Up),
        carrier: flags.contains(LinkFlags::LowerUp),
    })
}

fn primary_address(message: &RouteNetlinkMessage) -> Option<(u32, Ipv4Addr)> {
    let RouteNetlinkMessage::NewAddress(address) = message else {
        return None;
    };
    if address.header.family != AddressFamily::Inet
        || address.header.flags.contains(AddressHeaderFlags::Secondary)
    {
        return None;
    }
    let local = address.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(addr)) => Some(*addr),
        _ => None,
    })?;
    Some((address.header.index, local))
}

fn default_route(message: &RouteNetlinkMessage) -> Option<DefaultRoute> {
    let RouteNetlinkMessage::NewRoute(route) = message else {
        return None;
    };
    let header = &route.header;
    if header.address_family != AddressFamily::Inet
        || header.destination_prefix_length != 0
        || header.kind != RouteType::Unicast
    {
        return None;
    }
    let (mut ifindex, mut gateway, mut metric) = (None, None, 0);
    let mut table = u32::from(header.table);
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => ifindex = Some(*index),
            RouteAttribute::Gateway(RouteAddress::Inet(addr)) => gateway = Some(*addr),
            RouteAttribute::Priority(value) => metric = *value,
            RouteAttribute::Table(value) => table = *value,
            _ => {}
        }
    }
    Some(DefaultRoute {
        ifindex: ifindex?,
        gateway: gateway?,
        table,
        metric,
        protocol: u8::from(header.protocol),
    })
}

/// The longest an rtnetlink request waits for each part of its answer.
const REQUEST_LIMIT_S: libc::time_t = 5;

/// Sends one request and collects the answer: every message of a dump, or
/// nothing for an acknowledged change; the kernel's error as an error.
fn request(
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, SystemError> {
    let what = format!("rtnetlink {}", message_name(&message));
    let err = |e: std::io::Error| SystemError::io(what.clone(), e);
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(err)?;
    // The kernel answers at once; the bound keeps a thread that waits on
    // it (and the stop that joins that thread) from waiting for ever.
    let timeout = libc::timeval {
        tv_sec: REQUEST_LIMIT_S,
        tv_usec: 0,
    };
    sys::socket::setsockopt(&socket, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout).map_err(err)?;
    socket.bind_auto().map_err(err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map_err(err)?;
    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().map_err(err)?;
        let mut offset = 0;
        while offset < data.len() {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                .map_err(|e| SystemError::Parse {
                    what: what.clone(),
                    content: e.to_string(),
                })?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(out),
                        Some(code) => Err(err(std::io::Error::from_raw_os_error(-code.get()))),
                    }
                }
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

fn message_name(message: &RouteNetlinkMessage) -> &'static str {
    match message {
        RouteNetlinkMessage::GetLink(_) => "link dump",
        RouteNetlinkMessage::GetAddress(_) => "address dump",
        RouteNetlinkMessage::GetRoute(_) => "route dump",
        RouteNetlinkMessage::GetRule(_) => "rule dump",
        RouteNetlinkMessage::GetQueueDiscipline(_) => "qdisc dump",
        RouteNetlinkMessage::NewRoute(_) => "new route",
        RouteNetlinkMessage::DelRoute(_) => "delete route",
        RouteNetlinkMessage::NewRule(_) => "new rule",
        RouteNetlinkMessage::DelRule(_) => "delete rule",
        _ => "request",
    }
}

/// What changed since the last [`RouteEvents::wait`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// A link, IPv4 address or IPv4 route (or the kernel dropped events:
    /// read everything again).
    pub state: bool,
    /// A neighbour entry.
    pub neighbours: bool,
}

/// A netlink socket subscribed to link, IPv4 address, IPv4 route and
/// neighbour changes.
pub struct RouteEvents {
    socket: Socket,
}

impl RouteEvents {
    pub fn open() -> Result<RouteEvents, SystemError> {
        let err = |e| SystemError::io("rtnetlink event socket", e);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(err)?;
        socket.bind_auto().map_err(err)?;
        for group in [GROUP_LINK, GROUP_NEIGH, GROUP_IPV4_IFADDR, GROUP_IPV4_ROUTE] {
            socket.add_membership(group).map_err(err)?;
        }
        socket.set_non_blocking(true).map_err(err)?;
        Ok(RouteEvents { socket })
    }

    /// Waits up to `timeout` for events and reads every one queued.
    pub fn wait(&self, timeout: Duration) -> Changes {
        let mut fds = [poll::readable(self.socket.as_raw_fd())];
        let mut changes = Changes::default();
        if !matches!(poll::poll(&mut fds, timeout), Ok(n) if n > 0) {
            return changes;
        }
        loop {
            match self.socket.recv_from_full() {
                Ok((data, _)) if !data.is_empty() => classify(&data, &mut changes),
                Ok(_) => return changes,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return changes,
                // ENOBUFS: events were lost; read the state again.
                Err(_) => {
                    changes.state = true;
                    return changes;
                }
            }
        }
    }
}

fn classify(data: &[u8], changes: &mut Changes) {
    let mut offset = 0;
    while offset < data.len() {
        let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
        else {
            changes.state = true;
            return;
        };
        match message.payload {
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewNeighbour(_) | RouteNetlinkMessage::DelNeighbour(_),
            ) => changes.neighbours = true,
            _ => changes.state = true,
        }
        let length = message.header.length as usize;
        if length == 0 {
            return;
        }
        offset += length;
    }
}

/// A route or rule selector of xwan's: which packets a rule sends to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleMatch {
    /// `from ADDR`
    From(Ipv4Addr),
    /// `iif lo`: the router's own packets, optionally only those to a
    /// prefix, of a protocol, to a port range.
    Local(LocalMatch),
    /// `lookup main suppress_prefixlength 0`: the main table's routes but its
    /// default, so the router still reaches its own networks directly.
    MainWithoutDefault,
}

/// What a rule for the router's own packets matches besides `iif lo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalMatch {
    /// `to PREFIX`
    pub dst: Option<Ipv4Net>,
    /// `ipproto tcp|udp|icmp`
    pub proto: Option<Proto>,
    /// `dport LO-HI`
    pub dst_port: Option<PortRange>,
}

/// `ip rule add pref PRIORITY SELECTOR lookup TABLE proto 88`.
pub fn add_rule(priority: u32, selector: &RuleMatch, table: u32) -> Result<(), SystemError> {
    let mut rule = RuleMessage::default();
    rule.header.family = AddressFamily::Inet;
    rule.header.action = RuleAction::ToTable;
    rule.attributes = vec![
        RuleAttribute::Priority(priority),
        RuleAttribute::Protocol(RouteProtocol::Other(XWAN_PROTOCOL)),
    ];
    match selector {
        RuleMatch::From(addr) => {
            rule.header.src_len = 32;
            rule.attributes
                .push(RuleAttribute::Source(IpAddr::V4(*addr)));
            rule.attributes.push(RuleAttribute::Table(table));
        }
        RuleMatch::Local(only) => {
            rule.attributes.push(RuleAttribute::Iifname("lo".into()));
            if let Some(dst) = only.dst {
                rule.header.dst_len = dst.prefix_len();
                rule.attributes
                    .push(RuleAttribute::Destination(IpAddr::V4(dst.network())));
            }
            let protocol = match only.proto {
                Some(Proto::Tcp) => Some(IpProtocol::Tcp),
                Some(Proto::Udp) => Some(IpProtocol::Udp),
                Some(Proto::Icmp) => Some(IpProtocol::Icmp),
                Some(Proto::Any) | None => None,
            };
            rule.attributes
                .extend(protocol.map(RuleAttribute::IpProtocol));
            if let Some(ports) = only.dst_port {
                rule.attributes
                    .push(RuleAttribute::DestinationPortRange(RulePortRange {
                        start: ports.lo,
                        end: ports.hi,
                    }));
            }
            rule.attributes.push(RuleAttribute::Table(table));
        }
        RuleMatch::MainWithoutDefault => {
            rule.attributes.push(RuleAttribute::Table(MAIN_TABLE));
            rule.attributes.push(RuleAttribute::SuppressPrefixLen(0));
        }
    }
    request(RouteNetlinkMessage::NewRule(rule), NLM_F_ACK | NLM_F_CREATE).map(drop)
}

/// Removes every IPv4 rule tagged [`XWAN_PROTOCOL`]; returns how many.
pub fn remove_rules() -> Result<usize, SystemError> {
    let mut dump = RuleMessage::default();
    dump.header.family = AddressFamily::Inet;
    let rules = request(RouteNetlinkMessage::GetRule(dump), NLM_F_DUMP)?;
    let mut removed = 0;
    for message in rules {
        let RouteNetlinkMessage::NewRule(rule) = message else {
            continue;
        };
        let ours = rule
            .attributes
            .contains(&RuleAttribute::Protocol(RouteProtocol::Other(
                XWAN_PROTOCOL,
            )));
        if ours {
            request(RouteNetlinkMessage::DelRule(rule), NLM_F_ACK)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `ip route replace default table TABLE proto 88` through the next hops
/// given as (gateway, ifindex, weight): one is a plain route, more a
/// multipath one.
pub fn replace_default(table: u32, hops: &[(Ipv4Addr, u32, u32)]) -> Result<(), SystemError> {
    use netlink_packet_route::route::RouteNextHop;
    let mut route = route_in(table);
    match hops {
        [] => return remove_routes(table).map(drop),
        [(gateway, ifindex, _)] => {
            route
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(*gateway)));
            route.attributes.push(RouteAttribute::Oif(*ifindex));
        }
        many => {
            let hops = many
                .iter()
                .map(|(gateway, ifindex, weight)| {
                    let mut hop = RouteNextHop::default();
                    hop.interface_index = *ifindex;
                    hop.hops = weight.clamp(&1, &256).saturating_sub(1) as u8;
                    hop.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(*gateway))];
                    hop
                })
                .collect();
            route.attributes.push(RouteAttribute::MultiPath(hops));
        }
    }
    request(
        RouteNetlinkMessage::NewRoute(route),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    )
    .map(drop)
}

/// Removes every route tagged [`XWAN_PROTOCOL`] from `table`; returns how many.
pub fn remove_routes(table: u32) -> Result<usize, SystemError> {
    let mut dump = RouteMessage::default();
    dump.header.address_family = AddressFamily::Inet;
    let routes = request(RouteNetlinkMessage::GetRoute(dump), NLM_F_DUMP)?;
    let mut removed = 0;
    for message in routes {
        let RouteNetlinkMessage::NewRoute(route) = message else {
            continue;
        };
        let in_table = route.attributes.contains(&RouteAttribute::Table(table));
        if in_table && u8::from(route.header.protocol) == XWAN_PROTOCOL {
            request(RouteNetlinkMessage::DelRoute(route), NLM_F_ACK)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn route_in(table: u32) -> RouteMessage {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.table = u8::try_from(table).unwrap_or(0);
    route.header.protocol = RouteProtocol::Other(XWAN_PROTOCOL);
    route.header.scope = RouteScope::Universe;
    route.header.kind = RouteType::Unicast;
    route.attributes.push(RouteAttribute::Table(table));
    route
}

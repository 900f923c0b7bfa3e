//! The kernel's links, addresses (IPv4 and IPv6) and default routes over
//! rtnetlink (netlink-packet-route's messages on a netlink-sys socket), a
//! socket that wakes on their changes, and the few routing changes xwan
//! makes for the router's own traffic (routes in its own tables, `ip
//! rule`s), each tagged with [`XWAN_PROTOCOL`] so a later start finds and
//! removes what a crashed one left.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
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
const GROUP_IPV6_IFADDR: u32 = 9;
const GROUP_IPV6_ROUTE: u32 = 11;

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

/// A default route through a gateway (an IPv4 one by default; the gateway
/// of an IPv6 one is usually the router's link-local address, as router
/// advertisements install it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute<A = Ipv4Addr> {
    pub ifindex: u32,
    pub gateway: A,
    pub table: u32,
    pub metric: u32,
    pub protocol: u8,
}

impl<A> DefaultRoute<A> {
    fn with<B>(self, gateway: B) -> DefaultRoute<B> {
        DefaultRoute {
            ifindex: self.ifindex,
            gateway,
            table: self.table,
            metric: self.metric,
            protocol: self.protocol,
        }
    }
}

/// An IPv6 address on an interface, with what decides whether it can be
/// used (`ip -6 addr`'s flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address6 {
    pub ifindex: u32,
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// Scope universe: a global (GUA) or unique local (ULA) address, not a
    /// link-local or host one.
    pub global: bool,
    /// Duplicate address detection not done yet (tentative, optimistic) or
    /// failed: the kernel does not use it as a source, so neither does xwan.
    pub tentative: bool,
    /// Its preferred lifetime is over: still valid, no longer for new
    /// connections.
    pub deprecated: bool,
    /// A privacy (RFC 8981) address, which the kernel replaces every day or so.
    pub temporary: bool,
}

impl Address6 {
    /// A global (or unique local) address the kernel has finished checking.
    pub fn usable_global(&self) -> bool {
        self.global && !self.tentative
    }
}

/// The address `accept` takes among the usable global ones of an
/// interface: a preferred one before a deprecated one, then (for an
/// uplink's own address) a global one before a unique local one, then a
/// stable one before a temporary one; the kernel's order otherwise.
pub fn preferred_address6(
    addresses: &[Address6],
    ifindex: u32,
    accept: impl Fn(Ipv6Addr) -> bool,
) -> Option<Ipv6Addr> {
    addresses
        .iter()
        .filter(|a| a.ifindex == ifindex && a.usable_global() && accept(a.address))
        .min_by_key(|a| (a.deprecated, is_unique_local(a.address), a.temporary))
        .map(|a| a.address)
}

/// fc00::/7.
fn is_unique_local(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xfe00 == 0xfc00
}

/// The gateway of the default route through `ifindex`, as a DHCP client or
/// router advertisements install it in any table: the lowest metric, the
/// main table first; xwan's own routes do not count.
fn best_gateway<A: Copy>(routes: &[DefaultRoute<A>], ifindex: u32) -> Option<A> {
    routes
        .iter()
        .filter(|r| r.ifindex == ifindex && r.protocol != XWAN_PROTOCOL)
        .min_by_key(|r| (r.table != MAIN_TABLE, r.metric))
        .map(|r| r.gateway)
}

/// Links, addresses and default routes (every table) of both families,
/// read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    pub links: Vec<LinkState>,
    /// (ifindex, address), primary addresses only, in the kernel's order.
    pub addresses: Vec<(u32, Ipv4Addr)>,
    pub defaults: Vec<DefaultRoute>,
    /// Every IPv6 address, in the kernel's order.
    pub addresses6: Vec<Address6>,
    pub defaults6: Vec<DefaultRoute<Ipv6Addr>>,
}

impl KernelState {
    /// Dumps the tables of the calling thread's network namespace.
    pub fn read() -> Result<KernelState, SystemError> {
        let mut state = KernelState::default();
        let links = request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        state.links = links.iter().filter_map(link_state).collect();
        state.addresses = dump_addresses(AddressFamily::Inet)?
            .iter()
            .filter_map(primary_address)
            .collect();
        state.addresses6 = ipv6_addresses()?;
        state.defaults = dump_defaults(AddressFamily::Inet)?
            .into_iter()
            .filter_map(|r| match r.gateway {
                IpAddr::V4(gateway) => Some(r.with(gateway)),
                IpAddr::V6(_) => None,
            })
            .collect();
        state.defaults6 = dump_defaults(AddressFamily::Inet6)?
            .into_iter()
            .filter_map(|r| match r.gateway {
                IpAddr::V6(gateway) => Some(r.with(gateway)),
                IpAddr::V4(_) => None,
            })
            .collect();
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
        best_gateway(&self.defaults, ifindex)
    }

    /// The interface's global IPv6 address (SLAAC or DHCPv6), as
    /// [`preferred_address6`] chooses it.
    pub fn address6_of(&self, ifindex: u32) -> Option<Ipv6Addr> {
        preferred_address6(&self.addresses6, ifindex, |_| true)
    }

    /// The gateway of the IPv6 default route through the interface (as
    /// router advertisements install it), chosen as [`KernelState::gateway_of`]
    /// chooses IPv4's.
    pub fn gateway6_of(&self, ifindex: u32) -> Option<Ipv6Addr> {
        best_gateway(&self.defaults6, ifindex)
    }
}

/// Every IPv6 address of the calling thread's network namespace.
pub fn ipv6_addresses() -> Result<Vec<Address6>, SystemError> {
    Ok(dump_addresses(AddressFamily::Inet6)?
        .iter()
        .filter_map(address6)
        .collect())
}

fn dump_addresses(family: AddressFamily) -> Result<Vec<RouteNetlinkMessage>, SystemError> {
    let mut address = AddressMessage::default();
    address.header.family = family;
    request(RouteNetlinkMessage::GetAddress(address), NLM_F_DUMP)
}

fn dump_defaults(family: AddressFamily) -> Result<Vec<DefaultRoute<IpAddr>>, SystemError> {
    let mut route = RouteMessage::default();
    route.header.address_family = family;
    let routes = request(RouteNetlinkMessage::GetRoute(route), NLM_F_DUMP)?;
    Ok(routes
        .iter()
        .filter(
            |m| matches!(m, RouteNetlinkMessage::NewRoute(r) if r.header.address_family == family),
        )
        .flat_map(default_routes)
        .collect())
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

fn address6(message: &RouteNetlinkMessage) -> Option<Address6> {
    let RouteNetlinkMessage::NewAddress(message) = message else {
        return None;
    };
    let header = &message.header;
    if header.family != AddressFamily::Inet6 {
        return None;
    }
    // IPv6 puts its address in IFA_ADDRESS (IFA_LOCAL only on a
    // point-to-point link, where it is the local end).
    let (mut address, mut local) = (None, None);
    // The header holds the first 8 flag bits; IFA_FLAGS, when present, all 32.
    let mut flags = AddressFlags::from_bits_retain(u32::from(header.flags.bits()));
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Address(IpAddr::V6(addr)) => address = Some(*addr),
            AddressAttribute::Local(IpAddr::V6(addr)) => local = Some(*addr),
            AddressAttribute::Flags(all) => flags = *all,
            _ => {}
        }
    }
    Some(Address6 {
        ifindex: header.index,
        address: local.or(address)?,
        prefix_len: header.prefix_len,
        global: header.scope == AddressScope::Universe,
        tentative: flags.intersects(
            AddressFlags::Tentative | AddressFlags::Optimistic | AddressFlags::Dadfailed,
        ),
        deprecated: flags.contains(AddressFlags::Deprecated),
        // IFA_F_TEMPORARY is IFA_F_SECONDARY's bit.
        temporary: flags.contains(AddressFlags::Secondary),
    })
}

/// The default routes of a route message: one, or one per next hop of a
/// multipath route.
fn default_routes(message: &RouteNetlinkMessage) -> Vec<DefaultRoute<IpAddr>> {
    let RouteNetlinkMessage::NewRoute(route) = message else {
        return Vec::new();
    };
    let header = &route.header;
    if header.destination_prefix_length != 0 || header.kind != RouteType::Unicast {
        return Vec::new();
    }
    let (mut ifindex, mut gateway, mut metric, mut hops) = (None, None, 0, None);
    let mut table = u32::from(header.table);
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => ifindex = Some(*index),
            RouteAttribute::Gateway(address) => gateway = ip_of(address),
            RouteAttribute::Priority(value) => metric = *value,
            RouteAttribute::Table(value) => table = *value,
            RouteAttribute::MultiPath(next) => hops = Some(next),
            _ => {}
        }
    }
    let route = |ifindex, gateway| DefaultRoute {
        ifindex,
        gateway,
        table,
        metric,
        protocol: u8::from(header.protocol),
    };
    match hops {
        Some(hops) => hops
            .iter()
            .filter_map(|hop| {
                let gateway = hop.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(address) => ip_of(address),
                    _ => None,
                })?;
                Some(route(hop.interface_index, gateway))
            })
            .collect(),
        None => match (ifindex, gateway) {
            (Some(ifindex), Some(gateway)) => vec![route(ifindex, gateway)],
            _ => Vec::new(),
        },
    }
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(addr) => Some(IpAddr::V4(*addr)),
        RouteAddress::Inet6(addr) => Some(IpAddr::V6(*addr)),
        _ => None,
    }
}

/// The longest an rtnetlink request waits for each part of its answer.
const REQUEST_LIMIT_S: libc::time_t = 5;

/// Sends one request and collects the answer: every message of a dump, or
/// nothing for an acknowledged change; the kernel's error as an error.
pub(super) fn request(
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
        if decode(&data, &what, &mut out)? {
            return Ok(out);
        }
    }
}

/// Decodes one datagram of an answer into `out`; true once the answer is
/// whole (the end of a dump, or the acknowledgement of a change), the
/// kernel's error as an error.
pub(super) fn decode(
    data: &[u8],
    what: &str,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Result<bool, SystemError> {
    let mut offset = 0;
    while offset < data.len() {
        let message =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..]).map_err(|e| {
                SystemError::Parse {
                    what: what.to_owned(),
                    content: e.to_string(),
                }
            })?;
        let length = message.header.length as usize;
        match message.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => {
                return match e.code {
                    None => Ok(true),
                    Some(code) => Err(SystemError::io(
                        what,
                        std::io::Error::from_raw_os_error(-code.get()),
                    )),
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
    Ok(false)
}

fn message_name(message: &RouteNetlinkMessage) -> &'static str {
    match message {
        RouteNetlinkMessage::GetLink(_) => "link dump",
        RouteNetlinkMessage::GetAddress(_) => "address dump",
        RouteNetlinkMessage::GetRoute(_) => "route dump",
        RouteNetlinkMessage::GetNeighbour(_) => "neighbour dump",
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
    /// A link, an address or a route of either family (or the kernel
    /// dropped events: read everything again).
    pub state: bool,
    /// A neighbour entry.
    pub neighbours: bool,
}

/// A netlink socket subscribed to link, address and route changes of both
/// families, and to neighbour changes (ARP and NDP).
pub struct RouteEvents {
    socket: Socket,
}

impl RouteEvents {
    pub fn open() -> Result<RouteEvents, SystemError> {
        let err = |e| SystemError::io("rtnetlink event socket", e);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(err)?;
        socket.bind_auto().map_err(err)?;
        for group in [
            GROUP_LINK,
            GROUP_NEIGH,
            GROUP_IPV4_IFADDR,
            GROUP_IPV4_ROUTE,
            GROUP_IPV6_IFADDR,
            GROUP_IPV6_ROUTE,
        ] {
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
    /// `from ADDR` (either family)
    From(IpAddr),
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
///
/// An IPv6 rule with `v6` (a `from` rule takes its address's family; a
/// `Local` rule for IPv6 matches on `iif lo` alone, its prefix being IPv4).
pub fn add_rule(
    priority: u32,
    selector: &RuleMatch,
    table: u32,
    v6: bool,
) -> Result<(), SystemError> {
    let mut rule = RuleMessage::default();
    rule.header.family = family(v6);
    rule.header.action = RuleAction::ToTable;
    rule.attributes = vec![
        RuleAttribute::Priority(priority),
        RuleAttribute::Protocol(RouteProtocol::Other(XWAN_PROTOCOL)),
    ];
    match selector {
        RuleMatch::From(addr) => {
            rule.header.family = family(addr.is_ipv6());
            rule.header.src_len = if addr.is_ipv6() { 128 } else { 32 };
            rule.attributes.push(RuleAttribute::Source(*addr));
            rule.attributes.push(RuleAttribute::Table(table));
        }
        RuleMatch::Local(only) => {
            rule.attributes.push(RuleAttribute::Iifname("lo".into()));
            if let Some(dst) = only.dst.filter(|_| !v6) {
                rule.header.dst_len = dst.prefix_len();
                rule.attributes
                    .push(RuleAttribute::Destination(IpAddr::V4(dst.network())));
            }
            let protocol = match only.proto {
                Some(Proto::Tcp) => Some(IpProtocol::Tcp),
                Some(Proto::Udp) => Some(IpProtocol::Udp),
                Some(Proto::Icmp) if v6 => {
                    Some(IpProtocol::Other(i32::from(crate::packet::PROTO_ICMPV6)))
                }
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

/// The rtnetlink family of IPv6 (`v6`) or IPv4.
fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// Removes every rule tagged [`XWAN_PROTOCOL`], of both families; returns
/// how many. A kernel without IPv6 refuses the IPv6 dump: none to remove.
pub fn remove_rules() -> Result<usize, SystemError> {
    let mut removed = remove_rules_of(false)?;
    removed += remove_rules_of(true).unwrap_or(0);
    Ok(removed)
}

fn remove_rules_of(v6: bool) -> Result<usize, SystemError> {
    let mut dump = RuleMessage::default();
    dump.header.family = family(v6);
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
/// multipath one; of the family `v6` says (the gateways are of it), none
/// removing that family's.
pub fn replace_default(
    table: u32,
    v6: bool,
    hops: &[(IpAddr, u32, u32)],
) -> Result<(), SystemError> {
    use netlink_packet_route::route::RouteNextHop;
    let mut route = route_in(table, v6);
    let address = |gateway: &IpAddr| match gateway {
        IpAddr::V4(a) => RouteAddress::Inet(*a),
        IpAddr::V6(a) => RouteAddress::Inet6(*a),
    };
    match hops {
        [] => return remove_routes_of(table, v6).map(drop),
        [(gateway, ifindex, _)] => {
            route
                .attributes
                .push(RouteAttribute::Gateway(address(gateway)));
            route.attributes.push(RouteAttribute::Oif(*ifindex));
        }
        many => {
            let hops = many
                .iter()
                .map(|(gateway, ifindex, weight)| {
                    let mut hop = RouteNextHop::default();
                    hop.interface_index = *ifindex;
                    hop.hops = weight.clamp(&1, &256).saturating_sub(1) as u8;
                    hop.attributes = vec![RouteAttribute::Gateway(address(gateway))];
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

/// Removes every route tagged [`XWAN_PROTOCOL`] from `table`, of both
/// families; returns how many.
pub fn remove_routes(table: u32) -> Result<usize, SystemError> {
    let removed = remove_routes_of(table, false)?;
    Ok(removed + remove_routes_of(table, true).unwrap_or(0))
}

fn remove_routes_of(table: u32, v6: bool) -> Result<usize, SystemError> {
    let mut dump = RouteMessage::default();
    dump.header.address_family = family(v6);
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

fn route_in(table: u32, v6: bool) -> RouteMessage {
    let mut route = RouteMessage::default();
    route.header.address_family = family(v6);
    route.header.table = u8::try_from(table).unwrap_or(0);
    route.header.protocol = RouteProtocol::Other(XWAN_PROTOCOL);
    route.header.scope = RouteScope::Universe;
    route.header.kind = RouteType::Unicast;
    route.attributes.push(RouteAttribute::Table(table));
    route
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::system::netns::TestNetns;
    use crate::io::system::test_bytes::{done, nlmsg, rta, RTM_NEWADDR, RTM_NEWROUTE};

    /// linux/if_addr.h, linux/rtnetlink.h.
    const IFA_ADDRESS: u16 = 1;
    const IFA_FLAGS: u16 = 8;
    const IFA_F_TEMPORARY: u32 = 0x01;
    const IFA_F_DADFAILED: u32 = 0x08;
    const IFA_F_DEPRECATED: u32 = 0x20;
    const IFA_F_TENTATIVE: u32 = 0x40;
    const IFA_F_PERMANENT: u32 = 0x80;
    const IFA_F_MANAGETEMPADDR: u32 = 0x100;
    const RTPROT_RA: u8 = 9;

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    /// An `RTM_NEWADDR` for IPv6 as the kernel dumps it: the low 8 flag
    /// bits in the header, all of them in `IFA_FLAGS`.
    fn addr_msg(ifindex: u32, address: &str, prefix_len: u8, scope: u8, flags: u32) -> Vec<u8> {
        let mut payload = vec![libc::AF_INET6 as u8, prefix_len, flags as u8, scope];
        payload.extend_from_slice(&ifindex.to_ne_bytes());
        payload.extend(rta(IFA_ADDRESS, &v6(address).octets()));
        payload.extend(rta(IFA_FLAGS, &flags.to_ne_bytes()));
        nlmsg(RTM_NEWADDR, &payload)
    }

    fn decode_all(data: &[u8]) -> Vec<RouteNetlinkMessage> {
        let mut out = Vec::new();
        assert!(decode(data, "test dump", &mut out).expect("decodes"));
        out
    }

    fn addresses6(data: &[u8]) -> Vec<Address6> {
        decode_all(data).iter().filter_map(address6).collect()
    }

    #[test]
    fn decodes_ipv6_address_flags() {
        let universe = libc::RT_SCOPE_UNIVERSE;
        let mut data = addr_msg(3, "fe80::5", 64, libc::RT_SCOPE_LINK, IFA_F_PERMANENT);
        data.extend(addr_msg(3, "2001:db8:1::5", 64, universe, IFA_F_TENTATIVE));
        data.extend(addr_msg(3, "2001:db8:1::6", 64, universe, IFA_F_DADFAILED));
        data.extend(addr_msg(3, "2001:db8:1::7", 64, universe, IFA_F_DEPRECATED));
        data.extend(addr_msg(3, "2001:db8:1::8", 64, universe, IFA_F_TEMPORARY));
        // A flag above the header's 8 bits: only IFA_FLAGS has it.
        data.extend(addr_msg(
            3,
            "2001:db8:1::9",
            64,
            universe,
            IFA_F_MANAGETEMPADDR,
        ));
        data.extend(done());
        let found = addresses6(&data);
        let brief: Vec<(Ipv6Addr, bool, bool, bool, bool)> = found
            .iter()
            .map(|a| (a.address, a.global, a.tentative, a.deprecated, a.temporary))
            .collect();
        assert_eq!(
            brief,
            vec![
                (v6("fe80::5"), false, false, false, false),
                (v6("2001:db8:1::5"), true, true, false, false),
                (v6("2001:db8:1::6"), true, true, false, false),
                (v6("2001:db8:1::7"), true, false, true, false),
                (v6("2001:db8:1::8"), true, false, false, true),
                (v6("2001:db8:1::9"), true, false, false, false),
            ]
        );
        assert!(found.iter().all(|a| a.ifindex == 3 && a.prefix_len == 64));

        // An IPv4 address in the same dump is not an IPv6 one.
        let mut payload = vec![libc::AF_INET as u8, 24, 0, 0];
        payload.extend_from_slice(&3u32.to_ne_bytes());
        payload.extend(rta(IFA_ADDRESS, &[198, 18, 1, 2]));
        let mut data = nlmsg(RTM_NEWADDR, &payload);
        data.extend(done());
        assert!(addresses6(&data).is_empty());
    }

    fn a6(
        address: &str,
        global: bool,
        tentative: bool,
        deprecated: bool,
        temporary: bool,
    ) -> Address6 {
        Address6 {
            ifindex: 3,
            address: v6(address),
            prefix_len: 64,
            global,
            tentative,
            deprecated,
            temporary,
        }
    }

    #[test]
    fn an_uplink_takes_a_preferred_global_address() {
        let link_local = a6("fe80::5", false, false, false, false);
        let tentative = a6("2001:db8:1::5", true, true, false, false);
        let deprecated = a6("2001:db8:1::7", true, false, true, false);
        let temporary = a6("2001:db8:1::8", true, false, false, true);
        let ula = a6("fd00:1::9", true, false, false, false);
        let stable = a6("2001:db8:1::9", true, false, false, false);
        let pick = |list: &[Address6]| {
            let state = KernelState {
                addresses6: list.to_vec(),
                ..KernelState::default()
            };
            state.address6_of(3)
        };
        let all = [link_local, tentative, deprecated, temporary, ula, stable];
        assert_eq!(pick(&all), Some(stable.address));
        // A temporary global address before a unique local one.
        assert_eq!(pick(&all[..5]), Some(temporary.address));
        assert_eq!(
            pick(&[link_local, tentative, deprecated, ula]),
            Some(ula.address)
        );
        // Deprecated is still better than nothing.
        assert_eq!(
            pick(&[link_local, tentative, deprecated]),
            Some(deprecated.address)
        );
        assert_eq!(pick(&[link_local, tentative]), None);
        // Another interface's address is not this one's.
        let other = Address6 {
            ifindex: 4,
            ..stable
        };
        assert_eq!(pick(&[other]), None);
    }

    #[test]
    fn the_lan_takes_its_address_inside_its_networks() {
        let lan: ipnet::Ipv6Net = "fd00:50::/64".parse().unwrap();
        let list = [
            a6("2001:db8:1::9", true, false, false, false),
            a6("fd00:50::2", true, false, true, false),
            a6("fd00:50::1", true, false, false, false),
            a6("fd00:50::3", true, true, false, false),
        ];
        let inside = |a: Ipv6Addr| lan.contains(&a);
        assert_eq!(preferred_address6(&list, 3, inside), Some(v6("fd00:50::1")));
        assert_eq!(
            preferred_address6(&list[..2], 3, inside),
            Some(v6("fd00:50::2"))
        );
        assert_eq!(preferred_address6(&list[..1], 3, inside), None);
    }

    /// An `RTM_NEWROUTE` for IPv6 as the kernel dumps it.
    fn route_msg(dst_len: u8, kind: u8, protocol: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
        let table = libc::RT_TABLE_MAIN;
        let mut payload = vec![
            libc::AF_INET6 as u8,
            dst_len,
            0,
            0,
            table,
            protocol,
            0,
            kind,
        ];
        payload.extend_from_slice(&0u32.to_ne_bytes());
        for attribute in attributes {
            payload.extend_from_slice(attribute);
        }
        nlmsg(RTM_NEWROUTE, &payload)
    }

    fn table(id: u32) -> Vec<u8> {
        rta(libc::RTA_TABLE, &id.to_ne_bytes())
    }
    fn metric(value: u32) -> Vec<u8> {
        rta(libc::RTA_PRIORITY, &value.to_ne_bytes())
    }
    fn via(gateway: &str) -> Vec<u8> {
        rta(libc::RTA_GATEWAY, &v6(gateway).octets())
    }
    fn dev(ifindex: u32) -> Vec<u8> {
        rta(libc::RTA_OIF, &ifindex.to_ne_bytes())
    }

    /// `RTA_MULTIPATH` of (ifindex, gateway) hops.
    fn multipath(hops: &[(u32, &str)]) -> Vec<u8> {
        let mut nested = Vec::new();
        for (ifindex, gateway) in hops {
            let gateway = via(gateway);
            nested.extend_from_slice(&((8 + gateway.len()) as u16).to_ne_bytes());
            nested.extend_from_slice(&[0, 0]);
            nested.extend_from_slice(&ifindex.to_ne_bytes());
            nested.extend(gateway);
        }
        rta(libc::RTA_MULTIPATH, &nested)
    }

    #[test]
    fn decodes_ipv6_default_routes_and_takes_the_best() {
        let (unicast, static_) = (libc::RTN_UNICAST, libc::RTPROT_STATIC);
        let mut data = route_msg(
            0,
            unicast,
            RTPROT_RA,
            &[table(254), metric(1024), via("fe80::1"), dev(3)],
        );
        data.extend(route_msg(
            0,
            unicast,
            static_,
            &[table(100), metric(10), via("fe80::2"), dev(3)],
        ));
        data.extend(route_msg(
            0,
            unicast,
            RTPROT_RA,
            &[table(254), metric(2048), via("fe80::3"), dev(3)],
        ));
        // Not defaults, or not through a gateway: not counted.
        data.extend(route_msg(
            64,
            unicast,
            libc::RTPROT_KERNEL,
            &[table(254), metric(256), dev(3)],
        ));
        data.extend(route_msg(
            0,
            libc::RTN_UNREACHABLE,
            static_,
            &[table(254), metric(1), dev(1)],
        ));
        data.extend(route_msg(
            0,
            unicast,
            static_,
            &[table(254), metric(1), dev(3)],
        ));
        // xwan's own, on uplink 4: not the kernel's default.
        data.extend(route_msg(
            0,
            unicast,
            XWAN_PROTOCOL,
            &[table(201), metric(0), via("fe80::44"), dev(4)],
        ));
        // A multipath default: one default per hop.
        data.extend(route_msg(
            0,
            unicast,
            static_,
            &[
                table(254),
                metric(50),
                multipath(&[(4, "fe80::4"), (5, "fe80::5")]),
            ],
        ));
        data.extend(done());
        let defaults6: Vec<DefaultRoute<Ipv6Addr>> = decode_all(&data)
            .iter()
            .flat_map(default_routes)
            .filter_map(|r| match r.gateway {
                IpAddr::V6(gateway) => Some(r.with(gateway)),
                IpAddr::V4(_) => None,
            })
            .collect();
        let gateways: Vec<(u32, Ipv6Addr, u32, u32)> = defaults6
            .iter()
            .map(|r| (r.ifindex, r.gateway, r.table, r.metric))
            .collect();
        assert_eq!(
            gateways,
            vec![
                (3, v6("fe80::1"), 254, 1024),
                (3, v6("fe80::2"), 100, 10),
                (3, v6("fe80::3"), 254, 2048),
                (4, v6("fe80::44"), 201, 0),
                (4, v6("fe80::4"), 254, 50),
                (5, v6("fe80::5"), 254, 50),
            ]
        );
        assert_eq!(defaults6[0].protocol, RTPROT_RA);
        let state = KernelState {
            defaults6,
            ..KernelState::default()
        };
        // The main table first, then the lowest metric.
        assert_eq!(state.gateway6_of(3), Some(v6("fe80::1")));
        assert_eq!(state.gateway6_of(4), Some(v6("fe80::4")));
        assert_eq!(state.gateway6_of(5), Some(v6("fe80::5")));
        assert_eq!(state.gateway6_of(6), None);
        // The IPv4 choice is the same rule.
        assert_eq!(state.gateway_of(3), None);
    }

    /// The real kernel: a namespace with IPv6 addresses in every state and
    /// IPv6 default routes in two tables, read back; and the event socket
    /// wakes on an IPv6 route.
    #[test]
    fn reads_ipv6_addresses_and_default_routes() {
        let ns = TestNetns::new("rt6");
        ns.ip(&[
            "link", "add", "wan1", "type", "veth", "peer", "name", "isp1",
        ]);
        ns.ip(&[
            "link", "add", "lan0", "type", "veth", "peer", "name", "host0",
        ]);
        for dev in ["wan1", "isp1", "lan0"] {
            ns.ipv6_without_dad(dev);
        }
        // lan0 checks its addresses, and is down: they stay tentative.
        let dad = ns.exec(&["sysctl", "-qw", "net.ipv6.conf.lan0.accept_dad=1"]);
        assert!(dad.status.success());
        ns.ip(&["link", "set", "wan1", "up"]);
        ns.ip(&["link", "set", "isp1", "up"]);
        ns.ip(&[
            "addr",
            "add",
            "fd00:1::2/64",
            "dev",
            "wan1",
            "preferred_lft",
            "0",
        ]);
        ns.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "wan1"]);
        ns.ip(&["addr", "add", "fe80::1/64", "dev", "isp1"]);
        ns.ip(&["addr", "add", "fd00:50::1/64", "dev", "lan0"]);
        ns.ip(&[
            "-6", "route", "add", "default", "via", "fe80::1", "dev", "wan1", "metric", "100",
        ]);
        ns.ip(&[
            "-6", "route", "add", "default", "via", "fe80::9", "dev", "wan1", "metric", "5",
            "table", "100",
        ]);
        let (wan1, lan0) = (ns.ifindex("wan1"), ns.ifindex("lan0"));
        let state = ns.run(KernelState::read).expect("rtnetlink dump");
        assert_eq!(state.address6_of(wan1), Some(v6("2001:db8:1::2")));
        assert_eq!(state.gateway6_of(wan1), Some(v6("fe80::1")));
        let deprecated = state
            .addresses6
            .iter()
            .find(|a| a.address == v6("fd00:1::2"))
            .expect("the deprecated address is listed");
        assert!(deprecated.deprecated && deprecated.usable_global());
        let tentative = state
            .addresses6
            .iter()
            .find(|a| a.address == v6("fd00:50::1"))
            .expect("the tentative address is listed");
        assert!(tentative.tentative && tentative.ifindex == lan0);
        assert_eq!(state.address6_of(lan0), None);
        assert_eq!(state.gateway6_of(lan0), None);
        assert_eq!(ns.run(ipv6_addresses).expect("dump"), state.addresses6);

        let woke = ns.run(|| {
            let events = RouteEvents::open().expect("event socket");
            // What the set-up above still announces, then quiet.
            while events.wait(Duration::from_millis(200)) != Changes::default() {}
            ns.ip(&[
                "-6",
                "route",
                "add",
                "2001:db8:9::/48",
                "via",
                "fe80::1",
                "dev",
                "wan1",
            ]);
            events.wait(Duration::from_secs(2))
        });
        assert!(woke.state, "an IPv6 route wakes the event socket");
    }
}

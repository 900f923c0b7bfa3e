//! The validated configuration: every value here has been checked, so the
//! router core and the I/O layer can use it without further validation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

/// Index of an uplink in [`Config::wans`] (and everywhere the core counts uplinks).
pub type UplinkId = u8;

/// The most uplinks one router handles (uplink ids fit in a byte, bitmasks in a u64).
pub const MAX_UPLINKS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub lan: Lan,
    /// Two or more, in file order; an uplink's id is its index here.
    pub wans: Vec<Wan>,
    pub balance: Balance,
    pub rules: Vec<Rule>,
    pub forwards: Vec<Forward>,
    /// The `[[forward]]`s to IPv6 targets.
    pub forwards6: Vec<Forward<Ipv6Addr>>,
    pub nat: Nat,
    pub health: Health,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub control: Control,
    pub local: Local,
    pub dataplane: Dataplane,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lan {
    pub interface: String,
    /// Inside IPv4 prefixes: only sources in these are SNATed.
    pub networks: Vec<Ipv4Net>,
    /// Inside IPv6 prefixes (ULA or GUA), from the same `networks` key: only
    /// sources in these are translated (or routed, `nat6 = "off"`).
    pub networks6: Vec<Ipv6Net>,
    /// The router's own address on the LAN, inside one of `networks`: the
    /// source of the ICMP errors the core sends to LAN hosts. None: the LAN
    /// interface's address (`xwan run` reads it).
    pub address: Option<Ipv4Addr>,
    /// `address6`: the router's own IPv6 address on the LAN, inside one of
    /// `networks6`: the source of the ICMPv6 errors the core sends to LAN
    /// hosts. None: the LAN interface's global or ULA address.
    pub address6: Option<Ipv6Addr>,
    /// MTU of the LAN link, 576..=9216. None: the interface's (`xwan run`
    /// reads it and follows its changes; the core assumes 1500 until told).
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wan {
    pub name: String,
    pub interface: String,
    /// SNAT address of this uplink: written in the file, or (with
    /// `address_auto`) the interface's address as the kernel has it now,
    /// [`Ipv4Addr::UNSPECIFIED`] while it has none.
    pub address: Ipv4Addr,
    /// Next hop: written in the file, or (with `gateway_auto`) the gateway of
    /// the kernel's default route through the interface now, unspecified while
    /// there is none.
    pub gateway: Ipv4Addr,
    /// `address = "auto"`: followed from the kernel (see [`Wan::resolved`]).
    pub address_auto: bool,
    /// `gateway = "auto"`: followed from the kernel.
    pub gateway_auto: bool,
    /// 1..=1000.
    pub weight: u32,
    /// Lower is preferred.
    pub priority: u32,
    /// Health-check targets.
    pub probe: Vec<ProbeTarget>,
    /// MTU of this uplink's link, 576..=9216. None: the interface's.
    pub mtu: Option<u16>,
    /// The health settings in force for this uplink: `[health]` with this
    /// uplink's `[wan.health]` keys over it.
    pub health: Health,
    /// IPv6 on this uplink (`gateway6` given); None: it carries IPv4 only.
    pub ipv6: Option<Wan6>,
}

/// An uplink's IPv6 side: `address6`, `gateway6`, `prefix6`, `nat6`.
#[derive(Debug, Clone, PartialEq)]
pub struct Wan6 {
    /// The router's own address on this uplink: the NAT66 address with
    /// `nat6 = "masquerade"`, the source of its probes and of the ICMPv6
    /// errors it sends that way. Unspecified: none given, or "auto" and the
    /// kernel has no global address on the interface yet.
    pub address: Ipv6Addr,
    pub address_auto: bool,
    /// Next hop, usually the ISP router's link-local address; "auto": the
    /// kernel's IPv6 default route through the interface (learnt from RAs).
    pub gateway: Ipv6Addr,
    pub gateway_auto: bool,
    /// The prefix the ISP routes (delegates) to this uplink, which the LAN
    /// prefixes are mapped onto (`nat6 = "prefix"` or `"npt"`) or which holds
    /// them (`"off"`). None: not given (masquerade only).
    pub prefix: Option<Ipv6Net>,
    /// `prefix6 = "auto"`: the prefix is followed from the kernel (the
    /// delegated prefix the system's DHCPv6-PD client installs as an
    /// unreachable or blackhole route, or the interface's own /64).
    pub prefix_auto: bool,
    pub nat: Nat6,
}

impl Wan6 {
    /// Whether the address, the gateway and (where the translation needs it)
    /// the prefix are known.
    pub fn resolved(&self) -> bool {
        let prefix_known = self.prefix.is_some() || self.nat == Nat6::Masquerade;
        let address_known = !self.address.is_unspecified() || self.nat != Nat6::Masquerade;
        !self.gateway.is_unspecified() && prefix_known && address_known
    }
}

/// `nat6`: how the LAN's IPv6 prefixes leave by an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat6 {
    /// Each LAN prefix mapped 1:1 onto a prefix of the same length inside
    /// `prefix6` (its subnet ID kept), host bits kept, transport checksums
    /// fixed: pf `binat`, nftables `snat ip6 prefix to`. The default with a
    /// prefix.
    Prefix,
    /// RFC 6296 checksum-neutral NPTv6 onto the same prefix.
    Npt,
    /// NAT66 to `address6` with port mapping, as IPv4 SNAT: for uplinks that
    /// give one address or one /64 on the link. The default without a prefix.
    Masquerade,
    /// No translation: the uplink routes the LAN's own prefixes (inside
    /// `prefix6`).
    Off,
}

impl Nat6 {
    pub fn name(self) -> &'static str {
        match self {
            Nat6::Prefix => "prefix",
            Nat6::Npt => "npt",
            Nat6::Masquerade => "masquerade",
            Nat6::Off => "off",
        }
    }
}

/// One health-check target of an uplink and how it is probed, over IPv4
/// or IPv6 (an IPv6 target judges the uplink's IPv6 side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// ICMP (ICMPv6) echo: `"198.18.11.2"`, `"2001:db8::1"`.
    Icmp(IpAddr),
    /// A TCP SYN to host:port, answered by a SYN-ACK or an RST:
    /// `"tcp://198.18.11.2:443"`, `"tcp://[2001:db8::1]:443"`.
    Tcp(SocketAddr),
    /// A DNS query (UDP, port 53) for `name`, answered by any response:
    /// `"dns://198.18.11.2/example.com"`, `"dns://[2001:db8::1]/example.com"`.
    Dns { server: IpAddr, name: String },
}

impl ProbeTarget {
    /// The address probed.
    pub fn addr(&self) -> IpAddr {
        match self {
            ProbeTarget::Icmp(addr) => *addr,
            ProbeTarget::Tcp(addr) => addr.ip(),
            ProbeTarget::Dns { server, .. } => *server,
        }
    }

    /// Whether it is probed over IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.addr().is_ipv6()
    }
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Icmp(addr) => write!(f, "{addr}"),
            ProbeTarget::Tcp(addr) => write!(f, "tcp://{addr}"),
            ProbeTarget::Dns {
                server: IpAddr::V6(server),
                name,
            } => write!(f, "dns://[{server}]/{name}"),
            ProbeTarget::Dns { server, name } => write!(f, "dns://{server}/{name}"),
        }
    }
}

impl Wan {
    /// Whether both the address and the gateway are known (always, unless
    /// one of them is "auto" and the kernel has none yet).
    pub fn resolved(&self) -> bool {
        !self.address.is_unspecified() && !self.gateway.is_unspecified()
    }

    /// How the address reads in `xwan check` and `xwan status`:
    /// `198.18.1.2`, `auto (now 198.18.1.2 on wan1)` or `auto (unresolved)`.
    pub fn address_text(&self) -> String {
        auto_text(self.address, self.address_auto, &self.interface)
    }

    /// How the gateway reads, as [`Wan::address_text`].
    pub fn gateway_text(&self) -> String {
        auto_text(self.gateway, self.gateway_auto, &self.interface)
    }
}

pub(super) fn auto_text<A: fmt::Display + Copy>(value: A, auto: bool, interface: &str) -> String
where
    std::net::IpAddr: From<A>,
{
    match (auto, std::net::IpAddr::from(value).is_unspecified()) {
        (false, _) => value.to_string(),
        (true, true) => "auto (unresolved)".to_string(),
        (true, false) => format!("auto (now {value} on {interface})"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceMode {
    Nth,
    Hash,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky {
    None,
    Src,
    SrcDst,
}

impl<A> Forward<A> {
    /// The same forward to `to_addr` (of the target's own family).
    pub fn with_target<B>(self, to_addr: B) -> Forward<B> {
        Forward {
            proto: self.proto,
            port: self.port,
            to_addr,
            to_port: self.to_port,
            wans: self.wans,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    pub mode: BalanceMode,
    pub sticky: Sticky,
    pub sticky_timeout_s: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Any,
}

/// An inclusive port range; `lo <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    pub fn len(&self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }

    /// Never true for a validated range (`lo <= hi`, so it holds at least `lo`).
    pub fn is_empty(&self) -> bool {
        self.lo > self.hi
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

/// What a rule does with the new connections it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pin to this uplink (index into `wans`).
    Uplink(UplinkId),
    Balance,
    /// Leave the connection to the kernel's own forwarding.
    Bypass,
    Drop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub proto: Proto,
    /// IPv4 sources. `src` and `src6` both empty: any source of either
    /// family; only one of them empty: no source of that family matches.
    pub src: Vec<Ipv4Net>,
    /// IPv6 sources, from the same `src` key.
    pub src6: Vec<Ipv6Net>,
    /// IPv4 destinations, as `src`.
    pub dst: Vec<Ipv4Net>,
    /// IPv6 destinations, from the same `dst` key.
    pub dst6: Vec<Ipv6Net>,
    /// Empty means any.
    pub src_port: Vec<PortRange>,
    /// Empty means any.
    pub dst_port: Vec<PortRange>,
    pub action: Action,
    /// With an uplink action: drop instead of balancing when that uplink is down.
    pub strict: bool,
}

/// A port forward; to an IPv6 target (`Forward<Ipv6Addr>`, in
/// [`Config::forwards6`]) on the NAT66 address of uplinks with `nat6 =
/// "masquerade"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward<A = Ipv4Addr> {
    /// Tcp or Udp only.
    pub proto: Proto,
    /// The port on the WAN address.
    pub port: u16,
    /// The inside host, within one of the LAN networks.
    pub to_addr: A,
    pub to_port: u16,
    /// Uplinks it listens on; every WAN when not given in the file.
    pub wans: Vec<UplinkId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nat {
    pub ports: PortRange,
    /// Whether the file set `ports`; without it `ports` is the default range,
    /// which `xwan run` narrows to avoid the kernel's ephemeral ports
    /// ([`Nat::avoid_kernel_ports`]).
    pub ports_set: bool,
    pub mss_clamp: MssClamp,
}

/// The fewest ports a default NAT range narrowed by the kernel's ephemeral
/// range may keep; below that `xwan run` refuses, as for a set range.
pub const MIN_DEFAULT_NAT_PORTS: u32 = 1024;

impl Nat {
    /// When `ports` was not set in the file and overlaps the kernel's
    /// ephemeral range (`net.ipv4.ip_local_port_range`, read by the caller),
    /// keeps the larger part of the default range that lies outside it, if it
    /// holds at least [`MIN_DEFAULT_NAT_PORTS`]. Returns the range it replaced.
    /// A range set in the file is never changed: an overlap there is refused.
    pub fn avoid_kernel_ports(&mut self, kernel: PortRange) -> Option<PortRange> {
        if self.ports_set || !self.ports.overlaps(&kernel) {
            return None;
        }
        let all = self.ports;
        let below = (kernel.lo > all.lo).then(|| PortRange {
            lo: all.lo,
            hi: kernel.lo - 1,
        });
        let above = (kernel.hi < all.hi).then(|| PortRange {
            lo: kernel.hi + 1,
            hi: all.hi,
        });
        let best = [below, above]
            .into_iter()
            .flatten()
            .max_by_key(PortRange::len)
            .filter(|r| r.len() >= MIN_DEFAULT_NAT_PORTS)?;
        self.ports = best;
        Some(all)
    }
}

/// TCP MSS clamping on SYN and SYN-ACK segments, `[nat] mss_clamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssClamp {
    Off,
    /// Lower any larger MSS option to this value.
    Fixed(u16),
    /// Lower it to the smaller of the LAN and the uplink MTU, less 40 bytes of
    /// IPv4 and TCP header.
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub down_after: u32,
    pub up_after: u32,
    /// Targets of an uplink that must answer for a probe round to succeed.
    pub reliability: u32,
    /// A shell command run on every change of an uplink's state, with
    /// XWAN_UPLINK, XWAN_STATE (up or down), XWAN_REASON and XWAN_INTERFACE
    /// in its environment.
    pub hook: Option<String>,
    /// Loss over the recent rounds that takes an uplink down, and the loss it
    /// must come back under to return.
    pub loss: Option<Trigger<u32>>,
    /// Mean round-trip time (ms) over the recent rounds that takes an uplink
    /// down, and the one it must come back under to return.
    pub latency_ms: Option<Trigger<u64>>,
    /// The state an uplink starts in, until its probes say otherwise.
    pub initial_up: bool,
}

/// A quality trigger with hysteresis: over `failure` the uplink goes down;
/// it comes back only at or under `recovery` (`recovery <= failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger<T> {
    pub failure: T,
    pub recovery: T,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub tcp_established_s: u32,
    pub tcp_transitory_s: u32,
    pub udp_s: u32,
    pub icmp_s: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_flows: u32,
    /// The most flows one LAN host may have at a time; 0: no limit.
    pub max_flows_per_host: u32,
    /// The most flows opened from the Internet to one port forward's target
    /// at a time; 0: no limit. Never counted against the target's
    /// `max_flows_per_host`.
    pub max_flows_per_forward: u32,
    /// The most flows one Internet source address may open through port
    /// forwards at a time; 0: no limit.
    pub max_flows_per_source: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub socket: PathBuf,
    /// Where the Prometheus endpoint (`GET /metrics`) listens; None: off.
    pub metrics: Option<SocketAddr>,
    /// The state file flows are saved to on a stop and restored from at
    /// start; None: off.
    pub state: Option<PathBuf>,
    /// Seconds between checkpoints of the state file; 0: only on a stop.
    pub checkpoint_s: u32,
    /// The group whose members may read status, flows and events on the control
    /// socket; None: root only.
    pub group: Option<ControlGroup>,
    /// The status page (`GET /` and `GET /status.json` on the metrics
    /// listener); only where `metrics` is set.
    pub page: Page,
}

/// `[control] page`, `page_token`, `page_flows`: the read-only status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Served at all. Default: when the listener is a loopback address; on
    /// any other, only when set.
    pub on: bool,
    /// A token the page and its JSON ask for (`?token=` or `Authorization:
    /// Bearer`); None: none (the metrics never ask).
    pub token: Option<String>,
    /// The top flows (addresses and ports of LAN hosts and their peers) in
    /// the page's JSON. Default: only when the listener is a loopback address,
    /// so no flow details leave the box unless configured.
    pub flows: bool,
}

/// Without `[control] metrics`: no listener, so no page.
impl Default for Page {
    fn default() -> Page {
        Page {
            on: false,
            token: None,
            flows: false,
        }
    }
}

/// `[control] group`: its name, and its id on this system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlGroup {
    pub name: String,
    pub gid: u32,
}

/// `[local]`: the router's own traffic (see `io/runtime/local_routes.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    /// false: xwan leaves the kernel's routing alone.
    pub routes: bool,
    /// Where the router's own new connections go: an uplink (another one
    /// while it is down) or balanced over the best tier that is up.
    pub uplink: LocalUplink,
    /// The first of xwan's routing tables: `table + id` per uplink,
    /// `table + MAX_UPLINKS` for the router's own connections, and
    /// `table + MAX_UPLINKS + 1 + i` for `rules[i]`.
    pub table: u32,
    /// `[[local.rule]]`: the router's own connections by destination and
    /// port, first match wins, before `uplink`.
    pub rules: Vec<LocalRule>,
}

/// One `[[local.rule]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRule {
    pub proto: Proto,
    /// Empty means any.
    pub dst: Vec<Ipv4Net>,
    /// Empty means any; only with tcp or udp.
    pub dst_port: Vec<PortRange>,
    pub uplink: LocalUplink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalUplink {
    Uplink(UplinkId),
    Balance,
}

/// `[dataplane]`: how the data path forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dataplane {
    pub offload: Offload,
}

/// `[dataplane] offload`: whether established flows are forwarded inside
/// the kernel by eBPF (`io/offload`), the core deciding which, and by which
/// hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Where the kernel supports it (TCX, Linux 6.6+), in both `--io` modes:
    /// TC, and with `--io xdp` the XDP program itself for frames leaving
    /// through an interface whose driver accepts XDP frames.
    Auto,
    /// TC only.
    Tc,
    Off,
}

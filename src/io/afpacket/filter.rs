//! The kernel side of the packet backend. AF_PACKET sockets get a copy of every
//! frame and the kernel still processes the original, so without this the kernel
//! would forward LAN traffic a second time (un-NATed), answer NAT ports with TCP
//! RSTs and ICMP port-unreachables, and send ICMP errors for destinations it has no
//! route to.
//!
//! [`KernelFilter::install`] loads one nftables table, `table ip xwan` (replacing a
//! stale one left by an earlier xwan that could not own it, in the same
//! transaction), through libnftables in-process ([`crate::io::sys::nftables`]), with the
//! table flag `owner`: the table belongs to the netlink socket xwan keeps open
//! for its whole life, no other process can change it, and the kernel deletes
//! it when that socket closes, so even a killed xwan (SIGKILL, abort) leaves no
//! table behind to black-hole the LAN. A kernel older than 5.12 (or nftables
//! older than 0.9.9) has no owned tables: the table is then loaded without the
//! flag, as before, a warning says that a killed xwan leaves it behind, and the
//! next start replaces it. [`KernelFilter::remove`] (or dropping the filter)
//! deletes it. Nothing else is changed: no sysctl, no route, no other table.
//! The table holds:
//!
//! - sets `lan_networks` (the `[lan] networks`), `local_addresses` (every IPv4
//!   address configured on any interface) and `wan_addresses` (the uplinks' SNAT
//!   addresses);
//! - chain `prerouting`, hooked at `prerouting` with priority `raw` (-300), so the
//!   frames it drops never reach conntrack, routing, forwarding or local sockets:
//!   - `iifname "LAN" jump from_lan`;
//!   - `iifname . ip daddr { "WAN_IF" . WAN_ADDRESS, ... } jump owned_ports`;
//! - chain `owned_ports`, the traffic to a WAN address that the core translates:
//!   - `ip frag-off & 0x1fff != 0 return` (a later fragment has no ports: its
//!     bytes where ports would be are payload, and must not decide; the first
//!     fragment does, and the kernel never completes a packet without it);
//!   - `meta l4proto { tcp, udp } th dport NAT_LO-NAT_HI drop`;
//!   - `icmp type echo-reply icmp id NAT_LO-NAT_HI drop`;
//!   - `ip daddr . tcp dport { WAN_ADDRESS . PORT, ... } drop` for TCP port
//!     forwards (the same for UDP);
//! - chain `from_lan`, LAN traffic the core forwards itself; it returns (leaves the
//!   frame to the kernel) exactly where the core says `Kernel`, and drops the rest:
//!   - `ip saddr != @lan_networks return` (not inside);
//!   - `meta pkttype != host return` (broadcast, multicast);
//!   - `ip daddr @wan_addresses jump owned_ports` (hairpinning through a WAN address);
//!   - `ip daddr @local_addresses return`, `ip daddr @lan_networks return`
//!     (to the router itself, or to another LAN host);
//!   - `icmp type != { echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem } return`
//!     (other ICMP is the kernel's; errors are translated by the core, so the kernel must not forward them un-NATed);
//!   - `ip ttl <= 1 drop` (the core answers time-exceeded itself, bypassed
//!     destinations included, as in xdp mode: the kernel may have no route back);
//!   - one line per `[[rule]]`, in file order, with the same matches: `return` for
//!     `action = "bypass"`, `drop` for any other action (first match wins, as in
//!     the core);
//!   - `drop`.
//!
//! The kernel's own connections are left alone as long as their ports are outside
//! the NAT range, which the runtime checks against `net.ipv4.ip_local_port_range`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::{Ipv4Net, Ipv6Net};
use tracing::warn;

use crate::config::{Action, PortRange, Proto, Rule};
use crate::io::sync;
use crate::io::sys::nftables::Nftables;
use crate::io::DataPathSetup;
use crate::router::Port;

/// The nftables table xwan owns (family `ip`).
pub const TABLE: &str = "xwan";

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("the data path setup has no LAN interface")]
    NoLanInterface,
    #[error("{0}")]
    Library(String),
    #[error("nftables could not {op} table ip {TABLE}: {message}")]
    Nft { op: &'static str, message: String },
}

/// The installed `table ip xwan`; deleted by [`KernelFilter::remove`] or on
/// drop, and by the kernel when xwan ends if it is owned.
pub struct KernelFilter {
    handle: FilterHandle,
    installed: bool,
}

/// Changes the installed table (a reload): through the socket that owns it.
#[derive(Clone)]
pub struct FilterHandle {
    nft: Arc<Mutex<Nftables>>,
    /// Whether the table carries the `owner` flag.
    owned: bool,
}

impl KernelFilter {
    /// Loads the table for this setup and these steering rules, replacing a
    /// table of the same name that no live process owns; with `owner` (the
    /// `nft-owner` feature) owned by xwan where the kernel takes it. Opens
    /// the netlink socket in the calling thread's network namespace.
    pub fn install(
        setup: &DataPathSetup,
        rules: &[Rule],
        owner: bool,
    ) -> Result<KernelFilter, FilterError> {
        let mut nft = Nftables::open().map_err(FilterError::Library)?;
        let unowned = |nft: &mut Nftables| {
            nft.run(&ruleset(setup, rules, Ownership::None)?)
                .map_err(|message| FilterError::Nft {
                    op: "install",
                    message: explain(message),
                })
        };
        if !owner {
            unowned(&mut nft)?;
            return Ok(KernelFilter {
                handle: FilterHandle {
                    nft: Arc::new(Mutex::new(nft)),
                    owned: false,
                },
                installed: true,
            });
        }
        let owned = match nft.run(&ruleset(setup, rules, Ownership::Take)?) {
            Ok(()) => true,
            Err(owned_error) => {
                unowned(&mut nft)?;
                warn!(
                    "nftables cannot make table ip {TABLE} owned by xwan ({owned_error}; owned tables need \
                     Linux 5.12 and nftables 0.9.9): a killed xwan leaves the table behind until it starts again"
                );
                false
            }
        };
        Ok(KernelFilter {
            handle: FilterHandle {
                nft: Arc::new(Mutex::new(nft)),
                owned,
            },
            installed: true,
        })
    }

    /// Whether the kernel deletes the table when xwan ends, however it ends.
    pub fn owned(&self) -> bool {
        self.handle.owned
    }

    /// What a reload uses to replace the table.
    pub fn handle(&self) -> FilterHandle {
        self.handle.clone()
    }

    /// Deletes the table.
    pub fn remove(mut self) -> Result<(), FilterError> {
        self.installed = false;
        self.handle.delete()
    }

    /// Whether the table is loaded in the calling thread's network namespace.
    pub fn present() -> Result<bool, FilterError> {
        let mut nft = Nftables::open().map_err(FilterError::Library)?;
        match nft.run(&format!("list table ip {TABLE}")) {
            Ok(()) => Ok(true),
            Err(message) if message.contains("No such file or directory") => Ok(false),
            Err(message) => Err(FilterError::Nft {
                op: "list",
                message,
            }),
        }
    }
}

impl FilterHandle {
    /// Replaces the table with one for a reloaded setup and rules, in one
    /// transaction: every packet meets either the old table or the new one.
    pub fn replace(&self, setup: &DataPathSetup, rules: &[Rule]) -> Result<(), FilterError> {
        let ownership = if self.owned {
            Ownership::Keep
        } else {
            Ownership::None
        };
        let text = ruleset(setup, rules, ownership)?;
        self.lock().run(&text).map_err(|message| FilterError::Nft {
            op: "replace",
            message: explain(message),
        })
    }

    fn delete(&self) -> Result<(), FilterError> {
        let mut nft = self.lock();
        let v6 = nft.run(&format!("delete table ip6 {TABLE}"));
        nft.run(&format!("delete table ip {TABLE}"))
            .map_err(|message| FilterError::Nft {
                op: "delete",
                message,
            })?;
        match v6 {
            Err(message) if !message.contains("No such file or directory") => {
                Err(FilterError::Nft {
                    op: "delete",
                    message,
                })
            }
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Nftables> {
        sync::lock(&self.nft)
    }
}

impl Drop for KernelFilter {
    fn drop(&mut self) {
        if self.installed {
            if let Err(err) = self.handle.delete() {
                warn!("removing nftables table ip {TABLE}: {err}");
            }
        }
    }
}

/// An nft error, with what it most likely means when another process owns
/// the table.
fn explain(message: String) -> String {
    if message.contains("Operation not permitted") {
        format!(
            "{message} (table ip {TABLE} is owned by another running process: is another xwan running in this \
             network namespace?)"
        )
    } else {
        message
    }
}

/// The nft script that (re)creates the table; see the module documentation.
/// Whether the table is owned, and by whom before this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// No `owner` flag; replaces any table of the name.
    None,
    /// Becomes owned by the loading socket; replaces a table of the name that
    /// no live process owns.
    Take,
    /// Already owned by the loading socket, and stays so (a reload). The kernel
    /// refuses to declare it again without the flag, so it is only deleted and
    /// made anew.
    Keep,
}

/// The nft script that loads the table with this ownership.
pub fn ruleset(
    setup: &DataPathSetup,
    rules: &[Rule],
    ownership: Ownership,
) -> Result<String, FilterError> {
    let owned = &setup.owned;
    let lan = setup
        .interfaces
        .iter()
        .find(|i| i.port == Port::Lan)
        .ok_or(FilterError::NoLanInterface)?;
    let wan_pairs: Vec<String> = setup
        .interfaces
        .iter()
        .filter_map(|i| match i.port {
            Port::Wan(id) => owned
                .wan_addresses
                .get(usize::from(id))
                .map(|addr| format!("{} . {addr}", quote(&i.name))),
            Port::Lan => None,
        })
        .collect();
    let nat = range(owned.nat_ports);

    let mut s = String::new();
    // Declaring then deleting the table makes the load replace a stale table (or
    // create a first one) in one transaction.
    if ownership != Ownership::Keep {
        let _ = writeln!(s, "table ip {TABLE} {{}}");
    }
    let _ = writeln!(s, "delete table ip {TABLE}\ntable ip {TABLE} {{");
    if ownership != Ownership::None {
        let _ = writeln!(s, "\tflags owner;");
    }
    set(
        &mut s,
        "lan_networks",
        true,
        &Ipv4Net::aggregate(&owned.lan_networks),
    );
    let local: Vec<Ipv4Addr> =
        sorted_unique(owned.local_addresses.iter().chain(&owned.wan_addresses));
    set(&mut s, "local_addresses", false, &local);
    set(
        &mut s,
        "wan_addresses",
        false,
        &sorted_unique(owned.wan_addresses.iter()),
    );

    let _ = writeln!(s, "\tchain owned_ports {{");
    let _ = writeln!(s, "\t\tip frag-off & 0x1fff != 0 return");
    let _ = writeln!(s, "\t\tmeta l4proto {{ tcp, udp }} th dport {nat} drop");
    let _ = writeln!(s, "\t\ticmp type echo-reply icmp id {nat} drop");
    for (proto, forwards) in [("tcp", &owned.tcp_forwards), ("udp", &owned.udp_forwards)] {
        if !forwards.is_empty() {
            let mut pairs: Vec<String> =
                forwards.iter().map(|(a, p)| format!("{a} . {p}")).collect();
            pairs.sort();
            pairs.dedup();
            let _ = writeln!(
                s,
                "\t\tip daddr . {proto} dport {{ {} }} drop",
                pairs.join(", ")
            );
        }
    }
    let _ = writeln!(s, "\t}}");

    let _ = writeln!(s, "\tchain from_lan {{");
    for line in [
        "ip saddr != @lan_networks return",
        "meta pkttype != host return",
        "ip daddr @wan_addresses jump owned_ports",
        "ip daddr @local_addresses return",
        "ip daddr @lan_networks return",
        "icmp type != { echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem } return",
        "ip ttl <= 1 drop",
    ] {
        let _ = writeln!(s, "\t\t{line}");
    }
    for rule in rules {
        if let Some(line) = rule_line(rule) {
            let _ = writeln!(s, "\t\t{line}");
        }
    }
    let _ = writeln!(s, "\t\tdrop\n\t}}");

    let _ = writeln!(s, "\tchain prerouting {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook prerouting priority raw; policy accept;"
    );
    let _ = writeln!(s, "\t\tiifname {} jump from_lan", quote(&lan.name));
    if !wan_pairs.is_empty() {
        let _ = writeln!(
            s,
            "\t\tiifname . ip daddr {{ {} }} jump owned_ports",
            wan_pairs.join(", ")
        );
    }
    let _ = writeln!(s, "\t}}\n}}");
    ruleset6(&mut s, setup, lan, rules, ownership);
    Ok(s)
}

/// The IPv6 table, `table ip6 xwan`, after the IPv4 one in the same
/// transaction (see the module documentation); without IPv6 in the
/// configuration, only a stale one is removed.
fn ruleset6(
    s: &mut String,
    setup: &DataPathSetup,
    lan: &crate::io::Interface,
    rules: &[Rule],
    ownership: Ownership,
) {
    let v6 = &setup.owned.v6;
    if ownership != Ownership::Keep {
        let _ = writeln!(s, "table ip6 {TABLE} {{}}\ndelete table ip6 {TABLE}");
    }
    if v6.lan_networks.is_empty() {
        return;
    }
    if ownership == Ownership::Keep {
        let _ = writeln!(s, "delete table ip6 {TABLE}");
    }
    let _ = writeln!(s, "table ip6 {TABLE} {{");
    if ownership != Ownership::None {
        let _ = writeln!(s, "\tflags owner;");
    }
    let lan_networks = Ipv6Net::aggregate(&v6.lan_networks);
    typed_set(s, "lan_networks", "ipv6_addr", true, &lan_networks);
    typed_set(
        s,
        "local_addresses",
        "ipv6_addr",
        false,
        &v6.local_addresses,
    );
    let nat = range(setup.owned.nat_ports);
    let errors = "echo-request, echo-reply, destination-unreachable, packet-too-big, \
                  time-exceeded, parameter-problem";
    let _ = writeln!(s, "\tchain owned_ports {{");
    let _ = writeln!(s, "\t\texthdr frag exists return");
    let _ = writeln!(s, "\t\tmeta l4proto {{ tcp, udp }} th dport {nat} drop");
    let _ = writeln!(s, "\t\ticmpv6 type echo-reply icmpv6 id {nat} drop");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain owned_prefixes {{");
    let _ = writeln!(s, "\t\texthdr hbh exists return");
    let _ = writeln!(s, "\t\ticmpv6 type != {{ {errors} }} return");
    let _ = writeln!(s, "\t\tdrop\n\t}}");
    let _ = writeln!(s, "\tchain from_lan {{");
    for line in [
        "ip6 saddr != @lan_networks return",
        "meta pkttype != host return",
        "ip6 saddr fe80::/10 return",
        "ip6 daddr fe80::/10 return",
        "ip6 daddr @local_addresses return",
        "ip6 daddr @lan_networks return",
        "exthdr hbh exists return",
        "rt seg-left != 0 return",
    ] {
        let _ = writeln!(s, "\t\t{line}");
    }
    let _ = writeln!(s, "\t\ticmpv6 type != {{ {errors} }} return");
    let _ = writeln!(s, "\t\tip6 hoplimit <= 1 drop");
    for rule in rules {
        if let Some(line) = rule_line6(rule) {
            let _ = writeln!(s, "\t\t{line}");
        }
    }
    let _ = writeln!(s, "\t\tdrop\n\t}}");
    let _ = writeln!(s, "\tchain prerouting {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook prerouting priority raw; policy accept;"
    );
    let _ = writeln!(s, "\t\tiifname {} jump from_lan", quote(&lan.name));
    for interface in &setup.interfaces {
        let Port::Wan(id) = interface.port else {
            continue;
        };
        let Some(uplink) = v6.uplinks.get(usize::from(id)) else {
            continue;
        };
        let name = quote(&interface.name);
        if !uplink.prefixes.is_empty() {
            let _ = writeln!(
                s,
                "\t\tiifname {name} ip6 daddr {} jump owned_prefixes",
                nets6(&uplink.prefixes)
            );
        }
        if let Some(address) = uplink.address {
            let _ = writeln!(s, "\t\tiifname {name} ip6 daddr {address} jump owned_ports");
            for (proto, port) in &uplink.forwards {
                let _ = writeln!(
                    s,
                    "\t\tiifname {name} ip6 daddr {address} {proto} dport {port} drop"
                );
            }
        }
    }
    let _ = writeln!(s, "\t}}\n}}");
}

/// One `from_lan` line of the IPv4 table for a steering rule; None for a
/// rule that can match no IPv4 packet (ports on ICMP, prefixes of IPv6 only).
fn rule_line(rule: &Rule) -> Option<String> {
    let family_only = |v4: &[Ipv4Net], v6: &[Ipv6Net]| v4.is_empty() && !v6.is_empty();
    if family_only(&rule.src, &rule.src6) || family_only(&rule.dst, &rule.dst6) {
        return None;
    }
    let mut parts = proto_parts(rule, "icmp")?;
    if !rule.src.is_empty() {
        parts.push(format!("ip saddr {}", nets(&rule.src)));
    }
    if !rule.dst.is_empty() {
        parts.push(format!("ip daddr {}", nets(&rule.dst)));
    }
    Some(rule_tail(rule, parts))
}

/// The same for the IPv6 table.
fn rule_line6(rule: &Rule) -> Option<String> {
    let family_only = |v4: &[Ipv4Net], v6: &[Ipv6Net]| v6.is_empty() && !v4.is_empty();
    if family_only(&rule.src, &rule.src6) || family_only(&rule.dst, &rule.dst6) {
        return None;
    }
    let mut parts = proto_parts(rule, "ipv6-icmp")?;
    if !rule.src6.is_empty() {
        parts.push(format!("ip6 saddr {}", nets6(&rule.src6)));
    }
    if !rule.dst6.is_empty() {
        parts.push(format!("ip6 daddr {}", nets6(&rule.dst6)));
    }
    Some(rule_tail(rule, parts))
}

/// A rule's protocol match (`icmp` is the family's ICMP); None where ports
/// are asked of ICMP.
fn proto_parts(rule: &Rule, icmp: &str) -> Option<Vec<String>> {
    let has_ports = !rule.src_port.is_empty() || !rule.dst_port.is_empty();
    let mut parts: Vec<String> = Vec::new();
    match (rule.proto, has_ports) {
        (Proto::Tcp, _) => parts.push("meta l4proto tcp".into()),
        (Proto::Udp, _) => parts.push("meta l4proto udp".into()),
        (Proto::Icmp, true) => return None,
        (Proto::Icmp, false) => parts.push(format!("meta l4proto {icmp}")),
        (Proto::Any, true) => parts.push("meta l4proto { tcp, udp }".into()),
        (Proto::Any, false) => {}
    }
    Some(parts)
}

/// A rule line's ports, verdict and comment.
fn rule_tail(rule: &Rule, mut parts: Vec<String>) -> String {
    if !rule.src_port.is_empty() {
        parts.push(format!("th sport {}", ports(&rule.src_port)));
    }
    if !rule.dst_port.is_empty() {
        parts.push(format!("th dport {}", ports(&rule.dst_port)));
    }
    parts.push(match rule.action {
        Action::Bypass => "return".into(),
        Action::Uplink(_) | Action::Balance | Action::Drop => "drop".into(),
    });
    parts.push(format!("comment \"rule {}\"", comment(&rule.name)));
    parts.join(" ")
}

fn set<T: std::fmt::Display>(s: &mut String, name: &str, interval: bool, elements: &[T]) {
    typed_set(s, name, "ipv4_addr", interval, elements);
}

fn typed_set<T: std::fmt::Display>(
    s: &mut String,
    name: &str,
    kind: &str,
    interval: bool,
    elements: &[T],
) {
    let _ = writeln!(s, "\tset {name} {{\n\t\ttype {kind}");
    if interval {
        let _ = writeln!(s, "\t\tflags interval\n\t\tauto-merge");
    }
    if !elements.is_empty() {
        let list: Vec<String> = elements.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "\t\telements = {{ {} }}", list.join(", "));
    }
    let _ = writeln!(s, "\t}}");
}

fn sorted_unique<'a>(addrs: impl Iterator<Item = &'a Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut all: Vec<Ipv4Addr> = addrs.copied().collect();
    all.sort();
    all.dedup();
    all
}

/// [`nets`] for IPv6.
fn nets6(list: &[Ipv6Net]) -> String {
    let merged: Vec<String> = Ipv6Net::aggregate(&list.to_vec())
        .iter()
        .map(ToString::to_string)
        .collect();
    format!("{{ {} }}", merged.join(", "))
}

/// An anonymous set of prefixes, overlaps merged (nft refuses overlapping intervals).
fn nets(list: &[Ipv4Net]) -> String {
    let merged: Vec<String> = Ipv4Net::aggregate(&list.to_vec())
        .iter()
        .map(ToString::to_string)
        .collect();
    format!("{{ {} }}", merged.join(", "))
}

/// An anonymous set of port ranges, overlapping and adjacent ranges merged.
fn ports(list: &[PortRange]) -> String {
    let mut sorted = list.to_vec();
    sorted.sort_by_key(|r| (r.lo, r.hi));
    let mut merged: Vec<PortRange> = Vec::new();
    for r in sorted {
        match merged.last_mut() {
            Some(last) if u32::from(r.lo) <= u32::from(last.hi) + 1 => last.hi = last.hi.max(r.hi),
            _ => merged.push(r),
        }
    }
    let items: Vec<String> = merged.into_iter().map(range).collect();
    format!("{{ {} }}", items.join(", "))
}

fn range(r: PortRange) -> String {
    if r.lo == r.hi {
        r.lo.to_string()
    } else {
        format!("{}-{}", r.lo, r.hi)
    }
}

/// A double-quoted nft string (interface names cannot hold quotes or backslashes,
/// but be safe).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace(['"', '\\'], ""))
}

/// A rule name for an nft comment: printable ASCII without quotes, at most 100 bytes
/// (nft allows 128 per comment).
fn comment(name: &str) -> String {
    name.chars()
        .take(100)
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

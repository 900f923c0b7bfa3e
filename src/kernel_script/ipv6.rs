//! The IPv6 half of the kernel recipe, rendered after the IPv4 one for a
//! config with an uplink that has `gateway6`:
//! - sysctls: forwarding, and `accept_ra = 2` where an uplink follows the
//!   kernel ("auto"): a forwarding box ignores router advertisements
//!   otherwise;
//! - `ip -6` rules and per-uplink tables, with the same marks and table
//!   numbers as IPv4 (the kernel keeps the families' rules and tables apart);
//! - ip6tables mangle: the same marking as IPv4 (`Family::v6`), balancing
//!   over the uplinks that carry IPv6 only;
//! - each uplink's `nat6`: `prefix` as nftables `snat/dnat ip6 prefix to`
//!   (stateful 1:1, host bits kept), `npt` as ip6tables SNPT/DNPT (RFC 6296,
//!   stateless), `masquerade` as ip6tables SNAT (MASQUERADE for an "auto"
//!   address), `off` as nothing.
//!
//! "auto" values (`gateway6`, `address6`) are read when the script runs, from
//! the RA default route and the interface's global address: the recipe is
//! static, and `xwan kernel-script` has no IPv6 view of the kernel to fill
//! them with beforehand.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::nat::prefix::outside_prefix;

use super::*;
use crate::config::{Nat6, Wan6};

/// The nftables table holding the `prefix` translations.
const NAT66_TABLE: &str = "xwan_nat66";
/// Metric of the main table's IPv6 default route the recipe adds for
/// unmarked traffic: below the 1024 of routes learnt from RAs, so it wins.
const MAIN_DEFAULT_METRIC: u32 = 512;

/// Whether the config has IPv6 to render: an uplink that carries it.
pub(super) fn has_ipv6(config: &Config) -> bool {
    config.wans.iter().any(|w| w.ipv6.is_some())
}

/// The uplinks with IPv6: (index, uplink, its IPv6 side).
fn uplinks6(config: &Config) -> impl Iterator<Item = (usize, &Wan, &Wan6)> {
    config
        .wans
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.ipv6.as_ref().map(|v6| (i, w, v6)))
}

/// Shell variable holding uplink `n`'s gateway6 read at run time.
fn gateway_var(n: u32) -> String {
    format!("gateway6_{n}")
}

/// Shell variable holding uplink `n`'s address6 read at run time.
fn address_var(n: u32) -> String {
    format!("address6_{n}")
}

/// The gateway6 as the script's words: the address, or the variable
/// reading it (set in [`routing`]).
fn gateway_word(n: u32, v6: &Wan6) -> String {
    if v6.gateway_auto {
        format!("\"${}\"", gateway_var(n))
    } else {
        v6.gateway.to_string()
    }
}

/// The address6 as the script's words, None when the uplink has none.
fn address_word(n: u32, v6: &Wan6) -> Option<String> {
    if v6.address_auto {
        Some(format!("\"${}\"", address_var(n)))
    } else if v6.address.is_unspecified() {
        None
    } else {
        Some(v6.address.to_string())
    }
}

fn auto_or(value: Ipv6Addr, auto: bool) -> String {
    if auto {
        "auto".to_string()
    } else if value.is_unspecified() {
        "none".to_string()
    } else {
        value.to_string()
    }
}

/// Lines of the script's header about IPv6 (before `set -euo pipefail`).
pub(super) fn header(s: &mut Script, config: &Config) {
    s.comment("");
    s.comment("IPv6 (ip6tables, ip -6, nftables for nat6 = \"prefix\"), after the IPv4 part:");
    for (i, wan, v6) in uplinks6(config) {
        let n = uplink_number(i);
        let prefix = match (v6.prefix, v6.prefix_auto) {
            (Some(p), _) => p.to_string(),
            (None, true) => "auto".to_string(),
            (None, false) => "none".to_string(),
        };
        s.comment(&format!(
            "uplink {n} = {}: {} address6 {} gateway6 {} prefix6 {prefix} nat6 {} -> mark {n}, table {}",
            wan.name,
            wan.interface,
            auto_or(v6.address, v6.address_auto),
            auto_or(v6.gateway, v6.gateway_auto),
            v6.nat.name(),
            TABLE_BASE + n
        ));
    }
    for wan in config.wans.iter().filter(|w| w.ipv6.is_none()) {
        s.comment(&format!(
            "uplink {} carries no IPv6: IPv6 rules naming it balance (or drop if strict).",
            wan.name
        ));
    }
    s.comment("IPv6 \"auto\" values are read when this script runs (gateway6: the default route");
    s.comment("router advertisements installed on the interface; address6: its global address);");
    s.comment("run it again when they change. prefix6 = \"auto\" is not followed: no translation.");
    if uplinks6(config).any(|(_, _, v6)| v6.nat == Nat6::Npt) {
        s.comment("nat6 = \"npt\" uses the kernel's stateless SNPT/DNPT targets (ip6t_NPT). They");
        s.comment("rewrite after conntrack has seen a packet, so conntrack cannot pair a");
        s.comment("connection's two directions: inbound packets to the mapped prefix are left");
        s.comment(
            "untracked (raw NOTRACK: no half-seen connections, the filter lets them in), and",
        );
        s.comment(
            "a TCP connection's packets from the LAN after its SYN look INVALID to conntrack,",
        );
        s.comment("lose its mark and follow the main table's default route: it stays on its npt");
        s.comment("uplink only if that uplink has the main default route. UDP and ICMPv6 keep");
        s.comment("their marks. This is the recipe's limit, not the policy's.");
    }
}

/// `sysctl` key of a per-interface IPv6 setting (slashes for dotted names).
fn conf_key6(interface: &str, setting: &str) -> String {
    if interface.contains('.') {
        format!("net/ipv6/conf/{interface}/{setting}")
    } else {
        format!("net.ipv6.conf.{interface}.{setting}")
    }
}

/// The IPv6 half of the script.
pub(super) fn render(s: &mut Script, config: &Config) {
    sysctls(s, config);
    flush(s);
    routing(s, config);
    mangle(s, config, &Family::v6(config));
    filter(s, config);
    translation(s, config);
    s.section("IPv6 connection tracking timeout from [timeouts] icmp_s");
    s.line(&format!(
        "sysctl -qw net.netfilter.nf_conntrack_icmpv6_timeout={}",
        config.timeouts.icmp_s
    ));
}

fn sysctls(s: &mut Script, config: &Config) {
    s.section("IPv6 kernel settings");
    let auto: Vec<&Wan> = uplinks6(config)
        .filter(|(_, _, v6)| v6.gateway_auto || v6.address_auto)
        .map(|(_, wan, _)| wan)
        .collect();
    if !auto.is_empty() {
        s.comment("Uplinks that follow the kernel (\"auto\") keep taking router advertisements");
        s.comment("once this box forwards (accept_ra = 2). Set first: turning forwarding on");
        s.comment("drops the RA default routes of interfaces without it.");
        for wan in auto {
            s.line(&format!(
                "sysctl -qw {}",
                quote(&format!("{}=2", conf_key6(&wan.interface, "accept_ra")))
            ));
        }
    }
    s.line("sysctl -qw net.ipv6.conf.all.forwarding=1");
    s.comment("Kernel-made replies (ICMPv6, RST) carry the mark of the packet they answer.");
    s.line("sysctl -qw net.ipv6.fwmark_reflect=1");
}

fn flush(s: &mut Script) {
    s.section("IPv6: start clean: this script owns these tables in this namespace");
    for table in ["mangle", "nat", "filter", "raw"] {
        s.line(&format!("ip6tables -t {table} -F"));
        s.line(&format!("ip6tables -t {table} -X"));
    }
    s.line(&format!(
        "nft delete table ip6 {NAT66_TABLE} 2>/dev/null || :  # absent on a first run"
    ));
}

fn routing(s: &mut Script, config: &Config) {
    s.section("IPv6 policy routing");
    s.comment("As for IPv4: the main table's specific routes win, then the marks and the");
    s.comment("uplinks' own addresses choose a table. IPv6 rules and tables are the kernel's");
    s.comment("IPv6 ones: the same numbers as IPv4's do not clash.");
    delete_rule6(s, PRIO_MAIN_SPECIFIC);
    s.line(&format!(
        "ip -6 rule add priority {PRIO_MAIN_SPECIFIC} lookup main suppress_prefixlength 0"
    ));
    for (i, wan, v6) in uplinks6(config) {
        let n = uplink_number(i);
        let table = TABLE_BASE + n;
        let dev = quote(&wan.interface);
        s.comment(&format!(
            "Uplink {n} ({}): mark {n} uses IPv6 table {table}.",
            wan.name
        ));
        if v6.gateway_auto {
            let var = gateway_var(n);
            s.comment(
                "gateway6 = \"auto\": the next hop of the RA default route on the interface, now.",
            );
            s.line(&format!(
                "{var}=$(ip -6 route show default dev {dev} | awk '$1 == \"default\" && $2 == \"via\" {{ print $3; exit }}')"
            ));
            s.line(&format!(
                "[[ -n ${var} ]] || {{ echo {} >&2; exit 1; }}",
                quote(&format!(
                    "uplink {}: gateway6 = auto, but {} has no IPv6 default route (from router advertisements) yet",
                    wan.name, wan.interface
                ))
            ));
        }
        if v6.address_auto {
            let var = address_var(n);
            s.comment("address6 = \"auto\": the interface's global address, now.");
            s.line(&format!(
                "{var}=$(ip -6 -o addr show dev {dev} scope global -tentative -deprecated | awk '{{ sub(\"/.*\", \"\", $4); print $4; exit }}')"
            ));
            s.line(&format!(
                "[[ -n ${var} ]] || {{ echo {} >&2; exit 1; }}",
                quote(&format!(
                    "uplink {}: address6 = auto, but {} has no global IPv6 address yet",
                    wan.name, wan.interface
                ))
            ));
        }
        s.line(&format!(
            "ip -6 route flush table {table} 2>/dev/null || :  # absent on a first run"
        ));
        let src = address_word(n, v6)
            .map(|a| format!(" src {a}"))
            .unwrap_or_default();
        s.line(&format!(
            "ip -6 route add default via {} dev {dev}{src} table {table}",
            gateway_word(n, v6)
        ));
        delete_rule6(s, PRIO_FWMARK + n);
        s.line(&format!(
            "ip -6 rule add priority {} fwmark {n} table {table}",
            PRIO_FWMARK + n
        ));
        delete_rule6(s, PRIO_FROM + n);
        if let Some(address) = address_word(n, v6) {
            s.line(&format!(
                "ip -6 rule add priority {} from {address} table {table}",
                PRIO_FROM + n
            ));
        }
    }
    let family = Family::v6(config);
    if let Some(&first) = balance::best_tier_of(config, &family).first() {
        let wan = &config.wans[first];
        let Some(v6) = &wan.ipv6 else { return };
        let n = uplink_number(first);
        if v6.gateway_auto {
            s.comment(&format!(
                "Unmarked IPv6 (bypass rules, the router itself) takes uplink {n} ({}) by the",
                wan.name
            ));
            s.comment("default route its router advertisements keep in the main table.");
        } else {
            s.comment(&format!(
                "Unmarked IPv6 (bypass rules, the router itself) takes uplink {n} ({}); metric",
                wan.name
            ));
            s.comment(&format!(
                "{MAIN_DEFAULT_METRIC}: before any default route router advertisements install (1024)."
            ));
            s.line(&format!(
                "ip -6 route replace default via {} dev {} metric {MAIN_DEFAULT_METRIC}",
                v6.gateway,
                quote(&wan.interface)
            ));
        }
    }
}

fn delete_rule6(s: &mut Script, priority: u32) {
    s.line(&format!(
        "while ip -6 rule del priority {priority} 2>/dev/null; do :; done"
    ));
}

fn filter(s: &mut Script, config: &Config) {
    s.section("IPv6 filtering");
    s.comment("Connections a drop rule matched.");
    s.line(&format!(
        "ip6tables -A FORWARD -m mark --mark {DROP_MARK:#x} -j DROP"
    ));
    s.comment("From a WAN, new connections pass only to translated addresses (nat6 = \"prefix\":");
    s.comment("DNAT; \"npt\": untracked) or, with nat6 = \"off\", to the LAN's own prefixes.");
    for wan in &config.wans {
        let off = wan.ipv6.as_ref().is_some_and(|v6| v6.nat == Nat6::Off);
        if off {
            s.comment(&format!(
                "{}: nat6 = \"off\": the LAN's prefixes are routed, and reachable, as they are.",
                comment_text(&wan.name)
            ));
            continue;
        }
        s.line(&format!(
            "ip6tables -A FORWARD -i {} -m conntrack --ctstate NEW -m conntrack ! --ctstate DNAT -j DROP",
            quote(&wan.interface)
        ));
    }
}

/// A word for nftables: an interface name in double quotes. Interface names
/// are printable ASCII without spaces; one with a quote or a backslash
/// cannot be written (nftables strings have no escapes).
fn nft_name(name: &str) -> Option<String> {
    (!name.contains(['"', '\\'])).then(|| format!("\"{name}\""))
}

fn translation(s: &mut Script, config: &Config) {
    s.section("IPv6 translation: each uplink's nat6");
    let ports = config.nat.ports;
    let mut post = Vec::new();
    let mut pre = Vec::new();
    for (id, wan, v6) in uplinks6(config) {
        let dev = quote(&wan.interface);
        let name = comment_text(&wan.name);
        match v6.nat {
            Nat6::Off => {
                s.comment(&format!(
                    "{name}: nat6 = \"off\": no translation; the uplink routes the LAN's prefixes."
                ));
            }
            Nat6::Masquerade => {
                s.comment(&format!(
                    "{name}: nat6 = \"masquerade\": LAN sources take the uplink's address, TCP and UDP"
                ));
                s.comment(&format!(
                    "ports from [nat] ports {}-{}, as IPv4 SNAT.",
                    ports.lo, ports.hi
                ));
                for net in &config.lan.networks6 {
                    for proto in ["tcp", "udp"] {
                        let target = if v6.address_auto {
                            format!("MASQUERADE --to-ports {}-{}", ports.lo, ports.hi)
                        } else {
                            format!(
                                "SNAT --to-source [{}]:{}-{}",
                                v6.address, ports.lo, ports.hi
                            )
                        };
                        s.line(&format!(
                            "ip6tables -t nat -A POSTROUTING -o {dev} -s {net} -p {proto} -j {target}"
                        ));
                    }
                    let target = if v6.address_auto {
                        "MASQUERADE".to_string()
                    } else {
                        format!("SNAT --to-source {}", v6.address)
                    };
                    s.line(&format!(
                        "ip6tables -t nat -A POSTROUTING -o {dev} -s {net} -j {target}"
                    ));
                }
                forwards6(s, config, id, &dev);
            }
            Nat6::Prefix | Nat6::Npt => {
                let Some(delegated) = v6.prefix else {
                    s.comment(&format!(
                        "{name}: nat6 = \"{}\" with prefix6 = \"auto\": not followed by this recipe,",
                        v6.nat.name()
                    ));
                    s.comment("  so nothing is translated on this uplink.");
                    continue;
                };
                let maps: Vec<(Ipv6Net, Ipv6Net)> = config
                    .lan
                    .networks6
                    .iter()
                    .filter_map(|&lan| outside_prefix(lan, delegated).ok().map(|out| (lan, out)))
                    .collect();
                if v6.nat == Nat6::Npt {
                    npt(s, &name, &dev, &maps);
                    continue;
                }
                s.comment(&format!(
                    "{name}: nat6 = \"prefix\": each LAN prefix onto its prefix in {delegated}, host bits"
                ));
                s.comment("kept, stateful (nftables, below); inbound connections to a mapped address too.");
                let Some(nft_dev) = nft_name(&wan.interface) else {
                    s.line(&format!(
                        "echo {} >&2; exit 1",
                        quote(&format!(
                            "uplink {}: nftables cannot name the interface {}",
                            wan.name, wan.interface
                        ))
                    ));
                    continue;
                };
                for (lan, out) in maps {
                    s.comment(&format!("  {lan} <-> {out}"));
                    post.push(format!(
                        "oifname {nft_dev} ip6 saddr {lan} snat ip6 prefix to {out}"
                    ));
                    pre.push(format!(
                        "iifname {nft_dev} ip6 daddr {out} dnat ip6 prefix to {lan}"
                    ));
                }
            }
        }
    }
    if post.is_empty() {
        return;
    }
    s.comment("nftables' prefix NAT (kernel 5.8, nftables 0.9.5 or later), in one transaction.");
    s.line("nft -f - <<'NFT'");
    s.line(&format!("table ip6 {NAT66_TABLE} {{"));
    s.line("\tchain postrouting {");
    s.line("\t\ttype nat hook postrouting priority srcnat; policy accept;");
    for rule in &post {
        s.line(&format!("\t\t{rule}"));
    }
    s.line("\t}");
    s.line("\tchain prerouting {");
    s.line("\t\ttype nat hook prerouting priority dstnat; policy accept;");
    for rule in &pre {
        s.line(&format!("\t\t{rule}"));
    }
    s.line("\t}");
    s.line("}");
    s.line("NFT");
}

/// nat6 = "npt": RFC 6296 by the kernel's SNPT and DNPT (mangle table only).
/// The `[[forward]]`s to IPv6 targets on uplink `id`'s NAT66 address:
/// DNAT in from `dev` (their replies leave by it: inbound connections are
/// marked by their ingress uplink).
fn forwards6(s: &mut Script, config: &Config, id: usize, dev: &str) {
    for fwd in &config.forwards6 {
        if !fwd.wans.iter().any(|&u| usize::from(u) == id) {
            continue;
        }
        let proto = match fwd.proto {
            Proto::Udp => "udp",
            _ => "tcp",
        };
        s.line(&format!(
            "ip6tables -t nat -A PREROUTING -i {dev} -p {proto} --dport {} -j DNAT --to-destination [{}]:{}",
            fwd.port, fwd.to_addr, fwd.to_port
        ));
    }
}

fn npt(s: &mut Script, name: &str, dev: &str, maps: &[(Ipv6Net, Ipv6Net)]) {
    s.comment(&format!(
        "{name}: nat6 = \"npt\": RFC 6296 checksum-neutral prefix translation (stateless):"
    ));
    s.comment("SNPT out of the uplink, DNPT into it, and the inbound side untracked (see the");
    s.comment("header). DNPT goes first in PREROUTING, before the marking settles a packet.");
    for (lan, out) in maps {
        s.comment(&format!("  {lan} <-> {out}"));
        s.line(&format!(
            "ip6tables -t raw -A PREROUTING -i {dev} -d {out} -j NOTRACK"
        ));
        s.line(&format!(
            "ip6tables -t mangle -I PREROUTING -i {dev} -d {out} -j DNPT --src-pfx {out} --dst-pfx {lan}"
        ));
        s.line(&format!(
            "ip6tables -t mangle -A POSTROUTING -o {dev} -s {lan} -j SNPT --src-pfx {lan} --dst-pfx {out}"
        ));
    }
}

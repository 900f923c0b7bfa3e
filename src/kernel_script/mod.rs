//! The same policy as xwan, as a Linux kernel recipe: a commented bash script
//! of `sysctl`, `ip` (iproute2) and `iptables` commands, in the style of the
//! multi-WAN recipes xwan replaces (MARK / CONNMARK, `ip rule fwmark`,
//! per-uplink routing tables, `statistic --mode nth`, SNAT / DNAT).
//!
//! The script is the baseline the end-to-end tests and benchmarks compare
//! xwan with, so it implements the policy exactly where the kernel can:
//! - uplink `n` (1-based, file order) owns mark `n` and routing table `100 + n`;
//! - new connections from the LAN go through the rules in order; the first
//!   match pins, balances, bypasses (no mark: the main table decides) or drops;
//! - new connections from a WAN (port forwards, the router's own services)
//!   are marked by their ingress uplink, so replies leave by the same WAN;
//! - the mark is saved in the connection and restored on every later packet;
//! - `nth` balancing is an exact cascade over the smooth weighted round-robin
//!   order of the best priority tier.
//!
//! What a static recipe cannot do (no health checks, so no tier failover, no
//! `strict`; stickiness only approximated) is written into the script's header.
//!
//! A config with IPv6 (an uplink with `gateway6`) gets the same recipe for
//! IPv6 after the IPv4 one (`ipv6.rs`): ip6tables marks over the uplinks that
//! carry IPv6, `ip -6` rules and tables, and each uplink's `nat6`
//! translation. An IPv4-only config renders exactly as it always has.

mod balance;
mod ipv6;

use std::fmt::Write as _;

use crate::config::{Action, BalanceMode, Config, PortRange, Proto, Rule, Sticky, UplinkId, Wan};

use balance::{balance, best_tier};
use ipv6::has_ipv6;

/// Routing table of uplink `n` (1-based): `TABLE_BASE + n`.
const TABLE_BASE: u32 = 100;
/// `ip rule` priority of the rule that keeps the main table's specific routes.
const PRIO_MAIN_SPECIFIC: u32 = 1000;
/// `ip rule` priority of uplink `n`'s fwmark rule: `PRIO_FWMARK + n`.
const PRIO_FWMARK: u32 = 1100;
/// `ip rule` priority of uplink `n`'s source-address rule: `PRIO_FROM + n`.
const PRIO_FROM: u32 = 1200;
/// The mark of connections a `drop` rule matched (above every uplink mark).
const DROP_MARK: u32 = 0x100;
/// HMARK writes `HASH_MARK_BASE + slot`, mapped to an uplink mark right after.
const HASH_MARK_BASE: u32 = 0x10000;
/// The HMARK seed: fixed, so a reload maps every key to the same uplink.
const HASH_SEED: u32 = 0x7877_616e;

/// The bash script implementing `config` with the kernel's own tools.
pub fn render(config: &Config) -> String {
    let mut s = Script::default();
    header(&mut s, config);
    sysctls(&mut s, config);
    flush(&mut s);
    routing(&mut s, config);
    mangle(&mut s, config, &Family::v4(config));
    filter(&mut s, config);
    nat(&mut s, config);
    conntrack(&mut s, config);
    if has_ipv6(config) {
        ipv6::render(&mut s, config);
    }
    s.out
}

/// What the IPv4 and the IPv6 halves of the script differ in, where they
/// otherwise share their code (marking, rules, balancing).
struct Family {
    v6: bool,
    /// `iptables` or `ip6tables`.
    tables: &'static str,
    /// `-p` of a rule's `proto = "icmp"`: the family's own ICMP.
    icmp: &'static str,
    /// The uplinks that carry this family (indices into `config.wans`), in
    /// file order: every uplink carries IPv4, those with `gateway6` IPv6.
    uplinks: Vec<usize>,
}

impl Family {
    fn v4(config: &Config) -> Family {
        Family {
            v6: false,
            tables: "iptables",
            icmp: "icmp",
            uplinks: (0..config.wans.len()).collect(),
        }
    }

    fn v6(config: &Config) -> Family {
        Family {
            v6: true,
            tables: "ip6tables",
            icmp: "ipv6-icmp",
            uplinks: (0..config.wans.len())
                .filter(|&i| config.wans[i].ipv6.is_some())
                .collect(),
        }
    }

    fn carries(&self, uplink: usize) -> bool {
        self.uplinks.contains(&uplink)
    }

    /// The rule's prefixes of this family, as text: (sources, destinations).
    fn prefixes(&self, rule: &Rule) -> (Vec<String>, Vec<String>) {
        fn text<N: ToString>(nets: &[N]) -> Vec<String> {
            nets.iter().map(ToString::to_string).collect()
        }
        if self.v6 {
            (text(&rule.src6), text(&rule.dst6))
        } else {
            (text(&rule.src), text(&rule.dst))
        }
    }

    /// Whether a connection of this family can match the rule: not when the
    /// rule gives sources (or destinations) of the other family only. (A
    /// rule without any prefix of either family matches both.)
    fn matches_family(&self, rule: &Rule) -> bool {
        // Per side (sources, destinations): (prefixes of this family given,
        // prefixes of the other given).
        let sides = if self.v6 {
            [
                (!rule.src6.is_empty(), !rule.src.is_empty()),
                (!rule.dst6.is_empty(), !rule.dst.is_empty()),
            ]
        } else {
            [
                (!rule.src.is_empty(), !rule.src6.is_empty()),
                (!rule.dst.is_empty(), !rule.dst6.is_empty()),
            ]
        };
        sides.iter().all(|&(own, other)| own || !other)
    }

    fn name(&self) -> &'static str {
        if self.v6 {
            "IPv6"
        } else {
            "IPv4"
        }
    }
}

#[derive(Default)]
struct Script {
    out: String,
}

impl Script {
    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }

    /// A comment line; control characters from the config are neutralised.
    fn comment(&mut self, text: &str) {
        let clean = comment_text(text);
        if clean.is_empty() {
            self.line("#");
        } else {
            self.line(&format!("# {clean}"));
        }
    }

    fn section(&mut self, title: &str) {
        self.blank();
        self.comment(&format!("--- {title}"));
    }
}

/// A word for bash: as is when it is plain, single-quoted otherwise.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The 1-based number of uplink `index`: its mark, and its table's offset.
fn uplink_number(index: usize) -> u32 {
    // Fewer than MAX_UPLINKS (64) uplinks: always fits.
    u32::try_from(index).unwrap_or(u32::MAX - 1) + 1
}

fn uplink_chain(number: u32) -> String {
    format!("XWAN_UPLINK_{number}")
}

fn sticky_chain(number: u32) -> String {
    format!("XWAN_STICKY_{number}")
}

/// The `recent` list of uplink `number`'s sticky sources; the families
/// keep lists of their own.
fn recent_list(family: &Family, number: u32) -> String {
    if family.v6 {
        format!("xwan6_up_{number}")
    } else {
        format!("xwan_up_{number}")
    }
}

fn header(s: &mut Script, config: &Config) {
    s.line("#!/usr/bin/env bash");
    s.comment("Generated by `xwan kernel-script`: the Linux kernel recipe (sysctl, iproute2,");
    s.comment("iptables) for the same policy as the xwan config it was made from.");
    s.comment("Run it as root in the router's network namespace. It owns the mangle, nat and");
    s.comment("filter tables there and flushes them first, so running it again replaces an");
    s.comment("earlier run.");
    s.comment("");
    for (i, wan) in config.wans.iter().enumerate() {
        let n = uplink_number(i);
        s.comment(&format!(
            "uplink {n} = {}: {} address {} gateway {} weight {} priority {} -> mark {n}, table {}",
            wan.name,
            wan.interface,
            wan.address,
            wan.gateway,
            wan.weight,
            wan.priority,
            TABLE_BASE + n
        ));
    }
    s.comment(&format!("drop rules mark connections {DROP_MARK:#x}"));
    s.comment("");
    s.comment("What this static recipe does not do (xwan does):");
    let tier = best_tier(config);
    if let Some(&first) = tier.first() {
        s.comment(&format!(
            "- no health checks: only the best priority tier (priority {}) is balanced,",
            config.wans[first].priority
        ));
        s.comment("  a dead uplink keeps its share, and lower tiers never take over;");
    }
    s.comment("- `strict` on a rule changes nothing: without health checks nothing falls back;");
    s.comment(&format!(
        "- [limits] max_flows ({}) is not applied: nf_conntrack_max is global,",
        config.limits.max_flows
    ));
    s.comment("  not per namespace;");
    s.comment("- the kernel's ip_local_port_range is left alone; SNAT uses [nat] ports.");
    if has_ipv6(config) {
        ipv6::header(s, config);
    }
    s.line("set -euo pipefail");
}

/// `sysctl` key of a per-interface setting; slashes keep dotted names (VLANs) intact.
fn conf_key(interface: &str, setting: &str) -> String {
    if interface.contains('.') {
        format!("net/ipv4/conf/{interface}/{setting}")
    } else {
        format!("net.ipv4.conf.{interface}.{setting}")
    }
}

fn sysctls(s: &mut Script, config: &Config) {
    s.section("Kernel settings");
    s.line("sysctl -qw net.ipv4.ip_forward=1");
    s.comment("Loose reverse-path filter: a reply may arrive on any uplink. The kernel uses");
    s.comment("the larger of `all` and the interface's own value, so set both.");
    s.line("sysctl -qw net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.default.rp_filter=2");
    let mut interfaces = vec![config.lan.interface.as_str()];
    interfaces.extend(config.wans.iter().map(|w| w.interface.as_str()));
    for interface in interfaces {
        s.line(&format!(
            "sysctl -qw {}",
            quote(&format!("{}=2", conf_key(interface, "rp_filter")))
        ));
    }
    s.comment("The reverse-path check sees the mark; kernel-made replies (ICMP, RST) and");
    s.comment("accepted TCP sockets carry the mark of the packet they answer.");
    s.line("sysctl -qw net.ipv4.conf.all.src_valid_mark=1");
    s.line("sysctl -qw net.ipv4.fwmark_reflect=1 net.ipv4.tcp_fwmark_accept=1");
}

fn flush(s: &mut Script) {
    s.section("Start clean: this script owns these tables in this namespace");
    for table in ["mangle", "nat", "filter"] {
        s.line(&format!("iptables -t {table} -F"));
        s.line(&format!("iptables -t {table} -X"));
    }
}

fn routing(s: &mut Script, config: &Config) {
    s.section("Policy routing");
    s.comment("Rule 1000: the main table's specific routes (the LAN, the WAN links) win for");
    s.comment("every packet, marked or not; only its default route is skipped here.");
    delete_rule(s, PRIO_MAIN_SPECIFIC);
    s.line(&format!(
        "ip rule add priority {PRIO_MAIN_SPECIFIC} lookup main suppress_prefixlength 0"
    ));
    for (i, wan) in config.wans.iter().enumerate() {
        let n = uplink_number(i);
        let table = TABLE_BASE + n;
        s.comment(&format!(
            "Uplink {n} ({}): mark {n} and packets from {} use table {table}.",
            wan.name, wan.address
        ));
        s.line(&format!(
            "ip route flush table {table} 2>/dev/null || :  # absent on a first run"
        ));
        s.line(&format!(
            "ip route add default via {} dev {} src {} table {table}",
            wan.gateway,
            quote(&wan.interface),
            wan.address
        ));
        delete_rule(s, PRIO_FWMARK + n);
        s.line(&format!(
            "ip rule add priority {} fwmark {n} table {table}",
            PRIO_FWMARK + n
        ));
        delete_rule(s, PRIO_FROM + n);
        s.line(&format!(
            "ip rule add priority {} from {} table {table}",
            PRIO_FROM + n,
            wan.address
        ));
    }
    if let Some(&first) = best_tier(config).first() {
        let wan = &config.wans[first];
        s.comment(&format!(
            "Unmarked traffic (bypass rules, the router itself) takes uplink {} ({}).",
            uplink_number(first),
            wan.name
        ));
        s.line(&format!(
            "ip route replace default via {} dev {} src {}",
            wan.gateway,
            quote(&wan.interface),
            wan.address
        ));
    }
}

fn delete_rule(s: &mut Script, priority: u32) {
    s.line(&format!(
        "while ip rule del priority {priority} 2>/dev/null; do :; done"
    ));
}

fn mangle(s: &mut Script, config: &Config, family: &Family) {
    let t = family.tables;
    s.section(mangle_title(family));
    s.comment("One chain per uplink sets its mark; classification jumps there with -g, so");
    s.comment("the first matching rule decides and control returns to PREROUTING.");
    for &i in &family.uplinks {
        let n = uplink_number(i);
        let chain = uplink_chain(n);
        s.line(&format!("{t} -t mangle -N {chain}"));
        s.line(&format!(
            "{t} -t mangle -A {chain} -j MARK --set-mark {n}  # {}",
            comment_text(&config.wans[i].name)
        ));
    }
    s.line(&format!("{t} -t mangle -N XWAN_DROP"));
    s.line(&format!(
        "{t} -t mangle -A XWAN_DROP -j MARK --set-mark {DROP_MARK:#x}"
    ));
    s.line(&format!("{t} -t mangle -N XWAN_BALANCE"));
    s.line(&format!("{t} -t mangle -N XWAN_CLASSIFY"));
    balance(s, config, family);
    classify(s, config, family);

    s.blank();
    s.comment("Every packet: restore the connection's mark; a marked one is settled.");
    s.line(&format!(
        "{t} -t mangle -A PREROUTING -j CONNMARK --restore-mark"
    ));
    s.line(&format!(
        "{t} -t mangle -A PREROUTING -m mark ! --mark 0 -j ACCEPT"
    ));
    s.comment("New connections from a WAN (port forwards, the router's own services) are");
    s.comment("marked by the uplink they came in on: their replies leave by the same WAN.");
    for &i in &family.uplinks {
        s.line(&format!(
            "{t} -t mangle -A PREROUTING -i {} -m conntrack --ctstate NEW -j MARK --set-mark {}",
            quote(&config.wans[i].interface),
            uplink_number(i)
        ));
    }
    s.comment("New connections from the LAN through the router go through the rules.");
    // IPv6's UNICAST includes the router's own addresses (IPv4's does not).
    let through = if family.v6 {
        "-m addrtype --dst-type UNICAST -m addrtype ! --dst-type LOCAL"
    } else {
        "-m addrtype --dst-type UNICAST"
    };
    s.line(&format!(
        "{t} -t mangle -A PREROUTING -i {} -m conntrack --ctstate NEW {through} -j XWAN_CLASSIFY",
        quote(&config.lan.interface)
    ));
    s.line(&format!(
        "{t} -t mangle -A PREROUTING -m mark ! --mark 0 -j CONNMARK --save-mark"
    ));
    s.comment("The router's own replies follow their connection's mark too.");
    s.line(&format!(
        "{t} -t mangle -A OUTPUT -j CONNMARK --restore-mark"
    ));
}

fn mangle_title(family: &Family) -> &'static str {
    if family.v6 {
        "IPv6 marking: choose an uplink for each new IPv6 connection, remember it"
    } else {
        "Marking: choose an uplink for each new connection, remember it"
    }
}

/// Config text made safe for a comment: control characters (a newline
/// would end the comment) become `?`.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn classify(s: &mut Script, config: &Config, family: &Family) {
    let t = family.tables;
    s.blank();
    s.comment("The rules, in file order; a connection no rule matches is balanced.");
    for rule in &config.rules {
        let usable = |u: UplinkId| family.carries(usize::from(u));
        let target = match rule.action {
            Action::Uplink(u) if usable(u) => {
                format!("-g {}", uplink_chain(uplink_number(usize::from(u))))
            }
            // An uplink without this family is down for it, for good: as
            // xwan does with a down uplink, balance (or drop if strict).
            Action::Uplink(_) if rule.strict => "-g XWAN_DROP".to_string(),
            Action::Uplink(_) | Action::Balance => "-g XWAN_BALANCE".to_string(),
            Action::Bypass => "-j RETURN".to_string(),
            Action::Drop => "-g XWAN_DROP".to_string(),
        };
        let action = match rule.action {
            Action::Uplink(u) => match config.wans.get(usize::from(u)) {
                Some(wan) if !usable(u) => format!(
                    "uplink {}, which carries no {}: {}",
                    wan.name,
                    family.name(),
                    if rule.strict {
                        "drop (strict)"
                    } else {
                        "balance"
                    }
                ),
                Some(wan) => format!("uplink {}", wan.name),
                None => format!("uplink #{u}"),
            },
            Action::Balance => "balance".to_string(),
            Action::Bypass => "bypass (no mark: the main table routes it)".to_string(),
            Action::Drop => "drop (in filter FORWARD)".to_string(),
        };
        if !family.matches_family(rule) {
            s.comment(&format!(
                "rule {}: (prefixes of the other family only: no {} connection matches)",
                rule.name,
                family.name()
            ));
            continue;
        }
        s.comment(&format!("rule {}: {action}", rule.name));
        let matches = rule_matches(rule, family);
        if matches.is_empty() {
            s.comment("  (ports with a protocol that has none: matches nothing)");
        }
        for m in matches {
            s.line(&format!("{t} -t mangle -A XWAN_CLASSIFY {m}{target}"));
        }
    }
    s.line(&format!("{t} -t mangle -A XWAN_CLASSIFY -g XWAN_BALANCE"));
}

/// The iptables match arguments of a rule: one entry per iptables rule needed
/// (several protocols, more ports than one multiport match holds), each ending
/// in a space. Empty when the rule can match nothing.
fn rule_matches(rule: &Rule, family: &Family) -> Vec<String> {
    let (src, dst) = family.prefixes(rule);
    let mut addresses = String::new();
    if !src.is_empty() {
        let _ = write!(addresses, "-s {} ", src.join(","));
    }
    if !dst.is_empty() {
        let _ = write!(addresses, "-d {} ", dst.join(","));
    }
    let has_ports = !rule.src_port.is_empty() || !rule.dst_port.is_empty();
    let protocols: &[&str] = match (rule.proto, has_ports) {
        (Proto::Tcp, _) => &["tcp"],
        (Proto::Udp, _) => &["udp"],
        (Proto::Icmp, false) => &[family.icmp],
        (Proto::Icmp, true) => &[],
        (Proto::Any, true) => &["tcp", "udp"],
        (Proto::Any, false) => &[""],
    };
    let sports = port_matches(&rule.src_port, "sport");
    let dports = port_matches(&rule.dst_port, "dport");
    let mut out = Vec::new();
    for proto in protocols {
        let p = if proto.is_empty() {
            String::new()
        } else {
            format!("-p {proto} ")
        };
        for sp in &sports {
            for dp in &dports {
                out.push(format!("{p}{addresses}{sp}{dp}"));
            }
        }
    }
    out
}

/// Port match arguments (`--dport 443 `, or multiport lists of at most 15
/// ports, a range counting two); one empty entry when there are no ports.
fn port_matches(ranges: &[PortRange], dir: &str) -> Vec<String> {
    let spell = |r: &PortRange| {
        if r.lo == r.hi {
            r.lo.to_string()
        } else {
            format!("{}:{}", r.lo, r.hi)
        }
    };
    match ranges {
        [] => vec![String::new()],
        [one] => vec![format!("--{dir} {} ", spell(one))],
        _ => {
            let mut chunks: Vec<Vec<String>> = vec![Vec::new()];
            let mut cost = 0;
            for r in ranges {
                let c = if r.lo == r.hi { 1 } else { 2 };
                if cost + c > 15 {
                    chunks.push(Vec::new());
                    cost = 0;
                }
                cost += c;
                if let Some(last) = chunks.last_mut() {
                    last.push(spell(r));
                }
            }
            chunks
                .iter()
                .map(|c| format!("-m multiport --{dir}s {} ", c.join(",")))
                .collect()
        }
    }
}

fn filter(s: &mut Script, config: &Config) {
    s.section("Filtering");
    s.comment("Connections a drop rule matched.");
    s.line(&format!(
        "iptables -A FORWARD -m mark --mark {DROP_MARK:#x} -j DROP"
    ));
    s.comment("Like any NAT router: from a WAN, only port-forwarded new connections pass.");
    for wan in &config.wans {
        s.line(&format!(
            "iptables -A FORWARD -i {} -m conntrack --ctstate NEW -m conntrack ! --ctstate DNAT -j DROP",
            quote(&wan.interface)
        ));
    }
}

fn nat(s: &mut Script, config: &Config) {
    s.section("Source NAT: LAN sources take the address of the uplink they leave by");
    let ports = config.nat.ports;
    s.comment(&format!(
        "TCP and UDP source ports from [nat] ports {}-{}; other protocols address only.",
        ports.lo, ports.hi
    ));
    for wan in &config.wans {
        snat(s, config, wan);
    }
    port_forwards(s, config);
}

fn snat(s: &mut Script, config: &Config, wan: &Wan) {
    let ports = config.nat.ports;
    let out = quote(&wan.interface);
    for net in &config.lan.networks {
        for proto in ["tcp", "udp"] {
            s.line(&format!(
                "iptables -t nat -A POSTROUTING -o {out} -s {net} -p {proto} -j SNAT --to-source {}:{}-{}",
                wan.address, ports.lo, ports.hi
            ));
        }
        s.line(&format!(
            "iptables -t nat -A POSTROUTING -o {out} -s {net} -j SNAT --to-source {}",
            wan.address
        ));
    }
}

fn port_forwards(s: &mut Script, config: &Config) {
    if config.forwards.is_empty() {
        return;
    }
    s.section(
        "Port forwards (their replies leave by the WAN they came in on: see marking); \
         from the LAN too (hairpinning: SNAT to the WAN address, so the target answers through the router)",
    );
    let lan = quote(&config.lan.interface);
    for fwd in &config.forwards {
        let proto = match fwd.proto {
            Proto::Udp => "udp",
            _ => "tcp",
        };
        for &u in &fwd.wans {
            let Some(wan) = config.wans.get(usize::from(u)) else {
                continue;
            };
            for ingress in [quote(&wan.interface), lan.clone()] {
                s.line(&format!(
                    "iptables -t nat -A PREROUTING -i {ingress} -d {} -p {proto} --dport {} -j DNAT --to-destination {}:{}",
                    wan.address, fwd.port, fwd.to_addr, fwd.to_port
                ));
            }
            for net in &config.lan.networks {
                s.line(&format!(
                    "iptables -t nat -A POSTROUTING -o {lan} -s {net} -d {} -p {proto} --dport {} \
                     -m conntrack --ctstate DNAT --ctorigdst {} -j SNAT --to-source {}",
                    fwd.to_addr, fwd.to_port, wan.address, wan.address
                ));
            }
        }
    }
}

fn conntrack(s: &mut Script, config: &Config) {
    let t = &config.timeouts;
    s.section("Connection tracking timeouts from [timeouts] (conntrack is loaded by now)");
    s.line(&format!(
        "sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established={}",
        t.tcp_established_s
    ));
    s.line(&format!(
        "sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_syn_sent={0} net.netfilter.nf_conntrack_tcp_timeout_syn_recv={0}",
        t.tcp_transitory_s
    ));
    s.line(&format!(
        "sysctl -qw net.netfilter.nf_conntrack_udp_timeout={0} net.netfilter.nf_conntrack_udp_timeout_stream={0}",
        t.udp_s
    ));
    s.line(&format!(
        "sysctl -qw net.netfilter.nf_conntrack_icmp_timeout={}",
        t.icmp_s
    ));
}

#[cfg(test)]
mod tests;

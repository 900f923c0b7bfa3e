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

use std::fmt::Write as _;

use crate::config::{Action, BalanceMode, Config, PortRange, Proto, Rule, Sticky, Wan};

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
    mangle(&mut s, config);
    filter(&mut s, config);
    nat(&mut s, config);
    conntrack(&mut s, config);
    s.out
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

fn recent_list(number: u32) -> String {
    format!("xwan_up_{number}")
}

/// The uplinks balancing uses: those of the best (lowest) priority, in file order.
fn best_tier(config: &Config) -> Vec<usize> {
    let Some(best) = config.wans.iter().map(|w| w.priority).min() else {
        return Vec::new();
    };
    (0..config.wans.len())
        .filter(|&i| config.wans[i].priority == best)
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights divided by their greatest common divisor (a zero weight counts as 1).
fn reduced_weights(weights: &[u32]) -> Vec<u32> {
    let weights: Vec<u32> = weights.iter().map(|&w| w.max(1)).collect();
    let g = weights.iter().copied().fold(0, gcd).max(1);
    weights.iter().map(|w| w / g).collect()
}

/// One period of smooth weighted round robin: `sum(weights)` slots, each the
/// index of the weight that takes it. Every index appears exactly `weight`
/// times and the heavier ones are spread out (2:1 gives 0, 1, 0).
fn nth_slots(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut slots = Vec::new();
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let Some(best) = (0..weights.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
        else {
            break;
        };
        current[best] -= total;
        slots.push(best);
    }
    slots
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

fn mangle(s: &mut Script, config: &Config) {
    s.section("Marking: choose an uplink for each new connection, remember it");
    s.comment("One chain per uplink sets its mark; classification jumps there with -g, so");
    s.comment("the first matching rule decides and control returns to PREROUTING.");
    for (i, wan) in config.wans.iter().enumerate() {
        let n = uplink_number(i);
        let chain = uplink_chain(n);
        s.line(&format!("iptables -t mangle -N {chain}"));
        s.line(&format!(
            "iptables -t mangle -A {chain} -j MARK --set-mark {n}  # {}",
            comment_text(&wan.name)
        ));
    }
    s.line("iptables -t mangle -N XWAN_DROP");
    s.line(&format!(
        "iptables -t mangle -A XWAN_DROP -j MARK --set-mark {DROP_MARK:#x}"
    ));
    s.line("iptables -t mangle -N XWAN_BALANCE");
    s.line("iptables -t mangle -N XWAN_CLASSIFY");
    balance(s, config);
    classify(s, config);

    s.blank();
    s.comment("Every packet: restore the connection's mark; a marked one is settled.");
    s.line("iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark");
    s.line("iptables -t mangle -A PREROUTING -m mark ! --mark 0 -j ACCEPT");
    s.comment("New connections from a WAN (port forwards, the router's own services) are");
    s.comment("marked by the uplink they came in on: their replies leave by the same WAN.");
    for (i, wan) in config.wans.iter().enumerate() {
        s.line(&format!(
            "iptables -t mangle -A PREROUTING -i {} -m conntrack --ctstate NEW -j MARK --set-mark {}",
            quote(&wan.interface),
            uplink_number(i)
        ));
    }
    s.comment("New connections from the LAN through the router go through the rules.");
    s.line(&format!(
        "iptables -t mangle -A PREROUTING -i {} -m conntrack --ctstate NEW -m addrtype --dst-type UNICAST -j XWAN_CLASSIFY",
        quote(&config.lan.interface)
    ));
    s.line("iptables -t mangle -A PREROUTING -m mark ! --mark 0 -j CONNMARK --save-mark");
    s.comment("The router's own replies follow their connection's mark too.");
    s.line("iptables -t mangle -A OUTPUT -j CONNMARK --restore-mark");
}

/// Config text made safe for a comment: control characters (a newline
/// would end the comment) become `?`.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn classify(s: &mut Script, config: &Config) {
    s.blank();
    s.comment("The rules, in file order; a connection no rule matches is balanced.");
    for rule in &config.rules {
        let target = match rule.action {
            Action::Uplink(u) => format!("-g {}", uplink_chain(uplink_number(usize::from(u)))),
            Action::Balance => "-g XWAN_BALANCE".to_string(),
            Action::Bypass => "-j RETURN".to_string(),
            Action::Drop => "-g XWAN_DROP".to_string(),
        };
        let action = match rule.action {
            Action::Uplink(u) => match config.wans.get(usize::from(u)) {
                Some(wan) => format!("uplink {}", wan.name),
                None => format!("uplink #{u}"),
            },
            Action::Balance => "balance".to_string(),
            Action::Bypass => "bypass (no mark: the main table routes it)".to_string(),
            Action::Drop => "drop (in filter FORWARD)".to_string(),
        };
        s.comment(&format!("rule {}: {action}", rule.name));
        let matches = rule_matches(rule);
        if matches.is_empty() {
            s.comment("  (ports with a protocol that has none: matches nothing)");
        }
        for m in matches {
            s.line(&format!("iptables -t mangle -A XWAN_CLASSIFY {m}{target}"));
        }
    }
    s.line("iptables -t mangle -A XWAN_CLASSIFY -g XWAN_BALANCE");
}

/// The iptables match arguments of a rule: one entry per iptables rule needed
/// (several protocols, more ports than one multiport match holds), each ending
/// in a space. Empty when the rule can match nothing.
fn rule_matches(rule: &Rule) -> Vec<String> {
    let mut addresses = String::new();
    if !rule.src.is_empty() {
        let list: Vec<String> = rule.src.iter().map(|n| n.to_string()).collect();
        let _ = write!(addresses, "-s {} ", list.join(","));
    }
    if !rule.dst.is_empty() {
        let list: Vec<String> = rule.dst.iter().map(|n| n.to_string()).collect();
        let _ = write!(addresses, "-d {} ", list.join(","));
    }
    let has_ports = !rule.src_port.is_empty() || !rule.dst_port.is_empty();
    let protocols: &[&str] = match (rule.proto, has_ports) {
        (Proto::Tcp, _) => &["tcp"],
        (Proto::Udp, _) => &["udp"],
        (Proto::Icmp, false) => &["icmp"],
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

fn balance(s: &mut Script, config: &Config) {
    let tier = best_tier(config);
    let weights: Vec<u32> = tier.iter().map(|&i| config.wans[i].weight).collect();
    let weights = reduced_weights(&weights);
    let sticky_src =
        config.balance.sticky == Sticky::Src && config.balance.mode != BalanceMode::Hash;
    let names: Vec<String> = tier
        .iter()
        .zip(&weights)
        .map(|(&i, w)| format!("{} x{w}", config.wans[i].name))
        .collect();
    s.blank();
    s.comment(&format!(
        "Balancing over the best tier: {}",
        names.join(", ")
    ));
    if sticky_src {
        sticky_checks(s, config, &tier);
    }
    if config.balance.sticky == Sticky::SrcDst && config.balance.mode != BalanceMode::Hash {
        s.comment("sticky = src+dst is not supported by this recipe with nth or random");
        s.comment("balancing (-m recent keys on one address): connections are balanced alone.");
    }
    // The chain a balanced connection goes to for tier member `k`.
    let target = |k: usize| {
        let n = uplink_number(tier[k]);
        if sticky_src {
            sticky_chain(n)
        } else {
            uplink_chain(n)
        }
    };
    if tier.len() == 1 {
        s.line(&format!(
            "iptables -t mangle -A XWAN_BALANCE -g {}",
            target(0)
        ));
        return;
    }
    match config.balance.mode {
        BalanceMode::Nth => {
            let slots = nth_slots(&weights);
            let total = slots.len();
            s.comment("nth: new connection number c takes slot c mod W of the smooth weighted");
            s.comment("round-robin order. The rules form a cascade: rule j sees only the W - j");
            s.comment("connections of each period that earlier rules left, and takes the first.");
            s.comment("Each statistic rule counts exactly the packets reaching it, so the shares");
            s.comment("are exact (per W connections, each uplink gets its weight), even when");
            s.comment("packets race on several CPUs.");
            for (j, &k) in slots.iter().enumerate() {
                let every = total - j;
                if every == 1 {
                    s.line(&format!(
                        "iptables -t mangle -A XWAN_BALANCE -g {}",
                        target(k)
                    ));
                } else {
                    s.line(&format!(
                        "iptables -t mangle -A XWAN_BALANCE -m statistic --mode nth --every {every} --packet 0 -g {}",
                        target(k)
                    ));
                }
            }
        }
        BalanceMode::Random => {
            s.comment("random: uplink k is taken with probability w_k / (w_k + ... + w_last)");
            s.comment("among the connections earlier rules left: overall w_k / W.");
            let mut remaining: u32 = weights.iter().sum();
            for (k, &w) in weights.iter().enumerate() {
                if k + 1 == weights.len() {
                    s.line(&format!(
                        "iptables -t mangle -A XWAN_BALANCE -g {}",
                        target(k)
                    ));
                } else {
                    let p = f64::from(w) / f64::from(remaining);
                    s.line(&format!(
                        "iptables -t mangle -A XWAN_BALANCE -m statistic --mode random --probability {p:.10} -g {}",
                        target(k)
                    ));
                }
                remaining -= w;
            }
        }
        BalanceMode::Hash => {
            let total: u32 = weights.iter().sum();
            let tuple = match config.balance.sticky {
                Sticky::None => "src,dst,sport,dport,proto",
                Sticky::Src => "src",
                Sticky::SrcDst => "src,dst",
            };
            s.comment(&format!(
                "hash: HMARK hashes ({tuple}) into W = {total} slots (mark {HASH_MARK_BASE:#x} + slot); each"
            ));
            s.comment("uplink owns as many slots as its weight. The seed is fixed: the same key");
            s.comment("always takes the same uplink, across reloads too.");
            s.line(&format!(
                "iptables -t mangle -A XWAN_BALANCE -j HMARK --hmark-tuple {tuple} --hmark-mod {total} --hmark-offset {HASH_MARK_BASE:#x} --hmark-rnd {HASH_SEED:#x}"
            ));
            let mut slot = HASH_MARK_BASE;
            for (k, &w) in weights.iter().enumerate() {
                for _ in 0..w {
                    s.line(&format!(
                        "iptables -t mangle -A XWAN_BALANCE -m mark --mark {slot:#x} -g {}",
                        target(k)
                    ));
                    slot += 1;
                }
            }
        }
    }
}

/// sticky = src with nth / random: one `recent` list per uplink remembers the
/// sources recently balanced onto it.
fn sticky_checks(s: &mut Script, config: &Config, tier: &[usize]) {
    let seconds = config.balance.sticky_timeout_s;
    s.comment("sticky = src, approximated with -m recent: a source balanced onto an uplink in the");
    s.comment(&format!(
        "last {seconds} s (counted from its last new connection, not its last packet) goes"
    ));
    s.comment("there again. Each list holds the kernel's ip_list_tot sources (100 unless the");
    s.comment("xt_recent module parameter says otherwise); older ones are forgotten.");
    for &i in tier {
        let n = uplink_number(i);
        let chain = sticky_chain(n);
        s.line(&format!("iptables -t mangle -N {chain}"));
        s.line(&format!(
            "iptables -t mangle -A {chain} -m recent --name {} --rsource --set",
            recent_list(n)
        ));
        s.line(&format!(
            "iptables -t mangle -A {chain} -g {}",
            uplink_chain(n)
        ));
    }
    for &i in tier {
        let n = uplink_number(i);
        s.line(&format!(
            "iptables -t mangle -A XWAN_BALANCE -m recent --name {} --rsource --update --seconds {seconds} -g {}",
            recent_list(n),
            uplink_chain(n)
        ));
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
    s.section("Port forwards (their replies leave by the WAN they came in on: see marking)");
    for fwd in &config.forwards {
        let proto = match fwd.proto {
            Proto::Udp => "udp",
            _ => "tcp",
        };
        for &u in &fwd.wans {
            let Some(wan) = config.wans.get(usize::from(u)) else {
                continue;
            };
            s.line(&format!(
                "iptables -t nat -A PREROUTING -i {} -d {} -p {proto} --dport {} -j DNAT --to-destination {}:{}",
                quote(&wan.interface),
                wan.address,
                fwd.port,
                fwd.to_addr,
                fwd.to_port
            ));
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
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use super::*;
    use crate::config::{
        Balance, Control, Forward, Health, Lan, Limits, MssClamp, Nat, PortRange, Timeouts,
    };

    fn wan(n: u8, weight: u32, priority: u32) -> Wan {
        Wan {
            name: format!("isp{n}"),
            interface: format!("wan{n}"),
            address: Ipv4Addr::new(198, 18, n, 2),
            gateway: Ipv4Addr::new(198, 18, n, 1),
            weight,
            priority,
            probe: vec![Ipv4Addr::new(203, 0, 113, 10)],
            mtu: 1500,
        }
    }

    fn rule(name: &str, proto: Proto, action: Action) -> Rule {
        Rule {
            name: name.to_string(),
            proto,
            src: Vec::new(),
            dst: Vec::new(),
            src_port: Vec::new(),
            dst_port: Vec::new(),
            action,
            strict: false,
        }
    }

    fn ports(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    /// The testbed's config: two equal uplinks, HTTPS pinned to isp2, and
    /// TCP 8080 forwarded to 192.168.50.10:80 on both WANs.
    fn example_config() -> Config {
        let mut https = rule("https-via-isp2", Proto::Tcp, Action::Uplink(1));
        https.dst_port = vec![ports(443, 443)];
        Config {
            lan: Lan {
                interface: "lan0".to_string(),
                networks: vec!["192.168.50.0/24".parse().unwrap()],
                address: None,
                mtu: 1500,
            },
            wans: vec![wan(1, 1, 1), wan(2, 1, 1)],
            balance: Balance {
                mode: BalanceMode::Nth,
                sticky: Sticky::None,
                sticky_timeout_s: 600,
            },
            rules: vec![https],
            forwards: vec![Forward {
                proto: Proto::Tcp,
                port: 8080,
                to_addr: Ipv4Addr::new(192, 168, 50, 10),
                to_port: 80,
                wans: vec![0, 1],
            }],
            nat: Nat {
                ports: ports(1024, 65535),
                mss_clamp: MssClamp::Off,
            },
            health: Health {
                interval_ms: 1000,
                timeout_ms: 500,
                down_after: 3,
                up_after: 3,
                reliability: 1,
                hook: None,
            },
            timeouts: Timeouts {
                tcp_established_s: 7440,
                tcp_transitory_s: 240,
                udp_s: 300,
                icmp_s: 60,
            },
            limits: Limits {
                max_flows: 65536,
                max_flows_per_host: 0,
            },
            control: Control {
                socket: PathBuf::from("/run/xwan.sock"),
                metrics: None,
                group: None,
            },
        }
    }

    fn with_weights(weights: &[u32]) -> Config {
        let mut c = example_config();
        c.wans = (1..).zip(weights).map(|(n, &w)| wan(n, w, 1)).collect();
        c
    }

    fn lines(script: &str) -> Vec<&str> {
        script.lines().collect()
    }

    fn has_line(script: &str, line: &str) -> bool {
        script.lines().any(|l| l == line)
    }

    fn position(script: &str, line: &str) -> usize {
        lines(script)
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("missing line: {line}\n{script}"))
    }

    /// The XWAN_BALANCE rules, as (every, target) with every = 1 for the
    /// unconditional last one.
    fn nth_cascade(script: &str) -> Vec<(usize, String)> {
        script
            .lines()
            .filter_map(|l| l.strip_prefix("iptables -t mangle -A XWAN_BALANCE "))
            .map(|rest| {
                let target = rest.rsplit(' ').next().unwrap().to_string();
                let every = match rest.split_once("--every ") {
                    Some((_, tail)) => {
                        let (n, tail) = tail.split_once(' ').unwrap();
                        assert!(tail.starts_with("--packet 0 "), "{rest}");
                        n.parse().unwrap()
                    }
                    None => 1,
                };
                (every, target)
            })
            .collect()
    }

    /// The uplink chains `connections` successive new connections reach,
    /// under the kernel's xt_statistic nth semantics: each rule counts the
    /// packets that reach it, and `--every n --packet p` matches the k-th
    /// (0-based) of them when k mod n == p.
    fn simulate_nth(cascade: &[(usize, String)], connections: usize) -> Vec<String> {
        let mut counters = vec![0usize; cascade.len()];
        (0..connections)
            .map(|_| {
                for (j, (every, target)) in cascade.iter().enumerate() {
                    let k = counters[j];
                    counters[j] += 1;
                    if k % every == 0 {
                        return target.clone();
                    }
                }
                panic!("a connection fell through the cascade");
            })
            .collect()
    }

    fn count(taken: &[String], chain: &str) -> usize {
        taken.iter().filter(|t| *t == chain).count()
    }

    #[test]
    fn example_routes_each_uplink_by_its_own_table() {
        let s = render(&example_config());
        for n in 1..=2 {
            assert!(has_line(
                &s,
                &format!("ip route add default via 198.18.{n}.1 dev wan{n} src 198.18.{n}.2 table 10{n}")
            ), "{s}");
            assert!(has_line(
                &s,
                &format!("ip rule add priority 110{n} fwmark {n} table 10{n}")
            ));
            assert!(has_line(
                &s,
                &format!("ip rule add priority 120{n} from 198.18.{n}.2 table 10{n}")
            ));
            assert!(has_line(
                &s,
                &format!("ip route flush table 10{n} 2>/dev/null || :  # absent on a first run")
            ));
        }
        assert!(has_line(
            &s,
            "ip rule add priority 1000 lookup main suppress_prefixlength 0"
        ));
        assert!(has_line(
            &s,
            "ip route replace default via 198.18.1.1 dev wan1 src 198.18.1.2"
        ));
    }

    /// testbed/configs/example.toml, through the real parser.
    #[test]
    fn testbed_example_file_renders_its_uplinks_and_forwards() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testbed/configs/example.toml");
        let config =
            Config::load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let s = render(&config);
        let ports = config.nat.ports;
        for (i, wan) in config.wans.iter().enumerate() {
            let n = i + 1;
            let dev = &wan.interface;
            assert!(has_line(
                &s,
                &format!(
                    "ip route add default via {} dev {dev} src {} table 10{n}",
                    wan.gateway, wan.address
                )
            ));
            assert!(has_line(
                &s,
                &format!("ip rule add priority 110{n} fwmark {n} table 10{n}")
            ));
            assert!(has_line(&s, &format!(
                "iptables -t nat -A POSTROUTING -o {dev} -s 192.168.50.0/24 -p tcp -j SNAT --to-source {}:{}-{}",
                wan.address, ports.lo, ports.hi
            )));
        }
        for fwd in &config.forwards {
            for &u in &fwd.wans {
                let wan = &config.wans[usize::from(u)];
                let proto = if fwd.proto == Proto::Udp {
                    "udp"
                } else {
                    "tcp"
                };
                assert!(has_line(&s, &format!(
                    "iptables -t nat -A PREROUTING -i {} -d {} -p {proto} --dport {} -j DNAT --to-destination {}:{}",
                    wan.interface, wan.address, fwd.port, fwd.to_addr, fwd.to_port
                )));
            }
        }
        assert_eq!(
            s.matches("-j DNAT").count(),
            config.forwards.iter().map(|f| f.wans.len()).sum::<usize>()
        );
    }

    #[test]
    fn example_sets_the_sysctls_marks_need() {
        let s = render(&example_config());
        for line in [
            "sysctl -qw net.ipv4.ip_forward=1",
            "sysctl -qw net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.default.rp_filter=2",
            "sysctl -qw net.ipv4.conf.wan2.rp_filter=2",
            "sysctl -qw net.ipv4.conf.all.src_valid_mark=1",
            "sysctl -qw net.ipv4.fwmark_reflect=1 net.ipv4.tcp_fwmark_accept=1",
        ] {
            assert!(has_line(&s, line), "missing {line}");
        }
        assert!(s
            .lines()
            .all(|l| l.starts_with('#') || !l.contains("ip_local_port_range")));
    }

    #[test]
    fn example_snats_each_uplink_to_its_address() {
        let s = render(&example_config());
        for n in 1..=2 {
            for proto in ["tcp", "udp"] {
                assert!(has_line(&s, &format!(
                    "iptables -t nat -A POSTROUTING -o wan{n} -s 192.168.50.0/24 -p {proto} -j SNAT --to-source 198.18.{n}.2:1024-65535"
                )));
            }
            assert!(has_line(&s, &format!(
                "iptables -t nat -A POSTROUTING -o wan{n} -s 192.168.50.0/24 -j SNAT --to-source 198.18.{n}.2"
            )));
        }
    }

    #[test]
    fn example_forwards_on_each_listed_wan_and_marks_by_ingress() {
        let s = render(&example_config());
        for n in 1..=2 {
            assert!(has_line(&s, &format!(
                "iptables -t nat -A PREROUTING -i wan{n} -d 198.18.{n}.2 -p tcp --dport 8080 -j DNAT --to-destination 192.168.50.10:80"
            )));
            assert!(has_line(&s, &format!(
                "iptables -t mangle -A PREROUTING -i wan{n} -m conntrack --ctstate NEW -j MARK --set-mark {n}"
            )));
        }

        let mut only_isp2 = example_config();
        only_isp2.forwards[0].wans = vec![1];
        let s = render(&only_isp2);
        assert_eq!(s.matches("-j DNAT").count(), 1);
        assert!(s.contains("-i wan2 -d 198.18.2.2 -p tcp --dport 8080 -j DNAT"));
    }

    #[test]
    fn marks_are_restored_first_and_saved_last() {
        let s = render(&example_config());
        let restore = position(
            &s,
            "iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark",
        );
        let settled = position(
            &s,
            "iptables -t mangle -A PREROUTING -m mark ! --mark 0 -j ACCEPT",
        );
        let classify = position(&s, "iptables -t mangle -A PREROUTING -i lan0 -m conntrack --ctstate NEW -m addrtype --dst-type UNICAST -j XWAN_CLASSIFY");
        let save = position(
            &s,
            "iptables -t mangle -A PREROUTING -m mark ! --mark 0 -j CONNMARK --save-mark",
        );
        assert!(restore < settled && settled < classify && classify < save);
        assert!(has_line(
            &s,
            "iptables -t mangle -A OUTPUT -j CONNMARK --restore-mark"
        ));
        let flush = position(&s, "iptables -t mangle -F");
        assert!(flush < restore);
    }

    #[test]
    fn rules_keep_file_order_and_unmatched_connections_are_balanced() {
        let mut c = example_config();
        let mut lan = rule("local", Proto::Any, Action::Bypass);
        lan.dst = vec![
            "10.0.0.0/8".parse().unwrap(),
            "172.16.0.0/12".parse().unwrap(),
        ];
        let mut blocked = rule("no-smb", Proto::Tcp, Action::Drop);
        blocked.dst_port = vec![ports(445, 445), ports(137, 139)];
        let mut dns = rule("dns", Proto::Any, Action::Uplink(0));
        dns.dst_port = vec![ports(53, 53)];
        dns.src = vec!["192.168.50.0/25".parse().unwrap()];
        c.rules.extend([lan, blocked, dns]);
        let s = render(&c);
        let expected = [
            "iptables -t mangle -A XWAN_CLASSIFY -p tcp --dport 443 -g XWAN_UPLINK_2",
            "iptables -t mangle -A XWAN_CLASSIFY -d 10.0.0.0/8,172.16.0.0/12 -j RETURN",
            "iptables -t mangle -A XWAN_CLASSIFY -p tcp -m multiport --dports 445,137:139 -g XWAN_DROP",
            "iptables -t mangle -A XWAN_CLASSIFY -p tcp -s 192.168.50.0/25 --dport 53 -g XWAN_UPLINK_1",
            "iptables -t mangle -A XWAN_CLASSIFY -p udp -s 192.168.50.0/25 --dport 53 -g XWAN_UPLINK_1",
            "iptables -t mangle -A XWAN_CLASSIFY -g XWAN_BALANCE",
        ];
        let classify: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("iptables -t mangle -A XWAN_CLASSIFY"))
            .collect();
        assert_eq!(classify, expected);
        assert!(has_line(
            &s,
            "iptables -A FORWARD -m mark --mark 0x100 -j DROP"
        ));
        assert!(has_line(
            &s,
            "iptables -t mangle -A XWAN_DROP -j MARK --set-mark 0x100"
        ));
    }

    #[test]
    fn long_port_lists_are_split_into_multiport_matches() {
        let mut c = example_config();
        let mut many = rule("many", Proto::Udp, Action::Uplink(1));
        many.dst_port = (1..=10).map(|p| ports(p * 100, p * 100 + 1)).collect();
        c.rules = vec![many];
        let s = render(&c);
        let classify: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("iptables -t mangle -A XWAN_CLASSIFY -p udp"))
            .collect();
        assert_eq!(
            classify.len(),
            2,
            "10 ranges count 20 ports: two matches\n{s}"
        );
        assert!(classify[0]
            .contains("--dports 100:101,200:201,300:301,400:401,500:501,600:601,700:701 "));
        assert!(classify[1].contains("--dports 800:801,900:901,1000:1001 "));
    }

    #[test]
    fn icmp_with_ports_matches_nothing() {
        let mut c = example_config();
        let mut odd = rule("odd", Proto::Icmp, Action::Uplink(1));
        odd.dst_port = vec![ports(1, 1)];
        c.rules = vec![odd];
        let s = render(&c);
        assert!(s.contains("matches nothing"));
        assert!(!s.contains("-p icmp"));
    }

    #[test]
    fn nth_equal_weights_alternate() {
        let s = render(&example_config());
        assert_eq!(
            nth_cascade(&s),
            [
                (2, "XWAN_UPLINK_1".to_string()),
                (1, "XWAN_UPLINK_2".to_string())
            ]
        );
        assert!(has_line(&s, "iptables -t mangle -A XWAN_BALANCE -m statistic --mode nth --every 2 --packet 0 -g XWAN_UPLINK_1"));
        assert!(has_line(
            &s,
            "iptables -t mangle -A XWAN_BALANCE -g XWAN_UPLINK_2"
        ));
        let taken = simulate_nth(&nth_cascade(&s), 60);
        assert_eq!(count(&taken, "XWAN_UPLINK_1"), 30);
        assert_eq!(count(&taken, "XWAN_UPLINK_2"), 30);
    }

    #[test]
    fn nth_two_to_one_gives_exactly_two_to_one() {
        let s = render(&with_weights(&[2, 1]));
        assert_eq!(
            nth_cascade(&s),
            [
                (3, "XWAN_UPLINK_1".to_string()),
                (2, "XWAN_UPLINK_2".to_string()),
                (1, "XWAN_UPLINK_1".to_string()),
            ]
        );
        let taken = simulate_nth(&nth_cascade(&s), 60);
        assert_eq!(count(&taken, "XWAN_UPLINK_1"), 40);
        assert_eq!(count(&taken, "XWAN_UPLINK_2"), 20);
        // Exact within every period, in smooth round-robin order.
        for period in taken.chunks(3) {
            assert_eq!(period, ["XWAN_UPLINK_1", "XWAN_UPLINK_2", "XWAN_UPLINK_1"]);
        }
    }

    #[test]
    fn nth_shares_are_exact_for_any_weights() {
        for weights in [
            vec![1, 1],
            vec![3, 2, 1],
            vec![5, 3],
            vec![4, 6],
            vec![7, 1, 1, 3],
        ] {
            let s = render(&with_weights(&weights));
            let reduced = reduced_weights(&weights);
            let total: u32 = reduced.iter().sum();
            let periods = 7;
            let taken = simulate_nth(&nth_cascade(&s), (total * periods) as usize);
            for (i, w) in reduced.iter().enumerate() {
                let chain = format!("XWAN_UPLINK_{}", i + 1);
                assert_eq!(
                    count(&taken, &chain),
                    (w * periods) as usize,
                    "{weights:?} {chain}"
                );
            }
        }
    }

    #[test]
    fn smooth_round_robin_spreads_heavy_uplinks() {
        assert_eq!(nth_slots(&[2, 1]), [0, 1, 0]);
        assert_eq!(nth_slots(&[1, 1]), [0, 1]);
        assert_eq!(nth_slots(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(reduced_weights(&[4, 6]), [2, 3]);
    }

    #[test]
    fn only_the_best_priority_tier_is_balanced() {
        let mut c = example_config();
        c.wans = vec![wan(1, 1, 2), wan(2, 3, 1), wan(3, 1, 1)];
        let s = render(&c);
        let cascade = nth_cascade(&s);
        assert!(cascade.iter().all(|(_, t)| t != "XWAN_UPLINK_1"), "{s}");
        let taken = simulate_nth(&cascade, 40);
        assert_eq!(count(&taken, "XWAN_UPLINK_2"), 30);
        assert_eq!(count(&taken, "XWAN_UPLINK_3"), 10);
        assert!(has_line(
            &s,
            "ip route replace default via 198.18.2.1 dev wan2 src 198.18.2.2"
        ));
        assert!(s.contains("only the best priority tier (priority 1) is balanced"));
    }

    #[test]
    fn a_single_best_uplink_takes_every_balanced_connection() {
        let mut c = example_config();
        c.wans = vec![wan(1, 1, 1), wan(2, 1, 5)];
        let s = render(&c);
        let balance: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("iptables -t mangle -A XWAN_BALANCE"))
            .collect();
        assert_eq!(
            balance,
            ["iptables -t mangle -A XWAN_BALANCE -g XWAN_UPLINK_1"]
        );
    }

    #[test]
    fn random_probabilities_chain_to_the_weights() {
        let mut c = with_weights(&[2, 1, 1]);
        c.balance.mode = BalanceMode::Random;
        let s = render(&c);
        let balance: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("iptables -t mangle -A XWAN_BALANCE"))
            .collect();
        assert_eq!(balance, [
            "iptables -t mangle -A XWAN_BALANCE -m statistic --mode random --probability 0.5000000000 -g XWAN_UPLINK_1",
            "iptables -t mangle -A XWAN_BALANCE -m statistic --mode random --probability 0.5000000000 -g XWAN_UPLINK_2",
            "iptables -t mangle -A XWAN_BALANCE -g XWAN_UPLINK_3",
        ]);
    }

    #[test]
    fn hash_maps_every_slot_to_an_uplink_by_weight() {
        let mut c = with_weights(&[2, 1]);
        c.balance.mode = BalanceMode::Hash;
        c.balance.sticky = Sticky::SrcDst;
        let s = render(&c);
        let balance: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("iptables -t mangle -A XWAN_BALANCE"))
            .collect();
        assert_eq!(balance, [
            "iptables -t mangle -A XWAN_BALANCE -j HMARK --hmark-tuple src,dst --hmark-mod 3 --hmark-offset 0x10000 --hmark-rnd 0x7877616e",
            "iptables -t mangle -A XWAN_BALANCE -m mark --mark 0x10000 -g XWAN_UPLINK_1",
            "iptables -t mangle -A XWAN_BALANCE -m mark --mark 0x10001 -g XWAN_UPLINK_1",
            "iptables -t mangle -A XWAN_BALANCE -m mark --mark 0x10002 -g XWAN_UPLINK_2",
        ]);
        c.balance.sticky = Sticky::Src;
        assert!(render(&c).contains("--hmark-tuple src --hmark-mod 3"));
        c.balance.sticky = Sticky::None;
        assert!(render(&c).contains("--hmark-tuple src,dst,sport,dport,proto "));
    }

    #[test]
    fn sticky_source_checks_recent_lists_before_balancing() {
        let mut c = example_config();
        c.balance.sticky = Sticky::Src;
        c.balance.sticky_timeout_s = 900;
        let s = render(&c);
        let check = position(&s, "iptables -t mangle -A XWAN_BALANCE -m recent --name xwan_up_2 --rsource --update --seconds 900 -g XWAN_UPLINK_2");
        let nth = position(&s, "iptables -t mangle -A XWAN_BALANCE -m statistic --mode nth --every 2 --packet 0 -g XWAN_STICKY_1");
        assert!(check < nth);
        assert!(has_line(
            &s,
            "iptables -t mangle -A XWAN_STICKY_1 -m recent --name xwan_up_1 --rsource --set"
        ));
        assert!(has_line(
            &s,
            "iptables -t mangle -A XWAN_STICKY_1 -g XWAN_UPLINK_1"
        ));

        c.balance.sticky = Sticky::SrcDst;
        let s = render(&c);
        assert!(s.contains("sticky = src+dst is not supported"));
        assert!(s
            .lines()
            .all(|l| l.starts_with('#') || !l.contains("-m recent")));
    }

    #[test]
    fn config_text_cannot_escape_comments_or_words() {
        let mut c = example_config();
        c.wans[0].name = "evil\ntouch /tmp/pwned".to_string();
        c.wans[1].interface = "w an'2".to_string();
        let s = render(&c);
        assert!(s.lines().all(|l| !l.starts_with("touch")), "{s}");
        assert!(s.contains("-o 'w an'\\''2' -s 192.168.50.0/24"));
    }

    #[test]
    fn script_is_valid_bash() {
        let mut hashed = with_weights(&[3, 2]);
        hashed.balance.mode = BalanceMode::Hash;
        let mut sticky = example_config();
        sticky.balance.sticky = Sticky::Src;
        for c in [example_config(), hashed, sticky] {
            let out = std::process::Command::new("bash")
                .args(["-n", "-c", &render(&c)])
                .output()
                .expect("bash runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

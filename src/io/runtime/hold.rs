//! The hold table: while xwan is not running (between a stop or a crash
//! and the next start), the kernel would answer the Internet side of the
//! saved flows itself (an RST for a TCP segment to a NAT port,
//! port-unreachable for UDP), and the connections the next start restores
//! would be gone. So with `[control] state` on, the start loads
//! `table ip xwan_hold`, which drops what arrives for the NAT ports and
//! forwarded ports of the WAN addresses (nothing else: the kernel's own
//! ports are outside `[nat] ports`; a later fragment, which has no ports,
//! is let through: its first fragment decides), and leaves it in place when xwan
//! stops or dies. While xwan runs it changes nothing: those frames are
//! xwan's (redirected by XDP before the kernel sees them, or dropped by
//! `table ip xwan` in packet mode). A start with the state off deletes it;
//! so does `nft delete table ip xwan_hold` by hand. Loaded through
//! libnftables in-process, as the main table is. With IPv6 in the
//! configuration, `table ip6 xwan_hold` does the same for IPv6: it drops the
//! NAT66 ports of each masquerade address, and everything to the prefixes
//! the LAN is mapped onto (which the kernel would otherwise forward
//! untranslated, or answer with unreachable).

use std::fmt::Write as _;

use tracing::{info, warn};

use super::discovery::owned6;
use crate::config::{Config, Proto};
use crate::io::sys::nftables::Nftables;

pub const HOLD_TABLE: &str = "xwan_hold";

/// The table's rules for `config`.
fn ruleset(config: &Config) -> String {
    let addrs = |ids: &mut dyn Iterator<Item = usize>| {
        let list: Vec<String> = ids.map(|i| config.wans[i].address.to_string()).collect();
        list.join(", ")
    };
    let mut s = format!(
        "table ip {HOLD_TABLE} {{}}\ndelete table ip {HOLD_TABLE}\ntable ip {HOLD_TABLE} {{\n\
         \tchain prerouting {{\n\t\ttype filter hook prerouting priority raw; policy accept;\n"
    );
    let _ = writeln!(s, "\t\tip frag-off & 0x1fff != 0 return");
    let all = addrs(&mut (0..config.wans.len()));
    let nat = format!("{}-{}", config.nat.ports.lo, config.nat.ports.hi);
    let _ = writeln!(
        s,
        "\t\tip daddr {{ {all} }} meta l4proto {{ tcp, udp }} th dport {nat} drop"
    );
    for forward in &config.forwards {
        let proto = if forward.proto == Proto::Udp {
            "udp"
        } else {
            "tcp"
        };
        let on = addrs(&mut forward.wans.iter().map(|&id| usize::from(id)));
        let _ = writeln!(
            s,
            "\t\tip daddr {{ {on} }} {proto} dport {} drop",
            forward.port
        );
    }
    s.push_str("\t}\n}\n");
    ruleset6(&mut s, config);
    s
}

/// The IPv6 hold table after the IPv4 one; without IPv6, only a stale one
/// is removed.
fn ruleset6(s: &mut String, config: &Config) {
    let _ = writeln!(
        s,
        "table ip6 {HOLD_TABLE} {{}}\ndelete table ip6 {HOLD_TABLE}"
    );
    let owned = owned6(config);
    let addresses: Vec<String> = (owned.uplinks.iter())
        .filter_map(|u| u.address.map(|a| a.to_string()))
        .collect();
    let prefixes: Vec<String> = (owned.uplinks.iter())
        .flat_map(|u| u.prefixes.iter().map(ToString::to_string))
        .collect();
    if addresses.is_empty() && prefixes.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "table ip6 {HOLD_TABLE} {{\n\tchain prerouting {{\n\t\ttype filter hook prerouting priority raw; policy accept;"
    );
    if !addresses.is_empty() {
        let nat = format!("{}-{}", config.nat.ports.lo, config.nat.ports.hi);
        let _ = writeln!(
            s,
            "\t\tip6 daddr {{ {} }} meta l4proto {{ tcp, udp }} th dport {nat} drop",
            addresses.join(", ")
        );
    }
    if !prefixes.is_empty() {
        let _ = writeln!(s, "\t\tip6 daddr {{ {} }} drop", prefixes.join(", "));
    }
    for uplink in &owned.uplinks {
        if let Some(address) = uplink.address {
            for (proto, port) in &uplink.forwards {
                let _ = writeln!(s, "\t\tip6 daddr {address} {proto} dport {port} drop");
            }
        }
    }
    s.push_str("\t}\n}\n");
}

/// Runs `script` in one transaction through libnftables, in-process as
/// the main table is ([`Nftables`]): no `nft` binary needed. The context
/// (and its netlink socket) is closed at once: the hold table is not owned
/// by it, so it stays.
fn nft(script: &str) -> Result<(), String> {
    Nftables::open()?.run(script)
}

/// Loads (or replaces) the hold table for `config`.
pub fn hold(config: &Config) {
    match nft(&ruleset(config)) {
        Ok(()) => info!("loaded table ip {HOLD_TABLE}: while xwan is not running the kernel will not reset its flows"),
        Err(e) => warn!(error = %e, "cannot load table ip {HOLD_TABLE}: while xwan is not running (a restart) the kernel may reset the saved TCP connections"),
    }
}

/// Deletes the hold tables an earlier run left, if any (the state is off).
pub fn release() {
    if nft(&format!("list table ip6 {HOLD_TABLE}")).is_ok() {
        if let Err(e) = nft(&format!("delete table ip6 {HOLD_TABLE}")) {
            warn!(error = %e, "cannot delete table ip6 {HOLD_TABLE}");
        }
    }
    if nft(&format!("list table ip {HOLD_TABLE}")).is_ok() {
        match nft(&format!("delete table ip {HOLD_TABLE}")) {
            Ok(()) => info!("deleted table ip {HOLD_TABLE}"),
            Err(e) => warn!(error = %e, "cannot delete table ip {HOLD_TABLE}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_nat_and_forwarded_ports_of_the_wan_addresses_only() {
        let text = crate::testing::TWO_UPLINKS.to_owned()
            + r#"
[[forward]]
proto = "udp"
port = 5353
to = "192.168.50.10:53"
wan = "isp2"
"#;
        let config = Config::from_toml(&text, std::path::Path::new("t.toml")).unwrap();
        let rules = ruleset(&config);
        assert!(rules.contains(
            "ip daddr { 198.18.1.2, 198.18.2.2 } meta l4proto { tcp, udp } th dport 20000-59999 drop"
        ));
        assert!(rules.contains("ip daddr { 198.18.2.2 } udp dport 5353 drop"));
        // Before them: later fragments, which carry no ports, pass.
        assert!(rules.contains("prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t\tip frag-off & 0x1fff != 0 return\n"));
        assert_eq!(rules.matches("drop").count(), 2);
        // No IPv6: a stale IPv6 hold table goes, none is made.
        assert!(rules.ends_with("table ip6 xwan_hold {}\ndelete table ip6 xwan_hold\n"));
    }

    #[test]
    fn holds_the_nat66_ports_and_the_mapped_prefixes() {
        let text = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24", "fd00:50::/64"]

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
gateway6 = "fe80::1"
prefix6 = "2001:db8:100::/56"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
gateway6 = "fe80::1"
address6 = "2001:db8:2::2"
"#;
        let config = Config::from_toml(text, std::path::Path::new("t.toml")).unwrap();
        let rules = ruleset(&config);
        let v6 = rules.split("table ip6 xwan_hold {\n").last().unwrap();
        assert!(v6.contains(
            "ip6 daddr { 2001:db8:2::2 } meta l4proto { tcp, udp } th dport 20000-59999 drop"
        ));
        assert!(v6.contains("ip6 daddr { 2001:db8:100::/64 } drop"));
    }
}

//! The IPv6 keys: `networks` and the rules' prefixes of both families,
//! `[lan] address6`, and each uplink's `address6`, `gateway6`, `prefix6`,
//! `nat6`, with their defaults and every refusal.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::*;

/// A dual-stack router from a real ISP shape: a /56 delegated on isp1, one
/// /128 (masquerade) on isp2.
const DUAL: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24", "fd00:50::/64"]
address6 = "fd00:50::1"

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
address6 = "auto"
gateway6 = "fe80::1"
prefix6 = "2001:db8:100::/56"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
address6 = "2001:db8:2::2"
gateway6 = "auto"
"#;

fn net6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn a_dual_stack_config_parses_with_its_defaults() {
    let config = ok(DUAL);
    assert_eq!(config.lan.networks, vec![net("192.168.50.0/24")]);
    assert_eq!(config.lan.networks6, vec![net6("fd00:50::/64")]);
    assert_eq!(config.lan.address6, Some(ip6("fd00:50::1")));
    assert_eq!(
        config.wans[0].ipv6,
        Some(Wan6 {
            address: Ipv6Addr::UNSPECIFIED,
            address_auto: true,
            gateway: ip6("fe80::1"),
            gateway_auto: false,
            prefix: Some(net6("2001:db8:100::/56")),
            prefix_auto: false,
            nat: Nat6::Prefix,
        })
    );
    assert_eq!(
        config.wans[1].ipv6,
        Some(Wan6 {
            address: ip6("2001:db8:2::2"),
            address_auto: false,
            gateway: Ipv6Addr::UNSPECIFIED,
            gateway_auto: true,
            prefix: None,
            prefix_auto: false,
            nat: Nat6::Masquerade,
        })
    );
    assert!(!config.wans[1].ipv6.as_ref().unwrap().resolved());
}

#[test]
fn an_ipv4_only_config_has_no_ipv6() {
    let config = ok(BASE);
    assert!(config.lan.networks6.is_empty());
    assert!(config.wans.iter().all(|w| w.ipv6.is_none()));
}

#[test]
fn an_ipv6_only_lan_is_valid() {
    let text = DUAL.replace(
        r#"networks = ["192.168.50.0/24", "fd00:50::/64"]"#,
        r#"networks = "fd00:50::/64""#,
    );
    let config = ok(&text);
    assert!(config.lan.networks.is_empty());
    assert_eq!(config.lan.networks6.len(), 1);
}

#[test]
fn every_nat6_form_parses() {
    for (form, nat) in [
        ("prefix", Nat6::Prefix),
        ("npt", Nat6::Npt),
        ("off", Nat6::Off),
    ] {
        let mut text = DUAL.replace(
            r#"prefix6 = "2001:db8:100::/56""#,
            &format!("prefix6 = \"2001:db8:100::/56\"\nnat6 = \"{form}\""),
        );
        // Off routes the LAN's own prefix, which must be inside the uplink's.
        if nat == Nat6::Off {
            text = text.replace("fd00:50::", "2001:db8:100:50::");
        }
        let config = ok(&text);
        assert_eq!(config.wans[0].ipv6.as_ref().unwrap().nat, nat, "{form}");
    }
}

#[test]
fn rules_take_prefixes_of_both_families() {
    let config = ok(&with(
        r#"
[[rule]]
src = ["192.168.50.0/25", "fd00:50::/80"]
dst = "2001:db8::/32"
action = "isp2"
"#,
    ));
    let rule = &config.rules[0];
    assert_eq!(rule.src, vec![net("192.168.50.0/25")]);
    assert_eq!(rule.src6, vec![net6("fd00:50::/80")]);
    assert!(rule.dst.is_empty());
    assert_eq!(rule.dst6, vec![net6("2001:db8::/32")]);
    assert!(config
        .to_string()
        .contains("any from 192.168.50.0/25, fd00:50::/80 to 2001:db8::/32 -> isp2"));
}

#[test]
fn the_summary_shows_both_families() {
    let summary = ok(DUAL).to_string();
    for needle in [
        "lan0  192.168.50.0/24, fd00:50::/64  address6 fd00:50::1",
        "ipv6 auto (unresolved) via fe80::1  prefix 2001:db8:100::/56  nat6 prefix",
        "ipv6 2001:db8:2::2 via auto (unresolved)  nat6 masquerade",
    ] {
        assert!(summary.contains(needle), "{needle:?} missing:\n{summary}");
    }
}

#[test]
fn inconsistent_ipv6_keys_are_refused_with_key_and_line() {
    // No next hop.
    let text = DUAL.replace("gateway6 = \"fe80::1\"\n", "");
    assert_invalid(
        &text,
        "wan[1].address6",
        "address6 = \"auto\"",
        "gateway6 is missing",
    );
    // Masquerade without an address.
    let text = DUAL.replace("address6 = \"2001:db8:2::2\"\n", "");
    assert_invalid(
        &text,
        "wan[2].address6",
        "gateway6 = \"auto\"",
        "address6 is missing",
    );
    // A prefix mapping without a prefix.
    let text = DUAL.replace("gateway6 = \"auto\"", "gateway6 = \"auto\"\nnat6 = \"npt\"");
    assert_invalid(
        &text,
        "wan[2].prefix6",
        "nat6 = \"npt\"",
        "prefix6 is missing",
    );
    // An unknown form.
    let text = DUAL.replace(
        "gateway6 = \"auto\"",
        "gateway6 = \"auto\"\nnat6 = \"nat66\"",
    );
    assert_invalid(&text, "wan[2].nat6", "nat6 = \"nat66\"", "unknown nat6");
    // A LAN bigger than the delegated prefix.
    let text = DUAL.replace("fd00:50::/64", "fd00:50::/48");
    assert_invalid(&text, "wan[1].prefix6", "prefix6 = ", "bigger than");
    // Off with a LAN prefix the uplink does not route.
    let text = DUAL.replace(
        r#"prefix6 = "2001:db8:100::/56""#,
        "prefix6 = \"2001:db8:100::/56\"\nnat6 = \"off\"",
    );
    assert_invalid(&text, "wan[1].prefix6", "prefix6 = ", "not inside");
    // A mapped prefix overlapping the LAN.
    let text = DUAL.replace("fd00:50::", "2001:db8:100:50::");
    assert_invalid(&text, "wan[1].prefix6", "prefix6 = ", "overlaps");
    // Two LAN prefixes that differ only above the delegated length.
    let text = DUAL.replace(
        r#"networks = ["192.168.50.0/24", "fd00:50::/64"]"#,
        r#"networks = ["192.168.50.0/24", "fd00:50::/64", "fd01:50::/64"]"#,
    );
    assert_invalid(&text, "wan[1].prefix6", "prefix6 = ", "map onto one prefix");
    // A prefix too long to be delegated.
    let text = DUAL.replace("2001:db8:100::/56", "2001:db8:100::/96");
    assert_invalid(&text, "wan[1].prefix6", "prefix6 = ", "routed prefix");
    // Two uplinks with one prefix.
    let text = DUAL.replace(
        "gateway6 = \"auto\"",
        "gateway6 = \"auto\"\nprefix6 = \"2001:db8:100:0::/56\"",
    );
    assert_invalid(
        &text,
        "wan[2].prefix6",
        "prefix6 = \"2001:db8:100:0::/56\"",
        "duplicate uplink prefix 2001:db8:100::/56 (also wan[1])",
    );
}

#[test]
fn addresses_are_checked_for_their_role() {
    let text = DUAL.replace("address6 = \"fd00:50::1\"", "address6 = \"fd00:51::1\"");
    assert_invalid(
        &text,
        "lan.address6",
        "address6 = \"fd00:51::1\"",
        "not a host",
    );
    let text = DUAL.replace("address6 = \"2001:db8:2::2\"", "address6 = \"fe80::2\"");
    assert_invalid(
        &text,
        "wan[2].address6",
        "address6 = \"fe80::2\"",
        "global address",
    );
    let text = DUAL.replace("address6 = \"2001:db8:2::2\"", "address6 = \"fd00:50::9\"");
    assert_invalid(
        &text,
        "wan[2].address6",
        "address6 = \"fd00:50::9\"",
        "inside the LAN",
    );
    let text = DUAL.replace("gateway6 = \"fe80::1\"", "gateway6 = \"ff02::2\"");
    assert_invalid(
        &text,
        "wan[1].gateway6",
        "gateway6 = \"ff02::2\"",
        "next hop",
    );
    let text = DUAL.replace("gateway6 = \"fe80::1\"", "gateway6 = \"fe80::g\"");
    assert_invalid(
        &text,
        "wan[1].gateway6",
        "gateway6 = \"fe80::g\"",
        "not an IPv6",
    );
}

#[test]
fn ipv6_networks_without_an_ipv6_uplink_are_refused() {
    let text = BASE.replace(
        "networks = \"192.168.50.0/24\"",
        "networks = [\"192.168.50.0/24\", \"fd00:50::/64\"]",
    );
    assert_invalid(
        &text,
        "lan.networks",
        "networks = ",
        "no uplink carries IPv6",
    );
}

#[test]
fn local_rules_refuse_ipv6_destinations() {
    let text = with(
        r#"
[[local.rule]]
dst = "2001:db8::/32"
uplink = "isp1"
"#,
    );
    assert_invalid(
        &text,
        "local.rule[1].dst",
        "dst = \"2001",
        "IPv6 destinations",
    );
}

#[test]
fn forwards_take_ipv6_targets_on_masquerade_uplinks() {
    let text = format!(
        "{DUAL}\n[[forward]]\nproto = \"tcp\"\nport = 2022\nto = \"[fd00:50::10]:22\"\n\n\
         [[forward]]\nproto = \"tcp\"\nport = 2022\nto = \"192.168.50.10:22\"\n"
    );
    let config = ok(&text);
    assert_eq!(config.forwards.len(), 1);
    assert_eq!(config.forwards6.len(), 1);
    let f = &config.forwards6[0];
    assert_eq!(
        (f.to_addr, f.to_port, f.wans.as_slice()),
        (ip6("fd00:50::10"), 22, &[1][..])
    );
    // On an uplink that maps a prefix: refused, naming wan.
    let text = format!(
        "{DUAL}\n[[forward]]\nproto = \"tcp\"\nport = 2022\nto = \"[fd00:50::10]:22\"\nwan = \"isp1\"\n"
    );
    assert_invalid(
        &text,
        "forward[1].wan",
        "wan = \"isp1\"",
        "no nat6 = \"masquerade\"",
    );
    // Outside the LAN.
    let text = format!("{DUAL}\n[[forward]]\nproto = \"udp\"\nport = 53\nto = \"[fd99::1]:53\"\n");
    assert_invalid(
        &text,
        "forward[1].to",
        "to = \"[fd99",
        "not inside a LAN network",
    );
}

#[test]
fn ipv6_probe_targets_parse_and_need_gateway6() {
    let text = DUAL.replace(
        "prefix6 = \"2001:db8:100::/56\"\n",
        "prefix6 = \"2001:db8:100::/56\"\nprobe = [\"198.18.11.2\", \"2001:db8::1\", \"tcp://[2001:db8::1]:443\", \"dns://[2001:db8::1]/example.com\"]\n",
    );
    let config = ok(&text);
    let v6: std::net::IpAddr = ip6("2001:db8::1").into();
    assert_eq!(
        config.wans[0].probe,
        vec![
            ProbeTarget::Icmp(ip("198.18.11.2").into()),
            ProbeTarget::Icmp(v6),
            ProbeTarget::Tcp("[2001:db8::1]:443".parse().unwrap()),
            ProbeTarget::Dns {
                server: v6,
                name: "example.com".into()
            },
        ]
    );
    let shown: Vec<bool> = config.wans[0].probe.iter().map(|t| t.is_ipv6()).collect();
    assert_eq!(shown, [false, true, true, true]);
    assert!(config.to_string().contains(
        "probes 198.18.11.2, 2001:db8::1, tcp://[2001:db8::1]:443, dns://[2001:db8::1]/example.com"
    ));
    // The same targets parse back from how they are shown.
    for target in &config.wans[0].probe {
        let again = DUAL.replace(
            "prefix6 = \"2001:db8:100::/56\"\n",
            &format!("prefix6 = \"2001:db8:100::/56\"\nprobe = \"{target}\"\n"),
        );
        assert_eq!(&ok(&again).wans[0].probe, std::slice::from_ref(target));
    }
    // An uplink without gateway6 cannot send IPv6 probes.
    let text = BASE.replace(
        "gateway = \"198.18.2.1\"\n",
        "gateway = \"198.18.2.1\"\nprobe = [\"198.18.12.2\", \"tcp://[2001:db8::1]:443\"]\n",
    );
    assert_invalid(
        &text,
        "wan[2].probe[2]",
        "tcp://[2001:db8::1]:443",
        "IPv6 target, but this uplink has no gateway6",
    );
}

//! Loading and validation: the example from the format description, the
//! defaults, and one test per refusal, each asserting the key, the line and
//! the message.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use super::*;

/// A minimal valid configuration: two uplinks, everything else default.
const BASE: &str = r#"
[lan]
interface = "lan0"
networks = "192.168.50.0/24"

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
"#;

/// The example from the file-format description, with its second uplink.
const EXAMPLE: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24"]

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
weight = 1
priority = 1
probe = ["198.18.11.2"]

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
weight = 3
priority = 2
probe = ["198.18.12.2", "203.0.113.10"]

[balance]
mode = "nth"
sticky = "none"
sticky_timeout_s = 600

[[rule]]
name = "web-via-isp2"
proto = "tcp"
src = "192.168.50.0/25"
dst = "0.0.0.0/0"
src_port = "1024-65535"
dst_port = "443"
action = "isp2"
strict = false

[[rule]]
proto = "udp"
dst_port = [53, "5353", "8000-8100,9000"]
action = "isp1"
strict = true

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.10:80"
wan = ["isp1", "isp2"]

[[forward]]
proto = "udp"
port = 5353
to = "192.168.50.10"
wan = "isp2"

[nat]
ports = "20000-59999"

[health]
interval_ms = 500
timeout_ms = 1000
down_after = 3
up_after = 3

[timeouts]
tcp_established_s = 7440
tcp_transitory_s = 240
udp_s = 300
icmp_s = 60

[limits]
max_flows = 1048576

[control]
socket = "/run/xwan.sock"
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("xwan.toml"))
}

fn ok(text: &str) -> Config {
    match load(text) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn err(text: &str) -> ConfigError {
    match load(text) {
        Ok(config) => panic!("expected an error, got a valid config:\n{config}"),
        Err(e) => e,
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The 1-based line where `needle` first starts in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    text[..at].matches('\n').count() + 1
}

/// Assert an invalid-config error: its key, its line (that of `at`) and
/// that its message contains `message`.
fn assert_invalid(text: &str, key: &str, at: &str, message: &str) {
    let e = err(text);
    assert!(
        matches!(e, ConfigError::Invalid { .. }),
        "expected a validation error, got: {e}"
    );
    assert_eq!(e.key(), Some(key), "key of: {e}");
    assert_eq!(e.line(), Some(line_of(text, at)), "line of: {e}");
    assert!(
        e.message().contains(message),
        "{e}\nshould contain {message:?}"
    );
    let shown = e.to_string();
    assert!(shown.starts_with("xwan.toml:"), "{shown}");
    assert!(shown.contains(&format!(": {key}: ")), "{shown}");
    assert!(!shown.contains('\n'), "one line: {shown}");
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn example_parses_to_the_expected_model() {
    let config = ok(EXAMPLE);
    let expected = Config {
        lan: Lan {
            interface: "lan0".into(),
            networks: vec![net("192.168.50.0/24")],
            networks6: Vec::new(),
            address: None,
            address6: None,
            mtu: None,
        },
        wans: vec![
            Wan {
                name: "isp1".into(),
                interface: "wan1".into(),
                address: ip("198.18.1.2"),
                gateway: ip("198.18.1.1"),
                address_auto: false,
                gateway_auto: false,
                weight: 1,
                priority: 1,
                probe: vec![ProbeTarget::Icmp(ip("198.18.11.2").into())],
                mtu: None,
                health: DEFAULT_HEALTH,
                ipv6: None,
            },
            Wan {
                name: "isp2".into(),
                interface: "wan2".into(),
                address: ip("198.18.2.2"),
                gateway: ip("198.18.2.1"),
                address_auto: false,
                gateway_auto: false,
                weight: 3,
                priority: 2,
                probe: vec![
                    ProbeTarget::Icmp(ip("198.18.12.2").into()),
                    ProbeTarget::Icmp(ip("203.0.113.10").into()),
                ],
                mtu: None,
                health: DEFAULT_HEALTH,
                ipv6: None,
            },
        ],
        balance: Balance {
            mode: BalanceMode::Nth,
            sticky: Sticky::None,
            sticky_timeout_s: 600,
        },
        rules: vec![
            Rule {
                name: "web-via-isp2".into(),
                proto: Proto::Tcp,
                src: vec![net("192.168.50.0/25")],
                dst: vec![net("0.0.0.0/0")],
                src6: Vec::new(),
                dst6: Vec::new(),
                src_port: vec![PortRange {
                    lo: 1024,
                    hi: 65535,
                }],
                dst_port: vec![PortRange { lo: 443, hi: 443 }],
                action: Action::Uplink(1),
                strict: false,
            },
            Rule {
                name: "rule-2".into(),
                proto: Proto::Udp,
                src: vec![],
                dst: vec![],
                src6: Vec::new(),
                dst6: Vec::new(),
                src_port: vec![],
                dst_port: vec![
                    PortRange { lo: 53, hi: 53 },
                    PortRange { lo: 5353, hi: 5353 },
                    PortRange { lo: 8000, hi: 8100 },
                    PortRange { lo: 9000, hi: 9000 },
                ],
                action: Action::Uplink(0),
                strict: true,
            },
        ],
        forwards: vec![
            Forward {
                proto: Proto::Tcp,
                port: 8080,
                to_addr: ip("192.168.50.10"),
                to_port: 80,
                wans: vec![0, 1],
            },
            Forward {
                proto: Proto::Udp,
                port: 5353,
                to_addr: ip("192.168.50.10"),
                to_port: 5353,
                wans: vec![1],
            },
        ],
        forwards6: Vec::new(),
        nat: Nat {
            ports: PortRange {
                lo: 20000,
                hi: 59999,
            },
            ports_set: true,
            mss_clamp: MssClamp::Off,
        },
        health: DEFAULT_HEALTH,
        timeouts: Timeouts {
            tcp_established_s: 7440,
            tcp_transitory_s: 240,
            udp_s: 300,
            icmp_s: 60,
        },
        limits: Limits {
            max_flows: 1048576,
            max_flows_per_host: 65536,
            max_flows_per_forward: 65536,
            max_flows_per_source: 4096,
        },
        control: Control {
            socket: PathBuf::from("/run/xwan.sock"),
            metrics: None,
            state: Some(PathBuf::from("/var/lib/xwan/state")),
            checkpoint_s: 30,
            group: None,
            page: Page::default(),
        },
        local: Local {
            routes: true,
            uplink: LocalUplink::Uplink(0),
            table: 7800,
            rules: Vec::new(),
        },
        dataplane: Dataplane {
            offload: Offload::Auto,
        },
    };
    assert_eq!(config, expected);
}

#[test]
fn defaults_fill_every_optional_key() {
    let config = ok(BASE);
    assert_eq!(config.lan.networks, vec![net("192.168.50.0/24")]);
    for wan in &config.wans {
        assert_eq!(wan.weight, 1);
        assert_eq!(wan.priority, 1);
        assert!(wan.probe.is_empty());
    }
    assert_eq!(
        config.balance,
        Balance {
            mode: BalanceMode::Nth,
            sticky: Sticky::None,
            sticky_timeout_s: 600
        }
    );
    assert!(config.rules.is_empty());
    assert!(config.forwards.is_empty());
    assert_eq!(config.nat.ports, DEFAULT_NAT_PORTS);
    assert_eq!(
        config.nat.ports,
        PortRange {
            lo: 20000,
            hi: 59999
        }
    );
    assert_eq!(config.health, DEFAULT_HEALTH);
    assert_eq!(
        config.timeouts,
        Timeouts {
            tcp_established_s: 7440,
            tcp_transitory_s: 240,
            udp_s: 300,
            icmp_s: 60
        }
    );
    assert_eq!(config.limits.max_flows, 1 << 20);
    assert_eq!(config.limits.max_flows_per_host, DEFAULT_MAX_FLOWS_PER_HOST);
    assert_eq!(config.lan.address, None);
    assert_eq!(config.lan.mtu, None);
    assert!(config.wans.iter().all(|w| w.mtu.is_none()));
    assert_eq!(config.nat.mss_clamp, MssClamp::Off);
    assert_eq!(config.control.socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
    assert_eq!(
        config.limits.max_flows_per_forward,
        DEFAULT_MAX_FLOWS_PER_FORWARD
    );
    assert_eq!(
        config.limits.max_flows_per_source,
        DEFAULT_MAX_FLOWS_PER_SOURCE
    );
    assert_eq!(
        config.control.state,
        Some(PathBuf::from(DEFAULT_STATE_FILE))
    );
    assert_eq!(config.control.checkpoint_s, DEFAULT_CHECKPOINT_S);
}

#[test]
fn rule_defaults_and_forward_defaults() {
    let config = ok(&with(
        "[[rule]]\naction = \"drop\"\n[[rule]]\naction = \"balance\"\n\
         [[forward]]\nproto = \"tcp\"\nport = 2222\nto = \"192.168.50.20\"\n",
    ));
    assert_eq!(config.rules[0].name, "rule-1");
    assert_eq!(config.rules[0].proto, Proto::Any);
    assert!(config.rules[0].src.is_empty() && config.rules[0].dst.is_empty());
    assert!(config.rules[0].src_port.is_empty() && config.rules[0].dst_port.is_empty());
    assert_eq!(config.rules[0].action, Action::Drop);
    assert!(!config.rules[0].strict);
    assert_eq!(config.rules[1].name, "rule-2");
    assert_eq!(config.rules[1].action, Action::Balance);
    let f = &config.forwards[0];
    assert_eq!((f.to_addr, f.to_port), (ip("192.168.50.20"), 2222));
    assert_eq!(f.wans, vec![0, 1]);
}

#[test]
fn balance_modes_and_sticky_parse() {
    let config = ok(&with(
        "[balance]\nmode = \"hash\"\nsticky = \"src-dst\"\nsticky_timeout_s = 30\n",
    ));
    assert_eq!(config.balance.mode, BalanceMode::Hash);
    assert_eq!(config.balance.sticky, Sticky::SrcDst);
    assert_eq!(config.balance.sticky_timeout_s, 30);
    let config = ok(&with("[balance]\nmode = \"random\"\nsticky = \"src\"\n"));
    assert_eq!(config.balance.mode, BalanceMode::Random);
    assert_eq!(config.balance.sticky, Sticky::Src);
}

#[test]
fn bare_addresses_are_host_prefixes_and_host_bits_are_cleared() {
    let config = ok(&with(
        "[[rule]]\nsrc = [\"192.168.50.7\", \"10.1.2.3/8\"]\ndst = \"203.0.113.10\"\naction = \"isp1\"\n",
    ));
    assert_eq!(
        config.rules[0].src,
        vec![net("192.168.50.7/32"), net("10.0.0.0/8")]
    );
    assert_eq!(config.rules[0].dst, vec![net("203.0.113.10/32")]);
}

#[test]
fn port_spec_forms() {
    let config = ok(&with(
        "[[rule]]\nproto = \"tcp\"\nsrc_port = 443\ndst_port = \"80, 443 ,8000-8100\"\naction = \"isp1\"\n",
    ));
    let r = &config.rules[0];
    assert_eq!(r.src_port, vec![PortRange { lo: 443, hi: 443 }]);
    assert_eq!(
        r.dst_port,
        vec![
            PortRange { lo: 80, hi: 80 },
            PortRange { lo: 443, hi: 443 },
            PortRange { lo: 8000, hi: 8100 },
        ]
    );
}

#[test]
fn testbed_example_is_valid() {
    let text = include_str!("../../testbed/configs/example.toml");
    let config = ok(text);
    let names: Vec<&str> = config.wans.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["isp1", "isp2"]);
    assert_eq!(config.lan.networks, vec![net("192.168.50.0/24")]);
    assert_eq!(config.wans[0].address, ip("198.18.1.2"));
    assert_eq!(config.wans[1].gateway, ip("198.18.2.1"));
    assert_eq!(
        config.rules[0].dst_port,
        vec![PortRange { lo: 443, hi: 443 }]
    );
    assert_eq!(config.rules[0].action, Action::Uplink(1));
    let forwards: Vec<(Proto, u16, u16, &[UplinkId])> = config
        .forwards
        .iter()
        .map(|f| (f.proto, f.port, f.to_port, f.wans.as_slice()))
        .collect();
    assert_eq!(
        forwards,
        [
            (Proto::Tcp, 8080, 80, &[0u8, 1][..]),
            (Proto::Udp, 5353, 5353, &[0u8, 1][..])
        ]
    );
}

#[test]
fn summary_shows_every_section() {
    let summary = ok(EXAMPLE).to_string();
    for needle in [
        "lan0",
        "192.168.50.0/24",
        "isp1  wan1  198.18.1.2 via 198.18.1.1  weight 1  priority 1  mtu of the interface  probes 198.18.11.2",
        "isp2  wan2  198.18.2.2 via 198.18.2.1  weight 3  priority 2",
        "nth, sticky none",
        "1 web-via-isp2: tcp from 192.168.50.0/25 port 1024-65535 to 0.0.0.0/0 port 443 -> isp2",
        "2 rule-2: udp to any port 53,5353,8000-8100,9000 -> isp1 (strict",
        "tcp 8080 -> 192.168.50.10:80 on isp1, isp2",
        "udp 5353 -> 192.168.50.10:5353 on isp2",
        "20000-59999",
        "7440",
        "1048576",
        "/run/xwan.sock",
    ] {
        assert!(
            summary.contains(needle),
            "{needle:?} missing from:\n{summary}"
        );
    }
    assert!(summary.lines().count() <= 24, "one screen:\n{summary}");
}

#[test]
fn the_action_error_reads_as_documented() {
    let text = with("[[rule]]\nname = \"x\"\naction = \"isp3\"\n");
    let line = line_of(&text, "isp3");
    assert_eq!(
        err(&text).to_string(),
        format!(
            "xwan.toml:{line}:10: rule[1].action: \"isp3\" names no uplink \
             (uplinks: isp1, isp2; or balance, bypass, drop)"
        )
    );
}

#[test]
fn toml_syntax_error() {
    let text = with("[[rule]]\naction = isp2\n");
    let e = err(&text);
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert_eq!(e.line(), Some(line_of(&text, "action = isp2")));
    assert_eq!(e.column(), Some(10));
    assert!(e.to_string().contains("invalid TOML"), "{e}");
}

#[test]
fn duplicate_toml_key_is_a_syntax_error() {
    let text = BASE.replace(
        "gateway = \"198.18.2.1\"",
        "gateway = \"198.18.2.1\"\nname = \"x\"",
    );
    let e = err(&text);
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert_eq!(e.line(), Some(line_of(&text, "name = \"x\"")));
}

#[test]
fn unknown_keys_are_named() {
    assert_invalid(
        &with("[[rule]]\nactoin = \"isp1\"\n"),
        "rule[1].actoin",
        "actoin",
        "unknown key",
    );
    assert_invalid(
        &BASE.replace(
            "gateway = \"198.18.2.1\"",
            "gateway = \"198.18.2.1\"\nwieght = 2",
        ),
        "wan[2].wieght",
        "wieght",
        "unknown key",
    );
    let text = format!("colour = \"blue\"\n{BASE}");
    assert_invalid(&text, "colour", "colour", "expected one of `lan`, `wan`");
    assert_invalid(
        &with("[healt]\ninterval_ms = 5\n"),
        "healt",
        "[healt]",
        "unknown key",
    );
    assert_invalid(
        &with("[nat]\nport = \"1-100\"\n"),
        "nat.port",
        "port =",
        "unknown key",
    );
}

#[test]
fn wrong_types_are_named() {
    assert_invalid(
        &BASE.replace("name = \"isp2\"", "name = 2"),
        "wan[2].name",
        "name = 2",
        "expected a string",
    );
    assert_invalid(
        &with("[limits]\nmax_flows = \"lots\"\n"),
        "limits.max_flows",
        "lots",
        "expected an integer",
    );
    assert_invalid(
        &with("[[rule]]\naction = \"isp1\"\nstrict = \"yes\"\n"),
        "rule[1].strict",
        "strict",
        "expected a boolean",
    );
    assert_invalid(
        &with("[[rule]]\naction = \"isp1\"\nsrc = true\n"),
        "rule[1].src",
        "src = true",
        "invalid type: boolean",
    );
    assert_invalid(
        &with("[[rule]]\naction = \"isp1\"\nsrc = [\"10.0.0.0/8\", 5]\n"),
        "rule[1].src[2]",
        "src =",
        "found 5",
    );
    assert_invalid(
        &format!("health = 3\n{BASE}"),
        "health",
        "health = 3",
        "expected a table",
    );
    assert_invalid(
        &with("[limits]\nmax_flows = [1]\n"),
        "limits.max_flows",
        "max_flows",
        "invalid type: array",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = \"80\"\nto = \"192.168.50.2\"\n"),
        "forward[1].port",
        "port =",
        "expected an integer",
    );
}

#[test]
fn missing_required_keys_are_named() {
    assert_invalid(
        &BASE.replace("gateway = \"198.18.2.1\"", ""),
        "wan[2].gateway",
        "[[wan]]\nname = \"isp2\"",
        "required key is missing",
    );
    // The location of a missing key is its table's header.
    let text = BASE.replace("gateway = \"198.18.2.1\"", "");
    let e = err(&text);
    let second_header = text.match_indices("[[wan]]").nth(1).unwrap().0;
    assert_eq!(
        e.line(),
        Some(text[..second_header].matches('\n').count() + 1)
    );
    assert_eq!(e.column(), Some(1));
    assert_invalid(
        &with("[[rule]]\nname = \"r\"\n"),
        "rule[1].action",
        "[[rule]]",
        "required key is missing",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 80\n"),
        "forward[1].to",
        "[[forward]]",
        "required key is missing",
    );
    let e = err("[control]\nsocket = \"/run/x.sock\"\n");
    assert_eq!(e.key(), Some("lan"));
    assert_eq!(e.line(), Some(1));
    let e = err("");
    assert_eq!(e.key(), Some("lan"));
}

#[test]
fn action_naming_no_uplink() {
    assert_invalid(
        &with("[[rule]]\naction = \"isp3\"\n"),
        "rule[1].action",
        "isp3",
        "\"isp3\" names no uplink (uplinks: isp1, isp2",
    );
}

#[test]
fn bad_cidr_and_addresses() {
    assert_invalid(
        &BASE.replace("\"192.168.50.0/24\"", "\"192.168.50.0/33\""),
        "lan.networks",
        "networks",
        "not an IPv4 address or CIDR prefix",
    );
    assert_invalid(
        &BASE.replace(
            "\"192.168.50.0/24\"",
            "[\"10.0.0.0/8\", \"192.168.300.0/24\"]",
        ),
        "lan.networks[2]",
        "networks",
        "\"192.168.300.0/24\" is not an IPv4 address",
    );
    assert_invalid(
        &BASE.replace("address = \"198.18.1.2\"", "address = \"198.18.1\""),
        "wan[1].address",
        "198.18.1\"",
        "not an IPv4 address",
    );
    assert_invalid(
        &BASE.replace("gateway = \"198.18.2.1\"", "gateway = \"isp\""),
        "wan[2].gateway",
        "\"isp\"",
        "not an IPv4 address",
    );
    assert_invalid(
        &BASE.replace(
            "gateway = \"198.18.2.1\"",
            "gateway = \"198.18.2.1\"\nprobe = [\"1.1.1.1\", \"x\"]",
        ),
        "wan[2].probe[2]",
        "probe",
        "\"x\" is not an IPv4 address",
    );
    assert_invalid(
        &with("[[rule]]\ndst = \"203.0.113.0/\"\naction = \"isp1\"\n"),
        "rule[1].dst",
        "dst =",
        "not an IPv4 address or CIDR prefix",
    );
    assert_invalid(
        &BASE.replace("address = \"198.18.1.2\"", "address = \"0.0.0.0\""),
        "wan[1].address",
        "0.0.0.0",
        "cannot be an uplink address",
    );
    assert_invalid(
        &BASE.replace("gateway = \"198.18.1.1\"", "gateway = \"198.18.1.2\""),
        "wan[1].gateway",
        "gateway = \"198.18.1.2\"",
        "cannot be the gateway",
    );
}

#[test]
fn port_ranges_out_of_order_or_range() {
    assert_invalid(
        &with("[[rule]]\nproto = \"tcp\"\ndst_port = \"8100-8000\"\naction = \"isp1\"\n"),
        "rule[1].dst_port",
        "dst_port",
        "port range 8100-8000 is reversed",
    );
    assert_invalid(
        &with("[[rule]]\nproto = \"udp\"\nsrc_port = [\"80\", \"90-80\"]\naction = \"isp1\"\n"),
        "rule[1].src_port[2]",
        "src_port",
        "reversed",
    );
    assert_invalid(
        &with("[[rule]]\nproto = \"udp\"\nsrc_port = \"70000\"\naction = \"isp1\"\n"),
        "rule[1].src_port",
        "src_port",
        "port 70000 is out of range",
    );
    assert_invalid(
        &with("[[rule]]\nproto = \"udp\"\nsrc_port = -1\naction = \"isp1\"\n"),
        "rule[1].src_port",
        "src_port",
        "port -1 is out of range",
    );
    assert_invalid(
        &with("[[rule]]\nproto = \"udp\"\ndst_port = \"http\"\naction = \"isp1\"\n"),
        "rule[1].dst_port",
        "dst_port",
        "not a port or port range",
    );
    assert_invalid(
        &with("[[rule]]\nproto = \"udp\"\ndst_port = \"\"\naction = \"isp1\"\n"),
        "rule[1].dst_port",
        "dst_port",
        "empty port list",
    );
    assert_invalid(
        &with("[[rule]]\nproto = \"udp\"\ndst_port = []\naction = \"isp1\"\n"),
        "rule[1].dst_port",
        "dst_port",
        "empty list",
    );
    assert_invalid(
        &with("[nat]\nports = \"40000-30000\"\n"),
        "nat.ports",
        "ports",
        "reversed",
    );
}

#[test]
fn ports_need_tcp_or_udp() {
    assert_invalid(
        &with("[[rule]]\ndst_port = \"53\"\naction = \"isp1\"\n"),
        "rule[1].dst_port",
        "dst_port",
        "ports need proto",
    );
    assert_invalid(
        &with("[[rule]]\nproto = \"icmp\"\nsrc_port = 1\naction = \"isp1\"\n"),
        "rule[1].src_port",
        "src_port",
        "ports need proto",
    );
}

#[test]
fn bad_proto_mode_and_strict() {
    assert_invalid(
        &with("[[rule]]\nproto = \"sctp\"\naction = \"isp1\"\n"),
        "rule[1].proto",
        "sctp",
        "\"sctp\" is not a protocol",
    );
    assert_invalid(
        &with("[balance]\nmode = \"wrr\"\n"),
        "balance.mode",
        "wrr",
        "expected nth, hash or random",
    );
    assert_invalid(
        &with("[balance]\nsticky = \"dst\"\n"),
        "balance.sticky",
        "\"dst\"",
        "expected none, src or src-dst",
    );
    assert_invalid(
        &with("[[rule]]\naction = \"balance\"\nstrict = true\n"),
        "rule[1].strict",
        "strict",
        "strict only applies",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"icmp\"\nport = 80\nto = \"192.168.50.2\"\n"),
        "forward[1].proto",
        "icmp",
        "expected tcp or udp",
    );
}

#[test]
fn duplicate_rule_names() {
    assert_invalid(
        &with("[[rule]]\nname = \"a\"\naction = \"isp1\"\n[[rule]]\nname = \"a\"\naction = \"isp2\"\n"),
        "rule[2].name",
        "name = \"a\"\naction = \"isp2\"",
        "duplicate rule name \"a\" (also rule[1])",
    );
}

#[test]
fn forward_port_inside_nat_range() {
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 30000\nto = \"192.168.50.10\"\n"),
        "forward[1].port",
        "30000",
        "inside the NAT port range 20000-59999",
    );
    // The same port is fine once the range moves.
    ok(&with(
        "[[forward]]\nproto = \"tcp\"\nport = 30000\nto = \"192.168.50.10\"\n[nat]\nports = \"40000-49999\"\n",
    ));
}

#[test]
fn nat_range_limits() {
    assert_invalid(
        &with("[nat]\nports = \"1000-1062\"\n"),
        "nat.ports",
        "ports",
        "at least 64",
    );
    assert_invalid(
        &with("[nat]\nports = \"0-1000\"\n"),
        "nat.ports",
        "ports",
        "from 1 to 65535",
    );
    assert_eq!(
        ok(&with("[nat]\nports = \"1000-1063\"\n")).nat.ports,
        PortRange { lo: 1000, hi: 1063 }
    );
}

#[test]
fn wan_count_limits() {
    let one = BASE
        .split("[[wan]]")
        .take(2)
        .collect::<Vec<_>>()
        .join("[[wan]]");
    assert_invalid(
        &one,
        "wan",
        "[[wan]]",
        "only one [[wan]] section; xwan needs at least two uplinks",
    );
    let none = BASE.split("[[wan]]").next().unwrap().to_string();
    let e = err(&none);
    assert_eq!(e.key(), Some("wan"));
    assert_eq!(
        e.message(),
        "no [[wan]] section; xwan needs at least two uplinks"
    );

    let mut many = String::from("[lan]\ninterface = \"lan0\"\nnetworks = \"10.0.0.0/8\"\n");
    for i in 0..=MAX_UPLINKS {
        many.push_str(&format!(
            "[[wan]]\nname = \"u{i}\"\ninterface = \"eth{i}\"\naddress = \"198.18.{i}.2\"\ngateway = \"198.18.{i}.1\"\n"
        ));
    }
    assert_invalid(
        &many,
        "wan",
        "[[wan]]\nname = \"u64\"",
        "65 uplinks configured; at most 64",
    );
    let sixty_four = many.rsplit_once("[[wan]]").unwrap().0;
    assert_eq!(ok(sixty_four).wans.len(), MAX_UPLINKS);
}

#[test]
fn duplicate_wan_names_interfaces_and_addresses() {
    assert_invalid(
        &BASE.replace("name = \"isp2\"", "name = \"isp1\""),
        "wan[2].name",
        "name = \"isp1\"\ninterface = \"wan2\"",
        "duplicate uplink name \"isp1\" (also wan[1])",
    );
    assert_invalid(
        &BASE.replace("interface = \"wan2\"", "interface = \"wan1\""),
        "wan[2].interface",
        "interface = \"wan1\"\naddress = \"198.18.2.2\"",
        "duplicate interface \"wan1\" (also wan[1])",
    );
    assert_invalid(
        &BASE.replace("address = \"198.18.2.2\"", "address = \"198.18.1.2\""),
        "wan[2].address",
        "address = \"198.18.1.2\"\ngateway = \"198.18.2.1\"",
        "duplicate uplink address 198.18.1.2 (also wan[1])",
    );
    assert_invalid(
        &BASE.replace("interface = \"wan1\"", "interface = \"lan0\""),
        "wan[1].interface",
        "interface = \"lan0\"\naddress",
        "already the LAN interface",
    );
}

#[test]
fn wan_address_inside_lan() {
    assert_invalid(
        &BASE.replace("address = \"198.18.2.2\"", "address = \"192.168.50.1\""),
        "wan[2].address",
        "192.168.50.1",
        "192.168.50.1 is inside the LAN network 192.168.50.0/24",
    );
}

#[test]
fn bad_uplink_and_interface_names() {
    assert_invalid(
        &BASE.replace("name = \"isp2\"", "name = \"drop\""),
        "wan[2].name",
        "\"drop\"",
        "reserved",
    );
    assert_invalid(
        &BASE.replace("name = \"isp2\"", "name = \"isp 2\""),
        "wan[2].name",
        "isp 2",
        "not a valid uplink name",
    );
    assert_invalid(
        &BASE.replace(
            "interface = \"wan2\"",
            "interface = \"a-very-long-interface\"",
        ),
        "wan[2].interface",
        "a-very-long",
        "not a valid interface name",
    );
    assert_invalid(
        &BASE.replace("interface = \"lan0\"", "interface = \"\""),
        "lan.interface",
        "interface = \"\"",
        "not a valid interface name",
    );
}

#[test]
fn forward_target_outside_lan() {
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"10.0.0.5:80\"\n"),
        "forward[1].to",
        "10.0.0.5",
        "10.0.0.5 is not inside a LAN network (192.168.50.0/24)",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.50.5:0\"\n"),
        "forward[1].to",
        "192.168.50.5:0",
        "port 0",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"host:80\"\n"),
        "forward[1].to",
        "host:80",
        "not an inside address",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 0\nto = \"192.168.50.5\"\n"),
        "forward[1].port",
        "port = 0",
        "port 0 is out of range (must be from 1 to 65535)",
    );
}

#[test]
fn forward_wan_lists() {
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.50.5\"\nwan = [\"isp1\", \"isp9\"]\n"),
        "forward[1].wan[2]",
        "isp9",
        "\"isp9\" names no uplink (uplinks: isp1, isp2)",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.50.5\"\nwan = [\"isp1\", \"isp1\"]\n"),
        "forward[1].wan[2]",
        "wan = [",
        "listed twice",
    );
    assert_invalid(
        &with("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.50.5\"\nwan = []\n"),
        "forward[1].wan",
        "wan = [",
        "empty list",
    );
}

#[test]
fn duplicate_forwards() {
    let fw = |proto: &str, port: u16, wan: &str| {
        format!("[[forward]]\nproto = \"{proto}\"\nport = {port}\nto = \"192.168.50.5\"\n{wan}\n")
    };
    // Same proto and port on every uplink twice.
    let text = with(&format!(
        "{}{}",
        fw("tcp", 80, ""),
        fw("tcp", 80, "# second")
    ));
    assert_invalid(
        &text,
        "forward[2].port",
        "port = 80\nto = \"192.168.50.5\"\n# second",
        "tcp port 80 on isp1, isp2 is already forwarded by forward[1]",
    );
    // Overlapping uplink sets.
    let text = with(&format!(
        "{}{}",
        fw("udp", 53, "wan = [\"isp1\", \"isp2\"]"),
        fw("udp", 53, "wan = \"isp2\"")
    ));
    assert_invalid(
        &text,
        "forward[2].port",
        "port = 53\nto = \"192.168.50.5\"\nwan = \"isp2\"",
        "udp port 53 on isp2 is already forwarded by forward[1]",
    );
    // Disjoint uplinks, or another protocol, are fine.
    let config = ok(&with(&format!(
        "{}{}{}",
        fw("udp", 53, "wan = \"isp1\""),
        fw("udp", 53, "wan = \"isp2\""),
        fw("tcp", 53, "")
    )));
    assert_eq!(config.forwards.len(), 3);
}

#[test]
fn weight_limits() {
    let set = |w: &str| {
        BASE.replace(
            "gateway = \"198.18.2.1\"",
            &format!("gateway = \"198.18.2.1\"\nweight = {w}"),
        )
    };
    assert_invalid(
        &set("0"),
        "wan[2].weight",
        "weight",
        "0 is out of range (must be from 1 to 1000)",
    );
    assert_invalid(
        &set("1001"),
        "wan[2].weight",
        "weight",
        "1001 is out of range",
    );
    assert_eq!(ok(&set("1000")).wans[1].weight, 1000);
    let priority = BASE.replace(
        "gateway = \"198.18.2.1\"",
        "gateway = \"198.18.2.1\"\npriority = -1",
    );
    assert_invalid(
        &priority,
        "wan[2].priority",
        "priority",
        "-1 is out of range",
    );
}

#[test]
fn zero_timeouts_limits_and_health() {
    for (section, key) in [
        ("timeouts", "tcp_established_s"),
        ("timeouts", "tcp_transitory_s"),
        ("timeouts", "udp_s"),
        ("timeouts", "icmp_s"),
        ("limits", "max_flows"),
        ("health", "interval_ms"),
        ("health", "timeout_ms"),
        ("health", "down_after"),
        ("health", "up_after"),
        ("balance", "sticky_timeout_s"),
    ] {
        assert_invalid(
            &with(&format!("[{section}]\n{key} = 0\n")),
            &format!("{section}.{key}"),
            &format!("{key} = 0"),
            "0 is out of range (must be from 1 to",
        );
    }
    assert_invalid(
        &with("[timeouts]\nudp_s = 4294967296\n"),
        "timeouts.udp_s",
        "udp_s",
        "out of range",
    );
}

#[test]
fn empty_lists() {
    assert_invalid(
        &BASE.replace("\"192.168.50.0/24\"", "[]"),
        "lan.networks",
        "networks",
        "no networks",
    );
    assert_invalid(
        &with("[[rule]]\nsrc = []\naction = \"isp1\"\n"),
        "rule[1].src",
        "src = []",
        "empty list",
    );
    assert_invalid(
        &with("[control]\nsocket = \"\"\n"),
        "control.socket",
        "socket",
        "empty path",
    );
}

#[test]
fn column_is_of_the_offending_value() {
    let text = with("[[rule]]\naction   =   \"nowhere\"\n");
    let e = err(&text);
    assert_eq!(e.column(), Some(14));
    // Columns count characters, not bytes.
    let text = with("[[rule]]\nname = \"é\"\naction = \"isp1\"\nproto = \"x\"\n");
    let e = err(&text);
    assert_eq!(e.key(), Some("rule[1].proto"));
    assert_eq!(e.column(), Some(9));
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let dir = std::env::temp_dir().join(format!("xwan-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("good.toml");
    std::fs::write(&file, BASE).unwrap();
    let loaded = Config::load(&file);
    let missing = Config::load(&dir.join("absent.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded.unwrap(), ok(BASE));
    let e = missing.unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("absent.toml: cannot read"), "{e}");
}

/// Whatever the text, loading returns: a config that satisfies the model's
/// promises, or one clean line whose location lies inside the text.
fn assert_sane_outcome(text: &str) {
    match load(text) {
        Ok(config) => {
            assert!((2..=MAX_UPLINKS).contains(&config.wans.len()));
            assert!(!config.lan.networks.is_empty());
            assert!(config.nat.ports.len() >= MIN_NAT_PORTS);
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("xwan.toml:"), "{shown}");
            assert!(!shown.contains('\n'), "{shown}");
            let line = e.line().expect("a location");
            assert!(
                line >= 1 && line <= text.lines().count().max(1) + 1,
                "{shown}"
            );
            assert!(e.column().is_some_and(|c| c >= 1), "{shown}");
        }
    }
}

mod robustness {
    use proptest::prelude::*;

    use super::{assert_sane_outcome, EXAMPLE};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            assert_sane_outcome(&text);
        }

        #[test]
        fn edited_example_never_panics(
            at in 0usize..2000,
            cut in 0usize..12,
            insert in "[\\[\\]=\"',.{}\\n 0-9a-z#/:-]{0,8}",
        ) {
            let chars: Vec<char> = EXAMPLE.chars().collect();
            let at = at % chars.len();
            let end = (at + cut).min(chars.len());
            let text: String = chars[..at]
                .iter()
                .chain(insert.chars().collect::<Vec<_>>().iter())
                .chain(chars[end..].iter())
                .collect();
            assert_sane_outcome(&text);
        }
    }
}

#[test]
fn lan_address_and_mtus() {
    let text = BASE
        .replace(
            "networks = \"192.168.50.0/24\"",
            "networks = \"192.168.50.0/24\"\naddress = \"192.168.50.1\"\nmtu = 9000",
        )
        .replacen(
            "gateway = \"198.18.1.1\"",
            "gateway = \"198.18.1.1\"\nmtu = 1492",
            1,
        );
    let config = ok(&text);
    assert_eq!(config.lan.address, Some(ip("192.168.50.1")));
    assert_eq!(config.lan.mtu, Some(9000));
    assert_eq!(config.wans[0].mtu, Some(1492));
    assert_eq!(config.wans[1].mtu, None);
    let shown = config.to_string();
    assert!(shown.contains("address 192.168.50.1  mtu 9000"), "{shown}");
    assert!(shown.contains("mtu 1492"), "{shown}");
    for bad in ["10.0.0.1", "192.168.50.0", "192.168.50.255", "nowhere"] {
        let text = BASE.replace(
            "networks = \"192.168.50.0/24\"",
            &format!("networks = \"192.168.50.0/24\"\naddress = \"{bad}\""),
        );
        let message = if bad == "nowhere" {
            "is not an IPv4 address"
        } else {
            "is not a host address inside a LAN network (192.168.50.0/24)"
        };
        assert_invalid(
            &text,
            "lan.address",
            &format!("address = \"{bad}\""),
            message,
        );
    }
    for mtu in [575, 9217, -1] {
        let text = BASE.replace(
            "networks = \"192.168.50.0/24\"",
            &format!("networks = \"192.168.50.0/24\"\nmtu = {mtu}"),
        );
        assert_invalid(
            &text,
            "lan.mtu",
            "mtu =",
            "out of range (must be from 576 to 9216)",
        );
    }
    let text = BASE.replacen(
        "gateway = \"198.18.2.1\"",
        "gateway = \"198.18.2.1\"\nmtu = 100",
        1,
    );
    assert_invalid(&text, "wan[2].mtu", "mtu = 100", "100 is out of range");
}

#[test]
fn dataplane_offload_forms() {
    assert_eq!(ok(BASE).dataplane.offload, Offload::Auto);
    assert!(ok(BASE)
        .to_string()
        .contains("\nOffload   auto (established flows forwarded in the kernel)\n"));
    assert_eq!(
        ok(&with("[dataplane]\noffload = \"off\"\n"))
            .dataplane
            .offload,
        Offload::Off
    );
    assert_eq!(
        ok(&with("[dataplane]\noffload = \"auto\"\n"))
            .dataplane
            .offload,
        Offload::Auto
    );
    let tc = ok(&with("[dataplane]\noffload = \"tc\"\n"));
    assert_eq!(tc.dataplane.offload, Offload::Tc);
    assert!(tc
        .to_string()
        .contains("\nOffload   tc (established flows forwarded in the kernel, by TC only)\n"));
    assert_invalid(
        &with("[dataplane]\noffload = \"on\"\n"),
        "dataplane.offload",
        "offload",
        "\"on\" is not an offload setting",
    );
}

#[test]
fn mss_clamp_forms() {
    assert_eq!(
        ok(&with("[nat]\nmss_clamp = 1452\n")).nat.mss_clamp,
        MssClamp::Fixed(1452)
    );
    let auto = ok(&with("[nat]\nmss_clamp = \"auto\"\n"));
    assert_eq!(auto.nat.mss_clamp, MssClamp::Auto);
    assert!(auto.to_string().contains("MSS clamped to the MTU"));
    assert_eq!(
        ok(&with("[nat]\nmss_clamp = \"off\"\n")).nat.mss_clamp,
        MssClamp::Off
    );
    assert_invalid(
        &with("[nat]\nmss_clamp = 100\n"),
        "nat.mss_clamp",
        "mss_clamp",
        "100 is out of range (must be from 536 to 9176)",
    );
    assert_invalid(
        &with("[nat]\nmss_clamp = \"pmtu\"\n"),
        "nat.mss_clamp",
        "mss_clamp",
        "\"pmtu\" is not an MSS",
    );
}

#[test]
fn max_flows_per_host_zero_means_no_limit() {
    let config = ok(&with("[limits]\nmax_flows_per_host = 0\n"));
    assert_eq!(config.limits.max_flows_per_host, 0);
    assert!(config.to_string().contains("Limits    1048576 flows\n"));
    let config = ok(&with("[limits]\nmax_flows_per_host = 100\n"));
    assert_eq!(config.limits.max_flows_per_host, 100);
    assert!(config.to_string().contains("100 per LAN host"));
    assert_invalid(
        &with("[limits]\nmax_flows_per_host = -5\n"),
        "limits.max_flows_per_host",
        "max_flows_per_host",
        "-5 is out of range (must be from 0 to 4294967295)",
    );
}

#[test]
fn health_reliability_and_hook() {
    let config = ok(&format!(
        "{BASE}\n[health]\nreliability = 2\nhook = \"logger -t xwan $XWAN_UPLINK $XWAN_STATE\"\n"
    ));
    assert_eq!(config.health.reliability, 2);
    assert_eq!(
        config.health.hook.as_deref(),
        Some("logger -t xwan $XWAN_UPLINK $XWAN_STATE")
    );
    let e = err(&format!("{BASE}\n[health]\nhook = \"  \"\n"));
    assert_eq!(e.key(), Some("health.hook"));
    let e = err(&format!("{BASE}\n[health]\nreliability = 0\n"));
    assert_eq!(e.key(), Some("health.reliability"));
}

#[test]
fn control_metrics_is_off_unless_set() {
    assert_eq!(ok(BASE).control.metrics, None);
    let config = ok(&with("[control]\nmetrics = \"127.0.0.1:9847\"\n"));
    assert_eq!(
        config.control.metrics,
        Some("127.0.0.1:9847".parse().unwrap())
    );
    assert!(config
        .to_string()
        .contains("metrics on http://127.0.0.1:9847/metrics"));
    let config = ok(&with("[control]\nmetrics = \"[::1]:9100\"\n"));
    assert_eq!(config.control.metrics, Some("[::1]:9100".parse().unwrap()));
    assert_invalid(
        &with("[control]\nmetrics = \"localhost\"\n"),
        "control.metrics",
        "metrics",
        "\"localhost\" is not an address and port",
    );
    assert_invalid(
        &with("[control]\nmetrics = \"127.0.0.1:0\"\n"),
        "control.metrics",
        "metrics",
        "port 0",
    );
}

#[test]
fn the_status_page_leaves_the_box_only_when_asked() {
    let local = ok(&with("[control]\nmetrics = \"127.0.0.1:9847\"\n"));
    assert!(local.control.page.on && local.control.page.flows);
    assert_eq!(local.control.page.token, None);
    assert!(local
        .to_string()
        .contains("status page on http://127.0.0.1:9847/"));
    let open = ok(&with("[control]\nmetrics = \"0.0.0.0:9847\"\n"));
    assert!(!open.control.page.on && !open.control.page.flows);
    let asked = ok(&with(
        "[control]\nmetrics = \"0.0.0.0:9847\"\npage = true\npage_token = \"abcdefghij-0123456789\"\n",
    ));
    assert!(asked.control.page.on && !asked.control.page.flows);
    assert_eq!(
        asked.control.page.token.as_deref(),
        Some("abcdefghij-0123456789")
    );
    assert!(asked
        .to_string()
        .contains("status page on http://0.0.0.0:9847/ (token)"));
    assert_invalid(
        &with("[control]\nmetrics = \"0.0.0.0:9847\"\npage_token = \"short\"\n"),
        "control.page_token",
        "page_token",
        "at least 16 characters",
    );
    assert_invalid(
        &with("[control]\nmetrics = \"0.0.0.0:9847\"\npage_token = \"abcdefghij+0123456789\"\n"),
        "control.page_token",
        "page_token",
        "a letter, a digit",
    );
}

#[test]
fn control_group_is_resolved_or_refused_with_its_line() {
    assert_eq!(ok(BASE).control.group, None);
    // The root group exists on every Linux system.
    let config = ok(&with("[control]\ngroup = \"root\"\n"));
    assert_eq!(
        config.control.group,
        Some(ControlGroup {
            name: "root".into(),
            gid: 0
        })
    );
    assert!(config.to_string().contains("(group root may read)"));
    let config = ok(&with("[control]\ngroup = \"65534\"\n"));
    assert_eq!(config.control.group.map(|g| g.gid), Some(65534));
    assert_invalid(
        &with("[control]\nsocket = \"/run/xwan.sock\"\ngroup = \"no-such-group-xwan\"\n"),
        "control.group",
        "group",
        "no group \"no-such-group-xwan\" on this system",
    );
    assert_invalid(
        &with("[control]\ngroup = \"\"\n"),
        "control.group",
        "group",
        "empty group name",
    );
}

#[test]
fn dist_example_is_valid() {
    let config = ok(include_str!("../../dist/xwan.toml"));
    let names: Vec<&str> = config.wans.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["fibre", "cable"]);
    // The packaged file leaves the NAT range to xwan, and the socket in the
    // unit's RuntimeDirectory.
    assert!(!config.nat.ports_set);
    assert_eq!(config.control.socket, PathBuf::from("/run/xwan/xwan.sock"));
    assert_eq!(config.rules[0].action, Action::Bypass);
    assert_eq!(
        config.control.metrics,
        Some("127.0.0.1:9847".parse().unwrap())
    );
}

#[test]
fn auto_addresses_and_the_local_section() {
    let text = BASE.replacen(
        "address = \"198.18.1.2\"\ngateway = \"198.18.1.1\"",
        "address = \"auto\"\ngateway = \"auto\"",
        1,
    );
    let config = ok(&format!(
        "{text}\n[local]\nuplink = \"balance\"\ntable = 300\n"
    ));
    let wan = &config.wans[0];
    assert!(wan.address_auto && wan.gateway_auto && !wan.resolved());
    assert_eq!(wan.address_text(), "auto (unresolved)");
    assert!(!config.wans[1].address_auto);
    assert_eq!(config.local.uplink, LocalUplink::Balance);
    assert_eq!(config.local.table, 300);
    let mut resolved = wan.clone();
    resolved.address = ip("198.18.1.50");
    resolved.gateway = ip("198.18.1.1");
    assert_eq!(resolved.address_text(), "auto (now 198.18.1.50 on wan1)");
    assert!(resolved.resolved());

    let text = with("\n[local]\nuplink = \"isp9\"\n");
    assert_invalid(&text, "local.uplink", "\"isp9\"", "names no uplink");
    let config = ok(&with(
        "\n[[local.rule]]\nproto = \"tcp\"\ndst = \"203.0.113.0/24\"\ndst_port = \"443,8000-8100\"\nuplink = \"isp2\"\n",
    ));
    assert_eq!(
        config.local.rules,
        vec![LocalRule {
            proto: Proto::Tcp,
            dst: vec![net("203.0.113.0/24")],
            dst_port: vec![
                PortRange { lo: 443, hi: 443 },
                PortRange { lo: 8000, hi: 8100 }
            ],
            uplink: LocalUplink::Uplink(1),
        }]
    );
    let text = with("\n[[local.rule]]\ndst_port = \"53\"\nuplink = \"isp1\"\n");
    assert_invalid(&text, "local.rule[1].dst_port", "\"53\"", "ports need");
    let text = with("\n[local]\ntable = 254\n");
    assert_invalid(&text, "local.table", "254", "");
}

/// BASE with `[wan.health]` keys for the first uplink and `[health]` keys.
fn with_wan_health(wan: &str, global: &str) -> String {
    let first = BASE.replace(
        "gateway = \"198.18.1.1\"\n",
        &format!("gateway = \"198.18.1.1\"\n\n[wan.health]\n{wan}\n"),
    );
    format!("{first}\n[health]\n{global}\n")
}

#[test]
fn wan_health_overrides_health_key_by_key() {
    let config = ok(&with_wan_health(
        "down_after = 1\nfailure_latency_ms = 80\ninitial_state = \"down\"\nhook = \"true\"",
        "interval_ms = 200\nfailure_loss = 20\nrecovery_loss = 5\nhook = \"logger x\"",
    ));
    let (isp1, isp2) = (&config.wans[0].health, &config.wans[1].health);
    assert_eq!(isp2, &config.health, "no overrides: [health] as it is");
    assert_eq!(config.health.interval_ms, 200);
    assert_eq!(
        config.health.loss,
        Some(Trigger {
            failure: 20,
            recovery: 5
        })
    );
    assert_eq!(isp1.interval_ms, 200, "inherited");
    assert_eq!(isp1.loss, config.health.loss, "inherited");
    assert_eq!(isp1.down_after, 1);
    assert_eq!(
        isp1.latency_ms,
        Some(Trigger {
            failure: 80,
            recovery: 40
        }),
        "recovery defaults to half the failure threshold"
    );
    assert!(!isp1.initial_up && config.health.initial_up);
    assert_eq!(isp1.hook.as_deref(), Some("true"));
    let summary = config.to_string();
    assert!(
        summary.contains("down at 20% loss (back at 5%)"),
        "{summary}"
    );
    assert!(
        summary.contains("down at 80 ms (back at 40 ms), starts down"),
        "{summary}"
    );
    // A recovery threshold over [health]'s failure threshold.
    let config = ok(&with_wan_health("recovery_loss = 10", "failure_loss = 20"));
    assert_eq!(
        config.wans[0].health.loss,
        Some(Trigger {
            failure: 20,
            recovery: 10
        })
    );
}

#[test]
fn health_triggers_and_initial_state_errors_name_key_and_line() {
    assert_invalid(
        &with_wan_health("recovery_latency_ms = 50", ""),
        "wan[1].health.recovery_latency_ms",
        "recovery_latency_ms = 50",
        "needs wan[1].health.failure_latency_ms as well",
    );
    assert_invalid(
        &with_wan_health("", "failure_loss = 10\nrecovery_loss = 20"),
        "health.recovery_loss",
        "recovery_loss = 20",
        "20 is above health.failure_loss (10)",
    );
    assert_invalid(
        &with_wan_health("failure_loss = 101", ""),
        "wan[1].health.failure_loss",
        "failure_loss = 101",
        "out of range (must be from 1 to 100)",
    );
    assert_invalid(
        &with_wan_health("initial_state = \"maybe\"", ""),
        "wan[1].health.initial_state",
        "initial_state",
        "\"maybe\" is not a state (up or down)",
    );
    assert_invalid(
        &with_wan_health("down_after = 0", ""),
        "wan[1].health.down_after",
        "down_after = 0",
        "out of range",
    );
    let e = err(&with_wan_health("interval = 5", ""));
    assert_eq!(e.key(), Some("wan[1].health.interval"), "{e}");
    assert!(e.message().contains("unknown key"), "{e}");
}

#[test]
fn probe_targets_icmp_tcp_and_dns() {
    let text = BASE.replace(
        "gateway = \"198.18.1.1\"\n",
        "gateway = \"198.18.1.1\"\nprobe = [\"198.18.11.2\", \"tcp://198.18.11.2:443\", \"dns://9.9.9.9/example.com.\"]\n",
    );
    let config = ok(&text);
    assert_eq!(
        config.wans[0].probe,
        vec![
            ProbeTarget::Icmp(ip("198.18.11.2").into()),
            ProbeTarget::Tcp("198.18.11.2:443".parse().unwrap()),
            ProbeTarget::Dns {
                server: ip("9.9.9.9").into(),
                name: "example.com".into()
            },
        ]
    );
    assert!(config
        .to_string()
        .contains("probes 198.18.11.2, tcp://198.18.11.2:443, dns://9.9.9.9/example.com"));
    for (bad, message) in [
        ("tcp://198.18.11.2", "is not a TCP probe"),
        ("tcp://198.18.11.2:0", "is not a TCP probe"),
        ("dns://9.9.9.9", "is not a DNS probe"),
        ("dns://9.9.9.9/bad name", "is not a DNS probe"),
        ("icmp://1.2.3.4", "not an IPv4 address"),
        ("tcp://[2001:db8::1]", "is not a TCP probe"),
        ("dns://[2001:db8::1/example.com", "is not a DNS probe"),
    ] {
        let text = BASE.replace(
            "gateway = \"198.18.2.1\"\n",
            &format!("gateway = \"198.18.2.1\"\nprobe = [\"1.1.1.1\", \"{bad}\"]\n"),
        );
        assert_invalid(&text, "wan[2].probe[2]", bad, message);
    }
}

fn kernel(lo: u16, hi: u16) -> PortRange {
    PortRange { lo, hi }
}

#[test]
fn default_nat_ports_avoid_the_kernels_ephemeral_range() {
    let without_ports = EXAMPLE.replace("[nat]\nports = \"20000-59999\"\n", "[nat]\n");
    assert_ne!(without_ports, EXAMPLE, "the fixture sets [nat] ports");
    let mut nat = ok(&without_ports).nat;
    assert!(!nat.ports_set);
    assert_eq!(nat.ports, DEFAULT_NAT_PORTS);
    // Debian's default 32768-60999: the ports below it stay.
    assert_eq!(
        nat.avoid_kernel_ports(kernel(32768, 60999)),
        Some(DEFAULT_NAT_PORTS)
    );
    assert_eq!(nat.ports, kernel(20000, 32767));

    // The larger side wins; a range clear of the kernel's is kept whole.
    let mut nat = ok(&without_ports).nat;
    assert_eq!(
        nat.avoid_kernel_ports(kernel(21000, 30000)),
        Some(DEFAULT_NAT_PORTS)
    );
    assert_eq!(nat.ports, kernel(30001, 59999));
    let mut nat = ok(&without_ports).nat;
    assert_eq!(nat.avoid_kernel_ports(kernel(60000, 65535)), None);
    assert_eq!(nat.ports, DEFAULT_NAT_PORTS);

    // Too little left: unchanged, so xwan run refuses with its advice.
    let mut nat = ok(&without_ports).nat;
    assert_eq!(nat.avoid_kernel_ports(kernel(20500, 59500)), None);
    assert_eq!(nat.ports, DEFAULT_NAT_PORTS);
}

#[test]
fn a_nat_range_set_in_the_file_is_never_moved() {
    let mut nat = ok(EXAMPLE).nat;
    assert!(nat.ports_set);
    assert_eq!(nat.avoid_kernel_ports(kernel(32768, 60999)), None);
    assert_eq!(nat.ports, kernel(20000, 59999));
}
mod ipv6;

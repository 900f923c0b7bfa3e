//! Tests of the kernel recipe: what it routes, marks and NATs, and that its
//! `nth` cascade gives the shares the policy's balancing gives.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::balance::reduced_weights;
use super::*;
use crate::config::{
    Balance, Control, Dataplane, Forward, Health, Lan, Limits, Local, LocalUplink, MssClamp, Nat,
    Offload, PortRange, ProbeTarget, Timeouts, DEFAULT_HEALTH,
};
use crate::policy::smooth_round_robin;

fn wan(n: u8, weight: u32, priority: u32) -> Wan {
    Wan {
        name: format!("isp{n}"),
        interface: format!("wan{n}"),
        address: Ipv4Addr::new(198, 18, n, 2),
        gateway: Ipv4Addr::new(198, 18, n, 1),
        address_auto: false,
        gateway_auto: false,
        weight,
        priority,
        probe: vec![ProbeTarget::Icmp(Ipv4Addr::new(203, 0, 113, 10))],
        mtu: None,
        health: DEFAULT_HEALTH,
        ipv6: None,
    }
}

fn rule(name: &str, proto: Proto, action: Action) -> Rule {
    Rule {
        name: name.to_string(),
        proto,
        src: Vec::new(),
        dst: Vec::new(),
        src6: Vec::new(),
        dst6: Vec::new(),
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
            networks6: Vec::new(),
            address: None,
            address6: None,
            mtu: None,
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
            ports_set: true,
            mss_clamp: MssClamp::Off,
        },
        health: Health {
            interval_ms: 1000,
            timeout_ms: 500,
            ..DEFAULT_HEALTH
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
            max_flows_per_forward: 0,
            max_flows_per_source: 0,
        },
        control: Control {
            socket: PathBuf::from("/run/xwan.sock"),
            metrics: None,
            state: None,
            checkpoint_s: 0,
            group: None,
            page: crate::config::Page::default(),
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
        assert!(
            has_line(
                &s,
                &format!(
                    "ip route add default via 198.18.{n}.1 dev wan{n} src 198.18.{n}.2 table 10{n}"
                )
            ),
            "{s}"
        );
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
    let config = Config::load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
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
        2 * config.forwards.iter().map(|f| f.wans.len()).sum::<usize>(),
        "from the WAN and, hairpinned, from the LAN"
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
    assert_eq!(s.matches("-j DNAT").count(), 2);
    assert!(s.contains("-i wan2 -d 198.18.2.2 -p tcp --dport 8080 -j DNAT"));
    assert!(s.contains("-i lan0 -d 198.18.2.2 -p tcp --dport 8080 -j DNAT"));
    assert!(has_line(
        &s,
        "iptables -t nat -A POSTROUTING -o lan0 -s 192.168.50.0/24 -d 192.168.50.10 -p tcp --dport 80 \
         -m conntrack --ctstate DNAT --ctorigdst 198.18.2.2 -j SNAT --to-source 198.18.2.2"
    ));
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
    assert!(
        classify[0].contains("--dports 100:101,200:201,300:301,400:401,500:501,600:601,700:701 ")
    );
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
    assert_eq!(smooth_round_robin(&[2, 1]), [0, 1, 0]);
    assert_eq!(smooth_round_robin(&[1, 1]), [0, 1]);
    assert_eq!(smooth_round_robin(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
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

/// The configs the golden scripts in `golden/` were rendered from, before
/// the recipe learnt IPv6: IPv4-only configs must render byte for byte as
/// they did.
fn golden_configs() -> Vec<(&'static str, Config)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testbed/configs/example.toml");
    let file = Config::load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut hashed = with_weights(&[3, 2]);
    hashed.balance.mode = BalanceMode::Hash;
    let mut sticky = example_config();
    sticky.balance.sticky = Sticky::Src;
    let mut many = example_config();
    let mut lan = rule("local", Proto::Any, Action::Bypass);
    lan.dst = vec!["10.0.0.0/8".parse().unwrap()];
    let mut blocked = rule("no-smb", Proto::Tcp, Action::Drop);
    blocked.dst_port = vec![ports(445, 445), ports(137, 139)];
    let mut ping = rule("ping", Proto::Icmp, Action::Uplink(0));
    ping.src = vec!["192.168.50.0/25".parse().unwrap()];
    many.rules.extend([lan, blocked, ping]);
    vec![
        ("example", example_config()),
        ("testbed_example", file),
        ("hash", hashed),
        ("sticky", sticky),
        ("rules", many),
    ]
}

#[test]
fn ipv4_only_configs_render_byte_for_byte_as_before_ipv6() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/kernel_script/golden");
    for (name, config) in golden_configs() {
        let path = format!("{dir}/{name}.sh");
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let now = render(&config);
        if now != golden {
            let first = now
                .lines()
                .zip(golden.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(now.lines().count().min(golden.lines().count()));
            panic!(
                "{name}: differs from {path} at line {}:\n  now:    {:?}\n  before: {:?}",
                first + 1,
                now.lines().nth(first),
                golden.lines().nth(first)
            );
        }
        assert!(!now.contains("ip6tables") && !now.contains("ip -6") && !now.contains("nft "));
    }
}

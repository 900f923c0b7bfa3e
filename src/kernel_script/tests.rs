//! Tests of the kernel recipe: what it routes, marks and NATs, and that its
//! `nth` cascade gives the shares the policy's balancing gives.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::balance::reduced_weights;
use super::*;
use crate::config::{
    Balance, Control, Dataplane, Forward, Health, Lan, Limits, Local, LocalUplink, MssClamp, Nat,
    Nat6, Offload, PortRange, ProbeTarget, Timeouts, Wan6, DEFAULT_HEALTH,
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
        probe: vec![ProbeTarget::Icmp(Ipv4Addr::new(203, 0, 113, 10).into())],
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
        forwards6: Vec::new(),
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

// ---- IPv6 ----

fn net6(s: &str) -> ipnet::Ipv6Net {
    s.parse().unwrap()
}

fn wan6(nat: Nat6, prefix: Option<&str>) -> Wan6 {
    Wan6 {
        address: std::net::Ipv6Addr::UNSPECIFIED,
        address_auto: false,
        gateway: "fe80::1".parse().unwrap(),
        gateway_auto: false,
        prefix: prefix.map(net6),
        prefix_auto: false,
        nat,
    }
}

/// The testbed's dual-stack config (`config_toml_dual`): isp1 maps the LAN
/// into its delegated /56 (gateway and address "auto", from RAs), isp2
/// masquerades to its one address.
fn dual_config() -> Config {
    let mut c = example_config();
    c.lan.networks6 = vec![net6("fd00:50::/64")];
    c.wans[0].ipv6 = Some(Wan6 {
        address_auto: true,
        gateway: std::net::Ipv6Addr::UNSPECIFIED,
        gateway_auto: true,
        ..wan6(Nat6::Prefix, Some("2001:db8:100::/56"))
    });
    c.wans[1].ipv6 = Some(Wan6 {
        address: "2001:db8:2::2".parse().unwrap(),
        ..wan6(Nat6::Masquerade, None)
    });
    c
}

/// The script's lines starting with `prefix`.
fn lines_with<'a>(script: &'a str, prefix: &str) -> Vec<&'a str> {
    script.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn nat6_prefix_renders_nftables_prefix_nat_both_ways() {
    let mut c = dual_config();
    c.lan.networks6 = vec![net6("fd00:0:0:50::/64")];
    let s = render(&c);
    let body: Vec<&str> = s
        .lines()
        .skip_while(|l| *l != "nft -f - <<'NFT'")
        .take_while(|l| *l != "NFT")
        .collect();
    assert_eq!(
        body,
        [
            "nft -f - <<'NFT'",
            "table ip6 xwan_nat66 {",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            "\t\toifname \"wan1\" ip6 saddr fd00:0:0:50::/64 snat ip6 prefix to 2001:db8:100:50::/64",
            "\t}",
            "\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;",
            "\t\tiifname \"wan1\" ip6 daddr 2001:db8:100:50::/64 dnat ip6 prefix to fd00:0:0:50::/64",
            "\t}",
            "}",
        ],
        "{s}"
    );
    assert!(has_line(&s, "NFT"));
    // A rerun starts from no table; the masquerading uplink is not in it.
    let delete = position(
        &s,
        "nft delete table ip6 xwan_nat66 2>/dev/null || :  # absent on a first run",
    );
    assert!(delete < position(&s, "nft -f - <<'NFT'"));
    assert!(!body.iter().any(|l| l.contains("wan2")));
    // Inbound connections to a mapped address are DNAT: the filter passes them.
    assert!(has_line(
        &s,
        "ip6tables -A FORWARD -i wan1 -m conntrack --ctstate NEW -m conntrack ! --ctstate DNAT -j DROP"
    ));

    // The testbed's LAN, fd00:50::/64, keeps subnet byte 0.
    let s = render(&dual_config());
    assert!(s.contains(
        "oifname \"wan1\" ip6 saddr fd00:50::/64 snat ip6 prefix to 2001:db8:100::/64\n"
    ));
    assert!(s.contains(
        "iifname \"wan1\" ip6 daddr 2001:db8:100::/64 dnat ip6 prefix to fd00:50::/64\n"
    ));
}

#[test]
fn nat6_prefix_maps_every_lan_prefix() {
    let mut c = dual_config();
    c.lan.networks6 = vec![net6("fd00:0:0:1::/64"), net6("fd00:0:0:2::/64")];
    let s = render(&c);
    for k in 1..=2 {
        assert!(s.contains(&format!(
            "\t\toifname \"wan1\" ip6 saddr fd00:0:0:{k}::/64 snat ip6 prefix to 2001:db8:100:{k}::/64\n"
        )));
        assert!(s.contains(&format!(
            "\t\tiifname \"wan1\" ip6 daddr 2001:db8:100:{k}::/64 dnat ip6 prefix to fd00:0:0:{k}::/64\n"
        )));
    }
}

#[test]
fn nat6_npt_renders_snpt_and_dnpt_with_the_inbound_side_untracked() {
    let mut c = dual_config();
    c.wans[0].ipv6.as_mut().unwrap().nat = Nat6::Npt;
    let s = render(&c);
    for line in [
        "ip6tables -t raw -A PREROUTING -i wan1 -d 2001:db8:100::/64 -j NOTRACK",
        "ip6tables -t mangle -I PREROUTING -i wan1 -d 2001:db8:100::/64 -j DNPT --src-pfx 2001:db8:100::/64 --dst-pfx fd00:50::/64",
        "ip6tables -t mangle -A POSTROUTING -o wan1 -s fd00:50::/64 -j SNPT --src-pfx fd00:50::/64 --dst-pfx 2001:db8:100::/64",
    ] {
        assert!(has_line(&s, line), "missing {line}\n{s}");
    }
    assert!(!s.contains("nft -f"), "no prefix uplink, no nftables table");
    assert!(s.contains("# nat6 = \"npt\" uses the kernel's stateless SNPT/DNPT"));
    // The DNPT rule is inserted after the marking (which it must precede).
    assert!(
        position(&s, "ip6tables -t mangle -A PREROUTING -j CONNMARK --restore-mark")
            < position(&s, "ip6tables -t mangle -I PREROUTING -i wan1 -d 2001:db8:100::/64 -j DNPT --src-pfx 2001:db8:100::/64 --dst-pfx fd00:50::/64")
    );
}

#[test]
fn nat6_masquerade_snats_to_the_address_or_masquerades_an_auto_one() {
    let s = render(&dual_config());
    assert_eq!(
        lines_with(&s, "ip6tables -t nat -A POSTROUTING"),
        [
            "ip6tables -t nat -A POSTROUTING -o wan2 -s fd00:50::/64 -p tcp -j SNAT --to-source [2001:db8:2::2]:1024-65535",
            "ip6tables -t nat -A POSTROUTING -o wan2 -s fd00:50::/64 -p udp -j SNAT --to-source [2001:db8:2::2]:1024-65535",
            "ip6tables -t nat -A POSTROUTING -o wan2 -s fd00:50::/64 -j SNAT --to-source 2001:db8:2::2",
        ]
    );
    let mut c = dual_config();
    let v6 = c.wans[1].ipv6.as_mut().unwrap();
    v6.address = std::net::Ipv6Addr::UNSPECIFIED;
    v6.address_auto = true;
    let s = render(&c);
    assert_eq!(
        lines_with(&s, "ip6tables -t nat -A POSTROUTING"),
        [
            "ip6tables -t nat -A POSTROUTING -o wan2 -s fd00:50::/64 -p tcp -j MASQUERADE --to-ports 1024-65535",
            "ip6tables -t nat -A POSTROUTING -o wan2 -s fd00:50::/64 -p udp -j MASQUERADE --to-ports 1024-65535",
            "ip6tables -t nat -A POSTROUTING -o wan2 -s fd00:50::/64 -j MASQUERADE",
        ]
    );
}

#[test]
fn nat6_off_translates_nothing_and_lets_the_routed_lan_be_reached() {
    let mut c = dual_config();
    c.lan.networks6 = vec![net6("2001:db8:100:50::/64")];
    c.wans[0].ipv6.as_mut().unwrap().nat = Nat6::Off;
    let s = render(&c);
    assert!(!s.contains("nft -f") && !s.contains("SNPT") && !s.contains("-o wan1 -s 2001"));
    assert!(s.contains("# isp1: nat6 = \"off\": no translation"));
    assert!(!s.contains("ip6tables -A FORWARD -i wan1 "));
    assert!(has_line(
        &s,
        "ip6tables -A FORWARD -i wan2 -m conntrack --ctstate NEW -m conntrack ! --ctstate DNAT -j DROP"
    ));
}

#[test]
fn ipv6_routes_by_the_same_marks_in_ipv6_tables() {
    let s = render(&dual_config());
    for line in [
        "ip -6 rule add priority 1000 lookup main suppress_prefixlength 0",
        "ip -6 route add default via \"$gateway6_1\" dev wan1 src \"$address6_1\" table 101",
        "ip -6 rule add priority 1101 fwmark 1 table 101",
        "ip -6 rule add priority 1201 from \"$address6_1\" table 101",
        "ip -6 route add default via fe80::1 dev wan2 src 2001:db8:2::2 table 102",
        "ip -6 rule add priority 1102 fwmark 2 table 102",
        "ip -6 rule add priority 1202 from 2001:db8:2::2 table 102",
        "ip6tables -t mangle -A PREROUTING -i wan1 -m conntrack --ctstate NEW -j MARK --set-mark 1",
        "ip6tables -t mangle -A PREROUTING -i lan0 -m conntrack --ctstate NEW -m addrtype --dst-type UNICAST -m addrtype ! --dst-type LOCAL -j XWAN_CLASSIFY",
        "ip6tables -t mangle -A OUTPUT -j CONNMARK --restore-mark",
    ] {
        assert!(has_line(&s, line), "missing {line}\n{s}");
    }
    // The IPv4 part comes first, whole.
    assert!(
        position(
            &s,
            "iptables -t mangle -A OUTPUT -j CONNMARK --restore-mark"
        ) < position(&s, "ip6tables -t mangle -F")
    );
    // isp1's RA route serves unmarked IPv6; no static default is added.
    assert!(!s.contains("ip -6 route replace default"));
    let mut c = dual_config();
    c.wans.swap(0, 1);
    let s = render(&c);
    assert!(has_line(
        &s,
        "ip -6 route replace default via fe80::1 dev wan2 metric 512"
    ));
}

#[test]
fn auto_gateway6_and_address6_are_read_when_the_script_runs() {
    let s = render(&dual_config());
    let accept_ra = position(&s, "sysctl -qw net.ipv6.conf.wan1.accept_ra=2");
    let forwarding = position(&s, "sysctl -qw net.ipv6.conf.all.forwarding=1");
    assert!(
        accept_ra < forwarding,
        "forwarding on drops RA routes without accept_ra=2"
    );
    assert!(!s.contains("net.ipv6.conf.wan2.accept_ra"));
    let read = position(
        &s,
        "gateway6_1=$(ip -6 route show default dev wan1 | awk '$1 == \"default\" && $2 == \"via\" { print $3; exit }')",
    );
    let used = position(
        &s,
        "ip -6 route add default via \"$gateway6_1\" dev wan1 src \"$address6_1\" table 101",
    );
    assert!(read < used);
    assert!(s.contains("address6_1=$(ip -6 -o addr show dev wan1 scope global"));
    assert!(s.contains("[[ -n $gateway6_1 ]] || { echo 'uplink isp1: gateway6 = auto"));
    assert!(!s.contains("gateway6_2") && !s.contains("address6_2"));
}

#[test]
fn rules_with_prefixes_of_one_family_stay_in_that_family() {
    let mut c = dual_config();
    let mut ula = rule("ula-only", Proto::Any, Action::Uplink(0));
    ula.src6 = vec![net6("fd00::/8")];
    let mut v4 = rule("v4-only", Proto::Tcp, Action::Uplink(0));
    v4.dst = vec!["10.0.0.0/8".parse().unwrap()];
    let mut both = rule("both", Proto::Udp, Action::Bypass);
    both.dst = vec!["192.0.2.0/24".parse().unwrap()];
    both.dst6 = vec![net6("2001:db8:ffff::/48")];
    let mut ping = rule("ping", Proto::Icmp, Action::Uplink(1));
    // Sources of IPv6 only, destinations of IPv4 only: matches neither.
    let mut crossed = rule("crossed", Proto::Any, Action::Drop);
    crossed.src6 = vec![net6("fd00::/8")];
    crossed.dst = vec!["10.0.0.0/8".parse().unwrap()];
    ping.dst_port = Vec::new();
    c.rules = vec![ula, v4, both, ping, crossed];
    let s = render(&c);
    assert_eq!(
        lines_with(&s, "iptables -t mangle -A XWAN_CLASSIFY"),
        [
            "iptables -t mangle -A XWAN_CLASSIFY -p tcp -d 10.0.0.0/8 -g XWAN_UPLINK_1",
            "iptables -t mangle -A XWAN_CLASSIFY -p udp -d 192.0.2.0/24 -j RETURN",
            "iptables -t mangle -A XWAN_CLASSIFY -p icmp -g XWAN_UPLINK_2",
            "iptables -t mangle -A XWAN_CLASSIFY -g XWAN_BALANCE",
        ],
        "a rule with IPv6 sources only must not match every IPv4 source"
    );
    assert_eq!(
        lines_with(&s, "ip6tables -t mangle -A XWAN_CLASSIFY"),
        [
            "ip6tables -t mangle -A XWAN_CLASSIFY -s fd00::/8 -g XWAN_UPLINK_1",
            "ip6tables -t mangle -A XWAN_CLASSIFY -p udp -d 2001:db8:ffff::/48 -j RETURN",
            "ip6tables -t mangle -A XWAN_CLASSIFY -p ipv6-icmp -g XWAN_UPLINK_2",
            "ip6tables -t mangle -A XWAN_CLASSIFY -g XWAN_BALANCE",
        ]
    );
    assert!(s.contains(
        "# rule ula-only: (prefixes of the other family only: no IPv4 connection matches)"
    ));
    assert!(s.contains(
        "# rule v4-only: (prefixes of the other family only: no IPv6 connection matches)"
    ));
}

#[test]
fn ipv6_balances_over_the_uplinks_that_carry_it_only() {
    let mut c = dual_config();
    let mut third = wan(3, 2, 1);
    third.ipv6 = Some(wan6(Nat6::Prefix, Some("2001:db8:300::/48")));
    c.wans.push(third);
    // isp2 is IPv4 only now.
    c.wans[1].ipv6 = None;
    let s = render(&c);
    let cascade6: Vec<(usize, String)> = nth_cascade(
        &s.lines()
            .filter_map(|l| l.strip_prefix("ip6tables "))
            .map(|l| format!("iptables {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let taken = simulate_nth(&cascade6, 30);
    assert_eq!(count(&taken, "XWAN_UPLINK_1"), 10, "{s}");
    assert_eq!(count(&taken, "XWAN_UPLINK_3"), 20);
    assert_eq!(count(&taken, "XWAN_UPLINK_2"), 0);
    assert!(!s.contains("ip6tables -t mangle -N XWAN_UPLINK_2"));
    assert!(!s.contains("ip6tables -t mangle -A PREROUTING -i wan2"));
    assert!(!s.contains("ip -6 rule add priority 1102"));
    // IPv4 still deals over all three: 1, 1 and 2.
    let cascade4: Vec<(usize, String)> = nth_cascade(
        &s.lines()
            .filter(|l| l.starts_with("iptables"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let taken = simulate_nth(&cascade4, 40);
    assert_eq!(count(&taken, "XWAN_UPLINK_2"), 10);
    assert_eq!(count(&taken, "XWAN_UPLINK_3"), 20);
    assert!(s.contains("# uplink isp2 carries no IPv6"));
}

#[test]
fn an_ipv6_rule_pinned_to_an_ipv4_only_uplink_balances_or_drops_if_strict() {
    let mut c = dual_config();
    c.wans[1].ipv6 = None;
    let s = render(&c);
    // https-via-isp2: isp2 has no IPv6.
    assert!(has_line(
        &s,
        "ip6tables -t mangle -A XWAN_CLASSIFY -p tcp --dport 443 -g XWAN_BALANCE"
    ));
    assert!(has_line(
        &s,
        "iptables -t mangle -A XWAN_CLASSIFY -p tcp --dport 443 -g XWAN_UPLINK_2"
    ));
    c.rules[0].strict = true;
    let s = render(&c);
    assert!(has_line(
        &s,
        "ip6tables -t mangle -A XWAN_CLASSIFY -p tcp --dport 443 -g XWAN_DROP"
    ));
    assert!(s.contains("# rule https-via-isp2: uplink isp2, which carries no IPv6: drop (strict)"));
}

#[test]
fn ipv6_sticky_sources_keep_lists_of_their_own() {
    let mut c = dual_config();
    c.balance.sticky = Sticky::Src;
    let s = render(&c);
    assert!(has_line(
        &s,
        "ip6tables -t mangle -A XWAN_STICKY_1 -m recent --name xwan6_up_1 --rsource --set"
    ));
    assert!(has_line(
        &s,
        "iptables -t mangle -A XWAN_STICKY_1 -m recent --name xwan_up_1 --rsource --set"
    ));
}

#[test]
fn ipv6_config_text_cannot_escape_words_or_nftables_strings() {
    let mut c = dual_config();
    c.wans[0].interface = "w\"an1".to_string();
    c.wans[1].interface = "w an'2".to_string();
    let s = render(&c);
    assert!(s.contains("ip6tables -t nat -A POSTROUTING -o 'w an'\\''2' -s fd00:50::/64"));
    assert!(!s.contains("oifname \"w\"an1\""), "{s}");
    assert!(s.contains("nftables cannot name the interface"));
}

#[test]
fn dual_stack_scripts_are_valid_bash() {
    let mut npt = dual_config();
    npt.wans[0].ipv6.as_mut().unwrap().nat = Nat6::Npt;
    let mut hashed = dual_config();
    hashed.balance.mode = BalanceMode::Hash;
    hashed.balance.sticky = Sticky::Src;
    for c in [dual_config(), npt, hashed] {
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

//! The per-host flow limit: one host's SYN flood fills its own share only.

use std::net::Ipv4Addr;

use xwan::router::{DropReason, Port, Verdict};
use xwan::testing::{self, ACK, SYN, SYN_ACK};

use super::*;

#[test]
fn a_hosts_syn_flood_stops_at_its_limit_and_others_carry_on() {
    let mut b = Bench::new("[limits]\nmax_flows = 100\nmax_flows_per_host = 10\n");
    let lan = from_host(HOST, SERVER);
    // Two real connections first.
    let mut established = Vec::new();
    for port in [1000u16, 1001] {
        let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, port, 80, SYN, b""));
        let wan = from_internet(usize::from(uplink), SERVER, out.src);
        b.forward(
            Port::Wan(uplink),
            testing::tcp(&wan, 80, out.src_port, SYN_ACK, b""),
            Port::Lan,
        );
        established.push(port);
    }
    // Then a flood of SYNs from random ports.
    let mut forwarded = 0;
    for port in 2000..3000u16 {
        match b.send(Port::Lan, testing::tcp(&lan, port, 80, SYN, b"")).0 {
            Verdict::Forward { .. } => forwarded += 1,
            Verdict::Drop(DropReason::HostLimit) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(forwarded, 8, "up to the limit of 10");
    let stats = b.router.stats();
    assert_eq!(stats.totals.drop_count(DropReason::HostLimit), 992);
    assert_eq!(stats.table.flows, 10);
    assert_eq!(
        stats.uplinks.iter().map(|u| u.nat_in_use[0]).sum::<usize>(),
        10
    );

    // Another host still gets new flows; the flooder's connections still work.
    let other = from_host(HOST2, SERVER);
    for port in 0..5u16 {
        b.forward_any_wan(testing::udp(&other, 5000 + port, 53, b"q"));
    }
    for port in &established {
        b.forward_any_wan(testing::tcp(&lan, *port, 80, ACK, b"still here"));
    }

    // The unanswered SYNs expire on the transitory timer; the host's share
    // comes back and the established connections stay.
    b.advance(241);
    assert_eq!(b.router.expire(b.now), 8);
    assert_eq!(b.router.stats().limited_hosts, 2);
    for port in 3000..3008u16 {
        b.forward_any_wan(testing::tcp(&lan, port, 80, SYN, b""));
    }
    assert_eq!(
        b.send(Port::Lan, testing::tcp(&lan, 4000, 80, SYN, b"")).0,
        Verdict::Drop(DropReason::HostLimit)
    );
}

const FORWARD_8080: &str = "[[forward]]\nproto = \"udp\"\nport = 8080\nto = \"192.168.50.10:80\"\n";

#[test]
fn a_spoofed_flood_at_a_forward_stops_at_its_limit_and_never_uses_the_hosts_allowance() {
    let mut b = Bench::new(&format!(
        "[limits]\nmax_flows_per_host = 20\nmax_flows_per_forward = 30\n\n{FORWARD_8080}"
    ));
    let mut refused = 0;
    for i in 0..100u16 {
        let spoofed = Ipv4Addr::new(100, 64, (i >> 8) as u8, i as u8);
        let wan = from_internet(0, spoofed, ISP1);
        match b
            .send(Port::Wan(0), testing::udp(&wan, 10000 + i, 8080, b"x"))
            .0
        {
            Verdict::Forward { .. } => {}
            Verdict::Drop(DropReason::ForwardLimit) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 70);
    let stats = b.router.stats();
    assert_eq!(stats.totals.drop_count(DropReason::ForwardLimit), 70);
    assert_eq!(
        stats.limited_hosts, 0,
        "not counted against the target host"
    );
    // The target host, HOST, still opens all of its 20 outbound flows.
    let lan = from_host(HOST, SERVER);
    for port in 0..20u16 {
        b.forward_any_wan(testing::udp(&lan, 30000 + port, 53, b"q"));
    }
    assert_eq!(
        b.send(Port::Lan, testing::udp(&lan, 31000, 53, b"q")).0,
        Verdict::Drop(DropReason::HostLimit)
    );
}

#[test]
fn one_internet_source_has_its_own_bound_through_forwards() {
    let mut b = Bench::new(&format!(
        "[limits]\nmax_flows_per_source = 5\n\n{FORWARD_8080}"
    ));
    let one = from_internet(0, SERVER, ISP1);
    let verdicts: Vec<Verdict> = (0..8u16)
        .map(|i| {
            b.send(Port::Wan(0), testing::udp(&one, 10000 + i, 8080, b"x"))
                .0
        })
        .collect();
    assert!(verdicts[..5]
        .iter()
        .all(|v| matches!(v, Verdict::Forward { .. })));
    assert!(verdicts[5..]
        .iter()
        .all(|v| *v == Verdict::Drop(DropReason::SourceLimit)));
    // Another source is not affected, and a source's flows give their
    // share back when they expire.
    let other = from_internet(0, Ipv4Addr::new(203, 0, 113, 99), ISP1);
    b.forward(Port::Wan(0), testing::udp(&other, 1, 8080, b"x"), Port::Lan);
    b.advance(301);
    b.router.expire(b.now);
    b.forward(
        Port::Wan(0),
        testing::udp(&one, 20000, 8080, b"x"),
        Port::Lan,
    );
}

#[test]
fn a_full_table_evicts_unanswered_attempts_oldest_first_never_established_flows() {
    let mut b = Bench::new("[limits]\nmax_flows = 64\nmax_flows_per_host = 0\n");
    // HOST2 has an established connection.
    let other = from_host(HOST2, SERVER);
    let (uplink, syn) = b.forward_any_wan(testing::tcp(&other, 7000, 80, SYN, b""));
    let wan = from_internet(usize::from(uplink), SERVER, syn.src);
    b.forward(
        Port::Wan(uplink),
        testing::tcp(&wan, 80, syn.src_port, SYN_ACK, b""),
        Port::Lan,
    );
    // HOST floods SYNs far past the table's size: every one gets a flow,
    // pushing out the oldest unanswered ones.
    let lan = from_host(HOST, SERVER);
    for port in 10000..12000u16 {
        let verdict = b.send(Port::Lan, testing::tcp(&lan, port, 80, SYN, b"")).0;
        assert!(
            matches!(verdict, Verdict::Forward { .. }),
            "{port}: {verdict:?}"
        );
    }
    let stats = b.router.stats();
    assert_eq!(stats.table.flows, 64);
    assert!(stats.table.evictions >= 2000 - 63, "{:?}", stats.table);
    assert_eq!(stats.totals.drop_count(DropReason::TableFull), 0);
    // The newest attempts are the ones left, and the established flow.
    assert!(
        b.router
            .flows(b.now, 100, |s| s.inside.port == 11999
                || s.inside.port == 7000)
            .len()
            == 2
    );
    assert!(b
        .router
        .flows(b.now, 100, |s| s.inside.port == 10000)
        .is_empty());
    // HOST2's connection carries on, and it opens a new one at once.
    b.forward(
        Port::Lan,
        testing::tcp(&other, 7000, 80, ACK, b"still here"),
        Port::Wan(uplink),
    );
    b.forward_any_wan(testing::tcp(&other, 7001, 80, SYN, b""));
    // NAT ports and host counts follow the evictions.
    let stats = b.router.stats();
    assert_eq!(
        stats.uplinks.iter().map(|u| u.nat_in_use[0]).sum::<usize>(),
        64
    );
}

#[test]
fn a_table_full_of_established_flows_refuses_and_counts() {
    let mut b = Bench::new("[limits]\nmax_flows = 8\n");
    let lan = from_host(HOST, SERVER);
    for port in 0..8u16 {
        let (uplink, out) = b.forward_any_wan(testing::udp(&lan, 9000 + port, 53, b"q"));
        let wan = from_internet(usize::from(uplink), SERVER, out.src);
        b.forward(
            Port::Wan(uplink),
            testing::udp(&wan, 53, out.src_port, b"a"),
            Port::Lan,
        );
    }
    for port in 0..3u16 {
        assert_eq!(
            b.send(Port::Lan, testing::udp(&lan, 9100 + port, 53, b"q"))
                .0,
            Verdict::Drop(DropReason::TableFull)
        );
    }
    let stats = b.router.stats();
    assert_eq!(stats.table.evictions, 0);
    assert_eq!(stats.table.flows, 8);
}

#[test]
fn zero_means_no_per_host_limit() {
    let mut b = Bench::new("[limits]\nmax_flows_per_host = 0\n");
    let lan = from_host(HOST, SERVER);
    for port in 0..300u16 {
        b.forward_any_wan(testing::udp(&lan, 10000 + port, 53, b"q"));
    }
    assert_eq!(b.router.stats().limited_hosts, 0);
}

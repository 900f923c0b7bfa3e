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

#[test]
fn a_flood_at_a_forwarded_host_is_limited_to_that_host() {
    let mut b = Bench::new(
        "[limits]\nmax_flows_per_host = 20\n\n\
         [[forward]]\nproto = \"tcp\"\nport = 8080\nto = \"192.168.50.10:80\"\n",
    );
    let mut refused = 0;
    for i in 0..100u16 {
        let attacker = Ipv4Addr::new(203, 0, 113, (i % 200) as u8 + 1);
        let wan = from_internet(0, attacker, ISP1);
        if b.send(Port::Wan(0), testing::tcp(&wan, 10000 + i, 8080, SYN, b""))
            .0
            == Verdict::Drop(DropReason::HostLimit)
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 80);
    // HOST2 is not affected.
    b.forward_any_wan(testing::udp(&from_host(HOST2, SERVER), 1, 53, b"q"));
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

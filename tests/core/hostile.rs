use std::net::Ipv4Addr;

use xwan::packet::checksum;
use xwan::router::{DropReason, FrameMeta, KernelReason, Port, Verdict};
use xwan::testing::{self, ACK, RST, SYN, SYN_ACK};

use super::*;

#[test]
fn every_truncation_is_a_counted_drop() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let frames = [
        testing::tcp(&lan, 1000, 80, SYN, b"abc"),
        testing::udp(&lan, 1000, 53, b"abcdef"),
        testing::icmp_echo(&lan, true, 9, 1, b"abcd"),
    ];
    for frame in frames {
        for len in 0..frame.len() {
            let (verdict, _) = b.send(Port::Lan, frame[..len].to_vec());
            assert_eq!(
                verdict,
                Verdict::Drop(DropReason::Malformed),
                "cut at {len}"
            );
            let (verdict, _) = b.send(Port::Wan(0), frame[..len].to_vec());
            assert_eq!(
                verdict,
                Verdict::Drop(DropReason::Malformed),
                "cut at {len}"
            );
        }
    }
    assert!(b.router.stats().totals.drop_count(DropReason::Malformed) > 100);
}

#[test]
fn bad_headers_are_dropped_with_their_reason() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let good = testing::udp(&lan, 1000, 53, b"abcdef");

    let mut bad_checksum = good.clone();
    bad_checksum[14 + 10] ^= 0xff;
    assert_eq!(
        b.send(Port::Lan, bad_checksum).0,
        Verdict::Drop(DropReason::BadIpChecksum)
    );

    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44;
    assert_eq!(
        b.send(Port::Lan, short_ihl).0,
        Verdict::Drop(DropReason::Malformed)
    );

    let mut udp_len = good.clone();
    udp_len[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        b.send(Port::Lan, udp_len).0,
        Verdict::Drop(DropReason::Malformed)
    );

    // A later fragment whose first fragment has not come: held for it.
    let mut fragment = good.clone();
    testing::edit_ip_header(&mut fragment, |h| h[6..8].copy_from_slice(&[0x20, 0x02]));
    assert_eq!(b.send(Port::Lan, fragment).0, Verdict::Taken);
}

#[test]
fn ethernet_padding_is_not_forwarded() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let mut frame = testing::udp(&lan, 1000, 53, b"a");
    let ip_end = frame.len();
    frame.resize(60, 0xee);
    let (verdict, out) = b.send(Port::Lan, frame);
    assert!(
        matches!(verdict, Verdict::Forward { len, .. } if len == ip_end),
        "{verdict:?}"
    );
    assert_eq!(testing::check(&out).unwrap().payload, b"a");
}

#[test]
fn what_is_not_ours_goes_to_the_kernel() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let mut ttl1 = lan;
    ttl1.ttl = 1;
    assert_eq!(
        b.send(Port::Lan, testing::udp(&ttl1, 1, 2, b"x")).0,
        Verdict::Kernel(KernelReason::TtlExpired)
    );
    let to_router = from_host(HOST, Ipv4Addr::new(192, 168, 50, 1));
    assert_eq!(
        b.send(Port::Lan, testing::udp(&to_router, 1, 53, b"x")).0,
        Verdict::Kernel(KernelReason::LocalDestination)
    );
    let outsider = from_host(Ipv4Addr::new(10, 1, 1, 1), SERVER);
    assert_eq!(
        b.send(Port::Lan, testing::udp(&outsider, 1, 53, b"x")).0,
        Verdict::Kernel(KernelReason::NotInside)
    );
    let mut arp = testing::udp(&lan, 1, 2, b"x");
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(
        b.send(Port::Lan, arp).0,
        Verdict::Kernel(KernelReason::NotIpv4)
    );
    let mut vlan = testing::udp(&lan, 1, 2, b"x");
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(
        b.send(Port::Lan, vlan).0,
        Verdict::Kernel(KernelReason::Vlan)
    );

    let internet = from_internet(0, SERVER, ISP1);
    assert_eq!(
        b.send(Port::Wan(0), testing::tcp(&internet, 5000, 22, SYN, b""))
            .0,
        Verdict::Kernel(KernelReason::RouterTraffic),
        "ssh to the router itself"
    );
    assert_eq!(
        b.send(Port::Wan(0), testing::icmp_echo(&internet, true, 1, 1, b""))
            .0,
        Verdict::Kernel(KernelReason::RouterTraffic),
        "ping of the router itself"
    );
    assert_eq!(
        b.send(Port::Wan(0), testing::tcp(&internet, 5000, 30000, SYN, b""))
            .0,
        Verdict::Drop(DropReason::NoMapping),
        "unsolicited to a NAT port"
    );
}

#[test]
fn unsupported_protocols_and_stray_tcp_are_dropped() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let mut gre = testing::udp(&lan, 1, 2, b"x");
    gre[14 + 9] = 47;
    let header: Vec<u8> = {
        let mut h = gre[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    };
    let sum = !checksum::fold(checksum::sum_bytes(0, &header));
    gre[24..26].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(
        b.send(Port::Lan, gre).0,
        Verdict::Drop(DropReason::UnsupportedProtocol)
    );
    assert_eq!(
        b.send(Port::Lan, testing::tcp(&lan, 1000, 80, ACK, b"")).0,
        Verdict::Drop(DropReason::TcpNoFlow)
    );
}

#[test]
fn unresolved_gateway_is_a_counted_drop_never_a_zero_mac() {
    let mut b = Bench::new("[[rule]]\naction = \"isp1\"\n");
    b.router.set_gateway_mac(0, None);
    let lan = from_host(HOST, SERVER);
    assert_eq!(
        b.send(Port::Lan, testing::udp(&lan, 1, 53, b"x")).0,
        Verdict::Drop(DropReason::NeighbourUnresolved)
    );
}

#[test]
fn full_table_refuses_new_flows_and_keeps_established_ones() {
    let mut b = Bench::new("[limits]\nmax_flows = 4\n");
    let lan = from_host(HOST, SERVER);
    let mut established = Vec::new();
    for port in 0..4u16 {
        let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, 3000 + port, 80, SYN, b""));
        let wan = from_internet(usize::from(uplink), SERVER, out.src);
        b.forward(
            Port::Wan(uplink),
            testing::tcp(&wan, 80, out.src_port, SYN_ACK, b""),
            Port::Lan,
        );
        established.push(port);
    }
    for port in 0..50u16 {
        let (verdict, _) = b.send(Port::Lan, testing::tcp(&lan, 5000 + port, 80, SYN, b""));
        assert_eq!(verdict, Verdict::Drop(DropReason::TableFull));
    }
    for port in &established {
        b.forward_any_wan(testing::tcp(&lan, 3000 + port, 80, ACK, b"data"));
    }
    assert_eq!(
        b.router.stats().totals.drop_count(DropReason::TableFull),
        50
    );
    assert_eq!(b.router.stats().table.refusals, 50);
    // A table full of unanswered SYNs makes room at once: the oldest one
    // is evicted (early drop), the rest expire on the transitory timer.
    let mut b = Bench::new("[limits]\nmax_flows = 4\n");
    for port in 0..4u16 {
        b.forward_any_wan(testing::tcp(&lan, 3000 + port, 80, SYN, b""));
    }
    b.forward_any_wan(testing::tcp(&lan, 9000, 80, SYN, b""));
    assert_eq!(b.router.stats().table.evictions, 1);
    assert!(b
        .router
        .flows(b.now, 10, |s| s.inside.port == 3000)
        .is_empty());
    b.advance(241);
    assert_eq!(b.router.expire(b.now), 4);
}

#[test]
fn exhausted_port_pool_is_a_clean_refusal() {
    let mut b = Bench::new(
        "[[rule]]\naction = \"isp1\"\nstrict = true\n\n[nat]\nports = \"30000-30063\"\n",
    );
    for host in 0..64u16 {
        let lan = from_host(Ipv4Addr::new(192, 168, 50, 100 + (host / 32) as u8), SERVER);
        let (_, out) = b.forward_any_wan(testing::udp(&lan, 1000 + host % 32, 53, b"q"));
        assert!((30000..=30063).contains(&out.src_port));
    }
    let lan = from_host(HOST, SERVER);
    assert_eq!(
        b.send(Port::Lan, testing::udp(&lan, 1, 53, b"q")).0,
        Verdict::Drop(DropReason::PortsExhausted)
    );
    let stats = b.router.stats();
    assert_eq!(stats.uplinks[0].nat_in_use[1], 64);
    assert_eq!(stats.table.flows, 64);
}

#[test]
fn inbound_rst_does_not_refresh_the_mapping() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, 4000, 80, SYN, b""));
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    b.advance(200);
    b.forward(
        Port::Wan(uplink),
        testing::tcp(&wan, 80, out.src_port, RST, b""),
        Port::Lan,
    );
    b.advance(41);
    // 241 s since the last packet that refreshed it: past the transitory timer.
    assert_eq!(b.router.expire(b.now), 1);
}

#[test]
fn partial_checksums_come_out_complete() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    for frame in [
        testing::tcp(&lan, 1000, 80, SYN, b"hello"),
        testing::udp(&lan, 1000, 53, b"hello"),
    ] {
        let mut frame = with_partial_checksum(frame);
        assert!(
            testing::check(&frame).is_err(),
            "the partial checksum is not a valid one"
        );
        let verdict = b.router.process(
            &mut b.lane,
            &mut frame,
            FrameMeta {
                port: Port::Lan,
                now: b.now,
                checksum_partial: true,
                gso: None,
            },
        );
        assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
        testing::check(&frame).unwrap();
    }
}

/// Over AF_XDP nothing says a checksum is partial: the core recognises the
/// pseudo-header-only value itself and completes it.
#[test]
fn partial_checksums_are_recognised_without_a_flag() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    for frame in [
        testing::tcp(&lan, 1000, 80, SYN, b"hello"),
        testing::udp(&lan, 1000, 53, b"hello"),
    ] {
        let (verdict, out) = b.send(Port::Lan, with_partial_checksum(frame));
        assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
        testing::check(&out).unwrap();
    }
}

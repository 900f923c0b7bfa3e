//! Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): a LAN host reaching another
//! through a port forwarded on a WAN address.

use std::net::Ipv4Addr;

use xwan::flow::FlowKind;
use xwan::router::{DropReason, KernelReason, Port, Verdict};
use xwan::testing::{self, ACK, SYN, SYN_ACK};

use super::*;

/// TCP 8080 and UDP 5353 on isp1 forwarded to HOST2; new flows leave by isp1.
fn bench() -> Bench {
    Bench::new(
        r#"
[[rule]]
action = "isp1"

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.11:80"
wan = "isp1"

[[forward]]
proto = "udp"
port = 5353
to = "192.168.50.11:53"
wan = "isp1"
"#,
    )
}

#[test]
fn a_lan_host_reaches_another_through_a_forward_and_sees_its_outside_address() {
    let mut b = bench();
    // HOST talks to the Internet from port 40000 first: its mapping on isp1.
    let lan = from_host(HOST, SERVER);
    let (_, out) = b.forward_any_wan(testing::tcp(&lan, 40000, 443, SYN, b""));
    let outside = (out.src, out.src_port);
    assert_eq!(outside.0, ISP1);

    // Then to its own router's WAN address, forwarded port.
    let to_wan = from_host(HOST, ISP1);
    let syn = b.forward(
        Port::Lan,
        testing::tcp(&to_wan, 40000, 8080, SYN, b""),
        Port::Lan,
    );
    assert_eq!((syn.dst, syn.dst_port), (HOST2, 80), "DNAT to the target");
    assert_eq!(
        (syn.src, syn.src_port),
        outside,
        "the target sees the outside address"
    );
    assert_eq!((syn.src_mac, syn.dst_mac), (LAN_MAC, HOST2_MAC));
    assert_eq!(syn.ttl, 63);

    // The target answers its peer, the WAN address, through the router.
    let target = from_host(HOST2, ISP1);
    let syn_ack = b.forward(
        Port::Lan,
        testing::tcp(&target, 80, outside.1, SYN_ACK, b""),
        Port::Lan,
    );
    assert_eq!((syn_ack.src, syn_ack.src_port), (ISP1, 8080));
    assert_eq!((syn_ack.dst, syn_ack.dst_port), (HOST, 40000));
    assert_eq!(syn_ack.dst_mac, HOST_MAC);

    let data = b.forward(
        Port::Lan,
        testing::tcp(&to_wan, 40000, 8080, ACK, b"GET /"),
        Port::Lan,
    );
    assert_eq!(data.payload, b"GET /");
    let body = vec![0x5a; 1200];
    let reply = b.forward(
        Port::Lan,
        testing::tcp(&target, 80, outside.1, ACK, &body),
        Port::Lan,
    );
    assert_eq!(reply.payload, body);

    let hairpinned: Vec<_> = b
        .router
        .flows(b.now, 10, |s| matches!(s.kind, FlowKind::Hairpin { .. }))
        .into_iter()
        .collect();
    assert_eq!(hairpinned.len(), 1);
    assert_eq!(hairpinned[0].spec.kind, FlowKind::Hairpin { port: 8080 });
    assert_eq!(
        xwan::flow::tcp_state::name(hairpinned[0].tcp),
        "established"
    );
    assert_eq!(hairpinned[0].packets, [2, 2]);
}

#[test]
fn udp_hairpin_and_icmp_errors_inside_it() {
    let mut b = bench();
    let to_wan = from_host(HOST, ISP1);
    let (_, delivered) = b.send(Port::Lan, testing::udp(&to_wan, 6000, 5353, b"query"));
    let seen = testing::check(&delivered).unwrap();
    assert_eq!((seen.src, seen.dst, seen.dst_port), (ISP1, HOST2, 53));
    let client_outside = seen.src_port;

    // The target has nothing on port 53: its error reaches the client,
    // quoting the client's datagram as the client sent it.
    let error = testing::icmp_error(&from_host(HOST2, ISP1), 3, 3, [0; 4], &delivered[14..]);
    let (verdict, back) = b.send(Port::Lan, error);
    assert!(
        matches!(
            verdict,
            Verdict::Forward {
                port: Port::Lan,
                ..
            }
        ),
        "{verdict:?}"
    );
    let (outer, _, quote) = testing::check_icmp_error(&back).unwrap();
    assert_eq!(
        (outer.src, outer.dst, outer.dst_mac),
        (ISP1, HOST, HOST_MAC)
    );
    assert_eq!(
        (quote.src, quote.src_port, quote.dst, quote.dst_port),
        (HOST, 6000, ISP1, 5353)
    );

    // The target's answer, and the client's error about it going to the target.
    let (_, answer) = b.send(
        Port::Lan,
        testing::udp(&from_host(HOST2, ISP1), 53, client_outside, b"answer"),
    );
    let seen = testing::check(&answer).unwrap();
    assert_eq!(
        (seen.src, seen.src_port, seen.dst, seen.dst_port),
        (ISP1, 5353, HOST, 6000)
    );
    let error = testing::icmp_error(&from_host(HOST, ISP1), 3, 3, [0; 4], &answer[14..]);
    let (verdict, back) = b.send(Port::Lan, error);
    assert!(
        matches!(
            verdict,
            Verdict::Forward {
                port: Port::Lan,
                ..
            }
        ),
        "{verdict:?}"
    );
    let (outer, _, quote) = testing::check_icmp_error(&back).unwrap();
    assert_eq!(
        (outer.src, outer.dst, outer.dst_mac),
        (ISP1, HOST2, HOST2_MAC)
    );
    assert_eq!(
        (quote.src, quote.src_port, quote.dst, quote.dst_port),
        (HOST2, 53, ISP1, client_outside)
    );
}

#[test]
fn what_is_not_a_hairpin_on_a_wan_address() {
    let mut b = bench();
    let to_wan = from_host(HOST, ISP1);
    // The router's own services on its WAN address.
    assert_eq!(
        b.send(Port::Lan, testing::tcp(&to_wan, 5000, 22, SYN, b""))
            .0,
        Verdict::Kernel(KernelReason::LocalDestination)
    );
    assert_eq!(
        b.send(Port::Lan, testing::icmp_echo(&to_wan, true, 1, 1, b""))
            .0,
        Verdict::Kernel(KernelReason::LocalDestination)
    );
    // A NAT port with no hairpinned flow behind it.
    assert_eq!(
        b.send(Port::Lan, testing::udp(&to_wan, 5000, 30000, b"x"))
            .0,
        Verdict::Drop(DropReason::NoMapping)
    );
    // The forward is on isp1 only.
    let to_isp2 = from_host(HOST, ISP2);
    assert_eq!(
        b.send(Port::Lan, testing::tcp(&to_isp2, 5000, 8080, SYN, b""))
            .0,
        Verdict::Kernel(KernelReason::LocalDestination)
    );
    // A target whose MAC is unknown: nothing is created and it is asked for.
    let mut b =
        Bench::new("[[forward]]\nproto = \"tcp\"\nport = 8080\nto = \"192.168.50.99:80\"\n");
    assert_eq!(
        b.send(Port::Lan, testing::tcp(&to_wan, 5000, 8080, SYN, b""))
            .0,
        Verdict::Drop(DropReason::NeighbourUnresolved)
    );
    assert_eq!(b.router.stats().table.flows, 0);
    assert_eq!(
        b.router.unresolved_lan_hosts(),
        vec![Ipv4Addr::new(192, 168, 50, 99)]
    );
}

#[test]
fn a_hairpinned_flow_expires_and_gives_its_mapping_back() {
    let mut b = bench();
    let to_wan = from_host(HOST, ISP1);
    b.forward(
        Port::Lan,
        testing::udp(&to_wan, 6000, 5353, b"query"),
        Port::Lan,
    );
    assert_eq!(b.router.stats().uplinks[0].nat_in_use[1], 1);
    b.advance(301);
    assert_eq!(b.router.expire(b.now), 1);
    let stats = b.router.stats();
    assert_eq!(stats.uplinks[0].nat_in_use, [0, 0, 0]);
    assert_eq!(stats.uplinks[0].flows, 0);
}

#[test]
fn frames_from_the_internet_with_lan_sources_are_dropped() {
    let mut b = bench();
    let spoofed = from_internet(0, HOST2, ISP1);
    assert_eq!(
        b.send(
            Port::Wan(0),
            testing::tcp(&spoofed, 80, 30000, SYN_ACK, b"")
        )
        .0,
        Verdict::Drop(DropReason::SpoofedSource)
    );
    assert_eq!(
        b.send(Port::Wan(0), testing::tcp(&spoofed, 80, 8080, SYN, b""))
            .0,
        Verdict::Drop(DropReason::SpoofedSource)
    );
}

#[test]
fn out_of_order_fragments_to_a_forward_are_held_and_hairpinned_whole() {
    let mut b = bench();
    let to_wan = from_host(HOST, ISP1);
    let payload: Vec<u8> = (0..2000u32).map(|i| (i * 7) as u8).collect();
    let pieces = testing::fragment(&testing::udp(&to_wan, 6000, 5353, &payload), 0x4242, 512);
    assert_eq!(pieces.len(), 4);
    hold_all(&mut b, Port::Lan, &[pieces[3].clone(), pieces[1].clone()]);
    let mut out = forward_all(&mut b, Port::Lan, &pieces[..1], Port::Lan);
    for (port, frame) in b.also_sent() {
        assert_eq!(port, Port::Lan);
        out.push(frame);
    }
    assert_eq!(out.len(), 3, "the two held ones follow the first");
    out.extend(forward_all(&mut b, Port::Lan, &pieces[2..3], Port::Lan));
    let seen = testing::check(&testing::reassemble(&out).unwrap()).unwrap();
    assert_eq!(
        (seen.src, seen.dst, seen.dst_port, seen.dst_mac),
        (ISP1, HOST2, 53, HOST2_MAC)
    );
    assert_eq!(seen.payload, payload);
    assert_eq!(b.router.stats().fragments.held, 0);
}

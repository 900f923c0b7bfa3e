use std::net::Ipv4Addr;

use xwan::router::{DropReason, KernelReason, Port, Verdict};
use xwan::testing::{self, ACK, FIN_ACK, SYN, SYN_ACK};

use super::*;

#[test]
fn tcp_handshake_data_and_close() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let (uplink, syn) = b.forward_any_wan(testing::tcp(&lan, 40000, 80, SYN, b""));
    let wan_addr = [ISP1, ISP2][usize::from(uplink)];
    assert_eq!(syn.src, wan_addr);
    assert_eq!(syn.src_port, 40000, "a free inside port is preserved");
    assert_eq!((syn.dst, syn.dst_port), (SERVER, 80));
    assert_eq!(syn.ttl, 63);
    assert_eq!(syn.src_mac, WAN_MACS[usize::from(uplink)]);
    assert_eq!(syn.dst_mac, GATEWAY_MACS[usize::from(uplink)]);

    let wan = from_internet(usize::from(uplink), SERVER, wan_addr);
    let syn_ack = b.forward(
        Port::Wan(uplink),
        testing::tcp(&wan, 80, 40000, SYN_ACK, b""),
        Port::Lan,
    );
    assert_eq!((syn_ack.src, syn_ack.src_port), (SERVER, 80));
    assert_eq!((syn_ack.dst, syn_ack.dst_port), (HOST, 40000));
    assert_eq!(syn_ack.src_mac, LAN_MAC);
    assert_eq!(syn_ack.dst_mac, HOST_MAC);

    let request = b"GET / HTTP/1.0\r\n\r\n";
    let out = b.forward(
        Port::Lan,
        testing::tcp(&lan, 40000, 80, ACK, request),
        Port::Wan(uplink),
    );
    assert_eq!(out.payload, request);
    let body = vec![0xabu8; 1400];
    let back = b.forward(
        Port::Wan(uplink),
        testing::tcp(&wan, 80, 40000, ACK, &body),
        Port::Lan,
    );
    assert_eq!(back.payload, body);

    let flows = b.router.flows(b.now, 10, |_| true);
    assert_eq!(flows.len(), 1);
    assert_eq!(xwan::flow::tcp_state::name(flows[0].tcp), "established");
    assert_eq!(flows[0].packets, [2, 2]);

    b.forward(
        Port::Lan,
        testing::tcp(&lan, 40000, 80, FIN_ACK, b""),
        Port::Wan(uplink),
    );
    b.forward(
        Port::Wan(uplink),
        testing::tcp(&wan, 80, 40000, FIN_ACK, b""),
        Port::Lan,
    );
    let flows = b.router.flows(b.now, 10, |_| true);
    assert_eq!(xwan::flow::tcp_state::name(flows[0].tcp), "time_wait");
    // Closed: the transitory timer applies.
    b.advance(241);
    assert_eq!(b.router.expire(b.now), 1);
    let stats = b.router.stats();
    assert_eq!(stats.table.flows, 0);
    assert_eq!(stats.uplinks[usize::from(uplink)].nat_in_use, [0, 0, 0]);
    assert_eq!(stats.uplinks[usize::from(uplink)].traffic.packets_out, 3);
    assert_eq!(stats.uplinks[usize::from(uplink)].traffic.packets_in, 3);
}

#[test]
fn udp_request_reply_and_zero_checksum_stays_zero() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::udp(&lan, 45353, 53, b"query"));
    let wan_addr = [ISP1, ISP2][usize::from(uplink)];
    assert_eq!(
        (out.src, out.src_port),
        (wan_addr, 45353),
        "a free port in the NAT range is kept"
    );
    let wan = from_internet(usize::from(uplink), SERVER, wan_addr);
    let reply = b.forward(
        Port::Wan(uplink),
        testing::udp(&wan, 53, 45353, b"answer"),
        Port::Lan,
    );
    assert_eq!(
        (reply.dst, reply.dst_port, reply.payload.as_slice()),
        (HOST, 45353, &b"answer"[..])
    );

    // A datagram sent without checksum keeps none.
    let mut frame = testing::udp(&lan, 5353, 53, b"no checksum");
    frame[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let (verdict, bytes) = b.send(Port::Lan, frame);
    assert!(matches!(verdict, Verdict::Forward { .. }));
    assert_eq!(&bytes[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
    testing::check(&bytes).unwrap();
}

#[test]
fn ping_maps_the_identifier_like_a_port() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::icmp_echo(&lan, true, 7, 1, b"ping"));
    let wan_addr = [ISP1, ISP2][usize::from(uplink)];
    assert_eq!(out.src, wan_addr);
    let id = out.src_port;
    assert!(
        (20000..=59999).contains(&id),
        "echo ids map into the NAT range: {id}"
    );
    let wan = from_internet(usize::from(uplink), SERVER, wan_addr);
    let reply = b.forward(
        Port::Wan(uplink),
        testing::icmp_echo(&wan, false, id, 1, b"ping"),
        Port::Lan,
    );
    assert_eq!((reply.dst, reply.dst_port), (HOST, 7));
    // The ICMP timer is 60 s.
    b.advance(61);
    let (verdict, _) = b.send(
        Port::Wan(uplink),
        testing::icmp_echo(&wan, false, id, 2, b"late"),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::NoMapping));
}

#[test]
fn port_forward_reached_through_each_wan_replies_by_the_same_wan() {
    let mut b = Bench::new(
        r#"
[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.10:80"
"#,
    );
    let client = Ipv4Addr::new(203, 0, 113, 99);
    for (uplink, wan_addr, client_port) in [(0u8, ISP1, 33000), (1u8, ISP2, 33001)] {
        let wan = from_internet(usize::from(uplink), client, wan_addr);
        let syn = b.forward(
            Port::Wan(uplink),
            testing::tcp(&wan, client_port, 8080, SYN, b""),
            Port::Lan,
        );
        assert_eq!((syn.dst, syn.dst_port), (HOST, 80));
        assert_eq!((syn.src, syn.src_port), (client, client_port));
        let lan = from_host(HOST, client);
        let reply = b.forward(
            Port::Lan,
            testing::tcp(&lan, 80, client_port, SYN_ACK, b""),
            Port::Wan(uplink),
        );
        assert_eq!((reply.src, reply.src_port), (wan_addr, 8080));
        assert_eq!(reply.dst_mac, GATEWAY_MACS[usize::from(uplink)]);
    }
    assert_eq!(b.router.stats().table.flows, 2);
}

#[test]
fn nth_balances_new_connections_exactly_and_flows_stay_pinned() {
    let mut b = Bench::new("");
    let mut per_uplink = [0; 2];
    let lan = from_host(HOST, SERVER);
    for port in 0..60u16 {
        let (uplink, _) = b.forward_any_wan(testing::tcp(&lan, 30000 + port, 443, SYN, b""));
        per_uplink[usize::from(uplink)] += 1;
        // Every later packet of the connection takes the same uplink.
        for _ in 0..3 {
            let (again, _) = b.forward_any_wan(testing::tcp(&lan, 30000 + port, 443, ACK, b"x"));
            assert_eq!(again, uplink);
        }
    }
    assert_eq!(per_uplink, [30, 30]);
}

#[test]
fn weights_two_to_one() {
    let text = BASE_CONFIG.replacen(
        "gateway = \"198.18.1.1\"",
        "gateway = \"198.18.1.1\"\nweight = 2",
        1,
    );
    let config = xwan::config::Config::from_toml(&text, std::path::Path::new("w.toml")).unwrap();
    assert_eq!(config.wans[0].weight, 2);
    let router = xwan::router::Router::new(
        &config,
        xwan::router::InterfaceMacs {
            lan: LAN_MAC,
            wans: WAN_MACS.to_vec(),
        },
    );
    for (id, mac) in GATEWAY_MACS.iter().enumerate() {
        router.set_gateway_mac(id as u8, Some(*mac));
        router.set_uplink_up(id as u8, true);
    }
    let mut lane = router.lane();
    let mut counts = [0; 2];
    let lan = from_host(HOST, SERVER);
    for port in 0..90u16 {
        let mut frame = testing::udp(&lan, 10000 + port, 53, b"q");
        let verdict = router.process(
            &mut lane,
            &mut frame,
            xwan::router::FrameMeta {
                port: Port::Lan,
                now: std::time::Duration::from_secs(1),
                checksum_partial: false,
                gso: None,
            },
        );
        let Verdict::Forward {
            port: Port::Wan(u), ..
        } = verdict
        else {
            panic!("{verdict:?}")
        };
        counts[usize::from(u)] += 1;
    }
    assert_eq!(counts, [60, 30]);
}

#[test]
fn rules_steer_bypass_and_drop() {
    let mut b = Bench::new(
        r#"
[[rule]]
name = "web-via-isp2"
proto = "tcp"
dst_port = "443"
action = "isp2"

[[rule]]
name = "local-vpn"
dst = "10.8.0.0/16"
action = "bypass"

[[rule]]
name = "no-telnet"
proto = "tcp"
dst_port = "23"
action = "drop"
"#,
    );
    let lan = from_host(HOST, SERVER);
    for port in 0..10 {
        let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, 41000 + port, 443, SYN, b""));
        assert_eq!(uplink, 1);
        assert_eq!(out.src, ISP2);
    }
    let vpn = from_host(HOST, Ipv4Addr::new(10, 8, 1, 1));
    let (verdict, _) = b.send(Port::Lan, testing::udp(&vpn, 1194, 1194, b"x"));
    assert_eq!(verdict, Verdict::Kernel(KernelReason::Bypass));
    let (verdict, _) = b.send(Port::Lan, testing::tcp(&lan, 42000, 23, SYN, b""));
    assert_eq!(verdict, Verdict::Drop(DropReason::Rule));
    let stats = b.router.stats();
    assert_eq!(stats.totals.drop_count(DropReason::Rule), 1);
    assert_eq!(stats.totals.kernel_count(KernelReason::Bypass), 1);
}

#[test]
fn a_pinned_uplink_that_is_down_falls_back_unless_strict() {
    let mut b = Bench::new(
        r#"
[[rule]]
proto = "tcp"
dst_port = "443"
action = "isp2"

[[rule]]
proto = "tcp"
dst_port = "8443"
action = "isp2"
strict = true
"#,
    );
    b.router.set_uplink_up(1, false);
    let lan = from_host(HOST, SERVER);
    let (uplink, _) = b.forward_any_wan(testing::tcp(&lan, 43000, 443, SYN, b""));
    assert_eq!(uplink, 0);
    let (verdict, _) = b.send(Port::Lan, testing::tcp(&lan, 43001, 8443, SYN, b""));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoUplink));
    b.router.set_uplink_up(0, false);
    let (verdict, _) = b.send(Port::Lan, testing::udp(&lan, 43002, 53, b"q"));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoUplink));
}

#[test]
fn priority_two_carries_traffic_only_when_priority_one_is_down() {
    let text = BASE_CONFIG.replacen(
        "gateway = \"198.18.2.1\"",
        "gateway = \"198.18.2.1\"\npriority = 2",
        1,
    );
    let mut b = Bench::new("");
    b.router = xwan::router::Router::new(
        &xwan::config::Config::from_toml(&text, std::path::Path::new("p.toml")).unwrap(),
        xwan::router::InterfaceMacs {
            lan: LAN_MAC,
            wans: WAN_MACS.to_vec(),
        },
    );
    b.lane = b.router.lane();
    for (id, mac) in GATEWAY_MACS.iter().enumerate() {
        b.router.set_gateway_mac(id as u8, Some(*mac));
        b.router.set_uplink_up(id as u8, true);
    }
    let lan = from_host(HOST, SERVER);
    for port in 0..10 {
        assert_eq!(
            b.forward_any_wan(testing::udp(&lan, 1000 + port, 53, b"q"))
                .0,
            0
        );
    }
    b.router.set_uplink_up(0, false);
    for port in 10..20 {
        assert_eq!(
            b.forward_any_wan(testing::udp(&lan, 1000 + port, 53, b"q"))
                .0,
            1
        );
    }
}

#[test]
fn sticky_source_keeps_a_client_on_one_uplink() {
    let mut b = Bench::new(
        r#"
[balance]
sticky = "src"
sticky_timeout_s = 600
"#,
    );
    let hosts: Vec<Ipv4Addr> = (10..14).map(|i| Ipv4Addr::new(192, 168, 50, i)).collect();
    for host in &hosts {
        let lan = from_host(*host, SERVER);
        let (first, _) = b.forward_any_wan(testing::udp(&lan, 2000, 53, b"q"));
        for port in 1..10 {
            let dst = Ipv4Addr::new(203, 0, 113, port as u8);
            let lan = from_host(*host, dst);
            assert_eq!(
                b.forward_any_wan(testing::udp(&lan, 2000 + port, 53, b"q"))
                    .0,
                first
            );
        }
    }
    assert_eq!(b.router.stats().sticky_clients, hosts.len());
    b.advance(601);
    b.router.expire(b.now);
    assert_eq!(b.router.stats().sticky_clients, 0);
}

#[test]
fn udp_timers_follow_rfc_4787() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::udp(&lan, 6000, 53, b"q"));
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    b.advance(119);
    b.router.expire(b.now);
    b.forward(
        Port::Wan(uplink),
        testing::udp(&wan, 53, out.src_port, b"a"),
        Port::Lan,
    );
    b.advance(300);
    b.router.expire(b.now);
    b.forward(
        Port::Wan(uplink),
        testing::udp(&wan, 53, out.src_port, b"a"),
        Port::Lan,
    );
    b.advance(301);
    assert_eq!(b.router.expire(b.now), 1);
    let (verdict, _) = b.send(
        Port::Wan(uplink),
        testing::udp(&wan, 53, out.src_port, b"a"),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::NoMapping));
}

#[test]
fn endpoint_independent_mapping_across_destinations() {
    let mut b = Bench::new(
        r#"
[[rule]]
action = "isp1"
"#,
    );
    // Another host holds port 7000 first, so the mapping is not the inside port.
    let other = from_host(Ipv4Addr::new(192, 168, 50, 11), SERVER);
    b.forward_any_wan(testing::udp(&other, 7000, 53, b"q"));
    let mut outside = None;
    for dst in 1..5 {
        let lan = from_host(HOST, Ipv4Addr::new(203, 0, 113, dst));
        let (_, out) = b.forward_any_wan(testing::udp(&lan, 7000, 53, b"q"));
        assert_ne!(out.src_port, 7000);
        assert_eq!(*outside.get_or_insert(out.src_port), out.src_port);
    }
    // Filtering is address-and-port dependent: a host never contacted is refused.
    let stranger = from_internet(0, Ipv4Addr::new(203, 0, 113, 200), ISP1);
    let (verdict, _) = b.send(
        Port::Wan(0),
        testing::udp(&stranger, 53, outside.unwrap(), b"x"),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::NoMapping));
}

#[test]
fn failover_resets_tcp_remaps_udp_and_leaves_other_uplinks_alone() {
    let mut b = Bench::new(
        r#"
[[rule]]
proto = "tcp"
dst_port = "80"
action = "isp1"

[[rule]]
proto = "udp"
dst_port = "53"
action = "isp1"

[[rule]]
proto = "tcp"
dst_port = "443"
action = "isp2"

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.10:80"
"#,
    );
    let lan = from_host(HOST, SERVER);
    // A TCP download through isp1, with 1400 bytes already delivered.
    let (_, syn) = b.forward_any_wan(testing::tcp(&lan, 40000, 80, SYN, b""));
    let wan = from_internet(0, SERVER, ISP1);
    let mut syn_ack = testing::tcp(&wan, 80, syn.src_port, SYN_ACK, b"");
    // Sequence number 5000 for the server's SYN-ACK.
    syn_ack[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&5000u32.to_be_bytes());
    fix_tcp_checksum(&mut syn_ack);
    b.forward(Port::Wan(0), syn_ack, Port::Lan);
    let mut data = testing::tcp(&wan, 80, syn.src_port, ACK, &[7u8; 1400]);
    data[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&5001u32.to_be_bytes());
    fix_tcp_checksum(&mut data);
    b.forward(Port::Wan(0), data, Port::Lan);
    // A UDP flow through isp1, a TCP flow through isp2, a port forward on isp1.
    let (_, udp_out) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    assert_eq!(udp_out.src, ISP1);
    let (healthy, _) = b.forward_any_wan(testing::tcp(&lan, 41000, 443, SYN, b""));
    assert_eq!(healthy, 1);
    let client = Ipv4Addr::new(203, 0, 113, 99);
    b.forward(
        Port::Wan(0),
        testing::tcp(&from_internet(0, client, ISP1), 33000, 8080, SYN, b""),
        Port::Lan,
    );
    assert_eq!(b.router.stats().table.flows, 4);

    b.router.set_uplink_up(0, false);
    let failed = b.router.fail_over(0);
    assert_eq!((failed.reset, failed.remapped, failed.forwards), (2, 1, 1));
    // The client of the download gets an RST with the sequence it expects.
    let rst = failed
        .resets
        .iter()
        .map(|f| testing::check(f).unwrap())
        .find(|s| s.dst_port == 40000)
        .expect("an RST to the downloading client");
    assert_eq!((rst.src, rst.src_port, rst.dst), (SERVER, 80, HOST));
    assert_eq!((rst.src_mac, rst.dst_mac), (LAN_MAC, HOST_MAC));
    let frame = &failed.resets[0];
    let flags = frame[14 + 20 + 13];
    assert_eq!(flags & 0x04, 0x04, "RST set");
    let reset = failed
        .resets
        .iter()
        .find(|f| testing::check(f).unwrap().dst_port == 40000)
        .unwrap();
    assert_eq!(
        u32::from_be_bytes(reset[38..42].try_into().unwrap()),
        5001 + 1400
    );

    // The TCP flow on isp2 is untouched; the UDP flow moves to isp2.
    assert_eq!(b.router.stats().table.flows, 1);
    let (uplink, _) = b.forward_any_wan(testing::tcp(&lan, 41000, 443, ACK, b"x"));
    assert_eq!(uplink, 1);
    let (uplink, moved) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    assert_eq!((uplink, moved.src), (1, ISP2));
}

fn fix_tcp_checksum(frame: &mut [u8]) {
    use xwan::packet::checksum;
    frame[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&[0, 0]);
    let len = (frame.len() - 34) as u16;
    let sum = checksum::pseudo_header_sum(
        frame[26..30].try_into().unwrap(),
        frame[30..34].try_into().unwrap(),
        6,
        len,
    );
    let check = !checksum::fold(checksum::sum_bytes(sum, &frame[34..]));
    frame[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&check.to_be_bytes());
}

#[test]
fn a_new_uplink_address_serves_new_flows_and_fails_over_the_old_ones() {
    let mut b = Bench::new("");
    // isp2 out of service: every new flow takes isp1.
    b.router.set_uplink_up(1, false);
    let lan = from_host(HOST, SERVER);
    // One TCP flow and one UDP flow through isp1 on its first address.
    let (_, syn) = b.forward_any_wan(testing::tcp(&lan, 40000, 80, SYN, b""));
    assert_eq!(syn.src, ISP1);
    let wan = from_internet(0, SERVER, ISP1);
    b.forward(
        Port::Wan(0),
        testing::tcp(&wan, 80, syn.src_port, SYN_ACK, b""),
        Port::Lan,
    );
    let (isp1, udp) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    assert_eq!((isp1, udp.src), (0, ISP1));

    // The same address again changes nothing.
    assert_eq!(b.router.set_uplink_address(0, ISP1), Default::default());
    let renumbered = Ipv4Addr::new(198, 18, 1, 60);
    let failed = b.router.set_uplink_address(0, renumbered);
    assert_eq!((failed.reset, failed.remapped), (1, 1));
    let rst = testing::check(&failed.resets[0]).expect("a valid RST");
    assert_eq!((rst.src, rst.dst_port), (SERVER, 40000));
    assert_eq!(b.router.stats().table.flows, 0);

    // The UDP flow's next packet is mapped afresh on the new address.
    let (uplink, moved) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    assert_eq!((uplink, moved.src), (0, renumbered));
    // An uplink without an address takes no new flows.
    let _ = b.router.set_uplink_address(0, Ipv4Addr::UNSPECIFIED);
    let (verdict, _) = b.send(Port::Lan, testing::udp(&lan, 5001, 53, b"q"));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoUplink));
}

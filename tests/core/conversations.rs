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
    let mut worker = router.worker();
    let mut counts = [0; 2];
    let lan = from_host(HOST, SERVER);
    for port in 0..90u16 {
        let mut frame = testing::udp(&lan, 10000 + port, 53, b"q");
        let verdict = router.process(
            &mut worker,
            &mut frame,
            xwan::router::FrameMeta {
                port: Port::Lan,
                now: std::time::Duration::from_secs(1),
                checksum_partial: false,
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
    b.worker = b.router.worker();
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

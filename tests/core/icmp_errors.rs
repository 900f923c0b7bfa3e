//! ICMP errors about flows' packets, translated with the packet they quote
//! (RFC 5508 REQ-3/4, RFC 7857): every error checked with full checksums,
//! the quoted IP header's and, when the quote is whole, the quoted transport's.

use std::net::Ipv4Addr;

use xwan::router::{DropReason, KernelReason, Port, Verdict};
use xwan::testing::{self, Addressing, SYN};

use super::*;

const ROUTER_ON_THE_PATH: Ipv4Addr = Ipv4Addr::new(198, 18, 11, 1);

/// A bench whose flows all leave by isp1, with HOST2 holding outside UDP and
/// TCP port 7000, so HOST's port 7000 is mapped to another one.
fn bench() -> Bench {
    let mut b = Bench::new("[[rule]]\naction = \"isp1\"\n");
    let other = from_host(HOST2, Ipv4Addr::new(203, 0, 113, 99));
    b.forward(
        Port::Lan,
        testing::udp(&other, 7000, 53, b"q"),
        Port::Wan(0),
    );
    b.forward(
        Port::Lan,
        testing::tcp(&other, 7000, 80, SYN, b""),
        Port::Wan(0),
    );
    b
}

/// An ICMP error from `src` to isp1's address quoting `quoted` (an IP packet).
fn error_from(src: Ipv4Addr, icmp_type: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    testing::icmp_error(&from_internet(0, src, ISP1), icmp_type, code, rest, quoted)
}

#[test]
fn port_unreachable_from_the_server_reaches_the_inside_host() {
    let mut b = bench();
    let lan = from_host(HOST, SERVER);
    let (_, out) = b.send(Port::Lan, testing::udp(&lan, 7000, 53, b"query"));
    let outside = testing::check(&out).unwrap().src_port;
    assert_ne!(outside, 7000);
    let error = error_from(SERVER, 3, 3, [0; 4], &out[14..]);
    let (verdict, back) = b.send(Port::Wan(0), error);
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
    let (seen, kind, quote) = testing::check_icmp_error(&back).unwrap();
    assert_eq!(kind, [3, 3]);
    assert_eq!((seen.src, seen.dst, seen.ttl), (SERVER, HOST, 59));
    assert_eq!((seen.src_mac, seen.dst_mac), (LAN_MAC, HOST_MAC));
    assert!(quote.complete, "the whole datagram is quoted");
    assert_eq!(
        (quote.src, quote.src_port, quote.dst, quote.dst_port),
        (HOST, 7000, SERVER, 53)
    );
    // The quote is the host's datagram again, byte for byte past the IP header.
    let sent = testing::udp(&lan, 7000, 53, b"query");
    assert_eq!(&back[back.len() - (sent.len() - 34)..], &sent[34..]);
}

#[test]
fn time_exceeded_from_a_router_on_the_path_with_short_quotes() {
    let mut b = bench();
    let lan = from_host(HOST, SERVER);
    let sent = testing::tcp(&lan, 7000, 80, SYN, b"0123456789");
    let (_, out) = b.send(Port::Lan, sent.clone());
    // Quote: the IP header and 8 bytes (no TCP checksum), then 20 bytes
    // (checksum present, segment still incomplete).
    for quoted_l4 in [8, 20] {
        let error = error_from(ROUTER_ON_THE_PATH, 11, 0, [0; 4], &out[14..34 + quoted_l4]);
        let (verdict, back) = b.send(Port::Wan(0), error);
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
        let (seen, kind, quote) = testing::check_icmp_error(&back).unwrap();
        assert_eq!(kind, [11, 0]);
        assert_eq!(
            seen.src, ROUTER_ON_THE_PATH,
            "a router on the path keeps its address"
        );
        assert_eq!(seen.dst, HOST);
        assert!(!quote.complete);
        assert_eq!((quote.src, quote.src_port), (HOST, 7000));
        // Translated back, the quoted TCP header is the host's own again,
        // checksum included when it is there.
        let quoted = &back[back.len() - quoted_l4..];
        assert_eq!(quoted, &sent[34..34 + quoted_l4]);
    }
}

#[test]
fn frag_needed_keeps_its_mtu_and_quotes_with_ip_options_are_translated() {
    let mut b = bench();
    let lan = from_host(HOST, SERVER);
    let sent = testing::with_ip_options(&testing::udp(&lan, 7000, 443, &[7; 100]), &[1, 1, 1, 0]);
    let (_, out) = b.send(Port::Lan, sent.clone());
    testing::check(&out).unwrap();
    // The error itself carries IP options too.
    let error = testing::with_ip_options(
        &error_from(ROUTER_ON_THE_PATH, 3, 4, [0, 0, 0x05, 0x78], &out[14..]),
        &[1, 1, 1, 1, 1, 1, 1, 0],
    );
    let (verdict, back) = b.send(Port::Wan(0), error);
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
    let (seen, kind, quote) = testing::check_icmp_error(&back).unwrap();
    assert_eq!(kind, [3, 4]);
    let icmp = 14 + 28;
    assert_eq!(
        &back[icmp + 4..icmp + 8],
        &[0, 0, 0x05, 0x78],
        "next-hop MTU 1400 kept"
    );
    assert_eq!(seen.dst, HOST);
    assert!(quote.complete);
    assert_eq!(
        (quote.src, quote.src_port, quote.dst_port),
        (HOST, 7000, 443)
    );
}

#[test]
fn an_error_about_a_ping_maps_the_identifier_back() {
    let mut b = bench();
    let lan = from_host(HOST, SERVER);
    let (_, out) = b.send(Port::Lan, testing::icmp_echo(&lan, true, 77, 1, b"ping"));
    let id = testing::check(&out).unwrap().src_port;
    let error = error_from(ROUTER_ON_THE_PATH, 3, 1, [0; 4], &out[14..]);
    let (verdict, back) = b.send(Port::Wan(0), error);
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
    let (_, _, quote) = testing::check_icmp_error(&back).unwrap();
    assert!(quote.complete, "the quoted echo's checksum is verified");
    assert_eq!((quote.src, quote.src_port), (HOST, 77));
    assert_ne!(id, 77, "the identifier was mapped on the way out");
}

#[test]
fn errors_that_match_no_flow_are_dropped_or_left_to_the_kernel() {
    let mut b = bench();
    let to_router = |port: u16| {
        let a = Addressing {
            src: ISP1,
            dst: SERVER,
            ..from_internet(0, ISP1, SERVER)
        };
        testing::udp(&a, port, 53, b"q")
    };
    // About a NAT port with no flow: dropped and counted.
    let (verdict, _) = b.send(
        Port::Wan(0),
        error_from(SERVER, 3, 3, [0; 4], &to_router(30000)[14..]),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::IcmpNoFlow));
    // About the router's own traffic (a port outside the NAT range): the kernel's.
    let (verdict, _) = b.send(
        Port::Wan(0),
        error_from(SERVER, 3, 3, [0; 4], &to_router(5353)[14..]),
    );
    assert_eq!(verdict, Verdict::Kernel(KernelReason::IcmpOther));
    // Quoting fewer than 8 bytes of transport: dropped and counted.
    let (verdict, _) = b.send(
        Port::Wan(0),
        error_from(SERVER, 3, 3, [0; 4], &to_router(30000)[14..14 + 27]),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::IcmpTruncated));
    // Quoting a packet that did not leave from this address.
    let stranger = from_internet(0, Ipv4Addr::new(198, 18, 9, 9), SERVER);
    let (verdict, _) = b.send(
        Port::Wan(0),
        error_from(
            SERVER,
            3,
            3,
            [0; 4],
            &testing::udp(&stranger, 30000, 53, b"q")[14..],
        ),
    );
    assert_eq!(verdict, Verdict::Kernel(KernelReason::IcmpOther));
    // An error whose own TTL runs out is never answered with another error.
    let lan = from_host(HOST, SERVER);
    let (_, out) = b.send(Port::Lan, testing::udp(&lan, 7000, 53, b"query"));
    let mut dying = from_internet(0, SERVER, ISP1);
    dying.ttl = 1;
    let (verdict, _) = b.send(
        Port::Wan(0),
        testing::icmp_error(&dying, 3, 3, [0; 4], &out[14..]),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::IcmpErrorTtlExpired));
    let totals = b.router.stats().totals;
    assert_eq!(totals.drop_count(DropReason::IcmpNoFlow), 1);
    assert_eq!(totals.drop_count(DropReason::IcmpTruncated), 1);
    assert_eq!(totals.drop_count(DropReason::IcmpErrorTtlExpired), 1);
    assert_eq!(totals.time_exceeded_sent, 0);
}

#[test]
fn errors_never_refresh_nor_remove_a_flow() {
    let mut b = bench();
    let lan = from_host(HOST, SERVER);
    let (_, out) = b.send(Port::Lan, testing::udp(&lan, 7000, 53, b"query"));
    let flows = b.router.stats().table.flows;
    b.advance(200);
    let error = error_from(SERVER, 3, 3, [0; 4], &out[14..]);
    assert!(matches!(
        b.send(Port::Wan(0), error.clone()).0,
        Verdict::Forward { .. }
    ));
    let mine = |b: &Bench| {
        b.router
            .flows(b.now, 10, |s| s.inside.addr == HOST.octets())
            .into_iter()
            .next()
    };
    let flow = mine(&b).expect("the flow is there");
    assert_eq!(flow.idle_s, 200, "the error did not refresh it");
    assert_eq!(
        flow.packets,
        [1, 0],
        "nor was it counted as the flow's traffic"
    );
    // Past the UDP timer: the error finds no flow, and does not remove it...
    b.advance(101);
    assert_eq!(
        b.send(Port::Wan(0), error).0,
        Verdict::Drop(DropReason::IcmpNoFlow)
    );
    assert_eq!(b.router.stats().table.flows, flows);
    // ...expiry does.
    assert!(b.router.expire(b.now) >= 1);
    assert!(mine(&b).is_none());
}

#[test]
fn a_lan_hosts_port_unreachable_for_a_forwarded_port_goes_out_translated() {
    let mut b = Bench::new(
        "[[forward]]\nproto = \"udp\"\nport = 5353\nto = \"192.168.50.10:53\"\nwan = \"isp2\"\n",
    );
    let client = Ipv4Addr::new(203, 0, 113, 77);
    let wan = from_internet(1, client, ISP2);
    let (_, delivered) = b.send(Port::Wan(1), testing::udp(&wan, 41000, 5353, b"query"));
    let seen = testing::check(&delivered).unwrap();
    assert_eq!((seen.dst, seen.dst_port), (HOST, 53));
    // The host has nothing on port 53 and says so, quoting what it got.
    let error = testing::icmp_error(&from_host(HOST, client), 3, 3, [0; 4], &delivered[14..]);
    let (verdict, out) = b.send(Port::Lan, error);
    assert_eq!(
        verdict,
        Verdict::Forward {
            port: Port::Wan(1),
            len: out.len()
        }
    );
    let (seen, kind, quote) = testing::check_icmp_error(&out).unwrap();
    assert_eq!(kind, [3, 3]);
    assert_eq!((seen.src, seen.dst), (ISP2, client), "no LAN address leaks");
    assert_eq!((seen.src_mac, seen.dst_mac), (WAN_MACS[1], GATEWAY_MACS[1]));
    assert!(quote.complete);
    assert_eq!(
        (quote.src, quote.src_port, quote.dst, quote.dst_port),
        (client, 41000, ISP2, 5353),
        "quoted as the client sent it"
    );
}

#[test]
fn a_lan_hosts_error_about_a_reply_of_its_own_flow_goes_out_translated() {
    let mut b = bench();
    let lan = from_host(HOST, SERVER);
    let (_, out) = b.send(Port::Lan, testing::udp(&lan, 7000, 53, b"query"));
    let outside = testing::check(&out).unwrap().src_port;
    let wan = from_internet(0, SERVER, ISP1);
    let (_, delivered) = b.send(
        Port::Wan(0),
        testing::udp(&wan, 53, outside, b"late answer"),
    );
    let error = testing::icmp_error(&from_host(HOST, SERVER), 3, 3, [0; 4], &delivered[14..]);
    let (verdict, back) = b.send(Port::Lan, error);
    assert!(
        matches!(
            verdict,
            Verdict::Forward {
                port: Port::Wan(0),
                ..
            }
        ),
        "{verdict:?}"
    );
    let (seen, _, quote) = testing::check_icmp_error(&back).unwrap();
    assert_eq!((seen.src, seen.dst), (ISP1, SERVER));
    assert_eq!((quote.dst, quote.dst_port), (ISP1, outside));
    // An error about something no flow delivered is the kernel's.
    let stray = testing::udp(&from_internet(0, SERVER, HOST), 53, 9999, b"x");
    let error = testing::icmp_error(&from_host(HOST, SERVER), 3, 3, [0; 4], &stray[14..]);
    assert_eq!(
        b.send(Port::Lan, error).0,
        Verdict::Kernel(KernelReason::IcmpOther)
    );
}

#[test]
fn an_error_about_a_forwarded_hosts_reply_reaches_that_host() {
    let mut b = Bench::new(
        "[[forward]]\nproto = \"tcp\"\nport = 8080\nto = \"192.168.50.10:80\"\nwan = \"isp1\"\n",
    );
    let client = Ipv4Addr::new(203, 0, 113, 77);
    let wan = from_internet(0, client, ISP1);
    b.forward(
        Port::Wan(0),
        testing::tcp(&wan, 41000, 8080, SYN, b""),
        Port::Lan,
    );
    let (_, reply) = b.send(
        Port::Lan,
        testing::tcp(&from_host(HOST, client), 80, 41000, testing::SYN_ACK, b""),
    );
    let seen = testing::check(&reply).unwrap();
    assert_eq!((seen.src, seen.src_port), (ISP1, 8080));
    // The client's side has gone: a router on the way says so.
    let error = error_from(ROUTER_ON_THE_PATH, 3, 1, [0; 4], &reply[14..]);
    let (verdict, back) = b.send(Port::Wan(0), error);
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
    assert_eq!((outer.dst, outer.dst_mac), (HOST, HOST_MAC));
    assert!(quote.complete);
    assert_eq!(
        (quote.src, quote.src_port, quote.dst, quote.dst_port),
        (HOST, 80, client, 41000)
    );
}

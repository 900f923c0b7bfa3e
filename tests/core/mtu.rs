//! Errors the core makes itself: time exceeded and fragmentation needed (DF
//! set, bigger than the egress MTU); without DF a too-big packet is
//! fragmented.

use xwan::router::{KernelReason, Port, Verdict};
use xwan::testing::{self, SYN};

use super::*;

#[test]
fn ttl_expiry_is_answered_by_the_core_on_both_sides() {
    let mut b = Bench::from_text(&base_with("address = \"192.168.50.1\"", "", ""));
    let mut dying = from_host(HOST, SERVER);
    dying.ttl = 1;
    let sent = testing::udp(&dying, 5000, 53, &[0x42; 40]);
    let (seen, kind, quote, bytes) = expect_error(&mut b, Port::Lan, sent.clone());
    assert_eq!(kind, [11, 0]);
    assert_eq!((seen.src, seen.dst), (LAN_ADDR, HOST));
    assert_eq!((seen.src_mac, seen.dst_mac), (LAN_MAC, HOST_MAC));
    // As much of the packet as the 82-byte frame holds after the new headers.
    assert!(!quote.complete);
    assert_eq!(bytes.len(), sent.len());
    assert_eq!(&bytes[42..], &sent[14..14 + 40], "quoted as it came");
    // A frame too short to hold the error (42 bytes, no Ethernet padding):
    // the error is made in the outbox, quoting the whole packet.
    let short = testing::udp(&dying, 5000, 53, b"");
    assert_eq!(b.send(Port::Lan, short.clone()).0, Verdict::Taken);
    let also = b.also_sent();
    assert_eq!(also.len(), 1);
    assert_eq!(also[0].0, Port::Lan);
    let (seen, kind, quote) = testing::check_icmp_error(&also[0].1).unwrap();
    assert_eq!((kind, seen.dst, seen.dst_mac), ([11, 0], HOST, HOST_MAC));
    assert!(quote.complete);
    assert_eq!(&also[0].1[42..], &short[14..]);
    // No flow was made for any of them.
    assert_eq!(b.router.stats().table.flows, 0);

    // From the Internet, the error comes from the WAN address it was sent to.
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, 6000, 80, SYN, b""));
    let mut late = from_internet(usize::from(uplink), SERVER, out.src);
    late.ttl = 1;
    let reply = testing::tcp(&late, 80, out.src_port, testing::SYN_ACK, &[0; 20]);
    let (seen, kind, quote, _) = expect_error(&mut b, Port::Wan(uplink), reply);
    assert_eq!(kind, [11, 0]);
    assert_eq!((seen.src, seen.dst), (out.src, SERVER));
    assert_eq!(
        (seen.src_mac, seen.dst_mac),
        (
            WAN_MACS[usize::from(uplink)],
            GATEWAY_MACS[usize::from(uplink)]
        )
    );
    assert_eq!(quote.dst_port, out.src_port);
    assert_eq!(b.router.stats().totals.time_exceeded_sent, 3);
}

#[test]
fn without_a_lan_address_a_lan_hosts_expiry_stays_with_the_kernel() {
    let mut b = Bench::new("");
    let mut dying = from_host(HOST, SERVER);
    dying.ttl = 1;
    assert_eq!(
        b.send(Port::Lan, testing::udp(&dying, 5000, 53, &[0; 64]))
            .0,
        Verdict::Kernel(KernelReason::TtlExpired)
    );
}

#[test]
fn df_and_too_big_for_the_uplink_gets_frag_needed_with_its_mtu() {
    let mut b = Bench::from_text(&base_with(
        "address = \"192.168.50.1\"",
        "mtu = 1400",
        "[[rule]]\naction = \"isp1\"\n",
    ));
    let lan = from_host(HOST, SERVER);
    let mut big = testing::udp(&lan, 5000, 443, &[1; 1400 - 28]);
    b.forward(Port::Lan, big.clone(), Port::Wan(0));
    big = testing::udp(&lan, 5000, 443, &[1; 1401 - 28]);
    testing::set_df_and_id(&mut big, true, 7);
    let (seen, kind, quote, bytes) = expect_error(&mut b, Port::Lan, big.clone());
    assert_eq!(kind, [3, 4]);
    assert_eq!(&bytes[38..42], &[0, 0, 0x05, 0x78], "next-hop MTU 1400");
    assert_eq!(
        (seen.src, seen.dst, seen.dst_mac),
        (LAN_ADDR, HOST, HOST_MAC)
    );
    assert_eq!(bytes.len(), 14 + 576, "at most 576 bytes of error");
    assert_eq!(&bytes[42..], &big[14..14 + 548]);
    assert_eq!((quote.src_port, quote.dst_port), (5000, 443));
    // Without DF it is fragmented for the uplink's MTU.
    testing::set_df_and_id(&mut big, false, 8);
    let (verdict, first) = b.send(Port::Lan, big.clone());
    assert_eq!(
        verdict,
        Verdict::Forward {
            port: Port::Wan(0),
            len: 14 + 1396
        }
    );
    let mut pieces = vec![first];
    for (port, frame) in b.also_sent() {
        assert_eq!(port, Port::Wan(0));
        pieces.push(frame);
    }
    assert_eq!(pieces.len(), 2);
    let whole = testing::reassemble(&pieces).unwrap();
    let seen = testing::check(&whole).unwrap();
    assert_eq!((seen.src, seen.dst, seen.dst_port), (ISP1, SERVER, 443));
    assert_eq!(whole[42..], big[42..], "the payload byte for byte");
    let totals = b.router.stats().totals;
    assert_eq!(totals.frag_needed_sent, 1);
    let wan1 = &totals.uplinks[0];
    assert_eq!(wan1.packets_out, 3, "both fragments counted");
}

/// Replies bigger than the LAN's MTU without DF are fragmented on the way
/// to the host; a later fragment too big is fragmented again.
#[test]
fn without_df_replies_are_fragmented_for_the_lan() {
    let mut b = Bench::from_text(&base_with("mtu = 1280", "", ""));
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    let payload: Vec<u8> = (0..4000u32).map(|i| (i * 11) as u8).collect();
    let mut answer = testing::udp(&wan, 53, out.src_port, &payload);
    testing::set_df_and_id(&mut answer, false, 5);
    let mut pieces = Vec::new();
    for piece in testing::fragment(&answer, 5, 1480) {
        let (verdict, first) = b.send(Port::Wan(uplink), piece);
        assert!(matches!(
            verdict,
            Verdict::Forward {
                port: Port::Lan,
                ..
            }
        ));
        pieces.push(first);
        pieces.extend(b.also_sent().into_iter().map(|(_, f)| f));
    }
    assert_eq!(pieces.len(), 5);
    for piece in &pieces {
        assert!(piece.len() - 14 <= 1280);
    }
    let seen = testing::check(&testing::reassemble(&pieces).unwrap()).unwrap();
    assert_eq!(
        (seen.dst, seen.dst_port, seen.payload),
        (HOST, 5000, payload)
    );
}

#[test]
fn df_and_too_big_for_the_lan_is_answered_on_the_wan() {
    let mut b = Bench::from_text(&base_with("mtu = 1280", "", ""));
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    let mut answer = testing::udp(&wan, 53, out.src_port, &[9; 1300]);
    testing::set_df_and_id(&mut answer, true, 1);
    let (seen, kind, _, bytes) = expect_error(&mut b, Port::Wan(uplink), answer);
    assert_eq!(kind, [3, 4]);
    assert_eq!(&bytes[40..42], &1280u16.to_be_bytes());
    assert_eq!((seen.src, seen.dst), (out.src, SERVER));
}

#[test]
fn without_a_lan_address_frag_needed_is_left_to_the_kernel() {
    let mut b = Bench::from_text(&base_with(
        "",
        "mtu = 1400",
        "[[rule]]\naction = \"isp1\"\n",
    ));
    let mut big = testing::udp(&from_host(HOST, SERVER), 5000, 443, &[1; 1500 - 28]);
    testing::set_df_and_id(&mut big, true, 7);
    assert_eq!(
        b.send(Port::Lan, big).0,
        Verdict::Kernel(KernelReason::FragNeeded)
    );
}

/// Inbound to a port forward with TTL 1: answered from the WAN address it
/// was sent to, and no flow opened.
#[test]
fn ttl_expiry_towards_a_port_forward_is_answered_from_the_wan_address() {
    let mut b =
        Bench::new("[[forward]]\nproto = \"tcp\"\nport = 8080\nto = \"192.168.50.10:80\"\n");
    let mut late = from_internet(1, SERVER, ISP2);
    late.ttl = 1;
    let syn = testing::tcp_with_options(
        &late,
        40000,
        8080,
        SYN,
        &[&testing::mss_option(1460)[..], &[1; 16]].concat(),
        b"",
    );
    let bare = testing::tcp(&late, 40001, 8080, SYN, b"");
    assert_eq!(b.send(Port::Wan(1), bare).0, Verdict::Taken);
    let also = b.also_sent();
    let (seen, kind, quote) = testing::check_icmp_error(&also[0].1).unwrap();
    assert_eq!((kind, seen.src, quote.src_port), ([11, 0], ISP2, 40001));
    let (seen, kind, quote, _) = expect_error(&mut b, Port::Wan(1), syn);
    assert_eq!(kind, [11, 0]);
    assert_eq!((seen.src, seen.dst), (ISP2, SERVER));
    assert_eq!((seen.src_mac, seen.dst_mac), (WAN_MACS[1], GATEWAY_MACS[1]));
    assert_eq!((quote.dst, quote.dst_port), (ISP2, 8080));
    assert_eq!(b.router.stats().table.flows, 0);
}

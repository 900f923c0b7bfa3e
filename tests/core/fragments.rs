//! Fragments (RFC 4787 REQ-14): the first fragment is translated with its
//! flow and the later ones follow it; forwarded fragments are reassembled
//! here and the whole datagram's transport checksum verified.

use std::net::Ipv4Addr;

use xwan::router::{
    DropReason, Port, Verdict, FRAGMENT_LIFETIME, MAX_FRAGMENTS, MAX_HELD_FRAGMENTS,
    MAX_HELD_FRAGMENT_BYTES,
};
use xwan::testing::{self, SYN};

use super::*;

#[test]
fn fragments_in_order_follow_their_first_both_ways() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let datagram = testing::udp(&lan, 5000, 4500, &payload);
    let pieces = testing::fragment(&datagram, 0x1234, 1480);
    assert_eq!(pieces.len(), 3);
    let (verdict, first) = b.send(Port::Lan, pieces[0].clone());
    let Verdict::Forward {
        port: Port::Wan(uplink),
        ..
    } = verdict
    else {
        panic!("{verdict:?}");
    };
    let mut out = vec![first];
    out.extend(forward_all(
        &mut b,
        Port::Lan,
        &pieces[1..],
        Port::Wan(uplink),
    ));
    for f in &out {
        let seen = testing::check_fragment(f).unwrap();
        assert_eq!(seen.src, [ISP1, ISP2][usize::from(uplink)]);
        assert_eq!((seen.dst, seen.id, seen.ttl), (SERVER, 0x1234, 63));
        assert_eq!(seen.dst_mac, GATEWAY_MACS[usize::from(uplink)]);
    }
    let whole = testing::reassemble(&out).unwrap();
    let seen = testing::check(&whole).unwrap();
    assert_eq!(
        seen.payload, payload,
        "the UDP checksum holds over the whole datagram"
    );
    let outside = seen.src_port;

    // The reply, fragmented the other way, reaches the host.
    let wan = from_internet(usize::from(uplink), SERVER, seen.src);
    let reply = testing::udp(&wan, 4500, outside, &payload);
    let pieces = testing::fragment(&reply, 0x4321, 1000);
    let back = forward_all(&mut b, Port::Wan(uplink), &pieces, Port::Lan);
    let seen = testing::check(&testing::reassemble(&back).unwrap()).unwrap();
    assert_eq!(
        (seen.dst, seen.dst_port, seen.payload),
        (HOST, 5000, payload)
    );
}

/// Later fragments that come before their first are held, and sent after
/// it, translated as it was, when it comes; both ways.
#[test]
fn later_fragments_before_their_first_are_held_until_it_comes_both_ways() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let payload: Vec<u8> = (0..2000u32).map(|i| (i * 3) as u8).collect();
    let pieces = testing::fragment(&testing::udp(&lan, 5000, 4500, &payload), 9, 512);
    assert_eq!(pieces.len(), 4);
    hold_all(&mut b, Port::Lan, &[pieces[3].clone(), pieces[1].clone()]);
    let (verdict, first) = b.send(Port::Lan, pieces[0].clone());
    let Verdict::Forward {
        port: Port::Wan(uplink),
        ..
    } = verdict
    else {
        panic!("{verdict:?}");
    };
    let mut out = vec![first];
    for (port, frame) in b.also_sent() {
        assert_eq!(port, Port::Wan(uplink));
        out.push(frame);
    }
    assert_eq!(out.len(), 3, "the two held ones follow the first");
    out.extend(forward_all(
        &mut b,
        Port::Lan,
        &pieces[2..3],
        Port::Wan(uplink),
    ));
    let seen = testing::check(&testing::reassemble(&out).unwrap()).unwrap();
    assert_eq!(seen.payload, payload);
    assert_eq!(b.router.stats().fragments.held, 0);

    // The reply, its last fragment first.
    let wan = from_internet(usize::from(uplink), SERVER, seen.src);
    let pieces = testing::fragment(&testing::udp(&wan, 4500, seen.src_port, &payload), 10, 1000);
    assert_eq!(
        b.send(Port::Wan(uplink), pieces[2].clone()).0,
        Verdict::Taken
    );
    let (verdict, first) = b.send(Port::Wan(uplink), pieces[0].clone());
    assert!(matches!(
        verdict,
        Verdict::Forward {
            port: Port::Lan,
            ..
        }
    ));
    let mut back = vec![first];
    back.extend(b.also_sent().into_iter().map(|(port, frame)| {
        assert_eq!(port, Port::Lan);
        frame
    }));
    back.extend(forward_all(
        &mut b,
        Port::Wan(uplink),
        &pieces[1..2],
        Port::Lan,
    ));
    let seen = testing::check(&testing::reassemble(&back).unwrap()).unwrap();
    assert_eq!(
        (seen.dst, seen.dst_port, seen.dst_mac),
        (HOST, 5000, HOST_MAC)
    );
    assert_eq!(seen.payload, payload);
    let totals = b.router.stats().totals;
    assert_eq!(totals.held, 3);
}

/// A held fragment whose first does not come within the lifetime is dropped
/// and counted (when the table is next used), and so is one past the bound.
#[test]
fn held_fragments_time_out_and_are_bounded() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let pieces = testing::fragment(&testing::udp(&lan, 5001, 4500, &[3; 2000]), 11, 512);
    assert_eq!(b.send(Port::Lan, pieces[1].clone()).0, Verdict::Taken);
    b.now += FRAGMENT_LIFETIME + std::time::Duration::from_millis(1);
    let (verdict, _) = b.send(Port::Lan, pieces[0].clone());
    assert!(matches!(verdict, Verdict::Forward { .. }));
    assert!(b.also_sent().is_empty(), "the timed-out one is not sent");
    let totals = b.router.stats().totals;
    assert_eq!(totals.drop_count(DropReason::FragmentTimeout), 1);

    // Bounded in count: one more than MAX_HELD_FRAGMENTS is refused.
    for id in 0..MAX_HELD_FRAGMENTS as u16 {
        let later = testing::fragment(&testing::udp(&lan, 6000, 9, &[0; 64]), 1000 + id, 32);
        assert_eq!(b.send(Port::Lan, later[1].clone()).0, Verdict::Taken);
    }
    let later = testing::fragment(&testing::udp(&lan, 6000, 9, &[0; 64]), 999, 32);
    assert_eq!(
        b.send(Port::Lan, later[1].clone()).0,
        Verdict::Drop(DropReason::FragmentHoldFull)
    );
    // And in bytes: big fragments fill MAX_HELD_FRAGMENT_BYTES before the count.
    b.now += FRAGMENT_LIFETIME * 2;
    let big = testing::udp(&lan, 6001, 9, &[0; 16000]);
    let mut held = 0;
    for id in 0..MAX_HELD_FRAGMENTS as u16 {
        let later = testing::fragment(&big, 3000 + id, 8000);
        match b.send(Port::Lan, later[1].clone()).0 {
            Verdict::Taken => held += later[1].len(),
            Verdict::Drop(DropReason::FragmentHoldFull) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(held <= MAX_HELD_FRAGMENT_BYTES && held + 8100 > MAX_HELD_FRAGMENT_BYTES);
    let totals = b.router.stats().totals;
    assert_eq!(
        totals.drop_count(DropReason::FragmentTimeout),
        1 + MAX_HELD_FRAGMENTS as u64
    );
}

#[test]
fn fragmented_pings_and_tcp_follow_too_and_tiny_first_fragments_are_refused() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let ping = testing::icmp_echo(&lan, true, 42, 1, &[0xee; 3000]);
    let pieces = testing::fragment(&ping, 77, 1480);
    let (verdict, first) = b.send(Port::Lan, pieces[0].clone());
    let Verdict::Forward { port, .. } = verdict else {
        panic!("{verdict:?}");
    };
    let mut out = vec![first];
    out.extend(forward_all(&mut b, Port::Lan, &pieces[1..], port));
    let seen = testing::check(&testing::reassemble(&out).unwrap()).unwrap();
    assert_ne!(seen.src_port, 42, "the echo identifier was mapped");

    let segment = testing::tcp(&lan, 6000, 80, SYN, &[1; 2000]);
    let pieces = testing::fragment(&segment, 78, 1024);
    let (verdict, first) = b.send(Port::Lan, pieces[0].clone());
    let Verdict::Forward { port, .. } = verdict else {
        panic!("{verdict:?}");
    };
    let mut out = vec![first];
    out.extend(forward_all(&mut b, Port::Lan, &pieces[1..], port));
    testing::check(&testing::reassemble(&out).unwrap()).unwrap();

    // A first fragment too short to hold the TCP header (RFC 1858).
    let tiny = testing::fragment(&testing::tcp(&lan, 6001, 80, SYN, &[1; 64]), 79, 8);
    assert_eq!(
        b.send(Port::Lan, tiny[0].clone()).0,
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn a_fragment_flood_does_not_hurt_other_traffic() {
    let mut b = Bench::new("[[rule]]\naction = \"isp1\"\n");
    let flooder = from_host(HOST2, SERVER);
    let victim = from_host(HOST, Ipv4Addr::new(203, 0, 113, 20));
    let flood_first =
        |id: u16| testing::fragment(&testing::udp(&flooder, 7000, 9, &[0; 64]), id, 32)[0].clone();
    let flood_later =
        |id: u16| testing::fragment(&testing::udp(&flooder, 7000, 9, &[0; 64]), id, 32)[1].clone();
    for round in 0..6000u16 {
        // First fragments whose later ones never come, later fragments whose
        // first never came.
        assert!(matches!(
            b.send(Port::Lan, flood_first(round)).0,
            Verdict::Forward { .. }
        ));
        let verdict = b.send(Port::Lan, flood_later(round.wrapping_add(30000))).0;
        let expected = if usize::from(round) < MAX_HELD_FRAGMENTS {
            Verdict::Taken
        } else {
            Verdict::Drop(DropReason::FragmentHoldFull)
        };
        assert_eq!(verdict, expected);
        if round % 500 == 0 {
            // Unfragmented traffic and a fragmented datagram of the victim
            // get through in the middle of it.
            b.forward(
                Port::Lan,
                testing::udp(&victim, 1000 + round, 53, b"q"),
                Port::Wan(0),
            );
            let pieces =
                testing::fragment(&testing::udp(&victim, 2000, 53, &[5; 1500]), round, 1024);
            let out = forward_all(&mut b, Port::Lan, &pieces, Port::Wan(0));
            testing::check(&testing::reassemble(&out).unwrap()).unwrap();
        }
    }
    let stats = b.router.stats();
    assert_eq!(stats.fragments.entries, MAX_FRAGMENTS);
    assert!(stats.fragments.evicted >= 6000 - MAX_FRAGMENTS as u64);
    assert_eq!(stats.fragments.held, MAX_HELD_FRAGMENTS);
    assert_eq!(
        stats.totals.drop_count(DropReason::FragmentHoldFull),
        6000 - MAX_HELD_FRAGMENTS as u64
    );
    // Once the flood stops its entries age out.
    b.now += FRAGMENT_LIFETIME * 2;
    let pieces = testing::fragment(&testing::udp(&victim, 3000, 53, &[5; 100]), 1, 64);
    forward_all(&mut b, Port::Lan, &pieces, Port::Wan(0));
    assert_eq!(b.router.stats().fragments.entries, 1);
}

//! What the core finishes itself instead of leaving it to the kernel (issue
//! 12): the fragments of a packet whose first fragment is the kernel's follow
//! it there, also when they come first; an ICMP error whose TTL runs out is
//! dropped (never answered with another); a translated ICMP error longer than
//! the egress MTU is cut to it.

use xwan::router::{DropReason, KernelReason, Port, Verdict, MAX_FRAGMENTS};
use xwan::testing;

use super::*;

/// The frames the last send left to the kernel besides the one it returned.
fn to_kernel_also(b: &mut Bench) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    b.lane.drain_kernel(&mut |frame| out.push(frame.to_vec()));
    out
}

/// Out-of-order fragments of a datagram for the router itself, in by `port`:
/// the later ones are held until the first comes; the first goes to the
/// kernel for `reason`, the held ones after it (in the order they came), and
/// a later one that comes after it goes straight there.
fn fragments_of_the_kernel_follow_their_first(port: Port, datagram: &[u8], reason: KernelReason) {
    let mut b = Bench::new("");
    let pieces = testing::fragment(datagram, 0x7171, 512);
    assert_eq!(pieces.len(), 4);
    for i in [3, 1] {
        assert_eq!(b.send(port, pieces[i].clone()).0, Verdict::Taken);
    }
    assert_eq!(b.router.stats().fragments.held, 2);
    let (verdict, _) = b.send(port, pieces[0].clone());
    assert_eq!(verdict, Verdict::Kernel(reason));
    assert!(b.also_sent().is_empty(), "nothing is sent on a port");
    assert_eq!(
        to_kernel_also(&mut b),
        vec![pieces[3].clone(), pieces[1].clone()]
    );
    assert_eq!(b.send(port, pieces[2].clone()).0, Verdict::Kernel(reason));
    let stats = b.router.stats();
    assert_eq!(stats.fragments.held, 0);
    assert_eq!(stats.totals.kernel_count(reason), 4);
    b.advance(10);
    // A new datagram's later fragment, held, times the old ones out: none left.
    let other = testing::fragment(datagram, 0x7272, 512);
    assert_eq!(b.send(port, other[1].clone()).0, Verdict::Taken);
    assert_eq!(
        b.router
            .stats()
            .totals
            .drop_count(DropReason::FragmentTimeout),
        0
    );
}

#[test]
fn out_of_order_fragments_to_a_wan_address_that_the_kernel_owns_reach_it() {
    // UDP port 7000 is outside the NAT range and not forwarded.
    let wan = from_internet(0, SERVER, ISP1);
    let datagram = testing::udp(&wan, 4500, 7000, &[7u8; 1800]);
    fragments_of_the_kernel_follow_their_first(
        Port::Wan(0),
        &datagram,
        KernelReason::RouterTraffic,
    );
}

#[test]
fn out_of_order_fragments_from_the_lan_to_a_wan_address_that_the_kernel_owns_reach_it() {
    // A WAN address's port 53 is neither forwarded nor a NAT port: the
    // router's own (a LAN host's fragments to the LAN address go to the
    // kernel at once, no fragment is held for them).
    let lan = from_host(HOST, ISP1);
    let datagram = testing::udp(&lan, 4500, 53, &[9u8; 1800]);
    fragments_of_the_kernel_follow_their_first(
        Port::Lan,
        &datagram,
        KernelReason::LocalDestination,
    );
}

/// With the fragment table full of the flows' packets, a first fragment of
/// the kernel's pushes none of them out: it goes to the kernel unremembered.
#[test]
fn a_flood_of_first_fragments_to_the_router_does_not_take_the_table() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let flow = testing::udp(&lan, 5000, 4500, &[1u8; 200]);
    for id in 0..MAX_FRAGMENTS as u16 {
        let first = testing::fragment(&flow, id, 64)[0].clone();
        assert!(matches!(
            b.send(Port::Lan, first).0,
            Verdict::Forward { .. }
        ));
    }
    let to_router = testing::udp(&from_internet(0, SERVER, ISP1), 4500, 7000, &[2u8; 200]);
    for id in 0..100 {
        let first = testing::fragment(&to_router, id, 64)[0].clone();
        assert_eq!(
            b.send(Port::Wan(0), first).0,
            Verdict::Kernel(KernelReason::RouterTraffic)
        );
    }
    let stats = b.router.stats().fragments;
    assert_eq!((stats.entries, stats.evicted), (MAX_FRAGMENTS, 0));
    // The flow's later fragments still follow their first.
    let later = testing::fragment(&flow, 7, 64)[1].clone();
    assert!(matches!(
        b.send(Port::Lan, later).0,
        Verdict::Forward { .. }
    ));
}

#[test]
fn an_error_whose_ttl_runs_out_is_dropped_both_ways() {
    let mut b = Bench::new("[[rule]]\naction = \"isp1\"\n");
    let lan = from_host(HOST, SERVER);
    let out = b.send(Port::Lan, testing::udp(&lan, 7000, 53, b"query")).1;
    let seen = testing::check(&out).unwrap();
    let mut dying = from_internet(0, SERVER, ISP1);
    dying.ttl = 1;
    let error = testing::icmp_error(&dying, 3, 3, [0; 4], &out[14..]);
    assert_eq!(
        b.send(Port::Wan(0), error).0,
        Verdict::Drop(DropReason::IcmpErrorTtlExpired)
    );
    // The host's error about the server's reply, with TTL 1.
    let reply = testing::udp(&from_internet(0, SERVER, ISP1), 53, seen.src_port, b"a");
    let delivered = b.send(Port::Wan(0), reply).1;
    let mut host = from_host(HOST, SERVER);
    host.ttl = 1;
    let error = testing::icmp_error(&host, 3, 3, [0; 4], &delivered[14..]);
    assert_eq!(
        b.send(Port::Lan, error).0,
        Verdict::Drop(DropReason::IcmpErrorTtlExpired)
    );
    let totals = b.router.stats().totals;
    assert_eq!(totals.drop_count(DropReason::IcmpErrorTtlExpired), 2);
    assert_eq!(totals.time_exceeded_sent, 0);
}

#[test]
fn a_translated_error_longer_than_the_egress_mtu_is_cut_to_it() {
    // The LAN's MTU is 1001: the error is cut to 1000 bytes of IP packet (an
    // even ICMP length).
    let mut b = Bench::from_text(&base_with(
        "mtu = 1001",
        "",
        "[[rule]]\naction = \"isp1\"\n",
    ));
    let lan = from_host(HOST, SERVER);
    let out = b
        .send(Port::Lan, testing::udp(&lan, 7000, 53, &[5u8; 1400]))
        .1;
    assert_eq!(out.len(), 14 + 1428);
    let error = testing::icmp_error(&from_internet(0, SERVER, ISP1), 3, 3, [0; 4], &out[14..]);
    let (verdict, back) = b.send(Port::Wan(0), error);
    assert_eq!(
        verdict,
        Verdict::Forward {
            port: Port::Lan,
            len: 14 + 1000
        }
    );
    let (seen, kind, quote) = testing::check_icmp_error(&back).unwrap();
    assert_eq!(kind, [3, 3]);
    assert_eq!((seen.src, seen.dst), (SERVER, HOST));
    assert!(!quote.complete, "the quote is cut");
    assert_eq!(
        (quote.src, quote.src_port, quote.dst, quote.dst_port),
        (HOST, 7000, SERVER, 53),
        "the quoted headers are whole and translated"
    );
    assert_eq!(b.router.stats().totals.drop_count(DropReason::TooBig), 0);
}

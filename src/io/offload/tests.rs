//! The fast path's eBPF program run by the kernel (`BPF_PROG_TEST_RUN`, no
//! interface needed) on the frames the router core forwards, installed by
//! [`Offload::sync`] from the core's own entries: it must make the same
//! bytes as the core, count what it forwards back into the flow table, and
//! leave to the workers what is not its. Needs root (CAP_BPF).

use std::time::Duration;

use super::map::Layout;
use super::*;
use crate::io::afxdp::{load_offload_parts, load_xdp_offload_parts};
use crate::router::Verdict;
use crate::testing::offload::{Conversation, Established};
use crate::testing::{self, FIN_ACK};

const LAN_IFINDEX: u32 = 101;
const WAN_IFINDEX: u32 = 102;
const WAN2_IFINDEX: u32 = 103;
/// TCX_REDIRECT and TCX_NEXT as the program returns them.
const REDIRECT: u32 = 7;
const NEXT: u32 = u32::MAX;

/// The fast path with its maps but no link (the test runs the program itself).
fn unattached() -> (Offload, OwnedFd) {
    let (offload, program, _tap) = unattached_with_tap();
    (offload, program)
}

/// [`unattached`], and the workers' socket filter (`--io packet`'s object).
fn unattached_with_tap() -> (Offload, OwnedFd, OwnedFd) {
    let parts = load_offload_parts(&owned()).expect("load the BPF object (needs root)");
    let tap = parts.tap.as_ref().expect("the socket filter, loaded");
    let tap = tap.try_clone().expect("dup the socket filter");
    let (offload, program) = unattached_from(parts);
    (offload, program, tap)
}

/// [`unattached`] as `--io xdp` loads it (TC looks for the XDP program's
/// mark), and the XDP program.
fn unattached_xdp() -> (Offload, OwnedFd, OwnedFd) {
    let (parts, xdp) = load_xdp_offload_parts(&owned()).expect("load the BPF object (needs root)");
    let (offload, program) = unattached_from(parts);
    (offload, program, xdp)
}

fn owned() -> crate::io::OwnedTraffic {
    crate::io::OwnedTraffic {
        lan_networks: Vec::new(),
        bypass: Vec::new(),
        local_addresses: Vec::new(),
        wan_addresses: Vec::new(),
        nat_ports: crate::config::PortRange {
            lo: 20000,
            hi: 59999,
        },
        tcp_forwards: Vec::new(),
        udp_forwards: Vec::new(),
        v6: Default::default(),
    }
}

fn unattached_from(parts: OffloadParts) -> (Offload, OwnedFd) {
    let program = parts.program.try_clone().expect("dup the program");
    let offload = Offload {
        v4: Mutex::new(State::new(Maps::new(parts.entries, parts.stats))),
        v6: Mutex::new(State::new(Maps::new(parts.entries6, parts.stats6))),
        shared: SharedCounts {
            lost: parts.lost,
            by_xdp: parts.by_xdp,
        },
        lan: LAN_IFINDEX,
        wans: vec![WAN_IFINDEX, WAN2_IFINDEX],
        hooks: Mutex::new(Vec::new()),
        xdp_egress: None,
        links: Mutex::new(Vec::new()),
    };
    (offload, program)
}

fn run(program: &OwnedFd, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
    let run =
        sys::bpf::test_run_skb(program.as_raw_fd(), frame, ifindex, 0).expect("BPF_PROG_TEST_RUN");
    (run.retval, run.frame)
}

/// Both directions of `c`: the program redirects each data packet out the
/// right interface with the core's bytes, and the flow's counters take it.
fn same_as_core(bench: &mut Established, c: Conversation) {
    let (offload, program) = unattached();
    offload.refresh(&bench.router, bench.now);
    assert_eq!(offload.stats().entries, 2);
    let before = bench.router.flows(bench.now, 10, |_| true)[0].clone();
    for (frame, ingress, egress) in [
        (c.outbound, LAN_IFINDEX, WAN_IFINDEX),
        (c.inbound, WAN_IFINDEX, LAN_IFINDEX),
    ] {
        let (retval, fast) = run(&program, &frame, ingress);
        assert_eq!(retval, REDIRECT, "redirected");
        let port = if ingress == LAN_IFINDEX {
            Port::Lan
        } else {
            Port::Wan(0)
        };
        let (verdict, core) = bench.send(port, frame);
        assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
        assert_eq!(fast, core, "the program and the core differ (out {egress})");
        testing::check(&fast).expect("valid checksums");
    }
    // The core saw one packet each way itself; the fast path's come back
    // with a sync, not with a refresh.
    bench.now += Duration::from_secs(5);
    offload.refresh(&bench.router, bench.now);
    assert_eq!(offload.stats().packets, 0);
    offload.sync(&bench.router, bench.now);
    let after = bench.router.flows(bench.now, 10, |_| true)[0].clone();
    assert_credited(&offload, &before, &after);
}

/// After a sync: the fast path's packet each way (of [`same_as_core`])
/// came back into the flow, which is fresh, and into the totals.
fn assert_credited<A: crate::packet::Family>(
    offload: &Offload,
    before: &crate::flow::FlowInfo<A>,
    after: &crate::flow::FlowInfo<A>,
) {
    assert_eq!(
        after.packets,
        [before.packets[0] + 2, before.packets[1] + 2]
    );
    assert_eq!(after.idle_s, 0);
    assert_eq!(offload.stats().packets, 2);
}

#[test]
fn tcp_snat_both_ways_as_the_core() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    same_as_core(&mut bench, c);
}

#[test]
fn tcp_dnat_both_ways_as_the_core() {
    let mut bench = Established::new();
    let c = bench.tcp_dnat(50000);
    same_as_core(&mut bench, c);
}

#[test]
fn udp_snat_both_ways_as_the_core() {
    let mut bench = Established::new();
    let c = bench.udp_snat(5353);
    same_as_core(&mut bench, c);
}

#[test]
fn icmp_echo_both_ways_as_the_core() {
    let mut bench = Established::new();
    let c = bench.icmp_echo(777);
    same_as_core(&mut bench, c);
}

#[test]
fn what_is_not_the_fast_paths_goes_on() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    let (offload, program) = unattached();
    offload.sync(&bench.router, bench.now);
    // On the wrong interface, with TTL 1, too big for the egress MTU, a FIN.
    assert_eq!(run(&program, &c.outbound, WAN_IFINDEX).0, NEXT);
    let mut ttl1 = c.outbound.clone();
    testing::edit_ip_header(&mut ttl1, |ip| ip[8] = 1);
    assert_eq!(run(&program, &ttl1, LAN_IFINDEX).0, NEXT);
    bench.router.set_interface_mtu(Port::Wan(0), 576);
    offload.sync(&bench.router, bench.now);
    let big = testing::tcp(
        &addressing_of(&c.outbound),
        40000,
        443,
        testing::ACK,
        &[0u8; 1000],
    );
    assert_eq!(run(&program, &big, LAN_IFINDEX).0, NEXT);
    assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, REDIRECT);
    let fin = testing::tcp(&addressing_of(&c.outbound), 40000, 443, FIN_ACK, &[]);
    assert_eq!(run(&program, &fin, LAN_IFINDEX).0, NEXT);
    // The core saw the FIN: the flow leaves the fast path.
    bench.send(Port::Lan, fin);
    offload.sync(&bench.router, bench.now);
    assert_eq!(offload.stats().entries, 0);
    assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, NEXT);
}

#[test]
fn failover_rst_carries_the_fast_paths_sequence() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    let (offload, program) = unattached();
    offload.sync(&bench.router, bench.now);
    // Data from the server on the fast path only: seq 1000 + 25 bytes.
    assert_eq!(run(&program, &c.inbound, WAN_IFINDEX).0, REDIRECT);
    let all = offload
        .lock::<Addr4>()
        .maps
        .all_totals()
        .expect("batched reads");
    assert_eq!(all.len(), 2);
    assert_eq!(all.values().map(|t| t.packets).sum::<u64>(), 1);
    offload.sync(&bench.router, bench.now);
    let failed = bench.router.fail_over(0);
    let rst = &failed.resets[0];
    let payload = c.inbound.len() - 14 - 20 - 20;
    assert_eq!(
        u32::from_be_bytes([rst[38], rst[39], rst[40], rst[41]]),
        1000 + payload as u32
    );
    offload.sync(&bench.router, bench.now);
    assert_eq!(offload.stats().entries, 0);
}

fn addressing_of(frame: &[u8]) -> testing::Addressing {
    let seen = testing::check(frame).expect("a valid frame");
    testing::Addressing {
        src_mac: frame[6..12].try_into().expect("6 bytes"),
        dst_mac: frame[0..6].try_into().expect("6 bytes"),
        src: seen.src,
        dst: seen.dst,
        ttl: 64,
    }
}

#[test]
fn a_full_map_leaves_flows_to_the_workers() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    let (offload, program) = unattached();
    let entry = bench.router.offloadable(bench.now)[0].entries[0];
    {
        let state = offload.lock::<Addr4>();
        for i in 0..MAX_ENTRIES {
            let key = crate::flow::FlowKey {
                protocol: 17,
                src: crate::packet::Endpoint::new([10, 0, (i >> 8) as u8, i as u8], 1),
                dst: crate::packet::Endpoint::new([10, 1, 0, 0], (i >> 16) as u16),
            };
            state
                .maps
                .insert(&Addr4::key(999, &key), &Addr4::value(1, &entry, false))
                .expect("room for the filler");
        }
    }
    // The counters of the whole map in batches of 4096.
    let all = offload
        .lock::<Addr4>()
        .maps
        .all_totals()
        .expect("batched reads");
    assert_eq!(all.len(), MAX_ENTRIES as usize);
    bench.udp_snat(5353);
    // Two flows refused, each counted once however many syncs it waits.
    for _ in 0..3 {
        offload.sync(&bench.router, bench.now);
        let stats = offload.stats();
        assert_eq!(
            (stats.entries, stats.refused_full, stats.map_errors),
            (0, 2, 0)
        );
    }
    assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, NEXT);
}

#[test]
fn a_changed_entry_is_rewritten_in_place() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    let (offload, program) = unattached();
    offload.sync(&bench.router, bench.now);
    assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, REDIRECT);
    bench.router.set_interface_mtu(Port::Wan(0), 1400);
    offload.sync(&bench.router, bench.now);
    let state = offload.lock::<Addr4>();
    let installed: Vec<_> = state.installed.iter().collect();
    assert_eq!(installed.len(), 2);
    for (key, entry) in installed {
        // Its counters went on: the packet before the change is still there.
        assert_eq!(state.maps.totals(key).packets, entry.seen.packets);
    }
    assert_eq!(
        state
            .installed
            .values()
            .map(|e| e.seen.packets)
            .sum::<u64>(),
        1
    );
    drop(state);
    assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, REDIRECT);
}

#[test]
fn a_down_uplink_or_its_address_change_empties_its_entries() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    let (offload, program) = unattached();
    offload.sync(&bench.router, bench.now);
    assert_eq!(offload.stats().entries, 2);
    // Marked down: the sync before the failover takes it off the map, so
    // no packet moves past the counters the RST is built from.
    bench.router.set_uplink_up(0, false);
    offload.sync(&bench.router, bench.now);
    assert_eq!(offload.stats().entries, 0);
    assert_eq!(run(&program, &c.inbound, WAN_IFINDEX).0, NEXT);
    bench.router.set_uplink_up(0, true);
    offload.sync(&bench.router, bench.now);
    assert_eq!(offload.stats().entries, 2);
    // Before its address changes: none of its flows stay.
    offload.sync_without(&bench.router, bench.now, 0);
    assert_eq!(offload.stats().entries, 0);
    assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, NEXT);
}

/// `cb[0]` of a frame the workers' socket filter gave them, and of one it
/// kept from them for the fast path (offload.bpf.h).
const WORKERS_MARK: u32 = 0x7877_726b;
const FAST_MARK: u32 = 0x7877_6670;
/// TCX_DROP.
const DROP: u32 = 2;

/// `--io packet`: a frame the workers' socket filter gives them (no entry
/// yet) is marked so, and TC leaves it to them even once the entry is in,
/// so a flow installed between the two never has a frame forwarded twice;
/// a frame it keeps from them is marked for the fast path, which TC
/// forwards, or drops and counts if the entry vanished in between.
#[test]
fn tc_leaves_the_workers_the_frames_their_filter_gave_them() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    let (offload, program, tap) = unattached_with_tap();
    // The kernel pulls 14 bytes before a socket filter's test run, where
    // AF_PACKET pushes the Ethernet header back for it.
    let for_filter = [&[0u8; 14][..], &c.outbound].concat();
    let filter = |cb0| {
        sys::bpf::test_run_skb(tap.as_raw_fd(), &for_filter, LAN_IFINDEX, cb0)
            .expect("BPF_PROG_TEST_RUN")
    };
    let given = filter(0);
    assert_eq!(given.retval as usize, c.outbound.len(), "to the workers");
    assert_eq!(given.cb0, WORKERS_MARK);

    offload.refresh(&bench.router, bench.now);
    assert_eq!(offload.stats().entries, 2);
    let left = sys::bpf::test_run_skb(program.as_raw_fd(), &c.outbound, LAN_IFINDEX, given.cb0)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!((left.retval, left.cb0), (NEXT, 0), "left to the workers");
    assert_eq!(left.frame, c.outbound, "untouched");

    assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, REDIRECT);
    let kept = filter(0);
    assert_eq!(
        (kept.retval, kept.cb0),
        (0, FAST_MARK),
        "kept from the workers"
    );

    // Its entry gone before TC looks: dropped and counted, not left to the
    // kernel's stack.
    let all = offload.lock::<Addr4>().installed.keys().copied().collect();
    offload
        .lock::<Addr4>()
        .uninstall(all, &bench.router, bench.now);
    let dropped = sys::bpf::test_run_skb(program.as_raw_fd(), &c.outbound, LAN_IFINDEX, kept.cb0)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!((dropped.retval, dropped.cb0), (DROP, 0));
    assert_eq!(offload.stats().lost, 1);
}

/// `--io xdp`: a frame the XDP program passed to TC for the fast path
/// carries the mark in its source MAC ("zwanfp"); TC forwards it with the
/// entry's real MACs, or drops and counts it when the entry vanished in
/// between, so it never reaches the kernel's stack un-NATed. An unmarked
/// frame without an entry goes on untouched.
#[test]
fn tc_forwards_or_drops_what_the_xdp_program_marked() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40001);
    let (offload, program, _xdp) = unattached_xdp();
    let mut marked = c.outbound.clone();
    marked[6..12].copy_from_slice(b"zwanfp");

    offload.refresh(&bench.router, bench.now);
    let (verdict, out) = run(&program, &marked, LAN_IFINDEX);
    let (_, expected) = run(&program, &c.outbound, LAN_IFINDEX);
    assert_eq!(verdict, REDIRECT);
    assert_eq!(out, expected, "the mark is rewritten like any source MAC");
    assert_ne!(&out[6..12], b"zwanfp");

    let all = offload.lock::<Addr4>().installed.keys().copied().collect();
    offload
        .lock::<Addr4>()
        .uninstall(all, &bench.router, bench.now);
    let (verdict, _) = run(&program, &marked, LAN_IFINDEX);
    assert_eq!(verdict, DROP, "marked, entry gone: dropped");
    assert_eq!(offload.stats().lost, 1);
    let (verdict, out) = run(&program, &c.outbound, LAN_IFINDEX);
    assert_eq!(
        (verdict, out),
        (NEXT, c.outbound.clone()),
        "unmarked: goes on"
    );
    assert_eq!(offload.stats().lost, 1);
}

/// `--io packet` runs no XDP program, so TC never takes a source MAC for its
/// mark: a frame its socket filter gave the workers stays theirs even when
/// a host sends it from the mark's address and its entry appeared since.
#[test]
fn without_the_xdp_program_a_source_mac_is_no_mark() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40002);
    let (offload, program, _tap) = unattached_with_tap();
    let mut spoofed = c.outbound.clone();
    spoofed[6..12].copy_from_slice(b"zwanfp");
    offload.refresh(&bench.router, bench.now);
    let left = sys::bpf::test_run_skb(program.as_raw_fd(), &spoofed, LAN_IFINDEX, WORKERS_MARK)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!((left.retval, left.cb0), (NEXT, 0), "left to the workers");
    let all = offload.lock::<Addr4>().installed.keys().copied().collect();
    offload
        .lock::<Addr4>()
        .uninstall(all, &bench.router, bench.now);
    let (verdict, _) = run(&program, &spoofed, LAN_IFINDEX);
    assert_eq!(verdict, NEXT, "no entry, no mark: goes on");
    assert_eq!(offload.stats().lost, 0);
}

/// The XDP program itself marks what it passes to TC: a frame of an entry
/// whose egress takes no XDP frames leaves it XDP_PASS with the mark as its
/// source MAC and nothing else changed, and TC, given that frame, forwards
/// it as the core would. Run on loopback (a test run's ingress must exist):
/// the entry is keyed by its ifindex.
#[test]
fn the_xdp_program_marks_what_it_passes_to_tc() {
    const LO: u32 = 1;
    const XDP_PASS: u32 = 2;
    let mut bench = Established::new();
    let c = bench.tcp_snat(40003);
    let (mut offload, program, xdp) = unattached_xdp();
    offload.lan = LO;
    offload.refresh(&bench.router, bench.now);
    let (verdict, passed) =
        sys::bpf::test_run_xdp(xdp.as_raw_fd(), &c.outbound, LO).expect("BPF_PROG_TEST_RUN");
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(&passed[6..12], b"zwanfp", "marked");
    assert_eq!(passed[12..], c.outbound[12..], "nothing else changed");
    assert_eq!(passed[..6], c.outbound[..6]);
    let (tc, out) = run(&program, &passed, LO);
    assert_eq!(tc, REDIRECT);
    assert_ne!(&out[6..12], b"zwanfp", "TC rewrote the MACs");
    // A frame of no entry is not the fast path's: no mark.
    let other = bench.tcp_snat(40004).outbound;
    let (_, untouched) = sys::bpf::test_run_xdp(xdp.as_raw_fd(), &other, LO).expect("run");
    assert_eq!(untouched[6..12], other[6..12]);
}

mod ipv6 {
    //! IPv6 flows on the fast path: the TC program, the workers' socket
    //! filter and the XDP program make of their frames what the core makes,
    //! in every `nat6` mode, and leave the rest to the workers.

    use super::*;
    use crate::testing::offload::{Established6, CLIENT6, SERVER6};
    use crate::testing::Extension6;

    /// Both directions of `c`, the one flow of `bench`: redirected by TC
    /// out the right interface with the core's bytes, counted back into
    /// the IPv6 flow.
    fn same_as_core6(bench: &mut Established6, c: Conversation) {
        let (offload, program) = unattached();
        offload.refresh(&bench.inner.router, bench.inner.now);
        assert_eq!(offload.stats().entries6, 2);
        let flows6 = |b: &Established6| b.inner.router.flows6(b.inner.now, 10, |_| true);
        let before = flows6(bench)
            .into_iter()
            .find(|f| f.tcp != 0 || f.packets.iter().all(|p| *p > 0))
            .expect("the flow");
        for (frame, ingress, port) in [
            (c.outbound, LAN_IFINDEX, Port::Lan),
            (c.inbound, WAN_IFINDEX, Port::Wan(0)),
        ] {
            let (retval, fast) = run(&program, &frame, ingress);
            assert_eq!(retval, REDIRECT, "redirected");
            let (verdict, core) = bench.inner.send(port, frame);
            assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
            assert_eq!(
                fast, core,
                "the program and the core differ (from {port:?})"
            );
            testing::check6(&fast).expect("valid checksums");
        }
        bench.inner.now += Duration::from_secs(5);
        offload.sync(&bench.inner.router, bench.inner.now);
        let after = flows6(bench)
            .into_iter()
            .find(|f| f.spec == before.spec)
            .expect("the flow");
        assert_credited(&offload, &before, &after);
    }

    #[test]
    fn every_mode_both_ways_as_the_core() {
        for mode in ["masquerade", "prefix", "npt", "off"] {
            let mut bench = Established6::new(mode);
            let host = bench.host(10);
            let c = bench.tcp_snat(host, SERVER6, 40000);
            same_as_core6(&mut bench, c);
            let mut bench = Established6::new(mode);
            let c = bench.udp_snat(host, SERVER6, 5353);
            same_as_core6(&mut bench, c);
            let mut bench = Established6::new(mode);
            let c = bench.icmp_echo(host, SERVER6, 777);
            same_as_core6(&mut bench, c);
            let mut bench = Established6::new(mode);
            let c = bench.tcp_dnat(CLIENT6, 50000);
            same_as_core6(&mut bench, c);
        }
    }

    #[test]
    fn what_is_not_the_fast_paths_goes_on() {
        let mut bench = Established6::new("masquerade");
        let host = bench.host(10);
        let c = bench.tcp_snat(host, SERVER6, 40000);
        let u = bench.udp_snat(host, SERVER6, 5353);
        let (offload, program) = unattached();
        offload.sync(&bench.inner.router, bench.inner.now);
        assert_eq!(offload.stats().entries6, 4);
        assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, REDIRECT);
        // On the wrong interface; hop limit 1; an extension header; a
        // payload length the packet does not hold, or 0 (BIG TCP); a FIN;
        // UDP without a checksum.
        assert_eq!(run(&program, &c.outbound, WAN_IFINDEX).0, NEXT);
        let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut frame = c.outbound.clone();
            edit(&mut frame);
            frame
        };
        for frame in [
            edited(&|f| f[21] = 1),
            testing::with_extensions6(&c.outbound, &[Extension6::DestOptions]),
            edited(&|f| f[18..20].copy_from_slice(&2000u16.to_be_bytes())),
            edited(&|f| f[18..20].copy_from_slice(&[0, 0])),
            edited(&|f| f[54 + 13] |= 0x01),
        ] {
            assert_eq!(run(&program, &frame, LAN_IFINDEX).0, NEXT);
        }
        let mut no_checksum = u.outbound.clone();
        no_checksum[60..62].copy_from_slice(&[0, 0]);
        assert_eq!(run(&program, &no_checksum, LAN_IFINDEX).0, NEXT);
        assert_eq!(run(&program, &u.outbound, LAN_IFINDEX).0, REDIRECT);
        // Bigger than the egress MTU: the core answers Packet Too Big.
        bench.inner.router.set_interface_mtu(Port::Wan(0), 1280);
        offload.sync(&bench.inner.router, bench.inner.now);
        let big = testing::tcp6(
            &testing::Addressing6 {
                src_mac: c.outbound[6..12].try_into().expect("6 bytes"),
                dst_mac: c.outbound[0..6].try_into().expect("6 bytes"),
                src: host,
                dst: SERVER6,
                hop_limit: 64,
            },
            40000,
            443,
            testing::ACK,
            &[0u8; 1300],
        );
        assert_eq!(run(&program, &big, LAN_IFINDEX).0, NEXT);
        // Down for IPv6: off the map at the next sync.
        bench.inner.router.set_uplink_up6(0, false);
        offload.sync(&bench.inner.router, bench.inner.now);
        assert_eq!(offload.stats().entries6, 0);
        assert_eq!(run(&program, &c.outbound, LAN_IFINDEX).0, NEXT);
    }

    #[test]
    fn failover_rst_carries_the_fast_paths_sequence() {
        let mut bench = Established6::new("prefix");
        let host = bench.host(10);
        let c = bench.tcp_snat(host, SERVER6, 40000);
        let (offload, program) = unattached();
        offload.sync(&bench.inner.router, bench.inner.now);
        // Data from the server on the fast path only: seq 1000 + its payload.
        assert_eq!(run(&program, &c.inbound, WAN_IFINDEX).0, REDIRECT);
        bench.inner.router.set_uplink_up6(0, false);
        offload.sync(&bench.inner.router, bench.inner.now);
        assert_eq!(offload.stats().entries6, 0);
        let failed = bench.inner.router.fail_over6(0);
        let rst = &failed.resets[0];
        let payload = c.inbound.len() - 14 - 40 - 20;
        assert_eq!(
            u32::from_be_bytes([rst[58], rst[59], rst[60], rst[61]]),
            1000 + payload as u32
        );
    }

    /// `--io packet`: the socket filter keeps an offloaded IPv6 flow's
    /// frames from the workers and leaves its decision for TC, as for IPv4.
    #[test]
    fn the_socket_filter_keeps_the_fast_paths_frames_from_the_workers() {
        let mut bench = Established6::new("npt");
        let host = bench.host(10);
        let c = bench.udp_snat(host, SERVER6, 5353);
        let (offload, program, tap) = unattached_with_tap();
        let for_filter = [&[0u8; 14][..], &c.outbound].concat();
        let filter = || {
            sys::bpf::test_run_skb(tap.as_raw_fd(), &for_filter, LAN_IFINDEX, 0)
                .expect("BPF_PROG_TEST_RUN")
        };
        let given = filter();
        assert_eq!(
            (given.retval as usize, given.cb0),
            (c.outbound.len(), WORKERS_MARK)
        );
        offload.refresh(&bench.inner.router, bench.inner.now);
        let kept = filter();
        assert_eq!(
            (kept.retval, kept.cb0),
            (0, FAST_MARK),
            "kept from the workers"
        );
        let tc = sys::bpf::test_run_skb(program.as_raw_fd(), &c.outbound, LAN_IFINDEX, kept.cb0)
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!((tc.retval, tc.cb0), (REDIRECT, 0));
        let (_, core) = bench.inner.send(Port::Lan, c.outbound.clone());
        assert_eq!(tc.frame, core);
        // With an extension header: the workers'.
        let with_ext = testing::with_extensions6(&c.outbound, &[Extension6::DestOptions]);
        let for_filter = [&[0u8; 14][..], &with_ext].concat();
        let given = sys::bpf::test_run_skb(tap.as_raw_fd(), &for_filter, LAN_IFINDEX, 0)
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(given.cb0, WORKERS_MARK);
    }

    /// `--io xdp` with an egress that accepts XDP frames: the XDP program
    /// rewrites and redirects an offloaded IPv6 flow's frames itself, with
    /// the core's bytes (a test run sends nothing: XDP_REDIRECT and the
    /// frame), counted as the XDP program's; a partial checksum leaves the
    /// frame to TC, marked. Run on loopback (see the IPv4 test).
    #[test]
    fn the_xdp_program_forwards_as_the_core() {
        const LO: u32 = 1;
        const XDP_PASS: u32 = 2;
        const XDP_REDIRECT: u32 = 4;
        for kind in ["tcp", "udp", "echo"] {
            let mut bench = Established6::new("prefix");
            let host = bench.host(10);
            let c = match kind {
                "tcp" => bench.tcp_snat(host, SERVER6, 40000),
                "udp" => bench.udp_snat(host, SERVER6, 5353),
                _ => bench.icmp_echo(host, SERVER6, 777),
            };
            let (parts, xdp) =
                load_xdp_offload_parts(&owned()).expect("load the BPF object (needs root)");
            let egress = MapHandle::try_from(&parts.xdp_egress).expect("dup xdp_egress");
            let (mut offload, _program) = unattached_from(parts);
            offload.lan = LO;
            offload.refresh(&bench.inner.router, bench.inner.now);
            egress
                .update(&WAN_IFINDEX.to_ne_bytes(), &[1], MapFlags::ANY)
                .expect("xdp_egress");
            if kind == "tcp" {
                // A partial checksum (the pseudo-header's sum alone): TC's.
                let mut partial = c.outbound.clone();
                let len = (partial.len() - 54) as u32;
                let (src, dst) = testing::addresses6(&partial[14..]);
                let sum = crate::packet::checksum::pseudo_header_sum6(src, dst, 6, len);
                let sum = crate::packet::checksum::fold(sum);
                partial[70..72].copy_from_slice(&sum.to_be_bytes());
                let (verdict, passed) = sys::bpf::test_run_xdp(xdp.as_raw_fd(), &partial, LO)
                    .expect("BPF_PROG_TEST_RUN");
                assert_eq!((verdict, &passed[6..12]), (XDP_PASS, &b"zwanfp"[..]));
            }
            let (verdict, out) = sys::bpf::test_run_xdp(xdp.as_raw_fd(), &c.outbound, LO)
                .expect("BPF_PROG_TEST_RUN");
            assert_eq!(verdict, XDP_REDIRECT, "{kind}");
            let (_, core) = bench.inner.send(Port::Lan, c.outbound.clone());
            assert_eq!(out, core, "{kind}: the XDP program and the core differ");
            assert_eq!(offload.stats().by_xdp, 1, "{kind}");
        }
    }

    /// The XDP program forwards or marks an offloaded flow's IPv6 frames as
    /// it does IPv4's: with no XDP egress, XDP_PASS with the mark, which TC
    /// forwards as the core would. Run on loopback (see the IPv4 test).
    #[test]
    fn the_xdp_program_marks_what_it_passes_to_tc() {
        const LO: u32 = 1;
        const XDP_PASS: u32 = 2;
        let mut bench = Established6::new("masquerade");
        let host = bench.host(10);
        let c = bench.tcp_snat(host, SERVER6, 40003);
        let (mut offload, program, xdp) = unattached_xdp();
        offload.lan = LO;
        offload.refresh(&bench.inner.router, bench.inner.now);
        let (verdict, passed) =
            sys::bpf::test_run_xdp(xdp.as_raw_fd(), &c.outbound, LO).expect("BPF_PROG_TEST_RUN");
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(&passed[6..12], b"zwanfp", "marked");
        assert_eq!(passed[12..], c.outbound[12..], "nothing else changed");
        let (tc, out) = run(&program, &passed, LO);
        assert_eq!(tc, REDIRECT);
        let (_, core) = bench.inner.send(Port::Lan, c.outbound.clone());
        assert_eq!(out, core, "TC rewrote it as the core does");
        // Not the fast path's: untouched, passed.
        let other = bench.tcp_snat(host, SERVER6, 40004).outbound;
        let (verdict, untouched) =
            sys::bpf::test_run_xdp(xdp.as_raw_fd(), &other, LO).expect("run");
        assert_eq!((verdict, untouched), (XDP_PASS, other));
    }
}

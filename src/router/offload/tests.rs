//! The entries the core computes for the fast path: applied as the eBPF
//! program applies them, they make the same bytes as the core.

use super::*;
use crate::flow::tcp_state;
use crate::testing::offload::{Established, GATEWAY_MAC, HOST_MAC, LAN_MAC, WAN_MAC};
use crate::testing::{self, tcp, Addressing, FIN_ACK};
use crate::verdict::Verdict;

/// What the eBPF program does with a matching frame (TCP, UDP or ICMP echo,
/// IPv4 without options): MACs, addresses, ports or echo identifier, TTL,
/// checksums by the entry's deltas.
fn apply(entry: &OffloadEntry, frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    let ip_check = |c: u16, d: u16| !fold(u32::from(!c) + u32::from(d));
    out[0..6].copy_from_slice(&entry.dst_mac);
    out[6..12].copy_from_slice(&entry.src_mac);
    out[22] -= 1;
    let check = u16::from_be_bytes([out[24], out[25]]);
    out[24..26].copy_from_slice(&ip_check(check, entry.ip_delta).to_be_bytes());
    out[26..30].copy_from_slice(&entry.src.addr);
    out[30..34].copy_from_slice(&entry.dst.addr);
    let at = match entry.key.protocol {
        PROTO_TCP => 34 + 16,
        PROTO_UDP => 34 + 6,
        _ => 34 + 2,
    };
    if entry.key.protocol == PROTO_ICMP {
        // The identifier: a request's (type 8) stands for its source port.
        let id = if out[34] == 8 {
            entry.src.port
        } else {
            entry.dst.port
        };
        out[38..40].copy_from_slice(&id.to_be_bytes());
    } else {
        out[34..36].copy_from_slice(&entry.src.port.to_be_bytes());
        out[36..38].copy_from_slice(&entry.dst.port.to_be_bytes());
    }
    let l4 = u16::from_be_bytes([out[at], out[at + 1]]);
    let l4 = ip_check(ip_check(l4, entry.pseudo_delta), entry.port_delta);
    out[at..at + 2].copy_from_slice(&l4.to_be_bytes());
    out
}

fn only_flow(bench: &Established) -> OffloadFlow {
    let flows = bench.router.offloadable(bench.now);
    assert_eq!(flows.len(), 1, "{flows:?}");
    flows[0]
}

/// Both directions of `conversation`'s flow: the entry matches the frame as
/// it arrives and makes of it what the core makes.
fn same_as_core(bench: &mut Established, outbound: Vec<u8>, inbound: Vec<u8>) {
    let flow = only_flow(bench);
    for (entry, frame) in flow.entries.iter().zip([outbound, inbound]) {
        let seen = testing::check(&frame).expect("a valid frame");
        assert_eq!(entry.key.src.addr, seen.src.octets());
        assert_eq!(entry.key.dst.addr, seen.dst.octets());
        // (An ICMP echo's identifier stands for one port in the key.)
        if entry.key.protocol != PROTO_ICMP {
            assert_eq!(
                (entry.key.src.port, entry.key.dst.port),
                (seen.src_port, seen.dst_port)
            );
        }
        let fast = apply(entry, &frame);
        let (verdict, core) = bench.send(entry.ingress, frame);
        assert_eq!(
            verdict,
            Verdict::Forward {
                port: entry.egress,
                len: core.len()
            }
        );
        assert_eq!(fast, core, "fast path and core differ for {entry:?}");
        testing::check(&fast).expect("valid checksums");
    }
}

#[test]
fn tcp_snat_entries_rewrite_as_the_core_does() {
    let mut bench = Established::new();
    let c = bench.tcp_snat(40000);
    same_as_core(&mut bench, c.outbound, c.inbound);
    let flow = only_flow(&bench);
    assert_eq!(flow.entries[0].ingress, Port::Lan);
    assert_eq!(flow.entries[0].egress, Port::Wan(0));
    assert_eq!(
        (flow.entries[0].src_mac, flow.entries[0].dst_mac),
        (WAN_MAC, GATEWAY_MAC)
    );
    assert_eq!(flow.entries[1].ingress, Port::Wan(0));
    assert_eq!(flow.entries[1].egress, Port::Lan);
    assert_eq!(
        (flow.entries[1].src_mac, flow.entries[1].dst_mac),
        (LAN_MAC, HOST_MAC)
    );
    assert_eq!((flow.entries[0].mtu, flow.entries[1].mtu), (1500, 1500));
}

#[test]
fn tcp_dnat_entries_rewrite_as_the_core_does() {
    let mut bench = Established::new();
    let c = bench.tcp_dnat(50000);
    same_as_core(&mut bench, c.outbound, c.inbound);
}

#[test]
fn udp_entries_rewrite_as_the_core_does() {
    let mut bench = Established::new();
    let c = bench.udp_snat(5353);
    same_as_core(&mut bench, c.outbound, c.inbound);
}

#[test]
fn icmp_echo_entries_rewrite_as_the_core_does() {
    let mut bench = Established::new();
    let c = bench.icmp_echo(777);
    let flow = only_flow(&bench);
    assert_eq!(flow.entries[0].pseudo_delta, 0, "ICMP has no pseudo-header");
    same_as_core(&mut bench, c.outbound, c.inbound);
}

/// The inside host's packets to the server.
fn host_to_server() -> Addressing {
    Addressing {
        src_mac: HOST_MAC,
        dst_mac: LAN_MAC,
        src: crate::testing::offload::HOST,
        dst: crate::testing::offload::SERVER,
        ttl: 64,
    }
}

#[test]
fn only_established_flows_are_offered() {
    let mut bench = Established::new();
    let host = host_to_server();
    // A SYN alone, and a UDP query without an answer: not yet.
    bench.send(Port::Lan, tcp(&host, 41000, 443, testing::SYN, &[]));
    bench.send(Port::Lan, testing::udp(&host, 6000, 53, b"q"));
    assert!(bench.router.offloadable(bench.now).is_empty());
    // Established: offered; after a FIN: back to the workers.
    bench.tcp_snat(42000);
    assert_eq!(bench.router.offloadable(bench.now).len(), 1);
    bench.send(Port::Lan, tcp(&host, 42000, 443, FIN_ACK, &[]));
    assert!(bench.router.offloadable(bench.now).is_empty());
}

#[test]
fn unknown_gateway_or_idle_flows_are_not_offered() {
    let mut bench = Established::new();
    bench.tcp_snat(40000);
    bench.router.set_gateway_mac(0, None);
    assert!(bench.router.offloadable(bench.now).is_empty());
    bench.router.set_gateway_mac(0, Some(GATEWAY_MAC));
    assert_eq!(bench.router.offloadable(bench.now).len(), 1);
    // Close to its idle timeout (UDP: 300 s by default): taken off first.
    let mut bench = Established::new();
    bench.udp_snat(5353);
    bench.now += Duration::from_secs(300 - u64::from(EXPIRY_MARGIN_S) - 1);
    assert_eq!(bench.router.offloadable(bench.now).len(), 1);
    bench.now += Duration::from_secs(1);
    assert!(bench.router.offloadable(bench.now).is_empty());
}

#[test]
fn the_mtu_follows_the_interface() {
    let mut bench = Established::new();
    bench.tcp_snat(40000);
    bench.router.set_interface_mtu(Port::Wan(0), 1400);
    let flow = only_flow(&bench);
    assert_eq!((flow.entries[0].mtu, flow.entries[1].mtu), (1400, 1500));
}

#[test]
fn credits_reach_the_flow() {
    let mut bench = Established::new();
    bench.tcp_snat(40000);
    let flow = only_flow(&bench);
    let before = bench.router.flows(bench.now, 10, |_| true)[0].clone();
    let traffic_before = bench.router.stats().uplinks[0].traffic;
    let later = bench.now + Duration::from_secs(20);
    let credit = OffloadCredit {
        packets: 10,
        bytes: 15000,
        last_seen: Some(later),
        next_seq_to_lan: Some(123_456),
    };
    assert!(bench
        .router
        .credit_offloaded(Side::Wan, &flow.entries[1].key, credit));
    let after = bench.router.flows(later, 10, |_| true)[0].clone();
    assert_eq!(after.packets[1], before.packets[1] + 10);
    assert_eq!(after.bytes[1], before.bytes[1] + 15000);
    assert_eq!(after.idle_s, 0);
    assert_eq!(after.tcp, tcp_state::SYN_FROM_LAN | tcp_state::SYN_FROM_WAN);
    // The uplink's totals take it too: in, from the WAN side.
    let traffic = bench.router.stats().uplinks[0].traffic;
    assert_eq!(traffic.packets_in, traffic_before.packets_in + 10);
    assert_eq!(traffic.bytes_in, traffic_before.bytes_in + 15000);
    assert_eq!(traffic.bytes_out, traffic_before.bytes_out);
    // The failover RST carries the credited sequence.
    let failed = bench.router.fail_over(0);
    assert_eq!(failed.reset, 1);
    let rst = &failed.resets[0];
    assert_eq!(
        u32::from_be_bytes([rst[38], rst[39], rst[40], rst[41]]),
        123_456
    );
    // A flow that is gone takes no credit.
    assert!(!bench
        .router
        .credit_offloaded(Side::Wan, &flow.entries[1].key, credit));
}

#[test]
fn flows_of_a_down_uplink_are_not_offered() {
    let mut bench = Established::new();
    bench.tcp_snat(40000);
    assert_eq!(bench.router.offloadable(bench.now).len(), 1);
    bench.router.set_uplink_up(0, false);
    assert!(bench.router.offloadable(bench.now).is_empty());
    bench.router.set_uplink_up(0, true);
    assert_eq!(bench.router.offloadable(bench.now).len(), 1);
}

#[test]
fn a_reloaded_away_forward_leaves_the_fast_path_before_its_flows_close() {
    let mut bench = Established::new();
    bench.tcp_dnat(50000);
    assert_eq!(bench.router.offloadable(bench.now).len(), 1);
    let without_forward = crate::config::Config::from_toml(
        crate::testing::TWO_UPLINKS,
        std::path::Path::new("test.toml"),
    )
    .expect("a valid configuration");
    let mut offered_before_closing = None;
    let reloaded = bench.router.reconfigure_with(&without_forward, || {
        offered_before_closing = Some(bench.router.offloadable(bench.now).len());
    });
    assert_eq!(offered_before_closing, Some(0));
    assert_eq!(reloaded.forward_flows_closed, 1);
}

#[test]
fn early_drop_passes_an_offloaded_flow_by() {
    let mut bench = Established::new();
    bench.tcp_snat(40000);
    let spec = only_flow(&bench).spec;
    assert!(bench
        .router
        .mark_offloaded(Side::Lan, &spec.lan_key(), true));
    // Reset: unanswered for early drop, but its entries are still in the
    // map until the next sync.
    let host = host_to_server();
    bench.send(Port::Lan, tcp(&host, 40000, 443, testing::RST, &[]));
    let now = seconds(bench.now);
    assert!(bench.router.table.evict_unanswered(now, 8).is_empty());
    assert!(bench
        .router
        .mark_offloaded(Side::Lan, &spec.lan_key(), false));
    assert_eq!(bench.router.table.evict_unanswered(now + 1, 8).len(), 1);
    assert!(!bench
        .router
        .mark_offloaded(Side::Lan, &spec.lan_key(), true));
}

mod ipv6 {
    //! IPv6 entries: applied as the eBPF program applies them, they make
    //! the same bytes as the core's IPv6 path, in every `nat6` mode.

    use std::net::Ipv6Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::packet::PROTO_ICMPV6;
    use crate::testing::offload::{Conversation, Established6, CLIENT6, SERVER6};

    const MODES: [&str; 4] = ["masquerade", "prefix", "npt", "off"];

    /// What the eBPF program does with a matching IPv6 frame (no extension
    /// header): MACs, hop limit, addresses, ports or echo identifier, the
    /// L4 checksum by both deltas at once (as the XDP program does; TC's
    /// helper adds them one after the other, the same one's-complement sum).
    fn apply6(entry: &OffloadEntry<Addr6>, frame: &[u8]) -> Vec<u8> {
        let mut out = frame.to_vec();
        out[0..6].copy_from_slice(&entry.dst_mac);
        out[6..12].copy_from_slice(&entry.src_mac);
        out[21] -= 1;
        out[22..38].copy_from_slice(&entry.src.addr);
        out[38..54].copy_from_slice(&entry.dst.addr);
        let at = match entry.key.protocol {
            PROTO_TCP => 54 + 16,
            PROTO_UDP => 54 + 6,
            _ => 54 + 2,
        };
        if entry.key.protocol == PROTO_ICMPV6 {
            // A request's (type 128) identifier stands for its source port.
            let id = if out[54] == 128 {
                entry.src.port
            } else {
                entry.dst.port
            };
            out[58..60].copy_from_slice(&id.to_be_bytes());
        } else {
            out[54..56].copy_from_slice(&entry.src.port.to_be_bytes());
            out[56..58].copy_from_slice(&entry.dst.port.to_be_bytes());
        }
        let check = u16::from_be_bytes([out[at], out[at + 1]]);
        let delta = fold(u32::from(entry.pseudo_delta) + u32::from(entry.port_delta));
        let mut check = !fold(u32::from(!check) + u32::from(delta));
        if entry.key.protocol == PROTO_UDP && check == 0 {
            check = 0xffff;
        }
        out[at..at + 2].copy_from_slice(&check.to_be_bytes());
        out
    }

    fn only_flow6(bench: &Established6) -> OffloadFlow<Addr6> {
        let flows = bench.inner.router.offloadable6(bench.inner.now);
        assert_eq!(flows.len(), 1, "{flows:?}");
        flows[0]
    }

    /// Both directions of the one offered flow: the entry matches the frame
    /// as it arrives and makes of it what the core makes.
    fn same_as_core6(bench: &mut Established6, c: Conversation) -> Result<(), TestCaseError> {
        let flow = only_flow6(bench);
        for (entry, frame) in flow.entries.iter().zip([c.outbound, c.inbound]) {
            let seen = testing::check6(&frame).map_err(TestCaseError::fail)?;
            prop_assert_eq!(entry.key.src.addr, seen.src);
            prop_assert_eq!(entry.key.dst.addr, seen.dst);
            if entry.key.protocol != PROTO_ICMPV6 {
                prop_assert_eq!((entry.key.src.port, entry.key.dst.port), seen.ports());
            }
            let fast = apply6(entry, &frame);
            let (verdict, core) = bench.inner.send(entry.ingress, frame);
            prop_assert_eq!(
                verdict,
                Verdict::Forward {
                    port: entry.egress,
                    len: core.len()
                }
            );
            prop_assert_eq!(&fast, &core, "fast path and core differ for {:?}", entry);
            testing::check6(&fast).map_err(TestCaseError::fail)?;
        }
        Ok(())
    }

    /// The flows a test opens.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        TcpSnat,
        TcpDnat,
        Udp,
        Echo,
    }

    const KINDS: [Kind; 4] = [Kind::TcpSnat, Kind::TcpDnat, Kind::Udp, Kind::Echo];

    /// A fresh bench in `mode` with one established flow of `kind` between
    /// host `iid` (host 10 for an inbound one) and `remote`, `port` its
    /// inside host's port (the remote end's for an inbound one).
    fn open(
        mode: &str,
        kind: Kind,
        iid: u16,
        remote: Ipv6Addr,
        port: u16,
    ) -> (Established6, Conversation) {
        let mut bench = Established6::new(mode);
        let host = bench.host(iid);
        let c = match kind {
            Kind::TcpSnat => bench.tcp_snat(host, remote, port),
            Kind::TcpDnat => bench.tcp_dnat(remote, port),
            Kind::Udp => bench.udp_snat(host, remote, port),
            Kind::Echo => bench.icmp_echo(host, remote, port),
        };
        (bench, c)
    }

    #[test]
    fn entries_rewrite_as_the_core_does_in_every_mode() {
        for mode in MODES {
            for kind in KINDS {
                let remote = if matches!(kind, Kind::TcpDnat) {
                    CLIENT6
                } else {
                    SERVER6
                };
                let (mut bench, c) = open(mode, kind, 10, remote, 40000);
                same_as_core6(&mut bench, c).unwrap_or_else(|e| panic!("{mode} {kind:?}: {e}"));
            }
        }
    }

    #[test]
    fn entries_follow_the_core_s_view_of_the_flow() {
        let (bench, _) = open("masquerade", Kind::TcpSnat, 10, SERVER6, 40000);
        let flow = only_flow6(&bench);
        let [out, back] = flow.entries;
        assert_eq!((out.ingress, out.egress), (Port::Lan, Port::Wan(0)));
        assert_eq!((out.src_mac, out.dst_mac), (WAN_MAC, GATEWAY_MAC));
        assert_eq!((back.ingress, back.egress), (Port::Wan(0), Port::Lan));
        assert_eq!((back.src_mac, back.dst_mac), (LAN_MAC, HOST_MAC));
        assert_eq!(
            (out.ip_delta, back.ip_delta),
            (0, 0),
            "no IPv6 header checksum"
        );
        // nat6 = "off": nothing the checksum covers changes.
        let (bench, _) = open("off", Kind::TcpSnat, 10, SERVER6, 40000);
        for entry in only_flow6(&bench).entries {
            assert_eq!((entry.pseudo_delta, entry.port_delta), (0, 0));
        }
    }

    #[test]
    fn ipv6_flows_leave_the_fast_path_when_ipv6_goes_down_and_credits_reach_them() {
        let (bench, _) = open("masquerade", Kind::TcpSnat, 10, SERVER6, 40000);
        let router = &bench.inner.router;
        let now = bench.inner.now;
        let flow = only_flow6(&bench);
        // No IPv4 flow is offered for it.
        assert!(router.offloadable(now).is_empty());
        let credit = OffloadCredit {
            packets: 7,
            bytes: 7000,
            last_seen: Some(now),
            next_seq_to_lan: Some(654_321),
        };
        let before = router.stats().uplinks[0].traffic.packets_in;
        assert!(router.credit_offloaded(Side::Wan, &flow.entries[1].key, credit));
        let seen = router.flows6(now, 10, |_| true)[0].clone();
        assert_eq!(seen.packets[1], 1 + 7, "the SYN-ACK, then the credit");
        let after = router.stats().uplinks[0].traffic.packets_in;
        assert_eq!(after, before + 7, "the uplink's totals too");
        router.set_uplink_up6(0, false);
        assert!(router.offloadable6(now).is_empty(), "down for IPv6");
        assert_eq!(router.offloadable(now).len(), 0);
        // The failover RST carries the credited sequence.
        let failed = router.fail_over6(0);
        assert_eq!(failed.reset, 1);
        let rst = &failed.resets[0];
        assert_eq!(
            u32::from_be_bytes([rst[58], rst[59], rst[60], rst[61]]),
            654_321
        );
        assert!(!router.credit_offloaded(Side::Wan, &flow.entries[1].key, credit));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random established IPv6 flows in every mode: the entry's rewrite
        /// gives the core's bytes, both ways.
        #[test]
        fn random_flows_rewrite_as_the_core_does(
            mode in proptest::sample::select(MODES.to_vec()),
            kind in proptest::sample::select(KINDS.to_vec()),
            iid in 2u16..0xfff0,
            remote in any::<[u16; 8]>(),
            port in 1u16..,
        ) {
            // A global unicast remote end outside the router's prefixes.
            let r = remote;
            let remote = Ipv6Addr::new(0x2a00 | (r[0] & 0xff), r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
            let iid = if matches!(kind, Kind::TcpDnat) { 10 } else { iid };
            let (mut bench, c) = open(mode, kind, iid, remote, port);
            same_as_core6(&mut bench, c)?;
        }
    }
}

//! The established fast path: a whole TCP or UDP packet of a known flow,
//! read at fixed offsets (`packet::parse_plain`), its flow found, checked
//! and recorded in one closure under one shard read lock, and rewritten in
//! one pass with the checksum deltas the flow keeps. It takes a frame only
//! when the general path would forward it unchanged in kind (same flow, same
//! egress, no fragmentation, no ICMP answer, nothing held) and declines
//! (None) before recording anything otherwise, so the general path then
//! sees the frame as if the fast path did not exist (and takes the frame as
//! `parse_plain` read it, which is what the general parser reads, so a new
//! flow's first packet is not parsed twice: `Router::process`). Tests in
//! `tests/core/established.rs` hold the two paths byte-identical. IPv6's
//! (`ipv6/established.rs`) shares the step under the lock
//! ([`Router::established_flow`]).

use super::flows::{record_with, tcp_bits, FamilyFlows};
use super::{key_of, Egress, FrameContext, Router};
use crate::flow::{FlowKey, FlowKind, FlowSpec, Side};
use crate::packet::{self, ChecksumDeltas, Family, Frame, Parsed, L3_OFFSET};
use crate::verdict::{Port, Verdict};

impl Router {
    /// The verdict for `buf`, which [`packet::parse_plain`] read as
    /// `frame`, when the fast path takes it, its bytes rewritten; None
    /// (nothing changed, nothing recorded) otherwise.
    pub(super) fn established(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        ctx: &FrameContext,
    ) -> Option<Verdict> {
        // The general path's classification, for the one outcome taken here:
        // from the LAN, a LAN host to neither the LAN nor a WAN address;
        // from a WAN, a non-LAN source to a WAN address.
        let side = match ctx.meta.port {
            Port::Lan => {
                let plain = self.is_lan(frame.src)
                    && !self.is_lan(frame.dst)
                    && self.uplink_with_address(frame.dst).is_none();
                plain.then_some(Side::Lan)?
            }
            Port::Wan(_) => {
                let plain =
                    self.uplink_with_address(frame.dst).is_some() && !self.is_lan(frame.src);
                plain.then_some(Side::Wan)?
            }
        };
        let (egress, deltas) = self.established_flow(side, key_of(frame), frame, ctx, |spec| {
            if matches!(spec.kind, FlowKind::Hairpin { .. }) {
                return None;
            }
            match side {
                Side::Lan => self.egress_to_remote(spec).ok(),
                Side::Wan => self.egress_to_inside(spec, Some(ctx)).ok(),
            }
        })?;
        packet::apply_established(buf, frame, &egress.rewrite, deltas);
        Some(Verdict::Forward {
            port: egress.port,
            len: frame.end,
        })
    }

    /// Both families' fast path from the flow lookup on: the flow `key`
    /// arriving on `side` belongs to, when it is live, has an `egress`
    /// (None: the general path's to handle) and the packet fits that
    /// egress's MTU, gets the packet recorded under the shard's read lock,
    /// and its egress and checksum deltas come back; None otherwise, with
    /// nothing recorded, and `key` noted as absent when no flow has it (so
    /// the general path does not look again). A TCP segment with SYN, FIN or
    /// RST is the general path's: it changes the flow's state, may have its
    /// MSS clamped, and is evidence of an uplink's health
    /// (`LaneCounters::tcp_evidence`).
    #[inline]
    pub(super) fn established_flow<A: Family, R>(
        &self,
        side: Side,
        key: FlowKey<A>,
        frame: &impl Parsed,
        ctx: &FrameContext,
        egress: impl FnOnce(&FlowSpec<A>) -> Option<Egress<R>>,
    ) -> Option<(Egress<R>, ChecksumDeltas)>
    where
        Router: FamilyFlows<A>,
    {
        if tcp_bits(frame) != (false, false, false) {
            return None;
        }
        let timeouts = self.timeouts.get();
        let found = self.flow_table().with_flow(side, &key, |flow| {
            if flow.is_expired(ctx.now, &timeouts) {
                return None;
            }
            let egress = egress(&flow.spec)?;
            if frame.end() - L3_OFFSET > usize::from(self.mtu(egress.port)) {
                return None;
            }
            record_with(flow, side, frame, ctx.now, (false, false, false));
            Some((egress, flow.deltas[side as usize]))
        });
        if found.is_none() {
            Router::absent(ctx).set(Some((side, key)));
        }
        found?
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;

    use proptest::prelude::*;

    use super::super::test_support::{fast_is_general, meta, NOW};
    use super::super::{InterfaceMacs, Lane};
    use super::*;
    use crate::config::Config;
    use crate::testing::{self, Addressing, Flags, ACK, SYN, SYN_ACK};

    const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const WAN_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 2, 2]];
    const GATEWAY_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]];
    const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

    fn router() -> (Router, Lane) {
        let config = Config::from_toml(testing::TWO_UPLINKS, Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let router = Router::new(
            &config,
            InterfaceMacs {
                lan: LAN_MAC,
                wans: WAN_MACS.to_vec(),
            },
        );
        for (id, mac) in GATEWAY_MACS.iter().enumerate() {
            router.set_gateway_mac(id as u8, Some(*mac));
            router.set_uplink_up(id as u8, true);
        }
        for host in 10..20 {
            router.set_lan_mac(Ipv4Addr::new(192, 168, 50, host), HOST_MAC);
        }
        let lane = router.lane();
        (router, lane)
    }

    fn context(lane: &Lane, port: Port) -> FrameContext<'_> {
        FrameContext::new(lane, meta(port))
    }

    type Opened = super::super::test_support::Opened<Addressing>;

    fn open(
        router: &Router,
        lane: &mut Lane,
        tcp: bool,
        host: u8,
        port: u16,
        server: u8,
    ) -> Opened {
        let lan = Addressing {
            src_mac: HOST_MAC,
            dst_mac: LAN_MAC,
            src: Ipv4Addr::new(192, 168, 50, host),
            dst: Ipv4Addr::new(203, 0, 113, server),
            ttl: 64,
        };
        let mut first = testing::tcp_or_udp(tcp, &lan, (port, 443), SYN, b"hello");
        let Verdict::Forward {
            port: Port::Wan(uplink),
            len,
        } = router.process(lane, &mut first, meta(Port::Lan))
        else {
            panic!("the first packet opens a flow");
        };
        let seen = testing::check(&first[..len]).expect("a valid frame out");
        let wan = Addressing {
            src_mac: GATEWAY_MACS[usize::from(uplink)],
            dst_mac: WAN_MACS[usize::from(uplink)],
            src: seen.dst,
            dst: seen.src,
            ttl: 60,
        };
        let wan_ports = (seen.dst_port, seen.src_port);
        let mut reply = testing::tcp_or_udp(tcp, &wan, wan_ports, SYN_ACK, b"hi");
        let verdict = router.process(lane, &mut reply, meta(Port::Wan(uplink)));
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
        Opened {
            tcp,
            lan,
            lan_ports: (port, 443),
            uplink,
            wan,
            wan_ports,
        }
    }

    fn packets_recorded(router: &Router) -> u64 {
        router
            .flows(NOW, usize::MAX, |_| true)
            .iter()
            .map(|f| f.packets[0] + f.packets[1])
            .sum()
    }

    #[test]
    fn takes_plain_packets_of_open_flows_both_ways() {
        let (router, mut lane) = router();
        for tcp in [false, true] {
            let flow = open(&router, &mut lane, tcp, 10, 2000, 1);
            let ctx = context(&lane, Port::Lan);
            let mut out = testing::tcp_or_udp(tcp, &flow.lan, flow.lan_ports, ACK, b"more");
            let plain = packet::parse_plain(&out).expect("a plain frame");
            let verdict = router.established(&mut out, &plain, &ctx);
            assert_eq!(
                verdict,
                Some(Verdict::Forward {
                    port: Port::Wan(flow.uplink),
                    len: out.len()
                })
            );
            let seen = testing::check(&out).expect("valid checksums");
            assert_eq!((seen.src, seen.src_port), (flow.wan.dst, flow.wan_ports.1));
            let ctx = FrameContext {
                meta: meta(Port::Wan(flow.uplink)),
                ..ctx
            };
            let mut back = testing::tcp_or_udp(tcp, &flow.wan, flow.wan_ports, ACK, b"back");
            let plain = packet::parse_plain(&back).expect("a plain frame");
            let verdict = router.established(&mut back, &plain, &ctx);
            assert_eq!(
                verdict,
                Some(Verdict::Forward {
                    port: Port::Lan,
                    len: back.len()
                })
            );
            let seen = testing::check(&back).expect("valid checksums");
            assert_eq!(
                (seen.dst, seen.dst_port, seen.dst_mac),
                (flow.lan.src, 2000, HOST_MAC)
            );
        }
    }

    /// A LAN host's new MAC (from the neighbour table) reaches the next reply
    /// the fast path takes, though the lane cached the old one.
    #[test]
    fn a_neighbour_change_reaches_the_next_reply() {
        let (router, mut lane) = router();
        let flow = open(&router, &mut lane, false, 10, 2000, 1);
        let moved = [2, 0, 0, 0, 0, 0x99];
        for (mac, change) in [
            (HOST_MAC, None),
            (moved, Some(moved)),
            (HOST_MAC, Some(HOST_MAC)),
        ] {
            if let Some(mac) = change {
                router.set_lan_mac(flow.lan.src, mac);
            }
            let mut back = testing::tcp_or_udp(false, &flow.wan, flow.wan_ports, ACK, b"back");
            let verdict = router.process(&mut lane, &mut back, meta(Port::Wan(flow.uplink)));
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
            assert_eq!(testing::check(&back).expect("a valid frame").dst_mac, mac);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A new source-NATed flow's first packet, rewritten with the deltas
        /// its flow just computed, has the bytes the general rewrite gives
        /// it (MSS clamped first for a SYN): TCP SYNs with an MSS option,
        /// UDP with and without a checksum, any TTL that is forwarded, any
        /// size that fits.
        #[test]
        fn a_new_flows_first_packet_is_rewritten_as_the_general_rewrite_does(
            kind in 0u8..3, host in 10u8..20, port in 1024u16..60000, server in 1u8..200,
            ttl in 2u8..=255, size in 0usize..1400, mss in 500u16..9000,
        ) {
            let (router, mut lane) = router();
            let lan = Addressing {
                src_mac: HOST_MAC,
                dst_mac: LAN_MAC,
                src: Ipv4Addr::new(192, 168, 50, host),
                dst: Ipv4Addr::new(203, 0, 113, server),
                ttl,
            };
            let payload = vec![0xa5; size];
            let mut bytes = match kind {
                0 => testing::tcp_with_options(&lan, port, 443, SYN, &[2, 4, (mss >> 8) as u8, mss as u8], &[]),
                _ => testing::udp(&lan, port, 53, &payload),
            };
            if kind == 2 {
                bytes[40..42].copy_from_slice(&[0, 0]);
            }
            let frame = packet::parse(&bytes).expect("a valid frame");
            let mut out = bytes.clone();
            let verdict = router.process(&mut lane, &mut out, meta(Port::Lan));
            let Verdict::Forward { port: Port::Wan(_), len } = verdict else {
                panic!("the first packet opens a flow: {verdict:?}");
            };
            let inside = crate::packet::Endpoint::new(lan.src.octets(), port);
            let flows = router.flows(NOW, 1, |spec| spec.inside == inside);
            let egress = router.egress_to_remote(&flows[0].spec).expect("a next hop");
            let mut general = bytes.clone();
            if kind == 0 {
                let ctx = context(&lane, Port::Lan);
                if let Some(limit) = router.mss_limit(egress.port, &ctx) {
                    packet::clamp_mss(&mut general, &frame, limit, false);
                }
            }
            packet::apply(&mut general, &frame, &egress.rewrite, false);
            prop_assert_eq!(&out[..len], &general[..len]);
            if kind == 2 {
                prop_assert_eq!(&out[40..42], &[0, 0], "no UDP checksum stays none");
            }
        }

        /// For every frame the fast path takes, the general path gives the
        /// same verdict and the same bytes; a frame it declines is left
        /// untouched and unrecorded. Frames of open flows both ways, of any
        /// size (over the MTU too), TCP flags, TTL and DF, then up to three
        /// header bytes changed at random.
        #[test]
        fn the_fast_path_is_the_general_path_for_what_it_takes(
            flows in proptest::collection::vec((any::<bool>(), 10u8..20, 1024u16..1100, 1u8..4), 1..6),
            frames in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<bool>(), 0usize..1600, any::<(bool, bool, bool, bool)>(),
                 0u8..4, proptest::collection::vec((0usize..60, any::<u8>()), 0..3)),
                1..40),
        ) {
            let (router, mut lane) = router();
            let opened: Vec<Opened> = flows
                .iter()
                .map(|&(tcp, host, port, server)| open(&router, &mut lane, tcp, host, port, server))
                .collect();
            for (which, from_wan, size, flags, ttl, edits) in frames {
                let flow = &opened[which.index(opened.len())];
                let flags = Flags { syn: flags.0 && flags.1, ack: true, fin: flags.2 && flags.3, rst: false };
                let payload = vec![0x5a; size];
                let (mut addressing, ports, port) = if from_wan {
                    (flow.wan, flow.wan_ports, Port::Wan(flow.uplink))
                } else {
                    (flow.lan, flow.lan_ports, Port::Lan)
                };
                addressing.ttl = [0, 1, 2, 64][usize::from(ttl)];
                let bytes = testing::tcp_or_udp(flow.tcp, &addressing, ports, flags, &payload);
                let ctx = context(&lane, port);
                fast_is_general(
                    bytes,
                    &edits,
                    |buf| packet::parse_plain(buf).and_then(|plain| router.established(buf, &plain, &ctx)),
                    |buf| router.general(buf, None, &ctx),
                    || packets_recorded(&router),
                )?;
                lane.outbox.get_mut().clear();
            }
        }
    }
}

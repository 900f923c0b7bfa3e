//! The established fast path for IPv6, as `router/established.rs` is for
//! IPv4: a whole TCP or UDP packet right after the fixed header, read at
//! fixed offsets (`packet::parse_plain6`), its flow found, checked and
//! recorded in one closure under one shard read lock (the step IPv4's
//! takes: `Router::established_flow`), and rewritten in one pass with the
//! checksum delta the flow keeps (`apply_established6`). It
//! takes a frame only when the general path would forward it unchanged in
//! kind (same flow, same egress, no ICMPv6 answer: the hop limit above 1
//! and the packet within the egress MTU) and declines (None) before
//! recording anything otherwise, so the general path then sees the frame as
//! if the fast path did not exist, and takes it as `parse_plain6` read it,
//! which is what `parse6` reads. The first look at a frame (is it for the
//! router, which LAN host does it stand for) is the general path's own
//! (`lan_refusal6`, `wan_admission6`), so the two cannot drift apart.

use super::super::{FrameContext, Router};
use super::key_of;
use crate::flow::Side;
use crate::packet::{self, Frame6};
use crate::verdict::{Port, Verdict};

impl Router {
    /// The verdict for `buf`, which [`packet::parse_plain6`] read as
    /// `frame`, when the fast path takes it, its bytes rewritten; None
    /// (nothing changed, nothing recorded) otherwise.
    pub(super) fn established6(
        &self,
        buf: &mut [u8],
        frame: &Frame6,
        ctx: &FrameContext,
    ) -> Option<Verdict> {
        let side = match ctx.meta.port {
            Port::Lan => {
                if self.lan_refusal6(frame, ctx).is_some() {
                    return None;
                }
                Side::Lan
            }
            Port::Wan(uplink) => {
                self.wan_admission6(frame, uplink, ctx).ok()?;
                Side::Wan
            }
        };
        let (egress, deltas) =
            self.established_flow(side, key_of(frame), frame, ctx, |spec| match side {
                Side::Lan => self.egress_to_remote6(spec),
                Side::Wan => self.egress_to_inside6(spec),
            })?;
        let len = packet::apply_established6(buf, frame, &egress.rewrite, deltas);
        Some(Verdict::Forward {
            port: egress.port,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::path::Path;

    use proptest::prelude::*;

    use super::super::super::test_support::{fast_is_general, meta, NOW};
    use super::super::super::Lane;
    use super::*;
    use crate::config::Config;
    use crate::packet::parse6;
    use crate::testing::{self, Addressing6, Flags, ACK, SYN, SYN_ACK};

    const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
    /// The forms of `nat6` isp1 is tested with (isp2 masquerades).
    const NAT6: [&str; 4] = ["prefix", "npt", "off", "masquerade"];

    /// The LAN's /64: a ULA, but inside isp1's delegated prefix when isp1
    /// routes it untranslated (nat6 = "off").
    fn lan_prefix(nat6: &str) -> &'static str {
        if nat6 == "off" {
            "2001:db8:100:50::"
        } else {
            "fd00:50::"
        }
    }

    /// Two uplinks carrying IPv6: isp1 translating the LAN's /64 as `nat6`
    /// says (into its delegated /56, or to its own address), isp2
    /// masquerading; new connections alternate between them.
    fn router(nat6: &str) -> (Router, Lane) {
        let isp1 = if nat6 == "masquerade" {
            "address6 = \"2001:db8:1::2\"".to_string()
        } else {
            format!("prefix6 = \"2001:db8:100::/56\"\nnat6 = \"{nat6}\"")
        };
        let text = testing::TWO_UPLINKS
            .replace(
                "networks = [\"192.168.50.0/24\"]",
                &format!(
                    "networks = [\"192.168.50.0/24\", \"{}/64\"]",
                    lan_prefix(nat6)
                ),
            )
            .replace(
                "gateway = \"198.18.1.1\"",
                &format!("gateway = \"198.18.1.1\"\ngateway6 = \"fe80::1\"\n{isp1}"),
            )
            .replace(
                "gateway = \"198.18.2.1\"",
                "gateway = \"198.18.2.1\"\ngateway6 = \"fe80::1\"\naddress6 = \"2001:db8:2::2\"",
            )
            + "[balance]\nmode = \"nth\"\n";
        let config =
            Config::from_toml(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"));
        let router = testing::two_uplink_router(&config);
        for (id, mac) in testing::GATEWAY_MACS.iter().enumerate() {
            router.set_gateway_mac6(id as u8, Some(*mac));
        }
        for host in 10..20 {
            router.set_lan_mac6(host_addr(nat6, host), HOST_MAC);
        }
        let lane = router.lane();
        (router, lane)
    }

    fn host_addr(nat6: &str, host: u8) -> Ipv6Addr {
        format!("{}{host:x}", lan_prefix(nat6)).parse().unwrap()
    }

    /// Where isp1 shows LAN host `host` with a prefix mapping that keeps
    /// host bits (the LAN's /64 is subnet 0 of isp1's /56) or with none.
    /// (npt changes a word of the host part: its hosts are reached inbound
    /// in `tests/core/ipv6.rs`.)
    fn outside(nat6: &str, host: Ipv6Addr) -> Ipv6Addr {
        let mut addr = host.octets();
        if nat6 == "prefix" {
            addr[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 0]);
        }
        addr.into()
    }

    fn server(server: u8) -> Ipv6Addr {
        format!("2001:db8:ffff::{server:x}").parse().unwrap()
    }

    /// A flow opened from the LAN host's addressing, or (`inbound`, where
    /// isp1 maps LAN hosts) from a server to the host's outside address on
    /// isp1.
    type Opened = super::super::super::test_support::Opened<Addressing6>;

    /// The first packet of a flow and its reply, through `process`; the
    /// frames as they left.
    fn exchange(
        router: &Router,
        lane: &mut Lane,
        tcp: bool,
        (first, port): (Addressing6, Port),
        ports: (u16, u16),
    ) -> (Frame6, Port, Frame6) {
        let mut bytes = testing::tcp_or_udp6(tcp, &first, ports, SYN, b"hello");
        let Verdict::Forward { port: out, len } = router.process(lane, &mut bytes, meta(port))
        else {
            panic!("the first packet opens a flow");
        };
        let seen = testing::check6(&bytes[..len]).expect("a valid frame out");
        let back = Addressing6 {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: [2, 0, 0, 0, 0, 9],
            src: seen.dst.into(),
            dst: seen.src.into(),
            hop_limit: 60,
        };
        let mut reply =
            testing::tcp_or_udp6(tcp, &back, (seen.ports().1, seen.ports().0), SYN_ACK, b"hi");
        let verdict = router.process(lane, &mut reply, meta(out));
        let Verdict::Forward { len, .. } = verdict else {
            panic!("the reply goes back: {verdict:?}");
        };
        let reply_seen = testing::check6(&reply[..len]).expect("a valid frame back");
        (seen, out, reply_seen)
    }

    fn open(
        router: &Router,
        lane: &mut Lane,
        nat6: &str,
        (tcp, host, port, server_id, inbound): (bool, u8, u16, u8, bool),
    ) -> Opened {
        let host = host_addr(nat6, host);
        let outside =
            (inbound && !matches!(nat6, "masquerade" | "npt")).then(|| outside(nat6, host));
        let gateway = |uplink: u8| Addressing6 {
            src_mac: testing::GATEWAY_MACS[usize::from(uplink)],
            dst_mac: testing::WAN_MACS[usize::from(uplink)],
            src: server(server_id),
            dst: Ipv6Addr::UNSPECIFIED,
            hop_limit: 60,
        };
        let lan = |dst: Ipv6Addr| Addressing6 {
            src_mac: HOST_MAC,
            dst_mac: testing::LAN_MAC,
            src: host,
            dst,
            hop_limit: 64,
        };
        match outside {
            Some(outside) => {
                let wan = Addressing6 {
                    dst: outside,
                    ..gateway(0)
                };
                let (seen, _, _) = exchange(router, lane, tcp, (wan, Port::Wan(0)), (port, 443));
                assert_eq!(seen.dst, host.octets());
                Opened {
                    tcp,
                    lan: lan(server(server_id)),
                    lan_ports: (443, port),
                    uplink: 0,
                    wan,
                    wan_ports: (port, 443),
                }
            }
            _ => {
                let first = lan(server(server_id));
                let (seen, out, _) = exchange(router, lane, tcp, (first, Port::Lan), (port, 443));
                let Port::Wan(uplink) = out else {
                    panic!("out by an uplink")
                };
                let wan = Addressing6 {
                    dst: seen.src.into(),
                    ..gateway(uplink)
                };
                Opened {
                    tcp,
                    lan: first,
                    lan_ports: (port, 443),
                    uplink,
                    wan,
                    wan_ports: (443, seen.ports().0),
                }
            }
        }
    }

    fn packets_recorded(router: &Router) -> u64 {
        router
            .flows6(NOW, usize::MAX, |_| true)
            .iter()
            .map(|f| f.packets[0] + f.packets[1])
            .sum()
    }

    #[test]
    fn takes_plain_packets_of_open_flows_both_ways_in_every_nat6_form() {
        for nat6 in NAT6 {
            let (router, mut lane) = router(nat6);
            for (i, tcp) in [false, true, false, true].into_iter().enumerate() {
                let flow = open(
                    &router,
                    &mut lane,
                    nat6,
                    (tcp, 10 + i as u8, 2000, 1, i >= 2),
                );
                for (addressing, ports, port) in [
                    (flow.lan, flow.lan_ports, Port::Lan),
                    (flow.wan, flow.wan_ports, Port::Wan(flow.uplink)),
                ] {
                    let ctx = FrameContext::new(&lane, meta(port));
                    let bytes = testing::tcp_or_udp6(tcp, &addressing, ports, ACK, b"more");
                    let plain = packet::parse_plain6(&bytes).expect("a plain frame");
                    let mut fast = bytes.clone();
                    let verdict = router.established6(&mut fast, &plain, &ctx);
                    assert!(
                        matches!(verdict, Some(Verdict::Forward { .. })),
                        "{nat6} {flow:?}: {verdict:?}"
                    );
                    testing::check6(&fast).expect("valid checksums");
                    let mut general = bytes;
                    assert_eq!(Some(router.general6(&mut general, None, &ctx)), verdict);
                    assert_eq!(fast, general, "{nat6} {flow:?}");
                }
            }
        }
    }

    /// The router's own addresses reach the next packet of every lane: a
    /// server whose address becomes the router's LAN address is the
    /// kernel's from then on, on the fast path too.
    #[test]
    fn a_change_of_the_router_s_addresses_reaches_the_next_packet() {
        let (router, mut lane) = router("prefix");
        let flow = open(&router, &mut lane, "prefix", (false, 10, 2000, 1, false));
        let send = |lane: &mut Lane| {
            let mut bytes = testing::tcp_or_udp6(false, &flow.lan, flow.lan_ports, ACK, b"more");
            router.process(lane, &mut bytes, meta(Port::Lan))
        };
        assert!(matches!(send(&mut lane), Verdict::Forward { .. }));
        router.set_lan_interface_address6(Some(flow.lan.dst));
        assert_eq!(
            send(&mut lane),
            Verdict::Kernel(crate::verdict::KernelReason::LocalDestination)
        );
        router.set_lan_interface_address6(None);
        assert!(matches!(send(&mut lane), Verdict::Forward { .. }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A new flow's first packet, rewritten by the general path, has
        /// the bytes the fast path's rewrite gives it with the deltas the
        /// flow keeps (MSS clamped first for a SYN), in every nat6 form,
        /// opened from the LAN or (where isp1 maps hosts) from the
        /// Internet: TCP SYNs with an MSS option and UDP of any size that
        /// fits, any hop limit that is forwarded.
        #[test]
        fn a_new_flows_first_packet_is_rewritten_as_its_flows_deltas_say(
            nat6 in 0usize..4, tcp in any::<bool>(), inbound in any::<bool>(), host in 10u8..20,
            port in 1024u16..60000, server_id in 1u8..200, hop_limit in 2u8..=255,
            size in 0usize..1400, mss in 500u16..9000,
        ) {
            let nat6 = NAT6[nat6];
            let (router, mut lane) = router(nat6);
            let inbound = inbound && !matches!(nat6, "masquerade" | "npt");
            let host = host_addr(nat6, host);
            let (a, from) = if inbound {
                let a = Addressing6 {
                    src_mac: testing::GATEWAY_MACS[0],
                    dst_mac: testing::WAN_MACS[0],
                    src: server(server_id),
                    dst: outside(nat6, host),
                    hop_limit,
                };
                (a, Port::Wan(0))
            } else {
                let a = Addressing6 {
                    src_mac: HOST_MAC,
                    dst_mac: testing::LAN_MAC,
                    src: host,
                    dst: server(server_id),
                    hop_limit,
                };
                (a, Port::Lan)
            };
            let bytes = if tcp {
                testing::tcp6_with_options(&a, port, 443, SYN, &testing::mss_option(mss), &[])
            } else {
                testing::udp6(&a, port, 443, &vec![0xa5; size])
            };
            let mut out = bytes.clone();
            let verdict = router.process(&mut lane, &mut out, meta(from));
            let Verdict::Forward { port: egress, len } = verdict else {
                panic!("the first packet opens a flow: {verdict:?}");
            };
            let side = if inbound { Side::Wan } else { Side::Lan };
            let key = key_of(&parse6(&bytes).expect("a valid frame"));
            let flows = router.flows6(NOW, 1, |spec| spec.key(side) == key);
            let spec = flows[0].spec;
            let egress6 = match side {
                Side::Lan => router.egress_to_remote6(&spec),
                Side::Wan => router.egress_to_inside6(&spec),
            }.expect("a next hop");
            prop_assert_eq!(egress6.port, egress);
            let mut fast = bytes.clone();
            let frame = parse6(&fast).expect("a valid frame");
            router.clamp_mss6(&mut fast, &frame, egress, &FrameContext::new(&lane, meta(from)));
            let frame = parse6(&fast).expect("a valid frame");
            let fast_len = packet::apply_established6(&mut fast, &frame, &egress6.rewrite, spec.checksum_deltas(side));
            prop_assert_eq!(fast_len, len);
            prop_assert_eq!(&out[..len], &fast[..len]);
        }

        /// For every frame the fast path takes, the general path gives the
        /// same verdict and the same bytes; a frame it declines is left
        /// untouched and unrecorded. In every nat6 form, flows opened from
        /// either side, their frames both ways of any size (over the MTU
        /// too), TCP flags and hop limit, then up to three header bytes
        /// changed at random.
        #[test]
        fn the_fast_path_is_the_general_path_for_what_it_takes(
            nat6 in 0usize..4,
            flows in proptest::collection::vec((any::<bool>(), 10u8..20, 1024u16..1100, 1u8..4, any::<bool>()), 1..6),
            frames in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<bool>(), 0usize..1600, any::<(bool, bool, bool, bool)>(),
                 0u8..4, proptest::collection::vec((0usize..80, any::<u8>()), 0..3)),
                1..40),
        ) {
            let nat6 = NAT6[nat6];
            let (router, mut lane) = router(nat6);
            let opened: Vec<Opened> = flows
                .into_iter()
                .map(|flow| open(&router, &mut lane, nat6, flow))
                .collect();
            for (which, from_wan, size, flags, hop, edits) in frames {
                let flow = &opened[which.index(opened.len())];
                let flags = Flags { syn: flags.0 && flags.1, ack: true, fin: flags.2 && flags.3, rst: false };
                let payload = vec![0x5a; size];
                let (mut addressing, ports, port) = if from_wan {
                    (flow.wan, flow.wan_ports, Port::Wan(flow.uplink))
                } else {
                    (flow.lan, flow.lan_ports, Port::Lan)
                };
                addressing.hop_limit = [0, 1, 2, 64][usize::from(hop)];
                let bytes = testing::tcp_or_udp6(flow.tcp, &addressing, ports, flags, &payload);
                let ctx = FrameContext::new(&lane, meta(port));
                fast_is_general(
                    bytes,
                    &edits,
                    |buf| packet::parse_plain6(buf).and_then(|plain| router.established6(buf, &plain, &ctx)),
                    |buf| router.general6(buf, None, &ctx),
                    || packets_recorded(&router),
                )?;
                lane.outbox.get_mut().clear();
            }
        }
    }
}

//! IPv6 through the core: every translation form, both directions, inbound
//! connections by prefix, the errors the core sends, ICMPv6 errors
//! translated with their quote, and what stays the kernel's. Every frame is
//! built with etherparse and every frame out is parsed again with its
//! upper-layer checksum recomputed in full.

use std::net::Ipv6Addr;

use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use xwan::router::{DropReason, KernelReason, Port, Router, Verdict};
use xwan::testing;

use super::{Bench, HOST_MAC};

const LAN_ADDR6: &str = "fd00:50::1";
const HOST6: &str = "fd00:50::a";
const HOST6_B: &str = "fd00:50::b";
const SERVER6: &str = "2001:db8:ffff::10";
/// isp2's own address: NAT66 (masquerade).
const ISP2_6: &str = "2001:db8:2::2";

/// Two uplinks: isp1 maps the LAN's /64 into its delegated /56 (`nat6` as
/// given), isp2 masquerades to its one address.
fn config_text(nat6: &str) -> String {
    format!(
        r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24", "fd00:50::/64"]
address6 = "{LAN_ADDR6}"

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
gateway6 = "fe80::1"
prefix6 = "2001:db8:100::/56"
nat6 = "{nat6}"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
address6 = "{ISP2_6}"
gateway6 = "fe80::1"

[balance]
mode = "nth"
"#
    )
}

fn a6(text: &str) -> [u8; 16] {
    text.parse::<Ipv6Addr>().unwrap().octets()
}

/// The core bench, with the IPv6 gateways resolved too.
struct Bench6(Bench);

impl Bench6 {
    fn new(nat6: &str) -> Bench6 {
        Bench6::from_text(&config_text(nat6))
    }

    fn from_text(text: &str) -> Bench6 {
        let bench = Bench::from_text(text);
        for (id, mac) in testing::GATEWAY_MACS.iter().enumerate() {
            bench.router.set_gateway_mac6(id as u8, Some(*mac));
        }
        Bench6(bench)
    }

    fn router(&self) -> &Router {
        &self.0.router
    }

    fn send(&mut self, port: Port, frame: Vec<u8>) -> (Verdict, Vec<u8>) {
        self.0.send(port, frame)
    }

    /// The error the core answers `frame` with, back out `port`: in the
    /// frame's own buffer, or from the outbox when it did not fit.
    fn answered(&mut self, port: Port, frame: Vec<u8>) -> (Seen6, usize) {
        let (verdict, bytes) = self.send(port, frame);
        let bytes = match verdict {
            Verdict::Forward { port: out, .. } if out == port => bytes,
            Verdict::Taken => {
                let mut also = self.0.also_sent();
                assert_eq!(also.len(), 1, "one error");
                assert_eq!(also[0].0, port);
                also.remove(0).1
            }
            other => panic!("expected an answer, got {other:?}"),
        };
        (check(&bytes), bytes.len())
    }

    fn forward(&mut self, port: Port, frame: Vec<u8>, out: Port) -> Seen6 {
        let (verdict, bytes) = self.send(port, frame);
        assert_eq!(
            verdict,
            Verdict::Forward {
                port: out,
                len: bytes.len()
            },
            "expected a forward on {out:?}"
        );
        check(&bytes)
    }
}

/// What a frame out carries, its checksum checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen6 {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    /// TCP/UDP ports, or the echo identifier as both.
    ports: (u16, u16),
    payload: Vec<u8>,
    /// ICMPv6 type and code, for ICMPv6.
    icmp: Option<(u8, u8)>,
}

fn check(frame: &[u8]) -> Seen6 {
    let sliced = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("{e:?}"));
    let eth = etherparse::Ethernet2HeaderSlice::from_slice(frame).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
        panic!("not IPv6");
    };
    let header = ip.header().to_header();
    let (ports, payload, icmp) = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let sum = tcp
                .to_header()
                .calc_checksum_ipv6(&header, tcp.payload())
                .unwrap();
            assert_eq!(sum, tcp.checksum(), "TCP checksum");
            (
                (tcp.source_port(), tcp.destination_port()),
                tcp.payload().to_vec(),
                None,
            )
        }
        Some(TransportSlice::Udp(udp)) => {
            let sum = udp
                .to_header()
                .calc_checksum_ipv6(&header, udp.payload())
                .unwrap();
            assert_eq!(sum, udp.checksum(), "UDP checksum");
            (
                (udp.source_port(), udp.destination_port()),
                udp.payload().to_vec(),
                None,
            )
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            assert!(
                icmp.is_checksum_valid(header.source, header.destination),
                "ICMPv6 checksum"
            );
            let id = match icmp.icmp_type() {
                Icmpv6Type::EchoRequest(echo) | Icmpv6Type::EchoReply(echo) => echo.id,
                _ => 0,
            };
            (
                (id, id),
                icmp.payload().to_vec(),
                Some((icmp.type_u8(), icmp.code_u8())),
            )
        }
        other => panic!("unexpected transport {other:?}"),
    };
    Seen6 {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        src: header.source,
        dst: header.destination,
        hop_limit: header.hop_limit,
        ports,
        payload,
        icmp,
    }
}

fn tcp6(src: &str, dst: &str, ports: (u16, u16), syn: bool, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(HOST_MAC, testing::LAN_MAC)
        .ipv6(a6(src), a6(dst), 64)
        .tcp(ports.0, ports.1, 1000, 64240);
    let builder = if syn { builder.syn() } else { builder.ack(1) };
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

fn udp6(src: &str, dst: &str, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, testing::LAN_MAC)
        .ipv6(a6(src), a6(dst), 64)
        .udp(ports.0, ports.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn echo6(src: &str, dst: &str, request: bool, id: u16, hop_limit: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let builder =
        PacketBuilder::ethernet2(HOST_MAC, testing::LAN_MAC).ipv6(a6(src), a6(dst), hop_limit);
    let builder = if request {
        builder.icmpv6_echo_request(id, 1)
    } else {
        builder.icmpv6_echo_reply(id, 1)
    };
    builder.write(&mut out, b"ping").unwrap();
    out
}

/// A frame from the Internet (the gateway's MAC to the uplink's).
fn from_wan(uplink: usize, mut frame: Vec<u8>) -> Vec<u8> {
    frame[0..6].copy_from_slice(&testing::WAN_MACS[uplink]);
    frame[6..12].copy_from_slice(&testing::GATEWAY_MACS[uplink]);
    frame
}

#[test]
fn a_prefix_mapping_keeps_the_host_bits_both_ways() {
    let mut bench = Bench6::new("prefix");
    // nth: the first new connection goes by isp1.
    let out = bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 443), true, b""),
        Port::Wan(0),
    );
    assert_eq!(out.src, a6("2001:db8:100::a"), "mapped, host bits kept");
    assert_eq!(out.dst, a6(SERVER6));
    assert_eq!(out.ports, (40000, 443));
    assert_eq!(out.hop_limit, 63);
    assert_eq!(
        (out.src_mac, out.dst_mac),
        (testing::WAN_MACS[0], testing::GATEWAY_MACS[0])
    );
    let reply = from_wan(
        0,
        tcp6(SERVER6, "2001:db8:100::a", (443, 40000), true, b"hello"),
    );
    let back = bench.forward(Port::Wan(0), reply, Port::Lan);
    assert_eq!(back.dst, a6(HOST6));
    assert_eq!(back.src, a6(SERVER6));
    assert_eq!(back.payload, b"hello");
    assert_eq!((back.src_mac, back.dst_mac), (testing::LAN_MAC, HOST_MAC));
}

#[test]
fn npt_is_checksum_neutral_and_reversible() {
    let mut bench = Bench6::new("npt");
    let sent = udp6(HOST6, SERVER6, (5000, 53), b"query");
    let sent_sum = check(&sent);
    let out = bench.forward(Port::Lan, sent.clone(), Port::Wan(0));
    assert_ne!(out.src, a6(HOST6));
    assert_eq!(&out.src[..7], &a6("2001:db8:100::")[..7]);
    // The UDP checksum field is untouched: the address's sum did not move.
    let udp_sum = |f: &[u8]| u16::from_be_bytes([f[14 + 40 + 6], f[14 + 40 + 7]]);
    let (_, bytes) = {
        let mut again = Bench6::new("npt");
        again.send(Port::Lan, sent.clone())
    };
    assert_eq!(udp_sum(&bytes), udp_sum(&sent));
    assert_eq!(sent_sum.payload, out.payload);
    let outside = Ipv6Addr::from(out.src).to_string();
    let reply = from_wan(0, udp6(SERVER6, &outside, (53, 5000), b"answer"));
    let back = bench.forward(Port::Wan(0), reply, Port::Lan);
    assert_eq!(back.dst, a6(HOST6));
    assert_eq!(back.payload, b"answer");
}

#[test]
fn masquerade_maps_a_port_on_the_uplinks_address() {
    let mut bench = Bench6::new("prefix");
    // The first connection takes isp1, the second isp2 (nth 1:1).
    bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 80), true, b""),
        Port::Wan(0),
    );
    let out = bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40001, 80), true, b""),
        Port::Wan(1),
    );
    assert_eq!(out.src, a6(ISP2_6));
    let port = out.ports.0;
    let reply = from_wan(1, tcp6(SERVER6, ISP2_6, (80, port), true, b"ok"));
    let back = bench.forward(Port::Wan(1), reply, Port::Lan);
    assert_eq!((back.dst, back.ports), (a6(HOST6), (80, 40001)));
    // Nothing maps an unknown port on the uplink's address.
    let stray = from_wan(
        1,
        tcp6(SERVER6, ISP2_6, (80, port.wrapping_add(1)), false, b""),
    );
    let (verdict, _) = bench.send(Port::Wan(1), stray);
    assert!(
        matches!(
            verdict,
            Verdict::Drop(DropReason::NoMapping) | Verdict::Kernel(KernelReason::RouterTraffic)
        ),
        "{verdict:?}"
    );
}

#[test]
fn echo_goes_out_and_its_reply_comes_back() {
    let mut bench = Bench6::new("prefix");
    let out = bench.forward(Port::Lan, echo6(HOST6, SERVER6, true, 77, 64), Port::Wan(0));
    assert_eq!(out.icmp, Some((128, 0)));
    let reply = from_wan(0, echo6(SERVER6, "2001:db8:100::a", false, 77, 64));
    let back = bench.forward(Port::Wan(0), reply, Port::Lan);
    assert_eq!((back.dst, back.icmp), (a6(HOST6), Some((129, 0))));
}

#[test]
fn an_inbound_connection_reaches_the_mapped_host_and_replies_leave_its_uplink() {
    let mut bench = Bench6::new("prefix");
    bench
        .router()
        .set_lan_mac6(HOST6_B.parse().unwrap(), [2, 0, 0, 0, 0, 0x1b]);
    let syn = from_wan(0, tcp6(SERVER6, "2001:db8:100::b", (50000, 22), true, b""));
    let inside = bench.forward(Port::Wan(0), syn, Port::Lan);
    assert_eq!(inside.dst, a6(HOST6_B));
    assert_eq!(inside.dst_mac, [2, 0, 0, 0, 0, 0x1b]);
    // The reply leaves by the uplink the connection came in on, whatever
    // the balancer would say for a new one.
    for _ in 0..3 {
        let reply = tcp6(HOST6_B, SERVER6, (22, 50000), true, b"ssh");
        let out = bench.forward(Port::Lan, reply, Port::Wan(0));
        assert_eq!(out.src, a6("2001:db8:100::b"));
    }
    // A SYN to isp2's masqueraded address opens nothing.
    let syn = from_wan(1, tcp6(SERVER6, ISP2_6, (50000, 22), true, b""));
    let (verdict, _) = bench.send(Port::Wan(1), syn);
    assert_eq!(verdict, Verdict::Kernel(KernelReason::RouterTraffic));
}

/// An inbound connection to a LAN host whose MAC nobody knows yet: its
/// first packet is translated and waits (the host asked for) until the
/// neighbour table has the MAC, then goes out whole with it.
#[test]
fn an_inbound_packet_to_an_unresolved_host_waits_for_its_mac() {
    let mut bench = Bench6::new("prefix");
    let syn = from_wan(0, tcp6(SERVER6, "2001:db8:100::b", (50000, 22), true, b""));
    let (verdict, _) = bench.send(Port::Wan(0), syn);
    assert_eq!(verdict, Verdict::Taken);
    let host: Ipv6Addr = HOST6_B.parse().unwrap();
    assert_eq!(bench.router().unresolved_lan_hosts6(), [host]);
    let now = bench.0.now;
    assert!(
        bench.router().release_waiting(host, now).is_empty(),
        "nothing leaves before the MAC is known"
    );
    bench.router().set_lan_mac6(host, [2, 0, 0, 0, 0, 0x1b]);
    let waited = bench.router().release_waiting(host, now);
    assert_eq!(waited.len(), 1);
    let inside = check(&waited[0]);
    assert_eq!(inside.dst, a6(HOST6_B));
    assert_eq!(inside.dst_mac, [2, 0, 0, 0, 0, 0x1b]);
    assert_eq!(inside.ports, (50000, 22));
    assert!(bench.router().release_waiting(host, now).is_empty());
}

#[test]
fn hop_limit_expiry_is_answered_from_the_lan_address() {
    let mut bench = Bench6::new("prefix");
    let (error, _) = bench.answered(Port::Lan, echo6(HOST6, SERVER6, true, 9, 1));
    assert_eq!(error.icmp, Some((3, 0)), "time exceeded");
    assert_eq!((error.src, error.dst), (a6(LAN_ADDR6), a6(HOST6)));
    assert_eq!(error.dst_mac, HOST_MAC);
    assert_eq!(sent6(&bench), (1, 0, 0), "counted by type");
}

/// The ICMPv6 errors the core counted as sent: time exceeded, packet too
/// big, unreachable.
fn sent6(bench: &Bench6) -> (u64, u64, u64) {
    let sent = bench.router().stats().totals.icmp6_sent;
    (sent.time_exceeded, sent.packet_too_big, sent.unreachable)
}

#[test]
fn a_packet_bigger_than_the_uplink_mtu_gets_packet_too_big() {
    let text = config_text("prefix").replace(
        "prefix6 = \"2001:db8:100::/56\"",
        "prefix6 = \"2001:db8:100::/56\"\nmtu = 1400",
    );
    let mut bench = Bench6::from_text(&text);
    let big = udp6(HOST6, SERVER6, (5000, 9), &[7; 1400]);
    let (error, len) = bench.answered(Port::Lan, big);
    assert_eq!(error.icmp, Some((2, 0)), "packet too big");
    assert_eq!(error.dst, a6(HOST6));
    assert!(len <= 14 + 1280, "at most the minimum MTU");
    assert_eq!(sent6(&bench), (0, 1, 0), "counted by type");
    // One that fits goes.
    bench.forward(
        Port::Lan,
        udp6(HOST6, SERVER6, (5000, 9), &[7; 1300]),
        Port::Wan(0),
    );
}

#[test]
fn with_no_uplink_for_ipv6_a_new_connection_is_refused_at_once() {
    let mut bench = Bench6::new("prefix");
    bench.router().set_uplink_up6(0, false);
    bench.router().set_uplink_up6(1, false);
    let (error, _) = bench.answered(Port::Lan, tcp6(HOST6, SERVER6, (40000, 443), true, b""));
    assert_eq!(error.icmp, Some((1, 0)), "unreachable, no route");
    assert_eq!(sent6(&bench), (0, 0, 1), "counted by type");
    // IPv4 is untouched: its uplinks are up.
    assert!(bench.router().uplink_up(0) && bench.router().uplink_up(1));
}

#[test]
fn an_uplink_down_for_ipv6_alone_takes_no_new_ipv6_connection() {
    let mut bench = Bench6::new("prefix");
    bench.router().set_uplink_up6(0, false);
    for port in 40000..40004 {
        bench.forward(
            Port::Lan,
            tcp6(HOST6, SERVER6, (port, 80), true, b""),
            Port::Wan(1),
        );
    }
    assert!(bench.router().uplink_up(0), "IPv4 stays up");
}

#[test]
fn a_packet_too_big_from_the_internet_reaches_the_host_with_its_quote_put_back() {
    let mut bench = Bench6::new("prefix");
    let first = tcp6(HOST6, SERVER6, (40000, 443), true, b"");
    let out = bench.send(Port::Lan, first).1;
    // A router beyond isp1 says the path is narrower, quoting what it got.
    let quoted = &out[14..];
    let mut error = Vec::new();
    PacketBuilder::ethernet2(testing::GATEWAY_MACS[0], testing::WAN_MACS[0])
        .ipv6(a6("2001:db8:11::1"), a6("2001:db8:100::a"), 60)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut error, quoted)
        .unwrap();
    let back = bench.forward(Port::Wan(0), error, Port::Lan);
    assert_eq!(back.icmp, Some((2, 0)));
    assert_eq!(back.dst, a6(HOST6));
    // The quote is the packet as the host sent it.
    let quote = &back.payload;
    assert_eq!(&quote[8..24], &a6(HOST6), "quoted source");
    assert_eq!(&quote[24..40], &a6(SERVER6), "quoted destination");
}

#[test]
fn neighbour_discovery_link_local_and_multicast_stay_the_kernels() {
    let mut bench = Bench6::new("prefix");
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(a6(HOST6), a6("ff02::1:ff00:1"), 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut ns, &a6(LAN_ADDR6))
        .unwrap();
    assert_eq!(
        bench.send(Port::Lan, ns).0,
        Verdict::Kernel(KernelReason::Multicast)
    );
    let link_local = udp6("fe80::10", "fe80::1", (546, 547), b"dhcpv6");
    assert_eq!(
        bench.send(Port::Lan, link_local).0,
        Verdict::Kernel(KernelReason::LinkLocal)
    );
    let to_router = tcp6(HOST6, LAN_ADDR6, (40000, 22), true, b"");
    assert_eq!(
        bench.send(Port::Lan, to_router).0,
        Verdict::Kernel(KernelReason::LocalDestination)
    );
    let not_inside = tcp6("fd99::1", SERVER6, (40000, 22), true, b"");
    assert_eq!(
        bench.send(Port::Lan, not_inside).0,
        Verdict::Kernel(KernelReason::NotInside)
    );
}

#[test]
fn a_source_inside_the_lan_from_a_wan_is_spoofed() {
    let mut bench = Bench6::new("prefix");
    let spoofed = from_wan(0, tcp6(HOST6_B, "2001:db8:100::a", (1, 2), true, b""));
    assert_eq!(
        bench.send(Port::Wan(0), spoofed).0,
        Verdict::Drop(DropReason::SpoofedSource)
    );
}

#[test]
fn without_ipv6_in_the_config_every_ipv6_frame_stays_the_kernels() {
    let mut bench = Bench6::from_text(testing::TWO_UPLINKS);
    let (verdict, _) = bench.send(Port::Lan, tcp6(HOST6, SERVER6, (40000, 443), true, b""));
    assert_eq!(verdict, Verdict::Kernel(KernelReason::NotIpv4));
}

#[test]
fn a_delegated_prefix_that_changes_moves_new_connections_and_fails_over_old_ones() {
    let mut bench = Bench6::new("prefix");
    let before = bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 80), true, b""),
        Port::Wan(0),
    );
    assert_eq!(before.src, a6("2001:db8:100::a"));
    // The server answers, so the host expects its next sequence number.
    let reply = from_wan(0, tcp6(SERVER6, "2001:db8:100::a", (80, 40000), true, b""));
    bench.forward(Port::Wan(0), reply, Port::Lan);
    let failed = bench
        .router()
        .set_uplink_prefix6(0, Some("2001:db8:200::/56".parse().unwrap()));
    // The ISP routes the old prefix no more: the flow is reset towards its
    // host, who reconnects.
    assert_eq!((failed.reset, failed.resets.len()), (1, 1));
    let rst = check(&failed.resets[0]);
    assert_eq!(
        (rst.src, rst.dst, rst.ports),
        (a6(SERVER6), a6(HOST6), (80, 40000))
    );
    // isp2 for the next, then isp1 again with the new prefix.
    bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40001, 80), true, b""),
        Port::Wan(1),
    );
    let after = bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40002, 80), true, b""),
        Port::Wan(0),
    );
    assert_eq!(after.src, a6("2001:db8:200::a"));
    // The same prefix again changes nothing.
    let same = bench
        .router()
        .set_uplink_prefix6(0, Some("2001:db8:200::/56".parse().unwrap()));
    assert_eq!(same.reset + same.remapped, 0);
}

#[test]
fn an_uplink_whose_ipv6_fails_gives_its_ipv6_flows_up_and_keeps_its_ipv4_ones() {
    let mut bench = Bench6::new("prefix");
    bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 80), true, b""),
        Port::Wan(0),
    );
    let reply = from_wan(0, tcp6(SERVER6, "2001:db8:100::a", (80, 40000), true, b""));
    bench.forward(Port::Wan(0), reply, Port::Lan);
    bench.forward(
        Port::Lan,
        udp6(HOST6, SERVER6, (5000, 53), b"q"),
        Port::Wan(1),
    );
    bench.forward(
        Port::Lan,
        udp6(HOST6, SERVER6, (5001, 53), b"q"),
        Port::Wan(0),
    );
    let v4_port = udp4(&mut bench);
    bench.router().set_uplink_up6(0, false);
    let failed = bench.router().fail_over6(0);
    assert_eq!(
        (failed.reset, failed.remapped),
        (1, 1),
        "isp1's TCP and UDP flows"
    );
    assert_eq!(bench.router().ipv6_flow_count().0, 1, "isp2's flow stays");
    assert_eq!(bench.router().stats().table.flows, 1, "IPv4 untouched");
    // The UDP flow's next packet takes isp2; IPv4 goes on where it was.
    bench.forward(
        Port::Lan,
        udp6(HOST6, SERVER6, (5001, 53), b"q"),
        Port::Wan(1),
    );
    assert_eq!(udp4(&mut bench), v4_port);
}

/// Sends h1's IPv4 UDP datagram (port 6000 to the server's 53): the port
/// it is forwarded to.
fn udp4(bench: &mut Bench6) -> Port {
    let v4 = testing::Addressing {
        src_mac: HOST_MAC,
        dst_mac: testing::LAN_MAC,
        src: super::HOST,
        dst: super::SERVER,
        ttl: 64,
    };
    let (verdict, _) = bench.send(Port::Lan, testing::udp(&v4, 6000, 53, b"v4"));
    let Verdict::Forward { port, .. } = verdict else {
        panic!("{verdict:?}");
    };
    port
}

/// The other way round (an uplink whose IPv6 has probe targets of its
/// own, its IPv4 failing): its IPv4 flows go, its IPv6 ones stay, and it
/// stays up for IPv6.
#[test]
fn an_uplink_whose_ipv4_alone_fails_keeps_its_ipv6_flows() {
    let mut bench = Bench6::new("prefix");
    bench.forward(
        Port::Lan,
        udp6(HOST6, SERVER6, (5001, 53), b"q"),
        Port::Wan(0),
    );
    let Port::Wan(v4_uplink) = udp4(&mut bench) else {
        panic!("IPv4 to the LAN");
    };
    let router = bench.router();
    router.set_uplink_up4(v4_uplink, false);
    let failed = router.fail_over4(v4_uplink);
    assert_eq!((failed.reset, failed.remapped), (0, 1), "the IPv4 UDP flow");
    assert!(!router.uplink_up(v4_uplink) && router.uplink_up6(v4_uplink));
    assert_eq!(router.ipv6_flow_count().0, 1, "IPv6 untouched");
    assert_eq!(router.stats().table.flows, 0);
    // The IPv6 flow goes on where it was.
    bench.forward(
        Port::Lan,
        udp6(HOST6, SERVER6, (5001, 53), b"q"),
        Port::Wan(0),
    );
}

#[test]
fn ipv4_and_ipv6_flow_side_by_side() {
    let mut bench = Bench6::new("prefix");
    bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 80), true, b""),
        Port::Wan(0),
    );
    let (verdict, _) = bench.send(
        Port::Lan,
        testing::tcp(
            &testing::Addressing {
                src_mac: HOST_MAC,
                dst_mac: testing::LAN_MAC,
                src: super::HOST,
                dst: super::SERVER,
                ttl: 64,
            },
            40000,
            80,
            testing::SYN,
            b"",
        ),
    );
    assert!(
        matches!(
            verdict,
            Verdict::Forward {
                port: Port::Wan(_),
                ..
            }
        ),
        "{verdict:?}"
    );
    assert_eq!(bench.router().ipv6_flow_count().0, 1);
    assert_eq!(bench.router().stats().table.flows, 1);
}

#[test]
fn a_ping_in_through_a_mapping_gets_its_reply_out() {
    let mut bench = Bench6::new("prefix");
    let ping = from_wan(0, echo6(SERVER6, "2001:db8:100::b", true, 5, 64));
    bench
        .router()
        .set_lan_mac6(HOST6_B.parse().unwrap(), [2, 0, 0, 0, 0, 0x1b]);
    let inside = bench.forward(Port::Wan(0), ping, Port::Lan);
    assert_eq!((inside.dst, inside.icmp), (a6(HOST6_B), Some((128, 0))));
    let reply = bench.forward(
        Port::Lan,
        echo6(HOST6_B, SERVER6, false, 5, 64),
        Port::Wan(0),
    );
    assert_eq!(
        (reply.src, reply.icmp),
        (a6("2001:db8:100::b"), Some((129, 0)))
    );
    // A reply that answers nothing opens nothing.
    let stray = echo6(HOST6, SERVER6, false, 6, 64);
    assert_eq!(
        bench.send(Port::Lan, stray).0,
        Verdict::Drop(DropReason::NoMapping)
    );
}

#[test]
fn ipv6_flows_survive_a_restart_while_their_addresses_hold() {
    let mut bench = Bench6::new("prefix");
    // One flow by each uplink: mapped on isp1, masqueraded on isp2.
    bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 80), true, b""),
        Port::Wan(0),
    );
    let masqueraded = bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40001, 80), true, b""),
        Port::Wan(1),
    );
    for (uplink, outside, port) in [
        (0, "2001:db8:100::a", 40000),
        (1, ISP2_6, masqueraded.ports.0),
    ] {
        let reply = from_wan(uplink, tcp6(SERVER6, outside, (80, port), true, b""));
        bench.forward(Port::Wan(uplink as u8), reply, Port::Lan);
    }
    let snapshot = xwan::router::Snapshot::decode(&bench.router().save_state(bench.0.now).encode())
        .expect("the state file round-trips");
    assert_eq!(snapshot.flows6.len(), 2);

    // The same configuration: both come back, with their NAT66 port.
    let mut again = Bench6::new("prefix");
    again
        .router()
        .set_lan_mac6(HOST6.parse().unwrap(), HOST_MAC);
    let restored = again.router().restore_state(&snapshot, again.0.now);
    assert_eq!((restored.flows, restored.dropped()), (2, 0));
    let reply = from_wan(
        1,
        tcp6(SERVER6, ISP2_6, (80, masqueraded.ports.0), false, b"more"),
    );
    let back = again.forward(Port::Wan(1), reply, Port::Lan);
    assert_eq!(
        (back.dst, back.ports, back.payload.as_slice()),
        (a6(HOST6), (80, 40001), &b"more"[..])
    );
    let out = again.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 80), false, b"on"),
        Port::Wan(0),
    );
    assert_eq!(out.src, a6("2001:db8:100::a"));

    // A new delegated prefix: the mapped flow cannot come back, and its
    // host gets an RST; the masqueraded one can.
    let text = config_text("prefix").replace("2001:db8:100::/56", "2001:db8:200::/56");
    let moved = Bench6::from_text(&text);
    moved
        .router()
        .set_lan_mac6(HOST6.parse().unwrap(), HOST_MAC);
    let restored = moved.router().restore_state(&snapshot, moved.0.now);
    assert_eq!((restored.flows, restored.address_changed), (1, 1));
    assert_eq!(restored.resets.len(), 1);
    assert_eq!(check(&restored.resets[0]).ports, (80, 40000));
}

#[test]
fn ipv6_flows_are_listed_and_counted_per_uplink() {
    let mut bench = Bench6::new("prefix");
    bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 443), true, b""),
        Port::Wan(0),
    );
    bench.forward(Port::Lan, echo6(HOST6, SERVER6, true, 3, 64), Port::Wan(1));
    let flows = bench.router().flows6(bench.0.now, 10, |_| true);
    assert_eq!(flows.len(), 2);
    let reports: Vec<_> = flows
        .iter()
        .map(|f| xwan::control::FlowReport::new(f, "isp"))
        .collect();
    let tcp = reports
        .iter()
        .find(|r| r.protocol == "tcp")
        .expect("the TCP flow");
    assert_eq!(
        (
            tcp.inside.as_str(),
            tcp.outside.as_str(),
            tcp.remote.as_str()
        ),
        (
            "[fd00:50::a]:40000",
            "[2001:db8:100::a]:40000",
            "[2001:db8:ffff::10]:443"
        )
    );
    assert!(reports.iter().any(|r| r.protocol == "icmpv6"));
    let stats = bench.router().stats();
    let per_uplink: Vec<u32> = (stats.uplinks.iter())
        .map(|u| u.ipv6.as_ref().map_or(0, |v6| v6.flows))
        .collect();
    assert_eq!(per_uplink, [1, 1]);
    assert_eq!(stats.table6.flows, 2);
    assert_eq!(
        stats.uplinks[1].ipv6.as_ref().unwrap().nat_in_use[2],
        1,
        "one ICMPv6 id"
    );
}

#[test]
fn a_port_forward_on_the_nat66_address_reaches_its_ipv6_target() {
    let text = format!(
        "{}\n[[forward]]\nproto = \"tcp\"\nport = 2022\nto = \"[{HOST6_B}]:22\"\n",
        config_text("prefix")
    );
    let mut bench = Bench6::from_text(&text);
    bench
        .router()
        .set_lan_mac6(HOST6_B.parse().unwrap(), [2, 0, 0, 0, 0, 0x1b]);
    let syn = from_wan(1, tcp6(SERVER6, ISP2_6, (50000, 2022), true, b""));
    let inside = bench.forward(Port::Wan(1), syn, Port::Lan);
    assert_eq!((inside.dst, inside.ports), (a6(HOST6_B), (50000, 22)));
    let reply = tcp6(HOST6_B, SERVER6, (22, 50000), true, b"");
    let out = bench.forward(Port::Lan, reply, Port::Wan(1));
    assert_eq!((out.src, out.ports), (a6(ISP2_6), (2022, 50000)));
    // Another port of the address opens nothing.
    let stray = from_wan(1, tcp6(SERVER6, ISP2_6, (50000, 2023), true, b""));
    assert_eq!(
        bench.send(Port::Wan(1), stray).0,
        Verdict::Kernel(KernelReason::RouterTraffic)
    );

    // A reload without the forward closes its connection: an RST to the
    // LAN host, and the port opens nothing any more.
    let without =
        xwan::config::Config::from_toml(&config_text("prefix"), std::path::Path::new("test.toml"))
            .unwrap();
    let reloaded = bench.router().reconfigure(&without);
    assert_eq!(reloaded.forward_flows_closed, 1);
    assert_eq!(reloaded.resets.len(), 1);
    let rst = check(&reloaded.resets[0]);
    assert_eq!((rst.dst, rst.ports), (a6(HOST6_B), (50000, 22)));
    let again = from_wan(1, tcp6(SERVER6, ISP2_6, (50000, 2022), false, b"more"));
    assert_eq!(
        bench.send(Port::Wan(1), again).0,
        Verdict::Kernel(KernelReason::RouterTraffic)
    );
}

/// Sends each frame in on `port`, each forwarded out `out`; what went out.
fn send_all(bench: &mut Bench6, port: Port, frames: Vec<Vec<u8>>, out: Port) -> Vec<Vec<u8>> {
    frames
        .into_iter()
        .map(|frame| {
            let (verdict, bytes) = bench.send(port, frame);
            assert!(
                matches!(verdict, Verdict::Forward { port, .. } if port == out),
                "{verdict:?}"
            );
            bytes
        })
        .collect()
}

/// The UDP datagram the fragments `out` carry, checked: its checksum over
/// the addresses they left with.
fn reassembled_udp(out: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = Vec::new();
    for frame in out {
        payload.extend_from_slice(&frame[62..]);
    }
    let src: [u8; 16] = out[0][22..38].try_into().unwrap();
    let dst: [u8; 16] = out[0][38..54].try_into().unwrap();
    for frame in out {
        assert_eq!(
            (&frame[22..38], &frame[38..54]),
            (&src[..], &dst[..]),
            "one pair of addresses"
        );
    }
    let sum = xwan::packet::checksum::transport_checksum6(src, dst, 17, &payload);
    assert_eq!(sum, 0xffff, "the whole datagram's UDP checksum holds");
    payload
}

#[test]
fn a_fragmented_datagram_crosses_both_ways_its_later_fragments_following_the_first() {
    let mut bench = Bench6::new("prefix");
    let body: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let datagram = udp6(HOST6, SERVER6, (5000, 9000), &body);
    let pieces = testing::fragment6(&datagram, 77, 1448);
    assert_eq!(pieces.len(), 3);
    let out = send_all(&mut bench, Port::Lan, pieces, Port::Wan(0));
    let payload = reassembled_udp(&out);
    assert_eq!(&payload[8..], &body[..]);
    assert_eq!(
        &out[0][22..38],
        &a6("2001:db8:100::a"),
        "translated, host bits kept"
    );

    // The reply, fragmented by the server, comes back the same way.
    let reply = from_wan(0, udp6(SERVER6, "2001:db8:100::a", (9000, 5000), &body));
    let back = send_all(
        &mut bench,
        Port::Wan(0),
        testing::fragment6(&reply, 78, 1448),
        Port::Lan,
    );
    reassembled_udp(&back);
    assert_eq!(&back[1][38..54], &a6(HOST6));

    // A later fragment whose first did not come: dropped and counted.
    let stray = testing::fragment6(&udp6(HOST6, SERVER6, (5001, 9000), &body), 79, 1448);
    assert_eq!(
        bench.send(Port::Lan, stray[1].clone()).0,
        Verdict::Drop(DropReason::Ipv6Fragment)
    );
}

#[test]
fn ipv6_syns_get_their_mss_clamped_to_the_smaller_mtu_less_60() {
    let text = config_text("prefix").replace(
        "prefix6 = \"2001:db8:100::/56\"",
        "prefix6 = \"2001:db8:100::/56\"\nmtu = 1492",
    ) + "\n[nat]\nmss_clamp = \"auto\"\n";
    let mut bench = Bench6::from_text(&text);
    let a = testing::Addressing6 {
        src_mac: HOST_MAC,
        dst_mac: testing::LAN_MAC,
        src: HOST6.parse().unwrap(),
        dst: SERVER6.parse().unwrap(),
        hop_limit: 64,
    };
    let syn = testing::tcp6_with_options(
        &a,
        40000,
        443,
        testing::SYN,
        &testing::mss_option(1440),
        b"",
    );
    let out = send_all(&mut bench, Port::Lan, vec![syn], Port::Wan(0)).remove(0);
    check(&out);
    let l4 = 54;
    let options = &out[l4 + 20..l4 + usize::from(out[l4 + 12] >> 4) * 4];
    let at = xwan::packet::mss_option(options).expect("an MSS option");
    assert_eq!(
        u16::from_be_bytes([options[at], options[at + 1]]),
        1492 - 60
    );
}

#[test]
fn a_syn_flood_at_mapped_addresses_cannot_lock_the_lan_out() {
    let text = config_text("prefix") + "\n[limits]\nmax_flows = 64\n";
    let mut bench = Bench6::from_text(&text);
    bench
        .router()
        .set_lan_mac6(HOST6_B.parse().unwrap(), [2, 0, 0, 0, 0, 0x1b]);
    // Unanswered inbound SYNs fill the IPv6 table.
    for port in 0..64u16 {
        let syn = from_wan(
            0,
            tcp6(SERVER6, "2001:db8:100::b", (10000 + port, 22), true, b""),
        );
        bench.send(Port::Wan(0), syn);
    }
    assert_eq!(bench.router().stats().table6.flows, 64);
    // A LAN host's new connection still opens: unanswered flows make room.
    bench.forward(
        Port::Lan,
        tcp6(HOST6, SERVER6, (40000, 443), true, b""),
        Port::Wan(0),
    );
    let table6 = bench.router().stats().table6;
    assert!(table6.evictions > 0 && table6.flows <= 64, "{table6:?}");
}

#[test]
fn limits_count_ipv6_flows_per_lan_host_and_per_inbound_source() {
    let text =
        config_text("prefix") + "\n[limits]\nmax_flows_per_host = 2\nmax_flows_per_source = 1\n";
    let mut bench = Bench6::from_text(&text);
    for port in [40000, 40001] {
        let (verdict, _) = bench.send(Port::Lan, tcp6(HOST6, SERVER6, (port, 443), true, b""));
        assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
    }
    let third = tcp6(HOST6, SERVER6, (40002, 443), true, b"");
    assert_eq!(
        bench.send(Port::Lan, third).0,
        Verdict::Drop(DropReason::HostLimit)
    );
    // Another host has its own share.
    let other = tcp6(HOST6_B, SERVER6, (40000, 443), true, b"");
    assert!(matches!(
        bench.send(Port::Lan, other).0,
        Verdict::Forward { .. }
    ));
    // One Internet source opens one inbound connection at a time.
    bench
        .router()
        .set_lan_mac6(HOST6_B.parse().unwrap(), [2, 0, 0, 0, 0, 0x1b]);
    let syn = |port| from_wan(0, tcp6(SERVER6, "2001:db8:100::b", (port, 22), true, b""));
    assert!(matches!(
        bench.send(Port::Wan(0), syn(50000)).0,
        Verdict::Forward { .. }
    ));
    assert_eq!(
        bench.send(Port::Wan(0), syn(50001)).0,
        Verdict::Drop(DropReason::SourceLimit)
    );
    // Once the flows expire, every share is given back.
    bench.0.now += std::time::Duration::from_secs(7 * 24 * 3600);
    bench.router().expire(bench.0.now);
    assert_eq!(bench.router().stats().limited_hosts, 0);
}

/// A SYN-ACK from `src` to `dst` (an uplink's side), as the Internet answers.
fn syn_ack6(src: &str, dst: &str, ports: (u16, u16)) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, testing::LAN_MAC)
        .ipv6(a6(src), a6(dst), 64)
        .tcp(ports.0, ports.1, 5000, 64240)
        .syn()
        .ack(1001)
        .write(&mut out, b"")
        .unwrap();
    out
}

#[test]
fn ipv6_syns_and_their_answers_are_health_evidence_of_their_own() {
    let mut bench = Bench6::new("prefix");
    let servers = [
        "2001:db8:ffff::10",
        "2001:db8:ffff::11",
        "2001:db8:ffff::12",
    ];
    // nth 1:1: isp1, isp2, isp1.
    let mut outs = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let out_port = Port::Wan((i % 2) as u8);
        let syn = tcp6(HOST6, server, (40000 + i as u16, 443), true, b"");
        outs.push(bench.forward(Port::Lan, syn, out_port));
    }
    let v6 = &bench.router().syn_counts6()[0];
    assert_eq!((v6[0].syns, v6[0].answers), (2, 0));
    assert_eq!((v6[1].syns, v6[1].answers), (1, 0));
    let recent = v6[0].recent;
    assert_ne!(recent[0], recent[1], "two destinations kept apart");
    let v4 = &bench.router().syn_counts()[0];
    assert!(
        v4.iter().all(|c| c.syns == 0 && c.answers == 0),
        "IPv4's evidence untouched: {v4:?}"
    );

    // isp1's first server answers through the mapping; isp2's does not.
    let mapped = Ipv6Addr::from(outs[0].src).to_string();
    let answer = syn_ack6(servers[0], &mapped, (443, outs[0].ports.0));
    bench.forward(Port::Wan(0), from_wan(0, answer), Port::Lan);
    let v6 = &bench.router().syn_counts6()[0];
    assert_eq!((v6[0].syns, v6[0].answers), (2, 1));
    assert_eq!((v6[1].syns, v6[1].answers), (1, 0));
}

/// A frame whose TCP or UDP checksum holds only the pseudo-header's sum,
/// as a LAN host with checksum offload hands it over when nothing says so
/// (AF_XDP has no flag for it: `checksum_partial` stays false).
fn partial(mut frame: Vec<u8>, checksum_at: usize) -> Vec<u8> {
    let l4_len = frame.len() - 54;
    let mut sum: u32 = frame[22..54]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    sum += u32::from(frame[20]) + l4_len as u32;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[54 + checksum_at..56 + checksum_at].copy_from_slice(&(sum as u16).to_be_bytes());
    frame
}

#[test]
fn a_partial_checksum_from_the_lan_leaves_complete_by_every_translation() {
    // isp1 maps (prefix, npt), isp2 masquerades; nth takes each in turn.
    for nat6 in ["prefix", "npt"] {
        let mut bench = Bench6::new(nat6);
        let syn = partial(tcp6(HOST6, SERVER6, (40000, 443), true, b""), 16);
        // forward() checks every checksum.
        bench.forward(Port::Lan, syn, Port::Wan(0));
        let datagram = partial(udp6(HOST6, SERVER6, (40001, 53), b"query"), 6);
        let out = bench.forward(Port::Lan, datagram, Port::Wan(1));
        assert_eq!(out.payload, b"query", "{nat6}");
    }
}

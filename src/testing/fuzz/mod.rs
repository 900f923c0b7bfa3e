//! A fuzzing harness over the router core, shared by the cargo-fuzz target
//! (`fuzz/`), the long mutation runs and the deterministic run of
//! `cargo test`: arbitrary frames go into one live router from either side,
//! and after each frame the harness checks what must always hold.
//!
//! An input is one control byte followed by the frame:
//! - bits 0-1: the port it comes in by (0 and 1: the LAN, 2: isp1, 3: isp2);
//! - bits 2-5: seconds the clock moves on first (0 to 15);
//! - bit 6: recompute the transport checksum (and an ICMP error's quoted IP
//!   header checksum) first; over IPv6 the upper-layer checksum, over the
//!   pseudo-header (ICMPv6's included), and in an ICMPv6 error quoting a
//!   whole packet, that packet's before;
//! - bit 7: recompute the IPv4 header checksum first (IPv6 has none: its
//!   payload length is set to what the frame holds instead);
//!
//! so that a fuzzer gets past the checksum checks without learning them.
//!
//! The router has both families: the LAN's IPv4 prefix and an IPv6 ULA
//! prefix; isp1 maps that prefix into its delegated one (`nat6 = "prefix"`),
//! isp2 masquerades to its own IPv6 address (`nat6 = "masquerade"`).
//!
//! What must hold:
//! - a forwarded frame is no longer than the frame was and its IPv4 header is
//!   valid; when the frame was valid (every checksum right), so is what is
//!   forwarded (transport checksums and, for ICMP errors, the quoted header);
//! - a forwarded IPv6 frame parses again (with the core's own parser), left
//!   with its hop limit one less and at least 1, fits its egress MTU, and
//!   nothing else comes with it (IPv6 is never fragmented on the way); an
//!   ICMPv6 error the core made of a frame (back out the port it came in by,
//!   hop limit 255, to the frame's source, in the frame's buffer or in the
//!   outbox) is a valid ICMPv6 error of at most 14 + 1280 bytes; when the
//!   frame was valid (upper-layer checksum right, and an error's whole
//!   quote's), so is what is forwarded or made of it;
//! - the flow tables stay within `max_flows`, the fragment table within its
//!   limit, and the uplinks' flow counts and NAT (and NAT66) mappings agree
//!   with the tables;
//! - nothing leaks: once every flow has expired, both tables are empty and
//!   every NAT and NAT66 port and per-host count is given back.
//!
//! The mutations of the long runs and the `cargo test` run are in `mutate.rs`.

mod mutate;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use super::{
    addresses6, check, check6, check_fragment, check_icmp_error, check_quote6, fragment, icmp6,
    icmp6_echo, icmp_echo, icmp_error, mss_option, reassemble, reparse6, tcp, tcp6,
    tcp6_with_options, tcp_with_options, two_uplink_router, udp, udp6, upper_layer6,
    with_extensions6, with_ip_options, Addressing, Addressing6, Extension6, ACK, GATEWAY_MACS,
    LAN_MAC, SYN, SYN_ACK, WAN_MACS,
};
use crate::config::{Config, Nat6, DEFAULT_MTU};
use crate::packet::icmp6::MAX_ERROR6_LEN;
use crate::packet::{checksum, Addr6, Transport, L3_OFFSET, PROTO_ICMPV6};
use crate::router::{FrameMeta, Lane, Port, Router, Verdict, MAX_FRAGMENTS};

pub use mutate::{run_mutations, Mutator};

/// The router the harness drives: small limits, so that they are reached.
pub const CONFIG: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24", "fd00:50::/64"]
address = "192.168.50.1"
address6 = "fd00:50::1"

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
mtu = 1400
gateway6 = "fe80::1"
prefix6 = "2001:db8:100::/56"
nat6 = "prefix"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
gateway6 = "fe80::1"
address6 = "2001:db8:2::2"
nat6 = "masquerade"

[[rule]]
proto = "udp"
dst_port = "4500"
action = "isp1"

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.10:80"

[[forward]]
proto = "udp"
port = 5353
to = "192.168.50.11:53"

[nat]
ports = "20000-20255"
mss_clamp = "auto"

[limits]
max_flows = 256
max_flows_per_host = 96
"#;

const HOSTS: [([u8; 4], [u8; 6]); 2] = [
    ([192, 168, 50, 10], [2, 0, 0, 0, 0, 0x10]),
    ([192, 168, 50, 11], [2, 0, 0, 0, 0, 0x11]),
];
const WAN_ADDRESSES: [[u8; 4]; 2] = [[198, 18, 1, 2], [198, 18, 2, 2]];
const SERVER: [u8; 4] = [203, 0, 113, 10];

/// The IPv6 side: the two LAN hosts (with the MACs of [`HOSTS`]), the
/// router's LAN address, a server on the Internet.
const HOSTS6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x50, 0, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0xfd00, 0x50, 0, 0, 0, 0, 0, 0x11),
];
const LAN_ADDRESS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x50, 0, 0, 0, 0, 0, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);
const STRANGER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x99);
/// Where the first host's flows appear on each uplink: its address mapped
/// into isp1's prefix (host bits kept), isp2's own address (masquerade).
const OUTSIDE6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2),
];
/// What a new connection from the Internet is addressed to on each uplink:
/// the second host's mapped address (isp1), isp2's own address.
const INBOUND6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2),
];
/// The uplinks' IPv6 gateway (link-local, as an ISP's router is).
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The inside port (and echo identifier) of the seed flows: in the NAT range,
/// so it is kept and the seed replies find their flow.
const SEED_PORT: u16 = 20100;

/// How often (in frames) the tables are checked.
const STATE_CHECK_EVERY: u64 = 64;

/// How often (in frames) every flow is expired and the leak check made.
const DRAIN_EVERY: u64 = 4096;

/// A live router and its clock.
pub struct Harness {
    router: Router,
    lane: Lane,
    now: Duration,
    frames: u64,
    max_flows: u32,
    /// The MTUs of the LAN, isp1 and isp2.
    mtus: [u16; 3],
    /// Frames forwarded so far (a generated ICMP error counts).
    pub forwarded: u64,
    /// IPv6 frames among them.
    pub forwarded6: u64,
    /// ICMPv6 errors the core made (its counters count ICMP's alone).
    pub made6: Made6,
}

/// ICMPv6 errors the core made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Made6 {
    pub time_exceeded: u64,
    pub packet_too_big: u64,
    pub unreachable: u64,
}

/// What the harness keeps of an IPv6 frame before the core rewrites it:
/// whether it was valid is asked only of one that something came out of.
#[derive(Debug, Clone)]
struct Sent6 {
    src: Addr6,
    hop_limit: u8,
    frame: Vec<u8>,
}

impl Sent6 {
    fn valid(&self) -> bool {
        valid6(&self.frame).is_ok()
    }
}

fn lan(host: usize, dst: [u8; 4]) -> Addressing {
    Addressing {
        src_mac: HOSTS[host].1,
        dst_mac: LAN_MAC,
        src: Ipv4Addr::from(HOSTS[host].0),
        dst: Ipv4Addr::from(dst),
        ttl: 64,
    }
}

fn internet(uplink: usize, src: [u8; 4]) -> Addressing {
    Addressing {
        src_mac: GATEWAY_MACS[uplink],
        dst_mac: WAN_MACS[uplink],
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(WAN_ADDRESSES[uplink]),
        ttl: 60,
    }
}

fn lan6(host: usize, dst: Ipv6Addr) -> Addressing6 {
    Addressing6 {
        src_mac: HOSTS[host].1,
        dst_mac: LAN_MAC,
        src: HOSTS6[host],
        dst,
        hop_limit: 64,
    }
}

fn internet6(uplink: usize, src: Ipv6Addr, dst: Ipv6Addr) -> Addressing6 {
    Addressing6 {
        src_mac: GATEWAY_MACS[uplink],
        dst_mac: WAN_MACS[uplink],
        src,
        dst,
        hop_limit: 60,
    }
}

/// An input: the control byte for `port` (checksums left as they are, the
/// clock still) and the frame.
fn input(port: u8, frame: Vec<u8>) -> Vec<u8> {
    let mut out = vec![port];
    out.extend(frame);
    out
}

/// Frames from the LAN that open the flows the seed replies belong to.
fn lan_seeds() -> Vec<Vec<u8>> {
    let a = lan(0, SERVER);
    let mut frames = vec![
        tcp_with_options(&a, SEED_PORT, 80, SYN, &mss_option(1460), b""),
        udp(&a, SEED_PORT, 53, b"query"),
        icmp_echo(&a, true, SEED_PORT, 1, b"ping"),
        udp(&a, SEED_PORT, 4500, &[7; 64]),
        with_ip_options(&udp(&a, SEED_PORT + 1, 53, b"options"), &[1, 1, 1, 0]),
        tcp(&lan(0, WAN_ADDRESSES[0]), SEED_PORT + 2, 8080, SYN, b""),
        udp(&lan(0, WAN_ADDRESSES[1]), SEED_PORT + 3, 5353, b"hairpin"),
        tcp(&lan(1, SERVER), SEED_PORT + 4, 443, ACK, b"no flow"),
    ];
    frames.extend(fragment(&udp(&a, SEED_PORT + 5, 9, &[3; 600]), 0x77, 256));
    let mut dying = a;
    dying.ttl = 1;
    frames.push(udp(&dying, SEED_PORT, 53, &[0; 64]));
    let mut big = udp(&a, SEED_PORT, 4500, &[1; 1450]);
    super::set_df_and_id(&mut big, true, 5);
    frames.push(big);
    frames
}

/// Frames from the Internet: replies to the seed flows (on both uplinks, as
/// either may carry them), errors about them, forwards, fragments.
fn wan_seeds() -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    for (uplink, address) in WAN_ADDRESSES.into_iter().enumerate() {
        let w = internet(uplink, SERVER);
        let port = 2 + uplink as u8;
        // The seed flows' packets as they left by this uplink.
        let left = udp(
            &Addressing {
                src: Ipv4Addr::from(address),
                ..lan(0, SERVER)
            },
            SEED_PORT,
            53,
            b"query",
        );
        let syn_left = tcp(
            &Addressing {
                src: Ipv4Addr::from(address),
                ..lan(0, SERVER)
            },
            SEED_PORT,
            80,
            SYN,
            b"",
        );
        frames.extend(
            [
                tcp_with_options(&w, 80, SEED_PORT, SYN_ACK, &mss_option(1460), b""),
                udp(&w, 53, SEED_PORT, b"answer"),
                icmp_echo(&w, false, SEED_PORT, 1, b"ping"),
                icmp_error(&w, 3, 3, [0; 4], &left[14..]),
                icmp_error(&w, 11, 0, [0; 4], &syn_left[14..42]),
                icmp_error(&w, 3, 4, [0, 0, 5, 0x78], &syn_left[14..]),
                tcp(&internet(uplink, [203, 0, 113, 99]), 33000, 8080, SYN, b""),
                udp(&internet(uplink, [203, 0, 113, 99]), 33000, 5353, b"q"),
                tcp(&internet(uplink, HOSTS[0].0), 80, SEED_PORT, SYN_ACK, b""),
            ]
            .into_iter()
            .map(|f| (port, f)),
        );
        frames.extend(
            fragment(&udp(&w, 53, SEED_PORT, &[4; 700]), 0x99, 256)
                .into_iter()
                .map(|f| (port, f)),
        );
    }
    // An error from a LAN host about a reply it got.
    let mut delivered = udp(&internet(0, SERVER), 53, SEED_PORT, b"late");
    super::edit_ip_header(&mut delivered, |h| h[16..20].copy_from_slice(&HOSTS[0].0));
    frames.push((
        0,
        icmp_error(&lan(0, SERVER), 3, 3, [0; 4], &delivered[14..]),
    ));
    frames
}

/// IPv6 frames from the LAN that open the flows the IPv6 seed replies
/// belong to, then the rest of what a LAN host sends: extension headers,
/// hop limit 1, too big for isp1, Neighbour Discovery.
fn lan_seeds6() -> Vec<Vec<u8>> {
    let a = lan6(0, SERVER6);
    let udp_with = |port: u16, extensions: &[Extension6]| {
        with_extensions6(&udp6(&a, port, 53, b"extensions"), extensions)
    };
    let mut dying = a;
    dying.hop_limit = 1;
    let multicast = Addressing6 {
        dst_mac: [0x33, 0x33, 0xff, 0, 0, 1],
        dst: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1),
        hop_limit: 255,
        ..a
    };
    let to_router = Addressing6 {
        dst: LAN_ADDRESS6,
        hop_limit: 255,
        ..a
    };
    vec![
        tcp6_with_options(&a, SEED_PORT, 80, SYN, &mss_option(1440), b""),
        tcp6(&a, SEED_PORT, 80, ACK, b"GET / HTTP/1.1"),
        udp6(&a, SEED_PORT, 53, b"query"),
        icmp6_echo(&a, true, SEED_PORT, 1, b"ping"),
        // The rule sends it by isp1, whose MTU is 1400.
        udp6(&a, SEED_PORT, 4500, &[7; 64]),
        udp6(&a, SEED_PORT, 4500, &[1; 1400]),
        udp_with(SEED_PORT + 1, &[Extension6::DestOptions]),
        udp_with(
            SEED_PORT + 1,
            &[
                Extension6::DestOptions,
                Extension6::Routing { segments_left: 0 },
            ],
        ),
        udp_with(SEED_PORT + 1, &[Extension6::Routing { segments_left: 1 }]),
        udp_with(SEED_PORT + 1, &[Extension6::HopByHop]),
        udp_with(
            SEED_PORT + 1,
            &[Extension6::Fragment {
                offset: 0,
                more: true,
                id: 0x77,
            }],
        ),
        with_extensions6(
            &udp6(&a, SEED_PORT + 5, 9, &[3; 64]),
            &[Extension6::Fragment {
                offset: 32,
                more: false,
                id: 0x78,
            }],
        ),
        tcp6(&lan6(1, SERVER6), SEED_PORT + 4, 443, ACK, b"no flow"),
        icmp6_echo(&lan6(1, SERVER6), false, SEED_PORT + 4, 1, b"no flow"),
        // To the other host's mapped address: out, as any other.
        tcp6(&lan6(0, INBOUND6[0]), SEED_PORT + 2, 22, SYN, b""),
        udp6(&dying, SEED_PORT, 53, &[0; 64]),
        icmp6_echo(&dying, true, SEED_PORT, 2, b"traceroute"),
        // Neighbour Discovery: a solicitation to the router's
        // solicited-node group, an advertisement to its address; then
        // DHCPv6 from a link-local address, a source outside the LAN's
        // prefixes.
        icmp6(&multicast, 135, 0, [0; 4], &LAN_ADDRESS6.octets()),
        icmp6(&to_router, 136, 0, [0x60, 0, 0, 0], &HOSTS6[0].octets()),
        udp6(
            &Addressing6 {
                src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10),
                ..to_router
            },
            546,
            547,
            b"dhcpv6",
        ),
        udp6(
            &Addressing6 {
                src: Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1),
                ..a
            },
            SEED_PORT,
            53,
            b"not inside",
        ),
    ]
}

/// IPv6 frames from the Internet: replies to the seed flows on both
/// uplinks (to the mapped address on isp1, to the masquerade address and
/// its NAT port on isp2), ICMPv6 errors about them, new connections, what
/// a link carries besides.
fn wan_seeds6() -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    for (uplink, outside) in OUTSIDE6.into_iter().enumerate() {
        let w = internet6(uplink, SERVER6, outside);
        let port = 2 + uplink as u8;
        // The seed flows' packets as they left by this uplink.
        let left = Addressing6 {
            src: outside,
            ..lan6(0, SERVER6)
        };
        let udp_left = udp6(&left, SEED_PORT, 53, b"query");
        let syn_left = tcp6_with_options(&left, SEED_PORT, 80, SYN, &mss_option(1440), b"");
        let echo_left = icmp6_echo(&left, true, SEED_PORT, 1, b"ping");
        let mut dying = w;
        dying.hop_limit = 1;
        let from_hop = internet6(uplink, STRANGER6, outside);
        let link = Addressing6 {
            src: GATEWAY6,
            hop_limit: 255,
            ..w
        };
        frames.extend(
            [
                tcp6_with_options(&w, 80, SEED_PORT, SYN_ACK, &mss_option(1440), b""),
                tcp6(&w, 80, SEED_PORT, ACK, b"HTTP/1.1 200 OK"),
                udp6(&w, 53, SEED_PORT, b"answer"),
                icmp6_echo(&w, false, SEED_PORT, 1, b"ping"),
                with_extensions6(
                    &udp6(&w, 53, SEED_PORT, b"answer"),
                    &[Extension6::DestOptions],
                ),
                with_extensions6(
                    &udp6(&w, 53, SEED_PORT, &[4; 64]),
                    &[Extension6::Fragment {
                        offset: 0,
                        more: true,
                        id: 0x99,
                    }],
                ),
                udp6(&dying, 53, SEED_PORT, &[0; 64]),
                udp6(&w, 53, SEED_PORT, &[2; 1460]),
                icmp6(&from_hop, 1, 4, [0; 4], &udp_left[14..]),
                icmp6(&from_hop, 2, 0, 1280u32.to_be_bytes(), &syn_left[14..]),
                icmp6(&from_hop, 3, 0, [0; 4], &echo_left[14..]),
                icmp6(
                    &Addressing6 {
                        hop_limit: 1,
                        ..from_hop
                    },
                    1,
                    3,
                    [0; 4],
                    &udp_left[14..],
                ),
                tcp6(
                    &internet6(uplink, STRANGER6, INBOUND6[uplink]),
                    33000,
                    22,
                    SYN,
                    b"",
                ),
                tcp6(
                    &internet6(uplink, HOSTS6[0], outside),
                    80,
                    SEED_PORT,
                    SYN_ACK,
                    b"",
                ),
                // Neighbour Discovery from the gateway's link-local address.
                icmp6(&link, 135, 0, [0; 4], &outside.octets()),
            ]
            .into_iter()
            .map(|f| (port, f)),
        );
    }
    // A router advertisement to all nodes.
    let advertisement = Addressing6 {
        dst_mac: [0x33, 0x33, 0, 0, 0, 1],
        dst: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        src: GATEWAY6,
        hop_limit: 255,
        ..internet6(0, SERVER6, SERVER6)
    };
    frames.push((2, icmp6(&advertisement, 134, 0, [64, 0, 7, 8], &[0; 8])));
    // An error from a LAN host about a reply it got.
    let delivered = udp6(
        &Addressing6 {
            dst: HOSTS6[0],
            ..internet6(0, SERVER6, SERVER6)
        },
        53,
        SEED_PORT,
        b"late",
    );
    frames.push((0, icmp6(&lan6(0, SERVER6), 1, 4, [0; 4], &delivered[14..])));
    // One quoting more than an uplink's MTU holds: cut on the way out.
    let big = udp6(
        &Addressing6 {
            dst: HOSTS6[0],
            ..internet6(0, SERVER6, SERVER6)
        },
        53,
        SEED_PORT,
        &[5; 1460],
    );
    frames.push((0, icmp6(&lan6(0, SERVER6), 1, 4, [0; 4], &big[14..])));
    frames
}

/// The seed inputs: the LAN frames that open flows, then frames of every
/// kind the core handles; IPv4, then IPv6.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = lan_seeds().into_iter().map(|f| input(0, f)).collect();
    inputs.extend(wan_seeds().into_iter().map(|(port, f)| input(port, f)));
    inputs.extend(lan_seeds6().into_iter().map(|f| input(0, f)));
    inputs.extend(wan_seeds6().into_iter().map(|(port, f)| input(port, f)));
    inputs
}

/// Whether a frame (as sent or forwarded) is valid: every checksum right.
fn valid(frame: &[u8]) -> bool {
    let Ok(fragment) = check_fragment(frame) else {
        return false;
    };
    if fragment.offset != 0 || fragment.more {
        return true;
    }
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let is_icmp_error = frame[23] == 1 && matches!(frame.get(14 + header_len), Some(3 | 11 | 12));
    if is_icmp_error {
        check_icmp_error(frame).is_ok()
    } else {
        check(frame).is_ok()
    }
}

/// Recomputes the checksums the control byte asks for, where the frame is
/// well-formed enough to have them.
fn repair(frame: &mut [u8], transport: bool, ip: bool) {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    if header_len < 20 || frame.len() < 14 + header_len {
        return;
    }
    let end = (14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]))).min(frame.len());
    let first = u16::from_be_bytes([frame[20], frame[21]]) & 0x1fff == 0;
    if transport && first && end > 14 + header_len {
        let src: [u8; 4] = [frame[26], frame[27], frame[28], frame[29]];
        let dst: [u8; 4] = [frame[30], frame[31], frame[32], frame[33]];
        let protocol = frame[23];
        let segment = &mut frame[14 + header_len..end];
        repair_transport(segment, protocol, src, dst);
    }
    if ip {
        let header = &mut frame[14..14 + header_len];
        header[10] = 0;
        header[11] = 0;
        let sum = checksum::checksum(header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

fn repair_transport(segment: &mut [u8], protocol: u8, src: [u8; 4], dst: [u8; 4]) {
    let at = match protocol {
        6 if segment.len() >= 20 => 16,
        17 if segment.len() >= 8 => 6,
        1 if segment.len() >= 8 => 2,
        _ => return,
    };
    if protocol == 1 && matches!(segment[0], 3 | 11 | 12) && segment.len() >= 28 {
        // The quoted IPv4 header, as far as it is there.
        let quoted = &mut segment[8..];
        let quoted_len = (usize::from(quoted[0] & 0x0f) * 4).clamp(20, quoted.len().min(60));
        let header = &mut quoted[..quoted_len];
        header[10] = 0;
        header[11] = 0;
        let sum = checksum::checksum(header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let covered = if protocol == 17 {
        usize::from(u16::from_be_bytes([segment[4], segment[5]])).clamp(8, segment.len())
    } else {
        segment.len()
    };
    segment[at] = 0;
    segment[at + 1] = 0;
    let start = if protocol == 1 {
        0
    } else {
        checksum::pseudo_header_sum(src, dst, protocol, covered as u16)
    };
    let computed = !checksum::fold(checksum::sum_bytes(start, &segment[..covered]));
    let sum = checksum::transport_field(protocol, computed);
    segment[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Whether an IPv6 frame (as sent or forwarded) is valid, or why not: it
/// parses, its upper-layer checksum is right, and an ICMPv6 error's whole
/// quote's.
fn valid6(frame: &[u8]) -> Result<(), String> {
    let parsed = check6(frame)?;
    if matches!(parsed.transport, Transport::IcmpError { .. }) {
        check_quote6(frame, &parsed)?;
    }
    Ok(())
}

fn is_ipv6(frame: &[u8]) -> bool {
    frame.len() >= L3_OFFSET + 40 && frame[12..14] == [0x86, 0xdd]
}

/// The IPv6 side of [`repair`]: with `ip`, the payload length set to what
/// the frame holds; with `transport`, the upper-layer checksum recomputed
/// over the pseudo-header (first, in an ICMPv6 error quoting a whole packet,
/// that packet's). A fragment's is left as it is.
fn repair6(frame: &mut [u8], transport: bool, ip: bool) {
    if !is_ipv6(frame) {
        return;
    }
    if ip {
        let len = u16::try_from(frame.len() - L3_OFFSET - 40).unwrap_or(u16::MAX);
        frame[18..20].copy_from_slice(&len.to_be_bytes());
    }
    if !transport {
        return;
    }
    let end = L3_OFFSET + 40 + usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    let end = end.min(frame.len());
    let packet = &mut frame[L3_OFFSET..end];
    let Some((protocol, l4)) = upper_layer6(packet) else {
        return;
    };
    let (src, dst) = addresses6(packet);
    let segment = &mut packet[l4..];
    if protocol == PROTO_ICMPV6 && segment.len() > 8 && matches!(segment[0], 1..=4) {
        let quote = &mut segment[8..];
        let whole = quote.len() >= 40
            && 40 + usize::from(u16::from_be_bytes([quote[4], quote[5]])) == quote.len();
        if let Some((protocol, l4)) = upper_layer6(quote).filter(|_| whole) {
            let (src, dst) = addresses6(quote);
            repair_upper6(&mut quote[l4..], protocol, src, dst);
        }
    }
    repair_upper6(segment, protocol, src, dst);
}

fn repair_upper6(segment: &mut [u8], protocol: u8, src: Addr6, dst: Addr6) {
    let at = match protocol {
        6 if segment.len() >= 20 => 16,
        17 if segment.len() >= 8 => 6,
        PROTO_ICMPV6 if segment.len() >= 4 => 2,
        _ => return,
    };
    let covered = if protocol == 17 {
        usize::from(u16::from_be_bytes([segment[4], segment[5]])).clamp(8, segment.len())
    } else {
        segment.len()
    };
    segment[at..at + 2].copy_from_slice(&[0, 0]);
    let sum = checksum::transport_checksum6(src, dst, protocol, &segment[..covered]);
    segment[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Bytes as one hex string, to paste into a corpus file.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        let config = Config::from_toml(CONFIG, Path::new("fuzz.toml"))
            .unwrap_or_else(|e| panic!("the harness config is valid: {e}"));
        let router = two_uplink_router(&config);
        for (addr, mac) in HOSTS {
            router.set_lan_mac(Ipv4Addr::from(addr), mac);
        }
        for (id, mac) in GATEWAY_MACS.iter().enumerate() {
            router.set_gateway_mac6(id as u8, Some(*mac));
        }
        for (addr, (_, mac)) in HOSTS6.into_iter().zip(HOSTS) {
            router.set_lan_mac6(addr, mac);
        }
        let lane = router.lane();
        let mtu = |mtu: Option<u16>| mtu.unwrap_or(DEFAULT_MTU);
        let mut harness = Harness {
            router,
            lane,
            now: Duration::from_secs(1_000_000),
            frames: 0,
            max_flows: config.limits.max_flows,
            mtus: [
                mtu(config.lan.mtu),
                mtu(config.wans[0].mtu),
                mtu(config.wans[1].mtu),
            ],
            forwarded: 0,
            forwarded6: 0,
            made6: Made6::default(),
        };
        harness.warm();
        harness
    }

    /// Opens the seed flows.
    fn warm(&mut self) {
        for frame in lan_seeds().into_iter().chain(lan_seeds6()) {
            let mut frame = frame;
            self.router.process(
                &mut self.lane,
                &mut frame,
                FrameMeta {
                    port: Port::Lan,
                    now: self.now,
                    checksum_partial: false,
                    gso: None,
                },
            );
        }
    }

    /// Frames run so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The router's figures (verdicts by reason, tables).
    pub fn stats(&self) -> crate::router::Stats {
        self.router.stats()
    }

    /// Runs one input (see the module doc); Err says which invariant broke,
    /// and the input it broke on (in hex).
    pub fn run(&mut self, input: &[u8]) -> Result<Verdict, String> {
        self.run_one(input)
            .map_err(|broken| format!("{broken}\ninput {}", hex(input)))
    }

    fn run_one(&mut self, input: &[u8]) -> Result<Verdict, String> {
        let Some((&control, frame)) = input.split_first() else {
            return Ok(Verdict::Drop(crate::router::DropReason::Malformed));
        };
        let port = match control & 3 {
            0 | 1 => Port::Lan,
            2 => Port::Wan(0),
            _ => Port::Wan(1),
        };
        self.now += Duration::from_secs(u64::from((control >> 2) & 0x0f));
        let mut frame = frame.to_vec();
        let (transport, ip) = (control & 0x40 != 0, control & 0x80 != 0);
        repair(&mut frame, transport, ip);
        repair6(&mut frame, transport, ip);
        let sent6 = is_ipv6(&frame).then(|| Sent6 {
            src: addresses6(&frame[L3_OFFSET..]).0,
            hop_limit: frame[L3_OFFSET + 7],
            frame: frame.clone(),
        });
        let was_valid = sent6.is_none() && valid(&frame);
        let was_fragment =
            frame.len() >= 22 && u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0;
        let received = frame.len();
        let verdict = self.router.process(
            &mut self.lane,
            &mut frame,
            FrameMeta {
                port,
                now: self.now,
                checksum_partial: false,
                gso: None,
            },
        );
        let mut also = Vec::new();
        self.lane.drain(&mut |_, f| also.push(f.to_vec()));
        if verdict == Verdict::Taken {
            for made in &also {
                match &sent6 {
                    Some(sent) if is_ipv6(made) => self.check_made6(made, sent)?,
                    _ => {
                        check_fragment(made)
                            .map_err(|e| format!("a frame made in the outbox: {e}"))?;
                    }
                }
            }
        }
        if let (Verdict::Forward { port: out, len }, Some(sent)) = (verdict, &sent6) {
            self.forwarded += 1;
            self.forwarded6 += 1;
            if len > received {
                return Err(format!("forwarded {len} bytes of a {received}-byte frame"));
            }
            let forwarded = &frame[..len];
            if !also.is_empty() {
                return Err(format!(
                    "an IPv6 frame forwarded with {} more frames",
                    also.len()
                ));
            }
            let made = out == port && forwarded.len() > L3_OFFSET + 7 && forwarded[21] == 255;
            if made {
                self.check_made6(forwarded, sent)?;
            } else {
                self.check_forwarded6(forwarded, out, sent)?;
            }
        } else if let Verdict::Forward { len, .. } = verdict {
            self.forwarded += 1;
            if len > received || len < 34 {
                return Err(format!("forwarded {len} bytes of a {received}-byte frame"));
            }
            let mut pieces = vec![frame[..len].to_vec()];
            for piece in &also {
                check_fragment(piece).map_err(|e| format!("a later fragment: {e}"))?;
                pieces.push(piece.clone());
            }
            // A packet the core fragmented is checked whole; of a fragment
            // (and the ones held for it) the headers are checked.
            let whole = if also.is_empty() || was_fragment {
                None
            } else {
                Some(reassemble(&pieces).map_err(|e| format!("fragmented: {e}"))?)
            };
            let out = whole.as_deref().unwrap_or(&frame[..len]);
            check_fragment(out).map_err(|e| format!("forwarded IPv4 header: {e}"))?;
            if was_valid && !valid(out) {
                let reason = check(out).err().unwrap_or_default();
                return Err(format!(
                    "a valid frame was forwarded invalid ({reason}): in {:02x?} out {out:02x?}",
                    input
                ));
            }
        }
        self.frames += 1;
        if self.frames % STATE_CHECK_EVERY == 0 {
            self.check_state()?;
        }
        if self.frames % DRAIN_EVERY == 0 {
            self.drain()?;
            self.warm();
        }
        Ok(verdict)
    }

    /// An IPv6 frame the core translated and forwarded: it parses again, its
    /// hop limit is one less (and not 0), it fits the egress MTU, and it is
    /// valid when the frame was.
    fn check_forwarded6(&self, out: &[u8], port: Port, sent: &Sent6) -> Result<(), String> {
        let parsed = reparse6(out).map_err(|e| format!("forwarded IPv6 frame: {e}"))?;
        if sent.hop_limit <= 1 || parsed.hop_limit != sent.hop_limit - 1 {
            return Err(format!(
                "an IPv6 frame that came with hop limit {} left with {}",
                sent.hop_limit, parsed.hop_limit
            ));
        }
        let mtu = match port {
            Port::Lan => self.mtus[0],
            Port::Wan(uplink) => self.mtus[1 + usize::from(uplink)],
        };
        if out.len() - L3_OFFSET > usize::from(mtu) {
            return Err(format!(
                "a {}-byte IPv6 packet forwarded out {port:?}, whose MTU is {mtu}",
                out.len() - L3_OFFSET
            ));
        }
        if let Err(reason) = valid6(out) {
            if sent.valid() {
                return Err(format!(
                    "a valid IPv6 frame was forwarded invalid ({reason}): out {}",
                    hex(out)
                ));
            }
        }
        Ok(())
    }

    /// An ICMPv6 error the core made about the IPv6 frame `sent`, in its
    /// buffer or in the outbox: a valid error of at most 14 + 1280 bytes, to
    /// the frame's source; its quote is valid when the frame was.
    fn check_made6(&mut self, error: &[u8], sent: &Sent6) -> Result<(), String> {
        if error.len() > L3_OFFSET + MAX_ERROR6_LEN {
            return Err(format!("an ICMPv6 error of {} bytes", error.len()));
        }
        let parsed = check6(error).map_err(|e| format!("an ICMPv6 error the core made: {e}"))?;
        let Transport::IcmpError { icmp_type, .. } = parsed.transport else {
            return Err(format!(
                "the core made {:?} of an IPv6 frame",
                parsed.transport
            ));
        };
        if parsed.dst != sent.src {
            return Err("an ICMPv6 error to another than the frame's source".into());
        }
        if let Err(e) = check_quote6(error, &parsed) {
            if sent.valid() {
                return Err(format!(
                    "an ICMPv6 error made of a valid frame: {e}: out {}",
                    hex(error)
                ));
            }
        }
        match icmp_type {
            3 => self.made6.time_exceeded += 1,
            2 => self.made6.packet_too_big += 1,
            1 => self.made6.unreachable += 1,
            other => return Err(format!("the core made an ICMPv6 error of type {other}")),
        }
        Ok(())
    }

    /// The tables agree with each other and stay within their limits.
    pub fn check_state(&self) -> Result<(), String> {
        let stats = self.router.stats();
        if stats.table.flows > self.max_flows {
            return Err(format!(
                "{} flows, limit {}",
                stats.table.flows, self.max_flows
            ));
        }
        if stats.fragments.entries > MAX_FRAGMENTS {
            return Err(format!("{} fragment entries", stats.fragments.entries));
        }
        let per_uplink: u32 = stats.uplinks.iter().map(|u| u.flows).sum();
        if per_uplink != stats.table.flows {
            return Err(format!(
                "uplinks count {per_uplink} flows, the table {}",
                stats.table.flows
            ));
        }
        for (id, uplink) in stats.uplinks.iter().enumerate() {
            let mappings: usize = uplink.nat_in_use.iter().sum();
            if mappings > uplink.flows as usize {
                return Err(format!(
                    "uplink {id}: {mappings} NAT mappings for {} flows",
                    uplink.flows
                ));
            }
        }
        if stats.limited_hosts > stats.table.flows as usize {
            return Err(format!(
                "{} hosts counted for {} flows",
                stats.limited_hosts, stats.table.flows
            ));
        }
        self.check_state6(&stats)
    }

    /// The IPv6 table within `max_flows`; each uplink's IPv6 flows adding up
    /// to it, its NAT66 mappings within them (none without masquerade).
    fn check_state6(&self, stats: &crate::router::Stats) -> Result<(), String> {
        let flows = stats.table6.flows;
        if flows > self.max_flows {
            return Err(format!("{flows} IPv6 flows, limit {}", self.max_flows));
        }
        let mut per_uplink = 0;
        for (id, uplink) in stats.uplinks.iter().enumerate() {
            let Some(v6) = &uplink.ipv6 else {
                return Err(format!("uplink {id} carries no IPv6"));
            };
            per_uplink += v6.flows;
            let mappings: usize = v6.nat_in_use.iter().sum();
            let allowed = if v6.nat == Nat6::Masquerade {
                v6.flows as usize
            } else {
                0
            };
            if mappings > allowed {
                return Err(format!(
                    "uplink {id} ({:?}): {mappings} NAT66 mappings for {} IPv6 flows",
                    v6.nat, v6.flows
                ));
            }
        }
        if per_uplink != flows {
            return Err(format!(
                "uplinks count {per_uplink} IPv6 flows, the table {flows}"
            ));
        }
        Ok(())
    }

    /// Lets every flow expire and checks that nothing is left behind.
    pub fn drain(&mut self) -> Result<(), String> {
        self.now += Duration::from_secs(3 * 3600);
        self.router.expire(self.now);
        let stats = self.router.stats();
        let leftovers = (
            stats.table.flows,
            stats.limited_hosts,
            stats
                .uplinks
                .iter()
                .map(|u| (u.flows, u.nat_in_use))
                .collect::<Vec<_>>(),
        );
        if leftovers != (0, 0, vec![(0, [0; 3]); 2]) {
            return Err(format!(
                "left after every flow expired (flows, hosts, per uplink): {leftovers:?}"
            ));
        }
        let leftovers6 = (
            stats.table6.flows,
            stats
                .uplinks
                .iter()
                .map(|u| u.ipv6.as_ref().map(|v6| (v6.flows, v6.nat_in_use)))
                .collect::<Vec<_>>(),
        );
        if leftovers6 != (0, vec![Some((0, [0; 3])); 2]) {
            return Err(format!(
                "left after every IPv6 flow expired (flows, per uplink): {leftovers6:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv6 inputs among the seeds.
    fn seeds6() -> Vec<Vec<u8>> {
        seeds()
            .into_iter()
            .filter(|input| is_ipv6(&input[1..]))
            .collect()
    }

    #[test]
    fn every_ipv6_seed_that_parses_is_valid() {
        let seeds = seeds6();
        assert!(seeds.len() > 40, "{} IPv6 seeds", seeds.len());
        for input in seeds {
            let frame = &input[1..];
            let parses = reparse6(frame).is_ok_and(|f| f.fragment.is_none());
            assert_eq!(valid6(frame).is_ok(), parses, "{}", hex(&input));
        }
    }

    #[test]
    fn repair6_fixes_the_checksums_and_the_payload_length() {
        for input in seeds6() {
            let good = input[1..].to_vec();
            if valid6(&good).is_err() {
                continue;
            }
            // A byte of the upper layer (or of the quote) changed.
            let mut broken = good.clone();
            let last = broken.len() - 1;
            broken[last] ^= 0x10;
            assert!(valid6(&broken).is_err());
            repair6(&mut broken, true, false);
            assert_eq!(valid6(&broken), Ok(()), "{}", hex(&input));
            // A TCP segment's payload cut short: the payload length and
            // the checksum follow.
            let tcp = good[20] == 6;
            let header = if tcp {
                54 + usize::from(good[66] >> 4) * 4
            } else {
                0
            };
            if tcp && good.len() > header + 2 {
                let mut cut = good[..good.len() - 2].to_vec();
                assert!(valid6(&cut).is_err());
                repair6(&mut cut, true, true);
                assert_eq!(valid6(&cut), Ok(()), "{}", hex(&input));
            }
        }
    }

    #[test]
    fn a_harness_drains_clean_after_its_seeds() {
        let mut harness = Harness::new();
        for input in seeds() {
            harness.run(&input).unwrap();
        }
        harness.check_state().unwrap();
        assert!(harness.stats().table6.flows > 0);
        harness.drain().unwrap();
    }
}

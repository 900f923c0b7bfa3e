//! The router the core benchmarks run: two uplinks, a few rules, a table
//! filled with UDP flows from 1000 inside endpoints; shared by `core.rs`
//! (criterion) and `core_count.rs` (fixed work for callgrind).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use xwan::config::Config;
use xwan::router::{FrameMeta, Lane, Port, Router, Verdict};
use xwan::testing::{self, Addressing, Addressing6, GATEWAY_MACS, LAN_MAC, SYN, WAN_MACS};

/// [`testing::TWO_UPLINKS`] with a LAN of 192.168.0.0/16 (the inside
/// endpoints span 192.168.0-3.x), a few rules, and room for every flow for
/// as long as a run lasts.
fn config() -> String {
    let lan = testing::TWO_UPLINKS.replace("192.168.50.0/24", "192.168.0.0/16");
    assert_ne!(lan, testing::TWO_UPLINKS, "the base configuration's LAN");
    dual_stack(&lan) + RULES_AND_LIMITS
}

/// `text` with IPv6 beside IPv4: a ULA LAN, isp1 mapping it into a
/// delegated prefix (nat6 "prefix"), isp2 masquerading to its one address.
fn dual_stack(text: &str) -> String {
    let text = text
        .replace(
            "networks = [\"192.168.0.0/16\"]",
            "networks = [\"192.168.0.0/16\", \"fd00::/48\"]",
        )
        .replace(
            "gateway = \"198.18.1.1\"",
            "gateway = \"198.18.1.1\"\ngateway6 = \"fe80::1\"\nprefix6 = \"2001:db8:100::/48\"",
        )
        .replace(
            "gateway = \"198.18.2.1\"",
            "gateway = \"198.18.2.1\"\ngateway6 = \"fe80::1\"\naddress6 = \"2001:db8:2::2\"",
        );
    assert!(
        text.contains("fd00::/48") && text.contains("address6"),
        "{text}"
    );
    text
}

const RULES_AND_LIMITS: &str = r#"
[[rule]]
name = "web"
proto = "tcp"
dst_port = "443"
action = "isp2"

[[rule]]
name = "vpn"
dst = "10.8.0.0/16"
action = "bypass"

[timeouts]
udp_s = 31536000

[limits]
max_flows = 2000000
"#;

pub const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

/// Inside endpoints used to fill the table (each one's mapping is shared by
/// its flows to many servers, as real hosts' are).
pub const INSIDE_ENDPOINTS: u32 = 1000;

pub struct Setup {
    pub router: Router,
    pub lane: Lane,
    pub now: Duration,
}

pub fn inside(i: u32) -> (Ipv4Addr, u16) {
    let host = i % INSIDE_ENDPOINTS;
    (
        Ipv4Addr::new(192, 168, (host / 250) as u8, (host % 250 + 2) as u8),
        30000 + (host % 250) as u16,
    )
}

pub fn server(i: u32) -> Ipv4Addr {
    let n = i / INSIDE_ENDPOINTS;
    Ipv4Addr::new(100, 64 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// [`inside`] for IPv6: fd00:0:0:N::H.
pub fn inside6(i: u32) -> (Ipv6Addr, u16) {
    let (v4, port) = inside(i);
    let [_, _, n, h] = v4.octets();
    (
        Ipv6Addr::new(0xfd00, 0, 0, u16::from(n), 0, 0, 0, u16::from(h)),
        port,
    )
}

/// [`server`] for IPv6.
pub fn server6(i: u32) -> Ipv6Addr {
    let [a, b, c, d] = server(i).octets();
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0xffff,
        0,
        0,
        0,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    )
}

/// [`lan_udp`] for IPv6.
pub fn lan_udp6(i: u32) -> Vec<u8> {
    let (src, port) = inside6(i);
    let a = Addressing6 {
        src_mac: HOST_MAC,
        dst_mac: LAN_MAC,
        src,
        dst: server6(i),
        hop_limit: 64,
    };
    testing::udp6(&a, port, 53, &[0u8; 18])
}

pub fn lan_udp(i: u32) -> Vec<u8> {
    let (src, port) = inside(i);
    let a = Addressing {
        src_mac: HOST_MAC,
        dst_mac: LAN_MAC,
        src,
        dst: server(i),
        ttl: 64,
    };
    testing::udp(&a, port, 53, &[0u8; 18])
}

impl Setup {
    pub fn new(flows: u32) -> Setup {
        let config = Config::from_toml(&config(), Path::new("bench.toml")).expect("bench config");
        let router = testing::two_uplink_router(&config);
        // The LAN hosts resolved, as the neighbour thread leaves them
        // within a round of their first packet.
        for host in 0..INSIDE_ENDPOINTS {
            router.set_lan_mac(inside(host).0, HOST_MAC);
            router.set_lan_mac6(inside6(host).0, HOST_MAC);
        }
        for (id, mac) in GATEWAY_MACS.iter().enumerate() {
            router.set_gateway_mac6(id as u8, Some(*mac));
        }
        let mut setup = Setup {
            lane: router.lane(),
            router,
            now: Duration::from_secs(1000),
        };
        for i in 0..flows {
            let verdict = setup.process(Port::Lan, &mut lan_udp(i));
            assert!(
                matches!(verdict, Verdict::Forward { .. }),
                "fill: {verdict:?}"
            );
        }
        assert_eq!(setup.router.stats().table.flows, flows);
        setup
    }

    /// A router with `flows` IPv6 flows (and `ipv4` IPv4 ones) established.
    pub fn new6(flows: u32, ipv4: u32) -> Setup {
        let mut setup = Setup::new(ipv4);
        for i in 0..flows {
            let verdict = setup.process(Port::Lan, &mut lan_udp6(i));
            assert!(
                matches!(verdict, Verdict::Forward { .. }),
                "fill: {verdict:?}"
            );
        }
        assert_eq!(setup.router.stats().table6.flows, flows);
        setup
    }

    /// The reply to IPv6 flow `i`'s outbound frame, and its uplink.
    pub fn reply6(&mut self, i: u32) -> (Port, Vec<u8>) {
        let mut out = lan_udp6(i);
        let Verdict::Forward { port, len } = self.process(Port::Lan, &mut out) else {
            panic!("IPv6 flow {i} is not established");
        };
        let seen = testing::check6(&out[..len]).expect("valid frame");
        let Port::Wan(uplink) = port else {
            panic!("outbound went to {port:?}")
        };
        let a = Addressing6 {
            src_mac: GATEWAY_MACS[usize::from(uplink)],
            dst_mac: WAN_MACS[usize::from(uplink)],
            src: seen.dst.into(),
            dst: seen.src.into(),
            hop_limit: 60,
        };
        (port, testing::udp6(&a, 53, seen.ports().0, &[0u8; 18]))
    }

    pub fn process(&mut self, port: Port, frame: &mut [u8]) -> Verdict {
        self.router.process(
            &mut self.lane,
            frame,
            FrameMeta {
                port,
                now: self.now,
                checksum_partial: false,
                gso: None,
            },
        )
    }

    /// The reply to flow `i`'s outbound frame, and the uplink it arrives on.
    pub fn reply(&mut self, i: u32) -> (Port, Vec<u8>) {
        let mut out = lan_udp(i);
        let Verdict::Forward { port, .. } = self.process(Port::Lan, &mut out) else {
            panic!("flow {i} is not established");
        };
        let seen = testing::check(&out).expect("valid frame");
        let Port::Wan(uplink) = port else {
            panic!("outbound went to {port:?}")
        };
        let a = Addressing {
            src_mac: GATEWAY_MACS[usize::from(uplink)],
            dst_mac: WAN_MACS[usize::from(uplink)],
            src: seen.dst,
            dst: seen.src,
            ttl: 60,
        };
        (port, testing::udp(&a, 53, seen.src_port, &[0u8; 18]))
    }
}

/// A TCP SYN of a new connection, one per `serial`.
pub fn new_syn(serial: u32) -> Vec<u8> {
    let (src, port) = inside(serial);
    let a = Addressing {
        src_mac: HOST_MAC,
        dst_mac: LAN_MAC,
        src,
        dst: Ipv4Addr::new(203, 0, (serial >> 16) as u8 | 0x80, serial as u8),
        ttl: 64,
    };
    testing::tcp(&a, port, 1024 + (serial >> 8) as u16 % 60000, SYN, b"")
}

//! A router core with established flows, for the offload tests: the core's
//! entries (`router/offload.rs`) and the eBPF fast path run on the same
//! frames as the core (`io/offload`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::{icmp_echo, tcp, udp, Addressing, ACK, SYN, SYN_ACK};
use crate::config::Config;
use crate::router::{FrameMeta, InterfaceMacs, Lane, Port, Router, Verdict};

pub const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x02];
pub const WAN2_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 0x02];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];
pub const GATEWAY2_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 0x01];
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
/// isp1's address (the flows here all go by isp1: the second uplink is down).
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The port forwarded to HOST:80.
pub const FORWARDED: u16 = 8080;

/// A router with isp1 up and its gateway resolved, isp2 down, TCP 8080 on
/// the WAN addresses forwarded to HOST:80, and a clock.
pub struct Established {
    pub router: Router,
    pub lane: Lane,
    pub now: Duration,
}

/// An established flow: a data packet of each direction as it arrives.
pub struct Conversation {
    /// From the inside host, on the LAN.
    pub outbound: Vec<u8>,
    /// From the remote end, on isp1.
    pub inbound: Vec<u8>,
}

fn lan(src: Ipv4Addr, dst: Ipv4Addr) -> Addressing {
    Addressing {
        src_mac: HOST_MAC,
        dst_mac: LAN_MAC,
        src,
        dst,
        ttl: 64,
    }
}

fn internet(src: Ipv4Addr, dst: Ipv4Addr) -> Addressing {
    Addressing {
        src_mac: GATEWAY_MAC,
        dst_mac: WAN_MAC,
        src,
        dst,
        ttl: 60,
    }
}

impl Default for Established {
    fn default() -> Self {
        Self::new()
    }
}

impl Established {
    pub fn new() -> Established {
        let text = format!(
            "{}\n[[forward]]\nproto = \"tcp\"\nport = {FORWARDED}\nto = \"{HOST}:80\"\n",
            super::TWO_UPLINKS
        );
        let config =
            Config::from_toml(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"));
        let router = Router::new(
            &config,
            InterfaceMacs {
                lan: LAN_MAC,
                wans: vec![WAN_MAC, WAN2_MAC],
            },
        );
        router.set_gateway_mac(0, Some(GATEWAY_MAC));
        router.set_gateway_mac(1, Some(GATEWAY2_MAC));
        router.set_uplink_up(0, true);
        router.set_lan_mac(HOST, HOST_MAC);
        let lane = router.lane();
        Established {
            router,
            lane,
            now: Duration::from_secs(1000),
        }
    }

    /// Runs `frame` through the core; the verdict and the frame as it leaves.
    pub fn send(&mut self, port: Port, mut frame: Vec<u8>) -> (Verdict, Vec<u8>) {
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
        if let Verdict::Forward { len, .. } = verdict {
            frame.truncate(len);
        }
        (verdict, frame)
    }

    /// Sends `frame` and returns it as it leaves, expecting a forward.
    fn forward(&mut self, port: Port, frame: Vec<u8>) -> Vec<u8> {
        match self.send(port, frame) {
            (Verdict::Forward { .. }, out) => out,
            (other, _) => panic!("expected a forward, got {other:?}"),
        }
    }

    /// The outside port of the connection `out` (a frame leaving on isp1).
    fn outside_port(out: &[u8]) -> u16 {
        u16::from_be_bytes([out[34], out[35]])
    }

    /// A source-NATed TCP connection from HOST:`port` to SERVER:443 through
    /// its handshake.
    pub fn tcp_snat(&mut self, port: u16) -> Conversation {
        let out = self.forward(Port::Lan, tcp(&lan(HOST, SERVER), port, 443, SYN, &[]));
        let outside = Self::outside_port(&out);
        let to_wan = internet(SERVER, WAN_ADDR);
        self.forward(Port::Wan(0), tcp(&to_wan, 443, outside, SYN_ACK, &[]));
        self.forward(Port::Lan, tcp(&lan(HOST, SERVER), port, 443, ACK, &[]));
        Conversation {
            outbound: tcp(
                &lan(HOST, SERVER),
                port,
                443,
                ACK,
                b"GET / HTTP/1.1\r\n\r\n",
            ),
            inbound: tcp(&to_wan, 443, outside, ACK, b"HTTP/1.1 200 OK\r\n\r\nhello"),
        }
    }

    /// A destination-NATed TCP connection from CLIENT:`port` to the forwarded
    /// port, through its handshake.
    pub fn tcp_dnat(&mut self, port: u16) -> Conversation {
        let to_wan = internet(CLIENT, WAN_ADDR);
        self.forward(Port::Wan(0), tcp(&to_wan, port, FORWARDED, SYN, &[]));
        self.forward(Port::Lan, tcp(&lan(HOST, CLIENT), 80, port, SYN_ACK, &[]));
        self.forward(Port::Wan(0), tcp(&to_wan, port, FORWARDED, ACK, &[]));
        Conversation {
            outbound: tcp(
                &lan(HOST, CLIENT),
                80,
                port,
                ACK,
                b"HTTP/1.1 200 OK\r\n\r\n",
            ),
            inbound: tcp(&to_wan, port, FORWARDED, ACK, b"GET / HTTP/1.1\r\n\r\n"),
        }
    }

    /// A source-NATed UDP flow from HOST:`port` to SERVER:53 with one reply.
    pub fn udp_snat(&mut self, port: u16) -> Conversation {
        let out = self.forward(Port::Lan, udp(&lan(HOST, SERVER), port, 53, b"query"));
        let outside = Self::outside_port(&out);
        let to_wan = internet(SERVER, WAN_ADDR);
        self.forward(Port::Wan(0), udp(&to_wan, 53, outside, b"answer"));
        Conversation {
            outbound: udp(&lan(HOST, SERVER), port, 53, b"another query"),
            inbound: udp(&to_wan, 53, outside, b"another answer"),
        }
    }

    /// An ICMP echo (ping) from HOST with identifier `id` to SERVER, answered.
    pub fn icmp_echo(&mut self, id: u16) -> Conversation {
        let out = self.forward(
            Port::Lan,
            icmp_echo(&lan(HOST, SERVER), true, id, 1, b"ping"),
        );
        let outside = u16::from_be_bytes([out[38], out[39]]);
        let to_wan = internet(SERVER, WAN_ADDR);
        self.forward(Port::Wan(0), icmp_echo(&to_wan, false, outside, 1, b"ping"));
        Conversation {
            outbound: icmp_echo(&lan(HOST, SERVER), true, id, 2, b"ping again"),
            inbound: icmp_echo(&to_wan, false, outside, 2, b"ping again"),
        }
    }
}

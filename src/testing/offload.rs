//! A router core with established flows, for the offload tests: the core's
//! entries (`router/offload.rs`) and the eBPF fast path run on the same
//! frames as the core (`io/offload`). [`Established6`] is the same for
//! IPv6, in each `nat6` mode.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use super::{
    icmp6_echo, icmp_echo, tcp, tcp6, udp, udp6, Addressing, Addressing6, ACK, SYN, SYN_ACK,
};
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

/// isp1's own IPv6 address (NAT66), its delegated prefix, and the prefix
/// of the LAN with `nat6 = "off"` (routed, inside the delegated prefix;
/// the other modes number the LAN fd00:50::/64).
pub const WAN_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const PREFIX6: &str = "2001:db8:100::/56";
const ROUTED_LAN6: [u16; 4] = [0x2001, 0xdb8, 0x100, 0x50];
const ULA_LAN6: [u16; 4] = [0xfd00, 0x50, 0, 0];
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x99);

/// [`Established`] for IPv6: a router whose isp1 carries IPv6 as `nat6`
/// says ("masquerade", "prefix", "npt" or "off"), up and its IPv6 gateway
/// resolved; isp2 carries none. With masquerade, TCP 8080 on isp1's IPv6
/// address is forwarded to [`Established6::host`]`(10)`:80.
pub struct Established6 {
    pub inner: Established,
    lan: [u16; 4],
    masquerade: bool,
}

fn lan6(src: Ipv6Addr, dst: Ipv6Addr) -> Addressing6 {
    Addressing6 {
        src_mac: HOST_MAC,
        dst_mac: LAN_MAC,
        src,
        dst,
        hop_limit: 64,
    }
}

fn internet6(src: Ipv6Addr, dst: Ipv6Addr) -> Addressing6 {
    Addressing6 {
        src_mac: GATEWAY_MAC,
        dst_mac: WAN_MAC,
        src,
        dst,
        hop_limit: 60,
    }
}

/// The source address and port (an echo's identifier) of the IPv6 frame `out`.
fn source6(out: &[u8], echo: bool) -> (Ipv6Addr, u16) {
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&out[22..38]);
    let at = if echo { 58 } else { 54 };
    (
        Ipv6Addr::from(addr),
        u16::from_be_bytes([out[at], out[at + 1]]),
    )
}

impl Established6 {
    pub fn new(nat6: &str) -> Established6 {
        let lan = if nat6 == "off" { ROUTED_LAN6 } else { ULA_LAN6 };
        let lan_net = Ipv6Addr::new(lan[0], lan[1], lan[2], lan[3], 0, 0, 0, 0);
        let forward = if nat6 == "masquerade" {
            let host = Ipv6Addr::new(lan[0], lan[1], lan[2], lan[3], 0, 0, 0, 10);
            format!("[[forward]]\nproto = \"tcp\"\nport = {FORWARDED}\nto = \"[{host}]:80\"\n")
        } else {
            String::new()
        };
        let text = format!(
            r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24", "{lan_net}/64"]

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
address6 = "{WAN_ADDR6}"
gateway6 = "fe80::1"
prefix6 = "{PREFIX6}"
nat6 = "{nat6}"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"

{forward}"#
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
        router.set_gateway_mac6(0, Some(GATEWAY_MAC));
        router.set_uplink_up(0, true);
        let lane = router.lane();
        let bench = Established6 {
            inner: Established {
                router,
                lane,
                now: Duration::from_secs(1000),
            },
            lan,
            masquerade: nat6 == "masquerade",
        };
        bench.inner.router.set_lan_mac6(bench.host(10), HOST_MAC);
        bench
    }

    /// The LAN host with interface identifier `iid`.
    pub fn host(&self, iid: u16) -> Ipv6Addr {
        let l = self.lan;
        Ipv6Addr::new(l[0], l[1], l[2], l[3], 0, 0, 0, iid)
    }

    fn forward(&mut self, port: Port, frame: Vec<u8>) -> Vec<u8> {
        self.inner.forward(port, frame)
    }

    /// A TCP connection from `host`:`port` to `server`:443 through its
    /// handshake.
    pub fn tcp_snat(&mut self, host: Ipv6Addr, server: Ipv6Addr, port: u16) -> Conversation {
        let out = self.forward(Port::Lan, tcp6(&lan6(host, server), port, 443, SYN, &[]));
        let (outside, outside_port) = source6(&out, false);
        let to_wan = internet6(server, outside);
        self.forward(Port::Wan(0), tcp6(&to_wan, 443, outside_port, SYN_ACK, &[]));
        self.forward(Port::Lan, tcp6(&lan6(host, server), port, 443, ACK, &[]));
        Conversation {
            outbound: tcp6(
                &lan6(host, server),
                port,
                443,
                ACK,
                b"GET / HTTP/1.1\r\n\r\n",
            ),
            inbound: tcp6(
                &to_wan,
                443,
                outside_port,
                ACK,
                b"HTTP/1.1 200 OK\r\n\r\nhello",
            ),
        }
    }

    /// A TCP connection from `client`:`port` to host 10's port 80 through
    /// its handshake: by the forward on isp1's address (masquerade), else
    /// to the host's outside address.
    pub fn tcp_dnat(&mut self, client: Ipv6Addr, port: u16) -> Conversation {
        let host = self.host(10);
        let (outside, outside_port) = if self.masquerade {
            (WAN_ADDR6, FORWARDED)
        } else {
            // The host's outside address: where its own datagram leaves from.
            let probe = udp6(&lan6(host, SERVER6), 9, 9, b"");
            (source6(&self.forward(Port::Lan, probe), false).0, 80)
        };
        let to_wan = internet6(client, outside);
        self.forward(Port::Wan(0), tcp6(&to_wan, port, outside_port, SYN, &[]));
        self.forward(Port::Lan, tcp6(&lan6(host, client), 80, port, SYN_ACK, &[]));
        self.forward(Port::Wan(0), tcp6(&to_wan, port, outside_port, ACK, &[]));
        Conversation {
            outbound: tcp6(
                &lan6(host, client),
                80,
                port,
                ACK,
                b"HTTP/1.1 200 OK\r\n\r\n",
            ),
            inbound: tcp6(&to_wan, port, outside_port, ACK, b"GET / HTTP/1.1\r\n\r\n"),
        }
    }

    /// A UDP flow from `host`:`port` to `server`:53 with one reply.
    pub fn udp_snat(&mut self, host: Ipv6Addr, server: Ipv6Addr, port: u16) -> Conversation {
        let out = self.forward(Port::Lan, udp6(&lan6(host, server), port, 53, b"query"));
        let (outside, outside_port) = source6(&out, false);
        let to_wan = internet6(server, outside);
        self.forward(Port::Wan(0), udp6(&to_wan, 53, outside_port, b"answer"));
        Conversation {
            outbound: udp6(&lan6(host, server), port, 53, b"another query"),
            inbound: udp6(&to_wan, 53, outside_port, b"another answer"),
        }
    }

    /// An ICMPv6 echo from `host` with identifier `id` to `server`, answered.
    pub fn icmp_echo(&mut self, host: Ipv6Addr, server: Ipv6Addr, id: u16) -> Conversation {
        let out = self.forward(
            Port::Lan,
            icmp6_echo(&lan6(host, server), true, id, 1, b"ping"),
        );
        let (outside, outside_id) = source6(&out, true);
        let to_wan = internet6(server, outside);
        self.forward(
            Port::Wan(0),
            icmp6_echo(&to_wan, false, outside_id, 1, b"ping"),
        );
        Conversation {
            outbound: icmp6_echo(&lan6(host, server), true, id, 2, b"ping again"),
            inbound: icmp6_echo(&to_wan, false, outside_id, 2, b"ping again"),
        }
    }
}

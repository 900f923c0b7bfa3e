//! Whole conversations through the router core with an injected clock: every
//! frame built with etherparse, every rewritten frame re-parsed and its
//! checksums recomputed in full.

mod conversations;
mod fragments;
mod fuzz;
mod gso;
mod hairpin;
mod hostile;
mod icmp_errors;
mod interface_facts;
mod ipv6;
mod leftovers;
mod limits;
mod mtu;
mod neighbours;
mod properties;
mod reload;
mod restart;
mod tcp_options;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use xwan::config::Config;
use xwan::router::{FrameMeta, Lane, Port, Router, Verdict};
use xwan::testing::{self, Addressing, Seen};

pub use xwan::testing::{GATEWAY_MACS, LAN_MAC, WAN_MACS};
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const HOST2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
pub const HOST2: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 11);
/// The router's LAN address, in configs that set `[lan] address`.
pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
pub const ISP1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const ISP2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

pub const BASE_CONFIG: &str = xwan::testing::TWO_UPLINKS;

pub fn config(extra: &str) -> Config {
    let text = format!("{BASE_CONFIG}\n{extra}");
    Config::from_toml(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// A router with both uplinks up and their gateways resolved, and a clock.
pub struct Bench {
    pub router: Router,
    pub lane: Lane,
    pub now: Duration,
}

impl Bench {
    pub fn new(extra: &str) -> Bench {
        Bench::from_config(config(extra))
    }

    /// A bench for a whole config text.
    pub fn from_text(text: &str) -> Bench {
        Bench::from_config(
            Config::from_toml(text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn from_config(config: Config) -> Bench {
        let router = testing::two_uplink_router(&config);
        router.set_lan_mac(HOST, HOST_MAC);
        router.set_lan_mac(HOST2, HOST2_MAC);
        let lane = router.lane();
        Bench {
            router,
            lane,
            now: Duration::from_secs(1000),
        }
    }

    pub fn advance(&mut self, seconds: u64) {
        self.now += Duration::from_secs(seconds);
    }

    /// Sends `frame` in on `port`; returns the verdict and the frame as it would go out.
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

    /// The frames the last [`Bench::send`] made besides the one it returned
    /// (later fragments, fragments held until their first came).
    pub fn also_sent(&mut self) -> Vec<(Port, Vec<u8>)> {
        let mut out = Vec::new();
        self.lane
            .drain(&mut |port, frame| out.push((port, frame.to_vec())));
        out
    }

    /// Sends `frame`, expects it forwarded on `out`, checks it and returns what it carries.
    pub fn forward(&mut self, port: Port, frame: Vec<u8>, out: Port) -> Seen {
        let (verdict, bytes) = self.send(port, frame);
        match verdict {
            Verdict::Forward { port, .. } => assert_eq!(port, out, "forwarded on the wrong port"),
            other => panic!("expected a forward on {out:?}, got {other:?}"),
        }
        testing::check(&bytes).unwrap_or_else(|e| panic!("bad frame out: {e}"))
    }

    /// The uplink a forwarded frame left by.
    pub fn forward_any_wan(&mut self, frame: Vec<u8>) -> (u8, Seen) {
        let (verdict, bytes) = self.send(Port::Lan, frame);
        let Verdict::Forward {
            port: Port::Wan(uplink),
            ..
        } = verdict
        else {
            panic!("expected a forward to a WAN, got {verdict:?}");
        };
        (
            uplink,
            testing::check(&bytes).unwrap_or_else(|e| panic!("bad frame out: {e}")),
        )
    }
}

/// [`BASE_CONFIG`] with lines added to its `[lan]` section and to its first
/// `[[wan]]`, then `extra`.
pub fn base_with(lan: &str, wan1: &str, extra: &str) -> String {
    let text = BASE_CONFIG
        .replacen(
            "networks = [\"192.168.50.0/24\"]",
            &format!("networks = [\"192.168.50.0/24\"]\n{lan}"),
            1,
        )
        .replacen(
            "gateway = \"198.18.1.1\"",
            &format!("gateway = \"198.18.1.1\"\n{wan1}"),
            1,
        );
    format!("{text}\n{extra}")
}

/// Sends `frame`, expects an ICMP error made by the core back out `port`,
/// checks it and returns it with its type/code and the quoted packet.
pub fn expect_error(
    b: &mut Bench,
    port: Port,
    frame: Vec<u8>,
) -> (testing::Seen, [u8; 2], testing::SeenQuote, Vec<u8>) {
    let (verdict, bytes) = b.send(port, frame);
    match verdict {
        Verdict::Forward { port: out, .. } => assert_eq!(out, port, "an error goes back"),
        other => panic!("expected an ICMP error back out {port:?}, got {other:?}"),
    }
    let (seen, kind, quote) =
        testing::check_icmp_error(&bytes).unwrap_or_else(|e| panic!("bad ICMP error: {e}"));
    (seen, kind, quote, bytes)
}

/// Addressing of a frame from a LAN host to the router.
pub fn from_host(host: Ipv4Addr, dst: Ipv4Addr) -> Addressing {
    Addressing {
        src_mac: HOST_MAC,
        dst_mac: LAN_MAC,
        src: host,
        dst,
        ttl: 64,
    }
}

/// Addressing of a frame from the Internet arriving on an uplink.
pub fn from_internet(uplink: usize, src: Ipv4Addr, dst: Ipv4Addr) -> Addressing {
    Addressing {
        src_mac: GATEWAY_MACS[uplink],
        dst_mac: WAN_MACS[uplink],
        src,
        dst,
        ttl: 60,
    }
}

/// `frame` (TCP or UDP over IPv4 without options, from the testing builders)
/// with the TCP/UDP checksum a local sender with checksum offload hands over:
/// the folded pseudo-header sum, not complemented.
pub fn with_partial_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    let (protocol, at) = if frame[14 + 9] == 6 {
        (6, 14 + 20 + 16)
    } else {
        (17, 14 + 20 + 6)
    };
    let l4_len = (frame.len() - 34) as u16;
    let src: [u8; 4] = frame[26..30].try_into().expect("4 bytes");
    let dst: [u8; 4] = frame[30..34].try_into().expect("4 bytes");
    let pseudo = xwan::packet::checksum::fold(xwan::packet::checksum::pseudo_header_sum(
        src, dst, protocol, l4_len,
    ));
    frame[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    frame
}

/// Sends fragments in on `port`, expects each forwarded on `out`, and
/// returns the forwarded frames after checking their IP headers.
pub fn forward_all(b: &mut Bench, port: Port, fragments: &[Vec<u8>], out: Port) -> Vec<Vec<u8>> {
    fragments
        .iter()
        .map(|f| {
            let (verdict, bytes) = b.send(port, f.clone());
            match verdict {
                Verdict::Forward { port, .. } => assert_eq!(port, out),
                other => panic!("fragment not forwarded: {other:?}"),
            }
            testing::check_fragment(&bytes).unwrap();
            bytes
        })
        .collect()
}

/// Sends later fragments in on `port` before their first: each is held
/// (taken, nothing sent), and the router holds them all.
pub fn hold_all(b: &mut Bench, port: Port, fragments: &[Vec<u8>]) {
    let before = b.router.stats().fragments.held;
    for f in fragments {
        assert_eq!(b.send(port, f.clone()).0, Verdict::Taken);
        assert!(b.also_sent().is_empty());
    }
    assert_eq!(b.router.stats().fragments.held, before + fragments.len());
}

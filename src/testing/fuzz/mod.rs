//! A fuzzing harness over the router core, shared by the cargo-fuzz target
//! (`fuzz/`), the long mutation runs and the deterministic run of
//! `cargo test`: arbitrary frames go into one live router from either side,
//! and after each frame the harness checks what must always hold.
//!
//! An input is one control byte followed by the frame:
//! - bits 0-1: the port it comes in by (0 and 1: the LAN, 2: isp1, 3: isp2);
//! - bits 2-5: seconds the clock moves on first (0 to 15);
//! - bit 6: recompute the transport checksum (and an ICMP error's quoted IP
//!   header checksum) first;
//! - bit 7: recompute the IPv4 header checksum first;
//!
//! so that a fuzzer gets past the checksum checks without learning them.
//!
//! What must hold:
//! - a forwarded frame is no longer than the frame was and its IPv4 header is
//!   valid; when the frame was valid (every checksum right), so is what is
//!   forwarded (transport checksums and, for ICMP errors, the quoted header);
//! - the flow table stays within `max_flows`, the fragment table within its
//!   limit, and the uplinks' flow counts and NAT mappings agree with the table;
//! - nothing leaks: once every flow has expired, the table is empty and every
//!   NAT port and per-host count is given back.
//!
//! The mutations of the long runs and the `cargo test` run are in `mutate.rs`.

mod mutate;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::{
    check, check_fragment, check_icmp_error, fragment, icmp_echo, icmp_error, mss_option,
    reassemble, tcp, tcp_with_options, two_uplink_router, udp, with_ip_options, Addressing, ACK,
    GATEWAY_MACS, LAN_MAC, SYN, SYN_ACK, WAN_MACS,
};
use crate::config::Config;
use crate::packet::checksum;
use crate::router::{FrameMeta, Lane, Port, Router, Verdict, MAX_FRAGMENTS};

pub use mutate::{run_mutations, Mutator};

/// The router the harness drives: small limits, so that they are reached.
pub const CONFIG: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24"]
address = "192.168.50.1"

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
mtu = 1400

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"

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
    /// Frames forwarded so far (a generated ICMP error counts).
    pub forwarded: u64,
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

/// The seed inputs: the LAN frames that open flows, then frames of every
/// kind the core handles.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = lan_seeds().into_iter().map(|f| input(0, f)).collect();
    inputs.extend(wan_seeds().into_iter().map(|(port, f)| input(port, f)));
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
        let lane = router.lane();
        let mut harness = Harness {
            router,
            lane,
            now: Duration::from_secs(1_000_000),
            frames: 0,
            max_flows: config.limits.max_flows,
            forwarded: 0,
        };
        harness.warm();
        harness
    }

    /// Opens the seed flows.
    fn warm(&mut self) {
        for frame in lan_seeds() {
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

    /// Runs one input (see the module doc); Err says which invariant broke.
    pub fn run(&mut self, input: &[u8]) -> Result<Verdict, String> {
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
        repair(&mut frame, control & 0x40 != 0, control & 0x80 != 0);
        let was_valid = valid(&frame);
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
                check_fragment(made).map_err(|e| format!("a frame made in the outbox: {e}"))?;
            }
        }
        if let Verdict::Forward { len, .. } = verdict {
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
        Ok(())
    }
}

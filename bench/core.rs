//! Criterion benchmarks of the router core: an established-flow packet, a
//! reply packet and a new flow (rules + NAT + insert), each with 1, 10 k and
//! 1 M flows in the table; and the memory a flow costs at 1 M flows.
//!
//! Every iteration copies a 60-74 byte template frame into the buffer first
//! (the core rewrites it in place); that copy is part of the time measured.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use xwan::config::Config;
use xwan::router::{FrameMeta, InterfaceMacs, Lane, Port, Router, Verdict};
use xwan::testing::{self, Addressing, SYN};

const CONFIG: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.0.0/16"]

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"

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

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const WAN_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 2, 2]];
const GATEWAY_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]];

/// Inside endpoints used to fill the table (each one's mapping is shared by
/// its flows to many servers, as real hosts' are).
const INSIDE_ENDPOINTS: u32 = 1000;

struct Setup {
    router: Router,
    lane: Lane,
    now: Duration,
}

fn inside(i: u32) -> (Ipv4Addr, u16) {
    let host = i % INSIDE_ENDPOINTS;
    (
        Ipv4Addr::new(192, 168, (host / 250) as u8, (host % 250 + 2) as u8),
        30000 + (host % 250) as u16,
    )
}

fn server(i: u32) -> Ipv4Addr {
    let n = i / INSIDE_ENDPOINTS;
    Ipv4Addr::new(100, 64 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn lan_udp(i: u32) -> Vec<u8> {
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
    fn new(flows: u32) -> Setup {
        let config = Config::from_toml(CONFIG, Path::new("bench.toml")).expect("bench config");
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

    fn process(&mut self, port: Port, frame: &mut [u8]) -> Verdict {
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
    fn reply(&mut self, i: u32) -> (Port, Vec<u8>) {
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

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const SIZES: [u32; 3] = [1, 10_000, 1_000_000];

fn established(c: &mut Criterion) {
    let mut group = c.benchmark_group("established");
    for flows in SIZES {
        let mut setup = Setup::new(flows);
        let template = lan_udp(flows - 1);
        let mut buf = template.clone();
        group.bench_with_input(BenchmarkId::new("lan_to_wan", flows), &flows, |b, _| {
            b.iter(|| {
                buf.copy_from_slice(&template);
                black_box(setup.process(Port::Lan, black_box(&mut buf)))
            })
        });
        // The same, spread over up to 65 536 flows: the table is not all in cache.
        let spread: Vec<Vec<u8>> = (0..flows.min(65_536))
            .map(|i| lan_udp(i * (flows / flows.min(65_536))))
            .collect();
        let mut next = 0;
        group.bench_with_input(
            BenchmarkId::new("lan_to_wan_spread", flows),
            &flows,
            |b, _| {
                b.iter(|| {
                    let template = &spread[next % spread.len()];
                    next += 1;
                    let mut frame = [0u8; 74];
                    let frame = &mut frame[..template.len()];
                    frame.copy_from_slice(template);
                    black_box(setup.process(Port::Lan, black_box(frame)))
                })
            },
        );
        let (port, reply) = setup.reply(flows - 1);
        let mut buf = reply.clone();
        group.bench_with_input(BenchmarkId::new("wan_to_lan", flows), &flows, |b, _| {
            b.iter(|| {
                buf.copy_from_slice(&reply);
                black_box(setup.process(port, black_box(&mut buf)))
            })
        });
    }
    group.finish();
}

fn new_flow(c: &mut Criterion) {
    let mut group = c.benchmark_group("new_flow");
    for flows in SIZES {
        let mut setup = Setup::new(flows);
        let mut serial: u32 = 0;
        group.bench_with_input(BenchmarkId::new("tcp_syn", flows), &flows, |b, _| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let chunk = (iters - done).min(100_000);
                    let frames: Vec<Vec<u8>> = (0..chunk)
                        .map(|_| {
                            serial = serial.wrapping_add(1);
                            let (src, port) = inside(serial);
                            let a = Addressing {
                                src_mac: HOST_MAC,
                                dst_mac: LAN_MAC,
                                src,
                                dst: Ipv4Addr::new(
                                    203,
                                    0,
                                    (serial >> 16) as u8 | 0x80,
                                    serial as u8,
                                ),
                                ttl: 64,
                            };
                            testing::tcp(&a, port, 1024 + (serial >> 8) as u16 % 60000, SYN, b"")
                        })
                        .collect();
                    let mut frames = frames;
                    let start = Instant::now();
                    for frame in &mut frames {
                        black_box(setup.process(Port::Lan, frame));
                    }
                    elapsed += start.elapsed();
                    done += chunk;
                    // Let the SYN-only flows expire (the filled UDP flows stay).
                    setup.now += Duration::from_secs(241);
                    setup.router.expire(setup.now);
                }
                elapsed
            })
        });
    }
    group.finish();
}

/// Memory per flow at 1 M flows, from the resident set size.
fn memory(_: &mut Criterion) {
    let before = resident_bytes();
    let setup = Setup::new(1_000_000);
    let after = resident_bytes();
    let per_flow = (after - before) as f64 / 1e6;
    println!(
        "memory: {per_flow:.1} bytes per flow at 1 M flows (resident set growth, whole router)"
    );
    black_box(setup.router.stats());
}

criterion_group!(benches, memory, established, new_flow);
criterion_main!(benches);

//! Criterion benchmarks of the router core: an established-flow packet, a
//! reply packet and a new flow (rules + NAT + insert), each with 1, 10 k and
//! 1 M flows in the table; and the memory a flow costs at 1 M flows.
//!
//! Every iteration copies a 60-74 byte template frame into the buffer first
//! (the core rewrites it in place); that copy is part of the time measured.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use xwan::router::Port;

mod setup;
use setup::{lan_udp, lan_udp6, new_syn, Setup};

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
        one_frame(
            &mut group,
            "lan_to_wan",
            flows,
            &mut setup,
            Port::Lan,
            &template,
        );
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
        one_frame(&mut group, "wan_to_lan", flows, &mut setup, port, &reply);
    }
    group.finish();
}

/// Benchmark `name` of `group`: the core takes `frame` in on `port`, a fresh
/// copy of it each iteration (the core rewrites it in place).
fn one_frame(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    flows: u32,
    setup: &mut Setup,
    port: Port,
    frame: &[u8],
) {
    let mut buf = frame.to_vec();
    group.bench_with_input(BenchmarkId::new(name, flows), &flows, |b, _| {
        b.iter(|| {
            buf.copy_from_slice(frame);
            black_box(setup.process(port, black_box(&mut buf)))
        })
    });
}

/// An established IPv6 flow's packet each way, beside the IPv4 figures
/// above: the same work through IPv6's own fixed-offset fast path, with a
/// 16-byte address per endpoint.
fn established6(c: &mut Criterion) {
    let mut group = c.benchmark_group("established6");
    let flows = 10_000;
    let mut setup = Setup::new6(flows, 0);
    let template = lan_udp6(flows - 1);
    one_frame(
        &mut group,
        "lan_to_wan",
        flows,
        &mut setup,
        Port::Lan,
        &template,
    );
    let (port, reply) = setup.reply6(flows - 1);
    one_frame(&mut group, "wan_to_lan", flows, &mut setup, port, &reply);
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
                    let mut frames: Vec<Vec<u8>> = (0..chunk)
                        .map(|_| {
                            serial = serial.wrapping_add(1);
                            new_syn(serial)
                        })
                        .collect();
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

criterion_group!(benches, memory, established, established6, new_flow);
criterion_main!(benches);

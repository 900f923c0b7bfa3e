//! Fixed work for an instruction count of the router core, free of the
//! machine's noise: `valgrind --tool=callgrind` on this binary, counting
//! only the measured loop (`measure_established`, `measure_new_flow`: the
//! table's fill and the frames' making are not counted); its total over N
//! is the cost of one iteration.
//!
//!   cargo bench --bench core_count --no-run
//!   valgrind --tool=callgrind --toggle-collect='*measure_*' \
//!       target/release/deps/core_count-* CASE N
//!
//! CASE: `established` (a LAN->WAN packet and its WAN->LAN reply of one
//! flow, 10 k flows in the table), `established6` (the same for IPv6) or
//! `new_flow` (a TCP SYN opening a flow, 10 k flows in the table). Every frame must be forwarded. Without
//! arguments (as `cargo test` runs it), a short run of both cases.

use std::hint::black_box;
use std::process::ExitCode;

use xwan::router::{Port, Verdict};

mod setup;
use setup::{lan_udp, lan_udp6, new_syn, Setup};

const FLOWS: u32 = 10_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [case, n] => match n.parse::<u32>() {
            Ok(n) if run(case, n) => ExitCode::SUCCESS,
            _ => usage(),
        },
        // `cargo test` runs benches with no arguments (or harness flags): a
        // short run of both cases, checking that every frame is forwarded.
        _ if args.iter().all(|a| a.starts_with("--")) => {
            if run("established", SMOKE) && run("established6", SMOKE) && run("new_flow", SMOKE) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => usage(),
    }
}

/// Iterations of each case under `cargo test`.
const SMOKE: u32 = 100;

/// Runs `n` iterations of `case`; false for an unknown case, and panics if
/// a frame is not forwarded (the work counted would not be the fast path).
fn run(case: &str, n: u32) -> bool {
    match case {
        "established" => {
            let mut setup = Setup::new(FLOWS);
            let out = lan_udp(FLOWS - 1);
            let (port, reply) = setup.reply(FLOWS - 1);
            measure_established(&mut setup, &out, port, &reply, n);
        }
        "established6" => {
            let mut setup = Setup::new6(FLOWS, 0);
            let out = lan_udp6(FLOWS - 1);
            let (port, reply) = setup.reply6(FLOWS - 1);
            measure_established(&mut setup, &out, port, &reply, n);
        }
        "new_flow" => {
            let mut setup = Setup::new(FLOWS);
            let mut frames: Vec<Vec<u8>> = (1..=n).map(new_syn).collect();
            measure_new_flow(&mut setup, &mut frames);
        }
        _ => return false,
    }
    true
}

fn forwarded(verdict: Verdict) {
    assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
}

/// `n` times: the LAN -> WAN packet `out` and its reply from `port`.
#[inline(never)]
fn measure_established(setup: &mut Setup, out: &[u8], port: Port, reply: &[u8], n: u32) {
    let mut buf = out.to_vec();
    for _ in 0..n {
        buf.copy_from_slice(out);
        forwarded(black_box(setup.process(Port::Lan, black_box(&mut buf))));
        buf.copy_from_slice(reply);
        forwarded(black_box(setup.process(port, black_box(&mut buf))));
    }
}

/// Each frame (a new flow's SYN) from the LAN.
#[inline(never)]
fn measure_new_flow(setup: &mut Setup, frames: &mut [Vec<u8>]) {
    for frame in frames {
        forwarded(black_box(setup.process(Port::Lan, black_box(frame))));
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: core_count established|established6|new_flow ITERATIONS");
    ExitCode::FAILURE
}

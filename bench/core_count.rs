//! Fixed work for an instruction count of the router core, free of the
//! machine's noise: `valgrind --tool=callgrind` on this binary with N and
//! with 0 iterations; the difference over N is the cost of one iteration.
//!
//!   cargo bench --bench core_count --no-run
//!   valgrind --tool=callgrind target/release/deps/core_count-* CASE N
//!
//! CASE: `established` (a LAN->WAN packet and its WAN->LAN reply of one
//! flow, 10 k flows in the table) or `new_flow` (a TCP SYN opening a flow,
//! 10 k flows in the table).

use std::hint::black_box;
use std::process::ExitCode;

use xwan::router::Port;

mod setup;
use setup::{lan_udp, new_syn, Setup};

const FLOWS: u32 = 10_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (case, n) = match args.as_slice() {
        [case, n] => match n.parse::<u32>() {
            Ok(n) => (case.as_str(), n),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let mut setup = Setup::new(FLOWS);
    match case {
        "established" => {
            let out = lan_udp(FLOWS - 1);
            let (port, reply) = setup.reply(FLOWS - 1);
            let mut buf = out.clone();
            for _ in 0..n {
                buf.copy_from_slice(&out);
                black_box(setup.process(Port::Lan, black_box(&mut buf)));
                buf.copy_from_slice(&reply);
                black_box(setup.process(port, black_box(&mut buf)));
            }
        }
        "new_flow" => {
            let mut frames: Vec<Vec<u8>> = (1..=n).map(new_syn).collect();
            for frame in &mut frames {
                black_box(setup.process(Port::Lan, black_box(frame)));
            }
        }
        _ => return usage(),
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: core_count established|new_flow ITERATIONS");
    ExitCode::FAILURE
}

//! `xwan-bench`: the helpers `scripts/bench` runs inside the testbed's
//! namespaces, and the report it writes at the end.
//!
//! - `echo` / `ping`: a UDP ping-pong that measures round-trip times with an
//!   HDR histogram (p50, p99, p99.9), paced at a fixed rate;
//! - `json-get`: one value out of a JSON document (iperf3's, xwan status'),
//!   so the shell script needs no JSON tool;
//! - `report`: the raw measurements (JSON lines) to `results.md` and SVG plots.

mod markdown;
mod pingpong;
mod plot;
mod report;
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xwan-bench",
    about = "Testbed benchmark helpers for scripts/bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer every UDP datagram with itself, for a bounded time.
    Echo {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Exit after this many seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Send paced UDP pings to an echo server; print the RTT percentiles as JSON.
    Ping {
        /// The echo server.
        #[arg(long)]
        to: SocketAddr,
        /// Pings per second.
        #[arg(long, default_value_t = 5000)]
        rate: u32,
        /// How long to measure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Pings sent first and not counted (flow set-up, neighbour resolution).
        #[arg(long, default_value_t = 200)]
        warmup: u32,
    },
    /// Print the number at a dotted path of a JSON file ("end.sum_received.bits_per_second",
    /// "uplinks.0.gateway_mac"); exit 1 if absent.
    JsonGet { file: PathBuf, path: String },
    /// Turn raw measurements (JSON lines) into results.md and SVG plots.
    Report {
        /// The raw measurements written by scripts/bench.
        #[arg(long)]
        raw: PathBuf,
        /// Output folder (results.md, *.svg).
        #[arg(long)]
        out: PathBuf,
        /// One line describing the run (date, options), put at the top of results.md.
        #[arg(long, default_value = "")]
        title: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Echo { listen, seconds } => {
            pingpong::echo(listen, Duration::from_secs(seconds)).map_err(|e| e.to_string())
        }
        Command::Ping {
            to,
            rate,
            seconds,
            warmup,
        } => pingpong::ping(to, rate, seconds, warmup)
            .map(|summary| println!("{}", summary.to_json()))
            .map_err(|e| e.to_string()),
        Command::JsonGet { file, path } => json_get(&file, &path),
        Command::Report { raw, out, title } => report::load(&raw)
            .and_then(|families| {
                markdown::write(&families, &out, &title)?;
                plot::all(&families, &out)
            })
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xwan-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn json_get(file: &std::path::Path, path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
    let mut at = &doc;
    for key in path.split('.') {
        at = match key.parse::<usize>() {
            Ok(i) => at.get(i),
            Err(_) => at.get(key),
        }
        .ok_or_else(|| format!("{}: no {path} (stops at {key})", file.display()))?;
    }
    match at {
        serde_json::Value::String(s) => println!("{s}"),
        other => println!("{other}"),
    }
    Ok(())
}

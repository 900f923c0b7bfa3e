//! The `xwan` command: argument parsing and one function per subcommand.
//!
//! Exit codes: 0 success; 1 a configuration that does not load (the message
//! names file, line, column and key), a router that cannot start, or a
//! control request that failed; 2 a usage error.

mod args;
mod show;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

pub use args::*;

use crate::config::Config;

/// Entry point of the `xwan` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => with_config(&args.config, |config| run(&args, config)),
        Command::Check(args) => check(&args),
        Command::Status(args) => show::status(&args),
        Command::Flows(args) => show::flows(&args),
        Command::KernelScript(args) => {
            with_config(&args.config, |config| kernel_script(&args, config))
        }
        Command::Reload(args) => show::reload(&args),
        Command::Uplink(args) => show::uplink(&args),
    }
}

/// Load the configuration the way every command does: on error print it
/// (one line, `file:line:col: key: what`) and exit 1.
fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(1)
    })
}

fn with_config(path: &Path, command: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match load(path) {
        Ok(config) => command(config),
        Err(code) => code,
    }
}

/// `xwan check`: the summary on stdout and exit 0, or the error on stderr and exit 1.
fn check(args: &CheckArgs) -> ExitCode {
    match load(&args.config) {
        Ok(mut config) => {
            println!("{}: OK", args.config.display());
            // "auto" shows what the kernel has now; unresolved if it cannot say.
            if let Err(e) = crate::io::resolve_auto(&mut config) {
                eprintln!("cannot read the kernel's addresses and routes: {e}");
            }
            print!("{config}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(args: &RunArgs, config: Config) -> ExitCode {
    let options = crate::io::RunOptions {
        io: args.io.map(|io| match io {
            IoBackend::Xdp => crate::io::IoMode::Xdp,
            IoBackend::Packet => crate::io::IoMode::Packet,
        }),
        queues: args.queues.map(|q| q.get()),
        zero_copy: match args.zero_copy {
            ZeroCopy::Auto => crate::io::ZeroCopy::Auto,
            ZeroCopy::On => crate::io::ZeroCopy::On,
            ZeroCopy::Off => crate::io::ZeroCopy::Off,
        },
        cpus: args.cpus.clone().map(|c| c.0).unwrap_or_default(),
        verbose: args.verbose,
    };
    match crate::io::run(config, &args.config, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xwan run: {e}");
            ExitCode::from(1)
        }
    }
}

fn kernel_script(_args: &KernelScriptArgs, mut config: Config) -> ExitCode {
    // The recipe is static: "auto" takes what the kernel has now.
    if let Err(e) = crate::io::resolve_auto(&mut config) {
        eprintln!("cannot read the kernel's addresses and routes: {e}");
    }
    if let Some(wan) = config.wans.iter().find(|w| !w.resolved()) {
        eprintln!(
            "uplink {}: address {}, gateway {}: the kernel recipe needs both",
            wan.name,
            wan.address_text(),
            wan.gateway_text()
        );
        return ExitCode::FAILURE;
    }
    print!("{}", crate::kernel_script::render(&config));
    ExitCode::SUCCESS
}

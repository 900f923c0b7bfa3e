//! The `xwan` command: argument parsing and one function per subcommand.
//!
//! Exit codes: 0 success; 1 a configuration that does not load (the message
//! names file, line, column and key), a router that cannot start, or a
//! control request that failed; 2 a usage error.

mod args;
mod check;
mod logging;
mod show;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

pub use args::*;

use crate::config::Config;
use crate::io::system::SystemError;
use crate::io::RunError;

/// Entry point of the `xwan` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => with_config(&args.config, |config| run(&args, config)),
        Command::Check(args) if args.kernel => check::kernel(&args),
        Command::Check(args) => check::check(&args),
        Command::Status(args) => show::status(&args),
        Command::Flows(args) => show::flows(&args),
        Command::KernelScript(args) => {
            with_config(&args.config, |config| kernel_script(&args, config))
        }
        Command::Reload(args) => show::reload(&args),
        Command::Uplink(args) => show::uplink(&args),
        Command::Prefix6(args) => show::prefix6(&args),
        Command::Events(args) => show::events(&args),
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

/// The backend asked for, as the I/O layer takes it.
fn io_mode(io: IoBackend) -> crate::io::IoMode {
    match io {
        IoBackend::Auto => crate::io::IoMode::Auto,
        IoBackend::Xdp => crate::io::IoMode::Xdp,
        IoBackend::Packet => crate::io::IoMode::Packet,
    }
}

fn run(args: &RunArgs, config: Config) -> ExitCode {
    let options = crate::io::RunOptions {
        io: io_mode(args.io),
        queues: args.queues.map(|q| q.get()),
        zero_copy: match args.zero_copy {
            ZeroCopy::Auto => crate::io::ZeroCopy::Auto,
            ZeroCopy::On => crate::io::ZeroCopy::On,
            ZeroCopy::Off => crate::io::ZeroCopy::Off,
        },
        cpus: args.cpus.clone().map(|c| c.0).unwrap_or_default(),
    };
    logging::init(args.verbose);
    // Outside systemd's RuntimeDirectory the socket's directory may be missing.
    if let Some(dir) = config.control.socket.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("xwan run: creating {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    }
    match crate::io::run(config, &args.config, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xwan run: {e}");
            // A file written for another machine (the packaged example, say).
            if let RunError::System(
                SystemError::InterfaceNotFound(_) | SystemError::AddressNotConfigured { .. },
            ) = e
            {
                eprintln!(
                    "xwan run: edit {} for this machine (its interfaces, and each uplink's address \
                     on its interface), then `xwan check`",
                    args.config.display()
                );
            }
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
    // IPv6 "auto" gateways and addresses are read by the script itself when
    // it runs; a delegated prefix it cannot find.
    for wan in &config.wans {
        if wan.ipv6.as_ref().is_some_and(|v6| v6.prefix_auto) {
            eprintln!(
                "note: uplink {}: prefix6 = \"auto\" is not followed by the kernel recipe, which \
                 translates nothing on it: write the delegated prefix for the recipe",
                wan.name
            );
        }
    }
    print!("{}", crate::kernel_script::render(&config));
    ExitCode::SUCCESS
}

//! The `xwan` command: argument parsing and one function per subcommand.
//!
//! Exit codes: 0 success, 1 a configuration that does not load (the message
//! names file, line, column and key), 2 a usage error or a command this
//! build cannot carry out.

mod args;
mod show;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

pub use args::*;

use crate::config::Config;

/// The version `xwan --version` and `xwan status` report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
        Ok(config) => {
            println!("{}: OK", args.config.display());
            print!("{config}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(_args: &RunArgs, _config: Config) -> ExitCode {
    not_available("run")
}

fn kernel_script(_args: &KernelScriptArgs, config: Config) -> ExitCode {
    print!("{}", crate::kernel_script::render(&config));
    ExitCode::SUCCESS
}

fn not_available(command: &str) -> ExitCode {
    eprintln!("xwan {command}: not available in this build yet");
    ExitCode::from(2)
}

//! The command line, as clap (derive) definitions.

use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_CONTROL_SOCKET;

/// The configuration file of every command that takes `-c`.
pub const DEFAULT_CONFIG: &str = "/etc/xwan/xwan.toml";

/// The environment variable that overrides [`DEFAULT_CONFIG`] (`-c` overrides both).
pub const CONFIG_ENV: &str = "XWAN_CONFIG";

/// What `xwan flows` shows without `--limit`.
pub const DEFAULT_FLOWS_LIMIT: usize = 100;

/// xwan: a dual-WAN router whose forwarding path runs in userspace.
#[derive(Debug, Parser)]
#[command(name = "xwan", version = crate::VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router in the foreground.
    Run(RunArgs),
    /// Check a configuration file and print its summary.
    Check(CheckArgs),
    /// Show uplink health, counters and flow totals of a running router.
    Status(StatusArgs),
    /// List the flows of a running router.
    Flows(FlowsArgs),
    /// Print the same policy as a Linux kernel (iptables) script.
    KernelScript(KernelScriptArgs),
    /// Make a running router reload its configuration file.
    Reload(ReloadArgs),
    /// Force an uplink down or up, or give it back to health checks.
    Uplink(UplinkArgs),
    /// Tell a running router the IPv6 prefix an uplink's ISP delegates now
    /// (for prefix6 = "auto"; a DHCPv6-PD client's hook runs it).
    Prefix6(Prefix6Args),
    /// Print every change of an uplink's state as a JSON line, as it happens.
    Events(EventsArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(short, long, value_name = "FILE", env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// I/O backend: auto takes AF_XDP where every interface has zero-copy
    /// AF_XDP, AF_PACKET with the in-kernel fast path elsewhere.
    #[arg(long, value_enum, value_name = "BACKEND", default_value_t = IoBackend::Auto)]
    pub io: IoBackend,
    /// Queues (and worker threads) per interface (default: every queue).
    #[arg(long, value_name = "N")]
    pub queues: Option<NonZeroU32>,
    /// AF_XDP zero-copy mode.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ZeroCopy::Auto)]
    pub zero_copy: ZeroCopy,
    /// CPUs to pin worker threads to, e.g. "0-3,6".
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How frames reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoBackend {
    /// The faster of the two that this machine can run.
    Auto,
    /// XDP program + AF_XDP sockets.
    Xdp,
    /// AF_PACKET raw sockets.
    Packet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ZeroCopy {
    /// Zero-copy where the driver supports it, copy mode otherwise.
    Auto,
    /// Zero-copy or fail.
    On,
    /// Always copy mode.
    Off,
}

/// CPU numbers from a list like "0-3,6", in the order given, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let number = |n: &str| {
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("{n:?} is not a CPU number (expected a list like \"0-3,6\")"))
        };
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (number(lo)?, number(hi)?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("CPU range {lo}-{hi} is reversed"));
        }
        for cpu in lo..=hi {
            if !cpus.contains(&cpu) {
                cpus.push(cpu);
            }
        }
    }
    Ok(CpuList(cpus))
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file.
    #[arg(short, long, value_name = "FILE", env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Print JSON instead of the summary (an error too, on stdout, still exit 1).
    #[arg(long)]
    pub json: bool,
    /// Probe this kernel's optional features instead (for the interfaces
    /// the file names) and say how `xwan run` would run here; starts nothing.
    #[arg(long)]
    pub kernel: bool,
    /// With --kernel: the backend `xwan run --io` would be given.
    #[arg(long, value_enum, value_name = "BACKEND", default_value_t = IoBackend::Auto, requires = "kernel")]
    pub io: IoBackend,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Control socket of the running router.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// Only flows on this uplink.
    #[arg(long, value_name = "NAME")]
    pub uplink: Option<String>,
    /// Only flows to or from this address (inside or outside).
    #[arg(long, value_name = "ADDR")]
    pub host: Option<Ipv4Addr>,
    /// Show at most this many flows (0: all of them).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FLOWS_LIMIT)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Control socket of the running router.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct KernelScriptArgs {
    /// Configuration file.
    #[arg(short, long, value_name = "FILE", env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Control socket of the running router.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Control socket of the running router.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
    /// Exit after this many events (default: run until xwan stops).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct UplinkArgs {
    /// Uplink name, as in the configuration.
    pub name: String,
    /// What to do with it.
    #[arg(value_enum)]
    pub state: UplinkState,
    /// Control socket of the running router.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct Prefix6Args {
    /// Uplink name, as in the configuration.
    pub name: String,
    /// The delegated prefix, like 2001:db8:100::/56, or "none" when the
    /// uplink has none (any more).
    pub prefix: String,
    /// Control socket of the running router.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UplinkState {
    /// Take it out of service whatever the health checks say.
    Down,
    /// Keep it in service whatever the health checks say.
    Up,
    /// Let the health checks decide again.
    Auto,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_list_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3,6"), Ok(CpuList(vec![0, 1, 2, 3, 6])));
        assert_eq!(parse_cpu_list("5"), Ok(CpuList(vec![5])));
        assert_eq!(parse_cpu_list("1,1,0-1"), Ok(CpuList(vec![1, 0])));
    }

    #[test]
    fn cpu_list_errors() {
        assert!(parse_cpu_list("3-1").unwrap_err().contains("reversed"));
        assert!(parse_cpu_list("a")
            .unwrap_err()
            .contains("not a CPU number"));
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_arguments_parse() {
        let cli = Cli::try_parse_from([
            "xwan",
            "run",
            "-c",
            "x.toml",
            "--io",
            "packet",
            "--queues",
            "2",
            "--zero-copy",
            "off",
            "--cpus",
            "0-1",
            "-vv",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("expected run, got {:?}", cli.command);
        };
        assert_eq!(run.config, PathBuf::from("x.toml"));
        assert_eq!(run.io, IoBackend::Packet);
        assert_eq!(run.queues.map(NonZeroU32::get), Some(2));
        assert_eq!(run.zero_copy, ZeroCopy::Off);
        assert_eq!(run.cpus, Some(CpuList(vec![0, 1])));
        assert_eq!(run.verbose, 2);
    }

    #[test]
    fn uplink_and_flows_arguments_parse() {
        let cli =
            Cli::try_parse_from(["xwan", "uplink", "isp2", "down", "--socket", "/tmp/s"]).unwrap();
        let Command::Uplink(up) = cli.command else {
            panic!("expected uplink, got {:?}", cli.command);
        };
        assert_eq!(up.name, "isp2");
        assert_eq!(up.state, UplinkState::Down);
        assert_eq!(up.socket, PathBuf::from("/tmp/s"));

        let cli =
            Cli::try_parse_from(["xwan", "flows", "--host", "192.168.50.10", "--json"]).unwrap();
        let Command::Flows(flows) = cli.command else {
            panic!("expected flows, got {:?}", cli.command);
        };
        assert_eq!(flows.host, Some(Ipv4Addr::new(192, 168, 50, 10)));
        assert!(flows.json);
        assert_eq!(flows.limit, DEFAULT_FLOWS_LIMIT);
        assert_eq!(flows.socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        let cli = Cli::try_parse_from(["xwan", "flows", "--limit", "0"]).unwrap();
        let Command::Flows(flows) = cli.command else {
            panic!("expected flows, got {:?}", cli.command);
        };
        assert_eq!(flows.limit, 0);
        assert!(Cli::try_parse_from(["xwan", "flows", "--host", "nope"]).is_err());
        assert!(Cli::try_parse_from(["xwan", "uplink", "isp1", "sideways"]).is_err());
        assert!(Cli::try_parse_from(["xwan", "run", "--queues", "0", "-c", "x"]).is_err());
    }

    #[test]
    fn config_defaults_to_etc_xwan_and_xwan_config_overrides_it() {
        // The only test that touches XWAN_CONFIG: it must not be set for the default.
        let config_of = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => a.config,
            Command::Check(a) => a.config,
            Command::KernelScript(a) => a.config,
            other => panic!("no config in {other:?}"),
        };
        if std::env::var_os(CONFIG_ENV).is_none() {
            for command in ["run", "check", "kernel-script"] {
                assert_eq!(config_of(&["xwan", command]), PathBuf::from(DEFAULT_CONFIG));
            }
        }
        assert_eq!(
            config_of(&["xwan", "check", "-c", "x.toml"]),
            PathBuf::from("x.toml")
        );
    }
}

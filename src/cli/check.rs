//! `xwan check`: whether a file is a valid configuration, and whether it fits
//! this machine.
//!
//! A valid file prints `FILE: OK` and the summary (exit 0); an invalid one its
//! error, `file:line:col: key: what` (exit 1). A valid file that names an
//! interface this machine lacks, or an uplink address not on its interface,
//! is still valid (it may be written for another box), so those are notes on
//! stderr: `xwan run` refuses to start until they are fixed. The example the
//! Debian package installs as /etc/xwan/xwan.toml gets these notes until it is
//! edited for the box.
//!
//! `--json` prints one object on stdout either way:
//! `{"ok":true,"file":..,"summary":..,"lan":{..},"uplinks":[..],"nat_ports":..,"control_socket":..,"notes":[..]}`
//! or `{"ok":false,"file":..,"error":..,"line":..,"column":..}`.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::CheckArgs;
use crate::config::{Config, ConfigError, PortRange};
use crate::io::system::{self, SystemError};

#[derive(Debug, Serialize)]
struct Valid<'a> {
    ok: bool,
    file: &'a Path,
    lan: Lan<'a>,
    uplinks: Vec<Uplink<'a>>,
    rules: usize,
    forwards: usize,
    /// `lo-hi`; with `nat_ports_set` false, `xwan run` narrows it to avoid
    /// the kernel's ephemeral ports.
    nat_ports: String,
    nat_ports_set: bool,
    /// What `xwan run` would use on this machine now, when it differs.
    nat_ports_here: Option<String>,
    control_socket: &'a Path,
    /// What keeps this file from running on this machine.
    notes: Vec<String>,
    /// The summary as `xwan check` prints it.
    summary: String,
}

#[derive(Debug, Serialize)]
struct Lan<'a> {
    interface: &'a str,
    networks: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Uplink<'a> {
    name: &'a str,
    interface: &'a str,
    address: std::net::Ipv4Addr,
    gateway: std::net::Ipv4Addr,
    weight: u32,
    priority: u32,
}

#[derive(Debug, Serialize)]
struct Invalid<'a> {
    ok: bool,
    file: &'a Path,
    error: String,
    line: Option<usize>,
    column: Option<usize>,
}

/// `xwan check --kernel`: the feature table and the plan, for the
/// interfaces of the file (a file that does not load is reported, and the
/// probes run for no interface).
pub fn kernel(args: &CheckArgs) -> ExitCode {
    let (config, trouble) = match Config::load(&args.config) {
        Ok(config) => (Some(config), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let options = crate::io::RunOptions {
        io: super::io_mode(args.io),
        queues: None,
        zero_copy: crate::io::ZeroCopy::Auto,
        cpus: Vec::new(),
    };
    let report = crate::io::kernel_report(config.as_ref(), &options);
    if args.json {
        super::show::print_json(&report);
    } else {
        print!("{}", kernel_text(&report));
        if let Some(e) = trouble {
            eprintln!("note: {e}: the per-interface probes asked no interface");
        }
    }
    ExitCode::SUCCESS
}

fn kernel_text(report: &crate::io::KernelReport) -> String {
    let mut out = format!("{}: optional features\n", report.kernel);
    for line in &report.features {
        out.push_str(&format!("  {line}\n"));
    }
    match &report.io {
        Ok(io) => out.push_str(&format!(
            "xwan run would use: io {io} ({}); fast path {}\n",
            report.why, report.fast_path
        )),
        Err(e) => out.push_str(&format!("xwan run would refuse to start: {e}\n")),
    }
    out
}

pub fn check(args: &CheckArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(mut config) => {
            let mut notes = machine_notes(&config, &args.config);
            // "auto" shows what the kernel has now; unresolved if it cannot say.
            if let Err(e) = crate::io::resolve_auto(&mut config) {
                notes.push(format!(
                    "cannot read the kernel's addresses and routes: {e}"
                ));
            }
            let here = nat_ports_here(&config);
            if args.json {
                super::show::print_json(&valid(&config, &args.config, notes, here));
            } else {
                println!("{}: OK", args.config.display());
                print!("{config}");
                if let Some((ports, kernel)) = here {
                    println!(
                        "NAT here  ports {ports}: the default less this kernel's ephemeral ports \
                         (net.ipv4.ip_local_port_range {} {})",
                        kernel.lo, kernel.hi
                    );
                }
                for note in &notes {
                    eprintln!("note: {note}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if args.json {
                super::show::print_json(&invalid(&error, &args.config));
            } else {
                eprintln!("{error}");
            }
            ExitCode::from(1)
        }
    }
}

fn valid<'a>(
    config: &'a Config,
    file: &'a Path,
    notes: Vec<String>,
    nat_ports_here: Option<(PortRange, PortRange)>,
) -> Valid<'a> {
    Valid {
        ok: true,
        file,
        lan: Lan {
            interface: &config.lan.interface,
            networks: config
                .lan
                .networks
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        uplinks: config
            .wans
            .iter()
            .map(|w| Uplink {
                name: &w.name,
                interface: &w.interface,
                address: w.address,
                gateway: w.gateway,
                weight: w.weight,
                priority: w.priority,
            })
            .collect(),
        rules: config.rules.len(),
        forwards: config.forwards.len(),
        nat_ports: format!("{}-{}", config.nat.ports.lo, config.nat.ports.hi),
        nat_ports_set: config.nat.ports_set,
        nat_ports_here: nat_ports_here.map(|(ports, _)| ports.to_string()),
        control_socket: &config.control.socket,
        notes,
        summary: config.to_string(),
    }
}

fn invalid<'a>(error: &ConfigError, file: &'a Path) -> Invalid<'a> {
    Invalid {
        ok: false,
        file,
        error: error.to_string(),
        line: error.line(),
        column: error.column(),
    }
}

/// Without `[nat] ports`: the range `xwan run` would take on this machine
/// now, if the kernel's ephemeral ports narrow the default.
fn nat_ports_here(config: &Config) -> Option<(PortRange, PortRange)> {
    let kernel = system::local_port_range().ok()?;
    let mut nat = config.nat.clone();
    nat.avoid_kernel_ports(kernel)?;
    Some((nat.ports, kernel))
}

/// The interfaces the file names that this machine lacks, and the uplink
/// addresses missing from their interfaces, each with what to do.
pub fn machine_notes(config: &Config, file: &Path) -> Vec<String> {
    let edit = format!(
        "edit {} for this machine; xwan run refuses to start until then",
        file.display()
    );
    let mut notes = Vec::new();
    let interfaces = std::iter::once(("lan", &config.lan.interface))
        .chain(config.wans.iter().map(|w| (w.name.as_str(), &w.interface)));
    let mut missing = Vec::new();
    for (role, interface) in interfaces {
        if let Err(SystemError::InterfaceNotFound(_)) = system::link(interface) {
            notes.push(format!(
                "interface {interface} ({role}) does not exist on this machine: {edit}"
            ));
            missing.push(interface.as_str());
        }
    }
    if let Ok(addresses) = system::ipv4_addresses() {
        for wan in config.wans.iter().filter(|w| !w.address_auto) {
            if missing.contains(&wan.interface.as_str()) {
                continue;
            }
            if let Err(err) = system::check_address(&addresses, &wan.interface, wan.address) {
                notes.push(format!("uplink {}: {err}: {edit}", wan.name));
            }
        }
    }
    notes
}

//! Talking to a running router: `xwan status`, `flows`, `uplink`, `reload`, `events`,
//! printed as tables for people or JSON for scripts.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{EventsArgs, FlowsArgs, Prefix6Args, ReloadArgs, StatusArgs, UplinkArgs, UplinkState};
use crate::control::protocol::{
    AdminState, FlowReport, Reply, Request, StatusReport, UplinkReport,
};
use crate::control::{self};

fn ask(socket: &std::path::Path, request: &Request) -> Result<Reply, ExitCode> {
    match control::request(socket, request) {
        Ok(Reply::Error { error, .. }) => {
            eprintln!("xwan: {error}");
            Err(ExitCode::from(1))
        }
        Ok(reply) => Ok(reply),
        Err(e) => {
            eprintln!("xwan: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn unexpected(reply: &Reply) -> ExitCode {
    eprintln!("xwan: unexpected reply: {reply:?}");
    ExitCode::from(1)
}

pub(super) fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("xwan: {e}"),
    }
}

pub fn status(args: &StatusArgs) -> ExitCode {
    let reply = match ask(&args.socket, &Request::Status) {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    let Reply::Status { status, .. } = reply else {
        return unexpected(&reply);
    };
    if args.json {
        print_json(&status);
    } else {
        print!("{}", status_table(&status));
    }
    ExitCode::SUCCESS
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn admin(state: AdminState) -> &'static str {
    match state {
        AdminState::Auto => "auto",
        AdminState::Up => "forced up",
        AdminState::Down => "forced down",
    }
}

/// The status as a table for people.
pub fn status_table(s: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "xwan {}  io {}  up {} s  config {} (loaded {} s ago)",
        s.version, s.io, s.uptime_s, s.config_file, s.config_age_s
    );
    let _ =
        writeln!(
        out,
        "\n{:<8} {:<8} {:<22} {:<17} {:<16} {:<11} {:>7} {:>8} {:>5} {:>7} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "UPLINK", "IFACE", "ADDRESS", "GATEWAY MAC", "STATE", "ADMIN", "SINCE", "RTT", "LOSS", "FLOWS",
        "PKTS OUT", "BYTES OUT", "PKTS IN", "BYTES IN", "NAT PORTS"
    );
    for u in &s.uplinks {
        let _ = writeln!(
            out,
            "{:<8} {:<8} {:<22} {:<17} {:<16} {:<11} {:>6}s {:>8} {:>4.0}% {:>7} {:>10} {:>10} {:>10} {:>10} {:>9}",
            u.name,
            u.interface,
            address(u),
            u.gateway_mac.as_deref().unwrap_or("unresolved"),
            up_or_down(u.up, u.down_cause),
            admin(u.admin),
            u.since_s,
            u.probe_rtt_ms
                .map_or("-".to_string(), |ms| format!("{ms:.2}ms")),
            u.probe_loss * 100.0,
            u.flows,
            u.packets_out,
            human_bytes(u.bytes_out),
            u.packets_in,
            human_bytes(u.bytes_in),
            u.nat_ports_in_use.tcp + u.nat_ports_in_use.udp + u.nat_ports_in_use.icmp,
        );
        if let Some(v6) = &u.ipv6 {
            let _ = writeln!(
                out,
                "{:<8} ipv6 {}  {}  nat6 {}  gateway {}  flows {}  nat ports {}",
                "",
                up_or_down(v6.up, v6.down_cause),
                match (&v6.prefix, v6.address) {
                    (Some(prefix), Some(address)) => format!("{address} prefix {prefix}"),
                    (Some(prefix), None) => format!("prefix {prefix}"),
                    (None, Some(address)) => address.to_string(),
                    (None, None) => "unresolved".to_string(),
                },
                v6.nat6,
                v6.gateway_mac.as_deref().unwrap_or("unresolved"),
                v6.flows,
                v6.nat_ports_in_use.tcp + v6.nat_ports_in_use.udp + v6.nat_ports_in_use.icmp,
            );
        }
    }
    let t = &s.flow_table;
    let _ = writeln!(
        out,
        "\nflows {} of {}  inserted {}  expired {}  refused {}  evicted {}  sticky clients {}  forwarded {}",
        t.flows,
        t.max_flows,
        t.inserts,
        t.expiries,
        t.refusals,
        t.evictions,
        s.sticky_clients,
        s.forwarded
    );
    let t6 = &s.flow_table6;
    if s.uplinks.iter().any(|u| u.ipv6.is_some()) {
        let _ = writeln!(
            out,
            "ipv6 flows {} of {}  inserted {}  expired {}  refused {}",
            t6.flows, t6.max_flows, t6.inserts, t6.expiries, t6.refusals
        );
    }
    let nonzero = |m: &std::collections::BTreeMap<String, u64>| {
        let parts: Vec<String> = m
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    };
    let _ = writeln!(out, "dropped: {}", nonzero(&s.drops));
    let _ = writeln!(out, "to kernel: {}", nonzero(&s.to_kernel));
    let o = &s.offload;
    let _ = write!(out, "offload: {}", o.state);
    if !o.hooks.is_empty() {
        let hooks: Vec<String> = o.hooks.iter().map(|(i, h)| format!("{i} {h}")).collect();
        let _ = write!(
            out,
            " ({}), {} of {} entries ({} IPv6), {} packets ({} bytes) in the kernel ({} by xdp), {} refused (map full), {} map errors, {} lost (entry gone before TC)",
            hooks.join(", "),
            o.entries,
            o.capacity,
            o.entries6,
            o.packets,
            o.bytes,
            o.xdp_packets,
            o.refused_full,
            o.map_errors,
            o.lost
        );
    }
    let _ = writeln!(out);
    if !s.features.is_empty() {
        let _ = writeln!(out, "features:");
        for line in &s.features {
            let _ = writeln!(out, "  {line}");
        }
    }
    for w in &s.workers {
        let _ = writeln!(
            out,
            "worker {}: rx {} tx {} batches {} idle {:.0}% gso passthrough {} ({} bytes) punted to the kernel {} (failed {})",
            w.queue,
            w.rx_packets,
            w.tx_packets,
            w.batches,
            w.idle_ratio * 100.0,
            w.gso_passthrough,
            w.gso_passthrough_bytes,
            w.punted,
            w.punt_failed
        );
    }
    out
}

pub fn flows(args: &FlowsArgs) -> ExitCode {
    let request = Request::Flows {
        uplink: args.uplink.clone(),
        host: args.host,
        limit: (args.limit > 0).then_some(args.limit),
    };
    let reply = match ask(&args.socket, &request) {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    let Reply::Flows { flows, total, .. } = reply else {
        return unexpected(&reply);
    };
    if args.json {
        print_json(&flows);
    } else {
        print!("{}", flows_table(&flows, total));
    }
    ExitCode::SUCCESS
}

/// Flows as a table, like `conntrack -L`; `total` is how many matched, the
/// last line says how many of them are not shown. A state marked `(k)`: the
/// flow is on the in-kernel fast path.
pub fn flows_table(flows: &[FlowReport], total: usize) -> String {
    let mut out = format!(
        "{:<5} {:<5} {:<21} {:<21} {:<21} {:<8} {:<12} {:>6} {:>6} {:>8} {:>10} {:>8} {:>10}\n",
        "PROTO",
        "KIND",
        "INSIDE",
        "OUTSIDE",
        "REMOTE",
        "UPLINK",
        "STATE",
        "AGE",
        "IDLE",
        "PKTS OUT",
        "BYTES OUT",
        "PKTS IN",
        "BYTES IN"
    );
    for f in flows {
        let _ = writeln!(
            out,
            "{:<5} {:<5} {:<21} {:<21} {:<21} {:<8} {:<12} {:>5}s {:>5}s {:>8} {:>10} {:>8} {:>10}",
            f.protocol,
            f.kind,
            f.inside,
            f.outside,
            f.remote,
            f.uplink,
            if f.offloaded {
                format!("{} (k)", f.state)
            } else {
                f.state.clone()
            },
            f.age_s,
            f.idle_s,
            f.packets_out,
            human_bytes(f.bytes_out),
            f.packets_in,
            human_bytes(f.bytes_in)
        );
    }
    if flows.iter().any(|f| f.offloaded) {
        out.push_str("(k): forwarded in the kernel (offload)\n");
    }
    let hidden = total.saturating_sub(flows.len());
    if hidden > 0 {
        let _ = writeln!(
            out,
            "{} flows shown, {hidden} more not shown (--limit N shows N, --limit 0 all)",
            flows.len()
        );
    } else {
        let _ = writeln!(out, "{} flows", flows.len());
    }
    out
}

fn done(reply: Result<Reply, ExitCode>) -> ExitCode {
    match reply {
        Ok(Reply::Done { message, .. }) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

pub fn uplink(args: &UplinkArgs) -> ExitCode {
    let state = match args.state {
        UplinkState::Up => AdminState::Up,
        UplinkState::Down => AdminState::Down,
        UplinkState::Auto => AdminState::Auto,
    };
    done(ask(
        &args.socket,
        &Request::Uplink {
            name: args.name.clone(),
            state,
        },
    ))
}

pub fn prefix6(args: &Prefix6Args) -> ExitCode {
    let prefix = (args.prefix != "none").then(|| args.prefix.clone());
    done(ask(
        &args.socket,
        &Request::Prefix6 {
            name: args.name.clone(),
            prefix,
        },
    ))
}

/// Prints each state change as one JSON line, flushed at once.
pub fn events(args: &EventsArgs) -> ExitCode {
    use std::io::Write as _;
    let mut left = args.count;
    let streamed = control::subscribe(&args.socket, |event| {
        let mut out = std::io::stdout().lock();
        let printed = serde_json::to_string(&event)
            .map_err(std::io::Error::other)
            .and_then(|line| writeln!(out, "{line}").and_then(|()| out.flush()));
        if let Some(n) = left.as_mut() {
            *n = n.saturating_sub(1);
        }
        printed.is_ok() && left != Some(0)
    });
    match streamed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xwan: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn reload(args: &ReloadArgs) -> ExitCode {
    done(ask(&args.socket, &Request::Reload))
}

/// An uplink's address in the status table: `198.18.1.2`, or for
/// `address = "auto"`, `auto 198.18.1.2` or `auto (unresolved)`.
fn address(u: &UplinkReport) -> String {
    match (u.address_auto, u.address.is_unspecified()) {
        (false, _) => u.address.to_string(),
        (true, true) => "auto (unresolved)".to_string(),
        (true, false) => format!("auto {}", u.address),
    }
}

/// "up", or "down" with the cause when there is one: `down (probes)`.
fn up_or_down(up: bool, cause: Option<crate::health::Cause>) -> String {
    match (up, cause) {
        (true, _) => "up".to_string(),
        (false, Some(cause)) => format!("down ({})", cause.as_str()),
        (false, None) => "down".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(port: u16) -> FlowReport {
        FlowReport {
            protocol: "udp".into(),
            kind: "snat".into(),
            inside: format!("192.168.50.10:{port}"),
            outside: format!("198.18.1.2:{port}"),
            remote: "203.0.113.10:53".into(),
            uplink: "isp1".into(),
            state: "-".into(),
            age_s: 1,
            idle_s: 0,
            packets_out: 1,
            bytes_out: 60,
            packets_in: 1,
            bytes_in: 90,
            offloaded: false,
        }
    }

    #[test]
    fn flows_on_the_fast_path_are_marked() {
        let fast = FlowReport {
            state: "established".into(),
            offloaded: true,
            ..flow(1000)
        };
        let table = flows_table(&[fast, flow(1001)], 2);
        assert!(table.contains(" established (k) "), "{table}");
        assert_eq!(table.matches("(k)").count(), 2, "{table}");
        assert!(table.ends_with("(k): forwarded in the kernel (offload)\n2 flows\n"));
        assert!(!flows_table(&[flow(1001)], 1).contains("(k)"));
    }

    #[test]
    fn flows_table_says_how_many_more_there_are() {
        let shown = [flow(1000), flow(1001)];
        let table = flows_table(&shown, 250);
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table
            .ends_with("2 flows shown, 248 more not shown (--limit N shows N, --limit 0 all)\n"));
        assert!(flows_table(&shown, 2).ends_with("\n2 flows\n"));
        // An older router that does not report the total.
        assert!(flows_table(&shown, 0).ends_with("\n2 flows\n"));
    }
}

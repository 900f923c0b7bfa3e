//! `results.md`: the tables of figures per router with their ratios, the
//! targets met or missed (`targets.rs`), and how each figure is measured.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::{Data, Families, ReportError, Stat, LOADS, OFFLOAD_ON};
use crate::targets;

/// Writes `results.md` into `out`, creating it.
pub fn write(families: &Families, out: &Path, title: &str) -> Result<(), ReportError> {
    std::fs::create_dir_all(out).map_err(|source| ReportError::Io {
        path: out.display().to_string(),
        source,
    })?;
    let md = markdown(families, title);
    let path = out.join("results.md");
    std::fs::write(&path, md).map_err(|source| ReportError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// How a figure is shown.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// Packets per second, shown in kpps.
    Kpps,
    /// Per second, shown in thousands.
    KPerS,
    /// Bits per second, shown in Gbit/s.
    Gbit,
    /// Nanoseconds, shown in microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
    /// A share, shown in percent.
    Percent,
    /// A count, shown in thousands.
    Thousands,
    /// A plain number.
    Plain,
    /// A count, shown whole.
    Count,
    /// CPU time over wall time: how many CPUs were busy.
    Cpus,
}

impl Unit {
    fn scale(self, v: f64) -> f64 {
        match self {
            Unit::Kpps | Unit::KPerS | Unit::Micros | Unit::Thousands => v / 1e3,
            Unit::Gbit => v / 1e9,
            Unit::Percent => v * 100.0,
            Unit::Nanos | Unit::Plain | Unit::Count | Unit::Cpus => v,
        }
    }

    fn digits(self) -> usize {
        match self {
            Unit::Gbit | Unit::Cpus => 2,
            Unit::Nanos | Unit::Thousands | Unit::Count => 0,
            _ => 1,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Unit::Kpps => " kpps",
            Unit::KPerS => " k/s",
            Unit::Gbit => " Gbit/s",
            Unit::Micros => " µs",
            Unit::Nanos => " ns",
            Unit::Percent => " %",
            Unit::Thousands => " k",
            Unit::Plain | Unit::Count | Unit::Cpus => "",
        }
    }
}

fn fmt_stat(s: Option<Stat>, unit: Unit) -> String {
    let Some(s) = s else {
        return "n/a".to_string();
    };
    let d = unit.digits();
    let (m, lo, hi) = (unit.scale(s.median), unit.scale(s.min), unit.scale(s.max));
    if s.n == 1 {
        format!("{m:.d$}{}", unit.suffix())
    } else {
        format!("{m:.d$} [{lo:.d$}–{hi:.d$}]{}", unit.suffix())
    }
}

/// A mode's figure, or "refused" where the mode did not start with this
/// family (the reason is given under the table).
fn cell(data: &Data, mode: &str, metric: &str, unit: Unit) -> String {
    match data.stat(mode, metric) {
        None if data.refused(mode).is_some() => "refused".to_string(),
        stat => fmt_stat(stat, unit),
    }
}

fn ratio(data: &Data, a: &str, b: &str, metric: &str) -> String {
    match (data.median(a, metric), data.median(b, metric)) {
        (Some(x), Some(y)) if y != 0.0 => format!("{:.2}×", x / y),
        _ => "n/a".to_string(),
    }
}

/// A row of a router table: metric, label, unit, and whether the ratios of
/// xwan to the kernel mean something for it.
type Row<'a> = (&'a str, &'a str, Unit, bool);

/// A table with one row per figure and one column per router the run
/// measured, plus the ratios of each xwan mode to the kernel recipe. With
/// `ipv6`, only the rows measured (IPv6 has no 100 k, 1 M or new-flow
/// step), its frames named by their size.
fn router_table(md: &mut String, data: &Data, rows: &[Row], ipv6: bool) {
    let routers = data.routers();
    let xwan: Vec<&str> = routers.iter().copied().filter(|m| *m != "kernel").collect();
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|(metric, ..)| !ipv6 || routers.iter().any(|m| data.stat(m, metric).is_some()))
        .collect();
    if rows.is_empty() {
        return;
    }
    table_header(md, data, &routers, &xwan);
    for (metric, label, unit, with_ratios) in rows {
        let label = if ipv6 {
            label.replace("64-byte", "62-byte")
        } else {
            label.to_string()
        };
        let cells: Vec<String> = routers
            .iter()
            .map(|m| cell(data, m, metric, *unit))
            .collect();
        let ratios: Vec<String> = xwan
            .iter()
            .map(|m| {
                if *with_ratios {
                    ratio(data, m, "kernel", metric)
                } else {
                    String::new()
                }
            })
            .collect();
        table_row(md, &label, &cells, &ratios);
    }
    md.push('\n');
}

/// The header of a table with a column per mode in `columns` and a ratio to
/// the kernel recipe per mode in `ratios`.
fn table_header(md: &mut String, data: &Data, columns: &[&str], ratios: &[&str]) {
    let mut head = vec!["figure".to_string()];
    head.extend(columns.iter().map(|m| data.label(m)));
    head.extend(
        ratios
            .iter()
            .map(|m| format!("{} / kernel", data.short_label(m))),
    );
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(md, "|{}", " --- |".repeat(head.len()));
}

fn table_row(md: &mut String, label: &str, cells: &[String], ratios: &[String]) {
    let mut row = vec![label.to_string()];
    row.extend(cells.iter().cloned());
    row.extend(ratios.iter().cloned());
    let _ = writeln!(md, "| {} |", row.join(" | "));
}

const HEADLINE: &[Row] = &[
    (
        "pps_1k",
        "64-byte UDP, 1 k established flows (each answered once), generator on 1 CPU, delivered",
        Unit::Kpps,
        true,
    ),
    (
        "ceiling_frac",
        "same, share of the generator's ceiling (1 CPU)",
        Unit::Percent,
        false,
    ),
    (
        "offload_share_1k",
        "same, share forwarded in the kernel by xwan's fast path",
        Unit::Percent,
        false,
    ),
    (
        "pps_1k_gen2",
        "64-byte UDP, 1 k established flows, generator on 2 CPUs, delivered",
        Unit::Kpps,
        true,
    ),
    (
        "ceiling_frac_gen2",
        "same, share of the generator's ceiling (2 CPUs)",
        Unit::Percent,
        false,
    ),
    (
        "offload_share_1k_gen2",
        "same, share forwarded in the kernel by xwan's fast path",
        Unit::Percent,
        false,
    ),
    (
        "pps_1m",
        "64-byte UDP, 1 M one-way flows (never answered), delivered",
        Unit::Kpps,
        true,
    ),
    ("newflows", "new flows per second", Unit::KPerS, true),
    (
        "tcp_up_1",
        "TCP, 1 stream, LAN → internet",
        Unit::Gbit,
        true,
    ),
    (
        "tcp_up_4",
        "TCP, 4 streams, LAN → internet",
        Unit::Gbit,
        true,
    ),
    ("lat_idle_mean", "RTT mean, idle", Unit::Micros, true),
    ("lat_idle_p99", "RTT p99, idle", Unit::Micros, true),
    ("lat_50_p99", "RTT p99 at 50 % load", Unit::Micros, true),
    (
        "pps_per_cpu",
        "packets per CPU-second of the router",
        Unit::Kpps,
        true,
    ),
];

const SMALL_PACKETS: &[Row] = &[
    (
        "primed_1k",
        "1 k established flows: flows answered through the router before the flood (of 1000)",
        Unit::Plain,
        false,
    ),
    (
        "offload_flows_1k",
        "1 k established flows: flows priming put in xwan's in-kernel fast path",
        Unit::Plain,
        false,
    ),
    (
        "pps_1k",
        "1 k established flows: delivered",
        Unit::Kpps,
        true,
    ),
    ("sent_1k", "1 k established flows: sent", Unit::Kpps, true),
    (
        "loss_1k",
        "1 k established flows: loss (sent − delivered)",
        Unit::Percent,
        false,
    ),
    (
        "lan_drop_1k",
        "1 k established flows: dropped at lan0",
        Unit::Kpps,
        false,
    ),
    (
        "batch_1k",
        "1 k established flows: xwan's mean RX batch (frames)",
        Unit::Plain,
        false,
    ),
    (
        "offload_share_1k",
        "1 k established flows: share of delivered forwarded in the kernel (offload)",
        Unit::Percent,
        false,
    ),
    (
        "pps_100k",
        "100 k one-way flows: delivered",
        Unit::Kpps,
        true,
    ),
    ("sent_100k", "100 k flows: sent", Unit::Kpps, true),
    ("loss_100k", "100 k flows: loss", Unit::Percent, false),
    (
        "lan_drop_100k",
        "100 k flows: dropped at lan0",
        Unit::Kpps,
        false,
    ),
    (
        "batch_100k",
        "100 k flows: xwan's mean RX batch",
        Unit::Plain,
        false,
    ),
    (
        "flows_100k",
        "100 k flows: flows in the table when measured",
        Unit::Thousands,
        false,
    ),
    (
        "offload_share_100k",
        "100 k flows: share forwarded in the kernel (offload)",
        Unit::Percent,
        false,
    ),
    ("pps_1m", "1 M one-way flows: delivered", Unit::Kpps, true),
    ("sent_1m", "1 M flows: sent", Unit::Kpps, true),
    ("loss_1m", "1 M flows: loss", Unit::Percent, false),
    (
        "lan_drop_1m",
        "1 M flows: dropped at lan0",
        Unit::Kpps,
        false,
    ),
    (
        "batch_1m",
        "1 M flows: xwan's mean RX batch",
        Unit::Plain,
        false,
    ),
    (
        "flows_1m",
        "1 M flows: flows in the table when measured",
        Unit::Thousands,
        false,
    ),
    (
        "offload_share_1m",
        "1 M flows: share forwarded in the kernel (offload)",
        Unit::Percent,
        false,
    ),
    (
        "slowdown_1m",
        "1 k-flow rate / 1 M-flow rate",
        Unit::Plain,
        false,
    ),
    (
        "newflows",
        "new flows per second (every packet a new 5-tuple)",
        Unit::KPerS,
        true,
    ),
    ("newflows_sent", "same, offered", Unit::KPerS, false),
];

const CPU: &[Row] = &[
    (
        "router_ns",
        "router CPU per delivered packet (all CPUs' busy time, less the generator's)",
        Unit::Nanos,
        true,
    ),
    (
        "pps_per_cpu",
        "packets per CPU-second of the router (1 / the line above)",
        Unit::Kpps,
        true,
    ),
    (
        "xwan_cpu",
        "xwan's threads: CPU used (1.00 = one whole CPU)",
        Unit::Cpus,
        false,
    ),
    (
        "cpu_total_ns",
        "all CPU time per delivered packet (generator included)",
        Unit::Nanos,
        true,
    ),
];

/// The backend each xwan mode ran (`io` of `xwan status --json`, read once
/// the router was up): what `--io auto` chose on this machine.
fn backends(md: &mut String, data: &Data) {
    let ran: Vec<String> = data
        .routers()
        .iter()
        .filter_map(|m| data.text(m, "io").map(|io| format!("{m}: {io}")))
        .collect();
    if ran.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Backend each xwan mode ran (`io` of `xwan status --json` once the router was up; \
         `--io auto`, xwan run's default, takes AF_XDP only where every interface binds it in \
         zero-copy mode, AF_PACKET with the in-kernel fast path elsewhere): {}.\n",
        ran.join("; ")
    );
}

/// What packet-page's reader of the status page fetched: the figures of
/// `packet + page polled` hold only if it was answered all along.
fn page_polls(md: &mut String, data: &Data) {
    let Some(answered) = data.stat("packet-page", "page_answered") else {
        return;
    };
    let _ = writeln!(
        md,
        "{}: xwan --io packet with `[control] metrics = \"127.0.0.1:9900\"` (the plain packet \
         mode has no listener), and in the router's namespace a reader \
         (bench/harness/page_poll.py) that fetched `/status.json` and `/` once a second each \
         for as long as the router ran, each on a new connection: {} fetches answered per \
         repetition, {} failed, {} KiB read.\n",
        data.label("packet-page"),
        fmt_stat(Some(answered), Unit::Count),
        fmt_stat(data.stat("packet-page", "page_failed"), Unit::Count),
        fmt_stat(data.stat("packet-page", "page_kib"), Unit::Count),
    );
}

fn markdown(families: &Families, title: &str) -> String {
    let (v4, v6) = (&families.v4, &families.v6);
    let mut md = String::new();
    let mut reps = v4.reps();
    reps.extend(v6.reps());
    reps.sort_unstable();
    reps.dedup();
    let reps = reps.len();
    md.push_str("# xwan on the testbed: xwan and the kernel recipe side by side\n\n");
    if !title.is_empty() {
        let _ = writeln!(md, "{title}\n");
    }
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (machine: [machine.md](machine.md)). {reps} repetition(s), \
         the modes interleaved in each; every figure is the median over the repetitions with \
         [min–max]. Ratios are ratios of medians. How each figure is measured: see the end."
    );
    md.push('\n');
    disturbed(&mut md, families);
    if !v4.is_empty() {
        headline(&mut md, v4);
    }
    if !v6.is_empty() {
        ipv6(&mut md, v6);
    }
    if !v4.is_empty() {
        details(&mut md, v4);
    }
    // How each figure is measured: the end of results.md, kept as markdown.
    md.push_str(include_str!("method.md"));
    md
}

/// The timed windows during which other build processes ran, both
/// families'; or that none did.
fn disturbed(md: &mut String, families: &Families) {
    let mut looked = false;
    let mut list: Vec<String> = Vec::new();
    for (data, family) in [(&families.v4, ""), (&families.v6, " IPv6")] {
        let Some(windows) = data.disturbed() else {
            continue;
        };
        looked = true;
        for (rep, mode, step, n) in windows {
            list.push(format!(
                "rep {rep} {}{family} {step} ({n:.0})",
                data.label(mode)
            ));
        }
    }
    if !looked {
        return;
    }
    if list.is_empty() {
        md.push_str(
            "No other build process (compiler, linker) ran on the machine at the start or the \
             end of any timed rate window.\n\n",
        );
    } else {
        md.push_str(
            "**Other work ran on the machine during some timed windows** (build processes seen \
             at their start or end; their figures are low outliers, which is why each figure is \
             a median): ",
        );
        let _ = writeln!(md, "{}.\n", list.join("; "));
    }
}

/// The IPv4 headline table, the generator's ceiling, the backends and the
/// targets.
fn headline(md: &mut String, data: &Data) {
    md.push_str("## Headline\n\n");
    router_table(md, data, HEADLINE, false);
    let _ = writeln!(
        md,
        "Generator ceiling (trafgen into an XDP drop on the router's LAN interface, no \
         router), measured in the same run: {} on 1 CPU (CPU 0), {} on 2 CPUs. Headline rate \
         figures are taken with the peers as a real network has them: no XDP program and no \
         GRO on the ISPs' or the LAN host's interfaces (the ISPs count delivered frames with \
         their interface counters and drop them with a blackhole route). The 1 k-flow rows \
         measure established flows in every mode: before the flood each of its 1000 flows got \
         one reply from the far side, through the router, as every real UDP flow worth \
         forwarding fast has (QUIC, DNS, games, VPN); the 1 M-flow and new-flow rows are \
         one-way floods, never answered, which measure the workers' table and new-flow path \
         (xwan's fast path takes a UDP flow only once a reply is seen).\n",
        fmt_stat(data.stat("generator", "pps_1k"), Unit::Kpps),
        fmt_stat(data.stat("generator", "pps_1k_gen2"), Unit::Kpps),
    );

    backends(md, data);
    page_polls(md, data);

    targets::write(md, data);
}

/// The IPv6 section: the small-packet figures, the generator's IPv6
/// ceiling, the modes that refused IPv6, TCP and latency.
fn ipv6(md: &mut String, data: &Data) {
    md.push_str("## IPv6\n\n");
    md.push_str(
        "The same routers on the same dual-stack testbed and configuration, IPv6 measured \
         right after IPv4 on each router: isp1 maps the LAN's fd00:50::/64 onto its delegated \
         2001:db8:100::/64 (nat6 `prefix`), isp2 translates to its one address 2001:db8:2::2 \
         (nat6 `masquerade`); nth balancing gives each every other flow. The flood is the \
         smallest IPv6 UDP frame, 62 bytes (66 on a wire), from fd00:50::a to \
         2001:db8:ffff::200, its 1000 flows primed as IPv4's (one reply each through the \
         router).\n\n",
    );
    router_table(md, data, HEADLINE, true);
    // A --tcp run has no small-packet figures, a --short run no TCP ones,
    // a --tcp run no round trips.
    let measured = |metric: &str| {
        data.routers()
            .iter()
            .any(|m| data.stat(m, metric).is_some())
    };
    if measured("pps_1k") {
        md.push_str("All 1 k-flow figures and CPU, IPv6:\n\n");
        router_table(md, data, SMALL_PACKETS, true);
        router_table(md, data, CPU, true);
    }
    if let Some(ceiling) = data.stat("generator", "pps_1k") {
        let _ = writeln!(
            md,
            "Generator ceiling, IPv6 (the same flood into the XDP drop on the router's LAN \
             interface, no router): {} on 1 CPU, {} on 2 CPUs.\n",
            fmt_stat(Some(ceiling), Unit::Kpps),
            fmt_stat(data.stat("generator", "pps_1k_gen2"), Unit::Kpps),
        );
    }
    for mode in data.routers() {
        if let Some(why) = data.refused(mode) {
            let _ = writeln!(
                md,
                "- {} with IPv6 in its configuration: refused: {why}. Its IPv4 figures come \
                 from the same configuration without IPv6.",
                data.label(mode)
            );
        }
    }
    md.push('\n');
    if measured("tcp_up_1") {
        md.push_str("### IPv6 TCP throughput (iperf3 -6, MTU 1500, hosts at default offloads)\n\n");
        tcp_table(md, data);
        md.push('\n');
    }
    if measured("lat_idle_p50") {
        md.push_str("### IPv6 round-trip times\n\n");
        latency_table(md, data);
    }
}

/// The IPv4 details: small packets and flow scale, CPU, TCP, latency.
fn details(md: &mut String, data: &Data) {
    md.push_str("## Small packets and flow scale\n\n");
    md.push_str("![delivered pps by mode](pps_by_mode.svg)\n![pps vs flows](pps_vs_flows.svg)\n\n");
    router_table(md, data, SMALL_PACKETS, false);
    md.push_str(
        "The 1 k-flow set is primed (see How it is measured): `flows answered` is how many of \
         its flows' replies reached the LAN host, `in the fast path` how many flows priming \
         added to xwan's in-kernel fast path (its map's entries / 2, after priming less \
         before: the other family's flows stay in it), and `share \
         forwarded in the kernel` the fast path's packet counter over the whole flood (warm-up \
         and timed window) divided by the flood's packets delivered (raw.jsonl: `offloaded_*`, \
         `flood_*`). The 100 k and 1 M flow sets are one-way (no reply, so never \
         offloaded; the fast path's map holds 32768 flows in any case): they measure the \
         workers' flow table at scale.\n\n",
    );
    md.push_str(
        "Loss is counted where it happens: `dropped at lan0` are frames the router's LAN veth \
         could not hand on (xdp mode: the redirect into xwan's AF_XDP RX ring failed because the \
         ring was full); the rest of sent − delivered was lost between the generator and lan0 \
         (the bridge's veth queue) or inside the router.\n\n",
    );

    md.push_str("## CPU\n\n");
    router_table(md, data, CPU, false);
    md.push_str(
        "Router CPU is every CPU's busy time (user, system, irq, softirq from /proc/stat: \
         disjoint, so a softirq tick is counted once even when it ran in xwan's syscall) per \
         delivered packet, less the same figure of the ceiling run (the generator, the bridge \
         and the router's LAN port receiving and dropping). xwan's worker spins for a bounded \
         time after its last frame, so at a steady flood it counts some polling too. The router \
         core's own cost per frame is in the criterion benches (`cargo bench --bench core`).\n\n",
    );
    let _ = writeln!(
        md,
        "With no router (the ceiling run), all CPU time per generated packet was {}.\n",
        fmt_stat(data.stat("generator", "cpu_total_ns"), Unit::Nanos),
    );

    md.push_str("## TCP throughput (iperf3, MTU 1500, hosts at default offloads)\n\n");
    md.push_str("![TCP throughput](tcp.svg)\n\n");
    tcp_table(md, data);
    md.push('\n');
    md.push_str(
        "The kernel recipe without any XDP program lets GSO super-packets (up to 64 KiB) cross \
         the veths unsegmented, so one routing decision moves ~40 MTU-sized packets; so does \
         xwan --io packet (GSO passthrough). Any XDP program on the router's veths (xwan's, or \
         the pass-through one of the last column) turns GSO off on their peers: every packet is \
         then routed one by one. Compare xwan --io xdp with the last column for the cost per \
         packet, with the kernel column for what a user gets on veth. With offload on, an \
         established connection's packets (after its first 0.2-1 s) are forwarded by xwan's TC \
         program in the kernel, GRO-merged super-frames whole, without the trip to the \
         workers.\n\n",
    );

    md.push_str("## Latency added by the router\n\n");
    md.push_str("![latency vs load](latency_vs_load.svg)\n\n");
    latency_table(md, data);
    md.push_str(
        "xwan's own per-batch processing time is not exposed by its workers yet (see \
         bench/results/README.md for what to add), so only round trips are reported.\n\n",
    );
}

/// A TCP table: every router measured (and the kernel recipe with an XDP
/// pass program, when measured), the ratios of the modes with their fast
/// path on to the kernel recipe; what xwan passed through whole or
/// forwarded in the kernel.
fn tcp_table(md: &mut String, data: &Data) {
    let mut columns = data.routers();
    if data.stat("kernel-xdp", "tcp_up_1").is_some() {
        columns.push("kernel-xdp");
    }
    // Ratios for the modes with their fast path on, as xwan runs by default.
    let ratios: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|m| OFFLOAD_ON.contains(m))
        .collect();
    table_header(md, data, &columns, &ratios);
    for (metric, label, unit) in [
        ("tcp_up_1", "1 stream, LAN → internet", Unit::Gbit),
        ("tcp_down_1", "1 stream, internet → LAN (-R)", Unit::Gbit),
        ("tcp_up_4", "4 streams, LAN → internet", Unit::Gbit),
        ("tcp_down_4", "4 streams, internet → LAN (-R)", Unit::Gbit),
        ("tcp_retr_up_1", "retransmits, 1 stream up", Unit::Plain),
        ("tcp_retr_down_1", "retransmits, 1 stream down", Unit::Plain),
        ("tcp_retr_up_4", "retransmits, 4 streams up", Unit::Plain),
        (
            "tcp_retr_down_4",
            "retransmits, 4 streams down",
            Unit::Plain,
        ),
    ] {
        let cells: Vec<String> = columns
            .iter()
            .map(|m| cell(data, m, metric, unit))
            .collect();
        let ratios: Vec<String> = ratios
            .iter()
            .map(|m| ratio(data, m, "kernel", metric))
            .collect();
        table_row(md, label, &cells, &ratios);
    }
    // What crossed whole (packet backend) and what the fast path took, for
    // the modes measured.
    let measured = |modes: &[&str], metric: &str| -> Vec<String> {
        modes
            .iter()
            .filter_map(|m| {
                data.stat(m, metric).map(|s| {
                    format!(
                        "{} MiB with {}",
                        fmt_stat(Some(s), Unit::Plain),
                        data.label(m)
                    )
                })
            })
            .collect()
    };
    let passed = measured(
        &["auto", "packet", "packet-page", "packet-nooffload"],
        "tcp_gso_passthrough_mib",
    );
    if !passed.is_empty() {
        let _ = writeln!(
            md,
            "\nGSO super-frames xwan's packet workers passed through whole over the TCP runs \
             (translated once, cut by the egress veth or the kernel): {}.",
            passed.join("; ")
        );
    }
    let offloaded = measured(&OFFLOAD_ON, "tcp_offload_mib");
    if !offloaded.is_empty() {
        let _ = writeln!(
            md,
            "\nForwarded in the kernel by xwan's TC fast path over the TCP runs (the rest went \
             through the workers): {}.",
            offloaded.join("; ")
        );
    }
}

/// A latency table: RTT per mode and load, and the baseline without
/// forwarding.
fn latency_table(md: &mut String, data: &Data) {
    md.push_str(
        "| mode | load | offered | RTT mean | RTT p50 | RTT p99 | RTT p99.9 | added p50 | lost |\n",
    );
    md.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for mode in data.routers() {
        for load in LOADS {
            let offered = if load == "idle" {
                "0".to_string()
            } else {
                cell(data, mode, &format!("load_{load}"), Unit::Kpps)
            };
            let q = |suffix: &str| cell(data, mode, &format!("lat_{load}_{suffix}"), Unit::Micros);
            let _ = writeln!(
                md,
                "| {} | {} | {offered} | {} | {} | {} | {} | {} | {} |",
                data.label(mode),
                if load == "idle" {
                    "idle".to_string()
                } else {
                    format!("{load} %")
                },
                q("mean"),
                q("p50"),
                q("p99"),
                q("p999"),
                q("p50_added"),
                cell(data, mode, &format!("lat_{load}_lost"), Unit::Plain),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nBaseline (no forwarding): LAN half {} + WAN half {} − loopback {} = {} (p50s).\n",
        fmt_stat(data.stat("baseline", "lan_p50"), Unit::Micros),
        fmt_stat(data.stat("baseline", "wan_p50"), Unit::Micros),
        fmt_stat(data.stat("baseline", "lo_p50"), Unit::Micros),
        fmt_stat(data.stat("baseline", "path_p50"), Unit::Micros),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_page_is_a_column_a_ratio_and_a_note() {
        let mut lines = String::new();
        for rep in 1..=3 {
            for (mode, pps) in [("packet", 300e3), ("packet-page", 299e3), ("kernel", 200e3)] {
                lines += &format!(
                    "{{\"rep\":{rep},\"mode\":\"{mode}\",\"metric\":\"pps_1k\",\"value\":{pps}}}\n"
                );
                lines += &format!(
                    "{{\"rep\":{rep},\"mode\":\"{mode}\",\"metric\":\"lat_50_p99\",\"value\":70000}}\n"
                );
            }
            lines += &format!(
                "{{\"rep\":{rep},\"mode\":\"packet-page\",\"metric\":\"page_answered\",\"value\":{}}}\n",
                80 + rep
            );
            lines += &format!(
                "{{\"rep\":{rep},\"mode\":\"packet-page\",\"metric\":\"page_failed\",\"value\":0}}\n"
            );
        }
        let md = markdown(&crate::report::load_lines(&lines).unwrap(), "");
        assert!(
            md.contains(
                "| figure | xwan --io packet (offload on) | xwan --io packet (offload on) + status \
                 page polled | kernel recipe | packet / kernel | packet + page polled / kernel |"
            ),
            "{md}"
        );
        assert!(md.contains("| xwan --io packet (offload on) + status page polled | 50 % |"));
        assert!(md.contains("82 [81–83] fetches answered per repetition, 0 [0–0] failed"));
        // No IPv6 figure: no IPv6 section.
        assert!(!md.contains("## IPv6"), "{md}");
    }

    #[test]
    fn ipv6_has_its_section_with_ratios_and_refusals() {
        let lines = r#"{"rep":1,"mode":"generator","metric":"pps_1k","value":400000}
{"rep":1,"mode":"xdp","metric":"pps_1k","value":300000}
{"rep":1,"mode":"kernel","metric":"pps_1k","value":200000}
{"rep":1,"family":6,"mode":"generator","metric":"pps_1k","value":380000}
{"rep":1,"family":6,"mode":"xdp","metric":"refused","text":"the configuration has IPv6"}
{"rep":1,"family":6,"mode":"packet","metric":"pps_1k","value":270000}
{"rep":1,"family":6,"mode":"packet","metric":"tcp_up_1","value":4e9}
{"rep":1,"family":6,"mode":"kernel","metric":"pps_1k","value":180000}
{"rep":1,"family":6,"mode":"kernel","metric":"tcp_up_1","value":8e9}
{"rep":1,"family":6,"mode":"kernel","metric":"lat_idle_p99","value":50000}
"#;
        let md = markdown(&crate::report::load_lines(lines).unwrap(), "");
        let ipv6 = &md[md.find("## IPv6").expect("an IPv6 section")..md.find("## Small").unwrap()];
        assert!(
            ipv6.contains(
                "| 62-byte UDP, 1 k established flows (each answered once), generator on 1 CPU, \
                 delivered | refused | 270.0 kpps | 180.0 kpps | n/a | 1.50× |"
            ),
            "{ipv6}"
        );
        assert!(ipv6.contains("IPv6 (the same flood into the XDP drop"));
        // Only what IPv6 measured: no 1 M-flow row.
        assert!(!ipv6.contains("1 M one-way flows"), "{ipv6}");
        assert!(ipv6.contains("380.0 kpps on 1 CPU"));
        assert!(ipv6.contains(
            "- xwan --io xdp (offload on) with IPv6 in its configuration: refused: the \
             configuration has IPv6."
        ));
        assert!(ipv6.contains("| 1 stream, LAN → internet | refused | 4.00 Gbit/s | 8.00 Gbit/s |"));
        // IPv4's headline comes first, its details after IPv6's section.
        assert!(md.find("## Headline") < md.find("## IPv6"));
        assert!(md.find("## IPv6") < md.find("## Small packets"));
    }
}

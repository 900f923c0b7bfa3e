//! The targets section of `results.md`: each target of issues 13 and 14,
//! met or missed, with the figures it comes from.

use std::fmt::Write as _;

use crate::report::Data;

/// The targets of issue 13, met or missed, with the figures they come from.
pub fn write(md: &mut String, data: &Data) {
    md.push_str("## Targets\n\n");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let m = |mode: &str, metric: &str| data.median(mode, metric);
    if let (Some(frac), Some(x), Some(p)) = (
        m("xdp", "ceiling_frac"),
        m("xdp", "pps_1k"),
        m("packet", "pps_1k"),
    ) {
        let _ = writeln!(
            md,
            "- generator on 1 CPU: xwan --io xdp ≥ 90 % of the ceiling and never below --io \
             packet: {:.0} % of the ceiling, {:.2}× --io packet ({}).",
            frac * 100.0,
            x / p,
            verdict(frac >= 0.9 && x >= p)
        );
    }
    if let (Some(x), Some(k)) = (m("xdp", "pps_1k_gen2"), m("kernel", "pps_1k_gen2")) {
        let r = x / k;
        let _ = writeln!(
            md,
            "- generator on 2 CPUs: xwan --io xdp ≥ 1.0× the kernel recipe (goal 1.3×): {r:.2}× ({}).",
            verdict(r >= 1.0)
        );
    }
    if let (Some(x), Some(k)) = (m("xdp", "lat_idle_mean"), m("kernel", "lat_idle_mean")) {
        let _ = writeln!(
            md,
            "- idle ping within 10 µs of the kernel recipe's average: {:.1} µs vs {:.1} µs ({}).",
            x / 1e3,
            k / 1e3,
            verdict(x - k <= 10_000.0)
        );
    }
    if let (Some(x), Some(k)) = (m("xdp", "lat_50_p99"), m("kernel", "lat_50_p99")) {
        let _ = writeln!(
            md,
            "- RTT p99 at 50 % load within 2× the kernel recipe's: {:.1} µs vs {:.1} µs, {:.2}× ({}).",
            x / 1e3,
            k / 1e3,
            x / k,
            verdict(x <= 2.0 * k)
        );
    }
    md.push_str(
        "- criterion (core, quiet machine): ≤ 40 ns established, ≤ 300 ns new flow: \
         `cargo bench --bench core -- --quick`, not part of this run.\n",
    );
    offload_targets(md, data);
    md.push('\n');
}

/// The targets of issue 14 (the in-kernel fast path: xwan --io xdp with
/// offload on), met or missed. The rate and CPU figures come from the 1 k
/// established flows (each answered once before the flood), which the fast
/// path takes like the TCP runs and the latency pings.
fn offload_targets(md: &mut String, data: &Data) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let m = |mode: &str, metric: &str| data.median(mode, metric);
    if let (Some(x), Some(k)) = (m("xdp", "pps_1k_gen2"), m("kernel", "pps_1k_gen2")) {
        let r = x / k;
        let _ = writeln!(
            md,
            "- offload, generator on 2 CPUs: ≥ 1.5× the kernel recipe: {r:.2}× ({}).",
            verdict(r >= 1.5)
        );
    }
    if let Some(frac) = m("xdp", "ceiling_frac") {
        let _ = writeln!(
            md,
            "- offload, generator on 1 CPU: ≥ 95 % of the ceiling: {:.0} % ({}).",
            frac * 100.0,
            verdict(frac >= 0.95)
        );
    }
    if let (Some(x), Some(k)) = (m("xdp", "lat_idle_mean"), m("kernel", "lat_idle_mean")) {
        let _ = writeln!(
            md,
            "- offload, idle RTT within 5 µs of the kernel recipe's: {:.1} µs vs {:.1} µs ({}).",
            x / 1e3,
            k / 1e3,
            verdict(x - k <= 5_000.0)
        );
    }
    if let (Some(x), Some(k)) = (m("xdp", "cpu_total_ns"), m("kernel", "cpu_total_ns")) {
        let _ = writeln!(
            md,
            "- offload, CPU per forwarded packet below the kernel recipe's: {x:.0} ns vs {k:.0} ns ({}).",
            verdict(x < k)
        );
    }
}

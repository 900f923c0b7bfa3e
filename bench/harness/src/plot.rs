//! The report's SVG plots: delivered pps by mode, pps against the number of
//! flows, RTT percentiles against load, TCP throughput. Bars and points are
//! medians; whiskers span the smallest to the largest repetition. When the
//! run measured IPv6, the 1 k-flow rate and TCP plots get IPv6 groups beside
//! IPv4's, and the latency plot an IPv6 line per mode in a lighter shade of
//! its colour.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Data, Families, ReportError, Stat, LOADS, QUANTILES};

const SIZE: (u32, u32) = (860, 480);
/// Width of one group of bars (or one load step) on the integer x axes.
const GROUP: i32 = 100;

fn color(mode: &str) -> RGBColor {
    match mode {
        "auto" => RGBColor(23, 190, 207),
        "xdp" => RGBColor(31, 119, 180),
        "xdp-nooffload" => RGBColor(148, 103, 189),
        "packet-nooffload" => RGBColor(140, 86, 75),
        "packet" => RGBColor(255, 127, 14),
        // packet's colour, lighter: the same mode with its page polled.
        "packet-page" => RGBColor(255, 187, 120),
        "kernel" => RGBColor(44, 160, 44),
        "kernel-xdp" => RGBColor(214, 39, 40),
        _ => RGBColor(127, 127, 127),
    }
}

/// `c` halfway to white: the same mode's IPv6 line.
fn lighter(c: RGBColor) -> RGBColor {
    let half = |v: u8| v + (255 - v) / 2;
    RGBColor(half(c.0), half(c.1), half(c.2))
}

/// The routers either family measured, in table order.
fn routers(families: &Families) -> Vec<&'static str> {
    let (v4, v6) = (families.v4.routers(), families.v6.routers());
    crate::report::ROUTERS
        .into_iter()
        .filter(|r| v4.contains(r) || v6.contains(r))
        .collect()
}

/// A mode's legend entry: its IPv4 label, else its IPv6 one.
fn label(families: &Families, mode: &str) -> String {
    if families.v4.is_empty() {
        families.v6.label(mode)
    } else {
        families.v4.label(mode)
    }
}

fn plot_error(name: &str) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Plot {
        name: name.to_string(),
        message,
    }
}

/// Writes every plot into `out`.
pub fn all(families: &Families, out: &Path) -> Result<(), ReportError> {
    // The families measured, each with its groups' names.
    let measured: Vec<(&Data, &str)> = [(&families.v4, "IPv4"), (&families.v6, "IPv6")]
        .into_iter()
        .filter(|(data, _)| !data.is_empty())
        .collect();
    let both = measured.len() == 2;
    let name = "pps_by_mode.svg";
    let groups: Vec<String> = measured
        .iter()
        .map(|(_, family)| {
            if both {
                format!("{family}, 1 k established flows")
            } else {
                "1 k established flows".to_string()
            }
        })
        .collect();
    let of = |mode: &str, metric: &str| -> Vec<Option<Stat>> {
        measured.iter().map(|(d, _)| d.stat(mode, metric)).collect()
    };
    let mut series = vec![(
        "generator ceiling".to_string(),
        color("generator"),
        of("generator", "pps_1k"),
    )];
    series.extend(
        routers(families)
            .iter()
            .map(|m| (label(families, m), color(m), of(m, "pps_1k"))),
    );
    bars(
        &out.join(name),
        "Small UDP packets, 1 k established flows: delivered rate",
        "kpps",
        &groups,
        &series,
        1e-3,
    )
    .map_err(plot_error(name))?;

    let name = "tcp.svg";
    // Each figure, its group's name, and the shorter one it has after its
    // family's name when both families have groups.
    let tcp = [
        ("tcp_up_1", "1 stream up", "1 up"),
        ("tcp_down_1", "1 stream down", "1 down"),
        ("tcp_up_4", "4 streams up", "4 up"),
        ("tcp_down_4", "4 streams down", "4 down"),
    ];
    // A family's groups only when it has TCP figures (a --short run has none).
    let tcp_families: Vec<(&Data, &str)> = measured
        .iter()
        .copied()
        .filter(|(d, _)| {
            d.routers()
                .iter()
                .chain(&["kernel-xdp"])
                .any(|m| tcp.iter().any(|(t, ..)| d.stat(m, t).is_some()))
        })
        .collect();
    let both_tcp = tcp_families.len() == 2;
    let groups: Vec<String> = tcp_families
        .iter()
        .flat_map(|(_, family)| {
            tcp.iter().map(move |(_, long, short)| {
                if both_tcp {
                    format!("{family} {short}")
                } else {
                    (*long).to_string()
                }
            })
        })
        .collect();
    let mut modes = routers(families);
    modes.push("kernel-xdp");
    let series: Vec<_> = modes
        .iter()
        .map(|m| {
            let stats: Vec<Option<Stat>> = tcp_families
                .iter()
                .flat_map(|(d, _)| tcp.iter().map(|(t, ..)| d.stat(m, t)))
                .collect();
            (label(families, m), color(m), stats)
        })
        .filter(|(_, _, stats)| stats.iter().any(Option::is_some))
        .collect();
    let title = if both_tcp {
        "TCP throughput (iperf3, MTU 1500): family, streams, direction"
    } else {
        "TCP throughput (iperf3, MTU 1500)"
    };
    bars(&out.join(name), title, "Gbit/s", &groups, &series, 1e-9).map_err(plot_error(name))?;

    let name = "pps_vs_flows.svg";
    pps_vs_flows(&families.v4, &out.join(name)).map_err(plot_error(name))?;
    let name = "latency_vs_load.svg";
    latency_vs_load(families, &out.join(name)).map_err(plot_error(name))
}

type Series = (String, RGBColor, Vec<Option<Stat>>);

/// Grouped bars with min–max whiskers; `series[i].2[g]` is series i in group g.
fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    groups: &[String],
    series: &[Series],
    scale: f64,
) -> Result<(), String> {
    let top = series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .map(|s| s.max * scale)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.4;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    // Integer x coordinates, GROUP units per group, so that the axis can carry
    // exactly one labelled tick in the middle of each group.
    let n = groups.len() as i32 * GROUP;
    let centres: Vec<i32> = (0..groups.len() as i32)
        .map(|g| g * GROUP + GROUP / 2)
        .collect();
    let labels = groups;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n).with_key_points(centres), 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(unit)
        .x_label_formatter(&|x| {
            let g = usize::try_from(x / GROUP).unwrap_or(0);
            labels.get(g).cloned().unwrap_or_default()
        })
        .draw()
        .map_err(|e| e.to_string())?;
    // No series (a --short run has no TCP figures): the axes alone.
    let width = GROUP * 8 / 10 / series.len().max(1) as i32;
    for (i, (name, c, stats)) in series.iter().enumerate() {
        let mut first = true;
        for (g, stat) in stats.iter().enumerate() {
            let Some(s) = stat else { continue };
            let x0 = g as i32 * GROUP + GROUP / 10 + width * i as i32;
            let x1 = x0 + width * 9 / 10;
            let xm = (x0 + x1) / 2;
            let bar = chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x1, s.median * scale)],
                    c.filled(),
                )))
                .map_err(|e| e.to_string())?;
            if first {
                let c = *c;
                bar.label(name.as_str()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                });
                first = false;
            }
            chart
                .draw_series(whisker(xm, width / 5, s, scale, &BLACK))
                .map_err(|e| e.to_string())?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(|e| e.to_string())
}

/// Draws a chart's legend in `corner`, on a light box.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    corner: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(corner)
        .draw()
        .map_err(|e| e.to_string())
}

/// One mode's medians (divided by 1000) as a line of colour `c` with its
/// legend entry `name` and a point of `radius` at each.
fn medians<'a, DB, CT, X>(
    chart: &mut ChartContext<'a, DB, CT>,
    name: String,
    c: RGBColor,
    points: &[(X, Stat)],
    radius: i32,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (X, f64)>,
    X: Clone + 'static,
{
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(x, s)| (x.clone(), s.median / 1e3)),
            c.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2)));
    chart
        .draw_series(
            points
                .iter()
                .map(|(x, s)| Circle::new((x.clone(), s.median / 1e3), radius, c.filled())),
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A vertical min–max line with caps at x, half-width `cap`.
fn whisker(x: i32, cap: i32, s: &Stat, scale: f64, c: &RGBColor) -> Vec<PathElement<(i32, f64)>> {
    let (lo, hi) = (s.min * scale, s.max * scale);
    vec![
        PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(1)),
        PathElement::new(vec![(x - cap, lo), (x + cap, lo)], c.stroke_width(1)),
        PathElement::new(vec![(x - cap, hi), (x + cap, hi)], c.stroke_width(1)),
    ]
}

fn pps_vs_flows(data: &Data, path: &Path) -> Result<(), String> {
    let flows = [(1e3, "1k"), (1e5, "100k"), (1.001e6, "1m")];
    let routers = data.routers();
    let top = routers
        .iter()
        .flat_map(|m| {
            flows
                .iter()
                .filter_map(move |(_, f)| data.stat(m, &format!("pps_{f}")))
        })
        .chain(data.stat("generator", "pps_1k"))
        .map(|s| s.max / 1e3)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.2;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "64-byte UDP vs flows (1 k established, 100 k and 1 M one-way)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((5e2f64..2e6f64).log_scale(), 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("flows")
        .y_desc("kpps")
        .x_label_formatter(&|x| {
            if *x >= 1e6 {
                format!("{:.0} M", x / 1e6)
            } else if *x >= 1e3 {
                format!("{:.0} k", x / 1e3)
            } else {
                format!("{x:.0}")
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    if let Some(c) = data.stat("generator", "pps_1k") {
        let grey = color("generator");
        chart
            .draw_series(LineSeries::new(
                vec![(5e2, c.median / 1e3), (2e6, c.median / 1e3)],
                grey.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("generator ceiling (1 k flows)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], grey));
    }
    for mode in routers {
        let c = color(mode);
        let points: Vec<(f64, Stat)> = flows
            .iter()
            .filter_map(|(x, f)| data.stat(mode, &format!("pps_{f}")).map(|s| (*x, s)))
            .collect();
        if points.is_empty() {
            continue;
        }
        medians(&mut chart, data.label(mode), c, &points, 4)?;
        for (x, s) in &points {
            let segment = vec![(*x, s.min / 1e3), (*x, s.max / 1e3)];
            chart
                .draw_series(std::iter::once(PathElement::new(
                    segment,
                    c.stroke_width(1),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present().map_err(|e| e.to_string())
}

fn latency_vs_load(families: &Families, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1200, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(
            "Round-trip time through the router vs load (share of the mode's own 1 k-flow rate)",
            ("sans-serif", 18),
        )
        .map_err(|e| e.to_string())?;
    let panels = root.split_evenly((1, QUANTILES.len()));
    // Each family's lines: IPv4's in the mode's colour, IPv6's lighter.
    let lines: Vec<(&Data, &'static str, bool)> = [&families.v4, &families.v6]
        .into_iter()
        .zip([false, true])
        .flat_map(|(data, v6)| data.routers().into_iter().map(move |m| (data, m, v6)))
        .collect();
    let both = !families.v4.is_empty() && !families.v6.is_empty();
    for (panel, q) in panels.iter().zip(QUANTILES) {
        let top = lines
            .iter()
            .flat_map(|(data, m, _)| {
                LOADS
                    .iter()
                    .filter_map(move |l| data.stat(m, &format!("lat_{l}_{q}")))
            })
            .map(|s| s.max / 1e3)
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("RTT {}", quantile_name(q)), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (-30..230).with_key_points(vec![0, GROUP, 2 * GROUP]),
                0.0..top,
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("µs")
            .x_label_formatter(&|x| match x / GROUP {
                0 => "idle".to_string(),
                1 => "50 %".to_string(),
                _ => "90 %".to_string(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (data, mode, v6) in &lines {
            let (c, name) = match (v6, both) {
                (true, true) => (lighter(color(mode)), format!("{} (IPv6)", data.label(mode))),
                (true, false) => (color(mode), format!("{} (IPv6)", data.label(mode))),
                (false, _) => (color(mode), data.label(mode)),
            };
            let points: Vec<(i32, Stat)> = LOADS
                .iter()
                .zip([0, GROUP, 2 * GROUP])
                .filter_map(|(l, x)| data.stat(mode, &format!("lat_{l}_{q}")).map(|s| (x, s)))
                .collect();
            if points.is_empty() {
                continue;
            }
            medians(&mut chart, name, c, &points, 3)?;
            for (x, s) in &points {
                chart
                    .draw_series(whisker(*x, 4, s, 1e-3, &c))
                    .map_err(|e| e.to_string())?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn quantile_name(q: &str) -> &'static str {
    match q {
        "p50" => "p50",
        "p99" => "p99",
        _ => "p99.9",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plot of `lines`, by file name.
    fn plots(lines: &str, tag: &str) -> std::collections::BTreeMap<&'static str, String> {
        let families = crate::report::load_lines(lines).unwrap();
        let dir =
            std::env::temp_dir().join(format!("xwan-bench-plot-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        all(&families, &dir).unwrap();
        let read = ["pps_by_mode.svg", "tcp.svg", "latency_vs_load.svg"]
            .map(|name| (name, std::fs::read_to_string(dir.join(name)).unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
        read.into_iter().collect()
    }

    #[test]
    fn a_run_without_tcp_still_gets_every_plot() {
        let svg = plots(
            r#"{"rep":1,"mode":"generator","metric":"pps_1k","value":400000}
{"rep":1,"mode":"packet","metric":"pps_1k","value":300000}
{"rep":1,"mode":"packet-page","metric":"pps_1k","value":299000}
{"rep":1,"mode":"packet-page","metric":"lat_50_p99","value":70000}
{"rep":1,"mode":"kernel","metric":"pps_1k","value":200000}
"#,
            "v4",
        );
        let (tcp, pps) = (&svg["tcp.svg"], &svg["pps_by_mode.svg"]);
        assert!(tcp.contains("TCP throughput"));
        assert!(pps.contains("+ status page polled"), "{pps}");
        // IPv4 alone: no family in the group names.
        assert!(!pps.contains("IPv4"), "{pps}");
    }

    #[test]
    fn ipv6_gets_groups_and_lines_beside_ipv4() {
        let svg = plots(
            r#"{"rep":1,"mode":"generator","metric":"pps_1k","value":400000}
{"rep":1,"mode":"kernel","metric":"pps_1k","value":200000}
{"rep":1,"mode":"kernel","metric":"tcp_up_1","value":9e9}
{"rep":1,"mode":"kernel","metric":"lat_idle_p50","value":30000}
{"rep":1,"family":6,"mode":"generator","metric":"pps_1k","value":380000}
{"rep":1,"family":6,"mode":"kernel","metric":"pps_1k","value":180000}
{"rep":1,"family":6,"mode":"kernel","metric":"tcp_up_1","value":8e9}
{"rep":1,"family":6,"mode":"kernel","metric":"lat_idle_p50","value":32000}
{"rep":1,"family":6,"mode":"xdp","metric":"refused","text":"no IPv6"}
"#,
            "v6",
        );
        let pps = &svg["pps_by_mode.svg"];
        assert!(pps.contains("IPv6, 1 k established flows"), "{pps}");
        assert!(pps.contains("IPv4, 1 k established flows"), "{pps}");
        assert!(svg["tcp.svg"].contains("IPv6 1 up"));
        assert!(svg["latency_vs_load.svg"].contains("kernel recipe (IPv6)"));
    }
}

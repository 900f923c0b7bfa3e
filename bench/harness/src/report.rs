//! From raw measurements to `results.md` and the plots.
//!
//! scripts/bench appends one JSON object per measurement to the raw file:
//! `{"rep":1,"mode":"xdp","metric":"pps_1k","value":211234.0}`, or a text
//! in place of the value: `{"rep":1,"mode":"auto","metric":"io","text":"packet"}`
//! (the backend xwan ran, `io` of `xwan status --json`;
//! `{"rep":1,"family":6,"mode":"xdp","metric":"refused","text":"..."}`: why
//! a mode did not start with IPv6 in its configuration). A record with
//! `"family":6` is an IPv6 figure, kept apart ([`Families`]); one without
//! (every record of a run before IPv6 was measured) or with `"family":4`
//! is IPv4's. Modes are the seven
//! routers (`auto`: xwan run's default `--io auto`, which picks its backend
//! at start; `xdp` and `packet`: xwan --io xdp and --io packet; all three with
//! their in-kernel fast path, on by default; `packet-page`: `packet` with
//! the metrics listener on and its status page polled, `/status.json` and
//! `/` once a second each, for as long as the router runs; `xdp-nooffload`
//! and `packet-nooffload`: the same as xdp and packet with `[dataplane]
//! offload = "off"`; `kernel`),
//! `kernel-xdp` (the kernel recipe
//! with a pass-through XDP program on the router's interfaces, TCP only),
//! `generator` (the generator's ceiling: an XDP drop on the router's LAN
//! interface, no router) and `baseline` (round-trip times without forwarding).
//! Each figure in the report is the median over the repetitions, with the
//! smallest and largest value in brackets.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The routers compared, in table order; the kernel recipe last;
/// `packet-page` next to `packet`, which it is compared with.
pub const ROUTERS: [&str; 7] = [
    "auto",
    "xdp",
    "xdp-nooffload",
    "packet",
    "packet-page",
    "packet-nooffload",
    "kernel",
];

/// The xwan modes with their in-kernel fast path on (xwan's default).
pub const OFFLOAD_ON: [&str; 4] = ["auto", "xdp", "packet", "packet-page"];

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {source}")]
    Parse {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: neither a value nor a text")]
    NoValue { path: String, line: usize },
    #[error("{path}:{line}: family {family}, not 4 or 6")]
    Family {
        path: String,
        line: usize,
        family: u8,
    },
    #[error("{path}: no measurements")]
    Empty { path: String },
    #[error("plot {name}: {message}")]
    Plot { name: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
struct Record {
    rep: u32,
    family: Option<u8>,
    mode: String,
    metric: String,
    value: Option<f64>,
    text: Option<String>,
}

/// Median, smallest and largest of a figure over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    fn of(values: &[f64]) -> Option<Stat> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }
}

/// A run's figures, each family apart: the same modes, metrics and
/// derived figures in both, IPv6's from its own flood, ceiling and baseline.
#[derive(Debug, Default)]
pub struct Families {
    pub v4: Data,
    pub v6: Data,
}

/// Every value by (mode, metric), then by repetition; the texts likewise.
#[derive(Debug, Default)]
pub struct Data {
    values: BTreeMap<(String, String), BTreeMap<u32, f64>>,
    texts: BTreeMap<(String, String), BTreeMap<u32, String>>,
}

impl Data {
    /// The routers of ROUTERS this run measured, in table order: those with
    /// a figure, or refused (the mode did not start with this family).
    pub fn routers(&self) -> Vec<&'static str> {
        ROUTERS
            .into_iter()
            .filter(|r| self.values.keys().any(|(mode, _)| mode == r) || self.refused(r).is_some())
            .collect()
    }

    /// No figure and no text: the run did not measure this family.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.texts.is_empty()
    }

    /// Why the mode did not start with this family in its configuration
    /// (the error xwan run printed), over the repetitions.
    pub fn refused(&self, mode: &str) -> Option<String> {
        self.text(mode, "refused")
    }

    /// A text figure over the repetitions: its distinct values, in order of
    /// first appearance, joined by " / "; None when never recorded.
    pub fn text(&self, mode: &str, metric: &str) -> Option<String> {
        let by_rep = self.texts.get(&(mode.to_string(), metric.to_string()))?;
        let mut seen: Vec<&str> = Vec::new();
        for t in by_rep.values() {
            if !seen.contains(&t.as_str()) {
                seen.push(t);
            }
        }
        Some(seen.join(" / "))
    }

    /// A mode's name in tables and legends; `auto` with the backend it ran,
    /// e.g. "xwan --io auto (packet, offload on)".
    pub fn label(&self, mode: &str) -> String {
        match (mode, self.text(mode, "io")) {
            ("auto", Some(io)) => format!("xwan --io auto ({io}, offload on)"),
            _ => mode_name(mode).to_string(),
        }
    }

    /// A mode's short name, in ratio headers: "auto (packet)", "xdp",
    /// "packet + page polled".
    pub fn short_label(&self, mode: &str) -> String {
        match (mode, self.text(mode, "io")) {
            ("auto", Some(io)) => format!("auto ({io})"),
            ("packet-page", _) => "packet + page polled".to_string(),
            _ => mode.to_string(),
        }
    }

    fn insert(&mut self, rep: u32, mode: &str, metric: &str, value: f64) {
        self.values
            .entry((mode.to_string(), metric.to_string()))
            .or_default()
            .insert(rep, value);
    }

    fn get(&self, rep: u32, mode: &str, metric: &str) -> Option<f64> {
        self.values
            .get(&(mode.to_string(), metric.to_string()))?
            .get(&rep)
            .copied()
    }

    pub fn reps(&self) -> Vec<u32> {
        let mut reps: Vec<u32> = self
            .values
            .values()
            .flat_map(|m| m.keys().copied())
            .collect();
        reps.sort_unstable();
        reps.dedup();
        reps
    }

    pub fn stat(&self, mode: &str, metric: &str) -> Option<Stat> {
        let values: Vec<f64> = self
            .values
            .get(&(mode.to_string(), metric.to_string()))?
            .values()
            .copied()
            .collect();
        Stat::of(&values)
    }

    pub fn median(&self, mode: &str, metric: &str) -> Option<f64> {
        self.stat(mode, metric).map(|s| s.median)
    }

    /// Timed windows during which other build processes ran: (rep, mode,
    /// step, count); None when the run did not look.
    pub fn disturbed(&self) -> Option<Vec<(u32, &str, &str, f64)>> {
        if !self.values.keys().any(|(_, m)| m.starts_with("others_")) {
            return None;
        }
        let mut out = Vec::new();
        for ((mode, metric), reps) in &self.values {
            let Some(step) = metric.strip_prefix("others_") else {
                continue;
            };
            for (rep, n) in reps {
                if *n > 0.0 {
                    out.push((*rep, mode.as_str(), step, *n));
                }
            }
        }
        out.sort_by_key(|d| d.0);
        Some(out)
    }

    /// Figures computed per repetition from others of the same repetition.
    fn derive(&mut self) {
        for rep in self.reps() {
            let ceiling = self.get(rep, "generator", "pps_1k");
            let ceiling_gen2 = self.get(rep, "generator", "pps_1k_gen2");
            let generator_ns = self.get(rep, "generator", "cpu_total_ns");
            let baseline = match (
                self.get(rep, "baseline", "lan_p50"),
                self.get(rep, "baseline", "wan_p50"),
                self.get(rep, "baseline", "lo_p50"),
            ) {
                (Some(lan), Some(wan), Some(lo)) => Some(lan + wan - lo),
                _ => None,
            };
            if let Some(b) = baseline {
                self.insert(rep, "baseline", "path_p50", b);
            }
            for mode in ROUTERS {
                for flows in ["1k", "100k", "1m"] {
                    let pps = self.get(rep, mode, &format!("pps_{flows}"));
                    let sent = self.get(rep, mode, &format!("sent_{flows}"));
                    if let (Some(pps), Some(sent)) = (pps, sent) {
                        if sent > 0.0 {
                            let loss = (1.0 - pps / sent).max(0.0);
                            self.insert(rep, mode, &format!("loss_{flows}"), loss);
                        }
                    }
                }
                let pps_1k = self.get(rep, mode, "pps_1k");
                if let (Some(pps), Some(c)) = (pps_1k, ceiling) {
                    if c > 0.0 {
                        self.insert(rep, mode, "ceiling_frac", pps / c);
                    }
                }
                if let (Some(pps), Some(c)) = (self.get(rep, mode, "pps_1k_gen2"), ceiling_gen2) {
                    if c > 0.0 {
                        self.insert(rep, mode, "ceiling_frac_gen2", pps / c);
                    }
                }
                // Every CPU's busy time per delivered packet, less the same
                // for the generator alone (the ceiling run): what the router
                // adds, each tick counted once.
                if let (Some(total), Some(g)) = (self.get(rep, mode, "cpu_total_ns"), generator_ns)
                {
                    let router = total - g;
                    self.insert(rep, mode, "router_ns", router);
                    if router > 0.0 {
                        self.insert(rep, mode, "pps_per_cpu", 1e9 / router);
                    }
                }
                // The share of the delivered flood that xwan's in-kernel
                // fast path forwarded (it counts the packets it redirects),
                // both counted over the whole flood.
                for step in OFFLOAD_STEPS {
                    let offloaded = self.get(rep, mode, &format!("offloaded_{step}"));
                    let flood = self.get(rep, mode, &format!("flood_{step}"));
                    if let (Some(offloaded), Some(flood)) = (offloaded, flood) {
                        if flood > 0.0 {
                            self.insert(
                                rep,
                                mode,
                                &format!("offload_share_{step}"),
                                offloaded / flood,
                            );
                        }
                    }
                }
                if let (Some(p1k), Some(p1m)) = (pps_1k, self.get(rep, mode, "pps_1m")) {
                    if p1m > 0.0 {
                        self.insert(rep, mode, "slowdown_1m", p1k / p1m);
                    }
                }
                // Only a p50 less a p50: quantiles of different
                // distributions do not subtract.
                for load in LOADS {
                    let metric = format!("lat_{load}_p50");
                    if let (Some(rtt), Some(b)) = (self.get(rep, mode, &metric), baseline) {
                        self.insert(rep, mode, &format!("{metric}_added"), rtt - b);
                    }
                }
            }
        }
    }
}

/// The rate steps whose floods scripts/bench counts whole: `flood_<step>`
/// packets delivered, `offloaded_<step>` of them forwarded by xwan's
/// in-kernel fast path.
const OFFLOAD_STEPS: [&str; 4] = ["1k", "1k_gen2", "100k", "1m"];

/// The loads latency is measured at: idle, 50 % and 90 % of the mode's own
/// 1 k-flow rate.
pub const LOADS: [&str; 3] = ["idle", "50", "90"];
pub const QUANTILES: [&str; 3] = ["p50", "p99", "p999"];

pub fn load(raw: &Path) -> Result<Families, ReportError> {
    let path = raw.display().to_string();
    let text = std::fs::read_to_string(raw).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    let mut families = Families::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line).map_err(|source| ReportError::Parse {
            path: path.clone(),
            line: i + 1,
            source,
        })?;
        let data = match r.family {
            None | Some(4) => &mut families.v4,
            Some(6) => &mut families.v6,
            Some(family) => {
                return Err(ReportError::Family {
                    path: path.clone(),
                    line: i + 1,
                    family,
                })
            }
        };
        match (r.value, r.text) {
            (Some(value), _) => data.insert(r.rep, &r.mode, &r.metric, value),
            (None, Some(text)) => {
                data.texts
                    .entry((r.mode, r.metric))
                    .or_default()
                    .insert(r.rep, text);
            }
            (None, None) => {
                return Err(ReportError::NoValue {
                    path: path.clone(),
                    line: i + 1,
                })
            }
        }
    }
    if families.v4.values.is_empty() && families.v6.values.is_empty() {
        return Err(ReportError::Empty { path });
    }
    families.v4.derive();
    families.v6.derive();
    Ok(families)
}

const MODE_NAMES: [(&str, &str); 8] = [
    ("auto", "xwan --io auto (offload on)"),
    ("xdp", "xwan --io xdp (offload on)"),
    ("xdp-nooffload", "xwan --io xdp, offload off"),
    ("packet", "xwan --io packet (offload on)"),
    (
        "packet-page",
        "xwan --io packet (offload on) + status page polled",
    ),
    ("packet-nooffload", "xwan --io packet, offload off"),
    ("kernel", "kernel recipe"),
    ("kernel-xdp", "kernel recipe + XDP pass program"),
];

pub fn mode_name(mode: &str) -> &str {
    MODE_NAMES
        .iter()
        .find(|(m, _)| *m == mode)
        .map_or(mode, |(_, name)| name)
}

/// `lines` loaded from a raw file of their own (tests run in parallel).
#[cfg(test)]
pub(crate) fn load_lines(lines: &str) -> Result<Families, ReportError> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("xwan-bench-report-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("raw.jsonl");
    std::fs::write(&raw, lines).unwrap();
    let data = load(&raw);
    std::fs::remove_dir_all(&dir).unwrap();
    data
}

/// `lines`, which must load, as [`Data`] (their IPv4 figures).
#[cfg(test)]
pub(crate) fn data_of(lines: &str) -> Data {
    load_lines(lines).unwrap().v4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_share_is_fast_path_packets_over_delivered() {
        let data = data_of(
            r#"{"rep":1,"mode":"xdp","metric":"flood_1k","value":400000}
{"rep":1,"mode":"xdp","metric":"offloaded_1k","value":396000}
{"rep":1,"mode":"xdp","metric":"flood_1m","value":300000}
{"rep":1,"mode":"xdp","metric":"offloaded_1m","value":0}
{"rep":1,"mode":"kernel","metric":"flood_1k","value":350000}
"#,
        );
        assert_eq!(data.median("xdp", "offload_share_1k"), Some(0.99));
        assert_eq!(data.median("xdp", "offload_share_1m"), Some(0.0));
        // No fast path, no share: the kernel recipe's cell stays n/a.
        assert_eq!(data.median("kernel", "offload_share_1k"), None);
        // Nothing delivered: no share rather than a division by zero.
        let none = data_of(
            r#"{"rep":1,"mode":"packet","metric":"flood_100k","value":0}
{"rep":1,"mode":"packet","metric":"offloaded_100k","value":0}
"#,
        );
        assert_eq!(none.median("packet", "offload_share_100k"), None);
    }

    #[test]
    fn auto_is_labelled_with_the_backend_it_ran() {
        let data = data_of(
            r#"{"rep":1,"mode":"auto","metric":"io","text":"packet"}
{"rep":1,"mode":"auto","metric":"pps_1k","value":300000}
{"rep":1,"mode":"xdp","metric":"io","text":"xdp (copy)"}
{"rep":1,"mode":"xdp","metric":"pps_1k","value":250000}
{"rep":1,"mode":"kernel","metric":"pps_1k","value":200000}
{"rep":2,"mode":"auto","metric":"io","text":"packet"}
"#,
        );
        assert_eq!(data.label("auto"), "xwan --io auto (packet, offload on)");
        assert_eq!(data.short_label("auto"), "auto (packet)");
        // Only auto carries its backend in its name; xdp's is a note.
        assert_eq!(data.label("xdp"), "xwan --io xdp (offload on)");
        assert_eq!(data.text("xdp", "io").as_deref(), Some("xdp (copy)"));
        // Only the routers measured, auto first, the kernel recipe last.
        assert_eq!(data.routers(), ["auto", "xdp", "kernel"]);
        // Two backends over the repetitions: both named.
        let mixed = data_of(
            r#"{"rep":1,"mode":"auto","metric":"io","text":"packet"}
{"rep":2,"mode":"auto","metric":"io","text":"xdp (zero-copy)"}
{"rep":1,"mode":"auto","metric":"pps_1k","value":1}
"#,
        );
        assert_eq!(mixed.short_label("auto"), "auto (packet / xdp (zero-copy))");
        // Not recorded (an older raw.jsonl): the plain name.
        let old = data_of(r#"{"rep":1,"mode":"auto","metric":"pps_1k","value":1}"#);
        assert_eq!(old.label("auto"), "xwan --io auto (offload on)");
    }

    #[test]
    fn packet_page_sits_next_to_packet_and_says_the_page_is_polled() {
        let data = data_of(
            r#"{"rep":1,"mode":"kernel","metric":"pps_1k","value":200000}
{"rep":1,"mode":"packet-page","metric":"io","text":"packet"}
{"rep":1,"mode":"packet-page","metric":"pps_1k","value":290000}
{"rep":1,"mode":"packet-page","metric":"page_answered","value":80}
{"rep":1,"mode":"packet","metric":"io","text":"packet"}
{"rep":1,"mode":"packet","metric":"pps_1k","value":300000}
{"rep":1,"mode":"xdp","metric":"pps_1k","value":250000}
"#,
        );
        assert_eq!(data.routers(), ["xdp", "packet", "packet-page", "kernel"]);
        assert_eq!(
            data.label("packet-page"),
            "xwan --io packet (offload on) + status page polled"
        );
        assert_eq!(data.short_label("packet-page"), "packet + page polled");
        assert_eq!(data.label("packet"), "xwan --io packet (offload on)");
        assert!(OFFLOAD_ON.contains(&"packet-page"));
        assert_eq!(data.median("packet-page", "page_answered"), Some(80.0));
    }

    #[test]
    fn ipv6_records_are_a_family_apart_with_their_own_ceiling() {
        let families = load_lines(
            r#"{"rep":1,"mode":"generator","metric":"pps_1k","value":400000}
{"rep":1,"mode":"kernel","metric":"pps_1k","value":200000}
{"rep":1,"family":4,"mode":"packet","metric":"pps_1k","value":300000}
{"rep":1,"family":6,"mode":"generator","metric":"pps_1k","value":360000}
{"rep":1,"family":6,"mode":"kernel","metric":"pps_1k","value":180000}
{"rep":1,"family":6,"mode":"xdp","metric":"refused","text":"the configuration has IPv6"}
"#,
        )
        .unwrap();
        assert_eq!(families.v4.median("kernel", "ceiling_frac"), Some(0.5));
        assert_eq!(families.v6.median("kernel", "ceiling_frac"), Some(0.5));
        assert_eq!(families.v4.median("packet", "pps_1k"), Some(300000.0));
        assert_eq!(families.v6.median("packet", "pps_1k"), None);
        // A refused mode is a column of its own, with its reason.
        assert_eq!(families.v6.routers(), ["xdp", "kernel"]);
        assert_eq!(
            families.v6.refused("xdp").as_deref(),
            Some("the configuration has IPv6")
        );
        assert_eq!(families.v4.refused("xdp"), None);
        let err = load_lines(r#"{"rep":1,"family":5,"mode":"kernel","metric":"pps_1k","value":1}"#)
            .unwrap_err();
        assert!(
            matches!(err, ReportError::Family { family: 5, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_record_needs_a_value_or_a_text() {
        let err = load_lines(r#"{"rep":1,"mode":"auto","metric":"io"}"#).unwrap_err();
        assert!(matches!(err, ReportError::NoValue { line: 1, .. }), "{err}");
    }
}

//! Prometheus metrics: the text exposition format (version 0.0.4) rendered
//! from the router's counters, health reports and worker figures, served by a
//! small HTTP/1.1 responder off the data path (`http.rs`).

mod http;

use std::fmt::Write as _;

use super::protocol::{FeatureLine, OffloadReport, UplinkControl, WorkerReport};
use crate::router::{Stats, UplinkStats};

pub use http::{
    MetricsServer, MetricsSource, PageAccess, MAX_CONNECTIONS, REQUEST_DEADLINE, STOP_CHECK,
};

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One uplink in service, as the metrics show it.
pub struct Uplink<'a> {
    pub name: &'a str,
    pub stats: &'a UplinkStats,
    pub control: &'a UplinkControl,
}

/// Everything the metrics are made of, read at one moment.
pub struct Snapshot<'a> {
    pub uplinks: &'a [Uplink<'a>],
    pub stats: &'a Stats,
    pub workers: &'a [WorkerReport],
    pub uptime_s: f64,
}

/// Writes metric families: a HELP and a TYPE line, then the samples.
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape(text));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the format spells it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// The metrics in the text format.
pub fn render(s: &Snapshot) -> String {
    let mut w = Writer { out: String::new() };
    let totals = &s.stats.totals;

    w.family(
        "xwan_uplink_up",
        "gauge",
        "Whether the uplink takes new flows (1) or not (0).",
    );
    for u in s.uplinks {
        w.sample(
            "xwan_uplink_up",
            &[("uplink", u.name)],
            f64::from(u8::from(u.stats.up)),
        );
    }
    w.family(
        "xwan_packets_total",
        "counter",
        "Packets forwarded through the uplink: out to the Internet, in to the LAN.",
    );
    for u in s.uplinks {
        let t = &u.stats.traffic;
        for (direction, n) in [("out", t.packets_out), ("in", t.packets_in)] {
            w.sample(
                "xwan_packets_total",
                &[("uplink", u.name), ("direction", direction)],
                n as f64,
            );
        }
    }
    w.family(
        "xwan_bytes_total",
        "counter",
        "Bytes (from the IP header on) forwarded through the uplink.",
    );
    for u in s.uplinks {
        let t = &u.stats.traffic;
        for (direction, n) in [("out", t.bytes_out), ("in", t.bytes_in)] {
            w.sample(
                "xwan_bytes_total",
                &[("uplink", u.name), ("direction", direction)],
                n as f64,
            );
        }
    }
    w.family(
        "xwan_uplink_ipv6_up",
        "gauge",
        "Whether an uplink that carries IPv6 takes new IPv6 flows (1) or not (0).",
    );
    for u in s.uplinks {
        if let Some(v6) = &u.stats.ipv6 {
            w.sample(
                "xwan_uplink_ipv6_up",
                &[("uplink", u.name)],
                f64::from(u8::from(v6.up)),
            );
        }
    }
    w.family(
        "xwan_uplink_ipv6_flows",
        "gauge",
        "IPv6 flows pinned to the uplink.",
    );
    for u in s.uplinks {
        if let Some(v6) = &u.stats.ipv6 {
            w.sample(
                "xwan_uplink_ipv6_flows",
                &[("uplink", u.name)],
                f64::from(v6.flows),
            );
        }
    }
    w.family("xwan_uplink_flows", "gauge", "Flows pinned to the uplink.");
    for u in s.uplinks {
        w.sample(
            "xwan_uplink_flows",
            &[("uplink", u.name)],
            f64::from(u.stats.flows),
        );
    }
    w.family(
        "xwan_nat_ports_in_use",
        "gauge",
        "SNAT mappings in use on the uplink (ICMP: echo identifiers).",
    );
    for u in s.uplinks {
        for (protocol, n) in ["tcp", "udp", "icmp"].iter().zip(u.stats.nat_in_use) {
            w.sample(
                "xwan_nat_ports_in_use",
                &[("uplink", u.name), ("protocol", protocol)],
                n as f64,
            );
        }
    }
    w.family(
        "xwan_probe_rtt_seconds",
        "gauge",
        "Mean round-trip time of the answered health probes of the recent rounds.",
    );
    for u in s.uplinks {
        if let Some(ms) = u.control.rtt_ms {
            w.sample("xwan_probe_rtt_seconds", &[("uplink", u.name)], ms / 1000.0);
        }
    }
    w.family(
        "xwan_probe_loss_ratio",
        "gauge",
        "Share of the health probes of the recent rounds left unanswered, 0 to 1.",
    );
    for u in s.uplinks {
        w.sample(
            "xwan_probe_loss_ratio",
            &[("uplink", u.name)],
            u.control.loss,
        );
    }

    w.single(
        "xwan_forwarded_total",
        "counter",
        "Frames the core forwarded.",
        totals.forwarded as f64,
    );
    w.single(
        "xwan_taken_total",
        "counter",
        "Frames the core was done with without sending them (later fragments held, frames answered with an error bigger than themselves).",
        totals.taken as f64,
    );
    w.single(
        "xwan_fragments_held_total",
        "counter",
        "Later fragments held until their first fragment came (each forwarded or dropped after).",
        totals.held as f64,
    );
    w.single(
        "xwan_fragments_held",
        "gauge",
        "Later fragments held now.",
        s.stats.fragments.held as f64,
    );
    w.family(
        "xwan_drops_total",
        "counter",
        "Frames the core dropped, by reason.",
    );
    for (reason, n) in &totals.drops {
        w.sample("xwan_drops_total", &[("reason", reason.label())], *n as f64);
    }
    w.family(
        "xwan_kernel_total",
        "counter",
        "Frames the core left to the kernel, by reason.",
    );
    for (reason, n) in &totals.kernel {
        w.sample(
            "xwan_kernel_total",
            &[("reason", reason.label())],
            *n as f64,
        );
    }
    w.family(
        "xwan_icmp_errors_sent_total",
        "counter",
        "ICMP errors the core sent itself, by type.",
    );
    for (kind, n) in [
        ("time_exceeded", totals.time_exceeded_sent),
        ("frag_needed", totals.frag_needed_sent),
    ] {
        w.sample("xwan_icmp_errors_sent_total", &[("type", kind)], n as f64);
    }
    w.family(
        "xwan_icmp6_errors_sent_total",
        "counter",
        "ICMPv6 errors the core sent itself, by type.",
    );
    let sent6 = &totals.icmp6_sent;
    for (kind, n) in [
        ("time_exceeded", sent6.time_exceeded),
        ("packet_too_big", sent6.packet_too_big),
        ("unreachable", sent6.unreachable),
    ] {
        w.sample("xwan_icmp6_errors_sent_total", &[("type", kind)], n as f64);
    }

    let table = &s.stats.table;
    w.single(
        "xwan_flows",
        "gauge",
        "Flows in the table.",
        f64::from(table.flows),
    );
    w.single(
        "xwan_flows_max",
        "gauge",
        "The flow table's limit (limits.max_flows).",
        f64::from(table.max_flows),
    );
    w.single(
        "xwan_flow_inserts_total",
        "counter",
        "Flows created.",
        table.inserts as f64,
    );
    w.single(
        "xwan_flow_expiries_total",
        "counter",
        "Flows removed after their idle timeout.",
        table.expiries as f64,
    );
    w.single(
        "xwan_flow_refusals_total",
        "counter",
        "New flows refused because the table was full.",
        table.refusals as f64,
    );
    w.single(
        "xwan_flow_evictions_total",
        "counter",
        "Unanswered flows (a lone SYN, UDP with no reply) evicted to make room when the table was full.",
        table.evictions as f64,
    );
    w.single(
        "xwan_sticky_clients",
        "gauge",
        "Clients whose new connections stick to one uplink.",
        s.stats.sticky_clients as f64,
    );

    if !s.workers.is_empty() {
        for (name, help, value) in [
            (
                "xwan_worker_rx_packets_total",
                "Frames a worker received from its sockets.",
                (|r: &WorkerReport| r.rx_packets as f64) as fn(&WorkerReport) -> f64,
            ),
            (
                "xwan_worker_tx_packets_total",
                "Frames a worker put on a transmit ring.",
                |r| r.tx_packets as f64,
            ),
            (
                "xwan_worker_batches_total",
                "Non-empty receive batches a worker handled.",
                |r| r.batches as f64,
            ),
            (
                "xwan_worker_punted_total",
                "Frames the core left to the kernel that a worker handed to it through the punt device.",
                |r| r.punted as f64,
            ),
            (
                "xwan_worker_punt_failed_total",
                "Frames the core left to the kernel that the punt device refused (lost).",
                |r| r.punt_failed as f64,
            ),
            (
                "xwan_worker_gso_passthrough_total",
                "GSO super-frames a worker passed through whole (--io packet).",
                |r| r.gso_passthrough as f64,
            ),
            (
                "xwan_worker_gso_passthrough_bytes_total",
                "Bytes of the GSO super-frames a worker passed through whole.",
                |r| r.gso_passthrough_bytes as f64,
            ),
        ] {
            w.family(name, "counter", help);
            for r in s.workers {
                let queue = r.queue.to_string();
                w.sample(name, &[("queue", &queue)], value(r));
            }
        }
        w.family(
            "xwan_worker_idle_ratio",
            "gauge",
            "Share of a worker's loop rounds that found nothing to do, 0 to 1.",
        );
        for r in s.workers {
            let queue = r.queue.to_string();
            w.sample("xwan_worker_idle_ratio", &[("queue", &queue)], r.idle_ratio);
        }
    }

    w.single(
        "xwan_uptime_seconds",
        "gauge",
        "Seconds since the router started.",
        s.uptime_s,
    );
    w.family("xwan_build_info", "gauge", "The running xwan's version.");
    w.sample("xwan_build_info", &[("version", crate::VERSION)], 1.0);
    w.out
}

/// The optional kernel features probed at start: `xwan_feature{name,state}`
/// 1 for each (`xwan check --kernel` prints the same).
pub fn render_features(features: &[FeatureLine]) -> String {
    let mut w = Writer { out: String::new() };
    w.family(
        "xwan_feature",
        "gauge",
        "An optional kernel feature and what its probe found at start (1).",
    );
    for line in features {
        w.sample(
            "xwan_feature",
            &[("name", &line.name), ("state", line.state.name())],
            1.0,
        );
    }
    w.out
}

/// The in-kernel fast path's metrics (`[dataplane] offload`).
pub fn render_offload(r: &OffloadReport) -> String {
    let mut w = Writer { out: String::new() };
    w.family(
        "xwan_offload_hook",
        "gauge",
        "The hook that forwards the in-kernel fast path's frames leaving through each interface (1).",
    );
    for (interface, hook) in &r.hooks {
        w.sample(
            "xwan_offload_hook",
            &[("interface", interface), ("hook", hook)],
            1.0,
        );
    }
    for (name, kind, help, value) in [
        (
            "xwan_offload_entries",
            "gauge",
            "Entries of the fast path's maps (two per offloaded flow), IPv4 and IPv6.",
            r.entries,
        ),
        (
            "xwan_offload_ipv6_entries",
            "gauge",
            "Of the fast path's entries, IPv6 flows' (two per offloaded flow).",
            r.entries6,
        ),
        (
            "xwan_offload_capacity",
            "gauge",
            "Entries the fast path's maps hold at most (IPv4's and IPv6's, half each).",
            r.capacity,
        ),
        (
            "xwan_offload_refused_full_total",
            "counter",
            "Flows the full map refused (they stay with the workers), each counted once.",
            r.refused_full,
        ),
        (
            "xwan_offload_map_errors_total",
            "counter",
            "Fast path entries that could not be written or removed.",
            r.map_errors,
        ),
        (
            "xwan_offload_lost_total",
            "counter",
            "Frames passed for the fast path whose entry was gone when TC looked: dropped, not left to the kernel un-NATed.",
            r.lost,
        ),
        (
            "xwan_offload_packets_total",
            "counter",
            "Packets forwarded by the in-kernel fast path.",
            r.packets,
        ),
        (
            "xwan_offload_bytes_total",
            "counter",
            "Bytes forwarded by the in-kernel fast path.",
            r.bytes,
        ),
        (
            "xwan_offload_xdp_packets_total",
            "counter",
            "Packets of the in-kernel fast path forwarded by the XDP program itself (the rest: by TC).",
            r.xdp_packets,
        ),
    ] {
        w.single(name, kind, help, value as f64);
    }
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::FeatureState;

    #[test]
    fn label_values_and_numbers_are_spelled_as_the_format_wants() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        let mut w = Writer { out: String::new() };
        w.single("x_total", "counter", "Things.", 2.0);
        w.sample("y", &[("a", "1"), ("b", "q\"")], 0.25);
        assert_eq!(
            w.out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 2\ny{a=\"1\",b=\"q\\\"\"} 0.25\n"
        );
    }

    #[test]
    fn a_feature_is_one_sample_with_its_state() {
        let line = |name: &str, state| FeatureLine {
            name: name.into(),
            state,
            detail: "why".into(),
            effect: "what".into(),
        };
        let out = render_features(&[
            line("xdp-meta", FeatureState::Unavailable),
            line("tcx", FeatureState::Available),
        ]);
        assert!(out.starts_with("# HELP xwan_feature "));
        assert!(out.contains("\nxwan_feature{name=\"xdp-meta\",state=\"unavailable\"} 1\n"));
        assert!(out.contains("\nxwan_feature{name=\"tcx\",state=\"available\"} 1\n"));
    }

    #[test]
    fn offload_metrics_name_each_hook_and_count() {
        let out = render_offload(&OffloadReport {
            state: "on".into(),
            hooks: vec![("lan0".into(), "tc".into()), ("wan1".into(), "xdp".into())],
            entries: 4,
            capacity: 131072,
            entries6: 2,
            refused_full: 1,
            map_errors: 0,
            lost: 3,
            packets: 1000,
            bytes: 1_500_000,
            xdp_packets: 600,
        });
        assert!(out.contains("xwan_offload_hook{interface=\"lan0\",hook=\"tc\"} 1\n"));
        assert!(out.contains("xwan_offload_hook{interface=\"wan1\",hook=\"xdp\"} 1\n"));
        assert!(out.contains("\nxwan_offload_xdp_packets_total 600\n"));
        assert!(out.contains("\nxwan_offload_entries 4\n"));
        assert!(out.contains("\nxwan_offload_ipv6_entries 2\n"));
        assert!(out.contains("\nxwan_offload_refused_full_total 1\n"));
        assert!(out.contains("\nxwan_offload_lost_total 3\n"));
        assert!(out.contains("\nxwan_offload_packets_total 1000\n"));
        assert!(out.contains("\nxwan_offload_bytes_total 1500000\n"));
        assert!(out.contains("# TYPE xwan_offload_packets_total counter\n"));
    }
}

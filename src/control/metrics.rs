//! Prometheus metrics: the text exposition format (version 0.0.4) rendered
//! from the router's counters, health reports and worker figures, served by a
//! small HTTP/1.1 responder off the data path.
//!
//! `GET /metrics` answers 200 with the metrics; any other request 404. One
//! request per connection, at most 8 KiB of request head. Up to
//! [`MAX_CONNECTIONS`] connections are served at once, each on a thread of its
//! own; one more is answered 503 at once. Each connection has
//! [`REQUEST_DEADLINE`] for the whole exchange (reading the request, writing
//! the answer), however slowly its client trickles bytes, and notices a stop
//! within [`STOP_CHECK`]: a slow client neither holds up another scrape nor
//! xwan's shutdown.
//!
//! The responder is written here rather than taken from a crate: it reads one
//! request line and writes one response, and the small servers (tiny_http
//! 0.12) have neither a per-connection deadline nor a bound on their
//! connection threads, which are the two things it must have.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{OffloadReport, UplinkControl, WorkerReport};
use super::ControlError;
use crate::router::{Stats, UplinkStats};

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;

/// How long one connection may take, from accept to the last byte written.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// The longest a connection thread waits on its client before it checks
/// whether the server is stopping.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// Renders the metrics when they are asked for.
pub trait MetricsSource: Send + Sync + 'static {
    fn metrics(&self) -> String;
}

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

/// A running metrics endpoint.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and answers `GET /metrics` from `source` until
    /// [`MetricsServer::stop`].
    pub fn start(
        addr: SocketAddr,
        source: Arc<dyn MetricsSource>,
    ) -> Result<MetricsServer, ControlError> {
        let error = |source| ControlError::Metrics { addr, source };
        let listener = TcpListener::bind(addr).map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("xwan-metrics".into())
                .spawn(move || accept_loop(&listener, &source, &stop))
                .map_err(error)?
        };
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// Accepts connections until `stop`, each served on a thread of its own (at
/// most [`MAX_CONNECTIONS`]); then waits for them, which takes at most
/// [`STOP_CHECK`].
fn accept_loop(listener: &TcpListener, source: &Arc<dyn MetricsSource>, stop: &Arc<AtomicBool>) {
    let mut serving: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        serving.retain(|handle| !handle.is_finished());
        if serving.len() >= MAX_CONNECTIONS {
            refuse(
                &mut stream,
                "503 Service Unavailable",
                "too many metrics connections\n",
            );
            continue;
        }
        let (source, stop) = (Arc::clone(source), Arc::clone(stop));
        let spawned = std::thread::Builder::new()
            .name("xwan-metrics-conn".into())
            .spawn(move || serve(stream, source.as_ref(), &stop));
        if let Ok(handle) = spawned {
            serving.push(handle);
        }
    }
    for handle in serving {
        let _ = handle.join();
    }
}

/// Why a connection gave up.
enum Cut {
    /// The client closed, sent garbage, or the socket failed.
    Failed,
    /// The deadline passed or the server is stopping.
    OutOfTime,
}

/// The time left before `deadline`, at most [`STOP_CHECK`]; None when it has
/// passed or the server is stopping.
fn next_wait(deadline: Instant, stop: &AtomicBool) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    if stop.load(Ordering::SeqCst) || left.is_zero() {
        return None;
    }
    Some(left.min(STOP_CHECK))
}

/// Whether a read or write error only means the wait ran out (or a signal
/// came): try again if there is time left.
fn waited(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// Reads the request head: up to the blank line, at most [`MAX_REQUEST_BYTES`],
/// before `deadline`.
fn read_head(stream: &mut TcpStream, deadline: Instant, stop: &AtomicBool) -> Result<String, Cut> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST_BYTES {
            return Err(Cut::Failed);
        }
        let wait = next_wait(deadline, stop).ok_or(Cut::OutOfTime)?;
        stream
            .set_read_timeout(Some(wait))
            .map_err(|_| Cut::Failed)?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(Cut::Failed),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if waited(&e) => {}
            Err(_) => return Err(Cut::Failed),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Writes all of `bytes` before `deadline`; false when it could not.
fn write_before(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> bool {
    while !bytes.is_empty() {
        let Some(wait) = next_wait(deadline, stop) else {
            return false;
        };
        if stream.set_write_timeout(Some(wait)).is_err() {
            return false;
        }
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if waited(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

/// The status line and body for a request head.
fn answer(head: Option<&str>, source: &dyn MetricsSource) -> (&'static str, String) {
    let Some(line) = head.and_then(|h| h.lines().next()) else {
        return ("400 Bad Request", "bad request\n".into());
    };
    let mut words = line.split_whitespace();
    let (method, target) = (words.next(), words.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    match (method, path) {
        (Some("GET"), Some("/metrics")) => ("200 OK", source.metrics()),
        (Some(_), Some(_)) => (
            "404 Not Found",
            "not found: xwan serves GET /metrics\n".into(),
        ),
        _ => ("400 Bad Request", "bad request\n".into()),
    }
}

/// A whole HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers an error in one short write (at most [`STOP_CHECK`]) and gives up.
fn refuse(stream: &mut TcpStream, status: &str, body: &str) {
    let _ = stream.set_write_timeout(Some(STOP_CHECK));
    let _ = stream.write_all(&response(status, "text/plain; charset=utf-8", body));
}

/// Serves one connection within [`REQUEST_DEADLINE`]; a client out of time is
/// answered 408 if it can still take it.
fn serve(mut stream: TcpStream, source: &dyn MetricsSource, stop: &AtomicBool) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let (status, body) = match read_head(&mut stream, deadline, stop) {
        Ok(head) => answer(Some(&head), source),
        Err(Cut::Failed) => answer(None, source),
        Err(Cut::OutOfTime) => {
            refuse(
                &mut stream,
                "408 Request Timeout",
                "request not received in time\n",
            );
            return;
        }
    };
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let _ = write_before(
        &mut stream,
        &response(status, content_type, &body),
        deadline,
        stop,
    );
}

/// The in-kernel fast path's metrics (`[dataplane] offload`).
pub fn render_offload(r: &OffloadReport) -> String {
    let mut w = Writer { out: String::new() };
    w.family(
        "xwan_offload_hook",
        "gauge",
        "The hook of the in-kernel fast path on each interface (1).",
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
            "Entries of the fast path's map (two per offloaded flow).",
            r.entries,
        ),
        (
            "xwan_offload_capacity",
            "gauge",
            "Entries the fast path's map holds at most.",
            r.capacity,
        ),
        (
            "xwan_offload_refused_full_total",
            "counter",
            "Entries the full map refused (their flows stay with the workers).",
            r.refused_full,
        ),
        (
            "xwan_offload_map_errors_total",
            "counter",
            "Fast path entries that could not be written or removed.",
            r.map_errors,
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
    ] {
        w.single(name, kind, help, value as f64);
    }
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn offload_metrics_name_each_hook_and_count() {
        let out = render_offload(&OffloadReport {
            state: "on".into(),
            hooks: vec![("lan0".into(), "tc".into()), ("wan1".into(), "tc".into())],
            entries: 4,
            capacity: 65536,
            refused_full: 1,
            map_errors: 0,
            packets: 1000,
            bytes: 1_500_000,
        });
        assert!(out.contains("xwan_offload_hook{interface=\"lan0\",hook=\"tc\"} 1\n"));
        assert!(out.contains("xwan_offload_hook{interface=\"wan1\",hook=\"tc\"} 1\n"));
        assert!(out.contains("\nxwan_offload_entries 4\n"));
        assert!(out.contains("\nxwan_offload_refused_full_total 1\n"));
        assert!(out.contains("\nxwan_offload_packets_total 1000\n"));
        assert!(out.contains("\nxwan_offload_bytes_total 1500000\n"));
        assert!(out.contains("# TYPE xwan_offload_packets_total counter\n"));
    }
}

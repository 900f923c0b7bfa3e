//! The Prometheus endpoint: metrics rendered from a live router core, read
//! back with a real parser of the text format, and the HTTP responder's
//! answers to good and bad requests.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use xwan::config::Config;
use xwan::control::metrics::{self, MetricsServer, MetricsSource, PageAccess, Snapshot, Uplink};
use xwan::control::protocol::{AdminState, Cause, UplinkControl, WorkerReport};
use xwan::router::{FrameMeta, InterfaceMacs, Port, Router, Verdict};
use xwan::testing::{self, Addressing, SYN};

const CONFIG: &str = testing::TWO_UPLINKS;

/// A router core with traffic through it: three TCP SYNs out (nth: isp1,
/// isp2, isp1) and one frame dropped as spoofed.
fn busy_router() -> Router {
    let config = Config::from_toml(CONFIG, Path::new("test.toml")).unwrap();
    let router = Router::new(
        &config,
        InterfaceMacs {
            lan: [2, 0, 0, 0, 0, 1],
            wans: vec![[2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 2, 2]],
        },
    );
    for id in 0..2u8 {
        router.set_gateway_mac(id, Some([2, 0, 0, 0, id + 1, 1]));
        router.set_uplink_up(id, true);
    }
    let mut lane = router.lane();
    let meta = |port| FrameMeta {
        port,
        now: Duration::from_secs(10),
        checksum_partial: false,
        gso: None,
    };
    let lan = Addressing {
        src_mac: [2, 0, 0, 0, 0, 0x10],
        dst_mac: [2, 0, 0, 0, 0, 1],
        src: Ipv4Addr::new(192, 168, 50, 10),
        dst: Ipv4Addr::new(203, 0, 113, 10),
        ttl: 64,
    };
    for port in 40000..40003 {
        let mut frame = testing::tcp(&lan, port, 80, SYN, b"");
        let verdict = router.process(&mut lane, &mut frame, meta(Port::Lan));
        assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
    }
    let spoofed = Addressing {
        src: Ipv4Addr::new(192, 168, 50, 99),
        dst: Ipv4Addr::new(198, 18, 1, 2),
        ..lan
    };
    let mut frame = testing::tcp(&spoofed, 1, 40000, SYN, b"");
    router.process(&mut lane, &mut frame, meta(Port::Wan(0)));
    router
}

fn render(router: &Router) -> String {
    let stats = router.stats();
    let controls = [
        UplinkControl {
            admin: AdminState::Auto,
            cause: None,
            cause6: None,
            since_s: 5,
            rtt_ms: Some(1.5),
            loss: 0.1,
        },
        UplinkControl {
            admin: AdminState::Down,
            cause: Some(Cause::Admin),
            cause6: None,
            since_s: 5,
            rtt_ms: None,
            loss: 1.0,
        },
    ];
    let names = ["isp1", "isp2"];
    let uplinks: Vec<Uplink> = names
        .iter()
        .zip(&stats.uplinks)
        .zip(&controls)
        .map(|((name, stats), control)| Uplink {
            name,
            stats,
            control,
        })
        .collect();
    let workers = [WorkerReport {
        queue: 0,
        rx_packets: 4,
        tx_packets: 3,
        batches: 2,
        idle_ratio: 0.75,
        punted: 1,
        punt_failed: 0,
        gso_passthrough: 5,
        gso_passthrough_bytes: 320_000,
    }];
    metrics::render(&Snapshot {
        uplinks: &uplinks,
        stats: &stats,
        workers: &workers,
        uptime_s: 12.5,
    })
}

/// Parses the text with the real parser and checks that it took every line:
/// each sample line became a sample, of a family with HELP and a TYPE.
fn parse(text: &str) -> Scrape {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let sample_lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines,
        "every sample line parsed"
    );
    for sample in &scrape.samples {
        assert!(
            scrape.docs.contains_key(&sample.metric),
            "{} has HELP",
            sample.metric
        );
        assert!(
            matches!(sample.value, Value::Counter(_) | Value::Gauge(_)),
            "{} is typed: {:?}",
            sample.metric,
            sample.value
        );
    }
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(types, helps);
    let families: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(families.len(), types, "each family declared once");
    scrape
}

fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
    match found.value {
        Value::Counter(v) | Value::Gauge(v) => v,
        ref other => panic!("{metric}: {other:?}"),
    }
}

#[test]
fn metrics_from_a_live_core_parse_with_the_real_parser() {
    let router = busy_router();
    let text = render(&router);
    let scrape = parse(&text);
    let isp2 = "isp2";
    assert_eq!(value(&scrape, "xwan_uplink_up", &[("uplink", "isp1")]), 1.0);
    assert_eq!(
        value(
            &scrape,
            "xwan_packets_total",
            &[("uplink", "isp1"), ("direction", "out")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &scrape,
            "xwan_packets_total",
            &[("uplink", isp2), ("direction", "out")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "xwan_bytes_total",
            &[("uplink", "isp1"), ("direction", "in")]
        ),
        0.0
    );
    assert!(
        value(
            &scrape,
            "xwan_bytes_total",
            &[("uplink", "isp1"), ("direction", "out")]
        ) >= 80.0
    );
    assert_eq!(
        value(&scrape, "xwan_drops_total", &[("reason", "spoofed_source")]),
        1.0
    );
    assert_eq!(
        value(&scrape, "xwan_drops_total", &[("reason", "table_full")]),
        0.0
    );
    assert_eq!(
        value(&scrape, "xwan_kernel_total", &[("reason", "not_ipv4")]),
        0.0
    );
    assert_eq!(value(&scrape, "xwan_flows", &[]), 3.0);
    assert_eq!(value(&scrape, "xwan_flows_max", &[]), 1048576.0);
    assert_eq!(value(&scrape, "xwan_flow_inserts_total", &[]), 3.0);
    assert_eq!(value(&scrape, "xwan_flow_expiries_total", &[]), 0.0);
    assert_eq!(
        value(
            &scrape,
            "xwan_nat_ports_in_use",
            &[("uplink", "isp1"), ("protocol", "tcp")]
        ),
        2.0
    );
    assert_eq!(
        value(&scrape, "xwan_uplink_flows", &[("uplink", isp2)]),
        1.0
    );
    assert_eq!(
        value(&scrape, "xwan_probe_rtt_seconds", &[("uplink", "isp1")]),
        0.0015
    );
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == "xwan_probe_rtt_seconds" && s.labels.get("uplink") == Some(isp2)),
        "no RTT sample without an answered probe"
    );
    assert_eq!(
        value(&scrape, "xwan_probe_loss_ratio", &[("uplink", isp2)]),
        1.0
    );
    assert_eq!(
        value(&scrape, "xwan_worker_idle_ratio", &[("queue", "0")]),
        0.75
    );
    assert_eq!(
        value(&scrape, "xwan_worker_punted_total", &[("queue", "0")]),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "xwan_worker_gso_passthrough_bytes_total",
            &[("queue", "0")]
        ),
        320_000.0
    );
    assert_eq!(value(&scrape, "xwan_uptime_seconds", &[]), 12.5);
    assert!(text.contains("# TYPE xwan_packets_total counter\n"));
    assert!(text.contains("# TYPE xwan_flows gauge\n"));
}

struct Fixed(String);

impl MetricsSource for Fixed {
    fn metrics(&self) -> String {
        self.0.clone()
    }

    fn page_document(&self) -> String {
        "{\"page\":1}".into()
    }
}

/// The status page on, without a token.
fn page_on() -> PageAccess {
    PageAccess {
        on: true,
        token: None,
    }
}

/// Sends `request` raw and reads the whole response.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before a long request is all sent.
    let _ = stream.write_all(request);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn the_http_responder_serves_get_metrics_and_refuses_the_rest() {
    let text = render(&busy_router());
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Fixed(text.clone())),
        PageAccess::default(),
    )
    .unwrap();
    let addr = server.local_addr();

    let ok = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = ok.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    assert_eq!(body, text);
    parse(body);

    let query = http(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert!(query.starts_with("HTTP/1.1 200 OK"), "{query}");
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET /status.json HTTP/1.1\r\n\r\n",
        b"GET /metricsx HTTP/1.1\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ] {
        let response = http(addr, request);
        assert!(
            response.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{response}"
        );
    }
    let garbage = http(addr, b"\x00\x01\x02\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let huge = http(addr, &vec![b'a'; 64 * 1024]);
    assert!(huge.starts_with("HTTP/1.1 400"), "{huge}");

    // Still serving.
    assert!(http(addr, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
    server.stop();
    assert!(TcpStream::connect(addr).is_err(), "stopped");
}

/// A client sending its request a byte every 2.9 s (each read alone would be
/// quick enough) holds up no other scrape, and is cut off at the deadline of
/// its whole request.
#[test]
fn a_slow_client_does_not_hold_up_another_scrape() {
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Fixed("x 1\n".into())),
        page_on(),
    )
    .unwrap();
    let addr = server.local_addr();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for byte in b"GET" {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2900));
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let asked = Instant::now();
        let ok = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.ends_with("x 1\n"), "{ok}");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
    }
    let mut cut = String::new();
    let _ = slow.read_to_string(&mut cut);
    let took = started.elapsed();
    assert!(cut.starts_with("HTTP/1.1 408"), "{cut:?}");
    assert!(
        took >= metrics::REQUEST_DEADLINE - Duration::from_millis(300)
            && took < metrics::REQUEST_DEADLINE + Duration::from_secs(1),
        "cut after {took:?}"
    );
    trickle.join().unwrap();
    server.stop();
}

/// At most MAX_CONNECTIONS clients are served at once; one more is told so at
/// once; stopping with every slot held by a silent client is prompt.
#[test]
fn connections_are_bounded_and_never_delay_the_stop() {
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Fixed("x 1\n".into())),
        page_on(),
    )
    .unwrap();
    let addr = server.local_addr();
    let silent: Vec<TcpStream> = (0..metrics::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    let busy = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(asked.elapsed() < Duration::from_secs(1));
    let stopping = Instant::now();
    server.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        stopping.elapsed()
    );
    assert!(TcpStream::connect(addr).is_err(), "stopped");
    drop(silent);
}

/// With the page on, `GET /` is the page and `GET /status.json` its
/// document; a token, when set, is asked of both (never of the metrics), in
/// the query or an Authorization header.
#[test]
fn the_status_page_and_its_document_ask_for_the_token() {
    let token = "0123456789abcdef-token";
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Fixed("x 1\n".into())),
        PageAccess {
            on: true,
            token: Some(token.into()),
        },
    )
    .unwrap();
    let addr = server.local_addr();
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET /status.json HTTP/1.1\r\n\r\n",
        b"GET /status.json?token=0123456789abcdef-tokex HTTP/1.1\r\n\r\n",
        b"GET /status.json HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n",
    ] {
        let response = http(addr, request);
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    }
    let page = http(
        addr,
        format!("GET /?token={token} HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8"));
    assert!(page.contains("<title>xwan status</title>"));
    let json = http(
        addr,
        format!("GET /status.json HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n").as_bytes(),
    );
    assert!(json.starts_with("HTTP/1.1 200 OK"), "{json}");
    assert!(json.contains("Content-Type: application/json"));
    assert!(json.ends_with("{\"page\":1}"), "{json}");
    let metrics = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(
        metrics.starts_with("HTTP/1.1 200 OK"),
        "no token for metrics"
    );
    let other = http(addr, b"GET /flows HTTP/1.1\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    server.stop();
}

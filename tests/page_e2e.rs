//! The status page in headless Chromium (Debian's `chromium`), against xwan
//! in the testbed with traffic flowing: both uplinks with their state, RTT
//! figures and charts that grow each second, a flows count, the uplink
//! shown down within the failover time when its ISP's path dies and up
//! after repair, in a wide window and a phone's; screenshots into
//! `target/page-e2e/`. The page's JSON is `xwan status --json` plus the
//! history. On the dual-stack testbed each card shows its IPv6 side too,
//! and isp1's IPv6 alone shown down while its IPv4 stays up when only its
//! IPv6 path dies. The listener's limits (slow clients, too many connections,
//! other requests, the token) are tested in `tests/metrics.rs`. Needs root.

#[allow(dead_code)]
mod support;

use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{
    config_toml, config_toml_dual, RouterMode, Testbed, TxOffload, HOST1, HOST1_6, SERVER1,
    SERVER1_6,
};

/// Where xwan serves the page inside the router's namespace.
const LISTEN: &str = "127.0.0.1:9849";

fn config(tb: &Testbed) -> String {
    format!(
        "{}metrics = \"{LISTEN}\"\n",
        config_toml([1, 1], &tb.path("xwan.sock"))
    )
}

/// Chromium, headless, in the router's namespace: the DOM of the page after
/// `budget` of virtual time (its script fetches the JSON once a second), or
/// with `screenshot` a PNG of it at `size`.
fn chromium(tb: &Testbed, size: &str, budget_ms: u32, screenshot: Option<&Path>) -> String {
    let profile = tb.path(&format!("chromium-{}", std::process::id()));
    let mut args = vec![
        "chromium".to_string(),
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={size}"),
        format!("--virtual-time-budget={budget_ms}"),
    ];
    match screenshot {
        Some(path) => args.push(format!("--screenshot={}", path.display())),
        None => args.push("--dump-dom".into()),
    }
    args.push(format!("http://{LISTEN}/"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tb.exec("rtr", &args);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-state` of uplink `name`'s card in `dom`.
fn state_in(dom: &str, name: &str) -> Option<String> {
    attribute_of_card(dom, name, "data-state")
}

/// The attribute `attribute` of uplink `name`'s card in `dom` (the card's
/// own tag holds them all).
fn attribute_of_card(dom: &str, name: &str, attribute: &str) -> Option<String> {
    let at = dom.find(&format!("data-uplink=\"{name}\""))?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let value = tag.split(&format!(" {attribute}=\"")).nth(1)?;
    Some(value.split('"').next()?.to_string())
}

/// The first number after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<f64> {
    let at = text.find(marker)? + marker.len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

/// The most points any chart of `dom` draws.
fn chart_points(dom: &str) -> u32 {
    dom.split("data-points=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/page-e2e");
    std::fs::create_dir_all(&dir).expect("create target/page-e2e");
    dir
}

/// Some traffic through both uplinks: UDP exchanges and pings.
fn traffic(tb: &Testbed) {
    let server = tb.bind_udp("inet", SocketAddrV4::new(SERVER1, 5300));
    let client = tb.bind_udp("h1", SocketAddrV4::new(HOST1, 0));
    for i in 0..6u8 {
        client
            .send_to(&[i; 64], SocketAddrV4::new(SERVER1, 5300))
            .expect("send");
        let mut buf = [0u8; 128];
        let (n, from) = server.recv_from(&mut buf).expect("the server hears it");
        server.send_to(&buf[..n], from).expect("answer");
        client.recv_from(&mut buf).expect("the answer comes back");
    }
    tb.exec_ok(
        "h1",
        &["ping", "-c", "3", "-i", "0.2", "-W", "1", "203.0.113.10"],
    );
}

#[test]
fn the_page_shows_the_uplinks_live_and_follows_a_failover() {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb);
    tb.start_router(RouterMode::XwanPacket, &text);
    traffic(&tb);
    std::thread::sleep(Duration::from_secs(3));

    let dom = chromium(&tb, "1280,1600", 3000, None);
    for name in ["isp1", "isp2"] {
        assert_eq!(
            state_in(&dom, name).as_deref(),
            Some("up"),
            "{name}:\n{dom}"
        );
    }
    let rtt = number_after(&dom, "class=\"rtt\">").expect("an RTT figure");
    assert!(rtt > 0.0 && rtt < 1000.0, "RTT {rtt}");
    let flows = number_after(&dom, "<p id=\"table-summary\">").expect("a flows count");
    assert!(flows >= 1.0, "flows {flows}:\n{dom}");
    assert!(dom.contains("xdp-program"), "the features table:\n{dom}");
    assert!(
        dom.contains("203.0.113.10:5300"),
        "top flows on a loopback listener:\n{dom}"
    );
    let before = chart_points(&dom);
    assert!(
        before >= 3,
        "charts with a few seconds of history: {before}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let later = chart_points(&chromium(&tb, "1280,1600", 2000, None));
    assert!(later > before, "the charts grow: {before} then {later}");

    let dir = screenshots();
    chromium(&tb, "1280,1400", 3000, Some(&dir.join("wide.png")));
    chromium(&tb, "390,1800", 3000, Some(&dir.join("phone.png")));
    for shot in ["wide.png", "phone.png"] {
        let size = std::fs::metadata(dir.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    // A phone-sized window gets the same content.
    let narrow = chromium(&tb, "390,1800", 3000, None);
    assert_eq!(state_in(&narrow, "isp2").as_deref(), Some("up"));

    // isp1's path dies behind its live gateway: down within the failover
    // time (3 rounds of 500 ms, 1 s timeout), then back after repair.
    tb.exec_ok("isp1", &["iptables", "-I", "FORWARD", "-j", "DROP"]);
    let cut = Instant::now();
    let down = wait_state(&tb, "isp1", "down", Duration::from_secs(8));
    assert!(down.is_some(), "isp1 never shown down");
    println!("page: isp1 shown down {:?} after the cut", cut.elapsed());
    chromium(&tb, "1280,1400", 2000, Some(&dir.join("isp1-down.png")));
    let dom = chromium(&tb, "1280,1600", 2000, None);
    assert!(dom.contains(">down<"), "the event list shows it:\n{dom}");
    tb.exec_ok("isp1", &["iptables", "-D", "FORWARD", "-j", "DROP"]);
    let up = wait_state(&tb, "isp1", "up", Duration::from_secs(10));
    assert!(up.is_some(), "isp1 never shown up again");
    println!("page: screenshots in {}", dir.display());
}

/// Polls the page until uplink `name` shows `state`; how long it took.
fn wait_state(tb: &Testbed, name: &str, state: &str, limit: Duration) -> Option<Duration> {
    wait_attribute(tb, name, "data-state", state, limit)
}

/// Polls the page until uplink `name`'s card has `attribute` = `value`; how
/// long it took.
fn wait_attribute(
    tb: &Testbed,
    name: &str,
    attribute: &str,
    value: &str,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let dom = chromium(tb, "1280,1600", 1500, None);
        if attribute_of_card(&dom, name, attribute).as_deref() == Some(value) {
            return Some(started.elapsed());
        }
    }
    None
}

/// On the dual-stack testbed, with isp1 probing an IPv6 target too: each
/// card shows its IPv6 side (state, nat6, flows), the balance table an IPv6
/// share, and cutting isp1's IPv6 path alone shows isp1 down for IPv6 and
/// still up for IPv4.
#[test]
fn the_page_shows_each_uplinks_ipv6_side() {
    let mut tb = Testbed::up_dual_stack(TxOffload::On);
    let text = format!(
        "{}metrics = \"{LISTEN}\"\n\n[health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\nup_after = 2\n",
        config_toml_dual([1, 1], &tb.path("xwan.sock")).replace(
            "probe = [\"198.18.11.2\"]\n",
            &format!("probe = [\"198.18.11.2\", \"{SERVER1_6}\"]\n"),
        )
    );
    assert!(text.contains(&SERVER1_6.to_string()), "isp1 probes IPv6");
    tb.start_router(RouterMode::XwanPacket, &text);
    let server = tb.bind_udp6("inet", SocketAddrV6::new(SERVER1_6, 5300, 0, 0));
    let client = tb.bind_udp6("h1", SocketAddrV6::new(HOST1_6, 0, 0, 0));
    client
        .send_to(b"over IPv6", SocketAddrV6::new(SERVER1_6, 5300, 0, 0))
        .expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).expect("the server hears it");
    server.send_to(&buf[..n], from).expect("answer");
    client.recv_from(&mut buf).expect("the answer comes back");

    let up = wait_attribute(&tb, "isp1", "data-state6", "up", Duration::from_secs(8));
    assert!(up.is_some(), "isp1 never shown up for IPv6");
    let dom = chromium(&tb, "1280,1600", 3000, None);
    for name in ["isp1", "isp2"] {
        assert_eq!(
            attribute_of_card(&dom, name, "data-state6").as_deref(),
            Some("up"),
            "{name}:\n{dom}"
        );
    }
    assert!(
        dom.contains("nat6 prefix, 2001:db8:100::/56"),
        "isp1's mapping:\n{dom}"
    );
    assert!(
        dom.contains("nat6 masquerade, 2001:db8:2::2"),
        "isp2's address:\n{dom}"
    );
    assert!(dom.contains("IPv6 share"), "the balance table:\n{dom}");
    let flows6 = number_after(&dom, "; IPv6: ").expect("the IPv6 table's count");
    assert!(flows6 >= 1.0, "IPv6 flows {flows6}:\n{dom}");

    tb.exec_ok(
        "isp1",
        &["ip6tables", "-w", "-I", "FORWARD", "1", "-j", "DROP"],
    );
    let cut = Instant::now();
    let down = wait_attribute(&tb, "isp1", "data-state6", "down", Duration::from_secs(10));
    assert!(down.is_some(), "isp1's IPv6 never shown down");
    println!(
        "page: isp1's IPv6 shown down {:?} after the cut",
        cut.elapsed()
    );
    let dom = chromium(&tb, "1280,1600", 2000, None);
    assert_eq!(
        state_in(&dom, "isp1").as_deref(),
        Some("up"),
        "IPv4 stays up:\n{dom}"
    );
    assert!(dom.contains("(probes)"), "why it is down:\n{dom}");
    assert!(
        dom.contains("isp1 IPv6</td><td>down<"),
        "the event, with its family:\n{dom}"
    );
    chromium(
        &tb,
        "1280,1400",
        2000,
        Some(&screenshots().join("ipv6-down.png")),
    );
    tb.exec_ok("isp1", &["ip6tables", "-w", "-D", "FORWARD", "-j", "DROP"]);
    let back = wait_attribute(&tb, "isp1", "data-state6", "up", Duration::from_secs(10));
    assert!(back.is_some(), "isp1's IPv6 never shown up again");
}

/// The page's JSON is the status document with `history` beside it: every
/// key `xwan status --json` prints, of the same type.
#[test]
fn the_json_endpoint_is_the_status_document_plus_history() {
    let mut tb = Testbed::up(TxOffload::On);
    let text = config(&tb);
    tb.start_router(RouterMode::XwanPacket, &text);
    std::thread::sleep(Duration::from_millis(1500));
    traffic(&tb);
    std::thread::sleep(Duration::from_millis(2500));
    let response = tb.http_get("rtr", LISTEN, "/status.json");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let page: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let shown = tb.exec_ok(
        "rtr",
        &[
            env!("CARGO_BIN_EXE_xwan"),
            "status",
            "--json",
            "--socket",
            &tb.path("xwan.sock").to_string_lossy(),
        ],
    );
    let status: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("status JSON");
    for (key, value) in status.as_object().expect("an object") {
        let same_type = std::mem::discriminant(value) == std::mem::discriminant(&page[key]);
        assert!(same_type, "{key}: {value} against {}", page[key]);
    }
    assert_eq!(page["uplinks"][0]["name"], status["uplinks"][0]["name"]);
    let isp1 = &page["history"]["uplinks"]["isp1"];
    let samples = isp1["t_s"].as_array().map_or(0, Vec::len);
    assert!(samples >= 1, "{isp1}");
    for series in ["rtt_ms", "loss", "bps_out", "bps_in", "up"] {
        assert_eq!(
            isp1[series].as_array().map(Vec::len),
            Some(samples),
            "{series}"
        );
    }
    // The traffic shows in the rates, the fast path's part included.
    let peak = |series: &str| {
        ["isp1", "isp2"]
            .iter()
            .flat_map(|u| {
                page["history"]["uplinks"][u][series]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_f64())
            .fold(0.0, f64::max)
    };
    assert!(
        peak("bps_out") > 0.0 && peak("bps_in") > 0.0,
        "{}",
        page["history"]
    );
    assert!(page["history"]["events"].is_array());
    assert!(page["history"]["top_flows"].is_array());
}

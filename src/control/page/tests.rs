use super::*;

/// A status with one uplink `name` that has sent and received these bytes.
fn status(uplinks: &[(&str, u64, u64, bool)]) -> StatusReport {
    let uplinks: Vec<serde_json::Value> = uplinks
        .iter()
        .map(|(name, out, inn, up)| {
            serde_json::json!({
                "name": name, "interface": "wan1", "address": "198.18.1.2",
                "gateway": "198.18.1.1", "gateway_mac": null, "weight": 1, "priority": 1,
                "up": up, "admin": "auto", "since_s": 1, "probe_rtt_ms": 0.5,
                "probe_loss": 0.0, "flows": 3,
                "nat_ports_in_use": {"tcp": 0, "udp": 0, "icmp": 0},
                "packets_out": 1, "bytes_out": out, "packets_in": 1, "bytes_in": inn
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "version": "0", "config_file": "x", "config_age_s": 0, "uptime_s": 0, "io": "packet",
        "uplinks": uplinks,
        "flow_table": {"flows": 0, "max_flows": 1, "inserts": 0, "expiries": 0, "refusals": 0},
        "sticky_clients": 0, "forwarded": 0, "drops": {}, "to_kernel": {}, "workers": []
    }))
    .expect("a status")
}

#[test]
fn rates_are_bits_per_second_over_the_time_between_samples() {
    let mut history = History::default();
    history.record(&status(&[("isp1", 1000, 0, true)]), 1_000);
    history.record(&status(&[("isp1", 3000, 500, true)]), 3_000);
    let isp1 = &history.uplinks["isp1"];
    assert_eq!(isp1.bps_out, [0.0, 8000.0]);
    assert_eq!(isp1.bps_in, [0.0, 2000.0]);
    assert_eq!(isp1.t_s, [1, 3]);
    assert_eq!(isp1.rtt_ms, [Some(0.5), Some(0.5)]);
}

#[test]
fn history_is_bounded_and_a_removed_uplink_ages_out() {
    let mut history = History::default();
    for s in 0..(HISTORY_SAMPLES as u64 + 50) {
        let uplinks: &[(&str, u64, u64, bool)] = if s < 10 {
            &[("isp1", s, s, true), ("old", 0, 0, false)]
        } else {
            &[("isp1", s, s, true)]
        };
        history.record(&status(uplinks), s * 1000);
    }
    assert_eq!(history.uplinks["isp1"].len(), HISTORY_SAMPLES);
    assert!(!history.uplinks.contains_key("old"), "aged out");
    for i in 0..(EVENTS_KEPT + 5) {
        history.record_event(Event {
            time_ms: i as u64,
            uplink: "isp1".into(),
            interface: "wan1".into(),
            state: "down".into(),
            cause: crate::health::Cause::Probes,
            reason: String::new(),
            family: None,
        });
    }
    assert_eq!(history.events.len(), EVENTS_KEPT);
    assert_eq!(history.events.front().map(|e| e.time_ms), Some(5));
}

#[test]
fn the_document_is_the_status_with_the_history_beside_it() {
    let status = status(&[("isp1", 10, 20, true)]);
    let mut history = History::default();
    history.record(&status, 1_000);
    let document = serde_json::to_value(PageDocument {
        status: &status,
        history: &history,
    })
    .unwrap();
    let plain = serde_json::to_value(&status).unwrap();
    for (key, value) in plain.as_object().unwrap() {
        assert_eq!(&document[key], value, "{key} as in xwan status --json");
    }
    assert_eq!(document["history"]["uplinks"]["isp1"]["bps_out"][0], 0.0);
    assert!(document["history"].get("last").is_none());
}

#[test]
fn top_flows_are_the_busiest() {
    let flow = |bytes: u64| FlowReport {
        protocol: "tcp".into(),
        kind: "snat".into(),
        inside: "192.168.50.10:1".into(),
        outside: "198.18.1.2:1".into(),
        remote: "203.0.113.10:80".into(),
        uplink: "isp1".into(),
        state: "established".into(),
        age_s: 1,
        idle_s: 0,
        packets_out: 1,
        bytes_out: bytes,
        packets_in: 1,
        bytes_in: bytes,
        offloaded: false,
    };
    let mut history = History::default();
    history.set_top_flows((0..30).map(flow).collect());
    assert_eq!(history.top_flows.len(), TOP_FLOWS);
    assert_eq!(history.top_flows[0].bytes_out, 29);
    assert_eq!(history.top_flows[TOP_FLOWS - 1].bytes_out, 20);
}

//! Helpers of the offload suite (`tests/offload_e2e.rs`): the in-kernel fast
//! path's figures and the flows as `xwan status` and `xwan flows` show them,
//! and iperf3 runs between the testbed's nodes.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use xwan::control::protocol::{FlowReport, OffloadReport};
use xwan::control::{request, Reply, Request};

use crate::parity::status;
use crate::support::{poll, Testbed};

/// The fast path as `xwan status` shows it.
pub fn offload(tb: &Testbed) -> OffloadReport {
    status(tb).offload
}

/// Frames the workers received, over every queue.
pub fn worker_rx(tb: &Testbed) -> u64 {
    status(tb).workers.iter().map(|w| w.rx_packets).sum()
}

/// Waits until the fast path holds at least `entries` entries.
pub fn wait_entries(tb: &Testbed, entries: u64) -> bool {
    poll(Duration::from_secs(5), || offload(tb).entries >= entries)
}

/// Every flow `xwan flows` lists.
pub fn flows(tb: &Testbed) -> Vec<FlowReport> {
    match request(
        &tb.path("xwan.sock"),
        &Request::Flows {
            uplink: None,
            host: None,
            limit: None,
        },
    ) {
        Ok(Reply::Flows { flows, .. }) => flows,
        other => panic!("xwan flows: {other:?}"),
    }
}

/// The flow of a TCP or UDP connection to `remote`.
pub fn flow_to(tb: &Testbed, protocol: &str, remote: &str) -> Option<FlowReport> {
    flows(tb)
        .into_iter()
        .find(|f| f.protocol == protocol && f.remote == remote)
}

/// An iperf3 TCP test from `client` to an iperf3 server on `server` (in
/// `server_node`, port 5201) for `seconds` (`reverse`: the server sends);
/// the bytes the receiver got.
pub fn iperf3(
    tb: &Testbed,
    client: &str,
    server_node: &str,
    server: Ipv4Addr,
    seconds: u32,
    reverse: bool,
) -> u64 {
    let addr = server.to_string();
    let limit = (seconds + 20).to_string();
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", &tb.ns(server_node)])
        .args(["timeout", &limit, "iperf3", "-s", "-1", "-B", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 -s");
    // Once the server listens, one client run.
    let listening = poll(Duration::from_secs(5), || {
        let ss = tb.exec(server_node, &["ss", "-Hltn", "sport", "=", ":5201"]);
        !String::from_utf8_lossy(&ss.stdout).trim().is_empty()
    });
    assert!(listening, "iperf3 -s does not listen");
    let time = seconds.to_string();
    let mut args = vec![
        "timeout",
        &limit,
        "iperf3",
        "-c",
        &addr,
        "-t",
        &time,
        "-J",
        "--connect-timeout",
        "3000",
    ];
    if reverse {
        args.push("-R");
    }
    let out = tb.exec(client, &args);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "iperf3 failed: {text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    report["end"]["sum_received"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no received bytes in iperf3's report: {text}"))
}

/// Sends `size` bytes from `from` and reads them at `to`, checked; the
/// connection stays open.
pub fn pump(from: &std::net::TcpStream, to: &std::net::TcpStream, size: usize, seed: u64) {
    use std::io::{Read, Write};
    let data = crate::support::pattern(size, seed);
    let mut writer = from.try_clone().expect("clone the stream");
    let mut reader = to.try_clone().expect("clone the stream");
    std::thread::scope(|s| {
        let sent = s.spawn(move || writer.write_all(&data));
        let mut got = vec![0u8; size];
        reader.read_exact(&mut got).expect("read what was sent");
        sent.join().expect("writer").expect("write everything");
        assert!(
            got == crate::support::pattern(size, seed),
            "the bytes arrived changed"
        );
    });
}

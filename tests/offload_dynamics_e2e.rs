//! The in-kernel fast path (`[dataplane] offload`) while the router's world
//! changes under flows it carries, in the testbed with real traffic and the
//! peers untouched, with `--io xdp` and `--io packet`: an uplink failing
//! (its entries leave the map, UDP moves to the other uplink, TCP gets an
//! RST Linux accepts, nothing leaks un-NATed or out the dead uplink), the
//! gateway's MAC changing, the WAN interface's MTU shrinking, and entries
//! removed again and again under a flood in both directions. Needs root.

// Shared with the other end-to-end suites; not every helper is used here.
#[allow(dead_code)]
#[path = "support/frames.rs"]
mod frames;
#[allow(dead_code)]
#[path = "support/health.rs"]
mod health_support;
#[allow(dead_code)]
#[path = "support/offload.rs"]
mod offload_support;
#[allow(dead_code)]
#[path = "support/parity.rs"]
mod parity;
#[allow(dead_code)]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use health_support::Events;
use offload_support::{
    connection, flow_to, ifindex, map_entries, offload, unix_us, wait_entries, Capture, MapEntry,
    UdpStream,
};
use support::{config_toml, poll, RouterMode, Testbed, TxOffload, HOST1, SERVER1, WAN1, WAN2};
use xwan::control::{request, AdminState, Reply, Request};

/// Probes every 300 ms, down after 3 failed rounds: about a second.
const FAST_HEALTH: &str =
    "[health]\ninterval_ms = 300\ntimeout_ms = 250\ndown_after = 3\nup_after = 2\n";

/// The longest any test's traffic runs if the test does not stop it (it
/// does, or a failing test's drop does: this bounds a hung test's load).
const STREAM_LIMIT: Duration = Duration::from_secs(60);

/// The router's LAN address.
const LAN_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

/// The UDP and TCP ports the tests' flows use, pinned to isp1 by a rule
/// (not strict: while isp1 is down they are balanced over the others).
const UDP_PORT: u16 = 5600;
const TCP_PORT: u16 = 5601;

/// The testbed with xwan in `mode`, the test ports pinned to isp1 and
/// `extra` appended to the config.
fn testbed(mode: RouterMode, extra: &str) -> Testbed {
    let mut tb = Testbed::up(TxOffload::On);
    let config = format!(
        "{}\n{extra}\n[[rule]]\nname = \"udp-via-isp1\"\nproto = \"udp\"\ndst_port = \"{UDP_PORT}\"\naction = \"isp1\"\n\n[[rule]]\nname = \"tcp-via-isp1\"\nproto = \"tcp\"\ndst_port = \"{TCP_PORT}\"\naction = \"isp1\"\n",
        config_toml([1, 1], &tb.path("xwan.sock"))
    );
    tb.start_router(mode, &config);
    tb
}

/// The map's entries that come in or go out by `ifindex`.
fn through(entries: &[MapEntry], ifindex: u32) -> Vec<MapEntry> {
    entries
        .iter()
        .filter(|e| e.ingress == ifindex || e.egress == ifindex)
        .copied()
        .collect()
}

/// Captures, on both ISPs' customer-facing interfaces, of every frame the
/// router sends them with a LAN source address: any is a leak.
fn leak_watch(tb: &Testbed) -> [Capture; 2] {
    ["isp1", "isp2"].map(|isp| Capture::start(tb, isp, "cust", "ip src net 192.168.50.0/24"))
}

fn assert_no_leak(mode: RouterMode, watch: [Capture; 2]) {
    for (isp, capture) in ["isp1", "isp2"].into_iter().zip(watch) {
        let leaked = capture.stop();
        assert!(
            leaked.is_empty(),
            "{mode:?}: {} frames with a LAN source reached {isp}, the first {:?}",
            leaked.len(),
            leaked[0].ipv4()
        );
    }
}

mod failover_while_flowing_on_the_fast_path {
    #[test]
    fn xdp() {
        super::failover_while_flowing(super::RouterMode::XwanXdp);
    }

    #[test]
    fn packet() {
        super::failover_while_flowing(super::RouterMode::XwanPacket);
    }
}

/// A UDP stream (a datagram every 5 ms, echoed) and a TCP connection (the
/// server sending ~4 MB/s) through isp1, both on the fast path, then the
/// path behind isp1 cut as `e2e_failover` cuts it: isp1's entries leave the
/// map by the time the router declares it down, the stream reaches the
/// server from isp2's address within a second of that, the TCP client gets
/// an RST with the sequence it expects (ECONNRESET), and, captured at both
/// ISPs, no frame with a LAN source ever left a WAN and none of the flows'
/// frames went out wan1 after the declaration.
fn failover_while_flowing(mode: RouterMode) {
    let tb = testbed(mode, FAST_HEALTH);
    let wan1 = ifindex(&tb, "rtr", "wan1");
    let wan2 = ifindex(&tb, "rtr", "wan2");
    let leaks = leak_watch(&tb);
    let filter = format!("udp port {UDP_PORT} or tcp port {TCP_PORT}");
    let out_wan1 = Capture::start(&tb, "isp1", "cust", &filter);
    let server = SocketAddrV4::new(SERVER1, UDP_PORT);
    let mut stream = UdpStream::start(
        &tb,
        SocketAddrV4::new(HOST1, UDP_PORT),
        server,
        (1, Duration::from_millis(5)),
        STREAM_LIMIT,
    );
    let (mut client, mut conn) = connection(&tb, TCP_PORT, true);
    let stop = AtomicBool::new(false);
    let (event, reset, cut, reset_after) = std::thread::scope(|s| {
        s.spawn(|| {
            conn.set_write_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let chunk = [7u8; 8192];
            while !stop.load(Ordering::Relaxed) {
                match conn.write(&chunk) {
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let reader = s.spawn(|| {
            client
                .set_read_timeout(Some(Duration::from_secs(8)))
                .expect("timeout");
            let mut buf = [0u8; 65536];
            let mut total = 0usize;
            loop {
                match client.read(&mut buf) {
                    Ok(0) => return (total, Ok(()), unix_us()),
                    Ok(n) => total += n,
                    Err(e) => return (total, Err(e), unix_us()),
                }
            }
        });

        // Both flows on the fast path through isp1: their four entries in
        // the map, `(k)` in the flows, the counters rising.
        assert!(wait_entries(&tb, 4), "{mode:?}: {:?}", offload(&tb));
        let before = through(&map_entries(&tb), wan1);
        assert_eq!(before.len(), 4, "{mode:?}: {before:?}");
        for (protocol, port) in [("udp", UDP_PORT), ("tcp", TCP_PORT)] {
            let flow = flow_to(&tb, protocol, &format!("{SERVER1}:{port}")).expect("listed");
            assert!(
                flow.offloaded && flow.uplink == "isp1",
                "{mode:?}: {flow:?}"
            );
        }
        let fast0 = offload(&tb).packets;
        std::thread::sleep(Duration::from_millis(500));
        let fast1 = offload(&tb).packets;
        assert!(
            fast1 > fast0 + 100,
            "{mode:?}: fast path {fast0} -> {fast1}"
        );

        let events = Events::subscribe(&tb);
        let cut = unix_us();
        tb.exec_ok("isp1", &["iptables", "-I", "FORWARD", "-j", "DROP"]);
        let event = events
            .wait_for("isp1", "down", Duration::from_secs(5))
            .expect("isp1 goes down");
        // The failover synced the map before it was announced.
        let left = through(&map_entries(&tb), wan1);
        assert!(left.is_empty(), "{mode:?}: isp1's entries stay: {left:?}");
        let (_, reset, at) = reader.join().expect("reader");
        stop.store(true, Ordering::Relaxed);
        (event, reset, cut, at.saturating_sub(cut))
    });
    let down_us = event.time_ms * 1000;

    // The stream resumes from isp2's address, and goes by the fast path again.
    let moved = poll(Duration::from_secs(3), || {
        stream.arrivals().iter().any(|a| *a.from.ip() == WAN2)
    });
    assert!(moved, "{mode:?}: the stream never arrived from {WAN2}");
    assert!(
        poll(Duration::from_secs(3), || {
            flow_to(&tb, "udp", &format!("{SERVER1}:{UDP_PORT}"))
                .is_some_and(|f| f.offloaded && f.uplink == "isp2")
        }),
        "{mode:?}: {:?}",
        flow_to(&tb, "udp", &format!("{SERVER1}:{UDP_PORT}"))
    );
    assert_eq!(
        through(&map_entries(&tb), wan2).len(),
        2,
        "{mode:?}: {:?}",
        map_entries(&tb)
    );
    let arrivals = stream.stop();
    let first_wan2 = arrivals
        .iter()
        .find(|a| *a.from.ip() == WAN2)
        .expect("arrived from WAN2");
    let last_wan1 = arrivals
        .iter()
        .filter(|a| *a.from.ip() == WAN1)
        .map(|a| a.time_us)
        .max()
        .expect("arrived from WAN1");
    assert!(
        arrivals
            .iter()
            .all(|a| *a.from.ip() == WAN1 || *a.from.ip() == WAN2),
        "{mode:?}: a datagram from elsewhere"
    );
    let resumed = first_wan2.time_us.saturating_sub(down_us);
    eprintln!(
        "{mode:?}: down {} ms after the cut; RST {} ms after it; UDP: last from WAN1 {} ms after the cut, first from WAN2 {} ms after the declaration",
        down_us.saturating_sub(cut) / 1000,
        reset_after / 1000,
        last_wan1.saturating_sub(cut) / 1000,
        resumed / 1000
    );
    // The event is stamped (in ms) once the failover's work is done, the
    // fast path's map synced first: the flow may move a little before.
    assert!(
        first_wan2.time_us + 50_000 >= down_us,
        "{mode:?}: from WAN2 before isp1 went down"
    );
    assert!(
        resumed < 1_000_000,
        "{mode:?}: the stream resumed {resumed} µs after isp1 went down"
    );

    // Linux takes an RST only with exactly the sequence it expects (RFC 5961).
    assert!(
        matches!(&reset, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{mode:?}: the client should get an RST, got {reset:?}"
    );
    assert!(
        reset_after < 4_000_000,
        "{mode:?}: RST {reset_after} µs after the cut"
    );

    let sent = out_wan1.stop();
    let late: Vec<_> = sent.iter().filter(|f| f.time_us > down_us + 1000).collect();
    assert!(
        sent.iter().any(|f| f.time_us < down_us),
        "{mode:?}: the flows never went out wan1"
    );
    assert!(
        late.is_empty(),
        "{mode:?}: {} frames of the flows went out wan1 after isp1 was declared down, the first {:?} {} µs after",
        late.len(),
        late[0].ipv4(),
        late[0].time_us - down_us
    );
    assert_no_leak(mode, leaks);
}

mod gateway_mac_change_while_flowing_on_the_fast_path {
    #[test]
    fn xdp() {
        super::gateway_mac_change_while_flowing(super::RouterMode::XwanXdp);
    }

    #[test]
    fn packet() {
        super::gateway_mac_change_while_flowing(super::RouterMode::XwanPacket);
    }
}

/// isp1's gateway takes a new MAC (`ip link set cust address`, announced by
/// a gratuitous ARP as a router that changes its MAC does: `arp_notify`)
/// while a UDP stream flows through it on the fast path: the router's
/// entries carry the new MAC within a few seconds, the stream keeps reaching
/// the server (the gap bounded), and its frames keep going by the fast path
/// to the new MAC.
fn gateway_mac_change_while_flowing(mode: RouterMode) {
    let tb = testbed(mode, "");
    let wan1 = ifindex(&tb, "rtr", "wan1");
    let server = SocketAddrV4::new(SERVER1, UDP_PORT);
    let mut stream = UdpStream::start(
        &tb,
        SocketAddrV4::new(HOST1, UDP_PORT),
        server,
        (1, Duration::from_millis(5)),
        STREAM_LIMIT,
    );
    assert!(wait_entries(&tb, 2), "{mode:?}: {:?}", offload(&tb));
    let old = frames::mac_of(&tb, "isp1", "cust");
    let out_wan1 = |tb: &Testbed| -> Vec<MapEntry> {
        map_entries(tb)
            .into_iter()
            .filter(|e| e.egress == wan1)
            .collect()
    };
    let before = out_wan1(&tb);
    assert!(
        before.len() == 1 && before[0].dst_mac == old,
        "{mode:?}: {before:?}"
    );
    let capture = Capture::start(&tb, "isp1", "cust", &format!("udp port {UDP_PORT}"));

    let new = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    tb.exec_ok(
        "isp1",
        &["sysctl", "-qw", "net.ipv4.conf.cust.arp_notify=1"],
    );
    let changed = unix_us();
    tb.exec_ok(
        "isp1",
        &["ip", "link", "set", "cust", "address", "02:00:5e:10:00:01"],
    );
    let learnt = poll(Duration::from_secs(5), || {
        let now = out_wan1(&tb);
        now.len() == 1 && now[0].dst_mac == new
    });
    assert!(learnt, "{mode:?}: the entry keeps {:?}", out_wan1(&tb));
    let updated = unix_us();
    let report = parity::status(&tb);
    assert_eq!(
        report.uplinks[0].gateway_mac.as_deref(),
        Some("02:00:5e:10:00:01"),
        "{mode:?}"
    );

    // Still on the fast path, to the new MAC.
    let fast0 = offload(&tb).packets;
    std::thread::sleep(Duration::from_millis(500));
    let fast1 = offload(&tb).packets;
    assert!(
        fast1 > fast0 + 100,
        "{mode:?}: fast path {fast0} -> {fast1}"
    );
    let flow = flow_to(&tb, "udp", &format!("{SERVER1}:{UDP_PORT}")).expect("listed");
    assert!(
        flow.offloaded && flow.uplink == "isp1",
        "{mode:?}: {flow:?}"
    );
    let arrivals = stream.stop();
    let frames = capture.stop();

    let after: Vec<_> = arrivals.iter().filter(|a| a.time_us > changed).collect();
    let gap = after
        .windows(2)
        .map(|w| w[1].time_us - w[0].time_us)
        .chain(after.first().map(|a| a.time_us - changed))
        .max()
        .expect("arrivals after the change");
    let to_old = frames
        .iter()
        .filter(|f| f.time_us > changed && f.frame[0..6] == old)
        .count();
    let late_to_old = frames
        .iter()
        .filter(|f| f.time_us > updated && f.frame[0..6] == old)
        .count();
    let to_new = frames
        .iter()
        .filter(|f| f.time_us > updated && f.frame[0..6] == new)
        .count();
    eprintln!(
        "{mode:?}: entry updated {} ms after the change; longest gap at the server {} ms; {to_old} frames to the old MAC after the change",
        (updated - changed) / 1000,
        gap / 1000
    );
    assert!(
        after.iter().all(|a| *a.from.ip() == WAN1),
        "{mode:?}: the stream left isp1"
    );
    assert!(gap < 2_000_000, "{mode:?}: the stream stopped for {gap} µs");
    assert_eq!(
        late_to_old, 0,
        "{mode:?}: frames to the old MAC after the update"
    );
    assert!(to_new > 50, "{mode:?}: {to_new} frames to the new MAC");
}

mod mtu_change_while_flowing_on_the_fast_path {
    #[test]
    fn xdp() {
        super::mtu_change_while_flowing(super::RouterMode::XwanXdp);
    }

    #[test]
    fn packet() {
        super::mtu_change_while_flowing(super::RouterMode::XwanPacket);
    }
}

/// A UDP server that checks every datagram byte for byte against
/// [`offload_support::datagram`] and echoes the short ones (so the flow is
/// answered, and only the LAN-to-internet direction carries the long ones).
struct CheckingServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    got: Arc<Mutex<Vec<(u32, usize, bool)>>>,
}

impl CheckingServer {
    fn start(tb: &Testbed, addr: SocketAddrV4) -> CheckingServer {
        let socket = tb.bind_udp("inet", addr);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (stop, got) = (Arc::clone(&stop), Arc::clone(&got));
            move || {
                let mut buf = [0u8; 4096];
                // Bounded: the test ends it, or STREAM_LIMIT passes.
                let deadline = Instant::now() + STREAM_LIMIT;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let seq = u32::from_be_bytes(buf[..4].try_into().unwrap_or_default());
                    let ok = buf[..n] == offload_support::datagram(seq, n)[..];
                    got.lock().expect("got").push((seq, n, ok));
                    if n <= 64 {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            }
        });
        CheckingServer {
            stop,
            thread: Some(thread),
            got,
        }
    }

    /// The datagrams among `seqs` that arrived: (seq, length, whole).
    fn got(&self, seqs: std::ops::Range<u32>) -> Vec<(u32, usize, bool)> {
        let got = self.got.lock().expect("got");
        got.iter()
            .filter(|g| seqs.contains(&g.0))
            .copied()
            .collect()
    }

    /// Waits up to a second for `n` datagrams among `seqs`.
    fn wait(&self, seqs: std::ops::Range<u32>, n: usize) -> Vec<(u32, usize, bool)> {
        poll(Duration::from_secs(1), || self.got(seqs.clone()).len() >= n);
        self.got(seqs)
    }
}

impl Drop for CheckingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The router's wan1 MTU lowered from 1500 to 1400 under an established UDP
/// flow on the fast path: its entry's MTU follows; 1500-byte datagrams
/// without DF, which took the fast path before, now go to the workers and
/// reach the server fragmented (no fragment over 1400 at the ISP) and byte
/// for byte; with DF the sender gets frag-needed (path MTU 1400) and the
/// server none of them; datagrams that fit still take the fast path.
fn mtu_change_while_flowing(mode: RouterMode) {
    const PORT: u16 = 5700;
    let tb = testbed(mode, &format!("[[rule]]\nname = \"mtu-via-isp1\"\nproto = \"udp\"\ndst_port = \"{PORT}\"\naction = \"isp1\"\n"));
    let wan1 = ifindex(&tb, "rtr", "wan1");
    let to = SocketAddrV4::new(SERVER1, PORT);
    let server = CheckingServer::start(&tb, to);
    // Answered: on the fast path.
    {
        let client = tb.bind_udp("h1", SocketAddrV4::new(HOST1, PORT));
        let mut buf = [0u8; 64];
        for seq in 0..5 {
            client
                .send_to(&offload_support::datagram(seq, 32), to)
                .expect("send");
            client.recv_from(&mut buf).expect("the echo");
        }
    }
    assert!(wait_entries(&tb, 2), "{mode:?}: {:?}", offload(&tb));
    let mtu_out = |tb: &Testbed| {
        map_entries(tb)
            .iter()
            .find(|e| e.egress == wan1)
            .map(|e| e.mtu)
    };
    assert_eq!(mtu_out(&tb), Some(1500), "{mode:?}");
    let fast = |tb: &Testbed| offload(tb).packets;
    let whole = |got: &[(u32, usize, bool)], size: usize| got.iter().all(|g| g.1 == size && g.2);

    // 1500-byte packets without DF: the fast path takes them.
    let before = fast(&tb);
    let sent = offload_support::send_datagrams(&tb, "h1", PORT, to, 100..110, 1472, false);
    assert_eq!(sent.sent, 10, "{mode:?}");
    let got = server.wait(100..110, 10);
    assert!(got.len() == 10 && whole(&got, 1472), "{mode:?}: {got:?}");
    assert!(
        fast(&tb) >= before + 10,
        "{mode:?}: {before} -> {}",
        fast(&tb)
    );

    tb.exec_ok("rtr", &["ip", "link", "set", "wan1", "mtu", "1400"]);
    assert!(
        poll(Duration::from_secs(3), || mtu_out(&tb) == Some(1400)),
        "{mode:?}: the entry keeps MTU {:?}",
        mtu_out(&tb)
    );

    // Without DF: fragmented by the workers, whole at the server.
    let at_isp = Capture::start(&tb, "isp1", "cust", "ip src host 198.18.1.2 and not icmp");
    let before = fast(&tb);
    let sent = offload_support::send_datagrams(&tb, "h1", PORT, to, 200..220, 1472, false);
    assert_eq!(sent.sent, 20, "{mode:?}");
    let got = server.wait(200..220, 20);
    assert!(got.len() == 20 && whole(&got, 1472), "{mode:?}: {got:?}");
    assert_eq!(
        fast(&tb),
        before,
        "{mode:?}: long packets took the fast path"
    );
    let frames = at_isp.stop();
    let fragments = frames.iter().filter(|f| f.is_fragment()).count();
    let longest = frames.iter().map(|f| f.ip_len()).max().unwrap_or(0);
    assert!(fragments >= 40, "{mode:?}: {fragments} fragments at isp1");
    assert!(longest <= 1400, "{mode:?}: a {longest}-byte packet at isp1");

    // With DF: frag-needed back to the host, nothing at the server.
    let at_host = Capture::start(&tb, "h1", "eth0", "icmp[0] == 3 and icmp[1] == 4");
    let before = fast(&tb);
    let df = offload_support::send_datagrams(&tb, "h1", PORT, to, 300..310, 1472, true);
    assert_eq!(df.path_mtu, 1400, "{mode:?}: {df:?}");
    assert!(df.refused > 0, "{mode:?}: {df:?}");
    assert_eq!(
        fast(&tb),
        before,
        "{mode:?}: long packets took the fast path"
    );
    let needed = at_host.stop();
    assert!(
        !needed.is_empty() && needed.iter().all(|f| f.frame[38..42] == [0, 0, 0x05, 0x78]),
        "{mode:?}: frag-needed {:?}",
        needed.iter().map(|f| f.frame.clone()).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.got(300..310).is_empty(),
        "{mode:?}: DF datagrams arrived"
    );

    // What fits takes the fast path still.
    let before = fast(&tb);
    let sent = offload_support::send_datagrams(&tb, "h1", PORT, to, 400..420, 1372, false);
    assert_eq!(sent.sent, 20, "{mode:?}");
    let got = server.wait(400..420, 20);
    assert!(got.len() == 20 && whole(&got, 1372), "{mode:?}: {got:?}");
    assert!(
        fast(&tb) >= before + 20,
        "{mode:?}: {before} -> {}",
        fast(&tb)
    );
    eprintln!(
        "{mode:?}: {fragments} fragments at isp1 for 20 datagrams, the longest packet {longest} bytes; DF: {} sent, {} refused, path MTU {}, {} frag-needed",
        df.sent, df.refused, df.path_mtu, needed.len()
    );
}

mod entries_removed_under_a_flood_in_both_directions {
    #[test]
    fn xdp() {
        super::entries_removed_under_a_flood(super::RouterMode::XwanXdp);
    }

    #[test]
    fn packet() {
        super::entries_removed_under_a_flood(super::RouterMode::XwanPacket);
    }
}

/// Forces an uplink's state through the control socket.
fn set_uplink(tb: &Testbed, name: &str, state: AdminState) {
    let reply = request(
        &tb.path("xwan.sock"),
        &Request::Uplink {
            name: name.to_string(),
            state,
        },
    );
    assert!(
        matches!(reply, Ok(Reply::Done { ok: true, .. })),
        "uplink {name} {state:?}: {reply:?}"
    );
}

/// The packets of the router namespace's iptables rules that count the
/// flood's frames reaching its own stack (`-t raw PREROUTING`).
fn stack_counts(tb: &Testbed) -> Vec<u64> {
    let out = tb.exec_ok(
        "rtr",
        &["iptables", "-w", "-t", "raw", "-nvxL", "PREROUTING"],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The XDP-to-TC window: with `--io xdp` the XDP program passes a fast-path
/// frame to the kernel marked, and TC forwards it by its entry; an entry
/// removed in between must not let the frame reach the kernel's stack
/// un-NATed (TC drops it, counted `lost`). A UDP flood in both directions
/// (16 datagrams a millisecond from the LAN host, each echoed by the
/// server) on the fast path while its entries are removed again and again:
/// isp1 forced down (the flow's entries removed, the flow failed over and
/// re-made through isp2, which puts it back on the fast path), then isp1
/// back up and isp2 down (the same the other way), six times, the flow
/// flooded on the fast path 300 ms after each move. Nothing leaves a WAN
/// with a LAN source (tcpdump at both ISPs); the server hears only the WAN
/// addresses; the LAN host hears only the server. With `--io xdp`, the
/// server gets each datagram at most once (none forwarded by both the fast
/// path and the workers), iptables counters in the router namespace see
/// none of the flood's frames reach its stack (while they do count a
/// datagram sent to the router itself), and the router lost no more of
/// the LAN's datagrams than it counted `lost` (every datagram sent arrived
/// or found the server's socket buffer full in the runs so far: none lost
/// on the way).
/// The race itself is a window of microseconds between two hooks of one
/// softirq: `lost` is reported, not asserted above 0 (0 or 1 a run so far:
/// hit now and then, not deterministically; the checks hold either way).
/// `--io packet` has a window of its own: its socket filter and TC look the
/// entry up separately, so the filter leaves its decision in the skb and TC
/// follows it (a frame given to the workers is not forwarded by TC too; one
/// kept from them whose entry vanished is dropped, counted `lost`). Before
/// that, one datagram arrived twice in about sixteen runs. There the same
/// checks run but the iptables counters (which see every frame by design)
/// and the `lost` bound (the workers' own drops are counted elsewhere); the
/// datagrams lost on the way are reported.
fn entries_removed_under_a_flood(mode: RouterMode) {
    let tb = testbed(mode, "");
    let wan1 = ifindex(&tb, "rtr", "wan1");
    let wan2 = ifindex(&tb, "rtr", "wan2");
    let xdp = mode == RouterMode::XwanXdp;
    if xdp {
        for (interface, port) in [
            ("lan0", "--dport"),
            ("wan1", "--sport"),
            ("wan2", "--sport"),
        ] {
            tb.exec_ok(
                "rtr",
                &[
                    "iptables",
                    "-w",
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-i",
                    interface,
                    "-p",
                    "udp",
                    port,
                    &UDP_PORT.to_string(),
                ],
            );
        }
    }
    let leaks = leak_watch(&tb);
    let at_host = Capture::start(
        &tb,
        "h1",
        "eth0",
        &format!("udp port {UDP_PORT} and not (src host {SERVER1} and dst host {HOST1})"),
    );
    let mut stream = UdpStream::start(
        &tb,
        SocketAddrV4::new(HOST1, UDP_PORT),
        SocketAddrV4::new(SERVER1, UDP_PORT),
        (16, Duration::from_millis(1)),
        STREAM_LIMIT,
    );
    // Back on the fast path through `ifindex`, then flooded there a while.
    let carried = |ifindex: u32| {
        let back = poll(Duration::from_secs(3), || {
            through(&map_entries(&tb), ifindex).len() == 2
        });
        std::thread::sleep(Duration::from_millis(300));
        back
    };
    assert!(carried(wan1), "{mode:?}: {:?}", map_entries(&tb));
    let fast0 = offload(&tb).packets;
    let started = Instant::now();
    let mut removals = 0;
    for cycle in 0..6 {
        set_uplink(&tb, "isp1", AdminState::Down);
        removals += 1;
        assert!(
            carried(wan2),
            "{mode:?} cycle {cycle}: {:?}",
            map_entries(&tb)
        );
        set_uplink(&tb, "isp1", AdminState::Up);
        set_uplink(&tb, "isp2", AdminState::Down);
        removals += 1;
        assert!(
            carried(wan1),
            "{mode:?} cycle {cycle}: {:?}",
            map_entries(&tb)
        );
        set_uplink(&tb, "isp2", AdminState::Up);
    }
    let took = started.elapsed();
    let report = offload(&tb);
    let arrivals = stream.stop();
    let echoes = stream.echoes();
    let wrong = at_host.stop();
    assert_no_leak(mode, leaks);
    let from_wan = |wan| arrivals.iter().filter(|a| *a.from.ip() == wan).count();
    let (n1, n2) = (from_wan(WAN1), from_wan(WAN2));
    let mut seqs: Vec<u32> = arrivals.iter().map(|a| a.seq).collect();
    seqs.sort_unstable();
    let twice = seqs.windows(2).filter(|w| w[0] == w[1]).count();
    // Every datagram sent arrived, or found the server's socket buffer full,
    // or was lost on the way.
    let distinct = (arrivals.len() - twice) as u64;
    let overflowed = offload_support::udp_counter(&tb, "inet", "RcvbufErrors");
    let on_the_way = u64::from(stream.sent()).saturating_sub(distinct + overflowed);
    eprintln!(
        "{mode:?}: LAN to Internet: {} datagrams sent, {distinct} arrived, {overflowed} found the server's buffer full, {on_the_way} lost on the way",
        stream.sent()
    );
    eprintln!(
        "{mode:?}: {removals} removals in {took:?}; {} datagrams at the server ({n1} from WAN1, {n2} from WAN2), {echoes} echoes back; fast path {} packets; lost {}",
        arrivals.len(),
        report.packets - fast0,
        report.lost
    );
    assert_eq!(
        n1 + n2,
        arrivals.len(),
        "{mode:?}: a datagram from elsewhere"
    );
    assert!(n1 > 0 && n2 > 0, "{mode:?}");
    // None forwarded twice (by the fast path and by the workers): xdp
    // decides once per frame, and packet mode's TC follows its socket
    // filter's decision.
    assert_eq!(twice, 0, "{mode:?}: datagrams arrived twice");
    assert!(
        wrong.is_empty(),
        "{mode:?}: {} frames of the flow reached the LAN host from or to elsewhere, the first {:?}",
        wrong.len(),
        wrong[0].ipv4()
    );
    // Most of the flood went by the fast path (both directions; a third of
    // all while each move takes the flow off it until its next sync).
    assert!(
        (report.packets - fast0) * 3 > arrivals.len() as u64 + echoes,
        "{mode:?}: fast path {} packets",
        report.packets - fast0
    );
    if xdp {
        // What the router lost of the LAN's datagrams, it counted.
        assert!(
            on_the_way <= report.lost,
            "{mode:?}: {on_the_way} datagrams lost on the way, {} counted lost",
            report.lost
        );
        assert_eq!(
            stack_counts(&tb),
            vec![0, 0, 0],
            "{mode:?}: frames of the flood reached the router's own stack"
        );
        // The counters do see what reaches the stack: one datagram to the
        // router's own LAN address.
        let probe = tb.bind_udp("h1", SocketAddrV4::new(HOST1, 0));
        probe
            .send_to(b"x", SocketAddrV4::new(LAN_ADDRESS, UDP_PORT))
            .expect("send");
        assert!(
            poll(Duration::from_secs(1), || stack_counts(&tb)
                == vec![1, 0, 0]),
            "{mode:?}: {:?}",
            stack_counts(&tb)
        );
    }
}

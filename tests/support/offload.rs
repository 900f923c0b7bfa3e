//! Helpers of the offload suites (`tests/offload_e2e.rs`,
//! `tests/offload_dynamics_e2e.rs`): the in-kernel fast path's figures and
//! the flows as `xwan status` and `xwan flows` show them, its map as the
//! kernel holds it, iperf3 runs between the testbed's nodes, tcpdump
//! captures, and a UDP stream echoed by a server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    server: impl Into<IpAddr>,
    seconds: u32,
    reverse: bool,
) -> u64 {
    let addr = server.into().to_string();
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

/// A connection from h1 to SERVER1:`port`, through isp1 when `isp1` (nth
/// balancing alternates the uplinks, so a few attempts find it): the client
/// end, then the server's.
pub fn connection(
    tb: &Testbed,
    port: u16,
    isp1: bool,
) -> (std::net::TcpStream, std::net::TcpStream) {
    let server = std::net::SocketAddrV4::new(crate::support::SERVER1, port);
    let listener = tb.listen_tcp("inet", server);
    for _ in 0..4 {
        let client = tb.connect_tcp("h1", server).expect("connect");
        let (conn, peer) = listener.accept();
        if !isp1 || crate::support::ip_of(peer) == crate::support::WAN1 {
            return (client, conn);
        }
    }
    panic!("nth balancing gives isp1 one connection of two");
}

/// The ifindex of `interface` in `node`'s namespace.
pub fn ifindex(tb: &Testbed, node: &str, interface: &str) -> u32 {
    let out = tb.exec_ok(
        node,
        &["cat", &format!("/sys/class/net/{interface}/ifindex")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("ifindex of {interface}: {text:?}: {e}"))
}

/// One entry of the fast path's map as the kernel holds it (`struct
/// offload_key` and `struct offload_entry` of src/io/afxdp/offload.bpf.h),
/// read from the map itself, not from xwan's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    pub ingress: u32,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub protocol: u8,
    pub egress: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// What the addresses and ports become.
    pub new_src: SocketAddrV4,
    pub new_dst: SocketAddrV4,
    pub mtu: u16,
}

/// The `offload` map of the xwan running in the testbed's router namespace:
/// the hash map of 20-byte keys and 40-byte values among the BPF maps its
/// process holds (`/proc/PID/fdinfo` gives each map's id).
fn offload_map(tb: &Testbed) -> libbpf_rs::MapHandle {
    let out = Command::new("ip")
        .args(["netns", "pids", &tb.ns("rtr")])
        .output()
        .expect("ip netns pids");
    let pids = String::from_utf8_lossy(&out.stdout).into_owned();
    let pid = pids
        .split_whitespace()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "xwan")
        })
        .unwrap_or_else(|| panic!("no xwan among the router namespace's processes {pids:?}"));
    let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("read fdinfo");
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u32>().ok())
        };
        let shape = (field("map_type:"), field("key_size:"), field("value_size:"));
        // BPF_MAP_TYPE_HASH, struct offload_key, struct offload_entry.
        if shape == (Some(1), Some(20), Some(40)) {
            let id = field("map_id:").expect("a map's fdinfo names its id");
            return libbpf_rs::MapHandle::from_map_id(id)
                .unwrap_or_else(|e| panic!("open map {id}: {e}"));
        }
    }
    panic!("xwan (pid {pid}) holds no offload map");
}

/// Every entry in the fast path's map now.
pub fn map_entries(tb: &Testbed) -> Vec<MapEntry> {
    use libbpf_rs::{MapCore, MapFlags};
    let map = offload_map(tb);
    let addr = |b: &[u8], port: &[u8]| {
        SocketAddrV4::new(
            Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            u16::from_be_bytes([port[0], port[1]]),
        )
    };
    let u32_at = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    map.keys()
        .filter_map(|k| {
            // Removed since the keys were listed: not there.
            let v = map.lookup(&k, MapFlags::ANY).ok()??;
            Some(MapEntry {
                ingress: u32_at(&k[0..4]),
                src: addr(&k[4..8], &k[12..14]),
                dst: addr(&k[8..12], &k[14..16]),
                protocol: k[16],
                egress: u32_at(&v[0..4]),
                src_mac: v[4..10].try_into().ok()?,
                dst_mac: v[10..16].try_into().ok()?,
                new_src: addr(&v[16..20], &v[24..26]),
                new_dst: addr(&v[20..24], &v[26..28]),
                mtu: u16::from_ne_bytes([v[34], v[35]]),
            })
        })
        .collect()
}

/// A frame a capture saw, with when (microseconds since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Captured {
    pub time_us: u64,
    pub frame: Vec<u8>,
}

impl Captured {
    /// The IPv4 header's source and destination, if it is IPv4.
    pub fn ipv4(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let f = &self.frame;
        if f.len() < 34 || f[12..14] != [0x08, 0x00] {
            return None;
        }
        Some((
            Ipv4Addr::new(f[26], f[27], f[28], f[29]),
            Ipv4Addr::new(f[30], f[31], f[32], f[33]),
        ))
    }

    /// The IPv4 total length.
    pub fn ip_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.frame[16], self.frame[17]]))
    }

    /// Whether it is a fragment (MF set or an offset).
    pub fn is_fragment(&self) -> bool {
        u16::from_be_bytes([self.frame[20], self.frame[21]]) & 0x3fff != 0
    }
}

/// tcpdump on an interface of a node, writing what the node receives there
/// (`-Q in`) and matches a filter to a file, until [`Capture::stop`] (or
/// the drop) ends it.
pub struct Capture {
    child: Option<std::process::Child>,
    file: std::path::PathBuf,
    log: std::path::PathBuf,
    what: String,
}

impl Capture {
    /// Starts capturing; returns once tcpdump listens.
    pub fn start(tb: &Testbed, node: &str, interface: &str, filter: &str) -> Capture {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = tb.path(&format!("{node}-{interface}-{n}.pcap"));
        let log = tb.path(&format!("{node}-{interface}-{n}.log"));
        let err = std::fs::File::create(&log).expect("create the tcpdump log");
        let child = Command::new("ip")
            .args(["netns", "exec", &tb.ns(node)])
            .args([
                "tcpdump", "-i", interface, "-Q", "in", "-n", "-U", "-Z", "root",
            ])
            // Each frame handed over at once, not in blocks of about a
            // second (a short capture would see nothing).
            .args(["--immediate-mode", "-s", "128", "-w"])
            .arg(&file)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start tcpdump");
        let capture = Capture {
            child: Some(child),
            file,
            log,
            what: format!("{node} {interface} ({filter})"),
        };
        let listening = poll(Duration::from_secs(5), || {
            std::fs::read_to_string(&capture.log).is_ok_and(|l| l.contains("listening on"))
        });
        assert!(
            listening,
            "tcpdump on {} does not listen: {}",
            capture.what,
            std::fs::read_to_string(&capture.log).unwrap_or_default()
        );
        capture
    }

    /// Ends the capture; every frame it saw, with none dropped.
    pub fn stop(mut self) -> Vec<Captured> {
        let mut child = self.child.take().expect("a running capture");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        if !poll(Duration::from_secs(5), || {
            matches!(child.try_wait(), Ok(Some(_)))
        }) {
            let _ = child.kill();
        }
        let _ = child.wait();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            log.lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "tcpdump on {} dropped frames: {log}",
            self.what
        );
        let bytes = std::fs::read(&self.file).expect("read the capture");
        read_pcap(&bytes)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The frames of a pcap file (microsecond timestamps, native byte order).
fn read_pcap(bytes: &[u8]) -> Vec<Captured> {
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    assert!(
        bytes.len() >= 24 && u32_at(0) == 0xa1b2_c3d4,
        "not a pcap file"
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let time_us = u64::from(u32_at(at)) * 1_000_000 + u64::from(u32_at(at + 4));
        let len = u32_at(at + 8) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + len) else {
            break;
        };
        frames.push(Captured {
            time_us,
            frame: frame.to_vec(),
        });
        at += 16 + len;
    }
    frames
}

/// One datagram the server of a [`UdpStream`] got.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Microseconds since the Unix epoch.
    pub time_us: u64,
    pub from: SocketAddrV4,
    pub seq: u32,
}

/// Microseconds since the Unix epoch (the clock of tcpdump's timestamps).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

/// A UDP stream from a LAN host to a server in `inet` that echoes every
/// datagram to where it came from: `burst` numbered datagrams every `every`
/// until stopped, or `limit` passes (the load is bounded).
pub struct UdpStream {
    /// Cleared to stop the sender; `stop` then ends the rest.
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Datagrams the sender's kernel took (numbered 1 to this).
    sent: Arc<AtomicU32>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    echoes: Arc<AtomicU64>,
    sender: Option<std::thread::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UdpStream {
    pub fn start(
        tb: &Testbed,
        client: SocketAddrV4,
        server: SocketAddrV4,
        (burst, every): (u32, Duration),
        limit: Duration,
    ) -> UdpStream {
        let short = Some(Duration::from_millis(50));
        let echo = tb.bind_udp("inet", server);
        echo.set_read_timeout(short).expect("timeout");
        let socket = tb.bind_udp("h1", client);
        let receiver = socket.try_clone().expect("clone the socket");
        receiver.set_read_timeout(short).expect("timeout");
        let sending = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let echoes = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + limit;
        let running = {
            let stop = Arc::clone(&stop);
            move || !stop.load(Ordering::Relaxed) && Instant::now() < deadline
        };
        let mut threads = Vec::new();
        threads.push(std::thread::spawn({
            let (running, arrivals) = (running.clone(), Arc::clone(&arrivals));
            move || {
                let mut buf = [0u8; 2048];
                while running() {
                    let Ok((n, SocketAddr::V4(from))) = echo.recv_from(&mut buf) else {
                        continue;
                    };
                    let seq = u32::from_be_bytes(buf[..4].try_into().unwrap_or_default());
                    arrivals.lock().expect("arrivals").push(Arrival {
                        time_us: unix_us(),
                        from,
                        seq,
                    });
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        }));
        threads.push(std::thread::spawn({
            let (running, echoes) = (running.clone(), Arc::clone(&echoes));
            move || {
                let mut buf = [0u8; 2048];
                while running() {
                    if receiver.recv_from(&mut buf).is_ok() {
                        echoes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
        let sender = std::thread::spawn({
            let (sending, sent) = (Arc::clone(&sending), Arc::clone(&sent));
            move || {
                let mut seq = 0u32;
                while sending.load(Ordering::Relaxed) && running() {
                    for _ in 0..burst {
                        // A datagram the kernel refuses (a full buffer, an
                        // unreachable moment) is sent again, so every number
                        // up to `sent` left the host once.
                        if socket.send_to(&(seq + 1).to_be_bytes(), server).is_ok() {
                            seq += 1;
                        }
                    }
                    sent.store(seq, Ordering::Relaxed);
                    std::thread::sleep(every);
                }
            }
        });
        UdpStream {
            sending,
            stop,
            sent,
            arrivals,
            echoes,
            sender: Some(sender),
            threads,
        }
    }

    /// What the server got so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().expect("arrivals").clone()
    }

    /// Echoes the client got so far.
    pub fn echoes(&self) -> u64 {
        self.echoes.load(Ordering::Relaxed)
    }

    /// Datagrams sent so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the stream (the sender first, then, once the last datagrams
    /// and echoes had 200 ms to arrive, the server and the receiver); what
    /// the server got.
    pub fn stop(&mut self) -> Vec<Arrival> {
        self.sending.store(false, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            sender.join().expect("sender thread");
        }
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().expect("stream thread");
        }
        self.arrivals()
    }
}

impl Drop for UdpStream {
    fn drop(&mut self) {
        self.sending.store(false, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A counter of the `Udp:` lines of `/proc/net/snmp` in `node`'s namespace
/// (`RcvbufErrors`: datagrams its sockets had no room for).
pub fn udp_counter(tb: &Testbed, node: &str, name: &str) -> u64 {
    let out = tb.exec_ok(node, &["cat", "/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        panic!("no Udp lines in /proc/net/snmp: {text}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no Udp {name} in /proc/net/snmp"))
}

/// The payload of datagram `seq` of [`send_datagrams`]: its number, then
/// bytes that depend on it and on their place.
pub fn datagram(seq: u32, size: usize) -> Vec<u8> {
    let mut data = seq.to_be_bytes().to_vec();
    data.extend((0..size.saturating_sub(4)).map(|j| (seq as usize + j) as u8));
    data
}

/// What [`send_datagrams`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub sent: u32,
    /// Refused by the sender's kernel (EMSGSIZE: over the path MTU it
    /// learnt, with DF).
    pub refused: u32,
    /// The socket's path MTU at the end (IP_MTU).
    pub path_mtu: u32,
}

/// Sends datagrams `seqs` ([`datagram`]s of `size` bytes, 10 ms apart)
/// from `node`'s port `from_port` to `to`, with DF on every one (`df`:
/// IP_PMTUDISC_DO) or on none (IP_PMTUDISC_DONT, so the path may fragment
/// them), through python3's socket module.
pub fn send_datagrams(
    tb: &Testbed,
    node: &str,
    from_port: u16,
    to: SocketAddrV4,
    seqs: std::ops::Range<u32>,
    size: usize,
    df: bool,
) -> Sent {
    const SCRIPT: &str = "import errno, socket, sys, time\n\
        df, port, host, dport, first, end, size = sys.argv[1:]\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.IPPROTO_IP, 10, 2 if df == '1' else 0)\n\
        s.bind(('0.0.0.0', int(port)))\n\
        s.connect((host, int(dport)))\n\
        sent = refused = 0\n\
        for seq in range(int(first), int(end)):\n    \
            data = seq.to_bytes(4, 'big') + bytes((seq + j) % 256 for j in range(int(size) - 4))\n    \
            try:\n        s.send(data)\n        sent += 1\n    \
            except OSError as e:\n        \
                if e.errno != errno.EMSGSIZE:\n            raise\n        \
                refused += 1\n    \
            time.sleep(0.01)\n\
        print(sent, refused, s.getsockopt(socket.IPPROTO_IP, 14))\n";
    let args = [
        if df { "1" } else { "0" }.to_string(),
        from_port.to_string(),
        to.ip().to_string(),
        to.port().to_string(),
        seqs.start.to_string(),
        seqs.end.to_string(),
        size.to_string(),
    ];
    let mut all = vec!["python3", "-c", SCRIPT];
    all.extend(args.iter().map(String::as_str));
    let out = tb.exec_ok(node, &all);
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<u32> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [sent, refused, path_mtu] => Sent {
            sent,
            refused,
            path_mtu,
        },
        _ => panic!("the sender said {text:?}"),
    }
}

/// Waits for the RST a failover sends `client` (its uplink cut at `cut`):
/// within 4 s, with the sequence it expects (Linux takes an RST only with
/// exactly that, RFC 5961).
pub fn expect_reset(client: &mut std::net::TcpStream, cut: Instant) {
    use std::io::Read;
    client
        .set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let reset = client.read(&mut buf);
    assert!(
        matches!(&reset, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the client should get an RST, got {reset:?} after {:?}",
        cut.elapsed()
    );
    assert!(
        cut.elapsed() < Duration::from_secs(4),
        "{:?}",
        cut.elapsed()
    );
}

/// 16 MiB each way over the established connection `client`-`conn`, byte
/// for byte: by the fast path (over 20000 packets: 11000 full segments each
/// way plus ACKs, a GSO super-frame counted per segment), the workers
/// receiving fewer than one frame in 20 of that. Returns the size sent
/// each way; `label` names the run in the figures it prints.
pub fn bulk_by_the_fast_path(
    tb: &Testbed,
    client: &std::net::TcpStream,
    conn: &std::net::TcpStream,
    label: &str,
) -> usize {
    let (rx0, fast0) = (worker_rx(tb), offload(tb).packets);
    let size = 16 << 20;
    pump(client, conn, size, 2);
    pump(conn, client, size, 3);
    let (rx1, fast1) = (worker_rx(tb), offload(tb).packets);
    let (fast, rx) = (fast1 - fast0, rx1 - rx0);
    eprintln!("{label}, 32 MiB: {fast} packets on the fast path, {rx} frames to the workers");
    assert!(fast > 20_000, "fast path packets {fast}");
    assert!(rx < fast / 20, "workers received {rx} frames");
    size
}

//! End-to-end test support: a testbed of network namespaces built by
//! `testbed/testbed.sh`, a router started in one of its modes, commands run
//! in the namespaces, and sockets opened inside them.
//!
//! Sockets are made by a short-lived thread that first moves itself into the
//! namespace: a socket belongs to the namespace it was created in for its
//! whole life, so the test then uses it from any thread. Servers and clients
//! are plain `std::net` sockets with timeouts, and "which uplink" is what the
//! server sees as its peer's address.

pub mod uplinks;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use xwan::config::Config;

pub mod bulk;
pub mod punt;
pub mod restart;

const TESTBED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testbed/testbed.sh");

/// The wall-clock limit of any one command a test runs.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long a socket may wait on its peer before the test fails.
pub const IO_LIMIT: Duration = Duration::from_secs(10);

/// The router's WAN addresses, and what the ISPs let out of each.
pub const WAN1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const WAN2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// The internet servers.
pub const SERVER1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SERVER2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
/// The first LAN host.
pub const HOST1: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);

/// IPv6 in a dual-stack testbed ([`Testbed::up_dual_stack`]; see the header
/// of `testbed/testbed.sh`). The first LAN host: hK is fd00:50::(9+K), the
/// number of its IPv4 octet written in hex.
pub const HOST1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x50, 0, 0, 0, 0, 0, 0xa);
/// The internet servers' IPv6 addresses.
pub const SERVER1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);
pub const SERVER2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x11);
/// The router's SLAAC address on wan1, from isp1's RAs (token ::2).
pub const WAN1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The router's one address at isp2 (static), which isp2 lets out.
pub const WAN2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
/// The prefix isp1 routes (delegates) to the router, besides WAN1_6.
pub const DELEGATED1_6: &str = "2001:db8:100::/56";

/// How the router namespace forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterMode {
    /// The iptables / iproute2 recipe of `xwan::kernel_script::render`.
    Kernel,
    /// `xwan run --io xdp`.
    XwanXdp,
    /// `xwan run --io packet`.
    XwanPacket,
    /// `xwan run --io xdp` with `[dataplane] offload = "off"`: the workers
    /// forward every packet.
    XwanXdpOffloadOff,
    /// `xwan run --io packet` with `[dataplane] offload = "off"`.
    XwanPacketOffloadOff,
    /// `xwan run` with no `--io`: the backend `auto` picks here.
    XwanAuto,
    /// `xwan run --io IO` with the features named (comma-separated) made
    /// absent by the test switch `XWAN_TEST_ABSENT`: a fallback path.
    XwanAbsent {
        io: &'static str,
        absent: &'static str,
    },
}

/// Transmit checksum offload on the LAN hosts' and servers' interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOffload {
    On,
    Off,
}

impl TxOffload {
    fn flag(self) -> &'static str {
        match self {
            TxOffload::On => "on",
            TxOffload::Off => "off",
        }
    }
}

/// The test config: the testbed's two uplinks with the given weights, nth
/// balancing, HTTPS pinned to isp2, and TCP 8080 on both WANs forwarded to
/// 192.168.50.10:80. `socket` is the control socket (one per testbed); the
/// state file is `xwan.state` beside it.
pub fn config_toml(weights: [u32; 2], socket: &Path) -> String {
    config_text(weights, socket, None)
}

/// [`config_toml`] for a dual-stack testbed ([`Testbed::up_dual_stack`]):
/// the LAN's ULA prefix fd00:50::/64 too; isp1 with its gateway and address
/// from RAs ("auto") and its delegated prefix (nat6 by default "prefix":
/// the LAN onto 2001:db8:100::/64, host bits kept); isp2 with its one
/// address (nat6 by default "masquerade") and gateway fe80::1.
pub fn config_toml_dual(weights: [u32; 2], socket: &Path) -> String {
    let isp1 = format!("gateway6 = \"auto\"\naddress6 = \"auto\"\nprefix6 = \"{DELEGATED1_6}\"\n");
    let isp2 = format!("address6 = \"{WAN2_6}\"\ngateway6 = \"fe80::1\"\n");
    config_text(weights, socket, Some((&isp1, &isp2)))
}

/// The test config; `ipv6`: the LAN's IPv6 prefix and each uplink's IPv6
/// keys (isp1's, isp2's).
fn config_text(weights: [u32; 2], socket: &Path, ipv6: Option<(&str, &str)>) -> String {
    let (networks, isp1, isp2) = match ipv6 {
        None => (r#"["192.168.50.0/24"]"#, "", ""),
        Some((isp1, isp2)) => (r#"["192.168.50.0/24", "fd00:50::/64"]"#, isp1, isp2),
    };
    format!(
        r#"[lan]
interface = "lan0"
networks = {networks}

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
weight = {w1}
probe = ["198.18.11.2"]
{isp1}
[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
weight = {w2}
probe = ["198.18.12.2"]
{isp2}
[balance]
mode = "nth"

[[rule]]
name = "https-via-isp2"
proto = "tcp"
dst_port = "443"
action = "isp2"

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.10:80"
wan = ["isp1", "isp2"]

[control]
socket = "{socket}"
state = "{state}"
"#,
        w1 = weights[0],
        w2 = weights[1],
        socket = socket.display(),
        state = socket.with_file_name("xwan.state").display(),
    )
}

/// One testbed: its namespaces exist from [`Testbed::up`] until it is dropped
/// (a panicking test drops it too).
pub struct Testbed {
    prefix: String,
    dir: PathBuf,
    router: Option<Child>,
    /// The router runs `xwan --io xdp`: going down checks [`punt::lost`].
    xdp: bool,
    /// Start xwan as the leader of a process group of its own (see
    /// [`Testbed::own_process_group`]).
    own_group: bool,
}

/// A prefix no other testbed of this or any concurrent test process uses.
fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("x{:x}t{n}", std::process::id())
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run a program under `timeout`; panics when it cannot be started.
fn run_limited(limit: Duration, program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "5", &limit.as_secs().to_string(), program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn testbed_sh(args: &[&str]) -> Output {
    let mut all = vec![TESTBED];
    all.extend_from_slice(args);
    run_limited(COMMAND_LIMIT, "bash", &all)
}

impl Testbed {
    /// Build a fresh testbed (two LAN hosts, one queue per interface).
    pub fn up(tx: TxOffload) -> Testbed {
        Testbed::up_with(tx, &[])
    }

    /// Build a fresh dual-stack testbed (`testbed.sh up --ipv6`): the same
    /// as [`Testbed::up`], with IPv6 addresses and routes beside the IPv4
    /// ones; the router has its SLAAC address on wan1 ([`WAN1_6`]) and the
    /// default route isp1's RAs give by the time this returns.
    pub fn up_dual_stack(tx: TxOffload) -> Testbed {
        Testbed::up_with(tx, &["--ipv6"])
    }

    fn up_with(tx: TxOffload, options: &[&str]) -> Testbed {
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("xwan-e2e-{prefix}"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Built before `up` runs, so a failing `up` is still torn down.
        let testbed = Testbed {
            prefix,
            dir,
            router: None,
            xdp: false,
            own_group: false,
        };
        let mut args = vec!["up", &testbed.prefix, "--tx-offload", tx.flag()];
        args.extend_from_slice(options);
        let out = testbed_sh(&args);
        assert!(
            out.status.success(),
            "testbed.sh up failed (the e2e tests need root, iproute2, iptables, ethtool): {}",
            describe(&out)
        );
        testbed
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of a node (`rtr`, `h1`, `inet`, ...).
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// A path in this testbed's own scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Run a command in a node's namespace, under a time limit.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        let ns = self.ns(node);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run_limited(COMMAND_LIMIT, "ip", &all)
    }

    /// Like [`Testbed::exec`], and the command must succeed.
    pub fn exec_ok(&self, node: &str, args: &[&str]) -> Output {
        let out = self.exec(node, args);
        assert!(
            out.status.success(),
            "in {node}: {args:?} failed: {}",
            describe(&out)
        );
        out
    }

    /// Run `f` on a thread inside a node's namespace; sockets it creates
    /// stay in that namespace.
    pub fn in_ns<T: Send>(&self, node: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.ns(node));
        thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
                setns(&ns, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("cannot enter {path}: {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// A TCP listener in a node's namespace.
    pub fn listen_tcp(&self, node: &str, addr: SocketAddrV4) -> Listener {
        self.listen_tcp_at(node, addr.into())
    }

    /// An IPv6 TCP listener in a node's namespace.
    pub fn listen_tcp6(&self, node: &str, addr: SocketAddrV6) -> Listener {
        self.listen_tcp_at(node, addr.into())
    }

    /// A TCP listener of either family in a node's namespace.
    pub fn listen_tcp_at(&self, node: &str, addr: SocketAddr) -> Listener {
        let listener = self
            .in_ns(node, || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("cannot listen on {addr} in {node}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        Listener(listener)
    }

    /// A TCP connection from a node, with read and write timeouts set.
    pub fn connect_tcp(&self, node: &str, to: SocketAddrV4) -> io::Result<TcpStream> {
        self.connect_tcp_to(node, to.into())
    }

    /// An IPv6 TCP connection from a node, with read and write timeouts set.
    pub fn connect_tcp6(&self, node: &str, to: SocketAddrV6) -> io::Result<TcpStream> {
        self.connect_tcp_to(node, to.into())
    }

    /// A TCP connection of either family from a node, with read and write
    /// timeouts set.
    pub fn connect_tcp_to(&self, node: &str, to: SocketAddr) -> io::Result<TcpStream> {
        let stream = self.in_ns(node, || TcpStream::connect_timeout(&to, IO_LIMIT))?;
        stream.set_read_timeout(Some(IO_LIMIT))?;
        stream.set_write_timeout(Some(IO_LIMIT))?;
        Ok(stream)
    }

    /// `GET path` over HTTP/1.1 to `addr` from a node's namespace: the whole
    /// response, head and body.
    pub fn http_get(&self, node: &str, addr: &str, path: &str) -> String {
        self.in_ns(node, || {
            let mut stream = TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("connect to {addr} in {node}: {e}"));
            stream.set_read_timeout(Some(IO_LIMIT)).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: xwan\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
    }

    /// A UDP socket bound in a node's namespace, with a read timeout.
    pub fn bind_udp(&self, node: &str, addr: SocketAddrV4) -> UdpSocket {
        self.bind_udp_at(node, addr.into())
    }

    /// An IPv6 UDP socket bound in a node's namespace, with a read timeout.
    pub fn bind_udp6(&self, node: &str, addr: SocketAddrV6) -> UdpSocket {
        self.bind_udp_at(node, addr.into())
    }

    /// A UDP socket of either family bound in a node's namespace, with a
    /// read timeout.
    pub fn bind_udp_at(&self, node: &str, addr: SocketAddr) -> UdpSocket {
        let socket = self
            .in_ns(node, || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("cannot bind UDP {addr} in {node}: {e}"));
        socket
            .set_read_timeout(Some(IO_LIMIT))
            .expect("UDP read timeout");
        socket
    }

    /// Start the router in `mode` with a config text (see [`config_toml`]).
    /// Returns once it forwards: the kernel recipe has been applied, or
    /// xwan has opened its control socket.
    pub fn start_router(&mut self, mode: RouterMode, config_text: &str) {
        let config_path = self.path("xwan.toml");
        std::fs::write(&config_path, config_text).expect("write the config");
        match mode {
            RouterMode::Kernel => {
                let config = Config::from_toml(config_text, &config_path)
                    .unwrap_or_else(|e| panic!("test config rejected: {e}"));
                let script = self.path("kernel.sh");
                std::fs::write(&script, xwan::kernel_script::render(&config))
                    .expect("write the kernel script");
                let script = script.to_string_lossy();
                let out = testbed_sh(&["router", &self.prefix, "kernel-script", &script]);
                assert!(
                    out.status.success(),
                    "kernel recipe failed: {}",
                    describe(&out)
                );
            }
            RouterMode::XwanXdp | RouterMode::XwanPacket => {
                let io = if mode == RouterMode::XwanXdp {
                    "xdp"
                } else {
                    "packet"
                };
                self.spawn_xwan(&config_path, io);
            }
            RouterMode::XwanXdpOffloadOff | RouterMode::XwanPacketOffloadOff => {
                let text = format!("{config_text}\n[dataplane]\noffload = \"off\"\n");
                std::fs::write(&config_path, text).expect("write the config");
                let io = if mode == RouterMode::XwanXdpOffloadOff {
                    "xdp"
                } else {
                    "packet"
                };
                self.spawn_xwan(&config_path, io);
            }
            RouterMode::XwanAuto => self.spawn_xwan(&config_path, "auto"),
            RouterMode::XwanAbsent { io, absent } => {
                self.spawn_xwan_env(&config_path, io, &[("XWAN_TEST_ABSENT", absent)]);
            }
        }
    }

    /// Start `xwan run --io xdp|packet` with extra environment variables
    /// (`mode` must be one of the xwan modes); returns once it forwards.
    pub fn start_xwan_with_env(
        &mut self,
        mode: RouterMode,
        config_text: &str,
        env: &[(&str, &str)],
    ) {
        let io = match mode {
            RouterMode::XwanXdp | RouterMode::XwanXdpOffloadOff => "xdp",
            RouterMode::XwanPacket | RouterMode::XwanPacketOffloadOff => "packet",
            RouterMode::XwanAuto => "auto",
            RouterMode::XwanAbsent { io, .. } => io,
            RouterMode::Kernel => panic!("start_xwan_with_env starts xwan, not the kernel recipe"),
        };
        let config_path = self.path("xwan.toml");
        std::fs::write(&config_path, config_text).expect("write the config");
        self.spawn_xwan_env(&config_path, io, env);
    }

    /// Waits up to `limit` for the router process to end on its own; its
    /// exit status, or None if it still runs.
    pub fn wait_router_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.router.as_mut()?;
        let mut status = None;
        poll(limit, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            self.router = None;
        }
        status
    }

    /// Sends a signal (`KILL`, `TERM`, ...) to the router process.
    pub fn signal_router(&self, signal: &str) {
        let child = self.router.as_ref().expect("a router process");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// xwan, from its next start, leads a process group of its own, as a
    /// child of `timeout` does: [`Testbed::signal_router_and_group`] can
    /// signal it and its group at once without reaching the test.
    pub fn own_process_group(&mut self) {
        self.own_group = true;
    }

    /// Sends a signal to the router process and to its process group at
    /// once (one `kill`, microseconds apart), as `timeout` forwards one.
    pub fn signal_router_and_group(&self, signal: &str) {
        assert!(self.own_group, "xwan shares the test's process group");
        let child = self.router.as_ref().expect("a router process");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), "--", &pid, &format!("-{pid}")])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} -{pid} failed");
    }

    /// What the router process has logged so far.
    pub fn router_log(&self) -> String {
        std::fs::read_to_string(self.path("xwan.log")).unwrap_or_default()
    }

    fn spawn_xwan(&mut self, config_path: &Path, io: &str) {
        self.spawn_xwan_env(config_path, io, &[]);
    }

    fn spawn_xwan_env(&mut self, config_path: &Path, io: &str, env: &[(&str, &str)]) {
        let config_text = std::fs::read_to_string(config_path).expect("read the config back");
        let config = Config::from_toml(&config_text, config_path)
            .unwrap_or_else(|e| panic!("test config rejected: {e}"));
        // The router's own connections must not take NAT ports.
        self.exec_ok(
            "rtr",
            &["sysctl", "-qw", "net.ipv4.ip_local_port_range=60000 65535"],
        );
        let log_path = self.path("xwan.log");
        let log = File::create(&log_path).expect("create the xwan log");
        let mut command = Command::new("ip");
        if self.own_group {
            command.process_group(0);
        }
        let child = command
            .args([
                "netns",
                "exec",
                &self.ns("rtr"),
                env!("CARGO_BIN_EXE_xwan"),
                "run",
                "-c",
            ])
            .arg(config_path)
            .args(["--io", io])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn xwan run");
        self.router = Some(child);
        self.xdp = io == "xdp";
        let ready = poll(Duration::from_secs(15), || {
            if let Some(child) = self.router.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("xwan run exited early ({status}):\n{log}");
                }
            }
            // Ready once it answers and knows both gateways' MACs.
            matches!(
                xwan::control::request(&config.control.socket, &xwan::control::Request::Status),
                Ok(xwan::control::Reply::Status { status, .. })
                    if status.uplinks.iter().all(|u| u.gateway_mac.is_some())
            )
        });
        assert!(
            ready,
            "xwan run did not answer on {} with its gateways resolved in time",
            config.control.socket.display()
        );
    }

    fn stop_router(&mut self) {
        let Some(mut child) = self.router.take() else {
            return;
        };
        // TERM first so xwan detaches its programs; KILL if it lingers.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = poll(Duration::from_secs(5), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let lost = if self.xdp && self.router.is_some() && !thread::panicking() {
            punt::lost(&self.path("xwan.toml"))
        } else {
            None
        };
        self.stop_router();
        let out = testbed_sh(&["down", &self.prefix]);
        if !out.status.success() {
            eprintln!("testbed.sh down {} failed: {}", self.prefix, describe(&out));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(lost) = lost {
            panic!("{lost}");
        }
    }
}

/// Whether `check` became true within `limit` (checked every 20 ms).
pub fn poll(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A non-blocking TCP listener accepting with a deadline.
pub struct Listener(TcpListener);

impl Listener {
    /// The next connection and its peer address, within [`IO_LIMIT`].
    pub fn accept(&self) -> (TcpStream, SocketAddr) {
        let deadline = Instant::now() + IO_LIMIT;
        loop {
            match self.0.accept() {
                Ok((stream, peer)) => {
                    stream.set_nonblocking(false).expect("blocking stream");
                    stream
                        .set_read_timeout(Some(IO_LIMIT))
                        .expect("read timeout");
                    stream
                        .set_write_timeout(Some(IO_LIMIT))
                        .expect("write timeout");
                    return (stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no connection within {IO_LIMIT:?}"
                    );
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        }
    }
}

/// The peer's IPv4 address.
pub fn ip_of(addr: SocketAddr) -> Ipv4Addr {
    match addr {
        SocketAddr::V4(v4) => *v4.ip(),
        SocketAddr::V6(v6) => panic!("unexpected IPv6 peer {v6}"),
    }
}

/// The peer's IPv6 address.
pub fn ip6_of(addr: SocketAddr) -> Ipv6Addr {
    match addr {
        SocketAddr::V6(v6) => *v6.ip(),
        SocketAddr::V4(v4) => panic!("unexpected IPv4 peer {v4}"),
    }
}

/// `len` pseudo-random bytes (xorshift), different for each seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Send `data` on one clone of the stream while reading everything the peer
/// sends until it shuts down its side; returns what was read.
pub fn exchange(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = stream.try_clone().expect("clone the stream");
    thread::scope(|s| {
        let sent = s.spawn(move || -> io::Result<()> {
            writer.write_all(data)?;
            writer.shutdown(std::net::Shutdown::Write)
        });
        let mut received = Vec::new();
        reader
            .read_to_end(&mut received)
            .expect("read until the peer's end");
        sent.join()
            .expect("writer thread")
            .expect("write everything");
        received
    })
}

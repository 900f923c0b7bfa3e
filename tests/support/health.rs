//! Helpers of the health end-to-end tests (tests/health_e2e.rs): a DNS
//! responder that answers after a delay (this kernel has no sch_netem), the
//! event stream collected in the background, a generator of new TCP
//! connections from a LAN host to several destinations, and status reads.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use xwan::control::{self, Event, Reply, Request, StatusReport};

use crate::support::Testbed;

/// The router's status, or a panic naming the reply.
pub fn status(tb: &Testbed) -> StatusReport {
    match control::request(&tb.path("xwan.sock"), &Request::Status) {
        Ok(Reply::Status { status, .. }) => *status,
        other => panic!("status: {other:?}"),
    }
}

/// Whether uplink `i` is up, and why not.
pub fn uplink_state(tb: &Testbed, i: usize) -> (bool, Option<String>) {
    let s = status(tb);
    let u = &s.uplinks[i];
    (u.up, u.down_cause.map(|c| c.as_str().to_string()))
}

/// A DNS server on `addr` in a node's namespace that answers every query
/// (its question echoed, no records) after [`DnsResponder::set_delay`].
pub struct DnsResponder {
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DnsResponder {
    pub fn start(tb: &Testbed, node: &str, addr: SocketAddrV4) -> DnsResponder {
        let socket = tb.bind_udp(node, addr);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (delay_ms, stop) = (Arc::clone(&delay_ms), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if n < 12 {
                        continue;
                    }
                    thread::sleep(Duration::from_millis(delay_ms.load(Ordering::Relaxed)));
                    buf[2] |= 0x80;
                    let _ = socket.send_to(&buf[..n], from);
                }
            })
        };
        DnsResponder {
            delay_ms,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The router's state changes, collected from `xwan events` (the library's
/// client) as they come, until the router stops.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn subscribe(tb: &Testbed) -> Events {
        let events = Events::default();
        let sink = events.clone();
        let path = tb.path("xwan.sock");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let _ = ready_tx.send(());
            let _ = control::subscribe(&path, |event| {
                sink.0.lock().unwrap().push(event);
                true
            });
        });
        ready_rx.recv().expect("subscriber started");
        // Let the subscription reach the router before anything changes.
        thread::sleep(Duration::from_millis(200));
        events
    }

    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The first event of `uplink` going to `state`, waiting up to `limit`.
    pub fn wait_for(&self, uplink: &str, state: &str, limit: Duration) -> Option<Event> {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .all()
                .into_iter()
                .find(|e| e.uplink == uplink && e.state == state);
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Milliseconds since the Unix epoch, the clock of [`Event::time_ms`].
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Opens a new TCP connection from `node` every `every`, to each of `dests`
/// in turn (port `port`), each attempt given up after 300 ms, until `stop`
/// is set (or `limit` passes). Returns how many connected.
pub fn connection_churn(
    tb: &Testbed,
    node: &str,
    dests: &[impl Into<IpAddr> + Copy + Sync],
    port: u16,
    every: Duration,
    stop: &AtomicBool,
    limit: Duration,
) -> u64 {
    tb.in_ns(node, || {
        let connected = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + limit;
        let mut n = 0;
        thread::scope(|s| {
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let to = SocketAddr::new(dests[n % dests.len()].into(), port);
                n += 1;
                let connected = Arc::clone(&connected);
                // Threads made here stay in this namespace.
                s.spawn(move || {
                    if TcpStream::connect_timeout(&to, Duration::from_millis(300)).is_ok() {
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                });
                thread::sleep(every);
            }
        });
        connected.load(Ordering::Relaxed)
    })
}

/// Accepts (and closes) every TCP connection to `addr` in a node's
/// namespace on a thread of its own until the returned flag is set.
pub fn tcp_sink(tb: &Testbed, node: &str, addr: impl Into<SocketAddr>) -> Arc<AtomicBool> {
    let addr = addr.into();
    let listener = tb
        .in_ns(node, || std::net::TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("cannot listen on {addr} in {node}: {e}"));
    listener.set_nonblocking(true).expect("non-blocking");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => drop(conn),
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    stop
}

/// The output of a child process once it exits (killed after `limit`).
pub fn output_within(mut child: std::process::Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("child output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

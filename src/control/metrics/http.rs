//! The metrics endpoint: a small HTTP/1.1 responder off the data path.
//!
//! `GET /metrics` answers 200 with the metrics; with `[control] page` on
//! (the default), `GET /` the status page and `GET /status.json` its
//! document ([`super::super::page`]), both behind `[control] page_token`
//! when one is set (`?token=` or `Authorization: Bearer`; 401 otherwise);
//! any other request 404. Nothing here changes the router. One
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

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::super::{page, ControlError};
use super::CONTENT_TYPE;

/// The longest request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;

/// How long one connection may take, from accept to the last byte written.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// The longest a connection thread waits on its client before it checks
/// whether the server is stopping.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// Renders the metrics, and the status page's document, when they are
/// asked for.
pub trait MetricsSource: Send + Sync + 'static {
    fn metrics(&self) -> String;

    /// The status page's JSON ([`super::super::page::PageDocument`]).
    fn page_document(&self) -> String;
}

/// Whether the status page is served, and the token it asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageAccess {
    pub on: bool,
    pub token: Option<String>,
}

/// What the responder serves from.
struct Served {
    source: Arc<dyn MetricsSource>,
    page: PageAccess,
}

/// A running metrics endpoint.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and answers `GET /metrics` (and the status page as
    /// `page` says) from `source` until [`MetricsServer::stop`].
    pub fn start(
        addr: SocketAddr,
        source: Arc<dyn MetricsSource>,
        page: PageAccess,
    ) -> Result<MetricsServer, ControlError> {
        let served = Arc::new(Served { source, page });
        let error = |source| ControlError::Metrics { addr, source };
        let listener = TcpListener::bind(addr).map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("xwan-metrics".into())
                .spawn(move || accept_loop(&listener, &served, &stop))
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
fn accept_loop(listener: &TcpListener, served: &Arc<Served>, stop: &Arc<AtomicBool>) {
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
        let (served, stop) = (Arc::clone(served), Arc::clone(stop));
        let spawned = std::thread::Builder::new()
            .name("xwan-metrics-conn".into())
            .spawn(move || serve(stream, &served, &stop));
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

/// The status line, content type and body for a request head.
fn answer(head: Option<&str>, served: &Served) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let Some(line) = head.and_then(|h| h.lines().next()) else {
        return ("400 Bad Request", TEXT, "bad request\n".into());
    };
    let mut words = line.split_whitespace();
    let (method, target) = (words.next(), words.next());
    let (path, query) = match target.map(|t| t.split_once('?').unwrap_or((t, ""))) {
        Some((path, query)) => (Some(path), query),
        None => (None, ""),
    };
    let page = |ok: fn(&Served) -> (&'static str, String)| {
        if !served.page.on {
            return (
                "404 Not Found",
                TEXT,
                "not found: the status page is off ([control] page)\n".into(),
            );
        }
        if !authorized(served.page.token.as_deref(), head.unwrap_or(""), query) {
            return (
                "401 Unauthorized",
                TEXT,
                "the status page needs its token: ?token=... or Authorization: Bearer ...\n".into(),
            );
        }
        let (content_type, body) = ok(served);
        ("200 OK", content_type, body)
    };
    match (method, path) {
        (Some("GET"), Some("/metrics")) => ("200 OK", CONTENT_TYPE, served.source.metrics()),
        (Some("GET"), Some("/") | Some("/index.html")) => {
            page(|_| ("text/html; charset=utf-8", page::HTML.to_string()))
        }
        (Some("GET"), Some("/status.json")) => {
            page(|served| ("application/json", served.source.page_document()))
        }
        (Some(_), Some(_)) => (
            "404 Not Found",
            TEXT,
            "not found: xwan serves GET /metrics, / and /status.json\n".into(),
        ),
        _ => ("400 Bad Request", TEXT, "bad request\n".into()),
    }
}

/// Whether a request may see the page: no token set, or the token in its
/// query (`token=`) or its `Authorization: Bearer` header.
fn authorized(token: Option<&str>, head: &str, query: &str) -> bool {
    let Some(token) = token else {
        return true;
    };
    let in_query = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .any(|given| same(given, token));
    let in_header = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("authorization")
                && value
                    .trim()
                    .strip_prefix("Bearer ")
                    .is_some_and(|given| same(given.trim(), token))
        })
    });
    in_query || in_header
}

/// Compares without stopping at the first difference.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
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
fn serve(mut stream: TcpStream, served: &Served, stop: &AtomicBool) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let (status, content_type, body) = match read_head(&mut stream, deadline, stop) {
        Ok(head) => answer(Some(&head), served),
        Err(Cut::Failed) => answer(None, served),
        Err(Cut::OutOfTime) => {
            refuse(
                &mut stream,
                "408 Request Timeout",
                "request not received in time\n",
            );
            return;
        }
    };
    let _ = write_before(
        &mut stream,
        &response(status, content_type, &body),
        deadline,
        stop,
    );
}

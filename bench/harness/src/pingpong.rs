//! A UDP ping-pong: `echo` answers, `ping` sends one datagram at a time at a
//! fixed pace, waits for its answer and records the round-trip time.
//!
//! One ping is outstanding at a time; a ping not answered within
//! [`REPLY_TIMEOUT`] is lost, and a late answer to it is ignored. The pace
//! is kept by sleeping until each ping's slot, so a slow answer delays only
//! the pings behind it, never the rate over the whole run by more than it.

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How long a ping waits for its answer before it counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_millis(20);
/// Payload: the sequence number, then padding to 32 bytes.
const PAYLOAD: usize = 32;

/// Answers every datagram with itself until `lifetime` has passed.
pub fn echo(listen: SocketAddr, lifetime: Duration) -> io::Result<()> {
    let socket = UdpSocket::bind(listen)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + lifetime;
    let mut buf = [0u8; 2048];
    eprintln!("echo: ready on {listen}");
    while Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                // An answer lost to a full socket buffer is a lost ping, not an error.
                let _ = socket.send_to(&buf[..n], from);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a `ping` run measured; times in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub sent: u64,
    pub received: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "sent": self.sent,
            "received": self.received,
            "lost": self.sent - self.received,
            "min_ns": self.min_ns,
            "mean_ns": self.mean_ns,
            "p50_ns": self.p50_ns,
            "p99_ns": self.p99_ns,
            "p999_ns": self.p999_ns,
            "max_ns": self.max_ns,
        })
        .to_string()
    }
}

/// Sends `warmup` uncounted pings then `rate * seconds` counted ones to `to`
/// (IPv4 or IPv6), from an address of the same family.
pub fn ping(to: SocketAddr, rate: u32, seconds: f64, warmup: u32) -> io::Result<Summary> {
    if rate == 0 || !(seconds > 0.0 && seconds <= 600.0) {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "--rate must be positive and --seconds within 0..600",
        ));
    }
    let counted = (f64::from(rate) * seconds).round() as u64;
    let total = counted + u64::from(warmup);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let any: SocketAddr = if to.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(REPLY_TIMEOUT))?;

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| io::Error::other(format!("histogram: {e}")))?;
    let mut received = 0u64;
    let mut payload = [0u8; PAYLOAD];
    let mut answer = [0u8; 2048];
    let start = Instant::now();
    for seq in 0..total {
        let slot = start + interval.mul_f64(seq as f64);
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        let sent_at = Instant::now();
        socket.send(&payload)?;
        if let Some(rtt) = await_answer(&socket, seq, sent_at, &mut answer)? {
            if seq >= u64::from(warmup) {
                received += 1;
                histogram.saturating_record(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
            }
        }
    }
    if received == 0 {
        return Err(io::Error::new(
            ErrorKind::TimedOut,
            format!("no answer from {to} to {counted} pings"),
        ));
    }
    let at = |q: f64| histogram.value_at_quantile(q);
    Ok(Summary {
        sent: counted,
        received,
        min_ns: histogram.min(),
        mean_ns: histogram.mean() as u64,
        p50_ns: at(0.50),
        p99_ns: at(0.99),
        p999_ns: at(0.999),
        max_ns: histogram.max(),
    })
}

/// Waits for the answer to ping `seq`; None when it does not come in time.
fn await_answer(
    socket: &UdpSocket,
    seq: u64,
    sent_at: Instant,
    buf: &mut [u8],
) -> io::Result<Option<Duration>> {
    loop {
        match socket.recv(buf) {
            Ok(n) if n >= 8 && buf[..8] == seq.to_le_bytes() => return Ok(Some(sent_at.elapsed())),
            // A late answer to an earlier ping.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None)
            }
            // An ICMP error (port unreachable) on the connected socket: lost.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(None),
            Err(e) => return Err(e),
        }
        if sent_at.elapsed() >= REPLY_TIMEOUT {
            return Ok(None);
        }
    }
}

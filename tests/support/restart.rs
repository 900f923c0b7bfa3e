//! Stopping xwan with a signal and starting it again with the same
//! configuration, traffic paced across the gap, and the log of a run.
//! (Every suite compiles `support`; only some use these.)

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitStatus;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{pattern, RouterMode, Testbed};

impl Testbed {
    /// Sends SIG (`TERM`, `KILL`) to the running xwan and waits for it to
    /// exit; returns its exit status.
    pub fn signal_xwan(&mut self, signal: &str) -> ExitStatus {
        self.signal_router(signal);
        self.wait_router_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("xwan did not exit on SIG{signal}:\n{}", self.xwan_log()))
    }

    /// Starts xwan again in `mode` with the configuration file it last ran
    /// with (as the test left it); returns once it forwards. The log starts
    /// anew.
    pub fn start_xwan_again(&mut self, mode: RouterMode) {
        let text = std::fs::read_to_string(self.path("xwan.toml")).expect("read the config");
        self.start_xwan_with_env(mode, &text, &[]);
    }

    /// [`Testbed::router_log`] without its colours.
    pub fn xwan_log(&self) -> String {
        let log = self.router_log();
        let mut plain = String::with_capacity(log.len());
        let mut rest = log.as_str();
        while let Some(at) = rest.find('\x1b') {
            plain.push_str(&rest[..at]);
            rest = &rest[at..];
            rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
        }
        plain.push_str(rest);
        plain
    }
}

/// Sends `len` bytes of [`pattern`] (`seed`) on `stream` in 16 KiB pieces,
/// one every `gap`, then closes its side: a transfer that lasts
/// `len / 16 KiB * gap`.
pub fn paced_send(mut stream: TcpStream, len: usize, seed: u64, gap: Duration) -> JoinHandle<()> {
    thread::spawn(move || {
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("write timeout");
        for chunk in pattern(len, seed).chunks(16 * 1024) {
            stream.write_all(chunk).expect("the paced sender writes");
            thread::sleep(gap);
        }
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("close the sending side");
    })
}

/// Reads `stream` to its end on a thread (30 s between bytes at most).
pub fn receive_all(mut stream: TcpStream) -> JoinHandle<std::io::Result<Vec<u8>>> {
    thread::spawn(move || {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut received = Vec::new();
        stream.read_to_end(&mut received)?;
        Ok(received)
    })
}

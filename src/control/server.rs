//! The control socket: a Unix socket served off the data path, one thread per
//! connection, one JSON request per line.
//!
//! Who may do what:
//! - The socket is mode 0600, or 0660 with the group `[control] group`; it is
//!   bound inside a private directory (mode 0700) and given its owner and mode
//!   there, then renamed into place, so it never exists at its path with a
//!   wider mode. The kernel checks the mode at `connect`, with the client's
//!   real groups (supplementary ones included).
//! - Each connection's peer credentials (`SO_PEERCRED`) decide what it may
//!   ask: uid 0, or the uid xwan runs as, may do everything; anyone else who
//!   could connect (a member of the group) may read (`status`, `flows`); a
//!   change (`uplink`, `reload`) from them is refused with a reply that says
//!   it needs root.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials, Shutdown};

use super::protocol::{Event, Reply, Request, MAX_REQUEST_BYTES};
use super::ControlError;
use crate::config::ControlGroup;

/// Answers control requests.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> Reply;

    /// A subscription to the uplink state changes for `events`; an error
    /// message when there is none to give.
    fn subscribe(&self) -> Result<Receiver<Event>, String> {
        Err("this server streams no events".to_string())
    }
}

/// How often an idle event stream checks that its client is still there.
const EVENT_CHECK: Duration = Duration::from_secs(1);

/// Connections served at once; more are refused with an error reply.
const MAX_CONNECTIONS: usize = 16;

/// A running control socket.
pub struct ControlServer {
    path: PathBuf,
    /// The socket file's device and inode as bound: the stop removes the
    /// path only while it is still this socket.
    bound: Option<(u64, u64)>,
    /// A second handle on the listening socket, shut down to wake the
    /// accept loop: a wake that needs nothing from the file system.
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket, refusing one a live xwan answers
    /// on) and serves requests with `handler` until [`ControlServer::stop`];
    /// members of `group` may read.
    pub fn start(
        path: &Path,
        group: Option<ControlGroup>,
        handler: Arc<dyn Handler>,
    ) -> Result<ControlServer, ControlError> {
        let error = |source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        };
        // A stale socket is replaced by the rename in `bind_private`.
        if path.exists() && UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.to_path_buf()));
        }
        let listener = bind_private(path, group.as_ref().map(|g| g.gid)).map_err(error)?;
        let bound = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let waker = listener.try_clone().map_err(error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let access = Arc::new(Policy {
                group,
                own_uid: nix::unistd::geteuid().as_raw(),
            });
            std::thread::Builder::new()
                .name("xwan-control".into())
                .spawn(move || accept_loop(listener, handler, access, stop))
                .map_err(error)?
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            bound,
            listener: waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops serving and removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Wakes and joins the accept loop, whatever became of the socket's
    /// file: shutting the listening socket down makes a blocked `accept`
    /// return at once (EINVAL), so the stop waits on nothing outside xwan.
    /// Then removes the file if it is still this socket's.
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = nix::sys::socket::shutdown(self.listener.as_raw_fd(), Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| Some((m.dev(), m.ino())) == self.bound);
        if still_ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// Binds the socket in a private directory beside `path`, gives it its group
/// and mode there, and renames it to `path` (replacing a stale socket).
fn bind_private(path: &Path, gid: Option<u32>) -> std::io::Result<UnixListener> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "xwan.sock".into(), |n| n.to_string_lossy().into_owned());
    let private = dir.join(format!(".{name}.{}.bind", std::process::id()));
    // A leftover of an earlier process that had this pid.
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inside = private.join("sock");
    let bound = (|| {
        let listener = UnixListener::bind(&inside)?;
        let mode = match gid {
            Some(gid) => {
                std::os::unix::fs::chown(&inside, None, Some(gid))?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&inside, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// Who may ask what on the socket.
struct Policy {
    group: Option<ControlGroup>,
    /// The uid xwan runs as: its clients may do what root may.
    own_uid: u32,
}

/// What one connection may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Everything,
    ReadOnly,
    Nothing,
}

impl Policy {
    fn access(&self, stream: &UnixStream) -> (Access, u32) {
        let Ok(peer) = getsockopt(stream, PeerCredentials) else {
            return (Access::Nothing, u32::MAX);
        };
        let uid = peer.uid();
        let access = if uid == 0 || uid == self.own_uid {
            Access::Everything
        } else if self.group.is_some() {
            // It connected through the socket's group permission.
            Access::ReadOnly
        } else {
            Access::Nothing
        };
        (access, uid)
    }

    /// None when `request` is allowed; the refusal otherwise.
    fn refusal(&self, access: Access, uid: u32, request: &Request) -> Option<String> {
        let who = format!("uid {uid}");
        match (access, request.is_change(), &self.group) {
            (Access::Everything, _, _) | (Access::ReadOnly, false, _) => None,
            (Access::ReadOnly, true, Some(group)) => Some(format!(
                "permission denied: `xwan {}` changes the router and needs root; {who} may only read                  (status, flows, events) as a member of [control] group {:?}",
                request.name(),
                group.name
            )),
            (_, _, Some(group)) => Some(format!(
                "permission denied: `xwan {}` needs root or membership of [control] group {:?}",
                request.name(),
                group.name
            )),
            (_, _, None) => Some(format!(
                "permission denied: `xwan {}` needs root ({who} is not; [control] group can let a                  group read status, flows and events)",
                request.name()
            )),
        }
    }
}

fn accept_loop(
    listener: UnixListener,
    handler: Arc<dyn Handler>,
    policy: Arc<Policy>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            // Shut down without the stop (no one else does that): nothing
            // more will come.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(_) => continue,
        };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = write_reply(&mut stream, &Reply::error("too many control connections"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let handler = Arc::clone(&handler);
        let policy = Arc::clone(&policy);
        let active_here = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("xwan-control-conn".into())
            .spawn(move || {
                serve(stream, handler.as_ref(), &policy);
                active_here.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn write_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Answers requests on one connection until it closes, sends a line that is
/// too long, or stays silent for a minute.
fn serve(stream: UnixStream, handler: &dyn Handler, policy: &Policy) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let (access, uid) = policy.access(&stream);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = MAX_REQUEST_BYTES as u64 + 1;
        match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST_BYTES {
            let _ = write_reply(
                &mut writer,
                &Reply::error(format!("request longer than {MAX_REQUEST_BYTES} bytes")),
            );
            return;
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(text.trim()) {
            Ok(request) => match policy.refusal(access, uid, &request) {
                Some(refusal) => Reply::error(refusal),
                None if request == Request::Events => match handler.subscribe() {
                    Ok(events) => {
                        stream_events(reader.get_ref(), &mut writer, &events);
                        return;
                    }
                    Err(error) => Reply::error(error),
                },
                None => handler.handle(request),
            },
            Err(e) => Reply::error(format!("bad request: {e}")),
        };
        if write_reply(&mut writer, &reply).is_err() {
            return;
        }
    }
}

/// Writes `events` to the client, one JSON line each, after a first reply,
/// until the client closes the connection.
fn stream_events(reader: &UnixStream, writer: &mut UnixStream, events: &Receiver<Event>) {
    if write_reply(writer, &Reply::done("streaming uplink state changes")).is_err() {
        return;
    }
    loop {
        match events.recv_timeout(EVENT_CHECK) {
            Ok(event) => {
                let Ok(mut line) = serde_json::to_vec(&event) else {
                    continue;
                };
                line.push(b'\n');
                if writer.write_all(&line).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if client_gone(reader) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Whether the client closed its end (what it sends on a stream is ignored).
fn client_gone(mut reader: &UnixStream) -> bool {
    if reader.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 256];
    let gone = loop {
        match reader.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) => break e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    gone || reader.set_nonblocking(false).is_err()
}

//! The control socket: requests answered, malformed input refused with a clear
//! error while the server keeps running, stale sockets replaced, live ones kept.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use xwan::control::{self, ControlServer, Handler, Reply, Request};

struct Echo;

impl Handler for Echo {
    fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Reload => Reply::done("reloaded"),
            other => Reply::error(format!("unsupported here: {other:?}")),
        }
    }
}

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xwan-test-{}-{name}.sock", std::process::id()))
}

fn raw(path: &PathBuf, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.write_all(bytes).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn requests_garbage_and_huge_lines() {
    let path = socket_path("basic");
    let server = ControlServer::start(&path, None, Arc::new(Echo)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The private directory it was bound in is gone.
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let leftovers = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".{name}."))
        })
        .count();
    assert_eq!(leftovers, 0);

    assert_eq!(
        control::request(&path, &Request::Reload).unwrap(),
        Reply::done("reloaded")
    );

    let garbage = raw(&path, b"this is not json\n");
    assert!(
        garbage.contains("\"ok\":false") && garbage.contains("bad request"),
        "{garbage}"
    );
    let unknown = raw(&path, b"{\"cmd\":\"explode\"}\n");
    assert!(
        unknown.contains("bad request") && unknown.contains("explode"),
        "{unknown}"
    );
    let huge = vec![b'x'; 200 * 1024];
    let reply = raw(&path, &huge);
    assert!(reply.contains("longer than"), "{reply}");

    // Still serving.
    assert_eq!(
        control::request(&path, &Request::Reload).unwrap(),
        Reply::done("reloaded")
    );
    server.stop();
    assert!(!path.exists());
}

#[test]
fn a_live_socket_is_kept_and_a_stale_one_replaced() {
    let path = socket_path("live");
    let server = ControlServer::start(&path, None, Arc::new(Echo)).unwrap();
    let second = ControlServer::start(&path, None, Arc::new(Echo));
    assert!(matches!(second, Err(control::ControlError::InUse(_))));
    server.stop();

    // A socket file nobody listens on is stale.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(listener);
    assert!(path.exists());
    let server = ControlServer::start(&path, None, Arc::new(Echo)).unwrap();
    assert_eq!(
        control::request(&path, &Request::Reload).unwrap(),
        Reply::done("reloaded")
    );
    server.stop();
}

#[test]
fn no_server_is_a_clear_error() {
    let path = socket_path("absent");
    let error = control::request(&path, &Request::Status)
        .unwrap_err()
        .to_string();
    assert!(error.contains("is `xwan run` running?"), "{error}");
}

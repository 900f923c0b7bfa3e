//! The client side of the control socket, for `xwan status`, `flows`, `uplink`
//! and `reload`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Reply, Request};
use super::ControlError;

/// Sends one request and waits for its reply.
pub fn request(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let connect = |source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ControlError::PermissionDenied(path.to_path_buf())
        } else {
            connect(source)
        }
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(connect)?;
    let mut line =
        serde_json::to_vec(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(connect)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(connect)?;
    serde_json::from_str(&reply).map_err(|e| ControlError::Protocol(format!("{e}: {reply:?}")))
}

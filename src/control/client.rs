//! The client side of the control socket, for `xwan status`, `flows`,
//! `uplink`, `reload` and `events`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Event, Reply, Request};
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

/// Subscribes to the uplink state changes and calls `each` with every event
/// (stopping when it returns false) until xwan closes the connection.
pub fn subscribe(path: &Path, mut each: impl FnMut(Event) -> bool) -> Result<(), ControlError> {
    let connect = |source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(connect)?;
    let mut line =
        serde_json::to_vec(&Request::Events).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(connect)?;
    let mut lines = BufReader::new(stream).lines();
    let first = lines
        .next()
        .transpose()
        .map_err(connect)?
        .unwrap_or_default();
    match serde_json::from_str(&first) {
        Ok(Reply::Done { .. }) => {}
        Ok(Reply::Error { error, .. }) => return Err(ControlError::Protocol(error)),
        _ => return Err(ControlError::Protocol(format!("{first:?}"))),
    }
    for line in lines {
        let line = line.map_err(connect)?;
        let event = serde_json::from_str(&line)
            .map_err(|e| ControlError::Protocol(format!("{e}: {line:?}")))?;
        if !each(event) {
            break;
        }
    }
    Ok(())
}

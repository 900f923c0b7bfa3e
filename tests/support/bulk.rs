//! Bulk TCP through the router: a transfer each way at once, checked byte
//! for byte.

use std::net::SocketAddrV4;
use std::thread;

use super::{exchange, ip_of, pattern, Testbed, SERVER2, WAN1, WAN2};

/// Moves `size` bytes from h1 to a server behind the router and `size` other
/// bytes back on the same connection at once; panics unless both arrive
/// intact.
pub fn both_ways_intact(tb: &Testbed, size: usize) {
    let server = SocketAddrV4::new(SERVER2, 5001);
    let listener = tb.listen_tcp("inet", server);
    let client = tb
        .connect_tcp("h1", server)
        .expect("connect for the bulk transfer");
    let (conn, peer) = listener.accept();
    assert!([WAN1, WAN2].contains(&ip_of(peer)), "peer {peer}");
    let upload = pattern(size, 1);
    let download = pattern(size, 2);
    let (at_server, at_client) = thread::scope(|s| {
        let server_side = s.spawn(|| exchange(&conn, &download));
        let at_client = exchange(&client, &upload);
        (server_side.join().expect("server side"), at_client)
    });
    assert_same_bytes("upload", &at_server, &upload);
    assert_same_bytes("download", &at_client, &download);
}

fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
}

//! Raw frames in the testbed: interface MACs, whole Ethernet frames sent
//! through an AF_PACKET socket in a node's namespace (python3's socket
//! module, so the test crafts every byte), and UDP datagrams sent without
//! DF (IP_PMTUDISC_DONT) so the path may fragment them.

use crate::support::Testbed;

/// The MAC address of `interface` in `node`'s namespace.
pub fn mac_of(tb: &Testbed, node: &str, interface: &str) -> [u8; 6] {
    let out = tb.exec_ok(
        node,
        &["cat", &format!("/sys/class/net/{interface}/address")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("MAC {text}: {e}")))
        .collect();
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("not a MAC: {text}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends whole Ethernet frames, in this order, out `interface` of `node`.
pub fn send_frames(tb: &Testbed, node: &str, interface: &str, frames: &[Vec<u8>]) {
    const SCRIPT: &str = "import socket, sys, time\n\
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
        s.bind((sys.argv[1], 0))\n\
        for f in sys.argv[2:]:\n    s.send(bytes.fromhex(f))\n    time.sleep(0.02)\n";
    let frames: Vec<String> = frames.iter().map(|f| hex(f)).collect();
    let mut args = vec!["python3", "-c", SCRIPT, interface];
    args.extend(frames.iter().map(String::as_str));
    tb.exec_ok(node, &args);
}

/// Sends one UDP datagram from `node` to `to` (`addr:port`) from source
/// port `from_port`, with DF never set, so it leaves in fragments when it
/// is bigger than the interface's MTU and may be fragmented on the way.
pub fn send_udp_without_df(tb: &Testbed, node: &str, from_port: u16, to: &str, payload: &[u8]) {
    const SCRIPT: &str = "import socket, sys\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.IPPROTO_IP, 10, 0)\n\
        s.bind(('0.0.0.0', int(sys.argv[1])))\n\
        host, port = sys.argv[2].split(':')\n\
        s.sendto(bytes.fromhex(sys.argv[3]), (host, int(port)))\n";
    let port = from_port.to_string();
    let data = hex(payload);
    tb.exec_ok(node, &["python3", "-c", SCRIPT, &port, to, &data]);
}

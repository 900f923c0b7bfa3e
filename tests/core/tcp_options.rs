//! IP options on forwarded packets (the transport header found from the IHL)
//! and TCP MSS clamping.

use xwan::router::{DropReason, FrameMeta, Port, Verdict};
use xwan::testing::{self, ACK, SYN, SYN_ACK};

use super::*;

/// Record-route-like filler: NOPs ending with end-of-options, `len` bytes.
fn options(len: usize) -> Vec<u8> {
    let mut o = vec![1u8; len];
    o[len - 1] = 0;
    o
}

#[test]
fn ip_options_are_kept_and_the_transport_is_found_after_them() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    for len in [4, 8, 40] {
        let opts = options(len);
        for frame in [
            testing::tcp(&lan, 3000 + len as u16, 80, SYN, b"syn"),
            testing::udp(&lan, 3000 + len as u16, 53, b"query"),
            testing::icmp_echo(&lan, true, 3000 + len as u16, 1, b"ping"),
        ] {
            let frame = testing::with_ip_options(&frame, &opts);
            let (verdict, out) = b.send(Port::Lan, frame.clone());
            let Verdict::Forward {
                port: Port::Wan(uplink),
                ..
            } = verdict
            else {
                panic!("{verdict:?}");
            };
            let seen = testing::check(&out).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&out[34..34 + len], opts.as_slice(), "options kept");
            assert_eq!(seen.src, [ISP1, ISP2][usize::from(uplink)]);
            // The reply, with options too, comes back to the right port.
            let wan = from_internet(usize::from(uplink), SERVER, seen.src);
            let reply = match seen.protocol {
                6 => testing::tcp(&wan, 80, seen.src_port, SYN_ACK, b""),
                17 => testing::udp(&wan, 53, seen.src_port, b"answer"),
                _ => testing::icmp_echo(&wan, false, seen.src_port, 1, b"pong"),
            };
            let back = b.forward(
                Port::Wan(uplink),
                testing::with_ip_options(&reply, &opts),
                Port::Lan,
            );
            assert_eq!(back.dst_port, 3000 + len as u16);
        }
    }
    // Options longer than the frame: malformed.
    let mut cut = testing::with_ip_options(&testing::udp(&lan, 1, 2, b""), &options(40));
    cut.truncate(14 + 40);
    assert_eq!(
        b.send(Port::Lan, cut).0,
        Verdict::Drop(DropReason::Malformed)
    );
}

fn syn_with(options: &[u8], flags: testing::Flags) -> Vec<u8> {
    testing::tcp_with_options(&from_host(HOST, SERVER), 4000, 443, flags, options, b"")
}

#[test]
fn mss_is_clamped_on_syns_both_ways_when_configured() {
    let mut b = Bench::new("[nat]\nmss_clamp = 1452\n");
    let (verdict, bytes) = b.send(Port::Lan, syn_with(&testing::mss_option(1460), SYN));
    let Verdict::Forward {
        port: Port::Wan(uplink),
        ..
    } = verdict
    else {
        panic!("{verdict:?}");
    };
    let out = testing::check(&bytes).unwrap();
    assert_eq!(testing::announced_mss(&bytes), Some(1452));
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    let syn_ack = testing::tcp_with_options(
        &wan,
        443,
        out.src_port,
        SYN_ACK,
        &testing::mss_option(9000),
        b"",
    );
    let (verdict, back) = b.send(Port::Wan(uplink), syn_ack);
    assert!(matches!(
        verdict,
        Verdict::Forward {
            port: Port::Lan,
            ..
        }
    ));
    testing::check(&back).unwrap();
    assert_eq!(testing::announced_mss(&back), Some(1452));

    // Smaller MSS values, segments without SYN and option lists where the
    // MSS sits at an odd offset.
    let (_, small) = b.send(Port::Lan, syn_with(&testing::mss_option(1200), SYN));
    assert_eq!(testing::announced_mss(&small), Some(1200));
    let mut odd = vec![1u8];
    odd.extend_from_slice(&testing::mss_option(1460));
    let (_, bytes) = b.send(Port::Lan, syn_with(&odd, SYN));
    testing::check(&bytes).unwrap();
    assert_eq!(testing::announced_mss(&bytes), Some(1452));
    let (_, ack) = b.send(Port::Lan, syn_with(&testing::mss_option(1460), ACK));
    assert_eq!(testing::announced_mss(&ack), Some(1460));
}

#[test]
fn auto_clamps_to_the_smaller_mtu_and_partial_checksums_come_out_whole() {
    let text = base_with(
        "mtu = 1400",
        "mtu = 1492",
        "[nat]\nmss_clamp = \"auto\"\n[[rule]]\naction = \"isp1\"\n",
    );
    let mut b = Bench::from_text(&text);
    let mut frame = syn_with(&testing::mss_option(1460), SYN);
    // A partial checksum, as from a local sender with offload.
    let l4_len = (frame.len() - 34) as u16;
    let pseudo = xwan::packet::checksum::fold(xwan::packet::checksum::pseudo_header_sum(
        HOST.octets(),
        SERVER.octets(),
        6,
        l4_len,
    ));
    frame[50..52].copy_from_slice(&pseudo.to_be_bytes());
    let verdict = b.router.process(
        &mut b.lane,
        &mut frame,
        FrameMeta {
            port: Port::Lan,
            now: b.now,
            checksum_partial: true,
            gso: None,
        },
    );
    assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
    testing::check(&frame).unwrap();
    assert_eq!(
        testing::announced_mss(&frame),
        Some(1360),
        "LAN MTU 1400 - 40"
    );
}

#[test]
fn without_clamping_the_mss_is_untouched() {
    let mut b = Bench::new("");
    let (_, bytes) = b.send(Port::Lan, syn_with(&testing::mss_option(8960), SYN));
    testing::check(&bytes).unwrap();
    assert_eq!(testing::announced_mss(&bytes), Some(8960));
}

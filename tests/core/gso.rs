//! GSO super-frames (`--io packet` with virtio-net headers): a TCP/IPv4
//! super-frame whose segments fit the egress MTU is translated once and
//! forwarded whole with its checksum still partial (the pseudo-header sum of
//! the new addresses); one the core cannot pass whole is left unchanged for
//! the I/O layer to cut.

use xwan::packet::checksum::{fold, pseudo_header_sum};
use xwan::router::{DropReason, FrameMeta, Gso, Port, Verdict};
use xwan::testing::{self, ACK, SYN};

use super::*;

const L4: usize = 14 + 20;

/// `frame` (TCP, no IP options) with its checksum partial, as a local
/// sender with offloads leaves it.
fn partial(mut frame: Vec<u8>) -> Vec<u8> {
    let len = (frame.len() - L4) as u16;
    let src = [frame[26], frame[27], frame[28], frame[29]];
    let dst = [frame[30], frame[31], frame[32], frame[33]];
    let sum = fold(pseudo_header_sum(src, dst, 6, len));
    frame[L4 + 16..L4 + 18].copy_from_slice(&sum.to_be_bytes());
    frame
}

fn gso(size: u16) -> Gso {
    Gso {
        size,
        csum_start: L4 as u16,
        csum_offset: 16,
    }
}

/// Sends a super-frame in on `port`: the verdict and the frame after it.
fn send_whole(b: &mut Bench, port: Port, mut frame: Vec<u8>, gso: Gso) -> (Verdict, Vec<u8>) {
    let meta = FrameMeta {
        port,
        now: b.now,
        checksum_partial: true,
        gso: Some(gso),
    };
    let verdict = b.router.process(&mut b.lane, &mut frame, meta);
    (verdict, frame)
}

fn field(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

#[test]
fn super_frames_pass_whole_both_ways_with_their_checksum_partial() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    let (uplink, out) = b.forward_any_wan(testing::tcp(&lan, 40000, 5001, SYN, b""));
    let payload = vec![0x5a; 20_000];

    // Upload: 20 000 bytes, segments of 1448 (40 + 1448 <= 1500).
    let sent = partial(testing::tcp(&lan, 40000, 5001, ACK, &payload));
    let (verdict, got) = send_whole(&mut b, Port::Lan, sent.clone(), gso(1448));
    assert_eq!(
        verdict,
        Verdict::Forward {
            port: Port::Wan(uplink),
            len: sent.len()
        },
        "no MTU check on a super-frame whose segments fit"
    );
    assert_eq!(&got[26..30], &out.src.octets(), "source translated");
    assert_eq!(field(&got, L4), out.src_port, "port translated");
    assert_eq!(&got[L4 + 20..], &payload[..], "payload untouched");
    let wan_sum = fold(pseudo_header_sum(
        out.src.octets(),
        SERVER.octets(),
        6,
        (sent.len() - L4) as u16,
    ));
    assert_eq!(field(&got, L4 + 16), wan_sum, "pseudo-header sum follows");

    // Download: the reply super-frame back to the host.
    let inet = from_internet(usize::from(uplink), SERVER, out.src);
    let reply = partial(testing::tcp(&inet, 5001, out.src_port, ACK, &payload));
    let (verdict, got) = send_whole(&mut b, Port::Wan(uplink), reply.clone(), gso(1448));
    assert_eq!(
        verdict,
        Verdict::Forward {
            port: Port::Lan,
            len: reply.len()
        }
    );
    assert_eq!(&got[30..34], &HOST.octets());
    assert_eq!(field(&got, L4 + 2), 40000);
    let lan_sum = fold(pseudo_header_sum(
        SERVER.octets(),
        HOST.octets(),
        6,
        (reply.len() - L4) as u16,
    ));
    assert_eq!(field(&got, L4 + 16), lan_sum);
}

#[test]
fn what_cannot_pass_whole_is_left_unchanged_to_be_cut() {
    let mut b = Bench::new("");
    let lan = from_host(HOST, SERVER);
    b.forward_any_wan(testing::tcp(&lan, 40000, 5001, SYN, b""));
    let sent = partial(testing::tcp(&lan, 40000, 5001, ACK, &[7; 5000]));
    for (why, gso) in [
        ("segments of 1461 + 40 bytes exceed the 1500 MTU", gso(1461)),
        ("size 0", gso(0)),
        (
            "checksum not at the TCP header",
            Gso {
                csum_start: 14,
                ..gso(1448)
            },
        ),
        (
            "checksum field elsewhere",
            Gso {
                csum_offset: 6,
                ..gso(1448)
            },
        ),
    ] {
        let (verdict, got) = send_whole(&mut b, Port::Lan, sent.clone(), gso);
        assert_eq!(verdict, Verdict::Drop(DropReason::GsoNotWhole), "{why}");
        assert_eq!(got, sent, "{why}: unchanged");
    }
    // The largest segments that fit do pass.
    let (verdict, _) = send_whole(&mut b, Port::Lan, sent.clone(), gso(1460));
    assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");

    let udp = testing::udp(&lan, 40000, 53, &[7; 5000]);
    let (verdict, got) = send_whole(&mut b, Port::Lan, udp.clone(), gso(1448));
    assert_eq!(verdict, Verdict::Drop(DropReason::GsoNotWhole), "UDP");
    assert_eq!(got, udp);
}

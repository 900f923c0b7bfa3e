use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::testing::{self, Addressing};

const A: Addressing = Addressing {
    src_mac: [2, 0, 0, 0, 0, 1],
    dst_mac: [2, 0, 0, 0, 0, 2],
    src: Ipv4Addr::new(192, 168, 50, 10),
    dst: Ipv4Addr::new(203, 0, 113, 7),
    ttl: 63,
};

/// Fragments `frame` for `mtu` and returns every fragment, first one first.
fn split(frame: &[u8], mtu: u16) -> Option<Vec<Vec<u8>>> {
    let mut buf = frame.to_vec();
    let end = buf.len();
    let mut later = Vec::new();
    let mut scratch = Vec::new();
    let first = fragment(&mut buf, end, mtu, &mut scratch, |f| later.push(f.to_vec()))?;
    buf.truncate(first);
    let mut all = vec![buf];
    all.extend(later);
    Some(all)
}

/// Every payload size around the MTU boundaries: each fragment fits the MTU,
/// carries a multiple of 8 bytes but the last, and the fragments reassemble
/// into the original datagram byte for byte (its UDP checksum included).
#[test]
fn every_size_around_the_mtu_reassembles_to_the_original() {
    for mtu in [68u16, 576, 1280, 1400, 1500] {
        let room = usize::from(mtu) - 28;
        for size in (room.saturating_sub(20)..room + 20).chain([2 * room + 3, 3 * room + 8]) {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let mut datagram = testing::udp(&A, 5000, 53, &payload);
            testing::set_df_and_id(&mut datagram, false, 0x4242);
            let pieces = split(&datagram, mtu).unwrap();
            let expected = (size + 8).div_ceil((usize::from(mtu) - 20) / 8 * 8);
            assert_eq!(pieces.len(), expected, "mtu {mtu} size {size}");
            for (i, piece) in pieces.iter().enumerate() {
                assert!(piece.len() - 14 <= usize::from(mtu));
                let seen = testing::check_fragment(piece).unwrap();
                assert_eq!(seen.more, i + 1 < pieces.len());
                assert_eq!(seen.id, 0x4242);
                assert_eq!(seen.offset % 8, 0);
                assert_eq!(piece[..14], datagram[..14]);
            }
            let whole = testing::reassemble(&pieces).unwrap();
            testing::check(&whole).unwrap();
            assert_eq!(whole[34..], datagram[34..], "mtu {mtu} size {size}");
            assert_eq!(whole[14..34], datagram[14..34]);
        }
    }
}

#[test]
fn a_fragment_is_fragmented_again_at_its_own_offset() {
    let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    let datagram = testing::udp(&A, 5000, 53, &payload);
    let pieces = testing::fragment(&datagram, 7, 2000);
    let mut out = Vec::new();
    for piece in &pieces {
        out.extend(split(piece, 1000).unwrap());
    }
    let whole = testing::reassemble(&out).unwrap();
    testing::check(&whole).unwrap();
    assert_eq!(whole[34..], datagram[34..]);
}

/// The first fragment keeps every option; the later ones keep only the
/// copied ones (security, type 0x82 here), the record-route option (type 7,
/// not copied) overwritten with no-operation options.
#[test]
fn later_fragments_keep_only_the_copied_options() {
    let options = [0x82, 4, 0xaa, 0xbb, 7, 7, 4, 0, 0, 0, 0, 0];
    let payload = [9u8; 3000];
    let datagram = testing::with_ip_options(&testing::udp(&A, 1, 2, &payload), &options);
    let pieces = split(&datagram, 1500).unwrap();
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces[0][34..46], options);
    for piece in &pieces[1..] {
        assert_eq!(piece[34..46], [0x82, 4, 0xaa, 0xbb, 1, 1, 1, 1, 1, 1, 1, 0]);
    }
    let whole = testing::reassemble(&pieces).unwrap();
    assert_eq!(whole[46..], datagram[46..]);
}

#[test]
fn an_mtu_below_the_header_and_8_bytes_refuses() {
    let datagram = testing::udp(&A, 1, 2, &[0; 100]);
    assert!(split(&datagram, 27).is_none());
    assert!(split(&datagram, 28).is_some());
}

proptest! {
    #[test]
    fn any_size_and_mtu_reassembles(size in 0usize..9000, mtu in 68u16..9000) {
        let payload: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
        let mut datagram = testing::udp(&A, 5000, 53, &payload);
        testing::set_df_and_id(&mut datagram, false, 1);
        let pieces = split(&datagram, mtu).unwrap();
        for piece in &pieces {
            prop_assert!(piece.len() - 14 <= usize::from(mtu));
        }
        let whole = testing::reassemble(&pieces).unwrap();
        prop_assert_eq!(&whole[14..], &datagram[14..]);
    }
}

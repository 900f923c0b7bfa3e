//! The state file's format: round trips, and every damaged file refused
//! with an error, never a panic.

use proptest::prelude::*;

use super::*;
use crate::flow::FlowSpec;
use crate::packet::{Endpoint, Endpoint6, PROTO_UDP};

fn snapshot(flows: usize) -> Snapshot {
    Snapshot {
        saved_at: 1_700_000_000,
        uplinks: vec![
            ("isp1".into(), [198, 18, 1, 2]),
            ("isp2".into(), [198, 18, 2, 2]),
        ],
        nat_ports: PortRange {
            lo: 20000,
            hi: 59999,
        },
        sticky: Sticky::Src,
        sticky_clients: vec![(0xc0a8_320a, 1, 17)],
        flows: (0..flows)
            .map(|i| SavedFlow {
                spec: FlowSpec {
                    protocol: if i % 2 == 0 { PROTO_TCP } else { PROTO_UDP },
                    inside: Endpoint::new([192, 168, 50, 10], 1000 + i as u16),
                    outside: Endpoint::new([198, 18, 1, 2], 20000 + i as u16),
                    remote: Endpoint::new([203, 0, 113, 10], 80),
                    uplink: (i % 2) as u8,
                    kind: match i % 3 {
                        0 => FlowKind::Snat,
                        1 => FlowKind::Dnat,
                        _ => FlowKind::Hairpin { port: 8080 },
                    },
                    lan_mac: [2, 0, 0, 0, 0, i as u8],
                },
                tcp: 3,
                next_seq_to_lan: 0xdead_beef ^ i as u32,
                age_s: 100 + i as u32,
                idle_s: i as u32,
                packets: [i as u64, 2 * i as u64],
                bytes: [u64::MAX - i as u64, 7],
            })
            .collect(),
        flows6: (0..flows / 2)
            .map(|i| SavedFlow {
                spec: FlowSpec {
                    protocol: PROTO_TCP,
                    inside: Endpoint6::new(v6("fd00:50::a"), 1000 + i as u16),
                    outside: Endpoint6::new(v6("2001:db8:100::a"), 1000 + i as u16),
                    remote: Endpoint6::new(v6("2001:db8:ffff::10"), 443),
                    uplink: 0,
                    kind: FlowKind::Snat,
                    lan_mac: [2, 0, 0, 0, 1, i as u8],
                },
                tcp: 3,
                next_seq_to_lan: 7 * i as u32,
                age_s: 50,
                idle_s: 1,
                packets: [1, 2],
                bytes: [3, 4],
            })
            .collect(),
    }
}

fn v6(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// A version 1 file (before IPv6): the same bytes without the IPv6 flows'
/// count, under version 1 and its own checksum.
fn version1(snapshot: &Snapshot) -> Vec<u8> {
    let mut bytes = snapshot.encode();
    bytes.truncate(bytes.len() - 4 - 4);
    bytes[10..12].copy_from_slice(&1u16.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn a_version_1_file_is_read_with_no_ipv6_flows() {
    let mut s = snapshot(10);
    s.flows6.clear();
    assert_eq!(Snapshot::decode(&version1(&s)), Ok(s));
}

#[test]
fn round_trips() {
    let s = snapshot(100);
    let bytes = s.encode();
    assert_eq!(Snapshot::decode(&bytes), Ok(s));
}

#[test]
fn foreign_version_truncated_and_corrupt_files_are_refused() {
    let bytes = snapshot(10).encode();
    assert_eq!(Snapshot::decode(b""), Err(StateError::Foreign));
    assert_eq!(
        Snapshot::decode(b"[lan]\ninterface = \"lan0\"\n"),
        Err(StateError::Foreign)
    );
    let mut later = bytes.clone();
    later[10] = 9;
    assert_eq!(Snapshot::decode(&later), Err(StateError::Version(9)));
    for len in [12, 40, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(
            Snapshot::decode(&bytes[..len]),
            Err(StateError::Checksum),
            "cut at {len}"
        );
    }
    let mut flipped = bytes.clone();
    flipped[100] ^= 0x10;
    assert_eq!(Snapshot::decode(&flipped), Err(StateError::Checksum));
}

/// Bytes with a valid checksum over a body that lies: counts larger than
/// the file, unknown kinds.
fn resealed(mut body: Vec<u8>) -> Vec<u8> {
    body.truncate(body.len() - 4);
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[test]
fn lying_counts_and_kinds_are_corrupt() {
    let bytes = snapshot(3).encode();
    // The flow count sits just before the three 74-byte flows, then the
    // IPv6 flows' count, its one 110-byte flow and the crc.
    let count6_at = bytes.len() - 4 - 110 - 4;
    let count_at = count6_at - 3 * 74 - 4;
    let mut huge6 = bytes.clone();
    huge6[count6_at..count6_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Snapshot::decode(&resealed(huge6)),
        Err(StateError::Corrupt(_))
    ));
    let mut uplink6 = bytes.clone();
    uplink6[count6_at + 4 + 4] = 9;
    assert_eq!(
        Snapshot::decode(&resealed(uplink6)),
        Err(StateError::Corrupt("a flow's uplink"))
    );
    let mut huge = bytes.clone();
    huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Snapshot::decode(&resealed(huge)),
        Err(StateError::Corrupt(_))
    ));
    let mut kind = bytes.clone();
    kind[count_at + 4 + 1] = 7;
    assert_eq!(
        Snapshot::decode(&resealed(kind)),
        Err(StateError::Corrupt("a flow's kind"))
    );
}

#[test]
fn aging_adds_the_downtime() {
    let mut s = snapshot(2);
    s.age_by(60);
    assert_eq!((s.flows[1].age_s, s.flows[1].idle_s), (161, 61));
    assert_eq!(s.sticky_clients[0].2, 77);
}

proptest! {
    /// Any damage to a valid file, resealed or not, gives an error or a
    /// snapshot, never a panic.
    #[test]
    fn damage_never_panics(at in 0usize..700, value in any::<u8>(), cut in 0usize..700, reseal in any::<bool>()) {
        let mut bytes = snapshot(8).encode();
        let at = at % bytes.len();
        bytes[at] = value;
        bytes.truncate(cut.max(16).min(bytes.len()));
        let bytes = if reseal && bytes.len() > 16 { resealed(bytes) } else { bytes };
        let _ = Snapshot::decode(&bytes);
    }
}

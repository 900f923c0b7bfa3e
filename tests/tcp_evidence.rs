//! The core's TCP evidence of uplink health, read by the health thread: SYNs
//! of new connections per uplink (with their destinations) and the SYN-ACKs
//! and RSTs that answer them, counted per worker.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use xwan::config::Config;
use xwan::router::{FrameMeta, InterfaceMacs, Port, Router, Verdict, RECENT_SYNS};
use xwan::testing::{self, Addressing, ACK, RST, SYN, SYN_ACK};

const CONFIG: &str = testing::TWO_UPLINKS;

fn meta(port: Port) -> FrameMeta {
    FrameMeta {
        port,
        now: Duration::from_secs(10),
        checksum_partial: false,
        gso: None,
    }
}

#[test]
fn syns_out_and_their_answers_in_are_counted_per_uplink() {
    let config = Config::from_toml(CONFIG, Path::new("test.toml")).unwrap();
    let router = Router::new(
        &config,
        InterfaceMacs {
            lan: [2, 0, 0, 0, 0, 1],
            wans: vec![[2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 2, 2]],
        },
    );
    for id in 0..2u8 {
        router.set_gateway_mac(id, Some([2, 0, 0, 0, id + 1, 1]));
        router.set_uplink_up(id, true);
    }
    let mut lane = router.lane();
    let host = |dst: Ipv4Addr| Addressing {
        src_mac: [2, 0, 0, 0, 0, 0x10],
        dst_mac: [2, 0, 0, 0, 0, 1],
        src: Ipv4Addr::new(192, 168, 50, 10),
        dst,
        ttl: 64,
    };
    let dests = [10, 11, 12].map(|d| Ipv4Addr::new(203, 0, 113, d));
    // nth balancing: isp1, isp2, isp1; the inside port is kept.
    for (i, dst) in dests.iter().enumerate() {
        let mut frame = testing::tcp(&host(*dst), 40000 + i as u16, 80, SYN, b"");
        let verdict = router.process(&mut lane, &mut frame, meta(Port::Lan));
        assert!(
            matches!(
                verdict,
                Verdict::Forward {
                    port: Port::Wan(_),
                    ..
                }
            ),
            "{verdict:?}"
        );
    }
    let counts = &router.syn_counts()[0];
    assert_eq!((counts[0].syns, counts[0].answers), (2, 0));
    assert_eq!((counts[1].syns, counts[1].answers), (1, 0));
    let recent =
        |uplink: usize, n: u64| Ipv4Addr::from(counts[uplink].recent[n as usize % RECENT_SYNS]);
    assert_eq!((recent(0, 0), recent(0, 1)), (dests[0], dests[2]));
    assert_eq!(recent(1, 0), dests[1]);

    // The answers: a SYN-ACK on isp1, an RST on isp2.
    let from = |src: Ipv4Addr, dst: Ipv4Addr| Addressing {
        src_mac: [2, 0, 0, 0, 1, 1],
        dst_mac: [2, 0, 0, 0, 1, 2],
        src,
        dst,
        ttl: 60,
    };
    let wan1 = Ipv4Addr::new(198, 18, 1, 2);
    let wan2 = Ipv4Addr::new(198, 18, 2, 2);
    let mut frame = testing::tcp(&from(dests[0], wan1), 80, 40000, SYN_ACK, b"");
    let verdict = router.process(&mut lane, &mut frame, meta(Port::Wan(0)));
    assert!(
        matches!(
            verdict,
            Verdict::Forward {
                port: Port::Lan,
                ..
            }
        ),
        "{verdict:?}"
    );
    let mut frame = testing::tcp(&from(dests[1], wan2), 80, 40001, RST, b"");
    let verdict = router.process(&mut lane, &mut frame, meta(Port::Wan(1)));
    assert!(
        matches!(
            verdict,
            Verdict::Forward {
                port: Port::Lan,
                ..
            }
        ),
        "{verdict:?}"
    );
    // Data is no evidence either way.
    let mut frame = testing::tcp(&host(dests[0]), 40000, 80, ACK, b"data");
    router.process(&mut lane, &mut frame, meta(Port::Lan));
    let counts = &router.syn_counts()[0];
    assert_eq!((counts[0].syns, counts[0].answers), (2, 1));
    assert_eq!((counts[1].syns, counts[1].answers), (1, 1));
}

use std::collections::HashSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use xwan::router::{Port, Verdict};
use xwan::testing::{self, SYN};

use super::*;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
    Ping,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Tcp), Just(Kind::Udp), Just(Kind::Ping)]
}

fn outbound(host: u8, port: u16, server: u8, server_port: u16, kind: Kind) -> Vec<u8> {
    let lan = from_host(
        Ipv4Addr::new(192, 168, 50, host),
        Ipv4Addr::new(203, 0, 113, server),
    );
    match kind {
        Kind::Tcp => testing::tcp(&lan, port, server_port, SYN, b"payload"),
        Kind::Udp => testing::udp(&lan, port, server_port, b"payload"),
        Kind::Ping => testing::icmp_echo(&lan, true, port, 1, b"payload"),
    }
}

fn reply_to(seen: &testing::Seen, uplink: u8, kind: Kind) -> Vec<u8> {
    let wan = from_internet(usize::from(uplink), seen.dst, seen.src);
    match kind {
        Kind::Tcp => testing::tcp(
            &wan,
            seen.dst_port,
            seen.src_port,
            testing::SYN_ACK,
            b"reply",
        ),
        Kind::Udp => testing::udp(&wan, seen.dst_port, seen.src_port, b"reply"),
        Kind::Ping => testing::icmp_echo(&wan, false, seen.src_port, 1, b"reply"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// LAN → WAN → LAN restores the original tuple exactly; no two live flows
    /// share an outside tuple, no two inside endpoints an outside endpoint; every
    /// packet of a 5-tuple takes one uplink.
    #[test]
    fn translation_round_trips_and_mappings_are_unique(
        conns in proptest::collection::vec((1u8..6, 1000u16..1010, 1u8..4, 1u16..4, kind()), 1..60)
    ) {
        let mut b = Bench::new("");
        for host in 1u8..6 {
            // As the neighbour thread would have found them.
            b.router.set_lan_mac(Ipv4Addr::new(192, 168, 50, host), HOST_MAC);
        }
        let mut uplink_of = std::collections::HashMap::new();
        for (host, port, server, server_port, kind) in conns {
            let (uplink, out) = b.forward_any_wan(outbound(host, port, server, server_port, kind));
            let tuple = (host, port, server, server_port, matches!(kind, Kind::Tcp), matches!(kind, Kind::Ping));
            prop_assert_eq!(*uplink_of.entry(tuple).or_insert(uplink), uplink, "one uplink per 5-tuple");
            let (verdict, back) = b.send(Port::Wan(uplink), reply_to(&out, uplink, kind));
            prop_assert!(matches!(verdict, Verdict::Forward { port: Port::Lan, .. }), "{:?}", verdict);
            let back = testing::check(&back).map_err(TestCaseError::fail)?;
            prop_assert_eq!(back.dst, Ipv4Addr::new(192, 168, 50, host));
            prop_assert_eq!(back.dst_port, port);
            prop_assert_eq!(back.src, Ipv4Addr::new(203, 0, 113, server));
            if !matches!(kind, Kind::Ping) {
                prop_assert_eq!(back.src_port, server_port);
            }
        }
        let flows = b.router.flows(b.now, usize::MAX, |_| true);
        let outside: HashSet<_> = flows.iter().map(|f| f.spec.wan_key()).collect();
        prop_assert_eq!(outside.len(), flows.len());
        let mut owner = std::collections::HashMap::new();
        for f in &flows {
            let inside = *owner.entry((f.spec.protocol, f.spec.outside)).or_insert(f.spec.inside);
            prop_assert_eq!(inside, f.spec.inside, "two inside endpoints on one outside endpoint");
        }
    }
}

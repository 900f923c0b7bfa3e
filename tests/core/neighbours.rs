//! LAN host MACs come from the kernel's neighbour table (what the I/O layer
//! publishes with `set_lan_mac`), never from the source MAC of a frame: a
//! host sending with another's address does not attract its traffic.

use std::net::Ipv4Addr;

use xwan::router::{DropReason, Port, Verdict};
use xwan::testing::{self, SYN, SYN_ACK};

use super::*;

const SPOOFER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];

#[test]
fn a_spoofing_host_gets_neither_the_victims_replies_nor_its_forwarded_traffic() {
    let mut b = Bench::new(
        "[[forward]]\nproto = \"tcp\"\nport = 8080\nto = \"192.168.50.10:80\"\nwan = [\"isp1\"]\n",
    );
    // The spoofer sends from the victim's address (and from its forwarded port).
    let mut spoofed = from_host(HOST, SERVER);
    spoofed.src_mac = SPOOFER_MAC;
    let (uplink, out) = b.forward_any_wan(testing::udp(&spoofed, 80, 53, b"q"));
    let (tcp_uplink, tcp_out) = b.forward_any_wan(testing::tcp(&spoofed, 80, 443, SYN, b""));

    // The replies go to the victim's MAC, as the neighbour table says.
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    let back = b.forward(
        Port::Wan(uplink),
        testing::udp(&wan, 53, out.src_port, b"a"),
        Port::Lan,
    );
    assert_eq!(back.dst_mac, HOST_MAC);
    let wan = from_internet(usize::from(tcp_uplink), SERVER, tcp_out.src);
    let back = b.forward(
        Port::Wan(tcp_uplink),
        testing::tcp(&wan, 443, tcp_out.src_port, SYN_ACK, b""),
        Port::Lan,
    );
    assert_eq!(back.dst_mac, HOST_MAC);

    // A connection to the victim's forwarded port reaches the victim.
    let client = from_internet(0, Ipv4Addr::new(198, 51, 100, 7), ISP1);
    let forwarded = b.forward(
        Port::Wan(0),
        testing::tcp(&client, 40000, 8080, SYN, b""),
        Port::Lan,
    );
    assert_eq!((forwarded.dst, forwarded.dst_port), (HOST, 80));
    assert_eq!(forwarded.dst_mac, HOST_MAC);
}

/// A flow opened before its host's address is in the table sends its own
/// replies to its first frame's MAC (and asks for the address) until the
/// table has it; a port forward's packet to an address the table does not
/// know waits for it (and asks for it), never sent to a MAC learned from a
/// frame.
#[test]
fn before_resolution_only_the_flows_own_replies_use_its_frames_mac() {
    let mut b =
        Bench::new("[[forward]]\nproto = \"udp\"\nport = 5353\nto = \"192.168.50.77:53\"\n");
    let newcomer = Ipv4Addr::new(192, 168, 50, 77);
    let mut lan = from_host(newcomer, SERVER);
    lan.src_mac = SPOOFER_MAC;
    let (uplink, out) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    assert_eq!(b.router.unresolved_lan_hosts(), vec![newcomer]);
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    let reply = testing::udp(&wan, 53, out.src_port, b"a");
    let back = b.forward(Port::Wan(uplink), reply.clone(), Port::Lan);
    assert_eq!(
        back.dst_mac, SPOOFER_MAC,
        "the flow's own first frame's MAC"
    );

    // The forward to the same address is not sent there: it waits.
    let client = from_internet(0, Ipv4Addr::new(198, 51, 100, 7), ISP1);
    assert_eq!(
        b.send(Port::Wan(0), testing::udp(&client, 40000, 5353, b"x"))
            .0,
        Verdict::Taken
    );
    assert!(b.router.release_waiting(newcomer, b.now).is_empty());

    // Once the neighbour thread publishes the address, the waiting packet
    // goes there, and the table wins for the flow too.
    let mac = [0x02, 0, 0, 0, 0, 0x77];
    b.router.set_lan_mac(newcomer, mac);
    assert!(b.router.unresolved_lan_hosts().is_empty());
    let waited = b.router.release_waiting(newcomer, b.now);
    assert_eq!(waited.len(), 1);
    let waited = testing::check(&waited[0]).expect("a whole frame");
    assert_eq!(
        (waited.dst, waited.dst_port, waited.dst_mac),
        (newcomer, 53, mac)
    );
    let back = b.forward(Port::Wan(uplink), reply, Port::Lan);
    assert_eq!((back.dst, back.dst_mac), (newcomer, mac));
    let forwarded = b.forward(
        Port::Wan(0),
        testing::udp(&client, 40000, 5353, b"x"),
        Port::Lan,
    );
    assert_eq!((forwarded.dst, forwarded.dst_mac), (newcomer, mac));
}

/// Replies to a host the table does not know wait, a few per host (the
/// rest dropped as `neighbour_unresolved`), for as long as the kernel
/// tries to resolve it; those still waiting then are dropped and counted
/// as `neighbour_timeout`, and nothing is released for the host later.
#[test]
fn waiting_frames_are_bounded_and_expire_counted() {
    let mut b = Bench::new("");
    let newcomer = Ipv4Addr::new(192, 168, 50, 77);
    let mut lan = from_host(newcomer, SERVER);
    lan.src_mac = SPOOFER_MAC;
    let (uplink, out) = b.forward_any_wan(testing::udp(&lan, 5000, 53, b"q"));
    // A flow restored from a saved state has no MAC of its own: take one
    // through a restart so its replies wait for the table.
    let snapshot = b.router.save_state(b.now);
    let router = testing::two_uplink_router(&config(""));
    let lane = router.lane();
    let mut b = Bench {
        router,
        lane,
        now: b.now,
    };
    assert_eq!(b.router.restore_state(&snapshot, b.now).flows, 1);
    let wan = from_internet(usize::from(uplink), SERVER, out.src);
    let verdicts: Vec<Verdict> = (0..5)
        .map(|_| {
            b.send(
                Port::Wan(uplink),
                testing::udp(&wan, 53, out.src_port, b"a"),
            )
            .0
        })
        .collect();
    let unresolved = Verdict::Drop(DropReason::NeighbourUnresolved);
    assert_eq!(
        verdicts,
        [
            Verdict::Taken,
            Verdict::Taken,
            Verdict::Taken,
            unresolved,
            unresolved
        ]
    );
    b.advance(3);
    b.router.expire_waiting(b.now);
    let drops = |b: &Bench, reason| b.router.stats().totals.drop_count(reason);
    assert_eq!(drops(&b, DropReason::NeighbourTimeout), 3);
    assert_eq!(drops(&b, DropReason::NeighbourUnresolved), 2);
    b.router.set_lan_mac(newcomer, [0x02, 0, 0, 0, 0, 0x77]);
    assert!(b.router.release_waiting(newcomer, b.now).is_empty());
}

//! What the I/O layer needs of the core to finish every frame (issue 12): an
//! uplink's MTU when no `mtu` key is set and the LAN interface's address when
//! `[lan] address` is not set, both learnt from the interfaces (the keys
//! override them); and, for a frame punted to the kernel untranslated, its
//! partial checksum completed.

use xwan::packet;
use xwan::router::{KernelReason, Port, Verdict};
use xwan::testing::{self, SYN};

use super::*;

#[test]
fn the_uplink_interface_mtu_applies_unless_the_key_is_set() {
    let mut b = Bench::from_text(&base_with("", "", "[[rule]]\naction = \"isp1\"\n"));
    b.router.set_lan_interface_address(Some(LAN_ADDR));
    b.router.set_interface_mtu(Port::Wan(0), 1400);
    let lan = from_host(HOST, SERVER);
    let mut big = testing::udp(&lan, 5000, 443, &[1; 1450 - 28]);
    testing::set_df_and_id(&mut big, true, 7);
    let (seen, kind, _, bytes) = expect_error(&mut b, Port::Lan, big.clone());
    assert_eq!(kind, [3, 4]);
    assert_eq!(
        &bytes[40..42],
        &1400u16.to_be_bytes(),
        "the interface's MTU"
    );
    assert_eq!(
        (seen.src, seen.dst),
        (LAN_ADDR, HOST),
        "from the LAN interface's address"
    );

    // A set key wins over the interface.
    let mut set = Bench::from_text(&base_with(
        "",
        "mtu = 1500",
        "[[rule]]\naction = \"isp1\"\n",
    ));
    set.router.set_lan_interface_address(Some(LAN_ADDR));
    set.router.set_interface_mtu(Port::Wan(0), 1400);
    set.forward(Port::Lan, big, Port::Wan(0));
}

#[test]
fn the_configured_lan_address_wins_and_none_leaves_errors_to_the_kernel() {
    let configured = std::net::Ipv4Addr::new(192, 168, 50, 2);
    let mut b = Bench::from_text(&base_with(&format!("address = \"{configured}\""), "", ""));
    b.router.set_lan_interface_address(Some(LAN_ADDR));
    let mut dying = from_host(HOST, SERVER);
    dying.ttl = 1;
    let sent = testing::udp(&dying, 5000, 53, &[0x42; 40]);
    let (seen, kind, _, _) = expect_error(&mut b, Port::Lan, sent.clone());
    assert_eq!(kind, [11, 0]);
    assert_eq!(seen.src, configured);

    let mut unset = Bench::new("");
    unset.router.set_lan_interface_address(None);
    assert_eq!(
        unset.send(Port::Lan, sent).0,
        Verdict::Kernel(KernelReason::TtlExpired)
    );
}

#[test]
fn a_punted_frame_gets_its_partial_checksum_completed_and_nothing_else() {
    let lan = from_host(HOST, SERVER);
    for whole in [
        testing::tcp(&lan, 1000, 80, SYN, b"hello"),
        testing::udp(&lan, 1000, 53, b"hello"),
    ] {
        let mut frame = with_partial_checksum(whole.clone());
        let parsed = packet::parse(&frame).expect("a valid frame");
        assert!(packet::complete_partial_checksum(&mut frame, &parsed));
        assert_eq!(frame, whole, "completed, nothing else changed");
        let parsed = packet::parse(&frame).expect("a valid frame");
        assert!(!packet::complete_partial_checksum(&mut frame, &parsed));
        assert_eq!(frame, whole, "a complete checksum is left alone");
    }
}

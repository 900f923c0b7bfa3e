//! GSO passthrough end to end (issue 15): with the hosts at their default
//! offloads (TSO/GSO and transmit checksum offload on), 16 MiB each way at
//! once through the router arrive byte-exact. In `--io packet` the workers'
//! counters prove the bulk of it crossed as super-frames passed through
//! whole; the same transfer through `--io xdp` and the kernel recipe is the
//! comparison. They need root: `cargo test --test gso_e2e`.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::{config_toml, RouterMode, Testbed, TxOffload};
use xwan::control::{request, Reply, Request};

const SIZE: usize = 16 << 20;

/// A testbed at default offloads whose router runs the test config.
fn routed(mode: RouterMode) -> Testbed {
    let mut tb = Testbed::up(TxOffload::On);
    let config = config_toml([1, 1], &tb.path("xwan.sock"));
    tb.start_router(mode, &config);
    tb
}

/// Super-frames passed through whole, and their bytes, over every worker.
fn passthrough(tb: &Testbed) -> (u64, u64) {
    match request(&tb.path("xwan.sock"), &Request::Status) {
        Ok(Reply::Status { status, .. }) => status.workers.iter().fold((0, 0), |(n, b), w| {
            (n + w.gso_passthrough, b + w.gso_passthrough_bytes)
        }),
        other => panic!("status: {other:?}"),
    }
}

#[test]
fn packet_mode_passes_super_frames_whole() {
    // The workers' passthrough: with offload on the fast path would take the
    // transfer from them (tests/offload_e2e.rs).
    let tb = routed(RouterMode::XwanPacketOffloadOff);
    assert_eq!(
        passthrough(&tb),
        (0, 0),
        "nothing passed before the transfer"
    );
    support::bulk::both_ways_intact(&tb, SIZE);
    // The workers publish their figures once per loop round.
    let mut seen = (0, 0);
    support::poll(Duration::from_secs(2), || {
        seen = passthrough(&tb);
        seen.1 as usize >= SIZE
    });
    let (frames, bytes) = seen;
    // 32 MiB crossed; at least half of it in super-frames longer than a
    // 1500-byte MTU allows (so not a frame the core could have sent as is).
    assert!(
        bytes as usize >= SIZE,
        "{frames} super-frames, {bytes} bytes passed whole"
    );
    assert!(
        bytes / frames.max(1) > 1514,
        "{frames} frames of {bytes} bytes: not super-frames"
    );
}

#[test]
fn xdp_mode_moves_the_same_transfer() {
    let tb = routed(RouterMode::XwanXdp);
    support::bulk::both_ways_intact(&tb, SIZE);
}

#[test]
fn kernel_recipe_moves_the_same_transfer() {
    let tb = routed(RouterMode::Kernel);
    support::bulk::both_ways_intact(&tb, SIZE);
}

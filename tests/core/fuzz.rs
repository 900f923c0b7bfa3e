//! The fuzzing harness (`xwan::testing::fuzz`) run on mutated seed frames:
//! 200 000 frames by default; `XWAN_FUZZ_FRAMES` and `XWAN_FUZZ_SEED` make
//! it a long run (in release mode:
//! `XWAN_FUZZ_FRAMES=10000000 cargo test --release --test core fuzz::mutated -- --nocapture`).

use std::path::PathBuf;
use std::time::Instant;

use xwan::router::{DropReason, KernelReason};
use xwan::testing::fuzz::{run_mutations, seeds, Harness};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn mutated_frames_keep_every_invariant() {
    let frames = env_number("XWAN_FUZZ_FRAMES", 200_000);
    let seed = env_number("XWAN_FUZZ_SEED", 0x5eed);
    let started = Instant::now();
    let harness = run_mutations(seed, frames).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    println!(
        "{frames} frames (seed {seed:#x}) in {:.1} s: {:.0} frames/s, {} forwarded",
        elapsed.as_secs_f64(),
        frames as f64 / elapsed.as_secs_f64(),
        harness.forwarded
    );
    let totals = harness.stats().totals;
    let reasons: Vec<String> = totals
        .kernel
        .iter()
        .map(|(r, n)| (r.label(), n))
        .chain(totals.drops.iter().map(|(r, n)| (r.label(), n)))
        .filter(|(_, n)| **n > 0)
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    println!(
        "verdicts: forwarded {}, {}; ICMP errors made: {} time exceeded, {} frag needed",
        totals.forwarded,
        reasons.join(", "),
        totals.time_exceeded_sent,
        totals.frag_needed_sent
    );
    let made6 = harness.made6;
    let table6 = harness.stats().table6;
    println!(
        "IPv6: forwarded {}; ICMPv6 errors made: {} time exceeded, {} packet too big, {} unreachable; \
         flows opened {}, refused {}",
        harness.forwarded6,
        made6.time_exceeded,
        made6.packet_too_big,
        made6.unreachable,
        table6.inserts,
        table6.refusals
    );
    assert_eq!(harness.frames(), frames);
    // The run reached far into the core, not only the parser's refusals.
    assert!(
        harness.forwarded > frames / 10,
        "{} forwarded",
        harness.forwarded
    );
    // Into the IPv6 side as well: translated, answered, refused for its
    // own reasons.
    assert!(
        harness.forwarded6 > frames / 50,
        "{} IPv6 frames forwarded",
        harness.forwarded6
    );
    assert!(
        made6.time_exceeded > 0 && made6.packet_too_big > 0,
        "{made6:?}"
    );
    for reason in [DropReason::Ipv6Fragment, DropReason::HopLimitExpired6] {
        assert!(totals.drop_count(reason) > 0, "no {}", reason.label());
    }
    for reason in [
        KernelReason::Ipv6HopByHop,
        KernelReason::Ipv6Routing,
        KernelReason::LinkLocal,
    ] {
        assert!(totals.kernel_count(reason) > 0, "no {}", reason.label());
    }
}

#[test]
fn every_seed_is_handled_and_the_harness_drains_clean() {
    let mut harness = Harness::new();
    let mut kinds = std::collections::HashSet::new();
    let mut kinds6 = std::collections::HashSet::new();
    for input in seeds() {
        let verdict = harness.run(&input).unwrap_or_else(|e| panic!("{e}"));
        let ipv6 = input.get(13..15) == Some(&[0x86, 0xdd][..]);
        if ipv6 { &mut kinds6 } else { &mut kinds }.insert(format!("{verdict:?}"));
    }
    // The seeds reach the paths they were written for.
    for expected in [
        "Forward { port: Lan".to_string(),
        "Forward { port: Wan(".to_string(),
        format!("{:?}", xwan::router::Verdict::Drop(DropReason::TcpNoFlow)),
        format!(
            "{:?}",
            xwan::router::Verdict::Drop(DropReason::SpoofedSource)
        ),
    ] {
        assert!(
            kinds.iter().any(|k| k.starts_with(&expected)),
            "no {expected} in {kinds:?}"
        );
    }
    assert!(!kinds.contains(&format!(
        "{:?}",
        xwan::router::Verdict::Kernel(KernelReason::TtlExpired)
    )));
    // The IPv6 seeds reach theirs: translated both ways, answered (in the
    // frame's buffer and, for a short one, from the outbox), refused.
    let drop = |r| format!("{:?}", xwan::router::Verdict::Drop(r));
    let kernel = |r| format!("{:?}", xwan::router::Verdict::Kernel(r));
    for expected in [
        "Forward { port: Lan".to_string(),
        "Forward { port: Wan(0)".to_string(),
        "Forward { port: Wan(1)".to_string(),
        "Taken".to_string(),
        drop(DropReason::TcpNoFlow),
        drop(DropReason::NoMapping),
        drop(DropReason::SpoofedSource),
        drop(DropReason::Ipv6Fragment),
        drop(DropReason::IcmpNoFlow),
        drop(DropReason::HopLimitExpired6),
        kernel(KernelReason::Ipv6HopByHop),
        kernel(KernelReason::Ipv6Routing),
        kernel(KernelReason::LinkLocal),
        kernel(KernelReason::Multicast),
        kernel(KernelReason::LocalDestination),
        kernel(KernelReason::NotInside),
        kernel(KernelReason::RouterTraffic),
    ] {
        assert!(
            kinds6.iter().any(|k| k.starts_with(&expected)),
            "no {expected} in {kinds6:?}"
        );
    }
    let made6 = harness.made6;
    assert!(
        made6.time_exceeded >= 2 && made6.packet_too_big >= 2,
        "{made6:?}"
    );
    harness.check_state().unwrap();
    harness.drain().unwrap();
}

/// `fuzz/corpus/frames/` holds the seeds, one file each, for cargo-fuzz.
/// `XWAN_WRITE_CORPUS=1` rewrites it.
#[test]
fn the_fuzz_corpus_holds_the_seeds() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frames");
    let seeds = seeds();
    if std::env::var_os("XWAN_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
        }
    }
    let mut total = 0;
    for (i, seed) in seeds.iter().enumerate() {
        let path = dir.join(format!("seed-{i:03}"));
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (XWAN_WRITE_CORPUS=1 writes it)", path.display()));
        assert_eq!(&stored, seed, "{} is stale", path.display());
        total += stored.len();
    }
    assert!(total < 1 << 20, "the corpus stays under 1 MB: {total}");
}

//! Arbitrary frames from either side into one live router, with the
//! invariants of `xwan::testing::fuzz` checked after each (see that module
//! for the input format and what is checked).
//!
//! Run with a scratch corpus first, so that libFuzzer writes its finds there
//! and `corpus/frames` keeps only the seeds:
//! `cargo fuzz run frames /tmp/xwan-corpus corpus/frames -- -runs=10000000`

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use xwan::testing::fuzz::Harness;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fuzz_target!(|input: &[u8]| {
    let mut harness = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let harness = harness.get_or_insert_with(Harness::new);
    if let Err(broken) = harness.run(input) {
        panic!("{broken}");
    }
});

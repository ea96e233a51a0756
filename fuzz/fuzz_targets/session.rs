//! cargo-fuzz target: broker sessions fed arbitrary scripts of frames and bytes in memory.
//! The checks live in `harness/session.rs`, which `tests/session_fuzz.rs` also runs as a
//! proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/session.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::check(data);
});

//! cargo-fuzz target for the decoder. The checks live in `harness/decode.rs`, which
//! `tests/fuzz_mirror.rs` also runs as a proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/decode.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::check(data);
});

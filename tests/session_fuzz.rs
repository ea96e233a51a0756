//! The session fuzz target's checks (`fuzz/harness/session.rs`) as a proptest, so every
//! `cargo test` runs them on stable. `cargo fuzz` runs the same harness coverage-guided (see
//! docs/security.md).

#[path = "../fuzz/harness/session.rs"]
mod harness;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("STOMPBOX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sessions_survive_any_script(script in proptest::collection::vec(any::<u8>(), 0..1200)) {
        harness::check(&script);
    }
}

/// The harness reaches real work: a script that subscribes, sends and reads gets the MESSAGE.
#[test]
fn a_plain_script_delivers() {
    // All connect (first byte 0); client 0 sends SUBSCRIBE /topic/a with id:0 (op 1 << 2,
    // command 3, destination 0, header bit 0), a SEND to it (command 2), then drains (op 3 << 2).
    let script = [
        0, 0x04, 3, 0, 1, 0, 0, 0x04, 2, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0,
    ];
    let seen = harness::check(&script);
    assert_eq!(seen.messages, 1, "{seen:?}");
}

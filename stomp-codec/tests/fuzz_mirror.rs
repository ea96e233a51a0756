//! The cargo-fuzz target's checks (`fuzz/harness/decode.rs`) run as a proptest, so they
//! are exercised by every `cargo test` even without nightly.

#[path = "../fuzz/harness/decode.rs"]
mod harness;

use proptest::prelude::*;

/// Pieces that make interesting streams: valid frames, fragments, EOLs, NULs, escapes,
/// limit-sized runs, and raw noise.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"SEND\ndestination:/q\n\nhello\0",
        b"SEND\ncontent-length:3\n\na\0b\0",
        b"MESSAGE\nsubscription:0\nmessage-id:1\ndestination:/t\n\n\0",
        b"CONNECT\r\naccept-version:1.2\r\nhost:h\r\n\r\n\0",
        b"SUBSCRIBE\nid:0\ndestination:/topic/x\n\n\0",
        b"DISCONNECT\nreceipt:77\n\n\0",
        b"ERROR\nmessage:a\\cb\n\nbody\0",
        b"\n",
        b"\r\n",
        b"\r",
        b"\0",
        b":",
        b"\\",
        b"\\r",
        b"\\c",
        b"content-length:",
        b"content-length:18446744073709551616\n",
        b"SEND\n",
        b"k:v\n",
        b"\xff",
    ];
    prop_oneof![
        4 => proptest::sample::select(fixed).prop_map(<[u8]>::to_vec),
        2 => proptest::collection::vec(any::<u8>(), 0..16),
        1 => (any::<u8>(), 0..300usize).prop_map(|(b, n)| vec![b; n]),
        1 => (0..200usize).prop_map(|n| format!("content-length:{n}\n").into_bytes()),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(piece(), 0..12),
    )
        .prop_map(|(ctrl, seed, pieces)| {
            let mut data = vec![ctrl, seed];
            data.extend(pieces.concat());
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn structured_streams(data in stream()) {
        harness::check(&data);
    }

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        harness::check(&data);
    }
}

#[test]
fn seeds() {
    // Inputs that once looked risky, kept as regression seeds.
    for data in [
        &b""[..],
        b"\x02\x00",
        b"\x02\x00\r",
        b"\x02\x00\r\r\n",
        b"\x06\x03SEND\ncontent-length:99999999999999999999999\n\n",
        b"\x06\x00SEND\n\n\x00\n\nSEND\n",
        b"\x00\x05SEND\nk:a:b\\\n\n\0",
    ] {
        harness::check(data);
    }
}

//! Property tests: encode → decode round-trips arbitrary frames (escapes, UTF-8
//! headers, binary bodies with NULs) for every version, under arbitrary splits; a
//! prepared MESSAGE delivery is byte-identical to the general encoder's output.

mod common;

use bytes::{Bytes, BytesMut};
use common::decode_chunks;
use proptest::prelude::*;
use stomp_codec::{
    Command, Decoded, DecoderConfig, Delivery, Frame, PreparedMessage, Version, encode_frame,
};

fn version() -> impl Strategy<Value = Version> {
    proptest::sample::select(Version::ALL.to_vec())
}

fn command() -> impl Strategy<Value = Command> {
    proptest::sample::select(Command::ALL.to_vec())
}

/// Header names and values that can be represented in a frame of `command` under
/// `version`: anything when escaping is on (except `\r` in 1.1, which has no escape);
/// without escaping no EOL bytes, and no colon in names.
fn text(version: Version, command: Command, name: bool) -> BoxedStrategy<String> {
    let escaped = version >= Version::V1_1 && command.escapes_headers();
    let min = usize::from(name);
    let pattern = match (escaped, version) {
        (true, Version::V1_2) => format!("(?s).{{{min},12}}"),
        (true, _) => format!("[^\r]{{{min},12}}"),
        (false, _) if name => "[^:\r\n]{1,12}".to_string(),
        (false, _) => "[^\r\n]{0,12}".to_string(),
    };
    // Bias towards the characters that need escaping.
    let special = if escaped {
        "[a:\\\\\n]{0,4}"
    } else {
        "[a\\\\]{0,4}"
    };
    prop_oneof![
        3 => proptest::string::string_regex(&pattern).unwrap(),
        1 => proptest::string::string_regex(special).unwrap(),
    ]
    .prop_filter("non-empty name, not content-length", move |s| {
        (!name || !s.is_empty()) && s != "content-length"
    })
    .boxed()
}

fn frame(version: Version) -> impl Strategy<Value = Frame> {
    command().prop_flat_map(move |command| {
        let header = (text(version, command, true), text(version, command, false));
        let body = if command.allows_body() {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::vec(prop_oneof![Just(0u8), Just(b'\n'), any::<u8>()], 0..20),
            ]
            .boxed()
        } else {
            Just(Vec::new()).boxed()
        };
        (proptest::collection::vec(header, 0..6), body).prop_map(move |(headers, body)| {
            let mut f = Frame::new(command).with_body(body);
            for (n, v) in headers {
                f = f.header(n, v);
            }
            f
        })
    })
}

/// What the decoder returns for an encoded `f`: the computed content-length last.
fn as_decoded(f: &Frame) -> Frame {
    let mut expected = f.clone();
    if !f.body.is_empty() {
        expected = expected.header("content-length", f.body.len().to_string());
    }
    expected
}

fn splits(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..6).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

fn chunks_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let c = c.min(bytes.len()).max(prev);
        out.push(&bytes[prev..c]);
        prev = c;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn one_frame_round_trips(
        (version, frame, cuts) in version()
            .prop_flat_map(|v| (Just(v), frame(v)))
            .prop_flat_map(|(v, f)| (Just(v), Just(f), splits(400)))
    ) {
        let mut out = BytesMut::new();
        encode_frame(&frame, version, &mut out);
        let (items, err, rest) =
            decode_chunks(chunks_at(&out, &cuts), DecoderConfig::default(), version);
        prop_assert_eq!(err, None);
        prop_assert!(rest.is_empty());
        prop_assert_eq!(items, vec![Decoded::Frame(as_decoded(&frame))]);
    }

    #[test]
    fn many_frames_and_heartbeats_round_trip(
        (version, frames, cuts) in version()
            .prop_flat_map(|v| (Just(v), proptest::collection::vec((frame(v), 0..3usize), 1..6)))
            .prop_flat_map(|(v, f)| (Just(v), Just(f), splits(2000)))
    ) {
        let mut out = BytesMut::new();
        let mut expected = Vec::new();
        for (f, beats) in &frames {
            encode_frame(f, version, &mut out);
            expected.push(Decoded::Frame(as_decoded(f)));
            for i in 0..*beats {
                out.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
                expected.push(Decoded::Heartbeat);
            }
        }
        let (items, err, rest) =
            decode_chunks(chunks_at(&out, &cuts), DecoderConfig::default(), version);
        prop_assert_eq!(err, None);
        prop_assert!(rest.is_empty());
        prop_assert_eq!(items, expected);
    }

    #[test]
    fn prepared_delivery_matches_encode_frame(
        (version, dest, id, user, sub, ack) in version().prop_flat_map(|v| {
            let t = move |name| text(v, Command::Message, name);
            (
                Just(v),
                t(false),
                t(false),
                proptest::collection::vec((t(true), t(false)), 0..4),
                t(false),
                proptest::option::of(t(false)),
            )
        }),
        body in proptest::collection::vec(any::<u8>(), 0..100),
        version_twice in any::<bool>(),
    ) {
        let body = Bytes::from(body);
        let message = PreparedMessage::new(
            dest.as_bytes(),
            id.as_bytes(),
            user.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            body.clone(),
        );
        let delivery = Delivery {
            subscription: sub.as_bytes(),
            ack: ack.as_deref().map(str::as_bytes),
            extra: &[],
        };
        let mut frame = Frame::new(Command::Message).header("subscription", sub.clone());
        if let Some(a) = &ack {
            frame = frame.header("ack", a.clone());
        }
        frame = frame.header("destination", dest.clone()).header("message-id", id.clone());
        for (n, v) in &user {
            frame = frame.header(n.clone(), v.clone());
        }
        frame = frame.with_body(body);
        let mut expected = BytesMut::new();
        encode_frame(&frame, version, &mut expected);
        let mut got = BytesMut::new();
        message.encode_delivery(version, &delivery, &mut got);
        if version_twice {
            // The lazily built 1.1 / 1.0 block is reused, not rebuilt differently.
            got.clear();
            message.encode_delivery(version, &delivery, &mut got);
        }
        prop_assert_eq!(&got, &expected);
        prop_assert!(got.len() <= message.encoded_len(&delivery));
        prop_assert_eq!(got.len(), message.exact_len(version, &delivery));
        prop_assert_eq!(message.destination(), dest.as_bytes());
        prop_assert_eq!(message.message_id(), id.as_bytes());
    }
}

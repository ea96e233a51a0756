//! Each limit returns its own error, and memory stays bounded: the error arrives before
//! the buffer holds more than the limit plus one chunk of input.

mod common;

use bytes::BytesMut;
use common::decode_chunks;
use stomp_codec::{DecodeError, Decoded, Decoder, DecoderConfig, Version};

const CHUNK: usize = 100;

/// Feeds `prefix` then an endless repetition of `filler` in `CHUNK`-byte reads until
/// the decoder fails; returns the error and the most bytes ever buffered.
fn feed_until_error(config: DecoderConfig, prefix: &[u8], filler: u8) -> (DecodeError, usize) {
    let mut decoder = Decoder::new(config);
    let mut buf = BytesMut::new();
    let mut input = prefix.to_vec();
    let mut max_buffered = 0;
    for _ in 0..100_000 {
        if input.len() < CHUNK {
            input.resize(CHUNK, filler);
        }
        buf.extend_from_slice(&input.drain(..CHUNK).collect::<Vec<_>>());
        max_buffered = max_buffered.max(buf.len());
        loop {
            match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(_)) => continue,
                Err(e) => return (e, max_buffered),
            }
        }
    }
    panic!("no error after 10 MB");
}

fn limit_of(e: DecodeError) -> usize {
    match e {
        DecodeError::FrameTooLarge { limit }
        | DecodeError::TooManyHeaders { limit }
        | DecodeError::HeaderLineTooLong { limit }
        | DecodeError::BodyTooLarge { limit } => limit,
        other => panic!("not a limit error: {other:?}"),
    }
}

#[test]
fn documented_defaults() {
    let c = DecoderConfig::default();
    assert_eq!(c.max_frame_size, 65536);
    assert_eq!(c.max_header_lines, 64);
    assert_eq!(c.max_header_line_len, 8192);
    assert_eq!(c.max_body_size, 65536);
    let c = c
        .max_frame_size(1)
        .max_header_lines(2)
        .max_header_line_len(3)
        .max_body_size(4);
    assert_eq!(
        (
            c.max_frame_size,
            c.max_header_lines,
            c.max_header_line_len,
            c.max_body_size
        ),
        (1, 2, 3, 4)
    );
}

#[test]
fn endless_command_line() {
    let (e, max) = feed_until_error(DecoderConfig::default(), b"", b'A');
    assert_eq!(e, DecodeError::HeaderLineTooLong { limit: 8192 });
    assert!(max <= 8192 + CHUNK);
}

#[test]
fn endless_header_line() {
    let (e, max) = feed_until_error(DecoderConfig::default(), b"SEND\nk:", b'v');
    assert_eq!(e, DecodeError::HeaderLineTooLong { limit: 8192 });
    assert!(max <= 8192 + CHUNK + 7);
    // The limit excludes the EOL: a line of exactly the limit passes, with LF or CRLF.
    let config = DecoderConfig::default().max_header_line_len(10);
    for eol in ["\n", "\r\n"] {
        let ok = format!("SEND{eol}k:12345678{eol}{eol}\0");
        let (items, err, _) = decode_chunks([ok.as_bytes()], config, Version::V1_2);
        assert_eq!((items.len(), err), (1, None));
        let bad = format!("SEND{eol}k:123456789{eol}{eol}\0");
        let (_, err, _) = decode_chunks([bad.as_bytes()], config, Version::V1_2);
        assert_eq!(err, Some(DecodeError::HeaderLineTooLong { limit: 10 }));
    }
}

#[test]
fn endless_header_lines() {
    let mut prefix = b"SEND\n".to_vec();
    for i in 0..1000 {
        prefix.extend_from_slice(format!("h{i}:v\n").as_bytes());
    }
    let (e, max) = feed_until_error(DecoderConfig::default(), &prefix, b'x');
    assert_eq!(e, DecodeError::TooManyHeaders { limit: 64 });
    assert!(max <= 5 + 65 * 8 + CHUNK);
    // Exactly the limit passes.
    let config = DecoderConfig::default().max_header_lines(3);
    let (items, err, _) = decode_chunks([&b"SEND\na:1\nb:2\nc:3\n\n\0"[..]], config, Version::V1_2);
    assert_eq!((items.len(), err), (1, None));
    let (_, err, _) = decode_chunks(
        [&b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0"[..]],
        config,
        Version::V1_2,
    );
    assert_eq!(err, Some(DecodeError::TooManyHeaders { limit: 3 }));
}

#[test]
fn header_block_larger_than_a_frame() {
    // 40 lines of 2 KB each are within the line limits but not the frame limit.
    let line = format!("k:{}\n", "v".repeat(2000));
    let prefix = format!("SEND\n{}", line.repeat(40));
    let (e, max) = feed_until_error(DecoderConfig::default(), prefix.as_bytes(), b'x');
    assert_eq!(e, DecodeError::FrameTooLarge { limit: 65536 });
    assert!(max <= 65536 + CHUNK);
}

#[test]
fn endless_body_without_content_length() {
    // Frame limit binding (default config).
    let (e, max) = feed_until_error(DecoderConfig::default(), b"SEND\n\n", b'x');
    assert_eq!(e, DecodeError::FrameTooLarge { limit: 65536 });
    assert!(max <= 65536 + CHUNK);
    // Body limit binding.
    let config = DecoderConfig::default().max_body_size(1000);
    let (e, max) = feed_until_error(config, b"SEND\n\n", b'x');
    assert_eq!(e, DecodeError::BodyTooLarge { limit: 1000 });
    assert!(max <= 1000 + 6 + CHUNK);
}

#[test]
fn content_length_is_checked_before_the_body_arrives() {
    for (cl, expected) in [
        ("65537", DecodeError::BodyTooLarge { limit: 65536 }),
        (
            "18446744073709551615",
            DecodeError::BodyTooLarge { limit: 65536 },
        ),
        (
            "18446744073709551616",
            DecodeError::BodyTooLarge { limit: 65536 },
        ),
        (
            "99999999999999999999999999",
            DecodeError::BodyTooLarge { limit: 65536 },
        ),
        // Body fits its limit, but head + body + NUL does not fit the frame.
        ("65536", DecodeError::FrameTooLarge { limit: 65536 }),
    ] {
        let head = format!("SEND\ncontent-length:{cl}\n\n");
        let (items, err, _) =
            decode_chunks([head.as_bytes()], DecoderConfig::default(), Version::V1_2);
        assert!(items.is_empty());
        assert_eq!(err, Some(expected), "content-length {cl}");
        assert!(expected.to_string().contains("65536"));
        assert_eq!(limit_of(expected), 65536);
    }
}

#[test]
fn frame_of_exactly_the_limit_passes() {
    let limit = 200;
    let config = DecoderConfig::default().max_frame_size(limit);
    for with_length in [false, true] {
        let head = if with_length {
            "SEND\ncontent-length:000\n\n".to_string()
        } else {
            "SEND\n\n".to_string()
        };
        let body_len = limit - head.len() - 1;
        let head = head.replace("000", &format!("{body_len:03}"));
        let mut frame = head.into_bytes();
        frame.extend(std::iter::repeat_n(b'x', body_len));
        frame.push(0);
        assert_eq!(frame.len(), limit);
        let (items, err, _) = decode_chunks(frame.chunks(7), config, Version::V1_2);
        assert_eq!(err, None);
        assert!(matches!(&items[..], [Decoded::Frame(f)] if f.body.len() == body_len));
        // One more body byte is too much.
        let mut over = frame[..frame.len() - 1].to_vec();
        over.extend_from_slice(b"x\0");
        if with_length {
            let s = String::from_utf8(over).unwrap().replacen(
                &format!("{body_len:03}"),
                &format!("{:03}", body_len + 1),
                1,
            );
            over = s.into_bytes();
        }
        let (items, err, _) = decode_chunks(over.chunks(7), config, Version::V1_2);
        assert!(items.is_empty());
        assert_eq!(err, Some(DecodeError::FrameTooLarge { limit }));
    }
}

#[test]
fn heartbeats_are_not_limited() {
    let input = b"\n".repeat(100_000);
    let (items, err, buf) =
        decode_chunks(input.chunks(CHUNK), DecoderConfig::default(), Version::V1_2);
    assert_eq!(err, None);
    assert_eq!(items.len(), 100_000);
    assert!(buf.is_empty());
}

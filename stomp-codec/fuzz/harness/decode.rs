//! Decoder invariants on arbitrary input, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/decode.rs`) and the proptest `tests/fuzz_mirror.rs`.
//!
//! Input layout: byte 0 picks the version (bits 0-1) and small or default limits
//! (bit 2); byte 1 seeds the chunk sizes (0 = byte by byte); the rest is the stream.
//!
//! Checked, for the stream fed whole and fed in chunks:
//! - nothing panics;
//! - `Ok(None)` leaves the buffer untouched, and less than `max_frame_size` buffered;
//! - an item consumes a prefix of the buffer: a heart-beat exactly `\n` or `\r\n`, a
//!   frame exactly its bytes through the NUL (decoding those bytes alone gives the
//!   same frame and consumes them all);
//! - a decoded frame re-encodes to bytes that decode to the same frame;
//! - whole and chunked feeding give the same items, and either both fail or neither
//!   (they may name different limits when several are exceeded at once).

use bytes::BytesMut;
use stomp_codec::{DecodeError, Decoded, Decoder, DecoderConfig, Frame, Version, encode_frame};

/// Limits small enough for short fuzz inputs to reach every one of them.
fn small_limits() -> DecoderConfig {
    DecoderConfig::default()
        .max_frame_size(256)
        .max_header_lines(4)
        .max_header_line_len(48)
        .max_body_size(96)
}

/// Runs every check on `data`; panics on a violation.
pub fn check(data: &[u8]) {
    let [ctrl, seed, input @ ..] = data else {
        return;
    };
    let version = match ctrl & 3 {
        0 => Version::V1_0,
        1 => Version::V1_1,
        _ => Version::V1_2,
    };
    let config = if ctrl & 4 != 0 {
        small_limits()
    } else {
        DecoderConfig::default()
    };
    let whole = feed(input, &[input.len().max(1)], config, version);
    let sizes = chunk_sizes(*seed, input.len());
    let chunked = feed(input, &sizes, config, version);
    assert_eq!(whole.0, chunked.0, "whole and chunked items differ");
    match (whole.1, chunked.1) {
        (None, None) => {}
        (Some(a), Some(b)) if a == b || (a.is_limit() && b.is_limit()) => {}
        (a, b) => panic!("whole gave {a:?}, chunked gave {b:?}"),
    }
}

/// Pseudo-random chunk sizes (xorshift) from `seed`; `0` means one byte at a time.
fn chunk_sizes(seed: u8, total: usize) -> Vec<usize> {
    if seed == 0 {
        return vec![1];
    }
    let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut sizes = Vec::new();
    let mut sum = 0;
    while sum < total {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 64) + 1;
        sizes.push(n);
        sum += n;
    }
    if sizes.is_empty() {
        sizes.push(1);
    }
    sizes
}

/// Feeds `input` in chunks of the given sizes (cycled), checking every call.
fn feed(
    input: &[u8],
    sizes: &[usize],
    config: DecoderConfig,
    version: Version,
) -> (Vec<Decoded>, Option<DecodeError>) {
    let mut decoder = Decoder::new(config);
    decoder.set_version(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf, before, "Ok(None) changed the buffer");
                    assert!(
                        buf.len() < config.max_frame_size.max(2),
                        "{} bytes buffered past the frame limit",
                        buf.len()
                    );
                    break;
                }
                Ok(Some(item)) => {
                    let used = before.len() - buf.len();
                    assert!(used > 0, "an item consumed nothing");
                    assert_eq!(&before[used..], &buf[..], "consumed a non-prefix");
                    check_item(&item, &before[..used], config, version);
                    items.push(item);
                }
                Err(_) if decoder.decode(&mut BytesMut::new()).is_ok() => {
                    panic!("decoder not poisoned after an error")
                }
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

fn check_item(item: &Decoded, consumed: &[u8], config: DecoderConfig, version: Version) {
    match item {
        Decoded::Heartbeat => assert!(consumed == b"\n" || consumed == b"\r\n"),
        Decoded::Frame(frame) => {
            assert_eq!(consumed.last(), Some(&0), "a frame ends with its NUL");
            assert_eq!(
                decode_one(consumed, config, version).as_ref(),
                Some(frame),
                "the consumed bytes alone are not that frame"
            );
            let mut out = BytesMut::new();
            encode_frame(frame, version, &mut out);
            let roomy = DecoderConfig::default()
                .max_frame_size(1 << 20)
                .max_body_size(1 << 20);
            let again = decode_one(&out, roomy, version).map(without_content_length);
            assert_eq!(
                again,
                Some(without_content_length(frame.clone())),
                "re-encoded frame decodes differently"
            );
        }
    }
}

/// Decodes `bytes` as exactly one frame, or `None`.
fn decode_one(bytes: &[u8], config: DecoderConfig, version: Version) -> Option<Frame> {
    let mut decoder = Decoder::new(config);
    decoder.set_version(version);
    let mut buf = BytesMut::from(bytes);
    match decoder.decode(&mut buf) {
        Ok(Some(Decoded::Frame(f))) if buf.is_empty() => Some(f),
        _ => None,
    }
}

fn without_content_length(mut f: Frame) -> Frame {
    f.headers.remove("content-length");
    f
}

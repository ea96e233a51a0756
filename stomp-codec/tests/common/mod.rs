//! Helpers shared by the integration tests.
#![allow(dead_code)]

use bytes::BytesMut;
use stomp_codec::{DecodeError, Decoded, Decoder, DecoderConfig, Frame, Version};

/// Feeds `chunks` one after the other, decoding everything decodable after each, and
/// checks on every call that `Ok(None)` left the buffer untouched and that a decoded
/// item consumed a prefix of the buffer.
pub fn decode_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    config: DecoderConfig,
    version: Version,
) -> (Vec<Decoded>, Option<DecodeError>, BytesMut) {
    let mut decoder = Decoder::new(config);
    decoder.set_version(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf, before, "Ok(None) must leave the buffer untouched");
                    break;
                }
                Ok(Some(item)) => {
                    assert!(buf.len() < before.len(), "an item must consume bytes");
                    assert_eq!(&before[before.len() - buf.len()..], &buf[..]);
                    items.push(item);
                }
                Err(e) => return (items, Some(e), buf),
            }
        }
    }
    (items, None, buf)
}

/// Decodes `input` given as one chunk.
pub fn decode_whole(input: &[u8], version: Version) -> (Vec<Decoded>, Option<DecodeError>) {
    let (items, err, _) = decode_chunks([input], DecoderConfig::default(), version);
    (items, err)
}

/// Decodes `input` split at `at`.
pub fn decode_split(
    input: &[u8],
    at: usize,
    version: Version,
) -> (Vec<Decoded>, Option<DecodeError>) {
    let (a, b) = input.split_at(at);
    let (items, err, _) = decode_chunks([a, b], DecoderConfig::default(), version);
    (items, err)
}

/// Decodes `input` one byte at a time.
pub fn decode_bytewise(input: &[u8], version: Version) -> (Vec<Decoded>, Option<DecodeError>) {
    let (items, err, _) = decode_chunks(input.chunks(1), DecoderConfig::default(), version);
    (items, err)
}

/// Asserts that whole, every two-way split and byte-by-byte feeding all agree.
pub fn assert_split_invariant(
    input: &[u8],
    version: Version,
) -> (Vec<Decoded>, Option<DecodeError>) {
    let whole = decode_whole(input, version);
    for at in 0..=input.len() {
        assert_eq!(decode_split(input, at, version), whole, "split at {at}");
    }
    assert_eq!(decode_bytewise(input, version), whole, "byte by byte");
    whole
}

/// The frame without any `content-length` header (the encoder computes its own).
pub fn without_content_length(mut f: Frame) -> Frame {
    f.headers.remove("content-length");
    f
}

/// Every `\n` of the header block (up to and including the blank line) as `\r\n`.
pub fn crlf_head(frame: &[u8]) -> Vec<u8> {
    let end = frame
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("frame has a blank line")
        + 2;
    let mut out = Vec::new();
    for &b in &frame[..end] {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out.extend_from_slice(&frame[end..]);
    out
}

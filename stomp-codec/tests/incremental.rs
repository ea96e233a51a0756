//! The decoder scans only newly appended bytes: a near-limit frame fed one byte at a
//! time decodes in linear time. (A decoder that rescanned from the start on every call
//! would need billions of steps here and time out.)

mod common;

use common::decode_chunks;
use stomp_codec::{Decoded, DecoderConfig, Version};

#[test]
fn large_body_without_content_length_bytewise() {
    let mut frame = b"SEND\ndestination:/q\n\n".to_vec();
    frame.extend(std::iter::repeat_n(b'x', 60_000));
    frame.push(0);
    let (items, err, rest) =
        decode_chunks(frame.chunks(1), DecoderConfig::default(), Version::V1_2);
    assert_eq!(err, None);
    assert!(rest.is_empty());
    assert!(matches!(&items[..], [Decoded::Frame(f)] if f.body.len() == 60_000));
}

#[test]
fn large_header_block_bytewise() {
    let mut frame = b"SEND\n".to_vec();
    for i in 0..60 {
        frame.extend_from_slice(format!("h{i}:{}\n", "v".repeat(1000)).as_bytes());
    }
    frame.extend_from_slice(b"\n\0");
    let (items, err, rest) =
        decode_chunks(frame.chunks(1), DecoderConfig::default(), Version::V1_2);
    assert_eq!(err, None);
    assert!(rest.is_empty());
    assert!(matches!(&items[..], [Decoded::Frame(f)] if f.headers.len() == 60));
}

#[test]
fn large_body_with_content_length_bytewise() {
    let mut frame = b"SEND\ncontent-length:60000\n\n".to_vec();
    frame.extend(std::iter::repeat_n(0u8, 60_000));
    frame.push(0);
    let (items, err, _) = decode_chunks(frame.chunks(1), DecoderConfig::default(), Version::V1_2);
    assert_eq!(err, None);
    assert!(matches!(&items[..], [Decoded::Frame(f)] if f.body.len() == 60_000));
}

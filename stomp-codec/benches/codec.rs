//! Codec benchmarks. Run with
//! `cargo bench -p stomp-codec --bench codec -- --warm-up-time 1 --measurement-time 3`.
//! Figures and targets: docs/benchmarks.md, section "stomp-codec".

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use stomp_codec::{
    Command, Decoded, Decoder, DecoderConfig, Delivery, Frame, PreparedMessage, Version,
    encode_frame,
};

/// A typical 200-byte client SEND with 5 headers.
fn small_send() -> Vec<u8> {
    let body = br#"{"user":"alice","room":42,"text":"hello everyone"}"#;
    let frame = Frame::new(Command::Send)
        .header("destination", "/app/chat.room.42")
        .header("content-type", "application/json")
        .header("receipt", "r-1234")
        .header("x-request-id", "7f3c9a1e-5b2d-4e8f-a6c0-1d9e8b7a6f5c")
        .with_body(&body[..]);
    let bytes = encode(&frame);
    assert_eq!(bytes.len(), 200);
    bytes
}

/// A MESSAGE with a 1 KiB text body.
fn message_1k() -> Vec<u8> {
    let frame = Frame::new(Command::Message)
        .header("subscription", "sub-0")
        .header("message-id", "m-123456")
        .header("destination", "/topic/chat.room.42")
        .header("content-type", "text/plain")
        .with_body(vec![b'x'; 1024]);
    encode(&frame)
}

/// A SEND with a 64 KiB binary body (NULs included).
fn binary_64k() -> Vec<u8> {
    let body: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 256) as u8).collect();
    let frame = Frame::new(Command::Send)
        .header("destination", "/app/upload")
        .header("content-type", "application/octet-stream")
        .with_body(body);
    encode(&frame)
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(frame, Version::V1_2, &mut out);
    out.to_vec()
}

/// Limits roomy enough for the 64 KiB body plus headers.
fn config() -> DecoderConfig {
    DecoderConfig::default()
        .max_frame_size(1 << 20)
        .max_body_size(1 << 20)
}

fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Ok(Some(item)) = decoder.decode(buf) {
        if let Decoded::Frame(f) = black_box(item) {
            n += f.body.len() + 1;
        }
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    let cases: [(&str, Vec<u8>, usize, bool); 3] = [
        ("send_200b_5h", small_send(), 1000, false),
        ("message_1k", message_1k(), 200, true),
        ("binary_64k", binary_64k(), 8, true),
    ];
    let mut group = c.benchmark_group("decode");
    for (name, frame, copies, by_bytes) in cases {
        let input: Vec<u8> = frame.repeat(copies);
        group.throughput(if by_bytes {
            Throughput::Bytes(input.len() as u64)
        } else {
            Throughput::Elements(copies as u64)
        });
        // Everything already buffered (one large read).
        group.bench_function(format!("{name}/whole"), |b| {
            let mut decoder = Decoder::new(config());
            b.iter_batched_ref(
                || BytesMut::from(&input[..]),
                |buf| decode_all(&mut decoder, buf),
                BatchSize::LargeInput,
            )
        });
        // The same stream arriving in 1 KiB reads into a reused connection buffer.
        group.bench_function(format!("{name}/chunks_1k"), |b| {
            let mut decoder = Decoder::new(config());
            let mut buf = BytesMut::with_capacity(128 * 1024);
            b.iter(|| {
                let mut n = 0;
                for chunk in input.chunks(1024) {
                    buf.extend_from_slice(chunk);
                    n += decode_all(&mut decoder, &mut buf);
                }
                n
            })
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let body =
        Bytes::from(&br#"{"user":"alice","room":42,"text":"hello everyone, how are you?"}"#[..]);
    let message = PreparedMessage::new(
        b"/topic/chat.room.42",
        b"m-123456",
        [(&b"content-type"[..], &b"application/json"[..])],
        body,
    );
    let mut out = BytesMut::with_capacity(4096);
    for (name, d) in [
        (
            "prepared_delivery",
            Delivery {
                subscription: b"sub-0",
                ..Delivery::default()
            },
        ),
        (
            "prepared_delivery_ack",
            Delivery {
                subscription: b"sub-0",
                ack: Some(b"ack-m-123456-17"),
                extra: &[],
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                message.encode_delivery(Version::V1_2, black_box(&d), &mut out);
                out.len()
            })
        });
    }
    let message_1k = PreparedMessage::new(
        b"/topic/chat.room.42",
        b"m-123456",
        [(&b"content-type"[..], &b"text/plain"[..])],
        Bytes::from(vec![b'x'; 1024]),
    );
    let d = Delivery {
        subscription: b"sub-0",
        ..Delivery::default()
    };
    group.bench_function("prepared_delivery_1k", |b| {
        b.iter(|| {
            out.clear();
            message_1k.encode_delivery(Version::V1_2, black_box(&d), &mut out);
            out.len()
        })
    });
    let frame = Frame::new(Command::Message)
        .header("subscription", "sub-0")
        .header("message-id", "m-123456")
        .header("destination", "/topic/chat.room.42")
        .header("content-type", "application/json")
        .with_body(message.body().clone());
    group.bench_function("encode_frame_message", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&frame), Version::V1_2, &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);

//! Every frame example of the STOMP 1.2 specification, written out as our own test
//! vectors, plus the encoder's output for them. Each vector is decoded whole, split at
//! every byte position, byte by byte, with CRLF line ends, and all vectors together in
//! one buffer with heart-beats in between.

mod common;

use bytes::BytesMut;
use common::*;
use stomp_codec::{Command, DecodeError, Decoded, Frame, Version, encode_frame};

/// (wire bytes, expected frame). The spec renders NUL as `^@`.
fn vectors() -> Vec<(&'static [u8], Frame)> {
    vec![
        // "STOMP Frames": the example SEND; the line break before ^@ is body.
        (
            b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n\0",
            Frame::new(Command::Send)
                .header("destination", "/queue/a")
                .header("content-type", "text/plain")
                .with_body("hello queue a\n"),
        ),
        // "Connecting": CONNECT.
        (
            b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0",
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "stomp.github.org"),
        ),
        // STOMP, the 1.2 alias of CONNECT.
        (
            b"STOMP\naccept-version:1.2\nhost:stomp.github.org\n\n\0",
            Frame::new(Command::Stomp)
                .header("accept-version", "1.2")
                .header("host", "stomp.github.org"),
        ),
        // "Connecting": CONNECTED.
        (
            b"CONNECTED\nversion:1.2\n\n\0",
            Frame::new(Command::Connected).header("version", "1.2"),
        ),
        // "Protocol Negotiation": CONNECT offering several versions.
        (
            b"CONNECT\naccept-version:1.0,1.1,2.0\nhost:stomp.github.org\n\n\0",
            Frame::new(Command::Connect)
                .header("accept-version", "1.0,1.1,2.0")
                .header("host", "stomp.github.org"),
        ),
        // "Protocol Negotiation": CONNECTED answering 1.1.
        (
            b"CONNECTED\nversion:1.1\n\n\0",
            Frame::new(Command::Connected).header("version", "1.1"),
        ),
        // "Protocol Negotiation": ERROR for no common version (body up to the NUL).
        (
            b"ERROR\nversion:1.2,2.1\ncontent-type:text/plain\n\nSupported protocol versions are 1.2 2.1\0",
            Frame::new(Command::Error)
                .header("version", "1.2,2.1")
                .header("content-type", "text/plain")
                .with_body("Supported protocol versions are 1.2 2.1"),
        ),
        // "Heart-beating": CONNECT and CONNECTED with heart-beat (placeholders kept
        // verbatim: they are valid header values).
        (
            b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\nheart-beat:<cx>,<cy>\n\n\0",
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "stomp.github.org")
                .header("heart-beat", "<cx>,<cy>"),
        ),
        (
            b"CONNECTED\nversion:1.2\nheart-beat:<sx>,<sy>\n\n\0",
            Frame::new(Command::Connected)
                .header("version", "1.2")
                .header("heart-beat", "<sx>,<sy>"),
        ),
        // "SEND".
        (
            b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0",
            Frame::new(Command::Send)
                .header("destination", "/queue/a")
                .header("content-type", "text/plain")
                .with_body("hello queue a"),
        ),
        // "SUBSCRIBE".
        (
            b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\0",
            Frame::new(Command::Subscribe)
                .header("id", "0")
                .header("destination", "/queue/foo")
                .header("ack", "client"),
        ),
        // "UNSUBSCRIBE".
        (
            b"UNSUBSCRIBE\nid:0\n\n\0",
            Frame::new(Command::Unsubscribe).header("id", "0"),
        ),
        // "ACK".
        (
            b"ACK\nid:12345\ntransaction:tx1\n\n\0",
            Frame::new(Command::Ack)
                .header("id", "12345")
                .header("transaction", "tx1"),
        ),
        // "NACK".
        (
            b"NACK\nid:12345\ntransaction:tx1\n\n\0",
            Frame::new(Command::Nack)
                .header("id", "12345")
                .header("transaction", "tx1"),
        ),
        // "BEGIN", "COMMIT", "ABORT".
        (
            b"BEGIN\ntransaction:tx1\n\n\0",
            Frame::new(Command::Begin).header("transaction", "tx1"),
        ),
        (
            b"COMMIT\ntransaction:tx1\n\n\0",
            Frame::new(Command::Commit).header("transaction", "tx1"),
        ),
        (
            b"ABORT\ntransaction:tx1\n\n\0",
            Frame::new(Command::Abort).header("transaction", "tx1"),
        ),
        // "DISCONNECT" and its RECEIPT. The spec text omits the blank line before ^@
        // (a known erratum, see `spec_erratum_without_blank_line`); the vectors use
        // the grammar's form.
        (
            b"DISCONNECT\nreceipt:77\n\n\0",
            Frame::new(Command::Disconnect).header("receipt", "77"),
        ),
        (
            b"RECEIPT\nreceipt-id:77\n\n\0",
            Frame::new(Command::Receipt).header("receipt-id", "77"),
        ),
        // "MESSAGE".
        (
            b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0",
            Frame::new(Command::Message)
                .header("subscription", "0")
                .header("message-id", "007")
                .header("destination", "/queue/a")
                .header("content-type", "text/plain")
                .with_body("hello queue a"),
        ),
        // "RECEIPT" section: SEND with receipt, and the RECEIPT.
        (
            b"SEND\ndestination:/queue/a\nreceipt:message-12345\n\nhello queue a\0",
            Frame::new(Command::Send)
                .header("destination", "/queue/a")
                .header("receipt", "message-12345")
                .with_body("hello queue a"),
        ),
        (
            b"RECEIPT\nreceipt-id:message-12345\n\n\0",
            Frame::new(Command::Receipt).header("receipt-id", "message-12345"),
        ),
        // "ERROR": with content-length:170 covering an embedded frame-like body.
        (
            b"ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\nmessage:malformed frame received\n\nThe message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n\0",
            Frame::new(Command::Error)
                .header("receipt-id", "message-12345")
                .header("content-type", "text/plain")
                .header("content-length", "170")
                .header("message", "malformed frame received")
                .with_body(
                    "The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n",
                ),
        ),
        // "Repeated Header Entries": both kept, the first wins.
        (
            b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0",
            Frame::new(Command::Message)
                .header("foo", "World")
                .header("foo", "Hello"),
        ),
        // "Value Encoding": the four escapes.
        (
            b"MESSAGE\ndestination:/a\\cb\nk\\\\:line1\\nline2\\r\n\n\0",
            Frame::new(Command::Message)
                .header("destination", "/a:b")
                .header("k\\", "line1\nline2\r"),
        ),
    ]
}

fn expect_frames(items: &[Decoded]) -> Vec<Frame> {
    items
        .iter()
        .map(|d| match d {
            Decoded::Frame(f) => f.clone(),
            Decoded::Heartbeat => panic!("unexpected heart-beat"),
        })
        .collect()
}

#[test]
fn each_vector_decodes_whole_split_and_bytewise() {
    for (wire, expected) in vectors() {
        let (items, err) = assert_split_invariant(wire, Version::V1_2);
        assert_eq!(err, None, "{}", String::from_utf8_lossy(wire));
        assert_eq!(expect_frames(&items), [expected]);
    }
}

#[test]
fn each_vector_decodes_with_crlf() {
    for (wire, expected) in vectors() {
        let crlf = crlf_head(wire);
        let (items, err) = assert_split_invariant(&crlf, Version::V1_2);
        assert_eq!(err, None);
        assert_eq!(expect_frames(&items), [expected]);
    }
}

#[test]
fn all_vectors_in_one_buffer_with_heartbeats() {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for (i, (bytes, frame)) in vectors().into_iter().enumerate() {
        wire.extend_from_slice(bytes);
        expected.push(Decoded::Frame(frame));
        // Alternate LF and CRLF heart-beats between frames.
        if i % 2 == 0 {
            wire.extend_from_slice(b"\n");
        } else {
            wire.extend_from_slice(b"\r\n\n");
            expected.push(Decoded::Heartbeat);
        }
        expected.push(Decoded::Heartbeat);
    }
    let (items, err) = assert_split_invariant(&wire, Version::V1_2);
    assert_eq!(err, None);
    assert_eq!(items, expected);
}

#[test]
fn vectors_round_trip_through_the_encoder() {
    for (_, frame) in vectors() {
        let mut out = BytesMut::new();
        encode_frame(&frame, Version::V1_2, &mut out);
        let (items, err) = decode_whole(&out, Version::V1_2);
        assert_eq!(err, None);
        let got = expect_frames(&items);
        assert_eq!(got.len(), 1);
        assert_eq!(
            without_content_length(got[0].clone()),
            without_content_length(frame)
        );
    }
}

#[test]
fn encoder_output_for_spec_frames() {
    let mut out = BytesMut::new();
    let f = Frame::new(Command::Message)
        .header("subscription", "0")
        .header("message-id", "007")
        .header("destination", "/queue/a")
        .header("content-type", "text/plain")
        .with_body("hello queue a");
    encode_frame(&f, Version::V1_2, &mut out);
    assert_eq!(
        &out[..],
        b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\ncontent-length:13\n\nhello queue a\0"
    );
    out.clear();
    encode_frame(
        &Frame::new(Command::Receipt).header("receipt-id", "77"),
        Version::V1_2,
        &mut out,
    );
    assert_eq!(&out[..], b"RECEIPT\nreceipt-id:77\n\n\0");
}

#[test]
fn spec_erratum_without_blank_line() {
    // As printed in the spec, DISCONNECT has no blank line: the NUL is read as part of
    // the header block, which is not complete yet.
    let (items, err) = decode_whole(b"DISCONNECT\nreceipt:77\n\0", Version::V1_2);
    assert!(items.is_empty());
    assert_eq!(err, None);
    // Followed by another line, the NUL line is a malformed header.
    let (_, err) = decode_whole(b"DISCONNECT\nreceipt:77\n\0\n\n", Version::V1_2);
    assert_eq!(err, Some(DecodeError::InvalidHeader));
}

#[test]
fn escapes_follow_the_version() {
    let wire = b"MESSAGE\nk:a\\cb\n\n\0";
    let (items, _) = decode_whole(wire, Version::V1_0);
    assert_eq!(
        expect_frames(&items),
        [Frame::new(Command::Message).header("k", "a\\cb")]
    );
    let (items, _) = decode_whole(wire, Version::V1_1);
    assert_eq!(
        expect_frames(&items),
        [Frame::new(Command::Message).header("k", "a:b")]
    );
    let (_, err) = decode_whole(b"MESSAGE\nk:a\\rb\n\n\0", Version::V1_1);
    assert_eq!(err, Some(DecodeError::InvalidEscape));
    // Handshake frames are never unescaped.
    let (items, _) = decode_whole(b"CONNECT\nlogin:a\\cb\n\n\0", Version::V1_2);
    assert_eq!(
        expect_frames(&items),
        [Frame::new(Command::Connect).header("login", "a\\cb")]
    );
    // 1.0 keeps raw colons in values.
    let (items, _) = decode_whole(b"SEND\nk:a:b\n\n\0", Version::V1_0);
    assert_eq!(
        expect_frames(&items),
        [Frame::new(Command::Send).header("k", "a:b")]
    );
}

#[test]
fn malformed_frames_have_typed_errors() {
    let cases: &[(&[u8], DecodeError)] = &[
        (b"FOO\n\n\0", DecodeError::UnknownCommand),
        (b"send\n\n\0", DecodeError::UnknownCommand),
        (b"SEND \n\n\0", DecodeError::UnknownCommand),
        (b"SEND\nnocolon\n\n\0", DecodeError::InvalidHeader),
        (b"SEND\n:empty-name\n\n\0", DecodeError::InvalidHeader),
        (b"SEND\nk:\\x\n\n\0", DecodeError::InvalidEscape),
        (b"SEND\nk:v\\\n\n\0", DecodeError::InvalidEscape),
        (b"SEND\rX\n\n\0", DecodeError::InvalidEol),
        (b"\rX", DecodeError::InvalidEol),
        (b"SEND\nk:\xc3\x28\n\n\0", DecodeError::InvalidUtf8),
        (b"SE\xffND\n\n\0", DecodeError::InvalidUtf8),
        (
            b"SEND\ncontent-length:abc\n\n\0",
            DecodeError::InvalidContentLength,
        ),
        (
            b"SEND\ncontent-length:\n\n\0",
            DecodeError::InvalidContentLength,
        ),
        (
            b"SEND\ncontent-length: 1\n\nx\0",
            DecodeError::InvalidContentLength,
        ),
        (b"SEND\ncontent-length:1\n\nxy\0", DecodeError::MissingNul),
        (
            b"SUBSCRIBE\nid:0\n\nbody\0",
            DecodeError::BodyNotAllowed(Command::Subscribe),
        ),
        (
            b"CONNECT\n\nx\0",
            DecodeError::BodyNotAllowed(Command::Connect),
        ),
    ];
    for (wire, expected) in cases {
        let (items, err) = assert_split_invariant(wire, Version::V1_2);
        assert!(items.is_empty());
        assert_eq!(
            err.as_ref(),
            Some(expected),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn empty_bodies_and_zero_content_length_are_fine_everywhere() {
    for c in Command::ALL {
        let wire = format!("{}\ncontent-length:0\n\n\0", c.as_str());
        let (items, err) = assert_split_invariant(wire.as_bytes(), Version::V1_2);
        assert_eq!(err, None);
        assert_eq!(expect_frames(&items)[0].command, c);
    }
}

#[test]
fn body_is_a_zero_copy_slice_of_the_input() {
    let mut buf = BytesMut::from(&b"SEND\ndestination:/q\ncontent-length:4\n\nbody\0"[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let mut d = stomp_codec::Decoder::new(Default::default());
    let Some(Decoded::Frame(f)) = d.decode(&mut buf).unwrap() else {
        panic!("expected a frame");
    };
    let body = f.body.as_ptr() as usize;
    assert!(body >= start && body + f.body.len() <= end);
    let dest = f.headers.get_bytes("destination").unwrap().as_ptr() as usize;
    assert!(dest >= start && dest < end);
}

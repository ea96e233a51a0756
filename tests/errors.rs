//! Every protocol error gets an ERROR frame with a clear `message`, then a close, and never
//! disturbs other clients.

mod common;

use common::*;
use stomp_codec::{Command, Frame};

/// Sends raw bytes on a fresh connected session and returns the ERROR frame received.
async fn error_for(server: &broker::Server, bytes: &[u8]) -> Frame {
    let mut c = ws_session(server).await;
    c.send_raw(bytes, true).await.unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(
        c.closed(WAIT).await.unwrap(),
        Some(1002),
        "closed after ERROR"
    );
    f
}

fn message(f: &Frame) -> &str {
    f.headers.get_str("message").unwrap_or("")
}

fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

#[tokio::test]
async fn each_error_case_answers_error_then_closes_and_others_keep_working() {
    let server = start(|c| c.stomp.max_frame_size = 1024).await;
    // A bystander subscribed before, during and after the attacks.
    let mut bystander = tcp_session(&server).await;
    bystander.subscribe("s", "/topic/ok", &[]).await.unwrap();

    let cases: Vec<(&[u8], &str, &str)> = vec![
        (b"FROB\n\n\0", "unknown command", ""),
        (b"SEND\ndestination\n\nx\0", "malformed frame", ""),
        (b"SEND\n\nno destination\0", "missing header", "destination"),
        (
            b"SUBSCRIBE\ndestination:/topic/a\n\n\0",
            "missing header",
            "'id'",
        ),
        (
            b"SEND\ndestination:/elsewhere/x\n\n\0",
            "unknown destination",
            "/topic, /queue",
        ),
        (
            b"SEND\ndestination:/topic/a\nx:\\t\n\n\0",
            "malformed frame",
            "",
        ),
        (
            b"SUBSCRIBE\nid:1\ndestination:/topic/a\nack:sometimes\n\n\0",
            "invalid header",
            "ack",
        ),
        (
            b"MESSAGE\ndestination:/topic/a\n\n\0",
            "unknown command",
            "server frame",
        ),
        (
            b"COMMIT\ntransaction:nope\n\n\0",
            "invalid transaction",
            "nope",
        ),
        (
            b"SEND\ndestination:/topic/a\ncontent-length:5000\n\n",
            "body too large",
            "1024",
        ),
    ];
    for (bytes, want_message, want_detail) in cases {
        let f = error_for(&server, bytes).await;
        assert_eq!(
            message(&f),
            want_message,
            "for {:?}: {}",
            String::from_utf8_lossy(bytes),
            body(&f)
        );
        assert!(
            body(&f).contains(want_detail),
            "detail {:?} for {:?}",
            body(&f),
            String::from_utf8_lossy(bytes)
        );
    }
    // A frame over max_frame_size with no content-length is refused before it is buffered.
    let mut big = b"SEND\ndestination:/topic/a\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2000));
    let f = error_for(&server, &big).await;
    assert!(message(&f).contains("too large"), "{}", message(&f));

    let mut p = ws_session(&server).await;
    p.publish("/topic/ok", "still here").await.unwrap();
    let m = bystander.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"still here");
    assert!(
        metric(
            &server,
            "stompbox_disconnects_total{reason=\"protocol_error\"}"
        )
        .await
            >= 11.0
    );
}

#[tokio::test]
async fn error_carries_the_receipt_id_of_the_offending_frame() {
    let server = start(|_| {}).await;
    let f = error_for(&server, b"SUBSCRIBE\nreceipt:r-9\nid:1\n\n\0").await;
    assert_eq!(f.headers.get_str("receipt-id"), Some("r-9"));
    assert_eq!(message(&f), "missing header");
}

#[tokio::test]
async fn duplicate_subscription_ids_and_the_subscription_limit() {
    let server = start(|c| c.stomp.max_subscriptions = 2).await;
    let mut c = ws_session(&server).await;
    c.subscribe("a", "/topic/1", &[]).await.unwrap();
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "a")
            .header("destination", "/topic/2"),
    )
    .await
    .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(message(&f), "duplicate subscription id");

    let mut c = ws_session(&server).await;
    c.subscribe("a", "/topic/1", &[]).await.unwrap();
    c.subscribe("b", "/topic/2", &[]).await.unwrap();
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "c")
            .header("destination", "/topic/3"),
    )
    .await
    .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(message(&f), "too many subscriptions");
    assert!(body(&f).contains('2'));
    c.closed(WAIT).await.unwrap();
    eventually("subscriptions released", || async {
        metric(&server, "stompbox_subscriptions").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn oversized_websocket_message_is_refused_with_1009() {
    let server = start(|c| {
        c.stomp.max_frame_size = 1024;
        c.websocket.max_message_size = 2048;
    })
    .await;
    let mut c = ws_session(&server).await;
    let big = vec![b'x'; 4096];
    c.send_raw(&big, true).await.unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(message(&f), "message too large");
    assert!(body(&f).contains("2048"));
    assert_eq!(c.closed(WAIT).await.unwrap(), Some(1009));
}

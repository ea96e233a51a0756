//! Publish/subscribe on broadcast destinations over WebSocket and TCP.

mod common;

use bytes::Bytes;
use common::*;
use stomp_codec::{Command, Frame};

#[tokio::test]
async fn message_carries_the_right_headers_over_websocket_and_tcp() {
    let server = start(|_| {}).await;
    let mut sub_ws = ws_session(&server).await;
    let mut sub_tcp = tcp_session(&server).await;
    sub_ws
        .subscribe("sub-0", "/topic/prices", &[])
        .await
        .unwrap();
    sub_tcp.subscribe("t1", "/topic/prices", &[]).await.unwrap();

    let mut publisher = ws_session(&server).await;
    publisher
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/prices")
                .header("content-type", "application/json")
                .header("x-custom", "a:b")
                .header("receipt", "p1")
                .with_body(r#"{"eur":1.1}"#),
        )
        .await
        .unwrap();
    publisher.receipt("p1").await.unwrap();

    for (client, sub_id) in [(&mut sub_ws, "sub-0"), (&mut sub_tcp, "t1")] {
        let m = client.expect(Command::Message, WAIT).await.unwrap();
        let h = &m.headers;
        assert_eq!(h.get_str("destination"), Some("/topic/prices"));
        assert_eq!(h.get_str("subscription"), Some(sub_id));
        assert!(h.get_str("message-id").is_some_and(|id| !id.is_empty()));
        assert_eq!(h.get_str("content-type"), Some("application/json"));
        assert_eq!(h.get_str("content-length"), Some("11"));
        assert_eq!(
            h.get_str("x-custom"),
            Some("a:b"),
            "escaped header round-trips"
        );
        assert!(h.get("receipt").is_none(), "receipt is not passed through");
        assert!(
            h.get("ack").is_none(),
            "auto-ack deliveries carry no ack header"
        );
        assert_eq!(&m.body[..], br#"{"eur":1.1}"#);
    }
    assert!(!sub_ws.last_binary, "UTF-8 bodies travel as text messages");
}

#[tokio::test]
async fn binary_bodies_with_nuls_travel_as_binary_messages() {
    let server = start(|_| {}).await;
    let mut sub = ws_session(&server).await;
    sub.subscribe("s", "/topic/bin", &[]).await.unwrap();
    let mut publisher = tcp_session(&server).await;
    let body = Bytes::from_static(&[0, 1, 2, 0, 255, 254, 0]);
    publisher
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/bin")
                .with_body(body.clone()),
        )
        .await
        .unwrap();
    let m = sub.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.body, body);
    assert!(sub.last_binary);

    // A UTF-8 body declared as octet-stream is binary too.
    publisher
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/bin")
                .header("content-type", "application/octet-stream")
                .with_body("text"),
        )
        .await
        .unwrap();
    let m = sub.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"text");
    assert!(sub.last_binary);
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_receipts_answer_every_frame() {
    let server = start(|_| {}).await;
    let mut c = ws_session(&server).await;
    c.subscribe("a", "/topic/x", &[]).await.unwrap();
    c.subscribe("b", "/topic/y", &[]).await.unwrap();
    c.send(
        &Frame::new(Command::Unsubscribe)
            .header("id", "a")
            .header("receipt", "u"),
    )
    .await
    .unwrap();
    c.receipt("u").await.unwrap();
    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/x")
            .header("receipt", "s1")
            .with_body("x"),
    )
    .await
    .unwrap();
    c.receipt("s1").await.unwrap();
    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/y")
            .with_body("y"),
    )
    .await
    .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"y", "nothing for the unsubscribed /topic/x");
    assert_eq!(m.headers.get_str("subscription"), Some("b"));
}

#[tokio::test]
async fn several_frames_in_one_message_and_one_frame_across_messages() {
    let server = start(|_| {}).await;
    let mut sub = ws_session(&server).await;
    sub.subscribe("s", "/topic/split", &[]).await.unwrap();
    let mut publisher = ws_session(&server).await;
    // Two SENDs in one WebSocket message.
    publisher
        .send_raw(
            b"SEND\ndestination:/topic/split\n\none\0SEND\ndestination:/topic/split\n\ntwo\0",
            true,
        )
        .await
        .unwrap();
    // One SEND across three WebSocket messages, as stomp.js splitLargeFrames does.
    let frame = b"SEND\ndestination:/topic/split\ncontent-length:5\n\nthree\0";
    for part in [&frame[..7], &frame[7..30], &frame[30..]] {
        publisher.send_raw(part, true).await.unwrap();
    }
    for want in ["one", "two", "three"] {
        let m = sub.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&m.body), want);
    }
}

#[tokio::test]
async fn ant_patterns_match_like_spring() {
    let server = start(|_| {}).await;
    let mut c = ws_session(&server).await;
    c.subscribe("one", "/topic/chat/*", &[]).await.unwrap();
    c.subscribe("deep", "/topic/**", &[]).await.unwrap();
    c.subscribe("dotted", "/topic/price.*", &[]).await.unwrap();
    let mut p = tcp_session(&server).await;
    p.publish("/topic/chat/lobby", "1").await.unwrap();
    p.publish("/topic/chat/lobby/deep", "2").await.unwrap();
    p.publish("/topic/price.eur", "3").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let m = c.expect(Command::Message, WAIT).await.unwrap();
        got.push((
            m.headers.get_str("subscription").unwrap().to_owned(),
            m.headers.get_str("destination").unwrap().to_owned(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("deep".into(), "/topic/chat/lobby".into()),
            ("deep".into(), "/topic/chat/lobby/deep".into()),
            ("deep".into(), "/topic/price.eur".into()),
            ("dotted".into(), "/topic/price.eur".into()),
            ("one".into(), "/topic/chat/lobby".into()),
        ] as Vec<(String, String)>
    );
}

#[tokio::test]
async fn order_is_kept_per_publisher_and_every_subscriber_gets_everything() {
    let server = start(|_| {}).await;
    let mut subs = Vec::new();
    for i in 0..5 {
        let mut c = ws_session(&server).await;
        c.subscribe("sub-0", "/topic/seq", &[]).await.unwrap();
        subs.push((i, c));
    }
    let mut p = tcp_session(&server).await;
    for n in 0..200 {
        p.publish("/topic/seq", &n.to_string()).await.unwrap();
    }
    for (_, c) in subs.iter_mut() {
        for n in 0..200 {
            let m = c.expect(Command::Message, WAIT).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&m.body), n.to_string());
        }
    }
    // Sessions add their counts to the shared metrics in batches, within 100 ms.
    eventually("published and delivered counted", || async {
        metric(&server, "stompbox_messages_published_total").await == 200.0
            && metric(&server, "stompbox_messages_delivered_total").await == 1000.0
    })
    .await;
}

#[tokio::test]
async fn stomp_1_0_headers_are_not_escaped() {
    let server = start(|_| {}).await;
    // 1.0 does not unescape: a backslash stays a backslash.
    let mut old = tcp(&server).await;
    old.send(&Frame::new(Command::Connect)).await.unwrap();
    old.expect(Command::Connected, WAIT).await.unwrap();
    old.set_version(stomp_codec::Version::V1_0);
    old.send(
        &Frame::new(Command::Subscribe)
            .header("destination", "/topic/esc")
            .header("receipt", "r"),
    )
    .await
    .unwrap();
    old.receipt("r").await.unwrap();
    let mut p = ws_session(&server).await;
    p.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/esc")
            .header("k", "a:b\\c")
            .with_body("x"),
    )
    .await
    .unwrap();
    let m = old.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get("k"), Some(b"a:b\\c".as_slice()));
}

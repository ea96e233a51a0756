//! Ack modes, ACK/NACK by id (1.2) and by message-id (1.1), and prefetch-count.

mod common;

use std::time::Duration;

use common::*;
use stomp_codec::{Command, Frame};

async fn publish_n(server: &broker::Server, dest: &str, n: usize) {
    let mut p = tcp_session(server).await;
    for i in 0..n {
        p.publish(dest, &i.to_string()).await.unwrap();
    }
    p.send(&Frame::new(Command::Disconnect).header("receipt", "done"))
        .await
        .unwrap();
    p.receipt("done").await.unwrap();
}

#[tokio::test]
async fn prefetch_bounds_unacked_and_ack_opens_the_window() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/jobs", None))).await;
    let mut c = ws_session(&server).await;
    c.subscribe(
        "s",
        "/queue/jobs",
        &[("ack", "client-individual"), ("prefetch-count", "2")],
    )
    .await
    .unwrap();
    publish_n(&server, "/queue/jobs", 5).await;
    let a = c.expect(Command::Message, WAIT).await.unwrap();
    let b = c.expect(Command::Message, WAIT).await.unwrap();
    assert_quiet(&mut c).await;
    assert_eq!((&a.body[..], &b.body[..]), (&b"0"[..], &b"1"[..]));
    // 1.2: MESSAGE has an `ack` header; ACK names it in `id`.
    let ack_id = b.headers.get_str("ack").expect("ack header").to_owned();
    c.send(&Frame::new(Command::Ack).header("id", ack_id))
        .await
        .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"2");
    assert_quiet(&mut c).await;
}

#[tokio::test]
async fn client_mode_acks_cumulatively() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/cum", None))).await;
    let mut c = ws_session(&server).await;
    c.subscribe(
        "s",
        "/queue/cum",
        &[("ack", "client"), ("prefetch-count", "3")],
    )
    .await
    .unwrap();
    publish_n(&server, "/queue/cum", 6).await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(c.expect(Command::Message, WAIT).await.unwrap());
    }
    assert_quiet(&mut c).await;
    // Acking the third acknowledges all three: three more arrive.
    let id = last.unwrap().headers.get_str("ack").unwrap().to_owned();
    c.send(&Frame::new(Command::Ack).header("id", id))
        .await
        .unwrap();
    for want in ["3", "4", "5"] {
        let m = c.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&m.body), want);
    }
}

#[tokio::test]
async fn stomp_1_1_acks_by_message_id_and_subscription() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/v11", None))).await;
    let mut c = ws(&server).await;
    c.connect(&[("accept-version", "1.1")]).await.unwrap();
    c.subscribe(
        "s1",
        "/queue/v11",
        &[("ack", "client-individual"), ("prefetch-count", "1")],
    )
    .await
    .unwrap();
    publish_n(&server, "/queue/v11", 2).await;
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert!(m.headers.get("ack").is_none(), "1.1 has no ack header");
    let mid = m.headers.get_str("message-id").unwrap().to_owned();
    c.send(
        &Frame::new(Command::Ack)
            .header("message-id", mid)
            .header("subscription", "s1"),
    )
    .await
    .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"1");
}

#[tokio::test]
async fn broadcast_prefetch_drops_beyond_the_window_until_acked() {
    let server = start(|_| {}).await;
    let mut c = ws_session(&server).await;
    c.subscribe(
        "s",
        "/topic/acked",
        &[("ack", "client-individual"), ("prefetch-count", "1")],
    )
    .await
    .unwrap();
    publish_n(&server, "/topic/acked", 3).await;
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"0");
    assert_quiet(&mut c).await;
    assert_eq!(
        metric(
            &server,
            "stompbox_messages_dropped_total{reason=\"slow_consumer\"}"
        )
        .await,
        2.0
    );
    c.send(&Frame::new(Command::Ack).header("id", m.headers.get_str("ack").unwrap().to_owned()))
        .await
        .unwrap();
    publish_n(&server, "/topic/acked", 1).await;
    let m = c
        .expect(Command::Message, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&m.body[..], b"0");
}

#[tokio::test]
async fn unknown_acks_are_ignored() {
    let server = start(|_| {}).await;
    let mut c = ws_session(&server).await;
    c.send(
        &Frame::new(Command::Ack)
            .header("id", "99-99")
            .header("receipt", "a"),
    )
    .await
    .unwrap();
    c.receipt("a").await.unwrap();
    c.send(
        &Frame::new(Command::Nack)
            .header("id", "garbage")
            .header("receipt", "n"),
    )
    .await
    .unwrap();
    c.receipt("n").await.unwrap();
}

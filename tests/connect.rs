//! CONNECT, version and heart-beat negotiation, subprotocols, and the session's deadlines.

mod common;

use std::time::Duration;

use broker::client::{Client, Event};
use common::*;
use stomp_codec::{Command, Frame};

#[tokio::test]
async fn connected_carries_version_heartbeat_session_and_server() {
    let server = start(|_| {}).await;
    let mut c = ws(&server).await;
    assert_eq!(c.subprotocol.as_deref(), Some("v12.stomp"));
    let f = c
        .connect(&[
            ("accept-version", "1.0,1.1,1.2"),
            ("heart-beat", "0,0"),
            ("host", "localhost"),
        ])
        .await
        .unwrap();
    assert_eq!(f.headers.get_str("version"), Some("1.2"));
    // The heart-beat floor (default 1 s), which the client's own asks override upwards.
    assert_eq!(f.headers.get_str("heart-beat"), Some("1000,1000"));
    assert!(f.headers.get_str("session").is_some_and(|s| !s.is_empty()));
    assert!(
        f.headers
            .get_str("server")
            .is_some_and(|s| s.starts_with("stompbox/"))
    );
    assert!(f.headers.get("user-name").is_none());
}

#[tokio::test]
async fn stomp_command_and_version_negotiation() {
    let server = start(|_| {}).await;
    // STOMP instead of CONNECT, highest common version wins.
    let mut c = ws(&server).await;
    c.send(
        &Frame::new(Command::Stomp)
            .header("accept-version", "1.1,1.0")
            .header("host", "x"),
    )
    .await
    .unwrap();
    let f = c.expect(Command::Connected, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("version"), Some("1.1"));

    // No accept-version means STOMP 1.0, which has no heart-beats.
    let mut c = tcp(&server).await;
    c.send(&Frame::new(Command::Connect)).await.unwrap();
    let f = c.expect(Command::Connected, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("version"), Some("1.0"));
    assert!(f.headers.get("heart-beat").is_none());

    // Nothing in common: ERROR listing the supported versions, then close.
    let mut c = tcp(&server).await;
    c.send(&Frame::new(Command::Connect).header("accept-version", "2.0"))
        .await
        .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("version"), Some("1.0,1.1,1.2"));
    assert_eq!(
        f.headers.get_str("message"),
        Some("unsupported protocol version")
    );
    c.closed(WAIT).await.unwrap();
}

#[tokio::test]
async fn subprotocol_is_the_highest_supported_offer() {
    let server = start(|_| {}).await;
    let url = ws_url(&server);
    let c = Client::websocket(&url, &["v11.stomp", "v12.stomp"])
        .await
        .unwrap();
    assert_eq!(c.subprotocol.as_deref(), Some("v12.stomp"));
    let c = Client::websocket(&url, &["mqtt", "v10.stomp"])
        .await
        .unwrap();
    assert_eq!(c.subprotocol.as_deref(), Some("v10.stomp"));
    // Offering only unknown protocols gets no Sec-WebSocket-Protocol in the answer.
    let (status, text) = http_get(
        server.http_addr(),
        "/ws",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n",
    )
    .await;
    assert_eq!(status, 101, "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{text}"
    );
    assert!(
        text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "accept key: {text}"
    );
}

#[tokio::test]
async fn frames_before_connect_and_second_connect_are_errors() {
    let server = start(|_| {}).await;
    let mut c = ws(&server).await;
    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/a")
            .header("receipt", "r1"),
    )
    .await
    .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("not connected"));
    assert_eq!(f.headers.get_str("receipt-id"), Some("r1"));
    assert!(String::from_utf8_lossy(&f.body).contains("CONNECT"));
    assert_eq!(c.closed(WAIT).await.unwrap(), Some(1002));

    let mut c = ws_session(&server).await;
    c.send(&Frame::new(Command::Connect).header("accept-version", "1.2"))
        .await
        .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("already connected"));
    c.closed(WAIT).await.unwrap();
}

#[tokio::test]
async fn connect_deadline_closes_silent_sockets() {
    let server = start(|c| c.server.connect_timeout_ms = 200).await;
    let mut c = tcp(&server).await;
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("connect timeout"));
    c.closed(WAIT).await.unwrap();
    assert_eq!(
        metric(
            &server,
            "stompbox_disconnects_total{reason=\"connect_timeout\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn server_sends_heartbeats_when_idle() {
    let server = start(|c| c.stomp.heartbeat = [100, 100]).await;
    let mut c = ws(&server).await;
    let f = c.connect(&[("heart-beat", "0,100")]).await.unwrap();
    assert_eq!(f.headers.get_str("heart-beat"), Some("100,100"));
    // Three EOLs in a row, with nothing else sent by either side.
    for _ in 0..3 {
        assert_eq!(c.next_event(WAIT).await.unwrap(), Event::Heartbeat);
    }
}

#[tokio::test]
async fn client_heartbeats_keep_the_session_and_silence_ends_it() {
    let server = start(|c| {
        c.stomp.heartbeat = [0, 100];
        c.stomp.heartbeat_grace_ms = 100;
    })
    .await;
    // A client that keeps sending EOLs stays connected past several intervals.
    let mut alive = tcp(&server).await;
    alive.connect(&[("heart-beat", "100,0")]).await.unwrap();
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..10 {
        ticker.tick().await;
        alive.send_raw(b"\n", true).await.unwrap();
    }
    alive.subscribe("s", "/topic/alive", &[]).await.unwrap();
    alive.abort().await;

    // A silent one gets ERROR and is closed after interval + grace.
    let mut silent = ws(&server).await;
    silent.connect(&[("heart-beat", "100,0")]).await.unwrap();
    let started = tokio::time::Instant::now();
    let f = silent.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("heart-beat timeout"));
    assert!(started.elapsed() >= Duration::from_millis(150));
    silent.closed(WAIT).await.unwrap();
    assert_eq!(
        metric(
            &server,
            "stompbox_disconnects_total{reason=\"heartbeat_timeout\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn disconnect_receipt_comes_before_close() {
    let server = start(|_| {}).await;
    let mut c = ws_session(&server).await;
    c.send(&Frame::new(Command::Disconnect).header("receipt", "bye"))
        .await
        .unwrap();
    let f = c.expect(Command::Receipt, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("receipt-id"), Some("bye"));
    assert_eq!(c.closed(WAIT).await.unwrap(), Some(1000));
}

/// Outgoing frames bypass tungstenite's writer, while tungstenite answers pings itself: the two
/// must never interleave inside a frame. A client pings between messages arriving in bulk and
/// gets every pong and every MESSAGE intact.
#[tokio::test]
async fn websocket_pings_are_answered_between_bulk_messages() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = start(|_| {}).await;
    let mut req = ws_url(&server).into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        "CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\0",
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        "SUBSCRIBE\nid:0\ndestination:/topic/p\nreceipt:s\n\n\0",
    ))
    .await
    .unwrap();
    let mut publisher = ws_session(&server).await;
    const N: usize = 2000;
    const PINGS: usize = 50;
    let body = "x".repeat(300);
    let mut messages = 0;
    let mut pongs = 0;
    let mut sent_pings = 0;
    let mut published = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while messages < N || pongs < PINGS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{messages} messages, {pongs} pongs"
        );
        if published < N {
            for _ in 0..100 {
                publisher.publish("/topic/p", &body).await.unwrap();
                published += 1;
            }
        }
        if sent_pings < PINGS {
            ws.send(Message::Ping(format!("p{sent_pings}").into_bytes().into()))
                .await
                .unwrap();
            sent_pings += 1;
        }
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("broker went quiet")
            .expect("stream ended")
            .expect("a well-formed WebSocket frame");
        match msg {
            Message::Pong(p) => {
                assert_eq!(p, format!("p{pongs}").into_bytes());
                pongs += 1;
            }
            Message::Text(t) if t.starts_with("MESSAGE\n") => {
                assert!(t.ends_with(&format!("\n\n{body}\0")), "intact frame: {t:?}");
                messages += 1;
            }
            Message::Text(t) if t.starts_with("CONNECTED\n") || t.starts_with("RECEIPT\n") => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(messages, N);
}

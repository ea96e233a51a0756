//! The HTTP side of the listener: health, metrics, and refusing non-upgrade requests.

mod common;

use common::*;

#[tokio::test]
async fn healthz_metrics_and_not_found() {
    let server = start(|_| {}).await;
    let _c = ws_session(&server).await;
    let (status, text) = http_get(server.http_addr(), "/healthz", "").await;
    assert_eq!(status, 200);
    assert!(text.ends_with("ok\n"));

    // Sessions add their frame counts to the shared metrics in batches, within 100 ms.
    eventually("the CONNECT is counted", || async {
        let (_, text) = http_get(server.http_addr(), "/metrics", "").await;
        text.contains("stompbox_frames_sent_total{command=\"CONNECTED\"} 1")
    })
    .await;
    let (status, text) = http_get(server.http_addr(), "/metrics", "").await;
    assert_eq!(status, 200);
    for name in [
        "stompbox_connections 1",
        "stompbox_connections_accepted_total{transport=\"websocket\"} 1",
        "stompbox_subscriptions 0",
        "stompbox_frames_received_total{command=\"CONNECT\"} 1",
        "stompbox_frames_sent_total{command=\"CONNECTED\"} 1",
        "stompbox_messages_published_total 0",
        "stompbox_messages_delivered_total 0",
        "stompbox_messages_dropped_total{reason=\"slow_consumer\"} 0",
        "stompbox_disconnects_total{reason=\"slow_consumer\"} 0",
        "stompbox_received_bytes_total",
        "stompbox_sent_bytes_total",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }

    let (status, _) = http_get(server.http_addr(), "/nope", "").await;
    assert_eq!(status, 404);
    // A plain GET of the endpoint: SockJS's greeting (SockJS shares the path by default)...
    let (status, text) = http_get(server.http_addr(), "/ws", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("Welcome to SockJS!\n"));
    // ...and without SockJS, a clear refusal.
    let plain = start(|c| c.sockjs.enabled = false).await;
    let (status, text) = http_get(plain.http_addr(), "/ws", "").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("WebSocket upgrade"));
    let (status, _) = http_get(plain.http_addr(), "/ws/info", "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn slow_handshakes_time_out() {
    let server = start(|c| c.server.handshake_timeout_ms = 200).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    // Half a request line, then nothing: the broker hangs up instead of waiting forever.
    s.write_all(b"GET /ws HT").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    assert!(
        r.is_ok(),
        "connection closed by the broker within the deadline"
    );
}

//! Graceful shutdown: stop accepting, flush what is queued, close WebSockets with 1001.

mod common;

use common::*;
use stomp_codec::{Command, Frame};

#[tokio::test]
async fn queued_messages_are_flushed_then_websockets_close_with_1001() {
    let server = start(|_| {}).await;
    let addr = server.http_addr();
    let mut sub = ws_session(&server).await;
    sub.subscribe("s", "/topic/last", &[]).await.unwrap();
    let mut tcp_sub = tcp_session(&server).await;
    tcp_sub.subscribe("s", "/topic/last", &[]).await.unwrap();
    let mut p = ws_session(&server).await;
    for i in 0..100 {
        p.publish("/topic/last", &i.to_string()).await.unwrap();
    }
    p.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/none")
            .header("receipt", "all-routed"),
    )
    .await
    .unwrap();
    p.receipt("all-routed").await.unwrap();

    // Every message is in an outbox or a socket by now; shut down before the clients read.
    let done = tokio::spawn(server.shutdown());
    for i in 0..100 {
        let m = sub.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&m.body), i.to_string());
        let m = tcp_sub.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&m.body), i.to_string());
    }
    assert_eq!(sub.closed(WAIT).await.unwrap(), Some(1001));
    tcp_sub.closed(WAIT).await.unwrap();
    assert!(
        done.await.unwrap(),
        "every session closed within the grace period"
    );
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

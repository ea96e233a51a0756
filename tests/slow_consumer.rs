//! A subscriber that never reads: its outbox fills, the destination's policy applies to it
//! alone, and fast subscribers get every message in order.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use broker::config::{DestinationRule, SlowConsumerPolicy};
use common::*;
use stomp_codec::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MESSAGES: usize = 1000;
const BATCH: usize = 20;

/// A raw TCP client with a tiny receive buffer that subscribes and then never reads again.
async fn never_reading_subscriber(server: &broker::Server, dest: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.tcp_addr().unwrap()).await.unwrap();
    let hello = format!(
        "CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0SUBSCRIBE\nid:slow\ndestination:{dest}\nreceipt:r\n\n\0"
    );
    s.write_all(hello.as_bytes()).await.unwrap();
    // Read just CONNECTED and the RECEIPT, so the subscription is surely live.
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&got).contains("receipt-id:r") {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    s
}

async fn flood_with_fast_readers(server: &broker::Server, dest: &'static str) {
    // Three fast subscribers reading concurrently, counting what they get, in order.
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut readers = Vec::new();
    for count in &counts {
        let mut c = ws_session(server).await;
        c.subscribe("sub-0", dest, &[]).await.unwrap();
        let count = Arc::clone(count);
        readers.push(tokio::spawn(async move {
            for n in 0..MESSAGES {
                let m = c.expect(Command::Message, WAIT).await.unwrap();
                assert!(m.body.starts_with(format!("{n}:").as_bytes()), "in order");
                count.store(n + 1, Ordering::Release);
            }
        }));
    }
    let mut p = tcp_session(server).await;
    let pad = "x".repeat(4000);
    for batch in 0..MESSAGES / BATCH {
        for i in 0..BATCH {
            p.publish(dest, &format!("{}:{pad}", batch * BATCH + i))
                .await
                .unwrap();
        }
        let sent = (batch + 1) * BATCH;
        eventually("fast subscribers keep up", || {
            let counts = counts.clone();
            async move { counts.iter().all(|c| c.load(Ordering::Acquire) >= sent) }
        })
        .await;
    }
    for r in readers {
        r.await.unwrap();
    }
}

#[tokio::test]
async fn drop_policy_drops_for_the_slow_one_only() {
    let server = start(|c| {
        c.outbox.max_messages = 64;
        c.outbox.max_bytes = 256 * 1024;
    })
    .await;
    let slow = never_reading_subscriber(&server, "/topic/flood").await;
    flood_with_fast_readers(&server, "/topic/flood").await;
    let dropped = metric(
        &server,
        "stompbox_messages_dropped_total{reason=\"slow_consumer\"}",
    )
    .await;
    assert!(
        dropped > 0.0,
        "the never-reading subscriber had messages dropped"
    );
    assert!(dropped < MESSAGES as f64, "and only its own: {dropped}");
    assert_eq!(
        metric(
            &server,
            "stompbox_disconnects_total{reason=\"slow_consumer\"}"
        )
        .await,
        0.0
    );
    drop(slow);
}

#[tokio::test]
async fn disconnect_policy_disconnects_the_slow_one() {
    let server = start(|c| {
        c.outbox.max_messages = 64;
        c.outbox.max_bytes = 256 * 1024;
        c.destinations.push(DestinationRule {
            pattern: "/topic/strict".into(),
            slow_consumer: Some(SlowConsumerPolicy::Disconnect),
            ..DestinationRule::default()
        });
    })
    .await;
    let mut slow = never_reading_subscriber(&server, "/topic/strict").await;
    flood_with_fast_readers(&server, "/topic/strict").await;
    eventually("the slow consumer is disconnected", || async {
        metric(
            &server,
            "stompbox_disconnects_total{reason=\"slow_consumer\"}",
        )
        .await
            == 1.0
    })
    .await;
    // Its socket is closed: reading drains what was buffered, then ends.
    let mut sink = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(WAIT, async {
        loop {
            match slow.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "connection closed by the broker");
}

//! Queue-mode destinations: competing consumers, holding, redelivery.

mod common;

use common::*;
use stomp_codec::{Command, Frame};

#[tokio::test]
async fn competing_consumers_share_round_robin() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/work.*", None))).await;
    let mut a = ws_session(&server).await;
    let mut b = tcp_session(&server).await;
    a.subscribe("a", "/queue/work.x", &[]).await.unwrap();
    b.subscribe("b", "/queue/work.x", &[]).await.unwrap();
    let mut p = ws_session(&server).await;
    for i in 0..10 {
        p.publish("/queue/work.x", &i.to_string()).await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(
            String::from_utf8_lossy(&a.expect(Command::Message, WAIT).await.unwrap().body)
                .into_owned(),
        );
        seen.push(
            String::from_utf8_lossy(&b.expect(Command::Message, WAIT).await.unwrap().body)
                .into_owned(),
        );
    }
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(
        seen,
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>(),
        "each message exactly once"
    );
}

#[tokio::test]
async fn messages_wait_for_a_consumer_up_to_the_bound() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/held", Some(3)))).await;
    let mut p = ws_session(&server).await;
    for i in 0..5 {
        p.publish("/queue/held", &i.to_string()).await.unwrap();
    }
    p.send(&Frame::new(Command::Disconnect).header("receipt", "d"))
        .await
        .unwrap();
    p.receipt("d").await.unwrap();
    assert_eq!(
        metric(
            &server,
            "stompbox_messages_dropped_total{reason=\"queue_full\"}"
        )
        .await,
        2.0
    );
    let mut c = ws_session(&server).await;
    c.subscribe("s", "/queue/held", &[]).await.unwrap();
    for want in ["2", "3", "4"] {
        let m = c.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&m.body),
            want,
            "oldest dropped first"
        );
    }
}

#[tokio::test]
async fn nack_and_disconnect_redeliver_to_another_consumer() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/re", None))).await;
    let mut a = ws_session(&server).await;
    a.subscribe(
        "a",
        "/queue/re",
        &[("ack", "client-individual"), ("prefetch-count", "1")],
    )
    .await
    .unwrap();
    let mut p = ws_session(&server).await;
    p.publish("/queue/re", "first").await.unwrap();
    p.publish("/queue/re", "second").await.unwrap();
    let m = a.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"first");
    assert!(m.headers.get("redelivered").is_none());

    // NACK: the message comes back, marked redelivered.
    a.send(&Frame::new(Command::Nack).header("id", m.headers.get_str("ack").unwrap().to_owned()))
        .await
        .unwrap();
    let m = a.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"first");
    assert_eq!(m.headers.get_str("redelivered"), Some("true"));

    // A second consumer joins; the first disconnects without acking: its message moves over.
    let mut b = tcp_session(&server).await;
    b.subscribe(
        "b",
        "/queue/re",
        &[("ack", "client-individual"), ("prefetch-count", "5")],
    )
    .await
    .unwrap();
    let m = b.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"second");
    a.abort().await;
    let m = b.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"first");
    assert_eq!(m.headers.get_str("redelivered"), Some("true"));
}

#[tokio::test]
async fn wildcards_are_refused_on_queue_destinations() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/**", None))).await;
    let mut c = ws_session(&server).await;
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "1")
            .header("destination", "/queue/*"),
    )
    .await
    .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("invalid subscription"));
}

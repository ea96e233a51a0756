//! History, resume and retained values, through real sockets: resume with and without a gap,
//! a resume while a publisher keeps publishing (no gap and no duplicate at the seam), eviction
//! by count and by age, the retained value, and the figures in /metrics.

mod common;

use broker::client::Client;
use broker::config::DestinationRule;
use common::*;
use stomp_codec::{Command, Frame};

fn keep(pattern: &str, history: usize, ttl_ms: u64, retain_last: bool) -> DestinationRule {
    DestinationRule {
        pattern: pattern.into(),
        history,
        history_ttl_ms: ttl_ms,
        retain_last,
        ..DestinationRule::default()
    }
}

async fn subscribe_from(c: &mut Client, destination: &str, from: Option<&str>) {
    let mut f = Frame::new(Command::Subscribe)
        .header("id", "0")
        .header("destination", destination.to_owned())
        .header("receipt", "sub");
    if let Some(from) = from {
        f = f.header("resume-from", from.to_owned());
    }
    c.send(&f).await.unwrap();
    c.receipt("sub").await.unwrap();
}

/// The next MESSAGE's body and headers of interest.
async fn next(c: &mut Client) -> (String, String, Option<String>, Option<String>) {
    let f = c.expect(Command::Message, WAIT).await.unwrap();
    (
        String::from_utf8_lossy(&f.body).into_owned(),
        f.headers.get_str("message-id").unwrap().to_owned(),
        f.headers.get_str("resume-gap").map(str::to_owned),
        f.headers.get_str("retained").map(str::to_owned),
    )
}

/// Waits until the broker has handled everything this client sent (a receipt).
trait Fence {
    async fn receipt_of_send(&mut self);
}

impl Fence for Client {
    async fn receipt_of_send(&mut self) {
        self.send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/fence")
                .header("receipt", "f"),
        )
        .await
        .unwrap();
        self.receipt("f").await.unwrap();
    }
}

#[tokio::test]
async fn resume_after_a_disconnect_misses_nothing() {
    let server = start(|c| c.destinations = vec![keep("/topic/feed/*", 10, 0, false)]).await;
    let mut publisher = ws_session(&server).await;
    let mut reader = ws_session(&server).await;
    subscribe_from(&mut reader, "/topic/feed/a", None).await;
    for i in 0..5 {
        publisher
            .publish("/topic/feed/a", &format!("m{i}"))
            .await
            .unwrap();
    }
    let mut last = String::new();
    for i in 0..5 {
        let (body, id, gap, _) = next(&mut reader).await;
        assert_eq!(body, format!("m{i}"));
        assert_eq!(gap, None);
        last = id;
    }
    // The reader goes away; three messages are published meanwhile.
    reader.abort().await;
    for i in 5..8 {
        publisher
            .publish("/topic/feed/a", &format!("m{i}"))
            .await
            .unwrap();
    }
    let mut back = ws_session(&server).await;
    subscribe_from(&mut back, "/topic/feed/a", Some(&last)).await;
    for i in 5..8 {
        let (body, id, gap, _) = next(&mut back).await;
        assert_eq!((body, gap), (format!("m{i}"), None));
        assert!(id > last, "ids increase: {id} after {last}");
        last = id;
    }
    // Then the live stream.
    publisher.publish("/topic/feed/a", "live").await.unwrap();
    let (body, newest, _, _) = next(&mut back).await;
    assert_eq!(body, "live");
    assert_quiet(&mut back).await;

    // Up to date: nothing replayed, the next live message plain.
    let mut current = ws_session(&server).await;
    subscribe_from(&mut current, "/topic/feed/a", Some(&newest)).await;
    publisher.publish("/topic/feed/a", "after").await.unwrap();
    let (body, _, gap, _) = next(&mut current).await;
    assert_eq!((body.as_str(), gap), ("after", None));
}

#[tokio::test]
async fn a_lost_position_is_reported_as_a_gap() {
    let server = start(|c| {
        c.destinations = vec![keep("/topic/small", 3, 0, false)];
    })
    .await;
    let mut publisher = ws_session(&server).await;
    let mut first = ws_session(&server).await;
    subscribe_from(&mut first, "/topic/small", None).await;
    for i in 0..10 {
        publisher
            .publish("/topic/small", &format!("m{i}"))
            .await
            .unwrap();
    }
    publisher.receipt_of_send().await;
    let (_, oldest_id, _, _) = next(&mut first).await;
    // m0 is long gone: the three kept come back, the first marked.
    let mut late = ws_session(&server).await;
    subscribe_from(&mut late, "/topic/small", Some(&oldest_id)).await;
    let got: Vec<_> = [
        next(&mut late).await,
        next(&mut late).await,
        next(&mut late).await,
    ]
    .into_iter()
    .map(|(b, _, g, _)| (b, g))
    .collect();
    assert_eq!(
        got,
        vec![
            ("m7".to_owned(), Some("true".to_owned())),
            ("m8".to_owned(), None),
            ("m9".to_owned(), None)
        ]
    );
    // Where nothing is kept, any resume is a gap: the first live message says so.
    let mut nowhere = ws_session(&server).await;
    subscribe_from(&mut nowhere, "/topic/plain", Some("123-4")).await;
    publisher.publish("/topic/plain", "x").await.unwrap();
    publisher.publish("/topic/plain", "y").await.unwrap();
    assert_eq!(next(&mut nowhere).await.2.as_deref(), Some("true"));
    assert_eq!(next(&mut nowhere).await.2, None);
    // A resume on a wildcard is refused clearly.
    let mut wild = ws_session(&server).await;
    wild.send(
        &Frame::new(Command::Subscribe)
            .header("id", "w")
            .header("destination", "/topic/*")
            .header("resume-from", "1-0"),
    )
    .await
    .unwrap();
    let e = wild.expect(Command::Error, WAIT).await.unwrap();
    assert!(String::from_utf8_lossy(&e.body).contains("exact destination"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_while_a_publisher_publishes_has_no_seam() {
    let server = start(|c| c.destinations = vec![keep("/topic/fast", 100_000, 0, false)]).await;
    let mut first = ws_session(&server).await;
    subscribe_from(&mut first, "/topic/fast", None).await;
    let mut publisher = ws_session(&server).await;
    const N: usize = 3000;
    let publishing = tokio::spawn(async move {
        for i in 0..N {
            publisher
                .publish("/topic/fast", &i.to_string())
                .await
                .unwrap();
        }
        publisher
    });
    // Take the id of message 500 from the first reader, then resume from it while the
    // publisher is still going.
    let mut from = String::new();
    for i in 0..=500 {
        let (body, id, _, _) = next(&mut first).await;
        assert_eq!(body, i.to_string());
        from = id;
    }
    let mut resumed = ws_session(&server).await;
    subscribe_from(&mut resumed, "/topic/fast", Some(&from)).await;
    for i in 501..N {
        let (body, _, gap, _) = next(&mut resumed).await;
        assert_eq!(
            body,
            i.to_string(),
            "contiguous across the replay/live seam"
        );
        assert_eq!(gap, None);
    }
    let _publisher = publishing.await.unwrap();
    assert_quiet(&mut resumed).await;
}

#[tokio::test]
async fn retained_value_and_age_limit() {
    let server = start(|c| {
        c.destinations = vec![
            keep("/topic/price/*", 0, 0, true),
            keep("/topic/recent", 10, 200, false),
        ];
    })
    .await;
    let mut publisher = ws_session(&server).await;
    publisher.publish("/topic/price/eur", "1.07").await.unwrap();
    publisher.publish("/topic/price/eur", "1.08").await.unwrap();
    publisher.receipt_of_send().await;
    let mut fresh = ws_session(&server).await;
    subscribe_from(&mut fresh, "/topic/price/eur", None).await;
    let (body, _, _, retained) = next(&mut fresh).await;
    assert_eq!((body.as_str(), retained.as_deref()), ("1.08", Some("true")));
    publisher.publish("/topic/price/eur", "1.09").await.unwrap();
    let (body, _, _, retained) = next(&mut fresh).await;
    assert_eq!((body.as_str(), retained), ("1.09", None));

    // Messages older than history_ttl_ms go.
    for i in 0..5 {
        publisher
            .publish("/topic/recent", &format!("old{i}"))
            .await
            .unwrap();
    }
    publisher.receipt_of_send().await;
    assert_eq!(
        server
            .broker()
            .histories
            .get("/topic/recent")
            .unwrap()
            .len(),
        5
    );
    eventually("messages past history_ttl_ms are dropped", || async {
        server
            .broker()
            .histories
            .get("/topic/recent")
            .is_some_and(|h| h.is_empty())
    })
    .await;
    publisher.publish("/topic/recent", "tick").await.unwrap();
    publisher.receipt_of_send().await;
    assert_eq!(
        server
            .broker()
            .histories
            .get("/topic/recent")
            .unwrap()
            .len(),
        1
    );
    let (_, text) = http_get(server.http_addr(), "/metrics", "").await;
    assert!(text.contains("stompbox_history_messages 2"), "{text}");
    assert!(text.contains("stompbox_history_evicted_total"), "{text}");
}

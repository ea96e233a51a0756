//! Hostile clients that try to make the broker hold memory: against the real `stompbox`
//! binary with its default memory limits, each attack must be refused or bounded, the
//! broker's VmRSS must stay under a stated bound, and a well-behaved canary's round trip must
//! stay under a second throughout (a deadline, not a performance target).
//!
//! The attacks (issue 16, items 2, 3 and 4): transactions of ACKs with large headers; one-byte
//! bodies sent in large WebSocket messages to a queue; deliveries read and never
//! acknowledged; one message of hundreds of resuming SUBSCRIBEs from a client that never
//! reads; thousands of queue names used once; histories filled and abandoned.

mod common;

use std::time::{Duration, Instant};

use broker::client::Client;
use bytes::{BufMut, Bytes, BytesMut};
use common::WAIT;
use common::process::{BrokerProcess, Canary, http_get, ws_session_at};
use stomp_codec::{Command, Frame};

const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

fn config(http: u16, tcp: u16) -> String {
    format!(
        r#"
[server]
websocket = "127.0.0.1:{http}"
tcp = "127.0.0.1:{tcp}"

[broker]
idle_expiry_ms = 3000
# A quarter of the defaults, so the attacks below reach them quickly.
max_pending_total_bytes = 16777216
history_max_bytes = 16777216

[[destinations]]
pattern = "/queue/**"
mode = "queue"

[[destinations]]
pattern = "/topic/hist/**"
history = 1000

[[destinations]]
pattern = "/topic/room/*"
presence = true
"#
    )
}

fn frame_bytes(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    stomp_codec::encode_frame(frame, stomp_codec::Version::V1_2, &mut out);
    out
}

fn send_frame(destination: &str, body: impl Into<Bytes>) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination.to_owned())
        .with_body(body.into())
}

/// Waits for `/metrics` to show `series` satisfying `cond`, within 15 s (idle expiry takes
/// `idle_expiry_ms` and a sweep).
async fn metric_until(b: &BrokerProcess, series: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    loop {
        if let Some((200, text)) = http_get(b.http, "/metrics").await {
            last = text
                .lines()
                .find(|l| l.starts_with(series))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(v) = last
                && cond(v)
            {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{series} never satisfied the condition (last {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Item 2: ACKs inside transactions, each with ~56 KB of headers: a transaction holds a
/// compact copy of what an ACK needs, not the frame (4 × 1,000 of them pinned 325 MiB when
/// the whole frames were held). Transactional SENDs are charged at their real size against
/// `max_transaction_bytes` (2 MiB for all of a connection's transactions).
async fn transactions_of_fat_frames(url: &str) {
    let mut c = ws_session_at(url).await;
    for tx in 0..4 {
        c.send(&Frame::new(Command::Begin).header("transaction", format!("t{tx}")))
            .await
            .unwrap();
    }
    let fat = "h".repeat(8_000);
    for i in 0..4_000 {
        let mut ack = Frame::new(Command::Ack)
            .header("id", format!("{i}-{i}"))
            .header("transaction", format!("t{}", i % 4));
        for h in 0..7 {
            ack = ack.header(format!("x-{h}"), fat.clone());
        }
        c.send(&ack).await.expect("ACK sent");
        if i % 250 == 249 {
            fence(&mut c, &format!("ack-{i}")).await;
        }
    }
    // SENDs of 60 KB in a transaction: refused once they hold 2 MiB.
    let mut t = ws_session_at(url).await;
    t.send(&Frame::new(Command::Begin).header("transaction", "big"))
        .await
        .unwrap();
    for i in 0..100 {
        let f = send_frame("/topic/tx", vec![b's'; 60_000])
            .header("transaction", "big")
            .header("receipt", format!("s{i}"));
        t.send(&f).await.expect("SEND sent");
        let f = t.frame(WAIT).await.expect("an answer to each SEND");
        if f.command == Command::Receipt {
            continue;
        }
        assert_eq!(
            f.headers.get_str("message"),
            Some("transaction limit exceeded"),
            "{f:?}"
        );
        let detail = String::from_utf8_lossy(&f.body).into_owned();
        assert!(detail.contains("max_transaction_bytes"), "{detail}");
        assert!(
            (25..40).contains(&i),
            "2 MiB holds about 34 such SENDs; refused at {i}"
        );
        return;
    }
    panic!("100 transactional SENDs of 60 KB were all held");
}

/// Sends a harmless frame with a receipt and waits for it: the broker has handled everything
/// sent before.
async fn fence(c: &mut Client, id: &str) {
    c.send(
        &Frame::new(Command::Unsubscribe)
            .header("id", "no-such-subscription")
            .header("receipt", id.to_owned()),
    )
    .await
    .expect("fence sent");
    c.receipt(id).await.expect("fence receipt");
}

/// Item 2: one-byte bodies, each sent in its own 63 KB WebSocket message (the rest EOLs), to
/// a queue nobody consumes: each is held at its own size, not its message's.
async fn tiny_bodies_in_large_messages(url: &str) {
    let mut c = ws_session_at(url).await;
    for i in 0..2_200 {
        let mut msg = frame_bytes(&send_frame("/queue/pinned", "x"));
        msg.put_bytes(b'\n', 63_000);
        c.send_raw(&msg, false).await.expect("sent");
        if i % 200 == 199 {
            fence(&mut c, &format!("pin-{i}")).await;
        }
    }
    fence(&mut c, "pin-end").await;
}

/// Item 2: a consumer reads 60 KB messages from a queue and never acknowledges: it holds at
/// most `max_unacked_bytes` (2 MiB); the rest waits in the queue, within its share.
async fn never_acknowledging_consumer(url: &str) {
    let mut consumer = ws_session_at(url).await;
    consumer
        .subscribe("q", "/queue/unacked", &[("ack", "client-individual")])
        .await
        .unwrap();
    let mut producer = ws_session_at(url).await;
    let body = Bytes::from(vec![b'u'; 60_000]);
    for i in 0..2_250 {
        producer
            .send(&send_frame("/queue/unacked", body.clone()))
            .await
            .unwrap();
        if i % 250 == 249 {
            fence(&mut producer, &format!("u-{i}")).await;
        }
    }
    fence(&mut producer, "u-end").await;
    // It gets what fits its unsettled bytes, then nothing more until it acknowledges.
    let mut got = 0;
    while let Ok(f) = consumer.frame(Duration::from_millis(500)).await {
        if f.command == Command::Message {
            got += 1;
        }
    }
    assert!(
        (25..=40).contains(&got),
        "a consumer that never acks holds about 2 MiB of 60 KB messages, got {got}"
    );
}

/// Item 3: one WebSocket message of 300 SUBSCRIBEs, each resuming a 1,000-message history,
/// from a client that never reads: it holds its outbox, not 300 replays.
async fn resuming_subscribes_never_read(url: &str) -> Client {
    let mut publisher = ws_session_at(url).await;
    let body = "r".repeat(1_000);
    for i in 0..1_000 {
        publisher
            .send(&send_frame("/topic/hist/replayed", body.clone()))
            .await
            .unwrap();
        if i % 250 == 249 {
            fence(&mut publisher, &format!("h-{i}")).await;
        }
    }
    let mut c = ws_session_at(url).await;
    let mut all = BytesMut::new();
    for i in 0..300 {
        all.extend_from_slice(&frame_bytes(
            &Frame::new(Command::Subscribe)
                .header("id", format!("s{i}"))
                .header("destination", "/topic/hist/replayed")
                .header("resume-from", "0-0"),
        ));
    }
    for i in 0..50 {
        all.extend_from_slice(&frame_bytes(
            &Frame::new(Command::Subscribe)
                .header("id", format!("p{i}"))
                .header("destination", format!("/topic/room/{i}/presence")),
        ));
    }
    c.send_raw(&all, true).await.unwrap();
    // It never reads; the caller keeps it open while memory is measured.
    c
}

/// The value of `series` in /metrics now.
async fn metric_now(b: &BrokerProcess, series: &str) -> f64 {
    metric_until(b, series, |_| true).await
}

/// Item 4: 20,000 one-byte SENDs to distinct queue names: every queue is charged (its
/// overhead and its message) to the queues' budget, which evicts the least recently used;
/// once idle, the rest are forgotten.
async fn thousands_of_queue_names(b: &BrokerProcess) {
    let mut c = ws_session_at(&b.ws_url()).await;
    for i in 0..20_000 {
        c.send(&send_frame(&format!("/queue/name/{i}"), "x"))
            .await
            .unwrap();
        if i % 2_000 == 1_999 {
            fence(&mut c, &format!("n-{i}")).await;
        }
    }
    fence(&mut c, "n-end").await;
    let bytes = metric_now(b, "stompbox_queued_bytes").await;
    assert!(bytes <= 16_777_216.0, "queues hold {bytes} bytes");
    drop(c);
    // Idle for idle_expiry_ms (3 s), the queues go, with their messages.
    metric_until(b, "stompbox_queue_destinations", |n| n < 10.0).await;
    let expired = metric_now(b, "stompbox_messages_dropped_total{reason=\"expired\"}").await;
    let evicted = metric_now(b, "stompbox_messages_dropped_total{reason=\"evicted\"}").await;
    assert!(
        expired + evicted >= 19_990.0,
        "the messages went with their queues: {expired} expired, {evicted} evicted"
    );
}

/// Item 4: clients fill the histories' budget with many destinations and leave; a destination
/// in use afterwards still keeps its whole history (the abandoned ones are evicted first).
async fn abandoned_histories(b: &BrokerProcess) {
    let url = &b.ws_url();
    let body = Bytes::from(vec![b'a'; 30_000]);
    let mut refused = 0;
    for conn in 0..4 {
        let mut c = ws_session_at(url).await;
        // 400 × 30 KB is more than a connection's share (50 % of 16 MiB).
        for i in 0..400 {
            let f = send_frame(&format!("/topic/hist/abandoned/{conn}/{i}"), body.clone())
                .header("receipt", format!("a{i}"));
            if c.send(&f).await.is_err() {
                break;
            }
            match c.frame(WAIT).await {
                Ok(f) if f.command == Command::Receipt => {}
                Ok(f) if f.command == Command::Error => {
                    assert_eq!(
                        f.headers.get_str("message"),
                        Some("storage share exceeded"),
                        "{f:?}"
                    );
                    refused += 1;
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(
        refused >= 2,
        "a connection holds at most its share of the histories ({refused} refused)"
    );
    let held = metric_until(b, "stompbox_history_bytes", |_| true).await;
    assert!(held <= 16_777_216.0, "histories hold {held} bytes");
    let mut c = ws_session_at(url).await;
    let first = {
        let mut watcher = ws_session_at(url).await;
        watcher
            .subscribe("w", "/topic/hist/legit", &[])
            .await
            .unwrap();
        c.publish("/topic/hist/legit", "legit 0").await.unwrap();
        let m = watcher.expect(Command::Message, WAIT).await.unwrap();
        m.headers
            .get_str("message-id")
            .expect("message-id")
            .to_owned()
    };
    for i in 1..200 {
        c.send(&send_frame("/topic/hist/legit", format!("legit {i}")))
            .await
            .unwrap();
    }
    fence(&mut c, "legit-end").await;
    let mut resumer = ws_session_at(url).await;
    resumer
        .subscribe("r", "/topic/hist/legit", &[("resume-from", first.as_str())])
        .await
        .unwrap();
    for i in 1..200 {
        let m = resumer.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(m.body, Bytes::from(format!("legit {i}")));
        assert_eq!(m.headers.get_str("resume-gap"), None, "no gap at {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_make_the_broker_hold_memory() {
    let mut b = BrokerProcess::start(BIN, "hostile-memory", config).await;
    let url = b.ws_url();
    let mut canary = Canary::new(&url).await;
    canary.round_trip("at start").await;
    let base = b.sample_rss("at start");
    // What the budgets allow at once here: queues 16 MiB, histories 16 MiB, and a few
    // connections' 12 MiB, plus what the allocator keeps; each attack took 130 to 600 MiB
    // before it was bounded.
    let bound_kib = base + 120 * 1024;
    let check = |b: &mut BrokerProcess, when: &str| {
        let kib = b.sample_rss(when);
        assert!(
            kib < bound_kib,
            "VmRSS {kib} KiB {when}, over the bound of {bound_kib} KiB"
        );
    };

    transactions_of_fat_frames(&url).await;
    check(&mut b, "after transactions of fat frames");
    canary.round_trip("after transactions of fat frames").await;

    tiny_bodies_in_large_messages(&url).await;
    check(&mut b, "after tiny bodies in large messages");
    canary
        .round_trip("after tiny bodies in large messages")
        .await;

    never_acknowledging_consumer(&url).await;
    check(&mut b, "after a consumer that never acks");
    canary.round_trip("after a consumer that never acks").await;

    let reader = resuming_subscribes_never_read(&url).await;
    check(&mut b, "with 300 resuming SUBSCRIBEs never read");
    canary
        .round_trip("with 300 resuming SUBSCRIBEs never read")
        .await;
    drop(reader);

    thousands_of_queue_names(&b).await;
    check(&mut b, "after 20,000 queue names");
    canary.round_trip("after 20,000 queue names").await;

    abandoned_histories(&b).await;
    check(&mut b, "after abandoned histories");
    canary.round_trip("after abandoned histories").await;
}

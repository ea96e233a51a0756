//! BEGIN, COMMIT, ABORT: SEND, ACK and NACK inside a transaction take effect at COMMIT only.

mod common;

use common::*;
use stomp_codec::{Command, Frame};

fn send_in(tx: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", "/topic/tx")
        .header("transaction", tx.to_owned())
        .with_body(body.to_owned())
}

#[tokio::test]
async fn commit_delivers_abort_and_disconnect_discard() {
    let server = start(|_| {}).await;
    let mut sub = ws_session(&server).await;
    sub.subscribe("s", "/topic/tx", &[]).await.unwrap();
    let mut p = ws_session(&server).await;

    p.send(&Frame::new(Command::Begin).header("transaction", "t1"))
        .await
        .unwrap();
    p.send(&send_in("t1", "a")).await.unwrap();
    p.send(&send_in("t1", "b")).await.unwrap();
    assert_quiet(&mut p).await;
    assert_quiet(&mut sub).await; // nothing delivered yet
    p.send(
        &Frame::new(Command::Commit)
            .header("transaction", "t1")
            .header("receipt", "c"),
    )
    .await
    .unwrap();
    p.receipt("c").await.unwrap();
    for want in ["a", "b"] {
        let m = sub.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&m.body), want);
        assert!(m.headers.get("transaction").is_none());
    }

    p.send(&Frame::new(Command::Begin).header("transaction", "t2"))
        .await
        .unwrap();
    p.send(&send_in("t2", "never")).await.unwrap();
    p.send(
        &Frame::new(Command::Abort)
            .header("transaction", "t2")
            .header("receipt", "ab"),
    )
    .await
    .unwrap();
    p.receipt("ab").await.unwrap();

    p.send(&Frame::new(Command::Begin).header("transaction", "t3"))
        .await
        .unwrap();
    p.send(&send_in("t3", "never either")).await.unwrap();
    p.abort().await;

    let mut q = ws_session(&server).await;
    q.publish("/topic/tx", "after").await.unwrap();
    let m = sub.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(
        &m.body[..],
        b"after",
        "aborted and abandoned transactions delivered nothing"
    );
}

#[tokio::test]
async fn acks_in_a_transaction_apply_at_commit() {
    let server = start(|c| c.destinations.push(queue_rule("/queue/txq", None))).await;
    let mut c = ws_session(&server).await;
    c.subscribe(
        "s",
        "/queue/txq",
        &[("ack", "client-individual"), ("prefetch-count", "1")],
    )
    .await
    .unwrap();
    let mut p = tcp_session(&server).await;
    p.publish("/queue/txq", "1").await.unwrap();
    p.publish("/queue/txq", "2").await.unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    let id = m.headers.get_str("ack").unwrap().to_owned();
    c.send(&Frame::new(Command::Begin).header("transaction", "t"))
        .await
        .unwrap();
    c.send(
        &Frame::new(Command::Ack)
            .header("id", id)
            .header("transaction", "t"),
    )
    .await
    .unwrap();
    assert_quiet(&mut c).await; // the ACK is held: no second message yet
    c.send(&Frame::new(Command::Commit).header("transaction", "t"))
        .await
        .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"2");
}

#[tokio::test]
async fn transaction_limits() {
    let server = start(|c| {
        c.stomp.max_transactions = 1;
        c.stomp.max_transaction_frames = 2;
    })
    .await;
    let mut c = ws_session(&server).await;
    c.send(&Frame::new(Command::Begin).header("transaction", "a"))
        .await
        .unwrap();
    c.send(&Frame::new(Command::Begin).header("transaction", "b"))
        .await
        .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(
        f.headers.get_str("message"),
        Some("transaction limit exceeded")
    );

    let mut c = ws_session(&server).await;
    c.send(&Frame::new(Command::Begin).header("transaction", "a"))
        .await
        .unwrap();
    for i in 0..3 {
        c.send(&send_in("a", &i.to_string())).await.unwrap();
    }
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert!(String::from_utf8_lossy(&f.body).contains("2 frames"));
}

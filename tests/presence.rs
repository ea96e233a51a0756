//! Presence: join and leave events on the companion destination, a snapshot for each new
//! companion subscriber, counts per user and for anonymous sessions, and the companion
//! destination closed to clients' SENDs.

mod common;

use broker::auth::hash_password;
use broker::client::Client;
use broker::config::{DestinationRule, StaticUser};
use common::*;
use serde_json::Value;
use stomp_codec::{Command, Frame};

async fn event(c: &mut Client) -> Value {
    let f = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("content-type"), Some("application/json"));
    serde_json::from_slice(&f.body).unwrap()
}

#[tokio::test]
async fn joins_leaves_and_snapshots() {
    let server = start(|c| {
        c.destinations = vec![DestinationRule {
            pattern: "/topic/room/*".into(),
            presence: true,
            ..DestinationRule::default()
        }];
        c.auth.users = ["alice", "bob"]
            .map(|n| StaticUser {
                name: n.into(),
                password_hash: hash_password("pw").unwrap(),
                roles: vec![],
            })
            .to_vec();
    })
    .await;
    let login = |name: &'static str| {
        let server = &server;
        async move {
            let mut c = ws(server).await;
            c.connect(&[("login", name), ("passcode", "pw")])
                .await
                .unwrap();
            c
        }
    };
    let mut watcher = ws_session(&server).await;
    watcher
        .subscribe("w", "/topic/room/1/presence", &[])
        .await
        .unwrap();
    let snap = event(&mut watcher).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["members"], serde_json::json!([]));

    let mut alice1 = login("alice").await;
    alice1.subscribe("r", "/topic/room/1", &[]).await.unwrap();
    let e = event(&mut watcher).await;
    assert_eq!(
        (
            e["type"].as_str(),
            e["user"].as_str(),
            e["sessions"].as_u64()
        ),
        (Some("join"), Some("alice"), Some(1))
    );
    let mut alice2 = login("alice").await;
    alice2.subscribe("r", "/topic/room/1", &[]).await.unwrap();
    assert_eq!(event(&mut watcher).await["sessions"], 2);
    let mut anon = ws_session(&server).await;
    anon.subscribe("r", "/topic/room/1", &[]).await.unwrap();
    let e = event(&mut watcher).await;
    assert_eq!(
        (e["user"].clone(), e["anonymous"].as_u64()),
        (Value::Null, Some(1))
    );
    // Another room's presence is its own.
    let mut bob = login("bob").await;
    bob.subscribe("r", "/topic/room/2", &[]).await.unwrap();

    alice1.abort().await;
    let e = event(&mut watcher).await;
    assert_eq!(
        (e["type"].as_str(), e["sessions"].as_u64()),
        (Some("leave"), Some(1))
    );

    // A late watcher starts from a snapshot.
    let mut late = ws_session(&server).await;
    late.subscribe("w", "/topic/room/1/presence", &[])
        .await
        .unwrap();
    let snap = event(&mut late).await;
    assert_eq!(
        snap["members"],
        serde_json::json!([{"user": "alice", "sessions": 1}])
    );
    assert_eq!(snap["anonymous"], 1);
    // UNSUBSCRIBE leaves too.
    anon.send(&Frame::new(Command::Unsubscribe).header("id", "r"))
        .await
        .unwrap();
    for w in [&mut watcher, &mut late] {
        let e = event(w).await;
        assert_eq!(
            (e["type"].as_str(), e["anonymous"].as_u64()),
            (Some("leave"), Some(0))
        );
    }
    // Clients cannot write presence.
    let mut forger = ws_session(&server).await;
    forger
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/room/1/presence")
                .with_body("{\"type\":\"join\",\"user\":\"mallory\"}"),
        )
        .await
        .unwrap();
    let err = forger.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(err.headers.get_str("message"), Some("access denied"));
    assert_quiet(&mut watcher).await;
    drop((alice2, bob));
}

//! A destination reached through an application route, a route's reply or a presence
//! companion passes the same access rules as a client's own SEND or SUBSCRIBE to it
//! (issue 16, item 8): through real sockets, with the refused client told why and a
//! subscriber of the protected destination receiving nothing.

mod common;

use std::time::Duration;

use broker::client::Client;
use broker::config::{AppRoute, DestinationRule};
use common::*;
use stomp_codec::{Command, Frame};

/// Nothing arrives on `c` for a while: waits for a fence's receipt instead of sleeping.
async fn nothing_for(c: &mut Client, fence: &mut Client) {
    fence
        .send(
            &Frame::new(Command::Unsubscribe)
                .header("id", "none")
                .header("receipt", "fence"),
        )
        .await
        .unwrap();
    fence.receipt("fence").await.unwrap();
    match c.frame(Duration::from_millis(300)).await {
        Err(_) => {}
        Ok(f) => panic!("expected nothing, got {f:?}"),
    }
}

#[tokio::test]
async fn route_replies_pass_the_senders_access_rules() {
    let server = start(|c| {
        c.auth.users = vec![user("pricer", &["pricer"]), user("bob", &[])];
        c.access.rules = vec![
            rule("/topic/prices/**", Some(&["*"]), Some(&["role:pricer"])),
            rule("/app/**", None, Some(&["authenticated"])),
        ];
        // A send_to template filled from the sender's captures, and a route with no
        // template whose default reply goes to /topic + its path.
        c.app.routes.push(AppRoute {
            destination: "/app/relay/{topic}/{name}".into(),
            on: Default::default(),
            send_to: Some("/topic/{topic}/{name}".into()),
            forward: None,
        });
    })
    .await;
    let mut watcher = login(&server, "bob").await;
    watcher
        .subscribe("p", "/topic/prices/eur", &[])
        .await
        .unwrap();
    let mut bob = login(&server, "bob").await;
    bob.subscribe("e", "/user/queue/errors", &[]).await.unwrap();
    // Bob may not SEND to /topic/prices/eur himself, nor through the route.
    bob.publish("/app/relay/prices/eur", "forged")
        .await
        .unwrap();
    let err = bob.expect(Command::Message, WAIT).await.expect("an error");
    let text = String::from_utf8_lossy(&err.body).into_owned();
    assert!(text.contains("/topic/prices/eur"), "{text}");
    assert_eq!(
        err.headers.get_str("destination"),
        Some("/user/queue/errors")
    );
    let mut fence = login(&server, "bob").await;
    nothing_for(&mut watcher, &mut fence).await;
    // The pricer may, and its message arrives.
    let mut pricer = login(&server, "pricer").await;
    pricer
        .publish("/app/relay/prices/eur", "1.08")
        .await
        .unwrap();
    let m = watcher.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.body, bytes::Bytes::from("1.08"));
    // Other destinations are open to bob through the route as directly.
    watcher.subscribe("n", "/topic/news/x", &[]).await.unwrap();
    bob.publish("/app/relay/news/x", "hello").await.unwrap();
    let m = watcher.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.body, bytes::Bytes::from("hello"));
}

#[tokio::test]
async fn route_replies_cannot_write_presence_companions() {
    let server = start(|c| {
        c.destinations.push(DestinationRule {
            pattern: "/topic/room/*".into(),
            presence: true,
            ..DestinationRule::default()
        });
        c.app.routes.push(AppRoute {
            destination: "/app/relay/{room}/{kind}".into(),
            on: Default::default(),
            send_to: Some("/topic/room/{room}/{kind}".into()),
            forward: None,
        });
    })
    .await;
    let mut watcher = ws_session(&server).await;
    watcher
        .subscribe("p", "/topic/room/1/presence", &[])
        .await
        .unwrap();
    let snapshot = watcher.expect(Command::Message, WAIT).await.unwrap();
    assert!(String::from_utf8_lossy(&snapshot.body).contains("snapshot"));
    let mut c = ws_session(&server).await;
    c.subscribe("e", "/user/queue/errors", &[]).await.unwrap();
    c.publish("/app/relay/1/presence", r#"{"type":"join","user":"ghost"}"#)
        .await
        .unwrap();
    let err = c.expect(Command::Message, WAIT).await.expect("an error");
    assert!(
        String::from_utf8_lossy(&err.body).contains("/topic/room/1/presence"),
        "{err:?}"
    );
    let mut fence = ws_session(&server).await;
    nothing_for(&mut watcher, &mut fence).await;
}

#[tokio::test]
async fn a_presence_companion_is_as_private_as_its_destination() {
    let server = start(|c| {
        c.auth.users = vec![user("member", &["member"]), user("bob", &[])];
        c.destinations.push(DestinationRule {
            pattern: "/topic/team/*".into(),
            presence: true,
            ..DestinationRule::default()
        });
        // The rule names the rooms, not what is below them: the companion's own name
        // matches no rule (and the default allows).
        c.access.rules = vec![rule("/topic/team/*", Some(&["role:member"]), None)];
    })
    .await;
    let mut member = login(&server, "member").await;
    member
        .subscribe("p", "/topic/team/red/presence", &[])
        .await
        .expect("a member sees who is in the room");
    member.expect(Command::Message, WAIT).await.unwrap();
    let mut bob = login(&server, "bob").await;
    bob.send(
        &Frame::new(Command::Subscribe)
            .header("id", "0")
            .header("destination", "/topic/team/red/presence"),
    )
    .await
    .unwrap();
    let e = bob.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(e.headers.get_str("message"), Some("access denied"), "{e:?}");
    // Nor through a wildcard subscription: the room's events are checked per delivery.
    let mut wild = login(&server, "bob").await;
    wild.subscribe("w", "/topic/**", &[]).await.unwrap();
    let mut other = login(&server, "member").await;
    other.subscribe("r", "/topic/team/red", &[]).await.unwrap();
    // A join event on the companion reached the member, not bob's wildcard.
    let join = member.expect(Command::Message, WAIT).await.unwrap();
    assert!(String::from_utf8_lossy(&join.body).contains("join"));
    let mut fence = login(&server, "bob").await;
    nothing_for(&mut wild, &mut fence).await;
}

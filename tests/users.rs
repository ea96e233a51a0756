//! User destinations: every session of a user, isolation between users, anonymous replies.

mod common;

use broker::auth::hash_password;
use broker::config::StaticUser;
use common::*;
use stomp_codec::{Command, Frame};

async fn server_with_users() -> broker::Server {
    let users: Vec<StaticUser> = ["alice", "bob"]
        .iter()
        .map(|n| StaticUser {
            name: (*n).into(),
            password_hash: hash_password(&format!("{n}-pw")).unwrap(),
            roles: vec![],
        })
        .collect();
    start(move |c| c.auth.users = users).await
}

async fn login(server: &broker::Server, user: &str) -> broker::client::Client {
    let mut c = ws(server).await;
    let pw = format!("{user}-pw");
    let f = c
        .connect(&[("login", user), ("passcode", &pw)])
        .await
        .unwrap();
    assert_eq!(f.headers.get_str("user-name"), Some(user));
    c
}

#[tokio::test]
async fn every_session_of_the_user_and_nobody_else() {
    let server = server_with_users().await;
    let mut alice1 = login(&server, "alice").await;
    let mut alice2 = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    for c in [&mut alice1, &mut alice2, &mut bob] {
        c.subscribe("n", "/user/queue/notes", &[]).await.unwrap();
    }
    // Anyone may send to a user by name.
    bob.send(
        &Frame::new(Command::Send)
            .header("destination", "/user/alice/queue/notes")
            .with_body("for alice"),
    )
    .await
    .unwrap();
    for a in [&mut alice1, &mut alice2] {
        let m = a.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(m.headers.get_str("destination"), Some("/user/queue/notes"));
        assert_eq!(&m.body[..], b"for alice");
    }
    // Bob got nothing: a receipt fence proves it.
    bob.send(
        &Frame::new(Command::Send)
            .header("destination", "/user/bob/queue/other")
            .header("receipt", "f"),
    )
    .await
    .unwrap();
    let f = bob.frame(WAIT).await.unwrap();
    assert_eq!(
        f.command,
        Command::Receipt,
        "bob must not see alice's message: {f:?}"
    );
}

#[tokio::test]
async fn another_users_destinations_cannot_be_subscribed() {
    let server = server_with_users().await;
    let mut bob = login(&server, "bob").await;
    bob.send(
        &Frame::new(Command::Subscribe)
            .header("id", "spy")
            .header("destination", "/user/alice/queue/notes"),
    )
    .await
    .unwrap();
    let f = bob.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("access denied"));
    bob.closed(WAIT).await.unwrap();
}

#[tokio::test]
async fn anonymous_sessions_cannot_be_addressed_from_outside() {
    let server = start(|_| {}).await;
    let mut anon = ws(&server).await;
    let session = anon
        .connect(&[])
        .await
        .unwrap()
        .headers
        .get_str("session")
        .unwrap()
        .to_owned();
    anon.subscribe("x", "/user/queue/x", &[]).await.unwrap();
    // A SEND to /user/{session id}/... means a *user* of that name, not the anonymous session.
    let mut other = ws_session(&server).await;
    other
        .send(
            &Frame::new(Command::Send)
                .header("destination", format!("/user/{session}/queue/x"))
                .with_body("guess"),
        )
        .await
        .unwrap();
    let out = server
        .broker()
        .publish_to_user(
            &session,
            "/queue/x",
            &stomp_codec::Headers::new(),
            bytes::Bytes::from_static(b"guess"),
        )
        .unwrap();
    assert_eq!(out.delivered, 0);
    assert_quiet(&mut anon).await;
}

//! Application destinations: Rust handlers (the chat example), TOML routes, HTTP backends,
//! subscribe-mapped replies, and the unhandled policy.

mod common;

#[path = "../examples/chat/main.rs"]
#[allow(dead_code)]
mod chat;

use std::time::Duration;

use broker::config::{AppRoute, RouteOn, Unhandled};
use broker::{Config, Server};
use common::*;
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

fn json_body(f: &Frame) -> Value {
    serde_json::from_slice(&f.body).unwrap()
}

async fn chat_server() -> Server {
    let mut config = Config::default();
    config.server.websocket = "127.0.0.1:0".parse().unwrap();
    Server::start_with(config, chat::router()).await.unwrap()
}

#[tokio::test]
async fn rust_handlers_reply_to_topic_to_sender_and_to_subscriber() {
    let server = chat_server().await;
    let mut alice = ws_session(&server).await;
    let mut bob = ws_session(&server).await;
    for c in [&mut alice, &mut bob] {
        c.subscribe("room", "/topic/chat/lobby", &[]).await.unwrap();
        c.subscribe("welcome", "/user/queue/welcome", &[])
            .await
            .unwrap();
    }

    // Join: a notice for the room, a welcome for the sender only.
    alice
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/app/join/lobby")
                .with_body(r#"{"nick":"alice"}"#),
        )
        .await
        .unwrap();
    let mut got_notice = false;
    let mut got_welcome = false;
    for _ in 0..2 {
        let m = alice.expect(Command::Message, WAIT).await.unwrap();
        match m.headers.get_str("subscription") {
            Some("room") => {
                assert_eq!(json_body(&m)["type"], "join");
                got_notice = true;
            }
            Some("welcome") => {
                assert_eq!(
                    m.headers.get_str("destination"),
                    Some("/user/queue/welcome")
                );
                assert_eq!(json_body(&m)["text"], "Welcome to #lobby, alice!");
                got_welcome = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_notice && got_welcome);
    let m = bob.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(
        m.headers.get_str("subscription"),
        Some("room"),
        "bob sees the notice, not the welcome"
    );

    // Chat: the handler's return value goes to /topic/chat/{room}.
    bob.send(
        &Frame::new(Command::Send)
            .header("destination", "/app/chat/lobby")
            .with_body(r#"{"nick":"bob","text":"hi all"}"#),
    )
    .await
    .unwrap();
    for c in [&mut alice, &mut bob] {
        let m = c.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(m.headers.get_str("destination"), Some("/topic/chat/lobby"));
        assert_eq!(m.headers.get_str("content-type"), Some("application/json"));
        let v = json_body(&m);
        assert_eq!(
            (v["nick"].as_str(), v["text"].as_str(), v["room"].as_str()),
            (Some("bob"), Some("hi all"), Some("lobby"))
        );
    }

    // A handler error reaches the sender's /user/queue/errors, and the connection stays up.
    bob.subscribe("errors", "/user/queue/errors", &[])
        .await
        .unwrap();
    bob.send(
        &Frame::new(Command::Send)
            .header("destination", "/app/chat/lobby")
            .with_body("not json"),
    )
    .await
    .unwrap();
    let m = bob.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("subscription"), Some("errors"));
    assert_eq!(m.headers.get_str("message"), Some("a chat message is JSON"));

    // @SubscribeMapping: answered once, to the subscriber, with its subscription id.
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("id", "rooms-1")
                .header("destination", "/app/rooms"),
        )
        .await
        .unwrap();
    let m = alice.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("subscription"), Some("rooms-1"));
    assert_eq!(m.headers.get_str("destination"), Some("/app/rooms"));
    assert_eq!(json_body(&m), json!(["lobby", "rust", "random"]));
}

#[tokio::test]
async fn toml_send_to_routes_substitute_captures() {
    let server = start(|c| {
        c.app.routes.push(AppRoute {
            destination: "/app/echo/{room}/{kind}".into(),
            on: RouteOn::Send,
            send_to: Some("/topic/rooms/{room}.{kind}".into()),
            forward: None,
        })
    })
    .await;
    let mut c = ws_session(&server).await;
    c.subscribe("s", "/topic/rooms/a.b", &[]).await.unwrap();
    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/app/echo/a/b")
            .header("x", "1")
            .with_body("hello"),
    )
    .await
    .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("destination"), Some("/topic/rooms/a.b"));
    assert_eq!(m.headers.get_str("x"), Some("1"));
    assert_eq!(&m.body[..], b"hello");
}

#[tokio::test]
async fn http_backends_success_slow_and_failing() {
    let (url, seen) = spawn_backend(|req| {
        let order = req["captures"]["id"].as_str().unwrap_or("").to_owned();
        match order.as_str() {
            "slow" => BackendAnswer { status: 200, body: "{}".into(), delay: Duration::from_secs(3) },
            "fail" => BackendAnswer { status: 500, body: "boom".into(), delay: Duration::ZERO },
            _ => BackendAnswer {
                status: 200,
                body: json!({"messages": [
                    {"destination": format!("/topic/orders/{order}"), "body": format!("accepted {}", req["body"].as_str().unwrap_or(""))},
                    {"to_sender": true, "destination": "/queue/receipts", "body": "thanks", "headers": {"x-order": order}},
                ]})
                .to_string(),
                delay: Duration::ZERO,
            },
        }
    })
    .await;
    let server = start(move |c| {
        c.app.backend_timeout_ms = 500;
        c.app.routes.push(AppRoute {
            destination: "/app/orders/{id}".into(),
            on: RouteOn::Send,
            send_to: None,
            forward: Some(url),
        })
    })
    .await;
    let mut c = ws_session(&server).await;
    c.subscribe("orders", "/topic/orders/42", &[])
        .await
        .unwrap();
    c.subscribe("mine", "/user/queue/receipts", &[])
        .await
        .unwrap();
    c.subscribe("errors", "/user/queue/errors", &[])
        .await
        .unwrap();
    c.subscribe("live", "/topic/live", &[]).await.unwrap();

    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/app/orders/42")
            .with_body("2 pizzas"),
    )
    .await
    .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(
        (m.headers.get_str("subscription"), &m.body[..]),
        (Some("orders"), &b"accepted 2 pizzas"[..])
    );
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("subscription"), Some("mine"));
    assert_eq!(m.headers.get_str("x-order"), Some("42"));
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req["destination"], "/app/orders/42");
    assert_eq!(req["path"], "/orders/42");
    assert_eq!(req["kind"], "send");
    assert!(req["session"].as_str().is_some_and(|s| !s.is_empty()));

    // A slow backend times out; meanwhile the connection keeps working.
    c.send(&Frame::new(Command::Send).header("destination", "/app/orders/slow"))
        .await
        .unwrap();
    let mut other = tcp_session(&server).await;
    other.publish("/topic/live", "not blocked").await.unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(
        (m.headers.get_str("subscription"), &m.body[..]),
        (Some("live"), &b"not blocked"[..])
    );
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("subscription"), Some("errors"));
    assert!(
        m.headers
            .get_str("message")
            .unwrap()
            .contains("did not answer within 500 ms")
    );

    // A failing backend: the status reaches the sender, not the details.
    c.send(&Frame::new(Command::Send).header("destination", "/app/orders/fail"))
        .await
        .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("subscription"), Some("errors"));
    assert_eq!(
        m.headers.get_str("message"),
        Some("the backend answered 500")
    );
}

#[tokio::test]
async fn subscribe_routes_can_forward_to_a_backend() {
    let (url, _) = spawn_backend(|req| BackendAnswer {
        status: 200,
        body: json!({"messages": [{"reply": true, "body": format!("snapshot for {}", req["user"].as_str().unwrap_or("anonymous")), "content_type": "text/plain"}]}).to_string(),
        delay: Duration::ZERO,
    })
    .await;
    let server = start(move |c| {
        c.app.routes.push(AppRoute {
            destination: "/app/snapshot".into(),
            on: RouteOn::Subscribe,
            send_to: None,
            forward: Some(url),
        })
    })
    .await;
    let mut c = ws_session(&server).await;
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "snap")
            .header("destination", "/app/snapshot"),
    )
    .await
    .unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("subscription"), Some("snap"));
    assert_eq!(&m.body[..], b"snapshot for anonymous");
}

#[tokio::test]
async fn unhandled_app_destinations_drop_by_default_or_error_by_config() {
    let server = start(|_| {}).await;
    let mut c = ws_session(&server).await;
    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/app/nothing")
            .header("receipt", "r"),
    )
    .await
    .unwrap();
    c.receipt("r").await.unwrap();
    assert_eq!(metric(&server, "stompbox_app_unhandled_total").await, 1.0);

    let server = start(|c| c.app.unhandled = Unhandled::Error).await;
    let mut c = ws_session(&server).await;
    c.send(&Frame::new(Command::Send).header("destination", "/app/nothing"))
        .await
        .unwrap();
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("no handler"));
}

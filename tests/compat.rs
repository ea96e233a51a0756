//! Drop-in defaults (issue 17): what stock STOMP clients send must work with the default
//! configuration. Credentials with no credential store, the subprotocol a client offering
//! every version gets, heart-beats as short as the client asks, and a text-mode client
//! sending a binary body.

mod common;

use std::process::{Command as Process, Stdio};

use broker::auth::hash_password;
use broker::client::{Client, Event};
use broker::config::{StaticUser, UnverifiableCredentials};
use common::*;
use futures_util::{SinkExt, StreamExt};
use stomp_codec::{Command, Frame};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

/// CONNECT with credentials, as stomp.js's guide and RabbitMQ-era clients send it.
async fn connect_as(c: &mut Client, login: &str, passcode: &str) -> Frame {
    c.send(
        &Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", "localhost")
            .header("login", login.to_owned())
            .header("passcode", passcode.to_owned()),
    )
    .await
    .unwrap();
    c.frame(WAIT).await.unwrap()
}

#[tokio::test]
async fn credentials_without_a_store_are_not_checked_and_the_session_is_anonymous() {
    let server = start(|_| {}).await;
    // guest/guest over WebSocket, any login over TCP: both connect, neither becomes a user.
    let mut c = ws(&server).await;
    let f = connect_as(&mut c, "guest", "guest").await;
    assert_eq!(f.command, Command::Connected, "{f:?}");
    assert!(f.headers.get("user-name").is_none(), "{f:?}");
    let mut c = tcp(&server).await;
    let f = connect_as(&mut c, "admin", "not-checked").await;
    assert_eq!(f.command, Command::Connected, "{f:?}");
    assert!(
        f.headers.get("user-name").is_none(),
        "an unverified login is no identity: {f:?}"
    );
    // A bearer token nothing can verify is ignored the same way.
    let mut c = ws(&server).await;
    let f = c
        .connect(&[("Authorization", "Bearer not.a.token")])
        .await
        .unwrap();
    assert!(f.headers.get("user-name").is_none(), "{f:?}");
    // The session works: a round trip through a subscription.
    c.subscribe("s", "/topic/compat.anon", &[]).await.unwrap();
    c.publish("/topic/compat.anon", "hi").await.unwrap();
    let m = c.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"hi");
}

#[tokio::test]
async fn strict_refusal_stays_available_and_a_store_still_refuses_unknown_credentials() {
    // `unverifiable_credentials = "refuse"`: today's behaviour, for those who want it.
    let strict = start(|c| c.auth.unverifiable_credentials = UnverifiableCredentials::Refuse).await;
    let mut c = ws(&strict).await;
    let f = connect_as(&mut c, "guest", "guest").await;
    assert_eq!(f.command, Command::Error);
    assert_eq!(f.headers.get_str("message"), Some("authentication failed"));
    c.closed(WAIT).await.unwrap();
    // Without credentials it is still an ordinary anonymous broker.
    ws_session(&strict).await;

    // With a credential store, credentials are checked whatever the setting says.
    let hash = hash_password("right").unwrap();
    let store = start(move |c| {
        c.auth.users = vec![StaticUser {
            name: "carol".into(),
            password_hash: hash,
            roles: vec![],
        }];
    })
    .await;
    let mut c = ws(&store).await;
    let f = connect_as(&mut c, "guest", "guest").await;
    assert_eq!(f.command, Command::Error);
    assert_eq!(f.headers.get_str("message"), Some("authentication failed"));
    let mut c = ws(&store).await;
    let f = connect_as(&mut c, "carol", "right").await;
    assert_eq!(f.headers.get_str("user-name"), Some("carol"), "{f:?}");
}

/// Runs the binary with `config` until it logs that it listens; returns its log.
async fn startup_log(name: &str, config: &str) -> String {
    let dir = std::env::temp_dir();
    let n = std::process::id();
    let cfg = dir.join(format!("stompbox-compat-{name}-{n}.toml"));
    let log = dir.join(format!("stompbox-compat-{name}-{n}.log"));
    std::fs::write(&cfg, config).unwrap();
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Process::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the binary listens", || async {
        read().contains("stompbox listening")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = read();
    let _ = std::fs::remove_file(&cfg);
    let _ = std::fs::remove_file(&log);
    text
}

#[tokio::test]
async fn start_up_says_once_that_credentials_are_not_checked() {
    let port = free_port();
    let open = startup_log(
        "open",
        &format!("[server]\nwebsocket = \"127.0.0.1:{port}\"\n"),
    )
    .await;
    let says = "CONNECT credentials are not checked";
    assert_eq!(open.matches(says).count(), 1, "{open}");
    assert!(open.contains("INFO"), "{open}");

    let port = free_port();
    let strict = startup_log(
        "strict",
        &format!(
            "[server]\nwebsocket = \"127.0.0.1:{port}\"\n\n[auth]\nunverifiable_credentials = \"refuse\"\n"
        ),
    )
    .await;
    assert!(!strict.contains(says), "{strict}");
}

#[tokio::test]
async fn the_highest_offered_stomp_version_is_answered() {
    let server = start(|_| {}).await;
    let url = ws_url(&server);
    // webstomp-client's offer, in its order.
    let mut c = Client::websocket(&url, &["v10.stomp", "v11.stomp", "v12.stomp"])
        .await
        .unwrap();
    assert_eq!(c.subprotocol.as_deref(), Some("v12.stomp"));
    let f = c
        .connect(&[("accept-version", "1.0,1.1,1.2")])
        .await
        .unwrap();
    assert_eq!(f.headers.get_str("version"), Some("1.2"));
    // stomp.js 2.x's default offer.
    let c = Client::websocket(&url, &["v10.stomp", "v11.stomp"])
        .await
        .unwrap();
    assert_eq!(c.subprotocol.as_deref(), Some("v11.stomp"));
}

#[tokio::test]
async fn a_client_asking_one_second_heart_beats_gets_them_by_default() {
    let server = start(|_| {}).await;
    let mut c = ws(&server).await;
    let f = c.connect(&[("heart-beat", "1000,1000")]).await.unwrap();
    // The floor is answered; STOMP's max() then gives the client its own 1 s.
    assert_eq!(f.headers.get_str("heart-beat"), Some("1000,1000"));
    // Idle but for heart-beats both ways: the client sends one for each it receives (well
    // within its 1 s promise), and the broker's arrive at 1 s, far sooner than the 10 s the
    // old preference imposed. Bounded: WAIT per heart-beat.
    for _ in 0..3 {
        assert_eq!(c.next_event(WAIT).await.unwrap(), Event::Heartbeat);
        c.send_raw(b"\n", true).await.unwrap();
    }
    c.subscribe("s", "/topic/compat.hb", &[]).await.unwrap();

    // stomp.js's default 10000,10000 keeps its 10 s: the same floor is answered.
    let mut c = ws(&server).await;
    let f = c.connect(&[("heart-beat", "10000,10000")]).await.unwrap();
    assert_eq!(f.headers.get_str("heart-beat"), Some("1000,1000"));
}

#[tokio::test]
async fn a_client_promising_one_second_heart_beats_is_dropped_soon_after_falling_silent() {
    let server = start(|_| {}).await;
    let mut c = tcp(&server).await;
    c.connect(&[("heart-beat", "1000,0")]).await.unwrap();
    // Interval plus a tolerance capped at the interval: about 2 s, within WAIT (the old
    // 10 s preference plus 5 s grace was not).
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("heart-beat timeout"));
    c.closed(WAIT).await.unwrap();
}

/// A masked client WebSocket frame (RFC 6455 §5.2) with any payload, valid UTF-8 or not.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[tokio::test]
async fn a_binary_body_in_a_text_message_gets_error_then_close_1007() {
    let server = start(|_| {}).await;
    let mut req = ws_url(&server).into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        "CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\0",
    ))
    .await
    .unwrap();
    let connected = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(connected.to_text().unwrap().starts_with("CONNECTED\n"));

    // What stomp.py's WebSocket transport sends for a binary body: a text message whose
    // payload is not UTF-8. tungstenite would refuse to build one, so it is written raw.
    let mut frame = b"SEND\ndestination:/topic/compat.bin\n\n".to_vec();
    frame.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80]);
    frame.push(0);
    let raw = client_frame(0x1, &frame);
    ws.get_mut().write_all(&raw).await.unwrap();

    let mut error = None;
    let mut close = None;
    // Bounded: the ERROR, then the close, each within WAIT.
    for _ in 0..2 {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => error = Some(t.to_string()),
            Some(Ok(Message::Close(c))) => {
                close = c;
                break;
            }
            other => panic!("expected ERROR then close, got {other:?}"),
        }
    }
    let error = error.expect("an ERROR frame before the close");
    assert!(error.starts_with("ERROR\n"), "{error}");
    assert!(
        error.contains("message:invalid UTF-8 in text message"),
        "{error}"
    );
    assert!(error.contains("binary WebSocket messages"), "{error}");
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1007);
    assert!(close.reason.contains("binary"), "{:?}", close.reason);
}

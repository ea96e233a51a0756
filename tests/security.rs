//! Authorization rules, the origin check, per-address connection limits, the inbound rate
//! limit, and the idle and frame deadlines: each through real sockets, each with a client that
//! is not the offender still served.

mod common;

use std::time::Duration;

use broker::client::Client;
use broker::config::RatePolicy;
use bytes::Bytes;
use common::*;
use stomp_codec::{Command, Frame, Headers};

/// A metric read in-process: an HTTP request would need a connection slot, which some tests
/// here deliberately use up.
fn metric_now(server: &broker::Server, series: &str) -> f64 {
    server
        .broker()
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Sends `frame` and expects ERROR "access denied" then the close.
async fn expect_denied(c: &mut Client, frame: Frame) {
    c.send(&frame).await.unwrap();
    let e = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(e.headers.get_str("message"), Some("access denied"), "{e:?}");
    c.closed(WAIT).await.expect("closed after ERROR");
}

fn send(destination: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination.to_owned())
        .with_body("x")
}

fn subscribe(destination: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .header("id", "0")
        .header("destination", destination.to_owned())
}

async fn secured() -> broker::Server {
    start(|c| {
        c.auth.users = vec![user("alice", &["pricer"]), user("bob", &[])];
        c.access.rules = vec![
            rule("/topic/prices/**", None, Some(&["role:pricer"])),
            rule("/topic/private/{owner}/**", Some(&["user:{owner}"]), None),
            rule(
                "/topic/admin/**",
                Some(&["role:admin"]),
                Some(&["role:admin"]),
            ),
            rule("/app/**", None, Some(&["authenticated"])),
        ];
    })
    .await
}

#[tokio::test]
async fn publishing_needs_the_rules_role_and_refusals_are_counted() {
    let server = secured().await;
    let mut reader = ws_session(&server).await;
    reader
        .subscribe("p", "/topic/prices/eur", &[])
        .await
        .unwrap();

    let mut bob = login(&server, "bob").await;
    expect_denied(&mut bob, send("/topic/prices/eur")).await;
    let denied = metric_now(&server, "stompbox_access_denied_total{action=\"publish\"}");
    assert_eq!(denied, 1.0);
    let closes = metric_now(
        &server,
        "stompbox_disconnects_total{reason=\"access_denied\"}",
    );
    assert_eq!(closes, 1.0);

    let mut alice = login(&server, "alice").await;
    alice.publish("/topic/prices/eur", "1.08").await.unwrap();
    let m = reader.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"1.08");
    // Bob's refused SEND never reached the reader.
    assert_quiet(&mut reader).await;
    // Anonymous sessions may not send to /app at all.
    let mut anon = ws_session(&server).await;
    expect_denied(&mut anon, send("/app/orders/1")).await;
}

#[tokio::test]
async fn private_destinations_by_capture_and_wildcards_never_leak() {
    let server = secured().await;
    let mut bob = login(&server, "bob").await;
    expect_denied(&mut bob, subscribe("/topic/private/alice/inbox")).await;
    let denied = metric_now(
        &server,
        "stompbox_access_denied_total{action=\"subscribe\"}",
    );
    assert_eq!(denied, 1.0);

    let mut alice = login(&server, "alice").await;
    alice
        .subscribe("in", "/topic/private/alice/inbox", &[])
        .await
        .unwrap();
    // A wildcard is allowed as written, but carries only what its subscriber may see.
    let mut bob = login(&server, "bob").await;
    bob.subscribe("all", "/topic/**", &[]).await.unwrap();
    let api = server.broker();
    for d in [
        "/topic/admin/secret",
        "/topic/private/alice/inbox",
        "/topic/news",
    ] {
        api.publish(d, &Headers::new(), Bytes::from(d.to_owned()))
            .unwrap();
    }
    // Published in this order by one publisher, so news arriving first means the two before
    // it were withheld.
    let m = bob.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.headers.get_str("destination"), Some("/topic/news"));
    let m = alice.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&m.body[..], b"/topic/private/alice/inbox");
    // Subscribing straight to the admin space is refused.
    expect_denied(&mut bob, subscribe("/topic/admin/**")).await;
}

#[tokio::test]
async fn deny_by_default_allows_only_what_a_rule_lists() {
    let server = start(|c| {
        c.access.default = broker::config::AccessDefault::Deny;
        c.access.rules = vec![rule("/topic/public/*", Some(&["*"]), Some(&["anonymous"]))];
    })
    .await;
    let mut c = ws_session(&server).await;
    c.subscribe("0", "/topic/public/a", &[]).await.unwrap();
    c.publish("/topic/public/a", "hi").await.unwrap();
    c.expect(Command::Message, WAIT).await.unwrap();
    expect_denied(&mut c, send("/topic/other")).await;
}

async fn upgrade_status(server: &broker::Server, origin: Option<&str>) -> u16 {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let headers = format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v12.stomp\r\n{origin}"
    );
    http_get(server.http_addr(), "/ws", &headers).await.0
}

#[tokio::test]
async fn browser_origins_are_checked_against_the_allow_list() {
    let server = start(|c| {
        c.websocket.allowed_origins = vec!["https://*.example.com".into()];
    })
    .await;
    let own = format!("http://{}", server.http_addr());
    assert_eq!(upgrade_status(&server, Some(&own)).await, 101);
    assert_eq!(
        upgrade_status(&server, Some("https://app.example.com")).await,
        101
    );
    assert_eq!(
        upgrade_status(&server, Some("https://evil.example.net")).await,
        403
    );
    assert_eq!(upgrade_status(&server, Some("null")).await, 403);
    assert_eq!(upgrade_status(&server, None).await, 101);
    let refused = metric_now(
        &server,
        "stompbox_connections_refused_total{reason=\"origin\"}",
    );
    assert_eq!(refused, 2.0);

    let strict = start(|c| c.websocket.allow_missing_origin = false).await;
    assert_eq!(upgrade_status(&strict, None).await, 403);
}

#[tokio::test]
async fn connections_from_one_address_are_limited() {
    let server = start(|c| c.server.max_connections_per_ip = 2).await;
    let mut a = ws_session(&server).await;
    let b = ws_session(&server).await;
    // The third is closed before a byte is read.
    assert!(Client::websocket(&ws_url(&server), &[]).await.is_err());
    let refused = metric_now(
        &server,
        "stompbox_connections_refused_total{reason=\"max_connections_per_ip\"}",
    );
    assert!(refused >= 1.0);
    // Metrics and health checks need a slot too; with one freed, everything works again.
    b.abort().await;
    eventually("a slot is free again", || async {
        match Client::websocket(&ws_url(&server), &[]).await {
            Ok(mut c) => c.connect(&[]).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    a.subscribe("0", "/topic/t", &[]).await.unwrap();
}

#[tokio::test]
async fn over_the_rate_with_policy_error_gets_error() {
    let server = start(|c| {
        c.rate_limit.messages_per_sec = 10;
        c.rate_limit.burst_secs = 1;
        c.rate_limit.policy = RatePolicy::Error;
    })
    .await;
    let mut bystander = ws_session(&server).await;
    bystander.subscribe("0", "/topic/calm", &[]).await.unwrap();
    let mut flooder = ws_session(&server).await;
    for _ in 0..30 {
        // The broker may close before all are written.
        if flooder.publish("/topic/flood", "x").await.is_err() {
            break;
        }
    }
    let e = flooder.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(e.headers.get_str("message"), Some("rate limit exceeded"));
    let n = metric_now(
        &server,
        "stompbox_disconnects_total{reason=\"rate_limited\"}",
    );
    assert_eq!(n, 1.0);
    bystander
        .publish("/topic/calm", "still here")
        .await
        .unwrap();
    bystander.expect(Command::Message, WAIT).await.unwrap();
}

#[tokio::test]
async fn over_the_rate_with_policy_delay_is_slowed_not_dropped() {
    const RATE: u32 = 100;
    const SENT: u32 = 300;
    let server = start(|c| {
        c.rate_limit.messages_per_sec = RATE;
        c.rate_limit.burst_secs = 1;
        c.rate_limit.policy = RatePolicy::Delay;
    })
    .await;
    let mut sub = ws_session(&server).await;
    sub.subscribe("0", "/topic/steady", &[]).await.unwrap();
    let mut publisher = ws_session(&server).await;
    let started = std::time::Instant::now();
    for i in 0..SENT {
        let mut f = Frame::new(Command::Send)
            .header("destination", "/topic/steady")
            .with_body(i.to_string());
        if i == SENT - 1 {
            f = f.header("receipt", "done");
        }
        publisher.send(&f).await.unwrap();
    }
    publisher.receipt("done").await.unwrap();
    // A burst of RATE, then RATE per second: the last frames cannot be read before
    // (SENT - RATE) / RATE seconds have passed. A lower bound, so a slow machine cannot fail it.
    let floor = Duration::from_secs_f64(f64::from(SENT - RATE) / f64::from(RATE) * 0.9);
    assert!(started.elapsed() >= floor, "{:?}", started.elapsed());
    for i in 0..SENT {
        let m = sub.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(m.body, Bytes::from(i.to_string()));
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let server = start(|c| c.server.idle_timeout_ms = 300).await;
    let mut c = ws(&server).await;
    c.connect(&[("heart-beat", "0,0")]).await.unwrap();
    let e = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(e.headers.get_str("message"), Some("idle timeout"));
    let n = metric_now(
        &server,
        "stompbox_disconnects_total{reason=\"idle_timeout\"}",
    );
    assert_eq!(n, 1.0);
}

#[tokio::test]
async fn a_frame_trickled_without_end_is_cut_off() {
    let server = start(|c| c.stomp.frame_timeout_ms = 300).await;
    let mut c = ws_session(&server).await;
    c.send_raw(
        b"SEND\ndestination:/topic/x\ncontent-length:100\n\nabc",
        true,
    )
    .await
    .unwrap();
    let e = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(e.headers.get_str("message"), Some("frame timeout"));
    let n = metric_now(
        &server,
        "stompbox_disconnects_total{reason=\"frame_timeout\"}",
    );
    assert_eq!(n, 1.0);
}

#[tokio::test]
async fn a_jwt_claim_opens_a_tenants_destinations() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    const SECRET: &str = "claims-test-secret-0123456789abcdef";
    let secret = std::env::temp_dir().join(format!("stompbox-claims-{}", std::process::id()));
    std::fs::write(&secret, SECRET).unwrap();
    let server = start(|c| {
        c.auth.jwt = Some(broker::config::JwtConfig {
            algorithm: "HS256".into(),
            secret_env: None,
            secret_file: Some(secret.clone()),
            public_key_file: None,
            user_claim: "sub".into(),
            roles_claim: None,
            issuer: None,
            audience: None,
            leeway_secs: 0,
        });
        c.access.rules = vec![rule(
            "/topic/acme/**",
            Some(&["claim:tenant=acme"]),
            Some(&["claim:tenant=acme"]),
        )];
    })
    .await;
    let token = |sub: &str, tenant: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": sub, "tenant": tenant, "exp": exp}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let server = &server;
    let connect = |t: String| async move {
        let mut c = ws(server).await;
        c.connect(&[("passcode", &t)]).await.expect("CONNECTED");
        c
    };
    let mut insider = connect(token("ann", "acme")).await;
    insider
        .subscribe("0", "/topic/acme/news", &[])
        .await
        .unwrap();
    insider.publish("/topic/acme/news", "hello").await.unwrap();
    insider.expect(Command::Message, WAIT).await.unwrap();
    let mut outsider = connect(token("oz", "globex")).await;
    expect_denied(&mut outsider, subscribe("/topic/acme/news")).await;
    let _ = std::fs::remove_file(&secret);
}

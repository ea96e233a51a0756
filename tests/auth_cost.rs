//! What password verification may cost, on in-process brokers: credentials no configured
//! store could accept cost no hash, a CONNECT waiting for a verification slot ends at its
//! CONNECT deadline without being verified, and a client that half-closes after pipelining
//! frames is not taken for one that hung up. (The floods are in `hostile_auth.rs`.)

mod common;

use bytes::Bytes;
use common::WAIT;
use stomp_codec::{Command, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Verifications run: `stompbox_auth_password_checks_total`.
const CHECKS: &str = "stompbox_auth_password_checks_total";

/// The value of `series` in the in-process broker's /metrics, `None` if it is not exported.
async fn exported(server: &broker::Server, series: &str) -> Option<f64> {
    let (_, text) = common::http_get(server.http_addr(), "/metrics", "").await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// CONNECTs with `headers` over TCP and expects "authentication failed".
async fn refused_in_process(server: &broker::Server, headers: &[(&str, &str)]) {
    let mut c = common::tcp(server).await;
    let mut f = Frame::new(Command::Connect).header("accept-version", "1.2");
    for (n, v) in headers {
        f = f.header(n.to_string(), v.to_string());
    }
    c.send(&f).await.unwrap();
    let e = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(
        e.headers.get_str("message"),
        Some("authentication failed"),
        "{headers:?}"
    );
}

/// A CONNECT that no configured credential store could accept costs no hash: a login and
/// passcode when only JWTs are configured, a token when only static users are.
#[tokio::test]
async fn credentials_no_configured_store_could_accept_cost_no_hash() {
    let secret = std::env::temp_dir().join(format!("stompbox-cost-{}", std::process::id()));
    std::fs::write(&secret, "cost-test-secret-0123456789abcdef0123456789").unwrap();
    let jwt_only = common::start(|c| {
        c.auth.allow_anonymous = false;
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
    })
    .await;
    for i in 0..5 {
        let login = format!("someone-{i}");
        refused_in_process(&jwt_only, &[("login", &login), ("passcode", "guess")]).await;
    }
    let checks = CHECKS;
    assert_eq!(exported(&jwt_only, checks).await, Some(0.0), "JWT only");

    let hash = broker::auth::hash_password("right").unwrap();
    let users_only = common::start(|c| {
        c.auth.allow_anonymous = false;
        c.auth.users = vec![broker::config::StaticUser {
            name: "carol".into(),
            password_hash: hash,
            roles: vec![],
        }];
    })
    .await;
    refused_in_process(&users_only, &[("Authorization", "Bearer eyJhbGciOi.x.y")]).await;
    refused_in_process(&users_only, &[("passcode", "eyJhbGciOi.x.y")]).await;
    refused_in_process(&users_only, &[]).await;
    assert_eq!(exported(&users_only, checks).await, Some(0.0), "users only");
    // While a login the users could accept is verified, known or not (timing defence).
    refused_in_process(&users_only, &[("login", "nobody"), ("passcode", "x")]).await;
    assert_eq!(exported(&users_only, checks).await, Some(1.0));
}

/// A CONNECT waiting for a verification slot ends at its CONNECT deadline, and the wait costs
/// no hash: one slot, held by a costly verification (64 MiB, t = 24: well over a second),
/// while a second CONNECT's 600 ms deadline passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_waiting_for_verification_ends_at_its_deadline() {
    // A valid PHC string whose hash nobody's password produces: its cost is what matters.
    let costly = "$argon2id$v=19$m=65536,t=24,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let server = common::start(|c| {
        c.server.connect_timeout_ms = 600;
        c.auth.verify.concurrency = 1;
        c.auth.users = vec![broker::config::StaticUser {
            name: "slow".into(),
            password_hash: costly.into(),
            roles: vec![],
        }];
    })
    .await;
    let login = |passcode: &'static str| {
        Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("login", "slow")
            .header("passcode", passcode)
    };
    let mut first = common::tcp(&server).await;
    first.send(&login("one")).await.unwrap();
    let checks = CHECKS;
    common::eventually("the first verification runs", || async {
        exported(&server, checks).await == Some(1.0)
    })
    .await;
    let mut second = common::tcp(&server).await;
    second.send(&login("two")).await.unwrap();
    let e = second.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(e.headers.get_str("message"), Some("connect timeout"));
    second.closed(WAIT).await.unwrap();
    // The first's own verification outlasts its deadline too: the CONNECT ends then, and the
    // hash finishes on its thread (it cannot be interrupted).
    let e = first.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(e.headers.get_str("message"), Some("connect timeout"));
    assert_eq!(
        exported(&server, checks).await,
        Some(1.0),
        "the CONNECT that timed out waiting was never verified"
    );
}

/// A client that pipelines CONNECT, SEND and DISCONNECT and half-closes at once is not taken
/// for one that hung up: its CONNECT is verified, its message published, its receipt sent.
#[tokio::test]
async fn a_half_closed_pipelining_client_is_still_served() {
    let hash = broker::auth::hash_password("pw").unwrap();
    let server = common::start(|c| {
        c.auth.users = vec![broker::config::StaticUser {
            name: "pipe".into(),
            password_hash: hash,
            roles: vec![],
        }];
    })
    .await;
    let mut watcher = common::tcp_session(&server).await;
    watcher.subscribe("w", "/topic/piped", &[]).await.unwrap();
    let mut s = TcpStream::connect(server.tcp_addr().unwrap())
        .await
        .unwrap();
    s.write_all(
        b"CONNECT\naccept-version:1.2\nlogin:pipe\npasscode:pw\n\n\0\
          SEND\ndestination:/topic/piped\n\nhello\0\
          DISCONNECT\nreceipt:bye\n\n\0",
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("the broker answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("CONNECTED"), "{text:?}");
    assert!(text.contains("RECEIPT\nreceipt-id:bye"), "{text:?}");
    let m = watcher.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.body, Bytes::from("hello"));
}

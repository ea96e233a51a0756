//! Authentication: static users, JWTs from each place they may come from, expiry before and
//! during the connection, anonymous access refused.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::auth::hash_password;
use broker::client::Client;
use broker::config::{JwtConfig, StaticUser};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use stomp_codec::{Command, Frame};

const SECRET: &str = "test-secret-with-enough-entropy-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs_token(sub: &str, exp: u64) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "roles": ["reader"]}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn jwt(alg: &str, key_file: Option<&str>) -> JwtConfig {
    JwtConfig {
        algorithm: alg.into(),
        secret_env: None,
        secret_file: key_file.is_none().then(secret_file),
        public_key_file: key_file
            .map(|f| format!("{}/tests/keys/{f}", env!("CARGO_MANIFEST_DIR")).into()),
        user_claim: "sub".into(),
        roles_claim: Some("roles".into()),
        issuer: None,
        audience: None,
        leeway_secs: 0,
    }
}

fn secret_file() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("stompbox-jwt-secret-{}-{n}", std::process::id()));
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    p
}

async fn server(anonymous: bool, jwt_cfg: Option<JwtConfig>) -> broker::Server {
    let hash = hash_password("right").unwrap();
    start(move |c| {
        c.auth.allow_anonymous = anonymous;
        c.auth.users = vec![StaticUser {
            name: "carol".into(),
            password_hash: hash,
            roles: vec![],
        }];
        c.auth.jwt = jwt_cfg;
    })
    .await
}

async fn refused(c: &mut Client) {
    let f = c.expect(Command::Error, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("message"), Some("authentication failed"));
    assert!(
        !String::from_utf8_lossy(&f.body).contains("passcode"),
        "no hint of what failed"
    );
    c.closed(WAIT).await.unwrap();
}

#[tokio::test]
async fn static_user_right_and_wrong_passcode() {
    let server = server(true, None).await;
    let mut c = ws(&server).await;
    let f = c
        .connect(&[("login", "carol"), ("passcode", "right")])
        .await
        .unwrap();
    assert_eq!(f.headers.get_str("user-name"), Some("carol"));

    let mut c = ws(&server).await;
    c.send(
        &Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("login", "carol")
            .header("passcode", "wrong"),
    )
    .await
    .unwrap();
    refused(&mut c).await;
    let mut c = tcp(&server).await;
    c.send(
        &Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("login", "nobody")
            .header("passcode", "right"),
    )
    .await
    .unwrap();
    refused(&mut c).await;
    assert_eq!(
        metric(
            &server,
            "stompbox_disconnects_total{reason=\"auth_failed\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn anonymous_access_can_be_refused() {
    let server = server(false, None).await;
    let mut c = ws(&server).await;
    c.send(&Frame::new(Command::Connect).header("accept-version", "1.2"))
        .await
        .unwrap();
    refused(&mut c).await;
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn jwt_from_each_place_it_may_come_from() {
    let server = server(false, Some(jwt("HS256", None))).await;
    let token = hs_token("dave", now() + 3600);
    // As the CONNECT passcode.
    let mut c = ws(&server).await;
    let f = c.connect(&[("passcode", &token)]).await.unwrap();
    assert_eq!(f.headers.get_str("user-name"), Some("dave"));
    // As an Authorization: Bearer header in CONNECT (what browsers can do).
    let mut c = ws(&server).await;
    let bearer = format!("Bearer {token}");
    let f = c.connect(&[("Authorization", &bearer)]).await.unwrap();
    assert_eq!(f.headers.get_str("user-name"), Some("dave"));
    // As the access_token query parameter of the handshake.
    let url = format!("ws://{}/ws?access_token={token}", server.http_addr());
    let mut c = Client::websocket(&url, &[]).await.unwrap();
    let f = c.connect(&[]).await.unwrap();
    assert_eq!(f.headers.get_str("user-name"), Some("dave"));
    // In the handshake's Authorization header (mobile clients).
    let mut c = Client::websocket_with_headers(
        &format!("ws://{}/ws", server.http_addr()),
        &[("Authorization", &bearer)],
    )
    .await
    .unwrap();
    let f = c.connect(&[]).await.unwrap();
    assert_eq!(f.headers.get_str("user-name"), Some("dave"));
    // A bad signature and an expired token are refused.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "eve", "exp": now() + 3600}),
        &EncodingKey::from_secret(b"wrong"),
    )
    .unwrap();
    for bad in [forged, hs_token("dave", now() - 10)] {
        let mut c = ws(&server).await;
        c.send(
            &Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("passcode", bad),
        )
        .await
        .unwrap();
        refused(&mut c).await;
    }
}

#[tokio::test]
async fn rs256_and_es256_with_public_key_files() {
    for (alg, algorithm, private, public) in [
        (
            "RS256",
            Algorithm::RS256,
            "rs256-private.pem",
            "rs256-public.pem",
        ),
        (
            "ES256",
            Algorithm::ES256,
            "es256-private.pem",
            "es256-public.pem",
        ),
    ] {
        let server = server(false, Some(jwt(alg, Some(public)))).await;
        let key = if alg == "RS256" {
            EncodingKey::from_rsa_pem(&pem(private)).unwrap()
        } else {
            EncodingKey::from_ec_pem(&pem(private)).unwrap()
        };
        let token = encode(
            &Header::new(algorithm),
            &json!({"sub": "erin", "exp": now() + 600}),
            &key,
        )
        .unwrap();
        let mut c = ws(&server).await;
        let f = c.connect(&[("passcode", &token)]).await.unwrap();
        assert_eq!(f.headers.get_str("user-name"), Some("erin"), "{alg}");
    }
}

#[tokio::test]
async fn a_token_expiring_mid_connection_ends_it() {
    let server = server(false, Some(jwt("HS256", None))).await;
    let token = hs_token("frank", now() + 2);
    let mut c = ws(&server).await;
    c.connect(&[("passcode", &token)]).await.unwrap();
    c.subscribe("s", "/topic/t", &[]).await.unwrap();
    let f = c
        .expect(Command::Error, Duration::from_secs(6))
        .await
        .unwrap();
    assert_eq!(f.headers.get_str("message"), Some("token expired"));
    c.closed(WAIT).await.unwrap();
    assert_eq!(
        metric(
            &server,
            "stompbox_disconnects_total{reason=\"token_expired\"}"
        )
        .await,
        1.0
    );
}

//! JWT claims end to end: a configured issuer and audience are required, `nbf` is enforced
//! with the leeway, and `exp` is handled for every JSON number (fractions during the
//! connection, values beyond any clock refused without a panic).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::client::Client;
use broker::config::JwtConfig;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

const SECRET: &str = "claims-test-secret-with-enough-entropy-0123456789";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "stompbox";
const LEEWAY_SECS: u64 = 30;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A broker taking HS256 tokens, with `issuer` and `audience` when `checked`.
async fn server(checked: bool, leeway_secs: u64) -> broker::Server {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secret = std::env::temp_dir().join(format!("stompbox-claims-{}-{n}", std::process::id()));
    std::fs::write(&secret, SECRET).unwrap();
    start(move |c| {
        c.auth.allow_anonymous = false;
        c.auth.jwt = Some(JwtConfig {
            algorithm: "HS256".into(),
            secret_env: None,
            secret_file: Some(secret),
            public_key_file: None,
            user_claim: "sub".into(),
            roles_claim: None,
            issuer: checked.then(|| ISSUER.into()),
            audience: checked.then(|| AUDIENCE.into()),
            leeway_secs,
        });
    })
    .await
}

/// CONNECTs with `claims` signed; `Ok(user-name)` or `Err(ERROR message)`. A connection that
/// closes without an ERROR (a panicking session) fails the test.
async fn try_connect(server: &broker::Server, claims: &Value) -> Result<String, String> {
    let mut c = ws(server).await;
    let passcode = token(claims);
    c.send(
        &Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("passcode", passcode),
    )
    .await
    .unwrap();
    let f = c.frame(WAIT).await.unwrap_or_else(|e| {
        panic!("no CONNECTED or ERROR for {claims}: {e}");
    });
    match f.command {
        Command::Connected => Ok(f.headers.get_str("user-name").unwrap_or("").to_owned()),
        Command::Error => Err(f.headers.get_str("message").unwrap_or("").to_owned()),
        other => panic!("unexpected {other:?} for {claims}"),
    }
}

fn refused() -> Result<String, String> {
    Err("authentication failed".into())
}

#[tokio::test]
async fn a_configured_issuer_and_audience_are_required() {
    let server = server(true, 0).await;
    let exp = now() as u64 + 600;
    let both = json!({"sub": "ann", "exp": exp, "iss": ISSUER, "aud": AUDIENCE});
    assert_eq!(try_connect(&server, &both).await, Ok("ann".into()));
    let no_iss = json!({"sub": "ann", "exp": exp, "aud": AUDIENCE});
    assert_eq!(try_connect(&server, &no_iss).await, refused(), "no iss");
    let no_aud = json!({"sub": "ann", "exp": exp, "iss": ISSUER});
    assert_eq!(try_connect(&server, &no_aud).await, refused(), "no aud");
    let wrong = json!({"sub": "ann", "exp": exp, "iss": "https://other", "aud": AUDIENCE});
    assert_eq!(try_connect(&server, &wrong).await, refused(), "wrong iss");
}

#[tokio::test]
async fn nbf_is_enforced_with_the_leeway() {
    let server = server(false, LEEWAY_SECS).await;
    let t = now() as u64;
    let exp = t + 600;
    let later = json!({"sub": "bo", "exp": exp, "nbf": t + LEEWAY_SECS + 60});
    assert_eq!(try_connect(&server, &later).await, refused(), "nbf ahead");
    let within = json!({"sub": "bo", "exp": exp, "nbf": t + LEEWAY_SECS / 2});
    assert_eq!(try_connect(&server, &within).await, Ok("bo".into()));
    let past = json!({"sub": "bo", "exp": exp, "nbf": t - 5});
    assert_eq!(try_connect(&server, &past).await, Ok("bo".into()));
    let negative = json!({"sub": "bo", "exp": exp, "nbf": -1});
    assert_eq!(try_connect(&server, &negative).await, refused(), "nbf < 0");
}

#[tokio::test]
async fn an_exp_with_a_fraction_ends_the_connection_when_it_passes() {
    let server = server(false, 0).await;
    let mut c = ws(&server).await;
    let passcode = token(&json!({"sub": "cy", "exp": now() + 1.5}));
    c.connect(&[("passcode", &passcode)]).await.unwrap();
    let f = c
        .expect(Command::Error, Duration::from_secs(6))
        .await
        .expect("the connection ends when its token expires");
    assert_eq!(f.headers.get_str("message"), Some("token expired"));
    c.closed(WAIT).await.unwrap();
}

#[tokio::test]
async fn every_json_number_as_exp_is_handled_without_a_panic() {
    let server = server(false, 0).await;
    // Beyond what the clock can hold (i64 seconds), or not a time at all: refused, each with
    // an ERROR (a panicking session would close without one).
    for exp in [
        json!(1e300),
        json!(u64::MAX),
        json!(i64::MAX as u64 + 1),
        json!(253_402_300_800_u64),
        json!(-1),
        json!(0),
        json!(-1e300),
        json!(0.5),
        json!("9999999999"),
    ] {
        let claims = json!({"sub": "dee", "exp": exp});
        assert_eq!(try_connect(&server, &claims).await, refused(), "exp {exp}");
    }
    // The latest accepted: the last second of year 9999; the connection stays up.
    let far = json!({"sub": "dee", "exp": 253_402_300_799_u64});
    assert_eq!(try_connect(&server, &far).await, Ok("dee".into()));
    // The broker is still whole.
    let fine = json!({"sub": "dee", "exp": now() + 600.25});
    assert_eq!(try_connect(&server, &fine).await, Ok("dee".into()));
    let mut c: Client = ws(&server).await;
    c.connect(&[("passcode", &token(&fine))]).await.unwrap();
    c.subscribe("s", "/topic/alive", &[]).await.unwrap();
}

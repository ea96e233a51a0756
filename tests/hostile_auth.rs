//! Hostile clients against authentication, on the real `stompbox` binary.
//!
//! One broker process with two static users (default argon2 parameters: 19 MiB, t=2) and the
//! default `[auth.verify]` and `[auth.throttle]` settings, attacked over real sockets. Clients
//! come from several loopback addresses (127.0.0.0/8 is all loopback on Linux), so "another
//! address" is a real other address to the broker. Throughout, a canary's round trip must
//! stay under 1 s and the broker's VmRSS growth under `RSS_GROWTH_LIMIT_KIB`.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker::client::Client;
use bytes::Bytes;
use common::WAIT;
use common::process::{BrokerProcess, http_get, rss_kib};
use stomp_codec::{Command, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

/// The broker's verification slots (`[auth.verify] concurrency`, default) and the memory of
/// one verification with the default argon2 parameters (m = 19456 KiB).
const SLOTS: u64 = 4;
const HASH_KIB: u64 = 19_456;
/// VmRSS may grow by the verification buffers plus this much over its value at start.
const RSS_SLACK_KIB: u64 = 32 * 1024;
const RSS_GROWTH_LIMIT_KIB: u64 = SLOTS * HASH_KIB + RSS_SLACK_KIB;
/// A deadline, not a performance target: a valid login while bogus ones flood in, and the
/// canary's round trip.
const LOGIN_DEADLINE: Duration = Duration::from_secs(1);
const CANARY_DEADLINE: Duration = Duration::from_secs(1);
/// How long a valid login is waited for at most, to report how late it is.
const SLOW_LOGIN_WAIT: Duration = Duration::from_secs(60);
/// `[auth.throttle]` defaults.
const FAILURES_PER_ADDRESS: u64 = 10;

/// The HS256 secret of the broker's `[auth.jwt]`.
const JWT_SECRET: &str = "hostile-auth-hs256-secret-0123456789abcdef";

/// Bogus CONNECTs per flood round, rounds, and the addresses they come from.
const FLOOD_PER_ROUND: usize = 100;
const FLOOD_ROUNDS: usize = 4;
const FLOOD_ADDRESSES: u8 = 16;

// ---------------------------------------------------------------------------------------------
// The broker process.

/// The broker process (see `common::process`) and its memory at start.
struct AuthBroker {
    process: BrokerProcess,
    tcp: SocketAddr,
    http: SocketAddr,
    rss_at_start_kib: u64,
    /// Holds the JWT secret file the configuration names.
    secret_dir: PathBuf,
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.secret_dir);
    }
}

fn config_toml(http: u16, tcp: u16, alice: &str, bob: &str, secret: &str) -> String {
    format!(
        r#"
[server]
websocket = "127.0.0.1:{http}"
tcp = "127.0.0.1:{tcp}"
connect_timeout_ms = 3000
shutdown_grace_ms = 1000

[auth]
allow_anonymous = true

[auth.jwt]
algorithm = "HS256"
secret_file = "{secret}"

[[auth.users]]
name = "alice"
password_hash = "{alice}"

[[auth.users]]
name = "bob"
password_hash = "{bob}"
"#
    )
}

impl AuthBroker {
    async fn start() -> Self {
        let secret_dir = std::env::temp_dir().join(format!(
            "stompbox-hostile-auth-secret-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&secret_dir).unwrap();
        let secret = secret_dir.join("jwt.secret");
        std::fs::write(&secret, JWT_SECRET).unwrap();
        let secret = secret.display().to_string();
        let alice = broker::auth::hash_password("alice-password").unwrap();
        let bob = broker::auth::hash_password("bob-password").unwrap();
        let process = BrokerProcess::start(BIN, "hostile-auth", |http, tcp| {
            config_toml(http, tcp, &alice, &bob, &secret)
        })
        .await;
        Self {
            tcp: process.tcp,
            http: process.http,
            rss_at_start_kib: rss_kib(process.pid),
            process,
            secret_dir,
        }
    }

    /// Samples VmRSS and asserts its growth since start stays within the bound.
    fn sample_rss(&mut self, when: &str) {
        let kib = self.process.sample_rss(when);
        let growth = kib.saturating_sub(self.rss_at_start_kib);
        assert!(
            growth < RSS_GROWTH_LIMIT_KIB,
            "broker VmRSS grew by {growth} KiB {when}, over the bound of {RSS_GROWTH_LIMIT_KIB} KiB"
        );
    }

    /// A counter from /metrics; `None` when the broker does not export it.
    async fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = http_get(self.http, "/metrics").await.expect("/metrics");
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    async fn checks(&self) -> f64 {
        self.metric("stompbox_auth_password_checks_total")
            .await
            .expect("the broker counts password verifications")
    }

    async fn throttled(&self) -> f64 {
        self.metric("stompbox_disconnects_total{reason=\"auth_throttled\"}")
            .await
            .expect("the broker counts throttled logins")
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// 127.0.0.`n`.
fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A TCP connection to the broker's STOMP listener from `from`.
async fn tcp_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    timeout(WAIT, s.connect(to))
        .await
        .expect("tcp connect in time")
        .expect("tcp connects")
}

fn connect_frame(login: &str, passcode: &str) -> Vec<u8> {
    format!("CONNECT\naccept-version:1.2\nheart-beat:0,0\nlogin:{login}\npasscode:{passcode}\n\n\0")
        .into_bytes()
}

/// What the broker answered a CONNECT.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Connected,
    Error(String),
}

/// CONNECTs from `from` with `login`/`passcode` and reads the answer.
async fn login_from(from: Ipv4Addr, to: SocketAddr, login: &str, passcode: &str) -> Answer {
    login_within(from, to, login, passcode, WAIT).await
}

/// `login_from`, waiting up to `wait` for the answer.
async fn login_within(
    from: Ipv4Addr,
    to: SocketAddr,
    login: &str,
    passcode: &str,
    wait: Duration,
) -> Answer {
    let frame = connect_frame(login, passcode);
    answer_to(from, to, &frame, &format!("{login}'s CONNECT"), wait).await
}

/// Writes `frame` from `from` and reads the broker's answer (`what` names it in failures).
async fn answer_to(
    from: Ipv4Addr,
    to: SocketAddr,
    frame: &[u8],
    what: &str,
    wait: Duration,
) -> Answer {
    let mut s = tcp_from(from, to).await;
    s.write_all(frame).await.unwrap();
    let mut got = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        // A frame ends with NUL; the broker closes after an ERROR.
        while !got.contains(&0) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    timeout(wait, read)
        .await
        .unwrap_or_else(|_| panic!("no answer to {what} from {from} within {wait:?}"));
    let text = String::from_utf8_lossy(&got).into_owned();
    match text.lines().next() {
        Some("CONNECTED") => Answer::Connected,
        Some("ERROR") => Answer::Error(
            text.lines()
                .find_map(|l| l.strip_prefix("message:"))
                .unwrap_or("")
                .to_owned(),
        ),
        _ => panic!("{what} from {from} got {text:?} (a panicking session closes silently)"),
    }
}

fn failed() -> Answer {
    Answer::Error("authentication failed".into())
}

/// A bogus CONNECT (an unknown login, which costs a decoy verification) from `from`, whose
/// client hangs up as soon as it is written.
async fn bogus_and_hang_up(from: Ipv4Addr, to: SocketAddr, n: usize) {
    let mut s = tcp_from(from, to).await;
    let _ = s
        .write_all(&connect_frame(&format!("mallory-{n}"), "guess"))
        .await;
    let _ = s.shutdown().await;
}

/// A well-behaved client that round-trips a message to itself.
struct Canary {
    client: Client,
    sent: u32,
    slowest: Duration,
}

impl Canary {
    async fn new(url: &str) -> Self {
        let mut client = timeout(WAIT, Client::websocket(url, &[]))
            .await
            .expect("canary handshake in time")
            .expect("canary connects");
        client.connect(&[]).await.expect("canary CONNECTED");
        client
            .subscribe("canary", "/topic/canary", &[])
            .await
            .expect("canary subscribes");
        Self {
            client,
            sent: 0,
            slowest: Duration::ZERO,
        }
    }

    async fn round_trip(&mut self, when: &str) {
        self.sent += 1;
        let body = format!("canary {}", self.sent);
        let started = Instant::now();
        let c = &mut self.client;
        let exchange = async {
            c.send(
                &Frame::new(Command::Send)
                    .header("destination", "/topic/canary")
                    .with_body(body.clone()),
            )
            .await?;
            c.expect(Command::Message, CANARY_DEADLINE).await
        };
        let m = match timeout(CANARY_DEADLINE, exchange).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => panic!("canary failed {when}: {e}"),
            Err(_) => panic!("canary got no answer within {CANARY_DEADLINE:?} {when}"),
        };
        assert_eq!(
            m.body,
            Bytes::from(body),
            "canary got its own message {when}"
        );
        self.slowest = self.slowest.max(started.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// The attacks.

/// Item 5's headline: rounds of bogus CONNECTs from 16 addresses, each needing a verification
/// and each client hanging up at once, while a valid user logs in again and again from
/// another address. Every valid login must complete within `LOGIN_DEADLINE`. Returns the
/// slowest valid login.
async fn flood_of_hung_up_connects(b: &mut AuthBroker, canary: &mut Canary) -> Duration {
    let tcp = b.tcp;
    let mut slowest = Duration::ZERO;
    for round in 0..FLOOD_ROUNDS {
        let mut flood = Vec::with_capacity(FLOOD_PER_ROUND);
        for i in 0..FLOOD_PER_ROUND {
            let from = loopback(10 + (i % usize::from(FLOOD_ADDRESSES)) as u8);
            flood.push(tokio::spawn(bogus_and_hang_up(from, tcp, round * 1000 + i)));
        }
        // Every bogus CONNECT is written before the valid login starts: on a broker that
        // queues them all, the valid one is behind every one of them.
        for f in flood {
            timeout(WAIT, f)
                .await
                .expect("flood client in time")
                .unwrap();
        }
        let started = Instant::now();
        // Waits long enough to measure a broker that fails the deadline.
        let answer = login_within(loopback(1), tcp, "bob", "bob-password", SLOW_LOGIN_WAIT).await;
        let took = started.elapsed();
        assert_eq!(answer, Answer::Connected, "round {round}");
        eprintln!("[hostile-auth] flood round {round}: valid login took {took:?}");
        assert!(
            took < LOGIN_DEADLINE,
            "a valid login behind {FLOOD_PER_ROUND} hung-up bogus CONNECTs took {took:?}"
        );
        slowest = slowest.max(took);
        canary
            .round_trip(&format!("after flood round {round}"))
            .await;
        b.sample_rss(&format!("after flood round {round}"));
    }
    slowest
}

/// Guessing alice's password from one address (which stays connected for each answer):
/// the first `FAILURES_PER_ADDRESS` are verified, the rest refused without a hash.
async fn guessing_from_one_address(b: &AuthBroker) {
    let checks = b.checks().await;
    let throttled = b.throttled().await;
    let guesses = 25;
    for i in 0..guesses {
        let answer = login_from(loopback(3), b.tcp, "alice", &format!("guess-{i}")).await;
        assert_eq!(answer, failed(), "guess {i}");
    }
    let hashed = b.checks().await - checks;
    let refused = b.throttled().await - throttled;
    eprintln!(
        "[hostile-auth] {guesses} guesses from one address: {hashed} hashed, {refused} throttled"
    );
    assert_eq!(
        hashed, FAILURES_PER_ADDRESS as f64,
        "verified within the address budget"
    );
    assert_eq!(
        refused,
        (guesses - FAILURES_PER_ADDRESS) as f64,
        "the rest throttled"
    );
}

/// Guessing alice's password from many addresses, one guess each: the name's budget is spent
/// (by the previous attack), so none is verified.
async fn guessing_from_many_addresses(b: &AuthBroker) {
    let checks = b.checks().await;
    for n in 100..130 {
        let answer = login_from(loopback(n), b.tcp, "alice", "spray").await;
        assert_eq!(answer, failed(), "spray from 127.0.0.{n}");
    }
    let hashed = b.checks().await - checks;
    eprintln!("[hostile-auth] 30 guesses from 30 addresses: {hashed} hashed");
    assert_eq!(hashed, 0.0, "a name over its budget costs no hash");
}

/// The throttle is no lock-out button: alice still logs in from where she logged in before,
/// bob (another name) from a fresh address; only alice at a never-seen address waits out the
/// window (the documented trade-off).
async fn owners_are_not_locked_out(b: &AuthBroker) {
    assert_eq!(
        login_from(loopback(1), b.tcp, "alice", "alice-password").await,
        Answer::Connected,
        "alice from the address she logged in from"
    );
    assert_eq!(
        login_from(loopback(4), b.tcp, "bob", "bob-password").await,
        Answer::Connected,
        "bob from a fresh address"
    );
    assert_eq!(
        login_from(loopback(1), b.tcp, "bob", "bob-password").await,
        Answer::Connected,
        "bob from alice's address"
    );
    assert_eq!(
        login_from(loopback(200), b.tcp, "alice", "alice-password").await,
        failed(),
        "alice from a never-seen address while her name is over budget"
    );
}

/// Tokens whose `exp` no clock can hold, or that is no time at all, properly signed: each is
/// refused with an ERROR (a session that panicked would close without one), none is hashed.
async fn tokens_with_hostile_exp(b: &AuthBroker) {
    let checks = b.checks().await;
    let exps = [
        serde_json::json!(u64::MAX),
        serde_json::json!(i64::MAX as u64 + 1),
        serde_json::json!(1e300),
        serde_json::json!(-1e300),
        serde_json::json!(-1),
        serde_json::json!("soon"),
    ];
    for exp in exps {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": "tok", "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap();
        let frame = format!("CONNECT\naccept-version:1.2\npasscode:{token}\n\n\0");
        let what = format!("a token with exp {exp}");
        let answer = answer_to(loopback(5), b.tcp, frame.as_bytes(), &what, WAIT).await;
        assert_eq!(answer, failed(), "{what}");
    }
    assert_eq!(b.checks().await, checks, "tokens are never hashed");
}

/// Unknown logins (each verified against the decoy) from 16 addresses, 4 each at once,
/// staying connected: verification runs flat out on every slot while the canary round-trips;
/// memory must stay within slots × hash memory.
async fn concurrent_wrong_passwords(b: &AuthBroker, canary: &mut Canary) {
    let mut all = Vec::new();
    for a in 0..16u8 {
        for i in 0..4 {
            let tcp = b.tcp;
            all.push(tokio::spawn(async move {
                login_from(loopback(40 + a), tcp, &format!("ghost-{a}-{i}"), "wrong").await
            }));
        }
    }
    canary.round_trip("while 64 logins are verified").await;
    let mut timed_out = 0;
    for t in all {
        let answer = timeout(WAIT, t).await.expect("answered in time").unwrap();
        // Refused once verified, or, on a machine slow enough that its turn comes after its
        // CONNECT deadline, refused at the deadline: bounded either way.
        if answer == Answer::Error("connect timeout".into()) {
            timed_out += 1;
        } else {
            assert_eq!(answer, failed());
        }
    }
    eprintln!(
        "[hostile-auth] 64 concurrent unknown logins: {timed_out} reached the CONNECT deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_floods_neither_delay_valid_logins_nor_grow_memory() {
    let mut b = AuthBroker::start().await;
    let url = format!("ws://{}/ws", b.http);
    b.sample_rss("at start");
    let mut canary = Canary::new(&url).await;
    canary.round_trip("at start").await;

    // alice logs in once, so her address is one she is known at.
    let started = Instant::now();
    assert_eq!(
        login_from(loopback(1), b.tcp, "alice", "alice-password").await,
        Answer::Connected
    );
    eprintln!(
        "[hostile-auth] a valid login with no flood took {:?}",
        started.elapsed()
    );

    let slowest = flood_of_hung_up_connects(&mut b, &mut canary).await;
    let hashed = b.checks().await;
    eprintln!(
        "[hostile-auth] {} hung-up bogus CONNECTs: {hashed} verifications in all, slowest valid login {slowest:?}",
        FLOOD_PER_ROUND * FLOOD_ROUNDS
    );

    guessing_from_one_address(&b).await;
    canary.round_trip("after guessing from one address").await;
    b.sample_rss("after guessing from one address");

    guessing_from_many_addresses(&b).await;
    canary
        .round_trip("after guessing from many addresses")
        .await;
    b.sample_rss("after guessing from many addresses");

    owners_are_not_locked_out(&b).await;

    tokens_with_hostile_exp(&b).await;
    canary.round_trip("after tokens with hostile exp").await;
    b.sample_rss("after tokens with hostile exp");

    concurrent_wrong_passwords(&b, &mut canary).await;
    canary.round_trip("after concurrent wrong passwords").await;
    b.sample_rss("after concurrent wrong passwords");

    let log = b.process.log_text();
    assert!(
        !log.contains("panicked"),
        "the broker logged a panic:\n{log}"
    );
    eprintln!(
        "[hostile-auth] done: slowest canary round trip {:?}, VmRSS peak {:.1} MiB (start {:.1} MiB, growth bound {} MiB)",
        canary.slowest,
        b.process.peak_rss_kib as f64 / 1024.0,
        b.rss_at_start_kib as f64 / 1024.0,
        RSS_GROWTH_LIMIT_KIB / 1024
    );
}

//! Hostile wildcard subscriptions and destinations against the real `stompbox` binary.
//!
//! The attacks of issue 16, item 1, at the default destination limits (1024 bytes, 32
//! segments): a SUBSCRIBE with as many `**` as the segment limit allows followed by SENDs to a
//! long destination (exponential for a matcher that tries every split), hundreds of `*` +
//! `a…a` + `b` globs followed by SENDs to `a…a` (quadratic per glob for a backtracking one),
//! and destinations over each limit. Each attacker must get its RECEIPT (its work is bounded)
//! or its ERROR (it is refused); throughout, a well-behaved canary's round trip must finish
//! within `CANARY_DEADLINE`, /healthz must answer, and the broker's VmRSS must grow by less
//! than `RSS_GROWTH_LIMIT_KIB`.

mod common;

use std::time::Instant;

use broker::client::Client;
use common::WAIT;
use common::process::{BrokerProcess, CANARY_DEADLINE, Canary, http_get, ws_session_at};
use stomp_codec::{Command, Frame};
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

/// The broker's defaults, restated so the attacks sit exactly at them.
const MAX_DESTINATION_LENGTH: usize = 1024;
const MAX_DESTINATION_SEGMENTS: usize = 32;

/// How long the canary's round trip (and an attacker's own RECEIPT) may take. A deadline
/// against starvation, not a performance target: the work behind it is microseconds.
/// The bound on the broker's VmRSS growth over all attacks.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;
/// Glob subscriptions in the backtracking attack, with `FEWEST` to `FEWEST + GLOBS - 1` `a`.
const GLOBS: usize = 400;
const FEWEST: usize = 300;

fn config(http: u16, tcp: u16) -> String {
    format!(
        r#"
[server]
websocket = "127.0.0.1:{http}"
tcp = "127.0.0.1:{tcp}"
shutdown_grace_ms = 1000

[stomp]
max_subscriptions = 1000
max_destination_length = {MAX_DESTINATION_LENGTH}
max_destination_segments = {MAX_DESTINATION_SEGMENTS}

[broker]
slow_consumer = "drop"
"#
    )
}

/// A SEND with a receipt; the RECEIPT must come within `CANARY_DEADLINE` (the publish,
/// matching included, is done by then).
async fn send_bounded(c: &mut Client, destination: &str, receipt: &str) {
    let started = Instant::now();
    let exchange = async {
        c.send(
            &Frame::new(Command::Send)
                .header("destination", destination.to_owned())
                .header("receipt", receipt.to_owned())
                .with_body("x"),
        )
        .await?;
        c.receipt(receipt).await
    };
    match timeout(CANARY_DEADLINE, exchange).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "SEND to a {}-byte destination failed: {e}",
            destination.len()
        ),
        Err(_) => panic!(
            "no RECEIPT within {CANARY_DEADLINE:?} for a SEND to a {}-byte destination",
            destination.len()
        ),
    }
    eprintln!(
        "[patterns] SEND to a {}-byte destination: RECEIPT after {:?}",
        destination.len(),
        started.elapsed()
    );
}

/// The next frame must be ERROR with `message` `expected`, then the connection closes.
async fn expect_refused(c: &mut Client, expected: &str) {
    let e = c
        .expect(Command::Error, WAIT)
        .await
        .unwrap_or_else(|err| panic!("expected ERROR {expected:?}: {err}"));
    assert_eq!(e.headers.get_str("message"), Some(expected), "{e:?}");
    c.closed(WAIT).await.expect("closed after the ERROR");
}

/// `/topic` and `n` more segments of `a`: `n + 2` segments in all.
fn deep(n: usize) -> String {
    format!("/topic{}", "/a".repeat(n))
}

/// Scenario 1: `**` as often as the segment limit allows (in runs, and alternating with a
/// literal so they cannot be merged), then SENDs to the deepest destination allowed.
async fn many_double_stars(url: &str) {
    let mut attacker = ws_session_at(url).await;
    // 1 + 1 + 29 + 1 = 32 segments.
    let runs = format!("/topic{}/zzz", "/**".repeat(29));
    // 1 + 1 + 2 * 14 + 1 = 31 segments.
    let alternating = format!("/topic{}/zzz", "/**/a".repeat(14));
    attacker
        .subscribe("runs", &runs, &[])
        .await
        .expect("accepted");
    attacker
        .subscribe("alternating", &alternating, &[])
        .await
        .expect("accepted");
    let dest = deep(MAX_DESTINATION_SEGMENTS - 2);
    for i in 0..2 {
        send_bounded(&mut attacker, &dest, &format!("deep-{i}")).await;
    }
    // And they still match what they should.
    send_bounded(&mut attacker, &format!("{}/zzz", deep(28)), "match").await;
    let got = attacker
        .expect(Command::Message, WAIT)
        .await
        .expect("a match");
    let got_too = attacker
        .expect(Command::Message, WAIT)
        .await
        .expect("both match");
    let mut subs = [got, got_too].map(|m| m.headers.get_str("subscription").map(str::to_owned));
    subs.sort();
    assert_eq!(subs, [Some("alternating".into()), Some("runs".into())]);
}

/// Scenario 2: `GLOBS` distinct `*` + `a…a` + `b` subscriptions, then SENDs to `a…a` at the
/// length limit, which every glob must scan.
async fn backtracking_globs(url: &str) {
    let mut attacker = ws_session_at(url).await;
    let prefix = "/topic/g/*";
    // About half as many `a` as the destination has: the most work for a backtracking glob.
    for i in 0..GLOBS {
        let a = FEWEST + i;
        let glob = format!("{prefix}{}b", "a".repeat(a));
        attacker
            .subscribe(&format!("g{i}"), &glob, &[])
            .await
            .expect("accepted");
    }
    let dest = format!("/topic/g/{}", "a".repeat(MAX_DESTINATION_LENGTH - 9));
    assert_eq!(dest.len(), MAX_DESTINATION_LENGTH);
    for i in 0..3 {
        send_bounded(&mut attacker, &dest, &format!("glob-{i}")).await;
    }
    // Matching still works: only the glob with the fewest `a` matches this one.
    let hit = format!("/topic/g/x{}b", "a".repeat(FEWEST));
    send_bounded(&mut attacker, &hit, "hit").await;
    let m = attacker
        .expect(Command::Message, WAIT)
        .await
        .expect("a match");
    assert_eq!(m.headers.get_str("subscription"), Some("g0"));
    // And no other: the next frame is the RECEIPT of a SEND nothing matches.
    attacker
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/g/none")
                .header("receipt", "quiet"),
        )
        .await
        .expect("sent");
    let r = attacker
        .expect(Command::Receipt, WAIT)
        .await
        .expect("only one match");
    assert_eq!(r.headers.get_str("receipt-id"), Some("quiet"));
}

/// Scenario 3: over each limit, on SUBSCRIBE and on SEND: refused with ERROR, then closed.
async fn over_the_limits(url: &str) {
    let long = format!("/topic/{}", "a".repeat(MAX_DESTINATION_LENGTH));
    let stars = format!("/topic{}/zzz", "/**".repeat(MAX_DESTINATION_SEGMENTS));
    let cases = [
        (Command::Subscribe, long.clone(), "destination too long"),
        (Command::Send, long, "destination too long"),
        (Command::Subscribe, stars, "too many destination segments"),
        (
            Command::Send,
            deep(MAX_DESTINATION_SEGMENTS - 1),
            "too many destination segments",
        ),
    ];
    for (command, destination, expected) in cases {
        let mut c = ws_session_at(url).await;
        c.send(
            &Frame::new(command)
                .header("id", "0")
                .header("destination", destination)
                .header("receipt", "r"),
        )
        .await
        .expect("sent");
        expect_refused(&mut c, expected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_patterns_are_bounded_or_refused() {
    let mut b = BrokerProcess::start(BIN, "hostile-patterns", config).await;
    let url = b.ws_url();
    let start_kib = b.sample_rss("at start");
    let mut canary = Canary::new(&url).await;
    canary.round_trip("at start").await;

    many_double_stars(&url).await;
    after(&mut b, &mut canary, start_kib, "1 many '**'").await;
    backtracking_globs(&url).await;
    after(&mut b, &mut canary, start_kib, "2 backtracking globs").await;
    over_the_limits(&url).await;
    after(&mut b, &mut canary, start_kib, "3 over the limits").await;

    let log = b.log_text();
    assert!(!log.contains("panicked"), "the broker panicked:\n{log}");
}

/// After each attack: the canary round-trips, /healthz answers, memory growth is bounded.
async fn after(b: &mut BrokerProcess, canary: &mut Canary, start_kib: u64, scenario: &str) {
    let when = format!("after scenario {scenario}");
    canary.round_trip(&when).await;
    let health = timeout(CANARY_DEADLINE, http_get(b.http, "/healthz")).await;
    assert!(
        matches!(health, Ok(Some((200, _)))),
        "/healthz {when}: {health:?}"
    );
    let kib = b.sample_rss(&when);
    assert!(
        kib.saturating_sub(start_kib) < RSS_GROWTH_LIMIT_KIB,
        "VmRSS grew by {} KiB {when}, over the bound of {RSS_GROWTH_LIMIT_KIB} KiB",
        kib - start_kib
    );
}

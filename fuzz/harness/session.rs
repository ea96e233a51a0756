//! The session fuzz harness, shared by the cargo-fuzz target (`fuzz/fuzz_targets/session.rs`)
//! and the proptest that runs it in every `cargo test` (`tests/session_fuzz.rs`).
//!
//! The input is a script for up to four in-memory clients talking to real sessions of one
//! broker over `tokio::io::duplex` pipes: each step writes raw bytes, writes a frame built from
//! a small vocabulary (so the script reaches deep states: subscriptions, acks, transactions,
//! receipts, queues, patterns, /app and /user destinations), drains a client's output, or
//! hangs a client up. Time runs on tokio's paused clock, so every deadline (heart-beats, frame
//! and CONNECT timeouts) can fire without the run taking real time.
//!
//! The checks: no session panics; every session ends once its client has hung up; and when
//! all have ended the broker holds nothing for them (no subscriptions, no connections).

use std::sync::Arc;
use std::time::Duration;

use broker::auth::HandshakeAuth;
use broker::config::{Config, DestinationMode, DestinationRule};
use broker::transport::Transport;
use broker::{Broker, session};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const CLIENTS: usize = 4;

const COMMANDS: [&str; 12] = [
    "CONNECT",
    "STOMP",
    "SEND",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "ACK",
    "NACK",
    "BEGIN",
    "COMMIT",
    "ABORT",
    "DISCONNECT",
    "MESSAGE",
];
const DESTINATIONS: [&str; 11] = [
    "/topic/a",
    "/topic/h/a",
    "/topic/p/a",
    "/topic/p/a/presence",
    "/topic/**",
    "/topic/a/{x}",
    "/queue/work",
    "/app/echo",
    "/user/queue/x",
    "/user/s1/queue/x",
    "/nowhere",
];
const HEADERS: [&str; 14] = [
    "id:0",
    "id:1",
    "ack:client",
    "ack:client-individual",
    "receipt:r",
    "transaction:t",
    "content-length:3",
    "accept-version:1.0,1.1,1.2",
    "heart-beat:10,10",
    "prefetch-count:1",
    "message-id:x",
    "content-type:application/octet-stream",
    "resume-from:1-0",
    "resume-from:99999999999999-0",
];

fn config() -> Config {
    let mut c = Config::default();
    c.stomp.max_frame_size = 4096;
    c.stomp.max_subscriptions = 8;
    c.stomp.max_transactions = 2;
    c.stomp.max_transaction_frames = 8;
    c.outbox.max_messages = 16;
    c.outbox.max_bytes = 8192;
    // Small memory budgets, so scripts reach them: every charge must be given back.
    c.stomp.max_unacked_bytes = 4096;
    c.stomp.max_transaction_bytes = 8192;
    c.app.max_pending_bytes = 4096;
    c.broker.max_pending_total_bytes = 32 * 1024;
    c.broker.history_max_bytes = 16 * 1024;
    c.destinations = vec![
        DestinationRule {
            pattern: "/queue/**".into(),
            mode: DestinationMode::Queue,
            slow_consumer: None,
            max_pending: Some(16),
            ..DestinationRule::default()
        },
        DestinationRule {
            pattern: "/topic/h/*".into(),
            history: 3,
            retain_last: true,
            ..DestinationRule::default()
        },
        DestinationRule {
            pattern: "/topic/p/*".into(),
            presence: true,
            ..DestinationRule::default()
        },
    ];
    c
}

/// A frame from the vocabulary, chosen by the bytes of `spec`.
fn frame(spec: &[u8]) -> Vec<u8> {
    let pick = |i: usize| usize::from(spec.get(i).copied().unwrap_or(0));
    let mut f = Vec::new();
    f.extend_from_slice(COMMANDS[pick(0) % COMMANDS.len()].as_bytes());
    f.push(b'\n');
    f.extend_from_slice(b"destination:");
    match DESTINATIONS.get(pick(1) % (DESTINATIONS.len() + 2)) {
        Some(d) => f.extend_from_slice(d.as_bytes()),
        // SUBSCRIBE gets a generated pattern, the rest a plain deep destination.
        None => f.extend_from_slice(&generated(spec, pick(0) % COMMANDS.len() == 3)),
    }
    f.push(b'\n');
    let flags = pick(2) | (pick(3) << 8);
    for (i, h) in HEADERS.iter().enumerate() {
        if flags & (1 << i) != 0 {
            f.extend_from_slice(h.as_bytes());
            f.push(b'\n');
        }
    }
    // Bodies on SEND, and now and then where they are not allowed.
    let command = COMMANDS[pick(0) % COMMANDS.len()];
    if command == "SEND" || pick(4) & 1 != 0 {
        f.extend_from_slice(b"\nabc\0");
    } else {
        f.extend_from_slice(b"\n\0");
    }
    f
}

/// A wildcard pattern (`wild`) or a deep, long destination under `/topic`, grown from the
/// spec's bytes: up to 64 segments of `**`, `*`, `?` globs, `{x}` and runs of `a` up to 250
/// bytes (only runs of `a` when not `wild`), so scripts reach both sides of the destination
/// limits (1024 bytes, 32 segments) and the matcher's worst shapes (many `**`, `*` + `a…a` +
/// `b` against `a…a`). A slow match shows up as a libFuzzer timeout.
fn generated(spec: &[u8], wild: bool) -> Vec<u8> {
    let byte = |i: usize| u64::from(spec.get(i).copied().unwrap_or(0));
    let mut state = byte(1) | byte(2) << 8 | byte(3) << 16 | byte(4) << 24 | 1;
    let mut next = move || {
        // xorshift64: a fixed expansion of the seed, so an input always means the same frame.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let segments = 1 + next() % 64;
    let mut d = b"/topic".to_vec();
    for _ in 0..segments {
        d.extend_from_slice(b"/");
        let run = usize::try_from(next() % 250).unwrap_or(0);
        let kind = if wild { next() % 8 } else { 6 + next() % 2 };
        match kind {
            0 | 1 => d.extend_from_slice(b"**"),
            2 => d.push(b'*'),
            3 => d.extend_from_slice(b"a*a?b"),
            4 => d.extend_from_slice(b"{x}"),
            5 => {
                d.push(b'*');
                d.extend(std::iter::repeat_n(b'a', run));
                d.push(b'b');
            }
            6 => d.extend(std::iter::repeat_n(b'a', run)),
            _ => d.push(b'a'),
        }
    }
    d
}

/// What the clients read during a run, to show a script reached real work.
#[derive(Debug, Default)]
pub struct Seen {
    /// MESSAGE frames read by the clients.
    pub messages: usize,
    /// Bytes read by the clients.
    pub bytes: usize,
}

/// Runs one script. Panics (failing the fuzz case) when a check fails.
pub fn check(script: &[u8]) -> Seen {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(run(script))
}

async fn run(script: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let broker = Broker::new(config()).expect("broker");
    let mut clients: Vec<Option<DuplexStream>> = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..CLIENTS {
        let (client, server) = tokio::io::duplex(16 * 1024);
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000 + i as u16));
        sessions.push(tokio::spawn(session::run(
            Arc::clone(&broker),
            Transport::stream(server, 1024),
            peer,
            HandshakeAuth::default(),
        )));
        clients.push(Some(client));
    }
    // Most scripts start connected (the first byte's low bits say which clients do not), so
    // the fuzzer spends its time past CONNECT.
    let skip_connect = script.first().copied().unwrap_or(0);
    for (i, c) in clients.iter_mut().enumerate() {
        if skip_connect & (1 << i) == 0
            && let Some(c) = c
        {
            let hb = if skip_connect & 0x10 != 0 {
                "10,10"
            } else {
                "0,0"
            };
            let connect = format!("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:{hb}\n\n\0");
            let _ = c.write_all(connect.as_bytes()).await;
        }
    }
    let mut sink = vec![0u8; 16 * 1024];
    let mut steps = script.get(1..).unwrap_or(&[]).chunks(6);
    for step in steps.by_ref().take(256) {
        let op = step.first().copied().unwrap_or(0);
        let who = usize::from(op) % CLIENTS;
        let Some(client) = clients[who].as_mut() else {
            continue;
        };
        let io = tokio::time::timeout(Duration::from_secs(30), async {
            match (op >> 2) % 5 {
                0 => client.write_all(step.get(1..).unwrap_or(&[])).await,
                1 | 2 => {
                    let mut bytes = frame(step.get(1..).unwrap_or(&[]));
                    if op & 0x80 != 0 {
                        // Now and then, the same frame cut short.
                        bytes.truncate(bytes.len() / 2);
                    }
                    client.write_all(&bytes).await
                }
                3 => drain(client, &mut sink, &mut seen).await,
                _ => {
                    // Let time pass: heart-beat and frame deadlines may fire.
                    tokio::time::sleep(Duration::from_millis(u64::from(op) * 100)).await;
                    Ok(())
                }
            }
        })
        .await;
        if !matches!(io, Ok(Ok(()))) || op == 0xff {
            // The session closed its side (an ERROR), or the script hangs up.
            clients[who] = None;
        }
    }
    // Everyone hangs up; every session must end, releasing everything.
    clients.clear();
    for s in sessions {
        let r = tokio::time::timeout(Duration::from_secs(60), s).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("a session panicked: {e}"),
            Err(_) => panic!("a session did not end after its client hung up"),
        }
    }
    assert_eq!(
        broker.registry.exact_destinations(),
        0,
        "subscriptions left"
    );
    assert_eq!(broker.registry.pattern_subscriptions(), 0, "patterns left");
    assert_eq!(broker.metrics.connections.get(), 0, "connections left");
    assert_eq!(broker.metrics.subscriptions.get(), 0, "subscription gauge");
    // Application workers finish what they were handed after their session ended; then
    // every byte charged to a connection (transactions, unacknowledged deliveries,
    // application messages) has been given back.
    for _ in 0..1_000 {
        if broker.sessions_budget.used() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(broker.sessions_budget.used(), 0, "connection charges left");
    // What queues and histories hold stays within their budgets once enforced.
    broker.sweep();
    let cfg = &broker.config.broker;
    assert!(
        broker.queues.bytes() <= cfg.max_pending_total_bytes,
        "queue bytes"
    );
    assert!(
        broker.histories.totals.budget.used() <= cfg.history_max_bytes,
        "history bytes"
    );
    seen
}

/// Reads whatever the session has written so far, without waiting for more.
async fn drain(client: &mut DuplexStream, sink: &mut [u8], seen: &mut Seen) -> std::io::Result<()> {
    // Bounded: the session cannot produce more than its outbox and replies hold anyway.
    for _ in 0..10_000 {
        match tokio::time::timeout(Duration::from_millis(1), client.read(sink)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(n)) => {
                let got = &sink[..n];
                seen.bytes += n;
                seen.messages += got.windows(8).filter(|w| w == b"MESSAGE\n").count();
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

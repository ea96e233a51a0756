//! Hostile clients against the real `stompbox` binary.
//!
//! One broker process (so its resident memory, read from `/proc/<pid>/status`, covers every
//! attack) with small limits, attacked over real sockets on 127.0.0.1 by clients that stall
//! handshakes, never finish frames, send absurd headers, flood subscriptions and connections,
//! break the protocol and never read. After each attack a well-behaved canary must still get
//! its own message back, and the broker's VmRSS must stay under `RSS_LIMIT_KIB`.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broker::client::Client;
use bytes::{Bytes, BytesMut};
use common::WAIT;
use common::process::{BrokerProcess, http_get, rss_kib};
use stomp_codec::{Command, Decoded, Decoder, DecoderConfig, Frame, Version, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

const HANDSHAKE_TIMEOUT_MS: u64 = 500;
const CONNECT_TIMEOUT_MS: u64 = 1000;
const FRAME_TIMEOUT_MS: u64 = 500;
const MAX_CONNECTIONS_PER_IP: usize = 200;
const MAX_SUBSCRIPTIONS: usize = 50;
const MAX_FRAME_SIZE: usize = 65_536;
const MAX_MESSAGE_SIZE: usize = MAX_FRAME_SIZE + 1024;
const OUTBOX_MESSAGES: usize = 64;

/// The bound on the broker's resident memory at every sample.
const RSS_LIMIT_KIB: u64 = 200 * 1024;
/// How long the canary's round trip may take: a deadline, not a performance target.
const CANARY_DEADLINE: Duration = Duration::from_secs(5);
const CANARY_TOPIC: &str = "/topic/canary";

/// Connections opened by the connection flood.
const FLOOD_CONNECTIONS: usize = MAX_CONNECTIONS_PER_IP + 50;
/// Messages and their body size in the never-reading-subscriber flood.
const FLOOD_MESSAGES: usize = 20_000;
const FLOOD_BODY: usize = 1024;

// ---------------------------------------------------------------------------------------------
// The broker process.

fn config_toml(http: u16, tcp: u16) -> String {
    format!(
        r#"
[server]
websocket = "127.0.0.1:{http}"
tcp = "127.0.0.1:{tcp}"
max_connections_per_ip = {MAX_CONNECTIONS_PER_IP}
handshake_timeout_ms = {HANDSHAKE_TIMEOUT_MS}
connect_timeout_ms = {CONNECT_TIMEOUT_MS}
write_timeout_ms = 5000
shutdown_grace_ms = 1000

[websocket]
max_message_size = {MAX_MESSAGE_SIZE}

[stomp]
frame_timeout_ms = {FRAME_TIMEOUT_MS}
max_header_lines = 64
max_frame_size = {MAX_FRAME_SIZE}
max_subscriptions = {MAX_SUBSCRIPTIONS}

[outbox]
max_messages = {OUTBOX_MESSAGES}
max_bytes = 262144

[broker]
slow_consumer = "drop"
"#
    )
}

/// Starts the broker with `config_toml` (see `common::process`).
async fn start_broker() -> BrokerProcess {
    BrokerProcess::start(BIN, "hostile", config_toml).await
}

/// Samples VmRSS (recording the peak) and asserts the bound.
fn sample(b: &mut BrokerProcess, when: &str) -> u64 {
    let kib = b.sample_rss(when);
    assert!(
        kib < RSS_LIMIT_KIB,
        "broker VmRSS {kib} KiB {when} exceeds the bound of {RSS_LIMIT_KIB} KiB"
    );
    kib
}

/// The value of the first sample of `series` in a /metrics text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls /metrics until `series` satisfies `cond` (a connection slot may take a moment to
/// free after a flood), returning its value.
async fn metric_eventually(addr: SocketAddr, series: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Some((200, text)) = http_get(addr, "/metrics").await {
            last = metric(&text, series);
            if last.is_some_and(&cond) {
                return last.unwrap_or_default();
            }
        }
        assert!(
            Instant::now() < deadline,
            "metric {series} never satisfied the condition (last seen {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Well-behaved clients.

/// A client that must keep working whatever the others do: it publishes to a topic it
/// subscribes to, with a receipt, and must get its message back.
struct Canary {
    client: Client,
    sent: u32,
}

impl Canary {
    async fn new(url: &str) -> Self {
        let mut client = ws_session(url).await;
        client
            .subscribe("canary", CANARY_TOPIC, &[])
            .await
            .expect("canary subscribes");
        Self { client, sent: 0 }
    }

    /// One round trip; panics naming `when` if it fails or misses its deadline.
    async fn round_trip(&mut self, when: &str) -> Duration {
        self.sent += 1;
        let body = format!("canary {}", self.sent);
        let receipt = format!("canary-{}", self.sent);
        let started = Instant::now();
        let c = &mut self.client;
        let exchange = async {
            c.send(
                &Frame::new(Command::Send)
                    .header("destination", CANARY_TOPIC)
                    .header("receipt", receipt.clone())
                    .with_body(body.clone()),
            )
            .await?;
            c.receipt(&receipt).await?;
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
        started.elapsed()
    }
}

async fn ws_client(url: &str) -> Client {
    timeout(WAIT, Client::websocket(url, &[]))
        .await
        .expect("websocket handshake in time")
        .expect("websocket connects")
}

async fn ws_session(url: &str) -> Client {
    let mut c = ws_client(url).await;
    c.connect(&[]).await.expect("CONNECTED");
    c
}

fn summary(f: &Frame) -> &str {
    f.headers.get_str("message").unwrap_or("")
}

/// The next frame must be ERROR with `message` `expected`; then the connection must close
/// (with `close_code` for WebSockets). Returns the ERROR.
async fn expect_error_and_close(c: &mut Client, expected: &str, close_code: u16) -> Frame {
    let e = c
        .expect(Command::Error, WAIT)
        .await
        .unwrap_or_else(|err| panic!("expected ERROR {expected:?}: {err}"));
    assert_eq!(summary(&e), expected, "{e:?}");
    let code = c.closed(WAIT).await.expect("closed after the ERROR");
    assert_eq!(
        code,
        Some(close_code),
        "close code after ERROR {expected:?}"
    );
    e
}

fn encode(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode_frame(frame, Version::V1_2, &mut out);
    out.freeze()
}

// ---------------------------------------------------------------------------------------------
// Raw STOMP over TCP, with separate read and write halves so an attacker can keep writing
// while it reads what the broker answers.

struct RawReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
}

impl RawReader {
    fn new(rd: OwnedReadHalf) -> Self {
        Self {
            rd,
            buf: BytesMut::new(),
            decoder: Decoder::new(DecoderConfig::default()),
        }
    }

    /// The next frame, or why none came: "closed", a read error, or a timeout.
    async fn frame(&mut self, wait: Duration) -> Result<Frame, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Decoded::Frame(f))) => return Ok(f),
                Ok(Some(Decoded::Heartbeat)) => continue,
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable bytes from the broker: {e}")),
            }
            self.buf.reserve(8192);
            match tokio::time::timeout_at(deadline, self.rd.read_buf(&mut self.buf)).await {
                Err(_) => return Err("timed out".into()),
                Ok(Ok(0)) => return Err("closed".into()),
                Ok(Err(e)) => return Err(format!("read error: {e}")),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// A raw TCP STOMP session: CONNECTed, CONNECTED read.
async fn raw_session(addr: SocketAddr) -> (RawReader, OwnedWriteHalf) {
    let s = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("tcp connect in time")
        .expect("tcp connects");
    let _ = s.set_nodelay(true);
    let (rd, mut wr) = s.into_split();
    wr.write_all(b"CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0")
        .await
        .unwrap();
    let mut rd = RawReader::new(rd);
    let f = rd.frame(WAIT).await.expect("CONNECTED");
    assert_eq!(f.command, Command::Connected, "{f:?}");
    (rd, wr)
}

// ---------------------------------------------------------------------------------------------
// The attacks. Each asserts the documented outcome; the caller checks the canary and memory.

/// Scenario 1: an HTTP request head trickled one header line every 200 ms, never finished.
async fn slowloris_handshake(b: &BrokerProcess) {
    let s = timeout(WAIT, TcpStream::connect(b.http))
        .await
        .unwrap()
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        if wr
            .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            return;
        }
        // At most 10 s of trickling; the broker should end it long before.
        for i in 0..50 {
            // Pacing the attack, not synchronisation.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let read_to_close = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let got = timeout(Duration::from_secs(3), read_to_close)
        .await
        .expect("the broker closes a slowloris handshake within 3 s");
    let elapsed = started.elapsed();
    writer.abort();
    eprintln!(
        "[hostile] slowloris closed after {elapsed:?}, answer {:?}",
        String::from_utf8_lossy(&got).lines().next().unwrap_or("")
    );
    assert!(
        elapsed >= Duration::from_millis(HANDSHAKE_TIMEOUT_MS * 8 / 10),
        "closed after {elapsed:?}: before the handshake timeout, so not because of it"
    );
    assert!(
        !got.starts_with(b"HTTP/1.1 101"),
        "an unfinished handshake must not be upgraded"
    );
}

/// Scenario 2: a SEND that promises 10 body bytes and sends 3.
async fn frame_never_completed(url: &str) {
    let mut c = ws_session(url).await;
    let started = Instant::now();
    c.send_raw(
        b"SEND\ndestination:/topic/x\ncontent-length:10\n\nabc",
        true,
    )
    .await
    .unwrap();
    let e = expect_error_and_close(&mut c, "frame timeout", 1002).await;
    let elapsed = started.elapsed();
    eprintln!("[hostile] frame timeout after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(FRAME_TIMEOUT_MS * 8 / 10),
        "ERROR after {elapsed:?}, before the frame timeout: {e:?}"
    );
}

/// Scenario 3: one frame with 100,000 header lines, written in chunks over raw TCP.
async fn hundred_thousand_headers(b: &BrokerProcess) {
    let (mut rd, mut wr) = raw_session(b.tcp).await;
    let mut payload = Vec::with_capacity(1 << 20);
    payload.extend_from_slice(b"SEND\ndestination:/topic/x\n");
    for i in 0..100_000 {
        writeln!(payload, "h{i}:v").unwrap();
    }
    payload.extend_from_slice(b"\n\0");
    let total = payload.len();
    let writer = tokio::spawn(async move {
        let mut written = 0;
        for chunk in payload.chunks(16 * 1024) {
            // The broker may close before the end: a failed or stuck write ends the attack.
            match timeout(Duration::from_secs(2), wr.write_all(chunk)).await {
                Ok(Ok(())) => written += chunk.len(),
                _ => break,
            }
        }
        written
    });
    let e = rd.frame(WAIT).await.expect("an ERROR frame");
    assert_eq!(e.command, Command::Error, "{e:?}");
    assert_eq!(summary(&e), "too many headers", "{e:?}");
    let after = rd.frame(WAIT).await;
    assert!(
        matches!(&after, Err(why) if why != "timed out"),
        "the connection closes after the ERROR, got {after:?}"
    );
    let written = timeout(Duration::from_secs(10), writer)
        .await
        .expect("writer ends")
        .unwrap();
    eprintln!("[hostile] 100k headers: wrote {written} of {total} bytes before the close");
}

/// Scenario 4: content-length: 2^63.
async fn huge_content_length(url: &str) {
    let mut c = ws_session(url).await;
    c.send_raw(
        b"SEND\ndestination:/topic/x\ncontent-length:9223372036854775808\n\nabc\0",
        true,
    )
    .await
    .unwrap();
    let e = expect_error_and_close(&mut c, "body too large", 1002).await;
    let detail = String::from_utf8_lossy(&e.body);
    assert!(detail.contains(&MAX_FRAME_SIZE.to_string()), "{detail}");
}

/// Scenario 5: a header that is not UTF-8, in a binary WebSocket message.
async fn invalid_utf8_header(url: &str) {
    let mut c = ws_session(url).await;
    c.send_raw(b"SEND\ndestination:/topic/\xff\xfe\n\nhi\0", false)
        .await
        .unwrap();
    let e = expect_error_and_close(&mut c, "malformed frame", 1002).await;
    let detail = String::from_utf8_lossy(&e.body);
    assert!(detail.contains("UTF-8"), "{detail}");
}

/// Scenario 6: one SUBSCRIBE more than `max_subscriptions`: the last allowed one is
/// confirmed, the next is refused.
async fn subscription_flood(url: &str) {
    let mut c = ws_session(url).await;
    for i in 1..=MAX_SUBSCRIPTIONS + 1 {
        let mut f = Frame::new(Command::Subscribe)
            .header("id", format!("s{i}"))
            .header("destination", format!("/topic/flood/{i}"));
        if i == MAX_SUBSCRIPTIONS {
            f = f.header("receipt", "last-allowed");
        }
        c.feed_raw(encode(&f), true).await.unwrap();
    }
    c.flush().await.unwrap();
    c.receipt("last-allowed")
        .await
        .expect("the subscriptions up to the limit are accepted");
    let e = expect_error_and_close(&mut c, "too many subscriptions", 1002).await;
    let detail = String::from_utf8_lossy(&e.body);
    assert!(detail.contains(&MAX_SUBSCRIPTIONS.to_string()), "{detail}");
}

/// How one flood connection ended within the observation window.
enum FloodOutcome {
    /// Closed without a byte: refused at accept.
    Refused(Duration),
    /// Still open when the window ended: admitted.
    Open(TcpStream),
    /// Anything else (bytes, or a close carrying data) — unexpected this early.
    Other(String),
}

/// Scenario 7: `max_connections_per_ip + 50` raw connections from 127.0.0.1.
async fn connection_flood(b: &BrokerProcess, canary: &mut Canary) {
    // Admitted raw TCP connections are closed by the broker at the CONNECT deadline, so
    // watch each for a shorter window than that.
    let window = Duration::from_millis(CONNECT_TIMEOUT_MS * 6 / 10);
    let mut watchers = Vec::with_capacity(FLOOD_CONNECTIONS);
    for _ in 0..FLOOD_CONNECTIONS {
        let s = timeout(WAIT, TcpStream::connect(b.tcp))
            .await
            .expect("connect in time (the kernel completes it before accept)")
            .expect("connect");
        let opened = Instant::now();
        watchers.push(tokio::spawn(async move {
            let mut s = s;
            let mut byte = [0u8; 1];
            match tokio::time::timeout_at((opened + window).into(), s.read(&mut byte)).await {
                Err(_) => FloodOutcome::Open(s),
                Ok(Ok(0)) | Ok(Err(_)) => FloodOutcome::Refused(opened.elapsed()),
                Ok(Ok(_)) => {
                    FloodOutcome::Other(format!("data after {:?}: {:?}", opened.elapsed(), byte))
                }
            }
        }));
    }
    let mut open = Vec::new();
    let mut refused = Vec::new();
    let mut other = Vec::new();
    for w in watchers {
        match w.await.unwrap() {
            FloodOutcome::Open(s) => open.push(s),
            FloodOutcome::Refused(after) => refused.push(after),
            FloodOutcome::Other(what) => other.push(what),
        }
    }
    let slowest_refusal = refused.iter().max().copied().unwrap_or_default();
    eprintln!(
        "[hostile] connection flood: {} admitted, {} refused (slowest refusal {slowest_refusal:?})",
        open.len(),
        refused.len()
    );
    assert!(other.is_empty(), "unexpected outcomes: {other:?}");
    assert!(
        refused.len() >= FLOOD_CONNECTIONS - MAX_CONNECTIONS_PER_IP,
        "at least the connections beyond the per-address limit are refused"
    );
    assert!(
        open.len() >= MAX_CONNECTIONS_PER_IP - 20,
        "the limit admits up to {MAX_CONNECTIONS_PER_IP} (minus the canary and stragglers), \
         admitted {}",
        open.len()
    );
    // The canary holds its slot and keeps working while the address is at its limit.
    canary.round_trip("during the connection flood").await;
    drop(open);
    let n = metric_eventually(
        b.http,
        "stompbox_connections_refused_total{reason=\"max_connections_per_ip\"}",
        |v| v > 0.0,
    )
    .await;
    assert!(n >= refused.len() as f64, "refusals counted: {n}");
    // A new connection is admitted again once the flood's slots are free.
    let url = format!("ws://{}/ws", b.http);
    let deadline = Instant::now() + WAIT;
    let mut fresh = loop {
        let attempt = async {
            let mut c = Client::websocket(&url, &[]).await.ok()?;
            c.connect(&[]).await.ok()?;
            Some(c)
        };
        if let Ok(Some(c)) = timeout(WAIT, attempt).await {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no new connection admitted after the flood closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    fresh.subscribe("fresh", "/topic/fresh", &[]).await.unwrap();
    fresh.publish("/topic/fresh", "hello").await.unwrap();
    let m = fresh.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(m.body, Bytes::from_static(b"hello"));
}

/// Scenario 8: SEND as the first frame.
async fn send_before_connect(url: &str) {
    let mut c = ws_client(url).await;
    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/x")
            .with_body("early"),
    )
    .await
    .unwrap();
    expect_error_and_close(&mut c, "not connected", 1002).await;
}

/// Scenario 9: an anonymous session subscribing to another user's destination.
async fn another_users_destination(url: &str) {
    let mut c = ws_session(url).await;
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "spy")
            .header("destination", "/user/someone/queue/x")
            .header("receipt", "spy"),
    )
    .await
    .unwrap();
    expect_error_and_close(&mut c, "access denied", 1002).await;
}

/// Scenario 10: one WebSocket message of `max_message_size + 1` bytes.
async fn oversized_websocket_message(url: &str) {
    let mut c = ws_session(url).await;
    let head = b"SEND\ndestination:/topic/x\n\n";
    let mut msg = Vec::with_capacity(MAX_MESSAGE_SIZE + 1);
    msg.extend_from_slice(head);
    msg.resize(MAX_MESSAGE_SIZE, b'x');
    msg.push(0);
    assert_eq!(msg.len(), MAX_MESSAGE_SIZE + 1);
    c.send_raw(&msg, true).await.unwrap();
    let e = expect_error_and_close(&mut c, "message too large", 1009).await;
    let detail = String::from_utf8_lossy(&e.body);
    assert!(detail.contains(&MAX_MESSAGE_SIZE.to_string()), "{detail}");
}

/// Scenario 11: a subscriber that never reads, while a publisher floods its topic with
/// `FLOOD_MESSAGES` × 1 KiB; the canary keeps round-tripping throughout.
async fn never_reading_subscriber(b: &mut BrokerProcess, canary: &mut Canary) {
    const TOPIC: &str = "/topic/flood";
    // A small receive buffer so the broker's writes to it block early.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = timeout(WAIT, socket.connect(b.tcp)).await.unwrap().unwrap();
    let (rd, mut wr) = s.into_split();
    let mut rd = RawReader::new(rd);
    wr.write_all(
        format!(
            "CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0\
             SUBSCRIBE\nid:slow\ndestination:{TOPIC}\nreceipt:live\n\n\0"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let f = rd.frame(WAIT).await.expect("CONNECTED");
    assert_eq!(f.command, Command::Connected, "{f:?}");
    let f = rd.frame(WAIT).await.expect("RECEIPT");
    assert_eq!(f.headers.get_str("receipt-id"), Some("live"), "{f:?}");
    // From here on it never reads again.

    let dropped_series = "stompbox_messages_dropped_total{reason=\"slow_consumer\"}";
    let dropped_before = http_get(b.http, "/metrics")
        .await
        .and_then(|(_, t)| metric(&t, dropped_series))
        .unwrap_or(0.0);

    let rss_before = sample(b, "before the publish flood");
    let url = format!("ws://{}/ws", b.http);
    let mut publisher = ws_session(&url).await;
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let flood = {
        let done = Arc::clone(&done);
        async move {
            let body = "x".repeat(FLOOD_BODY);
            for i in 0..FLOOD_MESSAGES {
                let mut f = Frame::new(Command::Send)
                    .header("destination", TOPIC)
                    .with_body(body.clone());
                if i + 1 == FLOOD_MESSAGES {
                    f = f.header("receipt", "flood-done");
                }
                publisher.feed_raw(encode(&f), true).await.unwrap();
                if i % 100 == 99 {
                    publisher.flush().await.unwrap();
                }
            }
            publisher.flush().await.unwrap();
            publisher
                .receipt("flood-done")
                .await
                .expect("the publisher's last SEND is confirmed");
            done.store(true, Ordering::Release);
            publisher
        }
    };
    let watch = async {
        let mut trips = 0u32;
        let mut slowest = Duration::ZERO;
        let mut peak = 0;
        // Bounded: at most 400 round trips, and each has its own deadline.
        while !done.load(Ordering::Acquire) && trips < 400 {
            slowest = slowest.max(canary.round_trip("during the publish flood").await);
            peak = peak.max(rss_kib(b.pid));
            trips += 1;
            // Pacing the canary so it does not compete with the flood for the broker.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (trips, slowest, peak)
    };
    let (publisher, (trips, slowest, peak)) = match timeout(Duration::from_secs(30), async {
        tokio::join!(flood, watch)
    })
    .await
    {
        Ok(r) => r,
        Err(_) => panic!("the publish flood did not finish within 30 s"),
    };
    let took = started.elapsed();
    b.peak_rss_kib = b.peak_rss_kib.max(peak);
    eprintln!(
        "[hostile] publish flood: {FLOOD_MESSAGES} × {FLOOD_BODY} B in {took:?}; canary {trips} \
         round trips during it, slowest {slowest:?}; VmRSS peak during it {:.1} MiB",
        peak as f64 / 1024.0
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "VmRSS {peak} KiB during the publish flood"
    );
    // The absolute bound alone would not notice a broker that queued the whole flood for the
    // subscriber (20 MiB): growth must stay well below the flood's size.
    let flood_kib = (FLOOD_MESSAGES * FLOOD_BODY / 1024) as u64;
    assert!(
        peak.saturating_sub(rss_before) < flood_kib / 2,
        "VmRSS grew from {rss_before} KiB to {peak} KiB during a flood of {flood_kib} KiB to a \
         subscriber whose outbox holds {OUTBOX_MESSAGES} messages"
    );
    let dropped = metric_eventually(b.http, dropped_series, |v| v > dropped_before).await;
    eprintln!(
        "[hostile] deliveries dropped for the slow subscriber: {}",
        dropped - dropped_before
    );
    drop(publisher);
    drop((rd, wr));
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_neither_crash_nor_starve_the_broker() {
    let test_started = Instant::now();
    let mut b = start_broker().await;
    let url = format!("ws://{}/ws", b.http);
    sample(&mut b, "at start");
    let mut canary = Canary::new(&url).await;
    canary.round_trip("at start").await;

    slowloris_handshake(&b).await;
    after(&mut b, &mut canary, "1 slowloris handshake").await;

    frame_never_completed(&url).await;
    after(&mut b, &mut canary, "2 frame never completed").await;

    hundred_thousand_headers(&b).await;
    after(&mut b, &mut canary, "3 100,000 headers").await;

    huge_content_length(&url).await;
    after(&mut b, &mut canary, "4 content-length 2^63").await;

    invalid_utf8_header(&url).await;
    after(&mut b, &mut canary, "5 invalid UTF-8 header").await;

    subscription_flood(&url).await;
    after(&mut b, &mut canary, "6 subscription flood").await;

    connection_flood(&b, &mut canary).await;
    after(&mut b, &mut canary, "7 connection flood").await;

    send_before_connect(&url).await;
    after(&mut b, &mut canary, "8 SEND before CONNECT").await;

    another_users_destination(&url).await;
    after(&mut b, &mut canary, "9 another user's destination").await;

    oversized_websocket_message(&url).await;
    after(&mut b, &mut canary, "10 oversized WebSocket message").await;

    never_reading_subscriber(&mut b, &mut canary).await;
    after(&mut b, &mut canary, "11 never-reading subscriber").await;

    let log = b.log_text();
    assert!(
        !log.contains("panicked"),
        "the broker logged a panic:\n{log}"
    );
    eprintln!(
        "[hostile] all scenarios passed in {:?}; broker VmRSS peak {:.1} MiB (bound {} MiB)",
        test_started.elapsed(),
        b.peak_rss_kib as f64 / 1024.0,
        RSS_LIMIT_KIB / 1024
    );
}

/// After each attack: the canary still round-trips and memory is within its bound.
async fn after(b: &mut BrokerProcess, canary: &mut Canary, scenario: &str) {
    let when = format!("after scenario {scenario}");
    let took = canary.round_trip(&when).await;
    eprintln!("[hostile] {when}: canary round trip {took:?}");
    sample(b, &when);
}

/// A well-behaved publisher that streams complete frames without pause through a buffered
/// writer (as Java's `BufferedOutputStream` or Go's `bufio.Writer` do: fixed-size writes that
/// ignore frame boundaries) must not get "frame timeout": every frame it starts is finished
/// within a millisecond. Each 8 KiB write ends inside a frame, so the broker's read buffer is
/// never empty after a read, even though no frame is ever incomplete for long: the frame
/// deadline must restart with each frame, not run from the first partial one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_streaming_whole_frames_through_a_buffered_writer_is_not_timed_out() {
    let b = start_broker().await;
    let mut canary = Canary::new(&format!("ws://{}/ws", b.http)).await;
    let mut publisher = Client::tcp(b.tcp).await.unwrap();
    publisher.connect(&[]).await.unwrap();
    // An odd frame length: 8 KiB write boundaries never fall on a frame boundary until
    // `frame.len()` writes have gone by.
    let mut body_len = 1000;
    let frame = loop {
        let f = encode(
            &Frame::new(Command::Send)
                .header("destination", "/topic/stream")
                .with_body("y".repeat(body_len)),
        );
        if f.len() % 2 == 1 {
            break f;
        }
        body_len += 1;
    };
    let stream_for = Duration::from_millis(FRAME_TIMEOUT_MS * 4);
    let started = Instant::now();
    let mut offset = 0;
    let mut writes = 0u32;
    // Bounded by time and by count (well under `frame.len()` writes).
    while started.elapsed() < stream_for && writes < 1000 {
        let mut chunk = Vec::with_capacity(8192);
        while chunk.len() < 8192 {
            let take = (8192 - chunk.len()).min(frame.len() - offset);
            chunk.extend_from_slice(&frame[offset..offset + take]);
            offset = (offset + take) % frame.len();
        }
        if let Err(e) = publisher.send_raw(&chunk, false).await {
            panic!(
                "the broker dropped the publisher after {:?} ({writes} writes): {e}; it said {:?}",
                started.elapsed(),
                publisher.frame(WAIT).await
            );
        }
        writes += 1;
        // Pacing: a steady stream, well within what the broker can take.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Finish the frame in progress, then confirm with a receipt.
    publisher
        .send_raw(&frame[offset..], false)
        .await
        .expect("finish the last frame");
    publisher
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/stream")
                .header("receipt", "end"),
        )
        .await
        .expect("the publisher is still connected");
    let f = publisher.frame(WAIT).await.expect("an answer");
    assert_eq!(
        f.headers.get_str("receipt-id"),
        Some("end"),
        "a publisher finishing every frame within a millisecond got {:?} {:?} after \
         streaming {writes} writes for {:?}",
        summary(&f),
        String::from_utf8_lossy(&f.body),
        started.elapsed()
    );
    canary.round_trip("after the streaming publisher").await;
}

//! Shared helpers for the end-to-end tests: an in-process broker on free ports, clients, and
//! bounded waits.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use broker::client::Client;
use broker::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker on 127.0.0.1 with free ports for WebSocket and TCP, configured by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::default();
    config.server.websocket = "127.0.0.1:0".parse().unwrap();
    config.server.tcp = Some("127.0.0.1:0".parse().unwrap());
    tweak(&mut config);
    Server::start(config).await.expect("broker starts")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a process started with a config).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The WebSocket URL of a server.
pub fn ws_url(server: &Server) -> String {
    format!("ws://{}/ws", server.http_addr())
}

/// A WebSocket client, not yet STOMP-connected.
pub async fn ws(server: &Server) -> Client {
    Client::websocket(&ws_url(server), &[])
        .await
        .expect("websocket connects")
}

/// A TCP client, not yet STOMP-connected.
pub async fn tcp(server: &Server) -> Client {
    Client::tcp(server.tcp_addr().expect("tcp enabled"))
        .await
        .expect("tcp connects")
}

/// A STOMP 1.2 session over WebSocket.
pub async fn ws_session(server: &Server) -> Client {
    let mut c = ws(server).await;
    c.connect(&[]).await.expect("CONNECTED");
    c
}

/// A STOMP 1.2 session over TCP.
pub async fn tcp_session(server: &Server) -> Client {
    let mut c = tcp(server).await;
    c.connect(&[]).await.expect("CONNECTED");
    c
}

/// A plain HTTP GET; returns (status, headers+body text).
pub async fn http_get(addr: SocketAddr, path: &str, extra_headers: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            // A 101 answer keeps the connection open: its head is all there is to read.
            if out.starts_with(b"HTTP/1.1 101") && out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("http response in time");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Reads a metric's value from /metrics (first sample whose line starts with `series`).
pub async fn metric(server: &Server, series: &str) -> f64 {
    let (_, text) = http_get(server.http_addr(), "/metrics", "").await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `cond` every few milliseconds until it holds or `WAIT` passes.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        poll.tick().await;
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
    }
}

/// What a test backend answers: status, body, and how long it waits first.
pub struct BackendAnswer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

/// An HTTP/1.1 backend on 127.0.0.1 that hands each POSTed JSON body to `answer` and records
/// the requests it got. Enough HTTP for the broker's client: one request per connection or
/// keep-alive, Content-Length bodies.
pub async fn spawn_backend(
    answer: impl Fn(&serde_json::Value) -> BackendAnswer + Send + Sync + 'static,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let answer = std::sync::Arc::new(answer);
    let seen2 = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let answer = std::sync::Arc::clone(&answer);
            let seen = std::sync::Arc::clone(&seen2);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Read one request: head, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
                    buf.drain(..head_end + len);
                    seen.lock().unwrap().push(body.clone());
                    let a = answer(&body);
                    if !a.delay.is_zero() {
                        // The behaviour under test (a slow backend), not synchronisation.
                        tokio::time::sleep(a.delay).await;
                    }
                    let resp = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                        a.status,
                        a.body.len(),
                        a.body
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/hook"), seen)
}

/// A `[[destinations]]` rule making `pattern` a queue-mode destination.
pub fn queue_rule(pattern: &str, max_pending: Option<usize>) -> broker::config::DestinationRule {
    broker::config::DestinationRule {
        pattern: pattern.into(),
        mode: broker::config::DestinationMode::Queue,
        slow_consumer: None,
        max_pending,
        ..Default::default()
    }
}

/// Asserts nothing but heart-beats arrives before a receipt round trip: everything routed to
/// this connection before the fence would have come first.
pub async fn assert_quiet(c: &mut Client) {
    use broker::client::Event;
    use stomp_codec::{Command, Frame};
    c.send(
        &Frame::new(Command::Send)
            .header("destination", "/topic/fence")
            .header("receipt", "fence"),
    )
    .await
    .unwrap();
    loop {
        match c.next_event(WAIT).await.unwrap() {
            Event::Frame(f) if f.command == Command::Receipt => return,
            Event::Heartbeat => {}
            other => panic!("nothing expected before the fence, got {other:?}"),
        }
    }
}

/// An access rule for `pattern`: who may subscribe and who may publish (`None`: left to later
/// rules).
pub fn rule(
    pattern: &str,
    subscribe: Option<&[&str]>,
    publish: Option<&[&str]>,
) -> broker::config::AccessRule {
    let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| s.to_string()).collect());
    broker::config::AccessRule {
        pattern: pattern.into(),
        subscribe: list(subscribe),
        publish: list(publish),
    }
}

/// A static user whose password is `pw`.
pub fn user(name: &str, roles: &[&str]) -> broker::config::StaticUser {
    broker::config::StaticUser {
        name: name.into(),
        password_hash: broker::auth::hash_password("pw").unwrap(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

/// A WebSocket session logged in as `name` (password `pw`).
pub async fn login(server: &Server, name: &str) -> Client {
    let mut c = ws(server).await;
    c.connect(&[("login", name), ("passcode", "pw")])
        .await
        .expect("CONNECTED");
    c
}

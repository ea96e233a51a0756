//! The SockJS endpoint at the protocol level, over real sockets: /info and CORS, each
//! transport's framing, xhr_send's answers, one receiver at a time, abandoned sessions
//! reaped, the per-address limit, the streaming byte limit, and SockJS's own WebSocket.
//! (tests/stompjs/test/sockjs.test.js drives the real sockjs-client on each transport.)

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use stomp_codec::Headers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const CONNECT: &str = r#"["CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\u0000"]"#;

/// Sends one HTTP/1.1 request (Connection: close) and reads the whole response.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

/// Joins a chunked body's chunks (hyper chunks streamed responses); an incomplete last
/// chunk contributes what has arrived.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    for _ in 0..100_000 {
        let Some((size, after)) = rest.split_once("\r\n") else {
            break;
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            break;
        }
        if after.len() < n {
            out.push_str(after);
            break;
        }
        out.push_str(&after[..n]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// A streaming response being read as it arrives.
struct Stream {
    s: TcpStream,
    got: String,
}

impl Stream {
    async fn open(addr: SocketAddr, method: &str, path: &str) -> Self {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        Self {
            s,
            got: String::new(),
        }
    }

    /// The response body so far, de-chunked.
    fn body(&self) -> String {
        self.got
            .split_once("\r\n\r\n")
            .map_or_else(String::new, |(_, b)| dechunk(b))
    }

    /// Reads until `needle` has arrived in the body (or fails at the deadline).
    async fn until(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut buf = vec![0u8; 65536];
        while !self.body().contains(needle) {
            let n = tokio::time::timeout_at(deadline, self.s.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", self.body()))
                .unwrap();
            assert!(n > 0, "ended before {needle:?}: {:?}", self.body());
            self.got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// Reads to the end of the response; returns everything read.
    async fn read_to_end(mut self) -> String {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, self.s.read_to_end(&mut rest))
            .await
            .expect("the response ends")
            .unwrap();
        self.got.push_str(&String::from_utf8_lossy(&rest));
        self.body()
    }
}

async fn send(addr: SocketAddr, session: &str, body: &str) -> u16 {
    request(
        addr,
        "POST",
        &format!("/ws/000/{session}/xhr_send"),
        "",
        body,
    )
    .await
    .0
}

async fn poll(addr: SocketAddr, session: &str) -> String {
    request(addr, "POST", &format!("/ws/000/{session}/xhr"), "", "")
        .await
        .2
}

#[tokio::test]
async fn info_welcome_and_cors() {
    let server =
        start(|c| c.websocket.allowed_origins = vec!["https://app.example.com".into()]).await;
    let addr = server.http_addr();
    let (status, head, body) = request(addr, "GET", "/ws/info", "", "").await;
    assert_eq!(status, 200, "{head}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["websocket"], true);
    assert!(info["entropy"].is_number());
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: no-store")
    );

    let (status, head, _) = request(
        addr,
        "GET",
        "/ws/info",
        "Origin: https://app.example.com\r\n",
        "",
    )
    .await;
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("access-control-allow-origin: https://app.example.com"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-credentials: true"),
        "{head}"
    );
    let (status, _, _) = request(
        addr,
        "GET",
        "/ws/info",
        "Origin: https://evil.example.net\r\n",
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (status, head, _) = request(
        addr,
        "OPTIONS",
        "/ws/000/abc/xhr",
        "Origin: https://app.example.com\r\nAccess-Control-Request-Headers: content-type\r\n",
        "",
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-headers: content-type")
    );
    let (status, _, body) = request(addr, "GET", "/ws", "", "").await;
    assert_eq!((status, body.as_str()), (200, "Welcome to SockJS!\n"));
    let (status, _, body) = request(addr, "GET", "/ws/iframe.html", "", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("sockjs-client"));
}

#[tokio::test]
async fn xhr_polling_carries_a_stomp_session() {
    let server = start(|_| {}).await;
    let addr = server.http_addr();
    assert_eq!(poll(addr, "p1").await, "o\n");
    assert_eq!(send(addr, "p1", CONNECT).await, 204);
    let got = poll(addr, "p1").await;
    assert!(got.starts_with(r#"a["CONNECTED\nversion:1.2\n"#), "{got}");
    assert!(got.ends_with("\\u0000\"]\n"), "{got}");
    assert_eq!(
        send(
            addr,
            "p1",
            r#"["SUBSCRIBE\nid:0\ndestination:/topic/s\nreceipt:r\n\n\u0000","SEND\ndestination:/topic/s\n\nhi \"there\"\u0000"]"#
        )
        .await,
        204
    );
    let mut seen = String::new();
    for _ in 0..20 {
        seen.push_str(&poll(addr, "p1").await);
        if seen.contains("MESSAGE") {
            break;
        }
    }
    assert!(seen.contains(r#"RECEIPT\nreceipt-id:r\n"#), "{seen}");
    assert!(seen.contains(r#"\n\nhi \"there\"\u0000"#), "{seen}");
    // DISCONNECT: the receipt, then the close frame.
    assert_eq!(
        send(addr, "p1", r#"["DISCONNECT\nreceipt:bye\n\n\u0000"]"#).await,
        204
    );
    let mut tail = String::new();
    for _ in 0..20 {
        tail.push_str(&poll(addr, "p1").await);
        if tail.contains("c[") {
            break;
        }
    }
    assert!(tail.contains("receipt-id:bye"), "{tail}");
    assert!(tail.contains(r#"c[1000,"Normal closure"]"#), "{tail}");
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let server = start(|_| {}).await;
    let addr = server.http_addr();
    assert_eq!(send(addr, "nobody", r#"["x"]"#).await, 404);
    assert_eq!(poll(addr, "b1").await, "o\n");
    let (status, _, body) = request(addr, "POST", "/ws/000/b1/xhr_send", "", "[not json").await;
    assert_eq!((status, body.as_str()), (500, "Broken JSON encoding."));
    let (status, _, body) = request(addr, "POST", "/ws/000/b1/xhr_send", "", "").await;
    assert_eq!((status, body.as_str()), (500, "Payload expected."));
    let (status, _, _) = request(addr, "GET", "/ws/000/b1/xhr", "", "").await;
    assert_eq!(status, 405);
    let (status, _, _) = request(addr, "POST", "/ws/000/b1/jsonp", "", "").await;
    assert_eq!(status, 404);
    let (status, _, _) = request(addr, "POST", "/ws/000/a.b/xhr", "", "").await;
    assert_eq!(status, 404);
    // Another transport naming an existing session is refused.
    let (status, _, _) = request(addr, "POST", "/ws/000/b1/xhr_streaming", "", "").await;
    assert_eq!(status, 404);
    let (status, _, body) = request(addr, "GET", "/ws/000/h1/htmlfile", "", "").await;
    assert_eq!(
        (status, body.as_str()),
        (500, "\"callback\" parameter required\n")
    );
    // An oversized xhr_send.
    let big = format!("[\"{}\"]", "x".repeat(500_000));
    let (status, _, _) = request(addr, "POST", "/ws/000/b1/xhr_send", "", &big).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn streaming_transports_frame_and_one_receiver_at_a_time() {
    let server = start(|c| c.sockjs.streaming_bytes_limit = 4096).await;
    let addr = server.http_addr();

    let mut es = Stream::open(addr, "GET", "/ws/000/e1/eventsource").await;
    es.until("data: o\r\n\r\n").await;
    assert!(
        es.got
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    assert_eq!(send(addr, "e1", CONNECT).await, 204);
    es.until("data: a[\"CONNECTED").await;

    let mut html = Stream::open(addr, "GET", "/ws/000/f1/htmlfile?c=cb").await;
    html.until("<script>\np(\"o\");\n</script>").await;
    assert!(html.got.contains("parent.cb"));

    let mut xs = Stream::open(addr, "POST", "/ws/000/x1/xhr_streaming").await;
    xs.until(&format!("{}\no\n", "h".repeat(2048))).await;
    // A second receiver on the same session is told to go away.
    let second = Stream::open(addr, "POST", "/ws/000/x1/xhr_streaming")
        .await
        .read_to_end()
        .await;
    assert!(
        second.contains(r#"c[2010,"Another connection still open"]"#),
        "{second}"
    );
    // Past the byte limit the response ends, and the client opens a new one.
    assert_eq!(send(addr, "x1", CONNECT).await, 204);
    assert_eq!(
        send(
            addr,
            "x1",
            r#"["SUBSCRIBE\nid:0\ndestination:/topic/big\nreceipt:r\n\n\u0000"]"#
        )
        .await,
        204
    );
    xs.until("receipt-id:r").await;
    for i in 0..10 {
        server
            .broker()
            .publish(
                "/topic/big",
                &Headers::new(),
                Bytes::from(format!("{i}{}", "y".repeat(1000))),
            )
            .unwrap();
    }
    // The response ends once past the limit (read_to_end fails otherwise).
    let all = xs.read_to_end().await;
    assert!(all.contains("MESSAGE"), "{all}");
    let mut next = Stream::open(addr, "POST", "/ws/000/x1/xhr_streaming").await;
    server
        .broker()
        .publish(
            "/topic/big",
            &Headers::new(),
            Bytes::from_static(b"the last one"),
        )
        .unwrap();
    next.until("the last one").await;
}

#[tokio::test]
async fn abandoned_sessions_are_reaped_and_release_their_slot() {
    let server = start(|c| {
        c.sockjs.disconnect_delay_ms = 200;
        c.server.max_connections_per_ip = 3;
    })
    .await;
    let addr = server.http_addr();
    assert_eq!(poll(addr, "r1").await, "o\n");
    assert_eq!(poll(addr, "r2").await, "o\n");
    // Two sessions and this request's connection: the third session does not fit.
    let (status, _, _) = request(addr, "POST", "/ws/000/r3/xhr", "", "").await;
    assert_eq!(status, 503);
    eventually("abandoned sessions are reaped", || async {
        server.broker().sockjs.is_empty() && server.broker().metrics.connections.get() == 0
    })
    .await;
    assert_eq!(poll(addr, "r3").await, "o\n");
    // A reaped session is gone.
    assert_eq!(send(addr, "r1", r#"["x"]"#).await, 404);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message, or "close <code>", or `None` when the stream ends.
async fn next_text(ws: &mut Ws) -> Option<String> {
    let f = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Some(t.as_str().to_owned()),
                Some(Ok(Message::Close(c))) => {
                    return c.map(|c| format!("close {}", u16::from(c.code)));
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    };
    tokio::time::timeout(WAIT, f)
        .await
        .expect("a message in time")
}

#[tokio::test]
async fn sockjs_websocket_transport() {
    let server = start(|_| {}).await;
    let url = format!("ws://{}/ws/000/w1/websocket", server.http_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    ws.send(Message::text(CONNECT)).await.unwrap();
    let connected = next_text(&mut ws).await.unwrap();
    assert!(connected.starts_with(r#"a["CONNECTED\n"#), "{connected}");
    ws.send(Message::text("{broken")).await.unwrap();
    let mut closed = None;
    for _ in 0..5 {
        match next_text(&mut ws).await {
            Some(t) if t.starts_with("close") => {
                closed = Some(t);
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert_eq!(closed.as_deref(), Some("close 1007"));
    // The raw endpoint under the SockJS path is plain STOMP over WebSocket.
    let mut raw = broker::client::Client::websocket(
        &format!("ws://{}/ws/websocket", server.http_addr()),
        &[],
    )
    .await
    .unwrap();
    raw.connect(&[]).await.unwrap();
}

#[tokio::test]
async fn sockjs_heartbeats_only_without_stomp_heart_beats() {
    let server = start(|c| {
        c.sockjs.heartbeat_ms = 200;
        c.stomp.heartbeat = [300, 0];
    })
    .await;
    let addr = server.http_addr();
    // No STOMP heart-beats negotiated: an idle poll ends with a SockJS heartbeat.
    assert_eq!(poll(addr, "hb1").await, "o\n");
    assert_eq!(send(addr, "hb1", CONNECT).await, 204);
    assert!(poll(addr, "hb1").await.starts_with("a[\"CONNECTED"));
    assert_eq!(poll(addr, "hb1").await, "h\n");
    // STOMP heart-beats negotiated (the broker sends every 300 ms): those keep the
    // connection alive, and SockJS sends none of its own.
    assert_eq!(poll(addr, "hb2").await, "o\n");
    let connect = r#"["CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,300\n\n\u0000"]"#;
    assert_eq!(send(addr, "hb2", connect).await, 204);
    assert!(poll(addr, "hb2").await.starts_with("a[\"CONNECTED"));
    for _ in 0..3 {
        assert_eq!(poll(addr, "hb2").await, "a[\"\\n\"]\n");
    }
}

#[tokio::test]
async fn a_stream_whose_client_left_frees_the_session_for_the_next() {
    let server = start(|_| {}).await;
    let addr = server.http_addr();
    let mut first = Stream::open(addr, "POST", "/ws/000/gone1/xhr_streaming").await;
    first.until("o\n").await;
    assert_eq!(send(addr, "gone1", CONNECT).await, 204);
    first.until("CONNECTED").await;
    assert_eq!(
        send(
            addr,
            "gone1",
            r#"["SUBSCRIBE\nid:0\ndestination:/topic/g\nreceipt:r\n\n\u0000"]"#
        )
        .await,
        204
    );
    first.until("receipt-id:r").await;
    // The client's stream goes away. The broker lets go of it at once (rather than holding
    // the session's only receiving slot until a write fails), so the client's next stream is
    // accepted and gets what is published next.
    drop(first);
    let mut next = None;
    for _ in 0..50 {
        let mut probe = Stream::open(addr, "POST", "/ws/000/gone1/xhr_streaming").await;
        probe.until("hhhh").await;
        let busy =
            tokio::time::timeout(std::time::Duration::from_millis(100), probe.until("c[2010"))
                .await
                .is_ok();
        if !busy {
            next = Some(probe);
            break;
        }
    }
    let mut next = next.expect("a new stream is accepted once the old one is gone");
    server
        .broker()
        .publish(
            "/topic/g",
            &Headers::new(),
            Bytes::from_static(b"kept for you"),
        )
        .unwrap();
    next.until("kept for you").await;
}

//! A small STOMP client over WebSocket or TCP, built on the same codec as the broker.
//!
//! The integration tests drive the broker through it, and the load tool will too. It is
//! deliberately low level: frames in, frames out, plus helpers for the common exchanges.

use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use stomp_codec::{
    Command, DecodeError, Decoded, Decoder, DecoderConfig, Frame, Version, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made or broke.
    #[error("transport: {0}")]
    Transport(String),
    /// The server sent bytes that are not STOMP.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// Nothing arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Something other than what was expected arrived.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

type Result<T> = std::result::Result<T, ClientError>;

/// What the client observed next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frame.
    Frame(Frame),
    /// A heart-beat EOL.
    Heartbeat,
    /// The connection closed; for WebSockets, with the close code if one was sent.
    Closed(Option<u16>),
}

enum Link {
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
    Tcp(TcpStream),
}

/// A STOMP client connection.
pub struct Client {
    link: Link,
    decoder: Decoder,
    buf: BytesMut,
    version: Version,
    closed: Option<Option<u16>>,
    /// The subprotocol the server chose, for WebSocket connections.
    pub subprotocol: Option<String>,
    /// Whether the last WebSocket data message received was binary (false for text).
    pub last_binary: bool,
    /// MESSAGE frames that arrived while waiting for a RECEIPT, handed out next.
    stash: std::collections::VecDeque<Frame>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("version", &self.version)
            .finish()
    }
}

fn io_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

impl Client {
    /// Opens a WebSocket to `url`, offering `subprotocols` (the STOMP ones when empty).
    pub async fn websocket(url: &str, subprotocols: &[&str]) -> Result<Self> {
        Self::websocket_full(url, subprotocols, &[]).await
    }

    /// Opens a WebSocket with extra handshake headers (e.g. `Authorization`).
    pub async fn websocket_with_headers(url: &str, headers: &[(&str, &str)]) -> Result<Self> {
        Self::websocket_full(url, &[], headers).await
    }

    async fn websocket_full(
        url: &str,
        subprotocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<Self> {
        let mut req = url.into_client_request().map_err(io_err)?;
        for (name, value) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(io_err)?;
            req.headers_mut()
                .insert(name, HeaderValue::from_str(value).map_err(io_err)?);
        }
        let offer = if subprotocols.is_empty() {
            "v12.stomp, v11.stomp, v10.stomp".to_owned()
        } else {
            subprotocols.join(", ")
        };
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&offer).map_err(io_err)?,
        );
        let (ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(io_err)?;
        let subprotocol = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self::new(Link::Ws(Box::new(ws)), subprotocol))
    }

    /// Opens a raw STOMP connection over TCP.
    pub async fn tcp(addr: std::net::SocketAddr) -> Result<Self> {
        let s = TcpStream::connect(addr).await.map_err(io_err)?;
        let _ = s.set_nodelay(true);
        Ok(Self::new(Link::Tcp(s), None))
    }

    fn new(link: Link, subprotocol: Option<String>) -> Self {
        Self {
            link,
            decoder: Decoder::new(
                DecoderConfig::default()
                    .max_frame_size(64 * 1024 * 1024)
                    .max_body_size(64 * 1024 * 1024)
                    .max_header_lines(4096),
            ),
            buf: BytesMut::new(),
            version: Version::V1_2,
            closed: None,
            subprotocol,
            last_binary: false,
            stash: Default::default(),
        }
    }

    /// Sets the version used to escape outgoing and unescape incoming headers.
    pub fn set_version(&mut self, v: Version) {
        self.version = v;
        self.decoder.set_version(v);
    }

    /// Sends a frame (one WebSocket text message, or bytes on TCP).
    pub async fn send(&mut self, frame: &Frame) -> Result<()> {
        let mut out = BytesMut::new();
        encode_frame(frame, self.version, &mut out);
        self.send_raw(&out, std::str::from_utf8(&out).is_ok()).await
    }

    /// Queues raw bytes as one WebSocket message (or bytes on TCP) without flushing; `flush`
    /// writes everything queued. For load generation, where one write per message would
    /// measure the client's syscalls rather than the broker.
    pub async fn feed_raw(&mut self, bytes: bytes::Bytes, text: bool) -> Result<()> {
        match &mut self.link {
            Link::Ws(ws) => {
                let msg = if text {
                    match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(bytes.clone()) {
                        Ok(t) => Message::Text(t),
                        Err(_) => Message::Binary(bytes),
                    }
                } else {
                    Message::Binary(bytes)
                };
                ws.feed(msg).await.map_err(io_err)
            }
            Link::Tcp(s) => s.write_all(&bytes).await.map_err(io_err),
        }
    }

    /// Writes everything `feed_raw` queued.
    pub async fn flush(&mut self) -> Result<()> {
        match &mut self.link {
            Link::Ws(ws) => ws.flush().await.map_err(io_err),
            Link::Tcp(s) => s.flush().await.map_err(io_err),
        }
    }

    /// Sends raw bytes: one WebSocket message (text or binary), or bytes on TCP.
    pub async fn send_raw(&mut self, bytes: &[u8], text: bool) -> Result<()> {
        match &mut self.link {
            Link::Ws(ws) => {
                let msg = if text {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => Message::text(s),
                        Err(_) => Message::binary(bytes.to_vec()),
                    }
                } else {
                    Message::binary(bytes.to_vec())
                };
                ws.send(msg).await.map_err(io_err)
            }
            Link::Tcp(s) => s.write_all(bytes).await.map_err(io_err),
        }
    }

    /// The next event, waiting at most `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Event> {
        tokio::time::timeout(wait, self.next_event_inner())
            .await
            .map_err(|_| ClientError::Timeout("an event"))?
    }

    async fn next_event_inner(&mut self) -> Result<Event> {
        if let Some(f) = self.stash.pop_front() {
            return Ok(Event::Frame(f));
        }
        loop {
            if let Some(d) = self.decoder.decode(&mut self.buf)? {
                return Ok(match d {
                    Decoded::Frame(f) => Event::Frame(f),
                    Decoded::Heartbeat => Event::Heartbeat,
                });
            }
            if let Some(code) = self.closed {
                return Ok(Event::Closed(code));
            }
            match &mut self.link {
                Link::Ws(ws) => match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        self.last_binary = false;
                        self.buf.extend_from_slice(t.as_bytes());
                    }
                    Some(Ok(Message::Binary(b))) => {
                        self.last_binary = true;
                        self.buf.extend_from_slice(&b);
                    }
                    Some(Ok(Message::Close(c))) => {
                        self.closed = Some(c.map(|c| u16::from(c.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) | None => {
                        self.closed = Some(self.closed.flatten());
                    }
                    Some(Err(e)) => {
                        let _ = e;
                        self.closed = Some(None);
                    }
                },
                Link::Tcp(s) => {
                    self.buf.reserve(8192);
                    match s.read_buf(&mut self.buf).await {
                        Ok(0) | Err(_) => self.closed = Some(None),
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// The next frame, skipping heart-beats; an error if the connection closes first.
    pub async fn frame(&mut self, wait: Duration) -> Result<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                Event::Frame(f) => return Ok(f),
                Event::Heartbeat => {}
                Event::Closed(code) => {
                    return Err(ClientError::Unexpected(format!("closed ({code:?})")));
                }
            }
        }
    }

    /// The next frame, which must have `command`.
    pub async fn expect(&mut self, command: Command, wait: Duration) -> Result<Frame> {
        let f = self.frame(wait).await?;
        if f.command != command {
            return Err(ClientError::Unexpected(format!(
                "expected {}, got {} {:?} {:?}",
                command.as_str(),
                f.command.as_str(),
                f.headers,
                String::from_utf8_lossy(&f.body)
            )));
        }
        Ok(f)
    }

    /// Waits for the connection to close, skipping anything else, and returns the close code.
    pub async fn closed(&mut self, wait: Duration) -> Result<Option<u16>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Event::Closed(code) = self.next_event(left).await? {
                return Ok(code);
            }
        }
    }

    /// CONNECT with `accept-version:1.2` (unless given), extra headers, and wait for CONNECTED.
    pub async fn connect(&mut self, headers: &[(&str, &str)]) -> Result<Frame> {
        self.connect_within(headers, Duration::from_secs(5)).await
    }

    /// As `connect`, waiting up to `wait` for CONNECTED (a broker under load may take longer).
    pub async fn connect_within(
        &mut self,
        headers: &[(&str, &str)],
        wait: Duration,
    ) -> Result<Frame> {
        let mut f = Frame::new(Command::Connect);
        if !headers.iter().any(|(n, _)| *n == "accept-version") {
            f = f.header("accept-version", "1.2");
        }
        if !headers.iter().any(|(n, _)| *n == "heart-beat") {
            f = f.header("heart-beat", "0,0");
        }
        for (n, v) in headers {
            f = f.header(n.to_string(), v.to_string());
        }
        self.send(&f).await?;
        let connected = self.expect(Command::Connected, wait).await?;
        let v = connected
            .headers
            .get_str("version")
            .and_then(Version::parse)
            .unwrap_or(Version::V1_0);
        self.set_version(v);
        Ok(connected)
    }

    /// SUBSCRIBE with a receipt, waiting for the RECEIPT so the subscription is live.
    pub async fn subscribe(
        &mut self,
        id: &str,
        destination: &str,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        let receipt = format!("sub-{id}");
        let mut f = Frame::new(Command::Subscribe)
            .header("id", id.to_owned())
            .header("destination", destination.to_owned())
            .header("receipt", receipt.clone());
        for (n, v) in extra {
            f = f.header(n.to_string(), v.to_string());
        }
        self.send(&f).await?;
        self.receipt(&receipt).await
    }

    /// Waits for the RECEIPT with `id`, failing on anything else but MESSAGE frames, which are
    /// kept and returned by the next reads.
    pub async fn receipt(&mut self, id: &str) -> Result<()> {
        let mut kept = Vec::new();
        let result = loop {
            let f = match self.frame(Duration::from_secs(5)).await {
                Ok(f) => f,
                Err(e) => break Err(e),
            };
            match f.command {
                Command::Receipt if f.headers.get_str("receipt-id") == Some(id) => break Ok(()),
                Command::Message => kept.push(f),
                _ => {
                    break Err(ClientError::Unexpected(format!(
                        "waiting for RECEIPT {id}, got {} {:?}",
                        f.command.as_str(),
                        f.headers
                    )));
                }
            }
        };
        for f in kept.into_iter().rev() {
            self.stash.push_front(f);
        }
        result
    }

    /// SEND a body to a destination.
    pub async fn publish(&mut self, destination: &str, body: &str) -> Result<()> {
        self.send(
            &Frame::new(Command::Send)
                .header("destination", destination.to_owned())
                .with_body(body.to_owned()),
        )
        .await
    }

    /// Closes the connection abruptly (no DISCONNECT).
    pub async fn abort(mut self) {
        match &mut self.link {
            Link::Ws(ws) => {
                let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = WebSocketStream::close(ws, Some(frame)).await;
            }
            Link::Tcp(s) => {
                let _ = s.shutdown().await;
            }
        }
    }
}

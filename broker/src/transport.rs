//! The byte pipes a session talks through: a WebSocket or a raw TCP stream.
//!
//! Both expose the same four operations. `recv_into` appends inbound bytes to the session's
//! read buffer (WebSocket message boundaries mean nothing to STOMP: a frame may span messages
//! and a message may hold many frames). `feed` queues an outgoing frame without writing;
//! `flush` writes everything fed so far, so a batch of deliveries costs one vectored write.
//! Outgoing data frames bypass tungstenite's writer (see `write_queue`); tungstenite still
//! reads, answers pings and writes the close frame, and its own buffer is flushed before each
//! batch so the two writers never interleave inside a frame.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::wire::WireFrame;
use crate::write_queue::WriteQueue;

/// A byte stream usable as a raw STOMP transport (TCP, later TLS).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}

/// Transport failures. They end the session; only `MessageTooLarge` is reported to the client.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A WebSocket message over the configured limit.
    #[error("WebSocket message exceeds the maximum size of {limit} bytes")]
    MessageTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A WebSocket text message that is not UTF-8; answered with ERROR and close code 1007.
    #[error("WebSocket text message is not valid UTF-8")]
    InvalidText,
    /// Anything else: the peer vanished, the stream broke.
    #[error("{0}")]
    Io(String),
}

/// How the broker ends a connection; maps to a WebSocket close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Normal end (client DISCONNECT).
    Normal,
    /// Broker shutting down (1001 going away).
    GoingAway,
    /// After an ERROR frame (1002 protocol error).
    Error,
    /// Message too big (1009).
    TooBig,
    /// A text message that is not UTF-8 (1007 invalid frame payload data).
    InvalidText,
}

/// A session's transport: the pipe, and the frames queued for its next flush.
#[derive(Debug)]
pub struct Transport {
    pipe: Pipe,
    out: WriteQueue,
}

/// The pipe under a transport.
#[derive(Debug)]
enum Pipe {
    /// STOMP over WebSocket, one frame per message outbound; the message size limit.
    WebSocket(Box<WebSocketStream<TokioIo<Upgraded>>>, usize),
    /// STOMP over a byte stream.
    Stream(StreamTransport),
    /// STOMP over a SockJS session (HTTP streaming, polling, or SockJS's own WebSocket).
    SockJs(Box<crate::sockjs::SockJsPipe>),
}

/// STOMP over a raw byte stream.
struct StreamTransport {
    io: Box<dyn ByteStream>,
    read_chunk: usize,
}

impl std::fmt::Debug for StreamTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTransport")
            .field("read_chunk", &self.read_chunk)
            .finish()
    }
}

impl Transport {
    /// Wraps an upgraded WebSocket; `limit` is its message size limit, for error reports.
    pub fn websocket(ws: WebSocketStream<TokioIo<Upgraded>>, limit: usize) -> Self {
        Self {
            pipe: Pipe::WebSocket(Box::new(ws), limit),
            out: WriteQueue::default(),
        }
    }

    /// Wraps a byte stream, reading `read_chunk` bytes at a time.
    pub fn stream(io: impl ByteStream, read_chunk: usize) -> Self {
        Self {
            pipe: Pipe::Stream(StreamTransport {
                io: Box::new(io),
                read_chunk,
            }),
            out: WriteQueue::default(),
        }
    }

    /// Wraps an already boxed byte stream (as the listeners produce), reading `read_chunk`
    /// bytes at a time.
    pub fn boxed_stream(io: Box<dyn ByteStream>, read_chunk: usize) -> Self {
        Self {
            pipe: Pipe::Stream(StreamTransport { io, read_chunk }),
            out: WriteQueue::default(),
        }
    }

    /// Wraps a SockJS session's pipe.
    pub fn sockjs(pipe: crate::sockjs::SockJsPipe) -> Self {
        Self {
            pipe: Pipe::SockJs(Box::new(pipe)),
            out: WriteQueue::default(),
        }
    }

    /// Whether this is a WebSocket.
    pub fn is_websocket(&self) -> bool {
        matches!(self.pipe, Pipe::WebSocket(..))
    }

    /// The transport's label in /metrics.
    pub fn kind(&self) -> &'static str {
        match self.pipe {
            Pipe::WebSocket(..) => "websocket",
            Pipe::Stream(_) => "tcp",
            Pipe::SockJs(_) => "sockjs",
        }
    }

    /// Tells the transport whether the broker sends STOMP heart-beats (SockJS then sends none
    /// of its own, as Spring).
    pub fn stomp_heartbeats(&self, on: bool) {
        if let Pipe::SockJs(p) = &self.pipe {
            p.stomp_heartbeats(on);
        }
    }

    /// Appends the next inbound bytes to `buf`. `Ok(0)` means the peer closed. Cancel-safe.
    pub async fn recv_into(&mut self, buf: &mut BytesMut) -> Result<usize, TransportError> {
        match &mut self.pipe {
            Pipe::WebSocket(ws, limit) => loop {
                let payload: Bytes = match ws.next().await {
                    None => return Ok(0),
                    Some(Ok(Message::Text(t))) => t.into(),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) => return Ok(0),
                    // Pings are answered by tungstenite on the next write or flush; pongs and
                    // empty messages carry nothing for STOMP.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Err(WsError::Capacity(
                        CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
                    ))) => {
                        return Err(TransportError::MessageTooLarge { limit: *limit });
                    }
                    // Reading can go on: tungstenite rejected the message, not the connection.
                    Some(Err(WsError::Utf8(_))) => return Err(TransportError::InvalidText),
                    Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(0),
                    Some(Err(e)) => return Err(TransportError::Io(e.to_string())),
                };
                if payload.is_empty() {
                    continue;
                }
                let n = payload.len();
                if buf.is_empty() {
                    // Take over the message's own allocation when nobody else holds it, so the
                    // frames decoded from it are slices of it: no copy.
                    *buf = payload
                        .try_into_mut()
                        .unwrap_or_else(|b| BytesMut::from(&b[..]));
                } else {
                    buf.extend_from_slice(&payload);
                }
                return Ok(n);
            },
            Pipe::SockJs(p) => Ok(p.recv_into(buf).await),
            Pipe::Stream(s) => {
                buf.reserve(s.read_chunk);
                s.io.read_buf(buf)
                    .await
                    .map_err(|e| TransportError::Io(e.to_string()))
            }
        }
    }

    /// Queues a frame for the next flush.
    pub fn feed(&mut self, frame: WireFrame) {
        if let Pipe::SockJs(p) = &mut self.pipe {
            return p.feed(frame);
        }
        let websocket = self.is_websocket();
        self.out.push(frame, websocket);
    }

    /// Writes everything fed so far. Cancel-safe: an interrupted flush resumes where it
    /// stopped.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        let io_err = |e: std::io::Error| TransportError::Io(e.to_string());
        match &mut self.pipe {
            Pipe::WebSocket(ws, _) => {
                if !self.out.is_mid_frame() {
                    // Anything tungstenite queued itself (a pong) goes out first, whole.
                    ws.flush()
                        .await
                        .map_err(|e| TransportError::Io(e.to_string()))?;
                }
                self.out.write_to(ws.get_mut()).await.map_err(io_err)?;
                ws.get_mut().flush().await.map_err(io_err)
            }
            Pipe::Stream(s) => {
                self.out.write_to(&mut s.io).await.map_err(io_err)?;
                s.io.flush().await.map_err(io_err)
            }
            Pipe::SockJs(p) => p
                .flush()
                .await
                .map_err(|()| TransportError::Io("SockJS session closed".to_owned())),
        }
    }

    /// Ends the connection from the broker's side: a close frame (or a write shutdown), then a
    /// short linger reading and discarding whatever the peer is still sending. Closing a socket
    /// with unread input makes the kernel send a reset, which can destroy the ERROR frame just
    /// written before the client reads it; reading until the peer closes (or `LINGER` passes)
    /// lets that last frame arrive.
    pub async fn close(&mut self, how: Closing) {
        const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
        if self.out.is_mid_frame() {
            // A flush gave up inside a frame: nothing more can be framed on this connection.
            return;
        }
        match &mut self.pipe {
            Pipe::WebSocket(ws, _) => {
                let (code, reason) = match how {
                    Closing::Normal => (CloseCode::Normal, ""),
                    Closing::GoingAway => (CloseCode::Away, ""),
                    Closing::Error => (CloseCode::Protocol, ""),
                    Closing::TooBig => (CloseCode::Size, ""),
                    // Most clients show only the close; the reason says what to change.
                    Closing::InvalidText => (
                        CloseCode::Invalid,
                        "text message not UTF-8; send binary messages",
                    ),
                };
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                if ws.send(Message::Close(Some(frame))).await.is_err() {
                    return;
                }
                let _ = tokio::time::timeout(LINGER, async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
            Pipe::SockJs(p) => {
                // The frames already queued go out before the close frame; the session is
                // kept (and reaped later) so a polling client can still fetch them.
                let (code, reason) = match how {
                    Closing::Normal => (1000, "Normal closure"),
                    Closing::GoingAway => (1001, "Going away"),
                    Closing::Error => (1002, "Protocol error"),
                    Closing::TooBig => (1009, "Message too big"),
                    Closing::InvalidText => (1007, "Invalid UTF-8"),
                };
                p.close(code, reason);
            }
            Pipe::Stream(s) => {
                let _ = s.io.shutdown().await;
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(LINGER, async {
                    while let Ok(n) = s.io.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            }
        }
    }
}

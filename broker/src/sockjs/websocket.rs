//! The SockJS `websocket` transport: a WebSocket carrying SockJS frames (`o`, `a[...]`, `h`,
//! `c[...]` out; JSON arrays of strings in), for sockjs-client's first choice of transport.
//!
//! The two directions run apart (client → session in a task of its own), so a client that
//! floods while its session waits for room to write cannot wedge either side.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::debug;

use super::frame::{self, parse_payload};
use super::receive::open;
use super::session::Next;
use crate::admission::Permit;
use crate::auth::HandshakeAuth;
use crate::broker::Broker;

/// Runs a SockJS session over an upgraded WebSocket until either side ends it.
pub(crate) async fn bridge(
    broker: Arc<Broker>,
    ws: WebSocketStream<TokioIo<Upgraded>>,
    id: String,
    peer: SocketAddr,
    handshake: HandshakeAuth,
    permit: Permit,
) {
    let (mut sink, mut stream) = ws.split();
    // Every write is bounded: a client that stops reading is dropped, not waited on.
    let write_timeout = std::time::Duration::from_millis(broker.config.server.write_timeout_ms);
    let Ok(session) = open(&broker, &id, "websocket", peer, handshake, Some(permit)) else {
        let close = Message::text(frame::close(2010, "Session id in use"));
        let _ = tokio::time::timeout(write_timeout, sink.send(close)).await;
        return;
    };
    // Client → session.
    let inbound = Arc::clone(&session);
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => break,
                _ => continue,
            };
            if text.is_empty() {
                continue;
            }
            match parse_payload(text.as_bytes()) {
                Ok(list) => {
                    if !inbound.deliver(list).await {
                        break;
                    }
                }
                Err(_) => return Some(CloseCode::Invalid),
            }
        }
        None
    });
    // Session → client.
    let Ok(receiving) = session.attach() else {
        return;
    };
    let mut close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let opened = tokio::time::timeout(write_timeout, sink.send(Message::text(frame::OPEN))).await;
    if matches!(opened, Ok(Ok(()))) {
        loop {
            let next = tokio::select! {
                n = receiving.next() => n,
                r = &mut reader => {
                    if let Ok(Some(code)) = r {
                        // Not a JSON array of strings: 1007, as Spring.
                        close.code = code;
                    }
                    break;
                }
            };
            let (text, last) = match next {
                Next::Messages(m) => (frame::messages(m.iter().map(String::as_str)), false),
                Next::Heartbeat => (frame::HEARTBEAT.to_owned(), false),
                Next::Close(c) => (c, true),
            };
            let sent = tokio::time::timeout(write_timeout, sink.send(Message::text(text))).await;
            if !matches!(sent, Ok(Ok(()))) || last {
                break;
            }
        }
    }
    drop(receiving);
    reader.abort();
    session.close(1000, "Normal closure");
    let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(close)))).await;
    debug!(%peer, session = id, "SockJS WebSocket closed");
}

//! Encoded frames on their way to a socket.
//!
//! A frame is encoded once into a `WireFrame`; cloning one is a reference-count increment, so
//! the same bytes can be queued for many subscribers. Text frames keep the `Utf8Bytes` that
//! tungstenite needs, so UTF-8 is validated once per encoded frame, never per delivery.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// One encoded STOMP frame (or a heart-beat EOL), ready for any transport.
#[derive(Clone, Debug)]
pub enum WireFrame {
    /// Sent as a WebSocket text message.
    Text(Utf8Bytes),
    /// Sent as a WebSocket binary message.
    Binary(Bytes),
}

impl WireFrame {
    /// Wraps encoded bytes; `text` asks for a text message, which falls back to binary if the
    /// bytes are not UTF-8 (a body that claims a text type but is not).
    pub fn new(bytes: Bytes, text: bool) -> Self {
        if text {
            match Utf8Bytes::try_from(bytes.clone()) {
                Ok(t) => WireFrame::Text(t),
                Err(_) => WireFrame::Binary(bytes),
            }
        } else {
            WireFrame::Binary(bytes)
        }
    }

    /// The heart-beat: a single EOL in a text message.
    pub fn heartbeat() -> Self {
        WireFrame::Text(Utf8Bytes::from_static("\n"))
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        match self {
            WireFrame::Text(t) => t.len(),
            WireFrame::Binary(b) => b.len(),
        }
    }

    /// True for the empty frame (never produced by the encoder).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes, for byte-stream transports.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WireFrame::Text(t) => t.as_bytes(),
            WireFrame::Binary(b) => b,
        }
    }

    /// The WebSocket message carrying this frame.
    pub fn into_message(self) -> Message {
        match self {
            WireFrame::Text(t) => Message::Text(t),
            WireFrame::Binary(b) => Message::Binary(b),
        }
    }
}

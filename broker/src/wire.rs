//! Encoded frames on their way to a socket.
//!
//! A frame is encoded once into a `WireFrame`; cloning one is a reference-count increment, so
//! the same bytes can be queued for many subscribers. Whether it goes out as a WebSocket text
//! or binary message is decided once, when it is built (UTF-8 is validated once per encoded
//! frame, never per delivery).

use bytes::Bytes;

/// One encoded STOMP frame (or a heart-beat EOL), ready for any transport.
#[derive(Clone, Debug)]
pub struct WireFrame {
    bytes: Bytes,
    text: bool,
}

impl WireFrame {
    /// Wraps encoded bytes; `text` asks for a text message, which falls back to binary if the
    /// bytes are not UTF-8 (a body that claims a text type but is not).
    pub fn new(bytes: Bytes, text: bool) -> Self {
        let text = text && std::str::from_utf8(&bytes).is_ok();
        Self { bytes, text }
    }

    /// Wraps encoded bytes already known to be UTF-8 when `text` is set (checked in debug
    /// builds): a MESSAGE whose headers came through the decoder's UTF-8 check and whose body
    /// was checked once at publication.
    pub fn with_kind(bytes: Bytes, text: bool) -> Self {
        debug_assert!(!text || std::str::from_utf8(&bytes).is_ok());
        Self { bytes, text }
    }

    /// The heart-beat: a single EOL in a text message.
    pub fn heartbeat() -> Self {
        Self {
            bytes: Bytes::from_static(b"\n"),
            text: true,
        }
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for the empty frame (never produced by the encoder).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether it goes out as a WebSocket text message (else binary).
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The bytes, giving up the frame.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_falls_back_to_binary_for_invalid_utf8() {
        assert!(WireFrame::new(Bytes::from_static(b"MESSAGE\n\nhi\0"), true).is_text());
        assert!(!WireFrame::new(Bytes::from_static(b"MESSAGE\n\n\xff\0"), true).is_text());
        assert!(!WireFrame::new(Bytes::from_static(b"MESSAGE\n\nhi\0"), false).is_text());
    }
}

//! A published message: prepared once, shared by every delivery.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use stomp_codec::{Delivery as WireDelivery, Headers, PreparedMessage, Version};

use crate::wire::WireFrame;

/// SEND headers that describe the SEND itself and never reach subscribers.
const NOT_PASSED_THROUGH: &[&str] = &[
    "destination",
    "message-id",
    "subscription",
    "ack",
    "receipt",
    "transaction",
    "content-length",
    "redelivered",
];

/// What one message costs beyond its bytes (the `Arc`, the prepared message's fields, the
/// allocators' headers), for budgets.
pub const MESSAGE_OVERHEAD: usize = 256;

/// A message on its way to subscribers. Built once per publish and shared through `Arc`.
#[derive(Debug)]
pub struct Published {
    /// Destination, message-id, user headers and body, escaped once.
    pub prepared: PreparedMessage,
    /// Whether deliveries go out as WebSocket text (body UTF-8 and not `application/octet-stream`).
    pub text: bool,
    /// For a queue message read from a cluster's Redis stream: where to acknowledge it.
    pub stream: Option<crate::cluster::StreamRef>,
}

impl Published {
    /// Builds a message from a SEND's headers and body, keeping every user header in order.
    pub fn from_send(destination: &str, message_id: &str, headers: &Headers, body: Bytes) -> Self {
        let pass = headers.as_slice().iter().filter(|(name, _)| {
            !NOT_PASSED_THROUGH
                .iter()
                .any(|skip| skip.as_bytes() == name.as_ref())
        });
        let text = is_text(headers.get("content-type"), &body);
        let prepared = PreparedMessage::new(
            destination.as_bytes(),
            message_id.as_bytes(),
            pass.map(|(n, v)| (n.as_ref(), v.as_ref())),
            body,
        );
        Self {
            prepared,
            text,
            stream: None,
        }
    }

    /// Rebuilds a message another node accepted, with its id.
    pub fn from_envelope(env: &crate::cluster::Envelope) -> Self {
        Self::from_send(
            &env.destination,
            &env.message_id,
            &env.headers(),
            env.body.clone(),
        )
    }

    /// Marks where in Redis the message came from.
    pub fn with_stream(mut self, r: crate::cluster::StreamRef) -> Self {
        self.stream = Some(r);
        self
    }

    /// Encodes one delivery into a fresh frame.
    pub fn encode(&self, version: Version, d: &WireDelivery<'_>) -> WireFrame {
        let bytes = self.prepared.delivery_frame(version, d);
        // The headers are UTF-8 (the decoder checked every one) and `self.text` already says
        // whether the body is: no need to check the whole frame again.
        WireFrame::with_kind(bytes, self.text)
    }

    /// Size to account for in an outbox before encoding.
    pub fn size_hint(&self) -> usize {
        self.prepared.encoded_len(&WireDelivery::default()) + 64
    }

    /// The memory the message pins, an upper bound for budgets: the header block in up to
    /// three escapings (1.2, and 1.1 and 1.0 built when such a subscriber needs them; an
    /// unescaped copy when something needed escaping counts as one), the body, and a fixed
    /// allowance for the `Arc`, the allocations' headers and the bookkeeping around it.
    pub fn memory_size(&self) -> usize {
        let body = self.prepared.body().len();
        let head = self
            .prepared
            .encoded_len(&WireDelivery::default())
            .saturating_sub(body);
        body + 3 * head + MESSAGE_OVERHEAD
    }
}

/// Text unless the body is not UTF-8 or is declared `application/octet-stream`.
fn is_text(content_type: Option<&[u8]>, body: &[u8]) -> bool {
    if let Some(ct) = content_type {
        let ct = ct.trim_ascii_start();
        if ct.len() >= 24 && ct[..24].eq_ignore_ascii_case(b"application/octet-stream") {
            return false;
        }
    }
    std::str::from_utf8(body).is_ok()
}

/// Message ids: a per-process prefix and a counter, so ids never repeat across restarts and
/// sort by publication order within one process.
#[derive(Debug)]
pub struct MessageIds {
    prefix: String,
    next: AtomicU64,
}

impl MessageIds {
    /// Ids that also name a cluster node, so they are unique across nodes.
    pub fn with_node(node: &str) -> Self {
        let mut ids = Self::new();
        ids.prefix = format!("{node}-{}", ids.prefix);
        ids
    }

    /// A generator whose prefix is derived from the start time.
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            prefix: to_base36(nanos / 1_000),
            next: AtomicU64::new(1),
        }
    }

    /// The next id.
    pub fn next(&self) -> String {
        self.next_id().as_str().to_owned()
    }

    /// The next id, formatted on the stack: the publish path allocates nothing for it.
    pub fn next_id(&self) -> MessageId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = MessageId {
            buf: [0; MessageId::CAPACITY],
            len: 0,
        };
        let _ = write!(id, "{}-{n}", self.prefix);
        id
    }
}

/// A message id, formatted in place.
#[derive(Clone, Copy, Debug)]
pub struct MessageId {
    buf: [u8; MessageId::CAPACITY],
    len: usize,
}

impl MessageId {
    /// A cluster node id (at most 32 characters) and a dash, a 64-bit base-36 prefix (13
    /// characters), a dash and a 64-bit counter (20 digits) fit.
    const CAPACITY: usize = 72;

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, letters and '-' are ever written.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Write for MessageId {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Default for MessageIds {
    fn default() -> Self {
        Self::new()
    }
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_or_binary() {
        assert!(is_text(None, b"hello"));
        assert!(is_text(Some(b"application/json"), b"{}"));
        assert!(!is_text(Some(b"application/octet-stream"), b"hello"));
        assert!(!is_text(None, &[0xff, 0xfe]));
    }

    #[test]
    fn ids_are_unique_and_increasing() {
        let ids = MessageIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(a.ends_with("-1") && b.ends_with("-2"));
    }
}

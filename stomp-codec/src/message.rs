//! The broker's MESSAGE fan-out hot path.
//!
//! A published message goes to many subscribers whose MESSAGE frames differ only in
//! `subscription` (and `ack` with client acknowledgement). [`PreparedMessage`] escapes
//! everything shared — `destination`, `message-id`, user headers, `content-length` — once,
//! into one block per protocol version; a delivery then writes a few short per-subscriber
//! headers, copies the block and the body, and is done: no per-delivery escaping of
//! shared data and no allocation besides `out` growing.
//!
//! When several deliveries are byte-identical (same subscription id, auto ack), encode
//! one with [`PreparedMessage::delivery_frame`] and clone the resulting [`Bytes`]; each
//! clone is a reference-count increment.

use std::ops::Range;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::Version;
use crate::encode::put_content_length;
use crate::escape::{Escaping, escape_into, escaped_len};

/// What differs per delivery of a [`PreparedMessage`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Delivery<'a> {
    /// The subscriber's subscription id (`subscription` header).
    pub subscription: &'a [u8],
    /// The `ack` header, for `client` / `client-individual` subscriptions in 1.2.
    pub ack: Option<&'a [u8]>,
    /// Further per-delivery headers, written after `ack` in order.
    pub extra: &'a [(&'a [u8], &'a [u8])],
}

/// The shared part of a MESSAGE frame, prepared once per published message.
///
/// `Send + Sync`, so it can be shared via `Arc` between session tasks.
#[derive(Debug)]
pub struct PreparedMessage {
    /// The shared block escaped for 1.2: `destination`, `message-id`, user headers,
    /// `content-length` (non-empty body only) and the blank line. Built in one pass and one
    /// allocation.
    block_v12: Bytes,
    /// Where the destination and message id sit in `block_v12`; when nothing needed
    /// escaping (the usual case) the escaped text is the raw text, so the accessors read it
    /// from there and no raw copy is kept.
    destination: Range<usize>,
    message_id: Range<usize>,
    /// The raw fields, kept only when escaping changed something.
    raw: Option<Raw>,
    body: Bytes,
    /// The 1.1 block, built on first use if it differs from the 1.2 one (only when a
    /// shared field contains `\r`, which 1.1 cannot escape).
    block_v11: OnceLock<Bytes>,
    /// The 1.0 block, built on first use if it differs (any field needing escapes).
    block_v10: OnceLock<Bytes>,
}

/// Unescaped destination, message id and user headers, back to back, for the rare message
/// whose shared fields needed escaping.
#[derive(Debug)]
struct Raw {
    bytes: Bytes,
    destination: Range<usize>,
    message_id: Range<usize>,
    headers: Vec<(Range<usize>, Range<usize>)>,
    /// A `\r` somewhere: the 1.1 block differs from the 1.2 one.
    has_cr: bool,
}

impl PreparedMessage {
    /// Prepares a message.
    ///
    /// `headers` are the user headers to pass through in order; the caller has already
    /// removed `destination`, `message-id`, `subscription`, `ack`, `receipt`,
    /// `transaction` and `content-length`. `content-type` passes through as an ordinary
    /// header. The iterator is walked a second time only if some field needs escaping.
    pub fn new<'h, I>(destination: &[u8], message_id: &[u8], headers: I, body: Bytes) -> Self
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
        I::IntoIter: Clone,
    {
        let headers = headers.into_iter();
        let mut out = BytesMut::with_capacity(destination.len() + message_id.len() + 160);
        let mut escaped = false;
        let mut put = |out: &mut BytesMut, name: &[u8], value: &[u8]| {
            let before = out.len();
            escape_into(name, Escaping::V12, out);
            out.put_u8(b':');
            let start = out.len();
            escape_into(value, Escaping::V12, out);
            let end = out.len();
            out.put_u8(b'\n');
            // 1.2 escaping only ever lengthens: same length means nothing was escaped.
            escaped |= end - before != name.len() + 1 + value.len();
            start..end
        };
        let dest_range = put(&mut out, b"destination", destination);
        let id_range = put(&mut out, b"message-id", message_id);
        for (n, v) in headers.clone() {
            put(&mut out, n, v);
        }
        if !body.is_empty() {
            put_content_length(body.len(), &mut out);
        }
        out.put_u8(b'\n');
        let raw = escaped.then(|| Raw::new(destination, message_id, headers));
        Self {
            block_v12: out.freeze(),
            destination: dest_range,
            message_id: id_range,
            raw,
            body,
            block_v11: OnceLock::new(),
            block_v10: OnceLock::new(),
        }
    }

    /// The destination, unescaped.
    pub fn destination(&self) -> &[u8] {
        match &self.raw {
            Some(r) => r.field(&r.destination),
            None => self
                .block_v12
                .get(self.destination.clone())
                .unwrap_or_default(),
        }
    }

    /// The message id, unescaped.
    pub fn message_id(&self) -> &[u8] {
        match &self.raw {
            Some(r) => r.field(&r.message_id),
            None => self
                .block_v12
                .get(self.message_id.clone())
                .unwrap_or_default(),
        }
    }

    /// The body (shared, never copied by this type).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// A passed-through user header (e.g. `content-type`); the first occurrence wins.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        match &self.raw {
            Some(r) => r
                .headers
                .iter()
                .find(|(n, _)| r.field(n) == name.as_bytes())
                .map(|(_, v)| r.field(v)),
            None => {
                // Unescaped block: the header lines after destination and message-id, up to
                // the blank line, read as they are.
                let start = self.message_id.end + 1;
                self.block_v12
                    .get(start..)
                    .unwrap_or_default()
                    .split(|&b| b == b'\n')
                    .take_while(|line| !line.is_empty())
                    .filter_map(|line| {
                        let colon = line.iter().position(|&b| b == b':')?;
                        let (n, v) = line.split_at(colon);
                        Some((n, v.get(1..).unwrap_or_default()))
                    })
                    .find(|(n, _)| *n == name.as_bytes())
                    .map(|(_, v)| v)
            }
        }
    }

    /// Upper bound of the encoded size of a delivery, for `reserve` and byte
    /// accounting. Exact for the shared part; per-delivery fields are counted as if
    /// every byte needed escaping, so no scan is needed.
    pub fn encoded_len(&self, d: &Delivery<'_>) -> usize {
        let mut len = b"MESSAGE\nsubscription:\n".len() + 2 * d.subscription.len();
        if let Some(ack) = d.ack {
            len += b"ack:\n".len() + 2 * ack.len();
        }
        for (n, v) in d.extra {
            len += 2 * n.len() + 1 + 2 * v.len() + 1;
        }
        // Escaping only ever lengthens, so the 1.2 block is the longest.
        len + self.block_v12.len() + self.body.len() + 1
    }

    /// Writes one delivery: `MESSAGE`, `subscription`, `ack` (if any), the extra
    /// headers (all escaped for `version`), then the prepared shared block, the blank
    /// line, the body and the NUL.
    pub fn encode_delivery(&self, version: Version, d: &Delivery<'_>, out: &mut BytesMut) {
        out.reserve(self.encoded_len(d));
        self.encode_delivery_into(version, d, out);
    }

    fn encode_delivery_into(&self, version: Version, d: &Delivery<'_>, out: &mut BytesMut) {
        self.encode_delivery_head(version, d, out);
        out.put_slice(&self.body);
        out.put_u8(0);
    }

    /// Writes everything up to and including the blank line, but not the body and NUL.
    ///
    /// For transports that can write several buffers at once (TCP with vectored
    /// writes): send this head, then [`body`](Self::body), then `b"\0"`, and the body is
    /// never copied.
    pub fn encode_delivery_head(&self, version: Version, d: &Delivery<'_>, out: &mut BytesMut) {
        let esc = Escaping::for_version(version);
        out.put_slice(b"MESSAGE\nsubscription:");
        escape_into(d.subscription, esc, out);
        out.put_u8(b'\n');
        if let Some(ack) = d.ack {
            out.put_slice(b"ack:");
            escape_into(ack, esc, out);
            out.put_u8(b'\n');
        }
        for (n, v) in d.extra {
            escape_into(n, esc, out);
            out.put_u8(b':');
            escape_into(v, esc, out);
            out.put_u8(b'\n');
        }
        out.put_slice(self.block(version));
    }

    /// The exact encoded size of a delivery for `version`. Costs a scan of the
    /// per-delivery fields, which `encoded_len` avoids.
    pub fn exact_len(&self, version: Version, d: &Delivery<'_>) -> usize {
        let esc = Escaping::for_version(version);
        let mut len = b"MESSAGE\nsubscription:\n".len() + escaped_len(d.subscription, esc);
        if let Some(ack) = d.ack {
            len += b"ack:\n".len() + escaped_len(ack, esc);
        }
        for (n, v) in d.extra {
            len += escaped_len(n, esc) + 1 + escaped_len(v, esc) + 1;
        }
        len + self.block(version).len() + self.body.len() + 1
    }

    /// Encodes one delivery into its own [`Bytes`] in exactly one allocation of exactly
    /// its size (so turning it into `Bytes` allocates nothing more). Clone the result for
    /// byte-identical deliveries (same subscription id, auto ack) instead of encoding again.
    pub fn delivery_frame(&self, version: Version, d: &Delivery<'_>) -> Bytes {
        let mut out = BytesMut::with_capacity(self.exact_len(version, d));
        self.encode_delivery_into(version, d, &mut out);
        out.freeze()
    }

    /// The shared block for `version`, building the 1.1 / 1.0 variant on first use.
    fn block(&self, version: Version) -> &[u8] {
        let Some(raw) = &self.raw else {
            // Nothing needed escaping: one block serves every version.
            return &self.block_v12;
        };
        match version {
            Version::V1_2 => &self.block_v12,
            Version::V1_1 if raw.has_cr => self
                .block_v11
                .get_or_init(|| raw.build_block(Escaping::V11, self.body.len())),
            Version::V1_1 => &self.block_v12,
            Version::V1_0 => self
                .block_v10
                .get_or_init(|| raw.build_block(Escaping::None, self.body.len())),
        }
    }
}

impl Raw {
    fn new<'h>(
        destination: &[u8],
        message_id: &[u8],
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Self {
        let mut bytes = BytesMut::new();
        let mut push = |b: &[u8]| {
            let start = bytes.len();
            bytes.extend_from_slice(b);
            start..bytes.len()
        };
        let destination = push(destination);
        let message_id = push(message_id);
        let headers = headers.map(|(n, v)| (push(n), push(v))).collect();
        let bytes = bytes.freeze();
        let has_cr = bytes.contains(&b'\r');
        Self {
            bytes,
            destination,
            message_id,
            headers,
            has_cr,
        }
    }

    fn field(&self, r: &Range<usize>) -> &[u8] {
        self.bytes.get(r.clone()).unwrap_or_default()
    }

    fn build_block(&self, esc: Escaping, body_len: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(2 * self.bytes.len() + 64);
        let put = |out: &mut BytesMut, name: &[u8], value: &[u8]| {
            escape_into(name, esc, out);
            out.put_u8(b':');
            escape_into(value, esc, out);
            out.put_u8(b'\n');
        };
        put(&mut out, b"destination", self.field(&self.destination));
        put(&mut out, b"message-id", self.field(&self.message_id));
        for (n, v) in &self.headers {
            put(&mut out, self.field(n), self.field(v));
        }
        if body_len > 0 {
            put_content_length(body_len, &mut out);
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn is_send_sync() {
        assert_send_sync::<PreparedMessage>();
    }

    fn deliver(m: &PreparedMessage, v: Version, d: &Delivery<'_>) -> Vec<u8> {
        let mut out = BytesMut::new();
        m.encode_delivery(v, d, &mut out);
        assert!(out.len() <= m.encoded_len(d));
        assert_eq!(out.len(), m.exact_len(v, d));
        assert_eq!(m.delivery_frame(v, d), out);
        out.to_vec()
    }

    #[test]
    fn layout() {
        let m = PreparedMessage::new(
            b"/topic/a",
            b"m-1",
            [(&b"content-type"[..], &b"text/plain"[..])],
            Bytes::from_static(b"hello"),
        );
        let d = Delivery {
            subscription: b"sub:0",
            ack: Some(b"ack-1"),
            extra: &[(b"x", b"y")],
        };
        assert_eq!(
            deliver(&m, Version::V1_2, &d),
            b"MESSAGE\nsubscription:sub\\c0\nack:ack-1\nx:y\ndestination:/topic/a\n\
              message-id:m-1\ncontent-type:text/plain\ncontent-length:5\n\nhello\0"
        );
        assert_eq!(m.header("content-type"), Some(&b"text/plain"[..]));
        assert_eq!(m.header("nope"), None);
        assert_eq!(m.destination(), b"/topic/a");
        assert_eq!(m.message_id(), b"m-1");
    }

    #[test]
    fn versions_escape_differently() {
        let m = PreparedMessage::new(b"/q", b"1", [(&b"k"[..], &b"a:b\rc"[..])], Bytes::new());
        let d = Delivery {
            subscription: b"s",
            ..Delivery::default()
        };
        assert_eq!(
            deliver(&m, Version::V1_2, &d),
            b"MESSAGE\nsubscription:s\ndestination:/q\nmessage-id:1\nk:a\\cb\\rc\n\n\0"
        );
        assert_eq!(
            deliver(&m, Version::V1_1, &d),
            b"MESSAGE\nsubscription:s\ndestination:/q\nmessage-id:1\nk:a\\cb c\n\n\0"
        );
        // 1.0 has no escapes: a line break would end the header line, so it becomes a space.
        assert_eq!(
            deliver(&m, Version::V1_0, &d),
            b"MESSAGE\nsubscription:s\ndestination:/q\nmessage-id:1\nk:a:b c\n\n\0"
        );
    }

    #[test]
    fn accessors_with_and_without_escaping() {
        let plain = PreparedMessage::new(
            b"/topic/a",
            b"m-1",
            [
                (&b"content-type"[..], &b"text/plain"[..]),
                (&b"x"[..], &b"1"[..]),
            ],
            Bytes::new(),
        );
        assert_eq!(plain.destination(), b"/topic/a");
        assert_eq!(plain.message_id(), b"m-1");
        assert_eq!(plain.header("content-type"), Some(&b"text/plain"[..]));
        assert_eq!(plain.header("x"), Some(&b"1"[..]));
        assert_eq!(plain.header("y"), None);
        let escaped =
            PreparedMessage::new(b"/a:b", b"m\\2", [(&b"k:1"[..], &b"v\n"[..])], Bytes::new());
        assert_eq!(escaped.destination(), b"/a:b");
        assert_eq!(escaped.message_id(), b"m\\2");
        assert_eq!(escaped.header("k:1"), Some(&b"v\n"[..]));
    }
}

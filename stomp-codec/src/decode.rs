//! The incremental decoder: bytes in, frames and heart-beats out.
//!
//! Decoding runs in two phases per frame so that partial input is never re-parsed:
//!
//! 1. **Head scan**: find the blank line that ends the header block with `memchr`,
//!    remembering how far the buffer has been scanned, and enforce the line, line-count
//!    and frame-size limits on what is buffered so far.
//! 2. **Body**: once the block is complete it is parsed exactly once
//!    ([`parse_head`]); the decoder then waits for `content-length` bytes plus NUL, or
//!    scans only new bytes for the NUL.
//!
//! Only when the whole frame is buffered is it split off the buffer (`split_to` +
//! `freeze`), so header values and the body are slices of the input: zero copy.

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr_iter};

use crate::parse::{ParsedHead, Span, parse_head};
use crate::{DecodeError, DecoderConfig, Frame, Headers, Version};

/// One item of the inbound stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame.
    Frame(Frame),
    /// A bare EOL (`\n` or `\r\n`) between frames. Sessions count these as inbound
    /// liveness for heart-beating, so none is skipped silently.
    Heartbeat,
}

/// Incremental STOMP decoder for one connection.
///
/// Feed it the connection's read buffer after every read and call
/// [`decode`](Self::decode) until it returns `Ok(None)`.
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    version: Version,
    state: State,
    /// Set by the first error; every later call returns it again, because the byte
    /// stream can no longer be framed reliably.
    failed: Option<DecodeError>,
    /// Header spans of the frame being decoded; reused so that parsing a header block
    /// allocates nothing but the frame's own header list. Holds at most
    /// `max_header_lines` entries.
    spans: Vec<(Span, Span)>,
}

/// Progress on the frame at the start of the buffer.
#[derive(Debug)]
enum State {
    /// Looking for the blank line that ends the header block.
    Head(HeadScan),
    /// Header block parsed; waiting for the body and its NUL.
    Body(PendingBody),
}

impl Default for State {
    fn default() -> Self {
        State::Head(HeadScan::default())
    }
}

/// How far the header block has been scanned (offsets from the start of the buffer).
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    /// Start of the line being scanned.
    line_start: usize,
    /// Everything before this offset has been searched for `\n`.
    scanned: usize,
    /// Complete lines seen, the command line included.
    lines: usize,
}

#[derive(Debug)]
struct PendingBody {
    head: ParsedHead,
    /// Everything before this offset has been searched for the NUL (no
    /// `content-length` only).
    scanned: usize,
}

/// Outcome of looking for the end of the body.
enum BodyEnd {
    /// The body ends at `body_end`; the frame (NUL included) at `total`.
    Complete { body_end: usize, total: usize },
    /// Not yet buffered; resume the NUL search at `scanned`.
    Incomplete { scanned: usize },
}

impl Decoder {
    /// A decoder with the given limits, assuming STOMP 1.2 until told otherwise.
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            version: Version::V1_2,
            state: State::default(),
            failed: None,
            spans: Vec::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Sets the negotiated version; it decides how later frames are unescaped.
    pub fn set_version(&mut self, v: Version) {
        self.version = v;
    }

    /// The version used for unescaping.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Decodes the next item at the start of `buf`.
    ///
    /// - `Ok(None)`: more bytes are needed; `buf` is untouched. The decoder remembers
    ///   how far it has scanned, so call it again with the same buffer after appending
    ///   to it (a 64 KiB frame arriving in 1 KiB chunks is not rescanned each time).
    ///   Between calls the buffer may only grow at its end; anything else makes the
    ///   result unspecified (though never a panic).
    /// - `Ok(Some(Decoded::Heartbeat))`: one bare EOL (`\n` or `\r\n`) between frames
    ///   was consumed.
    /// - `Ok(Some(Decoded::Frame(f)))`: exactly the frame, through its NUL, was
    ///   consumed; `f`'s headers and body are slices of it.
    ///
    /// # Errors
    ///
    /// Any [`DecodeError`]. The decoder is then poisoned: every later call returns the
    /// same error, and the caller should send an ERROR frame and close. The contents
    /// of `buf` are unspecified after an error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.decode_inner(buf);
        if let Err(e) = result {
            self.failed = Some(e);
            self.state = State::default();
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        let (head, scanned) = match &mut self.state {
            State::Head(scan) => {
                if scan.scanned == 0 {
                    match heartbeat(buf)? {
                        Some(true) => return Ok(Some(Decoded::Heartbeat)),
                        None => return Ok(None),
                        Some(false) => {}
                    }
                }
                let Some(head_len) = scan_head(scan, buf, &self.config)? else {
                    return Ok(None);
                };
                *scan = HeadScan::default();
                let block = buf.get(..head_len).unwrap_or_default();
                let head = parse_head(block, self.version, &self.config, &mut self.spans)?;
                self.check_head(&head)?;
                let scanned = head.len;
                (head, scanned)
            }
            State::Body(_) => match std::mem::take(&mut self.state) {
                State::Body(pending) => (pending.head, pending.scanned),
                State::Head(_) => return Ok(None),
            },
        };
        match self.body_end(&head, scanned, buf)? {
            BodyEnd::Complete { body_end, total } => {
                let frame = split_frame(head, &self.spans, body_end, total, buf);
                Ok(Some(Decoded::Frame(frame)))
            }
            BodyEnd::Incomplete { scanned } => {
                self.state = State::Body(PendingBody { head, scanned });
                Ok(None)
            }
        }
    }

    /// Limits and rules that the parsed header block alone decides, checked before
    /// waiting for a body that could never be accepted.
    fn check_head(&self, head: &ParsedHead) -> Result<(), DecodeError> {
        if let Some(n) = head.content_length {
            if n > 0 && !head.command.allows_body() {
                return Err(DecodeError::BodyNotAllowed(head.command));
            }
            // head + body + NUL; cannot overflow: n <= max_body_size and head.len is
            // at most the buffered length.
            if head.len.saturating_add(n).saturating_add(1) > self.config.max_frame_size {
                return Err(self.frame_too_large());
            }
        }
        Ok(())
    }

    fn body_end(
        &self,
        head: &ParsedHead,
        scanned: usize,
        buf: &[u8],
    ) -> Result<BodyEnd, DecodeError> {
        if let Some(n) = head.content_length {
            let body_end = head.len.saturating_add(n);
            return match buf.get(body_end) {
                None => Ok(BodyEnd::Incomplete { scanned }),
                Some(0) => Ok(BodyEnd::Complete {
                    body_end,
                    total: body_end.saturating_add(1),
                }),
                Some(_) => Err(DecodeError::MissingNul),
            };
        }
        let from = scanned.max(head.len);
        let found = buf.get(from..).and_then(|rest| memchr(0, rest));
        let end = found.map_or(buf.len(), |i| from + i);
        if end > head.len && !head.command.allows_body() {
            return Err(DecodeError::BodyNotAllowed(head.command));
        }
        // The frame is at least `end + 1` bytes (body so far plus NUL) and the body at
        // least `end - head.len`, whether or not the NUL has been seen.
        let body_over = end.saturating_sub(head.len) > self.config.max_body_size;
        let frame_over = end >= self.config.max_frame_size;
        if body_over || frame_over {
            // When both are exceeded, report the limit the stream crossed first, so the
            // error does not depend on how the input was chunked.
            let frame_first = self.config.max_frame_size
                <= head
                    .len
                    .saturating_add(self.config.max_body_size)
                    .saturating_add(1);
            return Err(if frame_over && (frame_first || !body_over) {
                self.frame_too_large()
            } else {
                DecodeError::BodyTooLarge {
                    limit: self.config.max_body_size,
                }
            });
        }
        Ok(match found {
            Some(_) => BodyEnd::Complete {
                body_end: end,
                total: end + 1,
            },
            None => BodyEnd::Incomplete { scanned: end },
        })
    }

    fn frame_too_large(&self) -> DecodeError {
        DecodeError::FrameTooLarge {
            limit: self.config.max_frame_size,
        }
    }
}

/// Consumes one bare EOL at the start of `buf`. `Some(true)`: consumed a heart-beat;
/// `Some(false)`: a frame starts here; `None`: a lone `\r`, need one more byte.
fn heartbeat(buf: &mut BytesMut) -> Result<Option<bool>, DecodeError> {
    match (buf.first(), buf.get(1)) {
        (None, _) | (Some(b'\r'), None) => Ok(None),
        (Some(b'\n'), _) => {
            buf.advance(1);
            Ok(Some(true))
        }
        (Some(b'\r'), Some(b'\n')) => {
            buf.advance(2);
            Ok(Some(true))
        }
        (Some(b'\r'), Some(_)) => Err(DecodeError::InvalidEol),
        (Some(_), _) => Ok(Some(false)),
    }
}

/// Advances `scan` over newly buffered lines. Returns the length of the header block
/// (through the blank line) once it is complete.
fn scan_head(
    scan: &mut HeadScan,
    buf: &[u8],
    config: &DecoderConfig,
) -> Result<Option<usize>, DecodeError> {
    let line_too_long = DecodeError::HeaderLineTooLong {
        limit: config.max_header_line_len,
    };
    let from = scan.scanned;
    let rest = buf.get(from..).unwrap_or_default();
    // One searcher for all lines of the block: cheaper than a `memchr` call per line.
    for i in memchr_iter(b'\n', rest) {
        let newline = from + i;
        let next = newline + 1;
        let line = buf.get(scan.line_start..newline).unwrap_or_default();
        let len = content_len(line);
        if len > config.max_header_line_len {
            return Err(line_too_long);
        }
        if next >= config.max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                limit: config.max_frame_size,
            });
        }
        if len == 0 && scan.lines > 0 {
            return Ok(Some(next));
        }
        scan.lines += 1;
        if scan.lines - 1 > config.max_header_lines {
            return Err(DecodeError::TooManyHeaders {
                limit: config.max_header_lines,
            });
        }
        scan.line_start = next;
        scan.scanned = next;
    }
    // Incomplete line: its bytes so far, minus a '\r' that may start its EOL.
    let partial = buf.get(scan.line_start..).unwrap_or_default();
    if content_len(partial) > config.max_header_line_len {
        return Err(line_too_long);
    }
    // A frame needs at least one more byte (its NUL).
    if buf.len() >= config.max_frame_size {
        return Err(DecodeError::FrameTooLarge {
            limit: config.max_frame_size,
        });
    }
    scan.scanned = buf.len();
    Ok(None)
}

/// Length of a line without the `\r` of a `\r\n` EOL.
fn content_len(line: &[u8]) -> usize {
    line.len() - usize::from(line.last() == Some(&b'\r'))
}

/// Splits the complete frame off `buf` and builds the [`Frame`] from slices of it.
fn split_frame(
    mut head: ParsedHead,
    spans: &[(Span, Span)],
    body_end: usize,
    total: usize,
    buf: &mut BytesMut,
) -> Frame {
    let raw = buf.split_to(total.min(buf.len())).freeze();
    let mut headers = Vec::with_capacity(spans.len());
    for (name, value) in spans {
        headers.push((
            name.to_name(&raw, &mut head.owned),
            value.to_bytes(&raw, &mut head.owned),
        ));
    }
    // The body takes over `raw` itself (one reference-count round trip less per
    // frame); an empty body lets go of the buffer instead.
    let body = if head.len < body_end && body_end <= raw.len() {
        let mut body = raw;
        body.truncate(body_end);
        body.advance(head.len);
        body
    } else {
        Bytes::new()
    };
    Frame {
        command: head.command,
        headers: Headers::from(headers),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    fn decoder() -> Decoder {
        Decoder::new(DecoderConfig::default())
    }

    fn frame(d: Option<Decoded>) -> Frame {
        match d {
            Some(Decoded::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn decodes_simple_frame_and_heartbeats() {
        let mut buf = BytesMut::from(&b"\n\r\nSEND\ndestination:/q\n\nhi\0\n"[..]);
        let mut d = decoder();
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::Heartbeat)));
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::Heartbeat)));
        let f = frame(d.decode(&mut buf).unwrap());
        assert_eq!(f.command, Command::Send);
        assert_eq!(f.headers.get("destination"), Some(&b"/q"[..]));
        assert_eq!(&f.body[..], b"hi");
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::Heartbeat)));
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn content_length_allows_nul() {
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:3\n\na\0b\0"[..]);
        let f = frame(decoder().decode(&mut buf).unwrap());
        assert_eq!(&f.body[..], b"a\0b");
        assert!(buf.is_empty());
    }

    #[test]
    fn incomplete_leaves_buffer_untouched() {
        let full = b"SEND\ncontent-length:3\n\nabc\0";
        let mut d = decoder();
        let mut buf = BytesMut::new();
        for &b in &full[..full.len() - 1] {
            buf.extend_from_slice(&[b]);
            let before = buf.clone();
            assert_eq!(d.decode(&mut buf), Ok(None));
            assert_eq!(buf, before);
        }
        buf.extend_from_slice(b"\0");
        assert_eq!(&frame(d.decode(&mut buf).unwrap()).body[..], b"abc");
    }

    #[test]
    fn errors_poison() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&b"FOO\n\n\0"[..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::UnknownCommand));
        let mut good = BytesMut::from(&b"SEND\n\n\0"[..]);
        assert_eq!(d.decode(&mut good), Err(DecodeError::UnknownCommand));
    }

    #[test]
    fn body_not_allowed() {
        let mut buf = BytesMut::from(&b"SUBSCRIBE\nid:1\n\nx"[..]);
        assert_eq!(
            decoder().decode(&mut buf),
            Err(DecodeError::BodyNotAllowed(Command::Subscribe))
        );
        let mut buf = BytesMut::from(&b"ACK\ncontent-length:1\n\n"[..]);
        assert_eq!(
            decoder().decode(&mut buf),
            Err(DecodeError::BodyNotAllowed(Command::Ack))
        );
    }

    #[test]
    fn missing_nul() {
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:1\n\nab"[..]);
        assert_eq!(decoder().decode(&mut buf), Err(DecodeError::MissingNul));
    }

    #[test]
    fn misuse_never_panics() {
        // The buffer shrinks between calls (not allowed, but must not panic).
        for first in [
            &b"SEND\n\nabc"[..],
            b"SEND\ncontent-length:5\n\nab",
            b"SEND\nk:v",
        ] {
            let mut d = decoder();
            let mut buf = BytesMut::from(first);
            assert_eq!(d.decode(&mut buf), Ok(None));
            let mut other = BytesMut::from(&b"S"[..]);
            let _ = d.decode(&mut other);
            let _ = d.decode(&mut BytesMut::new());
        }
    }

    #[test]
    fn lone_cr_between_frames() {
        let mut buf = BytesMut::from(&b"\r"[..]);
        let mut d = decoder();
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"X");
        assert_eq!(d.decode(&mut buf), Err(DecodeError::InvalidEol));
    }
}

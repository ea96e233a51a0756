//! A connection's outgoing bytes between `feed` and `flush`.
//!
//! tungstenite copies every message into its own write buffer, through several layers per
//! message. Here a batch is laid out once: WebSocket frame headers (2 to 10 bytes, formatted
//! by tungstenite's `FrameHeader`) and small payloads are appended to one contiguous buffer,
//! large payloads stay the shared `Bytes` they were encoded into, and the batch goes to the
//! socket in vectored writes. Copying a small frame is cheaper than giving the kernel one more
//! slice to walk (measured: one slice per frame cost more CPU than the copy saves); a large
//! one is never copied.

use std::io::IoSlice;
use std::pin::Pin;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::wire::WireFrame;

/// Slices handed to one `writev`: well under every platform's `IOV_MAX`.
const SLICES_PER_WRITE: usize = 64;

/// Payloads up to this size are copied into the contiguous buffer; larger ones are written
/// from their own (shared) memory.
const COPY_UP_TO: usize = 2048;

/// One run of bytes in the batch.
#[derive(Debug)]
enum Segment {
    /// `inline[..end]` from where the previous inline segment ended.
    Inline(usize),
    /// A payload written from its own memory.
    Shared(Bytes),
}

/// Frames queued for the next flush, with progress through a partly written batch.
#[derive(Debug, Default)]
pub struct WriteQueue {
    inline: Vec<u8>,
    segments: Vec<Segment>,
    /// First segment not yet fully written, where it starts in `inline` (for inline
    /// segments), and how many of its bytes are already written.
    next: usize,
    next_start: usize,
    done: usize,
}

impl WriteQueue {
    /// Queues a frame; `websocket` puts a WebSocket frame header (unmasked, final, text or
    /// binary) in front of it.
    pub fn push(&mut self, frame: WireFrame, websocket: bool) {
        if websocket {
            let opcode = if frame.is_text() {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Binary)
            };
            let header = FrameHeader {
                opcode,
                ..FrameHeader::default()
            };
            // Writing into a Vec cannot fail.
            let _ = header.format(frame.len() as u64, &mut self.inline);
        }
        let payload = frame.into_bytes();
        if payload.len() <= COPY_UP_TO {
            self.inline.extend_from_slice(&payload);
        }
        let end = self.inline.len();
        let grown = end > self.last_inline_end();
        match self.segments.last_mut() {
            Some(Segment::Inline(e)) => *e = end,
            _ if grown => self.segments.push(Segment::Inline(end)),
            _ => {}
        }
        if payload.len() > COPY_UP_TO {
            self.segments.push(Segment::Shared(payload));
        }
    }

    fn last_inline_end(&self) -> usize {
        self.segments
            .iter()
            .rev()
            .find_map(|s| match s {
                Segment::Inline(e) => Some(*e),
                Segment::Shared(_) => None,
            })
            .unwrap_or(0)
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.next == self.segments.len()
    }

    /// Whether a frame may have been partly written: another writer must not interleave bytes
    /// now.
    pub fn is_mid_frame(&self) -> bool {
        !self.is_empty() && (self.next > 0 || self.done > 0)
    }

    /// Writes everything queued. Cancel-safe: progress is kept, and a later call resumes.
    pub async fn write_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut W,
    ) -> std::io::Result<()> {
        while !self.is_empty() {
            let n = std::future::poll_fn(|cx| {
                let mut slices = [IoSlice::new(&[]); SLICES_PER_WRITE];
                let count = self.slices(&mut slices);
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count])
            })
            .await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        self.segments.clear();
        self.inline.clear();
        self.next = 0;
        self.next_start = 0;
        Ok(())
    }

    /// The bytes of segment `seg`, which starts at `start` in `inline` if it is inline.
    fn bytes_of<'a>(&'a self, seg: &'a Segment, start: usize) -> &'a [u8] {
        match seg {
            Segment::Inline(end) => self.inline.get(start..*end).unwrap_or(&[]),
            Segment::Shared(b) => b,
        }
    }

    /// Fills `out` with the unwritten bytes, in order; returns how many slices it used.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut start = self.next_start;
        let mut skip = self.done;
        let mut count = 0;
        for (seg, slot) in self.segments.iter().skip(self.next).zip(out.iter_mut()) {
            let bytes = self.bytes_of(seg, start);
            *slot = IoSlice::new(bytes.get(skip..).unwrap_or(&[]));
            skip = 0;
            count += 1;
            if let Segment::Inline(end) = seg {
                start = *end;
            }
        }
        count
    }

    /// Records that `n` more bytes were written.
    fn advance(&mut self, mut n: usize) {
        while let Some(seg) = self.segments.get(self.next) {
            let len = self.bytes_of(seg, self.next_start).len();
            let left = len - self.done;
            if n < left {
                self.done += n;
                return;
            }
            n -= left;
            if let Segment::Inline(end) = seg {
                self.next_start = *end;
            }
            if let Some(Segment::Shared(b)) = self.segments.get_mut(self.next) {
                // Written: let go of the payload now rather than at the end of the batch.
                *b = Bytes::new();
            }
            self.next += 1;
            self.done = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `max` bytes per call, to exercise partial writes.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn frames() -> Vec<WireFrame> {
        vec![
            WireFrame::new(Bytes::from_static(b"MESSAGE\n\nhello\0"), true),
            WireFrame::new(Bytes::from(vec![0xffu8; 300]), true),
            WireFrame::new(Bytes::from(vec![b'y'; 5000]), true),
            WireFrame::heartbeat(),
            WireFrame::new(Bytes::from(vec![b'x'; 70_000]), false),
        ]
    }

    #[tokio::test]
    async fn websocket_frames_match_tungstenite_and_survive_partial_writes() {
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        let mut expected = Vec::new();
        for f in frames() {
            let msg = if f.is_text() {
                Message::Text(String::from_utf8(f.as_bytes().to_vec()).unwrap().into())
            } else {
                Message::Binary(f.clone().into_bytes())
            };
            let frame = match msg {
                Message::Text(t) => Frame::message(t, OpCode::Data(Data::Text), true),
                Message::Binary(b) => Frame::message(b, OpCode::Data(Data::Binary), true),
                _ => unreachable!(),
            };
            frame.format(&mut expected).unwrap();
        }
        for max in [1, 7, 1000, usize::MAX] {
            let mut q = WriteQueue::default();
            for f in frames() {
                q.push(f, true);
            }
            let mut w = Trickle {
                out: Vec::new(),
                max,
            };
            q.write_to(&mut w).await.unwrap();
            assert!(q.is_empty());
            assert_eq!(w.out, expected, "max {max}");
        }
    }

    #[tokio::test]
    async fn stream_frames_are_the_bytes_themselves_and_the_queue_is_reusable() {
        let mut q = WriteQueue::default();
        let mut w = Trickle {
            out: Vec::new(),
            max: 5,
        };
        for round in 0..2 {
            for f in frames() {
                q.push(f, false);
            }
            q.write_to(&mut w).await.unwrap();
            let expected: Vec<u8> = frames()
                .iter()
                .flat_map(|f| f.as_bytes().to_vec())
                .collect();
            let len = expected.len();
            assert_eq!(&w.out[round * len..], &expected[..]);
        }
    }
}

//! Each connection's bounded queue of outgoing frames.
//!
//! Publishers push without ever waiting: a push either fits within the connection's message and
//! byte bounds or fails at once, and the caller applies the destination's slow-consumer policy.
//! The connection's session task takes the whole queue in one swap (rumqttd's idea), writes it as
//! one batch and flushes once, so the lock is held for a constant, tiny time on both sides.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::budget::{Budget, Charge};
use crate::message::Published;
use crate::queue::Queue;
use crate::wire::WireFrame;

/// An entry in the outbox.
#[derive(Debug)]
pub enum Outbound {
    /// A frame encoded by the publisher, possibly shared with other subscribers.
    Frame(WireFrame),
    /// A message the session encodes itself because the delivery carries per-delivery state
    /// (an ack id, prefetch accounting, a queue's credit).
    Deliver(Delivery),
}

/// A message for one subscription that the subscriber's session encodes.
#[derive(Debug)]
pub struct Delivery {
    /// The session-local key of the subscription.
    pub key: u32,
    /// The message.
    pub msg: Arc<Published>,
    /// Set when a queue gives the message again after a NACK or a consumer's disconnect.
    pub redelivered: bool,
    /// The queue the message came from, so an undeliverable message can go back to it.
    pub queue: Option<Arc<Queue>>,
    /// A header this delivery carries beyond the message's own.
    pub mark: Mark,
    /// The message's bytes in the connection's unsettled budget, for a delivery that waits for
    /// an ACK (or, from a queue, for its write): released when it is settled.
    pub charge: Option<Charge>,
}

/// What a delivery says about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mark {
    /// Nothing.
    #[default]
    None,
    /// `retained:true`: the destination's latest message, handed to a new subscriber.
    Retained,
    /// `resume-gap:true`: messages were missed before this one (the resume position was no
    /// longer in the history); the application should reload its state.
    Gap,
}

/// Why a push failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The message or byte bound is reached.
    Full,
    /// The connection is closing.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outbound>,
    bytes: usize,
    closed: bool,
}

/// Signal bit: frames are waiting.
pub const ITEMS: u8 = 1;
/// Signal bit: the slow-consumer policy disconnects this connection.
pub const KILL: u8 = 2;
/// Signal bit: the broker is shutting down.
pub const STOP: u8 = 4;

/// The outbox. Shared between the session (consumer) and every publisher (producers).
///
/// Everything that should wake the session (frames waiting, a slow-consumer kill, shutdown) is
/// a bit in one atomic plus one `AtomicWaker`: waiting costs no lock and no shared state, so a
/// busy session polls it for the price of two atomic operations.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    signal: AtomicU8,
    waker: AtomicWaker,
    max_messages: usize,
    max_bytes: usize,
    /// Bytes of messages handed to this connection that wait to be settled (acknowledged, or
    /// written for an auto-ack queue consumer): `[stomp] max_unacked_bytes`, inside the budget
    /// of all connections. Deliveries that need it stop (queues hold them, broadcast treats
    /// the subscriber as slow) until acknowledgements give bytes back. Made on first use, so
    /// a connection that never acks or consumes a queue pays nothing for it.
    unsettled: std::sync::OnceLock<Arc<Budget>>,
    unsettled_limit: usize,
    /// Set when a queue passed this connection over for want of unsettled bytes: its session
    /// asks its queues to dispatch again once it has some back.
    starved: AtomicBool,
}

impl Outbox {
    /// An empty outbox with the given bounds and no bound on unsettled bytes.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self::with_unsettled_limit(max_messages, max_bytes, usize::MAX)
    }

    /// An empty outbox with the given bounds and at most `unsettled` bytes unsettled.
    pub fn with_unsettled_limit(max_messages: usize, max_bytes: usize, unsettled: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            signal: AtomicU8::new(0),
            waker: AtomicWaker::new(),
            max_messages,
            max_bytes,
            unsettled: std::sync::OnceLock::new(),
            unsettled_limit: unsettled,
            starved: AtomicBool::new(false),
        }
    }

    /// The connection's budget of unsettled bytes.
    pub fn unsettled(&self) -> &Arc<Budget> {
        self.unsettled
            .get_or_init(|| Budget::new(self.unsettled_limit, None))
    }

    /// Notes that a queue passed this connection over for want of unsettled bytes: its
    /// session asks its queues again when acknowledgements give bytes back. (The queue
    /// charges once more after the note, so bytes given back just before it are not missed.)
    pub fn starve(&self) {
        self.starved.store(true, Ordering::Release);
    }

    /// Whether a queue passed this connection over since the last call.
    pub fn take_starved(&self) -> bool {
        self.starved.load(Ordering::Relaxed) && self.starved.swap(false, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a push or a swap), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` (of `size` encoded bytes) if it fits within the bounds.
    pub fn push(&self, item: Outbound, size: usize) -> Result<(), PushError> {
        self.push_inner(item, size, true)
    }

    /// Queues `item` whatever the bounds. Only for deliveries already bounded elsewhere (a
    /// queue consumer's credit and unsettled bytes, a RECEIPT): a queue must be able to hand
    /// over what it has promised.
    pub fn push_credited(&self, item: Outbound, size: usize) -> Result<(), PushError> {
        self.push_inner(item, size, false)
    }

    fn push_inner(&self, item: Outbound, size: usize, bounded: bool) -> Result<(), PushError> {
        let was_empty;
        {
            let mut st = self.lock();
            if st.closed {
                return Err(PushError::Closed);
            }
            if bounded
                && (st.items.len() >= self.max_messages
                    || (st.bytes + size > self.max_bytes && !st.items.is_empty()))
            {
                return Err(PushError::Full);
            }
            was_empty = st.items.is_empty();
            st.items.push_back(item);
            st.bytes += size;
        }
        if was_empty {
            self.raise(ITEMS);
        }
        Ok(())
    }

    fn raise(&self, bits: u8) {
        self.signal.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Moves everything queued into `into` (which should be empty) in one swap.
    pub fn take(&self, into: &mut VecDeque<Outbound>) {
        let mut st = self.lock();
        std::mem::swap(&mut st.items, into);
        st.bytes = 0;
        // Cleared under the lock: a push after this sees an empty queue and raises it again.
        self.signal.fetch_and(!ITEMS, Ordering::AcqRel);
    }

    /// Waits until one of the `mask` bits is raised; returns all raised bits. Cancel-safe.
    pub async fn wait(&self, mask: u8) -> u8 {
        std::future::poll_fn(|cx| self.poll_signal(cx, mask)).await
    }

    fn poll_signal(&self, cx: &mut Context<'_>, mask: u8) -> Poll<u8> {
        // Register first, then check: a raise in between still wakes us.
        self.waker.register(cx.waker());
        let bits = self.signal.load(Ordering::Acquire);
        if bits & mask != 0 {
            Poll::Ready(bits)
        } else {
            Poll::Pending
        }
    }

    /// Marks the connection for disconnection as a slow consumer.
    pub fn kill(&self) {
        self.raise(KILL);
    }

    /// Asks the session to flush and close: the broker is shutting down.
    pub fn stop(&self) {
        self.raise(STOP);
    }

    /// Refuses every later push and returns what was still queued.
    pub fn close(&self) -> VecDeque<Outbound> {
        let mut st = self.lock();
        st.closed = true;
        st.bytes = 0;
        std::mem::take(&mut st.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Outbound {
        Outbound::Frame(WireFrame::new(bytes::Bytes::from(vec![b'x'; n]), true))
    }

    #[test]
    fn bounds_by_count_and_bytes() {
        let ob = Outbox::new(2, 100);
        assert_eq!(ob.push(frame(10), 10), Ok(()));
        assert_eq!(ob.push(frame(95), 95), Err(PushError::Full));
        assert_eq!(ob.push(frame(10), 10), Ok(()));
        assert_eq!(ob.push(frame(1), 1), Err(PushError::Full));
        assert_eq!(ob.push_credited(frame(1), 1), Ok(()));
        let mut got = VecDeque::new();
        ob.take(&mut got);
        assert_eq!(got.len(), 3);
        assert_eq!(ob.push(frame(95), 95), Ok(()));
        assert_eq!(ob.close().len(), 1);
        assert_eq!(ob.push(frame(1), 1), Err(PushError::Closed));
    }

    #[test]
    fn an_oversized_single_frame_still_fits_an_empty_outbox() {
        let ob = Outbox::new(10, 100);
        assert_eq!(ob.push(frame(500), 500), Ok(()));
        assert_eq!(ob.push(frame(1), 1), Err(PushError::Full));
    }
}

//! Each connection's bounded queue of outgoing frames.
//!
//! Publishers push without ever waiting: a push either fits within the connection's message and
//! byte bounds or fails at once, and the caller applies the destination's slow-consumer policy.
//! The connection's session task takes the whole queue in one swap (rumqttd's idea), writes it as
//! one batch and flushes once, so the lock is held for a constant, tiny time on both sides.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

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

/// The outbox. Shared between the session (consumer) and every publisher (producers).
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    killed: AtomicBool,
    kill: Notify,
    max_messages: usize,
    max_bytes: usize,
}

impl Outbox {
    /// An empty outbox with the given bounds.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            max_messages,
            max_bytes,
        }
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

    /// Queues `item` whatever the bounds. Only for deliveries already bounded elsewhere, by a
    /// queue consumer's credit: a queue must be able to hand over what it has promised.
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
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Moves everything queued into `into` (which should be empty) in one swap.
    pub fn take(&self, into: &mut VecDeque<Outbound>) {
        let mut st = self.lock();
        std::mem::swap(&mut st.items, into);
        st.bytes = 0;
    }

    /// Waits until something was pushed since the last `take`. Cancel-safe.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Marks the connection for disconnection as a slow consumer.
    pub fn kill(&self) {
        if !self.killed.swap(true, Ordering::AcqRel) {
            self.kill.notify_one();
        }
    }

    /// Whether `kill` was called.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Waits until `kill` is called. Cancel-safe.
    pub async fn killed(&self) {
        if self.is_killed() {
            return;
        }
        self.kill.notified().await;
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

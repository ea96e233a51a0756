//! Queue-mode destinations: competing consumers.
//!
//! Each message goes to one consumer, round robin among those with credit left. A consumer's
//! credit is its `prefetch-count`: a delivery takes one unit and an ACK (or, for auto-ack, the
//! write to the socket) gives it back, so a queue never hands a consumer more than it may hold.
//! Messages wait in the queue, up to `max_pending`, while no consumer has credit; a NACK or a
//! consumer's disconnect puts its unacknowledged messages back at the front, marked redelivered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::message::Published;
use crate::outbox::{Delivery, Outbound, Outbox, PushError};
use crate::registry::ConnId;

#[derive(Debug)]
struct Pending {
    msg: Arc<Published>,
    redelivered: bool,
}

#[derive(Debug)]
struct Consumer {
    conn: ConnId,
    key: u32,
    outbox: Arc<Outbox>,
    credit: u32,
}

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<Pending>,
    consumers: Vec<Consumer>,
    next: usize,
}

/// What happened to a published message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOutcome {
    /// Messages handed to a consumer by this call (the new one or earlier pending ones).
    pub delivered: usize,
    /// Messages dropped because the queue was full (the oldest pending go first).
    pub dropped: usize,
}

/// One queue-mode destination.
#[derive(Debug)]
pub struct Queue {
    name: Box<str>,
    state: Mutex<State>,
    max_pending: usize,
    total_pending: Arc<AtomicUsize>,
    max_total: usize,
    /// Signalled when consumers gain credit (the cluster's stream reader waits on it).
    credit: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The destination name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages waiting for a consumer.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Enqueues a message and dispatches what can be dispatched.
    pub fn publish(self: &Arc<Self>, msg: Arc<Published>) -> QueueOutcome {
        self.publish_with(msg, false)
    }

    /// Enqueues a message read from the cluster's stream (`redelivered` when it was claimed
    /// from another node).
    pub fn publish_from_stream(self: &Arc<Self>, msg: Arc<Published>, redelivered: bool) {
        self.publish_with(msg, redelivered);
    }

    fn publish_with(self: &Arc<Self>, msg: Arc<Published>, redelivered: bool) -> QueueOutcome {
        let mut st = self.lock();
        let mut dropped = 0;
        st.pending.push_back(Pending { msg, redelivered });
        self.total_pending.fetch_add(1, Ordering::Relaxed);
        // Over this queue's bound, or over the bound of all queues together (so creating many
        // queue destinations cannot grow memory without end): the oldest go first.
        while st.pending.len() > self.max_pending
            || (self.total_pending.load(Ordering::Relaxed) > self.max_total
                && !st.pending.is_empty())
        {
            st.pending.pop_front();
            self.total_pending.fetch_sub(1, Ordering::Relaxed);
            dropped += 1;
        }
        let delivered = self.dispatch(&mut st);
        QueueOutcome { delivered, dropped }
    }

    /// Registers a consumer with `prefetch` credit.
    pub fn add_consumer(
        self: &Arc<Self>,
        conn: ConnId,
        key: u32,
        outbox: Arc<Outbox>,
        prefetch: u32,
    ) {
        let mut st = self.lock();
        st.consumers.push(Consumer {
            conn,
            key,
            outbox,
            credit: prefetch,
        });
        self.dispatch(&mut st);
        drop(st);
        self.credit.notify_one();
    }

    /// Removes a consumer; the caller requeues what it had not acknowledged.
    pub fn remove_consumer(self: &Arc<Self>, conn: ConnId, key: u32) {
        let mut st = self.lock();
        st.consumers.retain(|c| !(c.conn == conn && c.key == key));
        self.dispatch(&mut st);
    }

    /// Gives `n` units of credit back to a consumer (messages acknowledged or auto-acked).
    pub fn settle(self: &Arc<Self>, conn: ConnId, key: u32, n: u32) {
        let mut st = self.lock();
        if let Some(c) = st
            .consumers
            .iter_mut()
            .find(|c| c.conn == conn && c.key == key)
        {
            c.credit = c.credit.saturating_add(n);
        }
        self.dispatch(&mut st);
        drop(st);
        self.credit.notify_one();
    }

    /// How many more messages the consumers can take now: their credit beyond what is
    /// already waiting here.
    pub fn wants(&self) -> usize {
        let st = self.lock();
        let credit: usize = st.consumers.iter().map(|c| c.credit as usize).sum();
        credit.saturating_sub(st.pending.len())
    }

    /// Completes when consumers may have gained credit.
    pub async fn credit_changed(&self) {
        self.credit.notified().await;
    }

    /// Consumers subscribed here.
    pub fn consumer_count(&self) -> usize {
        self.lock().consumers.len()
    }

    /// Forgets the waiting messages (a clustered queue whose last local consumer left: the
    /// messages stay in Redis, where another node claims them).
    pub fn clear_pending(&self) {
        let mut st = self.lock();
        let n = st.pending.len();
        st.pending.clear();
        self.total_pending.fetch_sub(n, Ordering::Relaxed);
    }

    /// Puts messages back at the front, in their original order, marked redelivered.
    pub fn requeue(self: &Arc<Self>, msgs: impl DoubleEndedIterator<Item = Arc<Published>>) {
        let mut st = self.lock();
        for msg in msgs.rev() {
            st.pending.push_front(Pending {
                msg,
                redelivered: true,
            });
            self.total_pending.fetch_add(1, Ordering::Relaxed);
        }
        self.dispatch(&mut st);
    }

    /// Hands pending messages to consumers with credit, round robin. Returns how many went.
    fn dispatch(self: &Arc<Self>, st: &mut State) -> usize {
        let mut delivered = 0;
        while !st.pending.is_empty() && !st.consumers.is_empty() {
            let n = st.consumers.len();
            let start = st.next % n;
            let Some(offset) = (0..n).find(|i| st.consumers[(start + i) % n].credit > 0) else {
                break;
            };
            let idx = (start + offset) % n;
            let Some(p) = st.pending.pop_front() else {
                break;
            };
            let consumer = &mut st.consumers[idx];
            let size = p.msg.size_hint();
            let item = Outbound::Deliver(Delivery {
                key: consumer.key,
                msg: Arc::clone(&p.msg),
                redelivered: p.redelivered,
                queue: Some(Arc::clone(self)),
                mark: crate::outbox::Mark::None,
            });
            match consumer.outbox.push_credited(item, size) {
                Ok(()) => {
                    consumer.credit -= 1;
                    st.next = idx + 1;
                    delivered += 1;
                    self.total_pending.fetch_sub(1, Ordering::Relaxed);
                }
                Err(PushError::Closed | PushError::Full) => {
                    // The connection is going away; its session will requeue what it held.
                    st.pending.push_front(p);
                    st.consumers.remove(idx);
                }
            }
        }
        delivered
    }

    fn is_idle(&self) -> bool {
        let st = self.lock();
        st.pending.is_empty() && st.consumers.is_empty()
    }
}

/// All queue-mode destinations.
#[derive(Debug)]
pub struct Queues {
    map: DashMap<Box<str>, Arc<Queue>>,
    total_pending: Arc<AtomicUsize>,
    max_total: usize,
}

impl Queues {
    /// No queues yet; all of them together hold at most `max_total` pending messages.
    pub fn new(max_total: usize) -> Self {
        Self {
            map: DashMap::new(),
            total_pending: Arc::new(AtomicUsize::new(0)),
            max_total,
        }
    }

    fn new_queue(&self, name: &str, max_pending: usize) -> Arc<Queue> {
        Arc::new(Queue {
            name: name.into(),
            state: Mutex::new(State::default()),
            max_pending,
            total_pending: Arc::clone(&self.total_pending),
            max_total: self.max_total,
            credit: Notify::new(),
        })
    }

    /// The queue for `name`, created on first use.
    pub fn get_or_create(&self, name: &str, max_pending: usize) -> Arc<Queue> {
        if let Some(q) = self.map.get(name) {
            return Arc::clone(&q);
        }
        let entry = self
            .map
            .entry(name.into())
            .or_insert_with(|| self.new_queue(name, max_pending));
        Arc::clone(&entry)
    }

    /// The queue `name` (created if need be) with a consumer added by `add` while the map
    /// entry is held, so `remove_if_idle` cannot drop the queue between the lookup and the
    /// addition (which would leave the consumer on a queue nobody publishes to).
    pub fn attach(
        &self,
        name: &str,
        max_pending: usize,
        add: impl FnOnce(&Arc<Queue>),
    ) -> Arc<Queue> {
        let entry = self
            .map
            .entry(name.into())
            .or_insert_with(|| self.new_queue(name, max_pending));
        add(&entry);
        Arc::clone(&entry)
    }

    /// Drops the queue's entry if it holds nothing and nobody consumes it.
    pub fn remove_if_idle(&self, name: &str) {
        self.map.remove_if(name, |_, q| q.is_idle());
    }

    /// Messages waiting in all queues.
    pub fn total_pending(&self) -> usize {
        self.total_pending.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use stomp_codec::Headers;

    fn msg(n: u32) -> Arc<Published> {
        Arc::new(Published::from_send(
            "/queue/q",
            &n.to_string(),
            &Headers::new(),
            Bytes::from(n.to_string()),
        ))
    }

    fn taken(ob: &Outbox) -> Vec<(String, bool)> {
        let mut items = VecDeque::new();
        ob.take(&mut items);
        items
            .into_iter()
            .filter_map(|o| match o {
                Outbound::Deliver(d) => Some((
                    String::from_utf8_lossy(d.msg.prepared.body()).into_owned(),
                    d.redelivered,
                )),
                Outbound::Frame(_) => None,
            })
            .collect()
    }

    #[test]
    fn holds_round_robins_and_redelivers() {
        let queues = Queues::new(1000);
        let q = queues.get_or_create("/queue/q", 3);
        for i in 0..4 {
            q.publish(msg(i));
        }
        assert_eq!(q.pending(), 3, "oldest dropped beyond max_pending");
        let a = Arc::new(Outbox::new(100, 1 << 20));
        let b = Arc::new(Outbox::new(100, 1 << 20));
        q.add_consumer(1, 0, Arc::clone(&a), 1);
        q.add_consumer(2, 0, Arc::clone(&b), 1);
        assert_eq!(taken(&a), vec![("1".to_owned(), false)]);
        assert_eq!(taken(&b), vec![("2".to_owned(), false)]);
        assert_eq!(q.pending(), 1);
        // Consumer 1 NACKs: its message goes back to the front, redelivered, to whoever has credit.
        q.requeue(std::iter::once(msg(1)));
        q.settle(1, 0, 1);
        assert_eq!(taken(&a), vec![("1".to_owned(), true)]);
        q.remove_consumer(2, 0);
        q.settle(1, 0, 1);
        assert_eq!(taken(&a), vec![("3".to_owned(), false)]);
        assert_eq!(queues.total_pending(), 0);
    }

    #[test]
    fn all_queues_together_are_bounded() {
        let queues = Queues::new(5);
        let a = queues.get_or_create("/queue/a", 100);
        let b = queues.get_or_create("/queue/b", 100);
        for i in 0..4 {
            a.publish(msg(i));
        }
        let mut dropped = 0;
        for i in 0..4 {
            dropped += b.publish(msg(i)).dropped;
        }
        assert_eq!(queues.total_pending(), 5);
        assert_eq!(dropped, 3);
        assert_eq!((a.pending(), b.pending()), (4, 1));
    }
}

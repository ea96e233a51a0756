//! Queue-mode destinations: competing consumers.
//!
//! Each message goes to one consumer, round robin among those with credit left. A consumer's
//! credit is its `prefetch-count`: a delivery takes one unit and an ACK (or, for auto-ack, the
//! write to the socket) gives it back, so a queue never hands a consumer more than it may hold.
//! Messages wait in the queue, up to `max_pending`, while no consumer has credit; a NACK or a
//! consumer's disconnect puts its unacknowledged messages back at the front, marked redelivered.
//!
//! Memory: each waiting message is charged at the size it pins (`Published::memory_size`) to
//! its queue's budget (at most `max_share_percent` of the total; past it the queue drops its
//! own oldest), inside the budget of all queues (`max_pending_total_bytes`; past it the least
//! recently used queues lose their oldest first, see `Queues::enforce`), and to the publishing
//! client's share, which refuses the publish when full. Each queue itself is charged a fixed
//! overhead, and a queue nobody consumes or publishes to for `idle_expiry_ms` is forgotten.
//! A message handed to a consumer leaves these budgets for the consumer connection's
//! unsettled bytes, which bound what one consumer may hold unacknowledged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::budget::{Budget, Charge};
use crate::message::Published;
use crate::outbox::{Delivery, Outbound, Outbox, PushError};
use crate::registry::ConnId;

/// What a queue costs besides its messages (its map entry, lock, deques, notifier), charged
/// to its budget while it holds messages.
pub const QUEUE_OVERHEAD: usize = 1024;

#[derive(Debug)]
struct Pending {
    msg: Arc<Published>,
    redelivered: bool,
    /// Its bytes in the queue's (and all queues') budget.
    _charge: Charge,
    /// Its bytes in the publishing client's share.
    _owner: Option<Charge>,
}

/// Told about every waiting message a queue drops (a bound, eviction, expiry), so a cluster
/// can let another node claim the Redis entries this node no longer holds.
#[derive(Clone)]
pub struct DropHook(Arc<dyn Fn(&Published) + Send + Sync>);

impl DropHook {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(&Published) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for DropHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DropHook")
    }
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The publishing client already holds its share of all queues.
    #[error("queue share exceeded")]
    ShareExceeded,
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
    /// The queue's own overhead in the budget, charged while it holds messages: a queue with
    /// none is either consumed (bounded by subscriptions) or forgotten.
    overhead: Option<Charge>,
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
    /// This queue's bytes, inside the budget of all queues.
    budget: Arc<Budget>,
    /// Told about dropped messages.
    on_drop: Option<DropHook>,
    /// When it was last published to or consumed from (ms since the epoch).
    last_used: AtomicU64,
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

    /// Enqueues a message and dispatches what can be dispatched. `owner` is the publishing
    /// client's share, which refuses the message when full.
    pub fn publish(
        self: &Arc<Self>,
        msg: Arc<Published>,
        owner: Option<&Arc<Budget>>,
    ) -> Result<QueueOutcome, QueueError> {
        let owner = match owner {
            Some(b) => Some(
                b.try_charge(msg.memory_size())
                    .ok_or(QueueError::ShareExceeded)?,
            ),
            None => None,
        };
        Ok(self.publish_with(msg, false, owner))
    }

    /// Enqueues a message read from the cluster's stream (`redelivered` when it was claimed
    /// from another node).
    pub fn publish_from_stream(self: &Arc<Self>, msg: Arc<Published>, redelivered: bool) {
        self.publish_with(msg, redelivered, None);
    }

    fn publish_with(
        self: &Arc<Self>,
        msg: Arc<Published>,
        redelivered: bool,
        owner: Option<Charge>,
    ) -> QueueOutcome {
        self.touch();
        let mut st = self.lock();
        let mut dropped = 0;
        // Forced: this queue's share and the count bounds are restored just below, the total
        // over all queues by `Queues::enforce` (which takes other queues' locks).
        let charge = self.budget.force_charge(msg.memory_size());
        st.pending.push_back(Pending {
            msg,
            redelivered,
            _charge: charge,
            _owner: owner,
        });
        self.total_pending.fetch_add(1, Ordering::Relaxed);
        // Over this queue's bound or share, or over the count of all queues together: the
        // oldest go first.
        while st.pending.len() > self.max_pending
            || (!st.pending.is_empty()
                && (self.total_pending.load(Ordering::Relaxed) > self.max_total
                    || self.budget.over()))
        {
            self.drop_oldest(&mut st);
            dropped += 1;
        }
        let delivered = self.dispatch(&mut st);
        QueueOutcome { delivered, dropped }
    }

    /// Drops the oldest waiting message; `false` when there is none.
    fn drop_oldest(&self, st: &mut State) -> bool {
        let Some(p) = st.pending.pop_front() else {
            return false;
        };
        self.total_pending.fetch_sub(1, Ordering::Relaxed);
        if let Some(hook) = &self.on_drop {
            (hook.0)(&p.msg);
        }
        true
    }

    /// Charges the queue's overhead while it holds messages, and gives it back when it
    /// holds none. Called after every change to `pending`.
    fn account(&self, st: &mut State) {
        match (st.pending.is_empty(), st.overhead.is_some()) {
            (true, true) => st.overhead = None,
            (false, false) => {
                st.overhead = Some(self.budget.force_charge(QUEUE_OVERHEAD + self.name.len()));
            }
            _ => {}
        }
    }

    fn touch(&self) {
        self.last_used
            .store(crate::history::now_ms(), Ordering::Relaxed);
    }

    /// Drops oldest waiting messages until all queues are within `target` bytes or this one
    /// is empty. Returns how many it dropped.
    fn shed(&self, all: &Budget, target: usize) -> usize {
        let mut st = self.lock();
        let mut n = 0;
        while all.used() > target && self.drop_oldest(&mut st) {
            n += 1;
        }
        self.account(&mut st);
        n
    }

    /// Registers a consumer with `prefetch` credit.
    pub fn add_consumer(
        self: &Arc<Self>,
        conn: ConnId,
        key: u32,
        outbox: Arc<Outbox>,
        prefetch: u32,
    ) {
        self.touch();
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
        self.account(&mut st);
    }

    /// Puts messages back at the front, in their original order, marked redelivered. They
    /// were accepted once, so they are charged whatever the budgets (eviction follows).
    pub fn requeue(self: &Arc<Self>, msgs: impl DoubleEndedIterator<Item = Arc<Published>>) {
        let mut st = self.lock();
        for msg in msgs.rev() {
            let charge = self.budget.force_charge(msg.memory_size());
            st.pending.push_front(Pending {
                msg,
                redelivered: true,
                _charge: charge,
                _owner: None,
            });
            self.total_pending.fetch_add(1, Ordering::Relaxed);
        }
        self.dispatch(&mut st);
    }

    /// Hands pending messages to consumers with credit and unsettled bytes left, round
    /// robin. Returns how many went.
    fn dispatch(self: &Arc<Self>, st: &mut State) -> usize {
        let mut delivered = 0;
        while let Some(front) = st.pending.front() {
            let n = st.consumers.len();
            if n == 0 {
                break;
            }
            let size = front.msg.memory_size();
            let start = st.next % n;
            let mut chosen = None;
            for i in 0..n {
                let c = &st.consumers[(start + i) % n];
                if c.credit == 0 {
                    continue;
                }
                // Its session asks again once acknowledgements give bytes back; charged again
                // after the note, so bytes given back in between are not missed.
                let charge = c.outbox.unsettled().try_charge(size).or_else(|| {
                    c.outbox.starve();
                    c.outbox.unsettled().try_charge(size)
                });
                if let Some(charge) = charge {
                    chosen = Some(((start + i) % n, charge));
                    break;
                }
            }
            let Some((idx, charge)) = chosen else {
                break;
            };
            let Some(p) = st.pending.pop_front() else {
                break;
            };
            let consumer = &mut st.consumers[idx];
            let item = Outbound::Deliver(Delivery {
                key: consumer.key,
                msg: Arc::clone(&p.msg),
                redelivered: p.redelivered,
                queue: Some(Arc::clone(self)),
                mark: crate::outbox::Mark::None,
                charge: Some(charge),
            });
            match consumer.outbox.push_credited(item, p.msg.size_hint()) {
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
        self.account(st);
        delivered
    }

    /// Dispatches again: a consumer may have unsettled bytes back.
    pub fn kick(self: &Arc<Self>) {
        let mut st = self.lock();
        self.dispatch(&mut st);
    }

    fn is_idle(&self) -> bool {
        let st = self.lock();
        st.pending.is_empty() && st.consumers.is_empty()
    }

    /// Whether nobody consumes it and it was last used before `cutoff` (ms).
    fn expired(&self, cutoff: u64) -> bool {
        self.last_used.load(Ordering::Relaxed) < cutoff && self.lock().consumers.is_empty()
    }
}

/// All queue-mode destinations.
#[derive(Debug)]
pub struct Queues {
    map: DashMap<Box<str>, Arc<Queue>>,
    total_pending: Arc<AtomicUsize>,
    max_total: usize,
    /// Bytes of all queues: their messages and their overhead.
    budget: Arc<Budget>,
    /// Bytes one queue may hold.
    share: usize,
    /// Set while one thread runs `enforce`: others need not sort the same queues again.
    enforcing: std::sync::atomic::AtomicBool,
    /// Given to every queue.
    on_drop: Option<DropHook>,
}

impl Queues {
    /// No queues yet; all of them together hold at most `max_total` pending messages and
    /// `max_bytes` bytes, one of them at most `share` bytes.
    pub fn new(max_total: usize, max_bytes: usize, share: usize) -> Self {
        Self {
            map: DashMap::new(),
            total_pending: Arc::new(AtomicUsize::new(0)),
            max_total,
            budget: Budget::new(max_bytes, None),
            share,
            enforcing: std::sync::atomic::AtomicBool::new(false),
            on_drop: None,
        }
    }

    /// Tells `hook` about every waiting message a queue drops.
    pub fn with_drop_hook(mut self, hook: DropHook) -> Self {
        self.on_drop = Some(hook);
        self
    }

    fn new_queue(&self, name: &str, max_pending: usize) -> Arc<Queue> {
        Arc::new(Queue {
            name: name.into(),
            state: Mutex::new(State::default()),
            max_pending,
            total_pending: Arc::clone(&self.total_pending),
            max_total: self.max_total,
            budget: Budget::new(self.share, Some(Arc::clone(&self.budget))),
            on_drop: self.on_drop.clone(),
            last_used: AtomicU64::new(crate::history::now_ms()),
            credit: Notify::new(),
        })
    }

    /// The queue for `name`, created on first use.
    pub fn get_or_create(&self, name: &str, max_pending: usize) -> Arc<Queue> {
        if let Some(q) = self.map.get(name) {
            // Used now, under the map's lock: idle expiry cannot take it from under the caller.
            q.touch();
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

    /// Bytes charged to all queues.
    pub fn bytes(&self) -> usize {
        self.budget.used()
    }

    /// Queue destinations that exist.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Brings all queues back within `max_pending_total_bytes` when they are over it: the
    /// least recently used queues lose their oldest messages first (and are forgotten once
    /// empty and unconsumed), down to 15/16 of the bound, so a sweep (which looks at every
    /// queue) happens at most once per 1/16 of the bound published. One queue's lock at a
    /// time, never while holding one. Returns how many messages it dropped.
    pub fn enforce(&self) -> usize {
        if !self.budget.over() || self.enforcing.swap(true, Ordering::AcqRel) {
            return 0;
        }
        let dropped = self.shed_least_recently_used();
        self.enforcing.store(false, Ordering::Release);
        dropped
    }

    fn shed_least_recently_used(&self) -> usize {
        let target = self.budget.limit() - self.budget.limit() / 16;
        let mut by_age: Vec<(u64, Arc<Queue>)> = self
            .map
            .iter()
            .map(|e| (e.last_used.load(Ordering::Relaxed), Arc::clone(e.value())))
            .collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        let mut dropped = 0;
        for (_, q) in by_age {
            if self.budget.used() <= target {
                break;
            }
            dropped += q.shed(&self.budget, target);
            self.remove_if_idle(q.name());
        }
        dropped
    }

    /// Forgets queues that nobody consumes and nobody used since `cutoff` (ms since the
    /// epoch), with their messages. Returns how many messages went with them.
    pub fn expire(&self, cutoff: u64) -> usize {
        let mut dropped = 0;
        self.map.retain(|_, q| {
            if !q.expired(cutoff) {
                return true;
            }
            let mut st = q.lock();
            while q.drop_oldest(&mut st) {
                dropped += 1;
            }
            st.overhead = None;
            false
        });
        dropped
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
        let queues = Queues::new(1000, usize::MAX, usize::MAX);
        let q = queues.get_or_create("/queue/q", 3);
        for i in 0..4 {
            q.publish(msg(i), None).unwrap();
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
        let queues = Queues::new(5, usize::MAX, usize::MAX);
        let a = queues.get_or_create("/queue/a", 100);
        let b = queues.get_or_create("/queue/b", 100);
        for i in 0..4 {
            a.publish(msg(i), None).unwrap();
        }
        let mut dropped = 0;
        for i in 0..4 {
            dropped += b.publish(msg(i), None).unwrap().dropped;
        }
        assert_eq!(queues.total_pending(), 5);
        assert_eq!(dropped, 3);
        assert_eq!((a.pending(), b.pending()), (4, 1));
    }
}

//! Joining a destination with history: catching up, flow-controlled, then going live.
//!
//! A subscriber that resumes (or gets the retained value) is not registered for live delivery
//! at once. It is a [`Catchup`] held by the destination: under the destination's lock it is
//! handed the entries after its position for as long as its outbox (and, when it acks, its
//! prefetch window and unacknowledged-bytes budget) has room, and when it has been handed the
//! newest entry it is registered for the live stream in the same locked step. Until then live
//! messages reach it through the history, as entries it has not been handed yet. Its session
//! calls [`History::pump`] as it writes and reads, so a client that never reads holds at most
//! its outbox, whatever the history holds; one that reads as fast as it can gets everything.
//!
//! Position: the id of the last entry handed over. Entries evicted beyond it (by count, age or
//! a budget) while it catches up are a gap: the next entry it gets says `resume-gap:true`, as
//! for a resume from a position no longer held.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{History, Seq, State};
use crate::broker::{Broker, deliver_with_credit};
use crate::message::Published;
use crate::outbox::{Mark, Outbound, PushError};
use crate::registry::{ConnId, Subscriber};
use crate::wire::WireFrame;

/// What a joining subscriber gets before the live stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Join {
    /// Nothing to hand over.
    Nothing,
    /// It catches up as it reads (or waits for a cluster's mirror): its session pumps it, and
    /// the SUBSCRIBE's RECEIPT goes out once it is live.
    Pending,
    /// The newest message, as the retained value.
    Retained,
    /// The messages after the subscriber's position, all of them.
    Resumed,
    /// The subscriber's position is no longer (or was never) in the history: what is left,
    /// the first marked as following a gap.
    Gap,
}

/// Where a catching-up subscriber is.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Not placed yet: the cluster's mirror is loading.
    Unplaced,
    /// Wants only the newest entry (the retained value), or the placeholder.
    Retained,
    /// Wants the entries after `from` (all of them when `None`); `gap` marks the next one.
    After { from: Option<Seq>, gap: bool },
}

/// A subscriber catching up.
#[derive(Debug)]
pub(super) struct Catchup {
    key: String,
    sub: Subscriber,
    /// The position asked for: `None` for none (the retained value), `Some(None)` for one
    /// that does not parse (a gap).
    resume: Option<Option<Seq>>,
    cursor: Cursor,
    /// The SUBSCRIBE's RECEIPT, sent when it goes live.
    receipt: Option<WireFrame>,
}

impl History {
    /// Joins a subscriber (under `key` in the registry): it is handed, before the live
    /// stream, the messages after `resume_from` (or the retained value), flow-controlled. In a
    /// cluster the mirror starts with the first subscriber. `receipt` is the SUBSCRIBE's,
    /// sent here once it is live when that is not at once ([`Join::Pending`]).
    pub fn join(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        key: &str,
        sub: Subscriber,
        resume_from: Option<&str>,
        receipt: Option<WireFrame>,
    ) -> Join {
        self.touch();
        let mut st = self.lock();
        st.subscribers += 1;
        let mut c = Catchup {
            key: key.to_owned(),
            sub,
            resume: resume_from.map(Seq::parse),
            cursor: Cursor::Unplaced,
            receipt,
        };
        if broker.cluster.is_some() {
            if st.tail.is_none() {
                let stop = broker.shutdown.child_token();
                st.tail = Some(stop.clone());
                st.generation += 1;
                st.ready = false;
                broker.tracker.spawn(crate::cluster::history_tail(
                    Arc::clone(broker),
                    Arc::clone(self),
                    stop,
                    st.generation,
                ));
            }
            if !st.ready {
                st.catchups.insert((c.sub.conn, c.sub.key), c);
                return Join::Pending;
            }
        }
        self.evict(&mut st);
        let kind = self.place(&st, &mut c);
        // Live at once: the session answers the receipt itself, as for any frame.
        let receipt = c.receipt.take();
        if self.advance(&st, broker, &mut c) {
            kind
        } else {
            c.receipt = receipt;
            st.catchups.insert((c.sub.conn, c.sub.key), c);
            Join::Pending
        }
    }

    /// Hands the subscriber (`conn`, `key`) more of what it is catching up on, as far as it
    /// has room. `true` when it is live (or no longer catching up here).
    pub fn pump(&self, broker: &Broker, conn: ConnId, key: u32) -> bool {
        let mut st = self.lock();
        if !st.catchups.contains_key(&(conn, key)) {
            return true;
        }
        if !st.ready {
            return false;
        }
        self.evict(&mut st);
        let Some(mut c) = st.catchups.remove(&(conn, key)) else {
            return true;
        };
        if self.advance(&st, broker, &mut c) {
            return true;
        }
        st.catchups.insert((conn, key), c);
        false
    }

    /// Places a catch-up at its starting position; returns what the join amounts to.
    fn place(&self, st: &State, c: &mut Catchup) -> Join {
        let Some(from) = c.resume else {
            c.cursor = Cursor::Retained;
            let retained = self.keep.retain_last && !st.entries.is_empty();
            return if retained {
                Join::Retained
            } else {
                Join::Nothing
            };
        };
        let known = from.is_some_and(|f| {
            Some(f) == st.last
                || Some(f) == st.last_dropped
                || st.entries.binary_search_by(|e| e.seq.cmp(&f)).is_ok()
        });
        if known {
            c.cursor = Cursor::After { from, gap: false };
            let newer = from.is_some_and(|f| st.entries.back().is_some_and(|e| e.seq > f));
            if newer { Join::Resumed } else { Join::Nothing }
        } else {
            c.cursor = Cursor::After {
                from: None,
                gap: true,
            };
            Join::Gap
        }
    }

    /// Hands `c` what it may take now; registers it for the live stream once it has been
    /// handed the newest entry. `true` when it is live, or gone (its connection closed).
    fn advance(&self, st: &State, broker: &Broker, c: &mut Catchup) -> bool {
        loop {
            let (from, mut gap) = match c.cursor {
                Cursor::Unplaced => return false,
                Cursor::Retained => return self.advance_retained(st, broker, c),
                Cursor::After { from, gap } => (from, gap),
            };
            // Entries after the position were evicted while it caught up: a gap.
            if let (Some(f), Some(d)) = (from, st.last_dropped)
                && d > f
            {
                gap = true;
            }
            let next = match from {
                None => 0,
                Some(f) => st.entries.partition_point(|e| e.seq <= f),
            };
            let Some(e) = st.entries.get(next) else {
                return self.go_live(broker, c, gap);
            };
            let mark = if gap { Mark::Gap } else { Mark::None };
            match deliver_with_credit(&c.sub, &e.msg, mark) {
                Ok(()) => {
                    c.cursor = Cursor::After {
                        from: Some(e.seq),
                        gap: false,
                    }
                }
                Err(PushError::Full) => {
                    c.cursor = Cursor::After { from, gap };
                    return false;
                }
                Err(PushError::Closed) => return true,
            }
        }
    }

    /// The retained value (or, with nothing retained, the placeholder), then live.
    fn advance_retained(&self, st: &State, broker: &Broker, c: &mut Catchup) -> bool {
        let (msg, mark) = match st.entries.back() {
            Some(last) if self.keep.retain_last => (Arc::clone(&last.msg), Mark::Retained),
            _ => match self.placeholder_message(broker) {
                Some(m) => (m, Mark::None),
                None => return self.go_live(broker, c, false),
            },
        };
        match deliver_with_credit(&c.sub, &msg, mark) {
            Ok(()) => self.go_live(broker, c, false),
            Err(PushError::Full) => false,
            Err(PushError::Closed) => true,
        }
    }

    /// Registers `c` for the live stream (under the destination's lock, so nothing published
    /// meanwhile is missed or doubled), with the gap mark for its next message if it is owed
    /// one, and sends the SUBSCRIBE's RECEIPT if it was held back.
    fn go_live(&self, broker: &Broker, c: &mut Catchup, gap: bool) -> bool {
        if gap && let Some(flag) = &c.sub.gap {
            flag.store(true, Ordering::Release);
        }
        let outbox = Arc::clone(&c.sub.outbox);
        broker.subscribe_exact(&c.key, c.sub.clone());
        if let Some(r) = c.receipt.take() {
            let size = r.len();
            let _ = outbox.push_credited(Outbound::Frame(r), size);
        }
        true
    }

    fn placeholder_message(&self, broker: &Broker) -> Option<Arc<Published>> {
        let body = self.placeholder.as_ref()?;
        let mut headers = stomp_codec::Headers::new();
        headers.push("content-type", "application/json");
        Some(Arc::new(Published::from_send(
            &self.destination,
            &broker.next_message_id(),
            &headers,
            bytes::Bytes::from(body.clone()),
        )))
    }

    /// A local subscription (`conn`, `key`) ended. A catch-up still under way is forgotten;
    /// in a cluster the mirror stops with the last subscription.
    pub fn leave(&self, conn: ConnId, key: u32) {
        let mut st = self.lock();
        st.subscribers = st.subscribers.saturating_sub(1);
        if let Some(mut c) = st.catchups.remove(&(conn, key))
            && let Some(r) = c.receipt.take()
        {
            // The SUBSCRIBE's RECEIPT is still owed, whatever followed it.
            let size = r.len();
            let _ = c.sub.outbox.push_credited(Outbound::Frame(r), size);
        }
        if st.subscribers == 0
            && let Some(stop) = st.tail.take()
        {
            stop.cancel();
            st.ready = false;
            st.catchups.clear();
            self.clear(&mut st);
        }
    }

    /// The cluster mirror (re)loaded the stream's newest entries, oldest first: they replace
    /// what is held, and waiting joins start catching up. `false` when `generation` is stale.
    ///
    /// `before` is the id of the entry just older than those loaded (if any): a client at that
    /// position missed nothing.
    pub(crate) fn load(
        &self,
        broker: &Broker,
        generation: u64,
        before: Option<Seq>,
        entries: Vec<(Seq, Arc<Published>)>,
    ) -> bool {
        let mut st = self.lock();
        if st.generation != generation || st.tail.is_none() {
            return false;
        }
        let last = st.last;
        self.clear(&mut st);
        st.last_dropped = before;
        for (seq, msg) in entries {
            self.record(&mut st, seq, msg, None);
        }
        // A reload after a reconnect: what was already delivered here stays the position.
        st.last = st.last.max(last);
        self.evict(&mut st);
        st.ready = true;
        let mut still = std::collections::HashMap::new();
        for (k, mut c) in std::mem::take(&mut st.catchups) {
            if matches!(c.cursor, Cursor::Unplaced) {
                self.place(&st, &mut c);
            }
            if !self.advance(&st, broker, &mut c) {
                still.insert(k, c);
            }
        }
        st.catchups = still;
        true
    }

    /// The cluster mirror read a new entry: recorded and delivered to the live subscribers
    /// here, once (an entry at or before the last one is a repeat after a reload). `false`
    /// when `generation` is stale.
    pub(crate) fn append_remote(
        &self,
        broker: &Broker,
        generation: u64,
        seq: Seq,
        msg: Arc<Published>,
        policy: crate::config::SlowConsumerPolicy,
    ) -> bool {
        let mut st = self.lock();
        if st.generation != generation || st.tail.is_none() {
            return false;
        }
        if st.last.is_some_and(|l| seq <= l) {
            return true;
        }
        // Exact subscriptions only: wildcard ones get it through pub/sub (see `Broker`).
        let outcome = broker.fan_out_to(
            &self.destination,
            &msg,
            policy,
            crate::registry::Which::Exact,
        );
        broker.metrics.delivered.inc_by(outcome.delivered as u64);
        self.record(&mut st, seq, msg, None);
        self.evict(&mut st);
        true
    }
}

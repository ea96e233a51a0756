//! Per-destination history and retained last values, so a client that reconnects resumes
//! where it left off instead of losing what was published meanwhile.
//!
//! A destination with `history = N` (and/or `history_ttl_ms`, `retain_last`) numbers its
//! messages with ids of the form `<milliseconds>-<counter>`, increasing per destination, so a
//! client's last seen id says exactly where it is. Publishing and joining take the
//! destination's lock: a publish assigns the id, records the message and hands it to the
//! subscribers in one step, and a subscriber that joins (with `resume-from`) is registered and
//! given the messages after its id in one step, so no message falls in the seam between
//! replay and live delivery and none arrives twice. The lock is per destination and only for
//! destinations with history; nothing else takes it.
//!
//! Memory is bounded per destination (`history` messages, `history_ttl_ms`) and over all of
//! them (`[broker] history_max_bytes`: past it, a destination that appends drops its own
//! oldest messages).
//!
//! In a cluster the history lives in a Redis stream per destination (`{prefix}:h:{dest}`),
//! whose entry ids are the message ids: a SEND on any node is appended there, and each node
//! with subscribers to the destination mirrors the stream (loads its newest entries, then
//! follows it) and delivers from the mirror, under the same lock as joins. So ids, order and
//! resume positions are the same on every node, and a client may resume on another node than
//! the one it left. Joins that arrive before the mirror is loaded wait for it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::message::Published;
use crate::outbox::{Delivery, Mark, Outbound};
use crate::registry::Subscriber;

/// A position in a destination's history: `<ms>-<n>`, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq {
    ms: u64,
    n: u64,
}

impl Seq {
    /// Parses `<ms>-<n>`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, n) = s.trim().split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            n: n.parse().ok()?,
        })
    }

    fn after(last: Option<Seq>, now_ms: u64) -> Seq {
        match last {
            Some(l) if l.ms >= now_ms => Seq {
                ms: l.ms,
                n: l.n + 1,
            },
            _ => Seq { ms: now_ms, n: 0 },
        }
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.n)
    }
}

/// How a destination keeps its past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    /// Messages kept (0: none beyond the retained last one).
    pub messages: usize,
    /// Age limit; `None`: no limit.
    pub ttl: Option<Duration>,
    /// Hand the newest message to each new subscriber.
    pub retain_last: bool,
}

impl Keep {
    /// Whether the destination keeps anything at all.
    pub fn any(&self) -> bool {
        self.messages > 0 || self.retain_last
    }

    fn capacity(&self) -> usize {
        self.messages.max(usize::from(self.retain_last))
    }
}

#[derive(Debug)]
struct Entry {
    /// Its id, whose milliseconds are when it was published (on any node): its age.
    seq: Seq,
    size: usize,
    msg: Arc<Published>,
}

#[derive(Debug)]
struct State {
    entries: VecDeque<Entry>,
    bytes: usize,
    last: Option<Seq>,
    last_dropped: Option<Seq>,
    /// False while a cluster mirror is (re)loading: joins wait in `pending`.
    ready: bool,
    pending: Vec<PendingJoin>,
    /// Local subscriptions; in a cluster the mirror is followed while there are any.
    subscribers: usize,
    /// The running mirror task and its generation (an old task's appends are ignored).
    tail: Option<CancellationToken>,
    generation: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            last: None,
            last_dropped: None,
            ready: true,
            pending: Vec::new(),
            subscribers: 0,
            tail: None,
            generation: 0,
        }
    }
}

/// A join waiting for the mirror, with the SUBSCRIBE's RECEIPT (sent once it is served, so
/// a client that waits for it knows every later message reaches it).
#[derive(Debug)]
struct PendingJoin {
    key: String,
    sub: Subscriber,
    resume: Option<String>,
    receipt: Option<crate::wire::WireFrame>,
}

/// What a joining subscriber gets before the live stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Join {
    /// Nothing to hand over.
    Nothing,
    /// The cluster mirror is loading: the subscriber is registered and handed its messages
    /// once it is.
    Pending,
    /// The newest message, as the retained value.
    Retained,
    /// The messages after the subscriber's position, all of them.
    Resumed,
    /// The subscriber's position is no longer (or was never) in the history: what is left,
    /// the first marked as following a gap.
    Gap,
}

/// One destination's history.
#[derive(Debug)]
pub struct History {
    destination: Box<str>,
    /// What a new subscriber gets when nothing is retained yet (a presence companion's empty
    /// snapshot), as a JSON body.
    placeholder: Option<String>,
    keep: Keep,
    state: Mutex<State>,
    totals: Arc<Totals>,
}

/// Counters over every history, for the global bound and /metrics.
#[derive(Debug, Default)]
pub struct Totals {
    /// Bytes held (message sizes as encoded).
    pub bytes: AtomicUsize,
    /// Messages held.
    pub messages: AtomicUsize,
    /// Messages dropped by a bound (count, age or the global byte limit).
    pub evicted: AtomicU64,
    max_bytes: usize,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes under the destination's lock: `deliver` gets the message id, builds the
    /// message, hands it to the current subscribers and returns it to be recorded.
    pub fn publish<T>(&self, deliver: impl FnOnce(&str) -> (Arc<Published>, T)) -> T {
        let mut st = self.lock();
        let seq = Seq::after(st.last, now_ms());
        let (msg, out) = deliver(&seq.to_string());
        self.record(&mut st, seq, msg);
        self.evict(&mut st);
        out
    }

    /// Registers a subscriber (under `key` in the registry) and hands it, before the live
    /// stream, the messages after `resume_from` (or the retained value), all under the
    /// destination's lock. In a cluster the mirror starts with the first subscriber.
    pub fn join(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        key: &str,
        sub: Subscriber,
        resume_from: Option<&str>,
        receipt: Option<crate::wire::WireFrame>,
    ) -> Join {
        let mut st = self.lock();
        st.subscribers += 1;
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
                st.pending.push(PendingJoin {
                    key: key.to_owned(),
                    sub,
                    resume: resume_from.map(str::to_owned),
                    receipt,
                });
                return Join::Pending;
            }
        }
        self.evict(&mut st);
        self.join_locked(&st, broker, key, sub, resume_from)
    }

    fn join_locked(
        &self,
        st: &State,
        broker: &Broker,
        key: &str,
        sub: Subscriber,
        resume_from: Option<&str>,
    ) -> Join {
        let retain_last = self.keep.retain_last;
        let (outbox, sub_key, credit, gap_next) = (
            Arc::clone(&sub.outbox),
            sub.key,
            sub.credit.clone(),
            sub.gap.clone(),
        );
        broker.subscribe_exact(key, sub);
        let hand = |msg: &Arc<Published>, mark: Mark| {
            if let Some(c) = &credit {
                c.take_forced();
            }
            // Past the outbox bound if need be: the history bounds it.
            let _ = outbox.push_credited(
                Outbound::Deliver(Delivery {
                    key: sub_key,
                    msg: Arc::clone(msg),
                    redelivered: false,
                    queue: None,
                    mark,
                }),
                msg.size_hint(),
            );
        };
        let Some(from) = resume_from else {
            if retain_last && let Some(last) = st.entries.back() {
                hand(&last.msg, Mark::Retained);
                return Join::Retained;
            }
            if let Some(body) = &self.placeholder {
                let mut headers = stomp_codec::Headers::new();
                headers.push("content-type", "application/json");
                let msg = Published::from_send(
                    &self.destination,
                    &broker.next_message_id(),
                    &headers,
                    bytes::Bytes::from(body.clone()),
                );
                hand(&Arc::new(msg), Mark::None);
            }
            return Join::Nothing;
        };
        let from = Seq::parse(from);
        let found = from.and_then(|f| st.entries.iter().position(|e| e.seq == f));
        let start = match (found, from) {
            (Some(i), _) => Some(i + 1),
            // Up to date: the last message, or the last one before those kept.
            (None, Some(f)) if Some(f) == st.last || Some(f) == st.last_dropped => Some(0),
            _ => None,
        };
        match start {
            Some(i) => {
                let mut any = false;
                for e in st.entries.iter().skip(i) {
                    hand(&e.msg, Mark::None);
                    any = true;
                }
                if any { Join::Resumed } else { Join::Nothing }
            }
            None => {
                let mut first = true;
                for e in st.entries.iter() {
                    hand(&e.msg, if first { Mark::Gap } else { Mark::None });
                    first = false;
                }
                if first && let Some(flag) = &gap_next {
                    // Nothing to replay: the next live message carries the gap mark.
                    flag.store(true, Ordering::Release);
                }
                Join::Gap
            }
        }
    }

    /// A local subscription (`conn`, `key`) ended. A join still waiting for the mirror is
    /// forgotten; in a cluster the mirror stops with the last subscription.
    pub fn leave(&self, conn: crate::registry::ConnId, key: u32) {
        let mut st = self.lock();
        st.subscribers = st.subscribers.saturating_sub(1);
        st.pending
            .retain(|p| !(p.sub.conn == conn && p.sub.key == key));
        if st.subscribers == 0
            && let Some(stop) = st.tail.take()
        {
            stop.cancel();
            st.ready = false;
            st.pending.clear();
            self.clear(&mut st);
        }
    }

    fn clear(&self, st: &mut State) {
        self.totals.bytes.fetch_sub(st.bytes, Ordering::Relaxed);
        self.totals
            .messages
            .fetch_sub(st.entries.len(), Ordering::Relaxed);
        st.entries.clear();
        st.bytes = 0;
        st.last = None;
        st.last_dropped = None;
    }

    /// The cluster mirror (re)loaded the stream's newest entries, oldest first: they replace
    /// what is held, and waiting joins are served. `false` when `generation` is stale.
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
            self.record(&mut st, seq, msg);
        }
        // A reload after a reconnect: what was already delivered here stays the position.
        st.last = st.last.max(last);
        self.evict(&mut st);
        st.ready = true;
        for p in std::mem::take(&mut st.pending) {
            let outbox = Arc::clone(&p.sub.outbox);
            self.join_locked(&st, broker, &p.key, p.sub, p.resume.as_deref());
            if let Some(r) = p.receipt {
                let size = r.len();
                let _ = outbox.push_credited(Outbound::Frame(r), size);
            }
        }
        true
    }

    /// The cluster mirror read a new entry: recorded and delivered here, once (an entry at or
    /// before the last one is a repeat after a reload). `false` when `generation` is stale.
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
        self.record(&mut st, seq, msg);
        self.evict(&mut st);
        true
    }

    fn record(&self, st: &mut State, seq: Seq, msg: Arc<Published>) {
        let size = msg.size_hint();
        st.last = Some(seq);
        st.bytes += size;
        st.entries.push_back(Entry { seq, size, msg });
        self.totals.bytes.fetch_add(size, Ordering::Relaxed);
        self.totals.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// The destination.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// How much it keeps.
    pub fn keep(&self) -> Keep {
        self.keep
    }

    fn evict(&self, st: &mut State) {
        let now = now_ms();
        let cap = self.keep.capacity();
        loop {
            let Some(front) = st.entries.front() else {
                return;
            };
            let too_many = st.entries.len() > cap;
            let too_old = self
                .keep
                .ttl
                .is_some_and(|ttl| now.saturating_sub(front.seq.ms) > ttl.as_millis() as u64)
                // The retained value stays however old it is.
                && !(self.keep.retain_last && st.entries.len() == 1);
            // Past the bound over all histories even the retained value goes: the bound is
            // what keeps many destinations from adding up.
            let over_total = self.totals.bytes.load(Ordering::Relaxed) > self.totals.max_bytes;
            if !(too_many || too_old || over_total) {
                return;
            }
            if let Some(e) = st.entries.pop_front() {
                st.bytes -= e.size;
                st.last_dropped = Some(e.seq);
                self.totals.bytes.fetch_sub(e.size, Ordering::Relaxed);
                self.totals.messages.fetch_sub(1, Ordering::Relaxed);
                self.totals.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether it holds nothing and nobody here follows it (it may be forgotten).
    fn is_idle(&self) -> bool {
        let st = self.lock();
        st.entries.is_empty() && st.subscribers == 0 && st.tail.is_none() && st.pending.is_empty()
    }

    /// Local subscriptions.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers
    }

    /// Messages held (for tests).
    /// Messages held, once what has aged past `history_ttl_ms` is dropped.
    pub fn len(&self) -> usize {
        let mut st = self.lock();
        self.evict(&mut st);
        st.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every destination's history.
#[derive(Debug)]
pub struct Histories {
    map: DashMap<Box<str>, Arc<History>>,
    /// Histories created since the last sweep of idle ones.
    created: AtomicUsize,
    /// Totals over all of them.
    pub totals: Arc<Totals>,
}

impl Histories {
    /// No history yet; `max_bytes` bounds all of them together.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            map: DashMap::new(),
            created: AtomicUsize::new(0),
            totals: Arc::new(Totals {
                max_bytes,
                ..Totals::default()
            }),
        }
    }

    /// The history of `destination`, created on first use.
    pub fn get_or_create(&self, destination: &str, keep: Keep) -> Arc<History> {
        self.get_or_create_with(destination, keep, None)
    }

    /// As `get_or_create`, with what a subscriber gets while nothing is retained.
    pub fn get_or_create_with(
        &self,
        destination: &str,
        keep: Keep,
        placeholder: Option<String>,
    ) -> Arc<History> {
        if let Some(h) = self.map.get(destination) {
            return Arc::clone(&h);
        }
        // Every so often, forget histories that hold nothing and that nobody follows, so
        // destination names that come and go do not pile up.
        if self.created.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
            self.map.retain(|_, h| !h.is_idle());
        }
        let h = self.map.entry(destination.into()).or_insert_with(|| {
            Arc::new(History {
                destination: destination.into(),
                placeholder,
                keep,
                state: Mutex::new(State::default()),
                totals: Arc::clone(&self.totals),
            })
        });
        Arc::clone(&h)
    }

    /// The history of `destination`, if it has one.
    pub fn get(&self, destination: &str) -> Option<Arc<History>> {
        self.map.get(destination).map(|h| Arc::clone(&h))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use stomp_codec::Headers;

    fn publish(h: &History, body: &str) -> String {
        h.publish(|id| {
            let msg = Arc::new(Published::from_send(
                "/topic/h",
                id,
                &Headers::new(),
                Bytes::from(body.to_owned()),
            ));
            (msg, id.to_owned())
        })
    }

    fn keep(messages: usize, retain_last: bool) -> Keep {
        Keep {
            messages,
            ttl: None,
            retain_last,
        }
    }

    /// What a subscriber joining with `from` is handed: bodies and whether each is marked.
    fn bodies(h: &Arc<History>, from: Option<&str>) -> (Join, Vec<(String, bool)>) {
        let broker = Broker::new(crate::config::Config::default()).unwrap();
        let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 20));
        let sub = Subscriber {
            conn: 1,
            key: 0,
            id: Bytes::from_static(b"0"),
            version: stomp_codec::Version::V1_2,
            auto_ack: true,
            credit: None,
            outbox: Arc::clone(&outbox),
            guard: None,
            gap: None,
        };
        let j = h.join(&broker, "/topic/h", sub, from, None);
        let mut items = std::collections::VecDeque::new();
        outbox.take(&mut items);
        let got = items
            .into_iter()
            .filter_map(|o| match o {
                Outbound::Deliver(d) => Some((
                    String::from_utf8_lossy(d.msg.prepared.body()).into_owned(),
                    d.mark == Mark::Gap,
                )),
                Outbound::Frame(_) => None,
            })
            .collect();
        (j, got)
    }

    #[test]
    fn ids_increase_and_parse() {
        let a = Seq::after(None, 5);
        let b = Seq::after(Some(a), 5);
        let c = Seq::after(Some(b), 4);
        let d = Seq::after(Some(c), 9);
        assert!(a < b && b < c && c < d);
        assert_eq!(Seq::parse(&d.to_string()), Some(d));
        assert_eq!(Seq::parse("x-1"), None);
    }

    #[test]
    fn resume_retain_gap_and_eviction() {
        let hs = Histories::new(usize::MAX);
        let h = hs.get_or_create("/topic/h", keep(3, true));
        let ids: Vec<String> = (0..5).map(|i| publish(&h, &format!("m{i}"))).collect();
        assert_eq!(h.len(), 3);
        assert_eq!(hs.totals.evicted.load(Ordering::Relaxed), 2);
        // Resume from a held id: what follows.
        let (j, got) = bodies(&h, Some(&ids[2]));
        assert_eq!(j, Join::Resumed);
        assert_eq!(got, vec![("m3".into(), false), ("m4".into(), false)]);
        // From the last one dropped: everything held, no gap.
        let (j, got) = bodies(&h, Some(&ids[1]));
        assert_eq!(j, Join::Resumed);
        assert_eq!(got.len(), 3);
        // From the newest: nothing.
        assert_eq!(bodies(&h, Some(&ids[4])).0, Join::Nothing);
        // From further back, or an unknown id: a gap, then everything held.
        let (j, got) = bodies(&h, Some(&ids[0]));
        assert_eq!(j, Join::Gap);
        assert_eq!(got[0], ("m2".into(), true));
        assert_eq!(bodies(&h, Some("garbage")).0, Join::Gap);
        // No position: the retained value.
        let (j, got) = bodies(&h, None);
        assert_eq!(j, Join::Retained);
        assert_eq!(got, vec![("m4".into(), false)]);
    }

    #[test]
    fn the_global_byte_bound_evicts() {
        let hs = Histories::new(1);
        let h = hs.get_or_create("/topic/h", keep(100, false));
        for i in 0..10 {
            publish(&h, &format!("m{i}"));
        }
        // Over the global bound every append drops everything, its own message included.
        assert_eq!(h.len(), 0);
        assert_eq!(hs.totals.messages.load(Ordering::Relaxed), 0);
    }
}

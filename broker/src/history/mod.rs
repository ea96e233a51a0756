//! Per-destination history and retained last values, so a client that reconnects resumes
//! where it left off instead of losing what was published meanwhile.
//!
//! A destination with `history = N` (and/or `history_ttl_ms`, `retain_last`) numbers its
//! messages with ids of the form `<milliseconds>-<counter>`, increasing per destination, so a
//! client's last seen id says exactly where it is. Publishing and joining take the
//! destination's lock: a publish assigns the id, records the message and hands it to the
//! live subscribers in one step. A subscriber that joins (with `resume-from`, or to get the
//! retained value) catches up first (`join.rs`): it is handed what it missed as fast as it
//! reads, under the same lock, and becomes a live subscriber in the step that hands it the
//! newest message, so no message falls in the seam between replay and live delivery and
//! none arrives twice. The lock is per destination and only for destinations with history.
//!
//! Memory: every entry is charged at the size it pins (`Published::memory_size`) to its
//! destination's budget (at most `max_share_percent` of the total), which sits inside the
//! budget of all histories (`[broker] history_max_bytes`), and to the publishing client's
//! share. Past its share a destination drops its own oldest messages; past the total the
//! least recently used destinations lose theirs first (`Histories::enforce`). A history
//! nobody subscribes to or publishes to for `idle_expiry_ms` is forgotten.
//!
//! In a cluster the history lives in a Redis stream per destination (`{prefix}:h:{dest}`),
//! whose entry ids are the message ids: a SEND on any node is appended there, and each node
//! with subscribers to the destination mirrors the stream (loads its newest entries, then
//! follows it) and delivers from the mirror, under the same lock as joins. So ids, order and
//! resume positions are the same on every node, and a client may resume on another node than
//! the one it left. Joins that arrive before the mirror is loaded wait for it.

mod join;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::budget::{Budget, Charge};
use crate::message::Published;

use join::Catchup;
pub use join::Join;

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
    msg: Arc<Published>,
    /// Its bytes in the destination's (and all histories') budget.
    _charge: Charge,
    /// Its bytes in the publishing client's share, while the client's share counts it.
    _owner: Option<Charge>,
}

#[derive(Debug)]
struct State {
    entries: VecDeque<Entry>,
    last: Option<Seq>,
    last_dropped: Option<Seq>,
    /// False while a cluster mirror is (re)loading: joins wait in `catchups` unstarted.
    ready: bool,
    /// Subscribers catching up before they join the live stream.
    catchups: std::collections::HashMap<(crate::registry::ConnId, u32), Catchup>,
    /// Local subscriptions (live or catching up); in a cluster the mirror is followed while
    /// there are any.
    subscribers: usize,
    /// The running mirror task and its generation (an old task's appends are ignored).
    tail: Option<CancellationToken>,
    generation: u64,
    /// The history's own overhead in the budget, charged while it holds entries.
    overhead: Option<Charge>,
}

/// What a history costs besides its entries (its map entry, lock, deque, budget), charged
/// while it holds any.
pub const HISTORY_OVERHEAD: usize = 1024;

impl Default for State {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            last: None,
            last_dropped: None,
            ready: true,
            catchups: std::collections::HashMap::new(),
            subscribers: 0,
            tail: None,
            generation: 0,
            overhead: None,
        }
    }
}

/// Why a message was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The publishing client already holds its share of all histories.
    #[error("history share exceeded")]
    ShareExceeded,
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
    /// This destination's bytes, inside the budget of all histories.
    budget: Arc<Budget>,
    /// When it was last published to or subscribed to (ms since the epoch).
    last_used: AtomicU64,
    totals: Arc<Totals>,
}

/// Counters over every history, for the global bound and /metrics.
#[derive(Debug)]
pub struct Totals {
    /// Bytes held by all histories, against `history_max_bytes`.
    pub budget: Arc<Budget>,
    /// Messages held.
    pub messages: AtomicUsize,
    /// Messages dropped by a bound (count, age, share, the total byte bound, idle expiry).
    pub evicted: AtomicU64,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// Publishes under the destination's lock: `deliver` gets the message id, builds the
    /// message, hands it to the current subscribers and returns it to be recorded. `owner`
    /// is the publishing client's share, refused (before anything is delivered) when full.
    pub fn publish<T>(
        &self,
        owner: Option<&Arc<Budget>>,
        size: usize,
        deliver: impl FnOnce(&str) -> (Arc<Published>, T),
    ) -> Result<T, HistoryError> {
        let owner = match owner {
            Some(b) => Some(b.try_charge(size).ok_or(HistoryError::ShareExceeded)?),
            None => None,
        };
        self.touch();
        let mut st = self.lock();
        let seq = Seq::after(st.last, now_ms());
        let (msg, out) = deliver(&seq.to_string());
        self.record(&mut st, seq, msg, owner);
        self.evict(&mut st);
        Ok(out)
    }

    fn clear(&self, st: &mut State) {
        self.totals
            .messages
            .fetch_sub(st.entries.len(), Ordering::Relaxed);
        st.entries.clear();
        st.last = None;
        st.last_dropped = None;
        st.overhead = None;
    }

    /// Charges the overhead while entries are held, gives it back when none are.
    fn account(&self, st: &mut State) {
        match (st.entries.is_empty(), st.overhead.is_some()) {
            (true, true) => st.overhead = None,
            (false, false) => {
                st.overhead = Some(
                    self.budget
                        .force_charge(HISTORY_OVERHEAD + self.destination.len()),
                );
            }
            _ => {}
        }
    }

    fn record(&self, st: &mut State, seq: Seq, msg: Arc<Published>, owner: Option<Charge>) {
        // Forced: the destination's share and the total are restored by eviction right after.
        let charge = self.budget.force_charge(msg.memory_size());
        st.last = Some(seq);
        st.entries.push_back(Entry {
            seq,
            msg,
            _charge: charge,
            _owner: owner,
        });
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

    /// Drops what is over the destination's count, age and share; the total over all
    /// histories is `Histories::enforce`'s (it takes other destinations' locks, one at a time).
    fn evict(&self, st: &mut State) {
        let now = now_ms();
        let cap = self.keep.capacity();
        while let Some(front) = st.entries.front() {
            let too_many = st.entries.len() > cap;
            let too_old = self
                .keep
                .ttl
                .is_some_and(|ttl| now.saturating_sub(front.seq.ms) > ttl.as_millis() as u64)
                // The retained value stays however old it is.
                && !(self.keep.retain_last && st.entries.len() == 1);
            if !(too_many || too_old || self.budget.over()) {
                break;
            }
            self.pop_oldest(st);
        }
        self.account(st);
    }

    fn pop_oldest(&self, st: &mut State) {
        if let Some(e) = st.entries.pop_front() {
            st.last_dropped = Some(e.seq);
            self.totals.messages.fetch_sub(1, Ordering::Relaxed);
            self.totals.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops oldest messages until all histories are within `target` bytes or this one is
    /// empty. Returns whether it emptied.
    fn shed(&self, target: usize) -> bool {
        let mut st = self.lock();
        while self.totals.budget.used() > target && !st.entries.is_empty() {
            self.pop_oldest(&mut st);
        }
        self.account(&mut st);
        st.entries.is_empty()
    }

    /// Whether it holds nothing and nobody here follows it (it may be forgotten).
    fn is_idle(&self) -> bool {
        let st = self.lock();
        st.entries.is_empty() && st.subscribers == 0 && st.tail.is_none() && st.catchups.is_empty()
    }

    /// Whether nobody here follows it and it was last used before `cutoff` (ms).
    fn expired(&self, cutoff: u64) -> bool {
        if self.last_used.load(Ordering::Relaxed) >= cutoff {
            return false;
        }
        let st = self.lock();
        st.subscribers == 0 && st.tail.is_none() && st.catchups.is_empty()
    }

    /// Local subscriptions.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers
    }

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
    /// Bytes one destination may hold.
    share: usize,
    /// Set while one thread runs `enforce`.
    enforcing: std::sync::atomic::AtomicBool,
    /// Totals over all of them.
    pub totals: Arc<Totals>,
}

impl Histories {
    /// No history yet; `max_bytes` bounds all of them together, `share` each one.
    pub fn new(max_bytes: usize, share: usize) -> Self {
        Self {
            map: DashMap::new(),
            created: AtomicUsize::new(0),
            share,
            enforcing: std::sync::atomic::AtomicBool::new(false),
            totals: Arc::new(Totals {
                budget: Budget::new(max_bytes, None),
                messages: AtomicUsize::new(0),
                evicted: AtomicU64::new(0),
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
            // Used now, under the map's lock: idle expiry cannot take it from under the caller.
            h.touch();
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
                budget: Budget::new(self.share, Some(Arc::clone(&self.totals.budget))),
                last_used: AtomicU64::new(now_ms()),
                totals: Arc::clone(&self.totals),
            })
        });
        Arc::clone(&h)
    }

    /// The history of `destination`, if it has one.
    pub fn get(&self, destination: &str) -> Option<Arc<History>> {
        self.map.get(destination).map(|h| Arc::clone(&h))
    }

    /// Destinations with a history here.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Brings all histories back within `history_max_bytes` when they are over it: the least
    /// recently used destinations lose their oldest messages first, down to 15/16 of the
    /// bound, so a sweep (which looks at every destination) happens at most once per 1/16 of
    /// the bound published. Takes one destination's lock at a time, never while holding one.
    pub fn enforce(&self) {
        let budget = &self.totals.budget;
        if !budget.over() || self.enforcing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shed_least_recently_used();
        self.enforcing.store(false, Ordering::Release);
    }

    fn shed_least_recently_used(&self) {
        let budget = &self.totals.budget;
        let target = budget.limit() - budget.limit() / 16;
        let mut by_age: Vec<(u64, Arc<History>)> = self
            .map
            .iter()
            .map(|e| (e.last_used.load(Ordering::Relaxed), Arc::clone(e.value())))
            .collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        for (_, h) in by_age {
            if budget.used() <= target {
                break;
            }
            h.shed(target);
        }
    }

    /// Forgets histories that nobody here follows and that nobody used since `cutoff` (ms
    /// since the epoch), with what they hold. Returns how many.
    pub fn expire(&self, cutoff: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, h| {
            if !h.expired(cutoff) {
                return true;
            }
            let mut st = h.lock();
            let n = st.entries.len();
            h.clear(&mut st);
            self.totals.evicted.fetch_add(n as u64, Ordering::Relaxed);
            false
        });
        before - self.map.len()
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

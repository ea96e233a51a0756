//! Who is subscribed to what, for broadcast destinations.
//!
//! Exact subscriptions live in a `DashMap` keyed by destination, so a publish costs one hash
//! lookup however many distinct destinations are subscribed. Pattern subscriptions are filed
//! under their literal prefix (`/topic/chat/*` under `/topic/chat`); a publish looks up each
//! segment-boundary prefix of its destination and tests only the patterns filed there. Neither
//! path takes a global lock: each destination and each prefix has its own small `RwLock`, held
//! only while handing the message to outboxes, which never waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use dashmap::DashMap;
use stomp_codec::Version;

use crate::outbox::Outbox;
use crate::pattern::Pattern;

/// Identifies a connection for the lifetime of the process.
pub type ConnId = u64;

/// One subscription as publishers see it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The subscribing connection.
    pub conn: ConnId,
    /// The subscription's key inside its session.
    pub key: u32,
    /// The client's subscription id, written into every MESSAGE.
    pub id: Bytes,
    /// The connection's STOMP version (escaping rules of the encoded frame).
    pub version: Version,
    /// Auto-ack subscriptions can share one encoded frame with others; the rest are encoded by
    /// their session, which tracks the ack.
    pub auto_ack: bool,
    /// Prefetch accounting for subscriptions that need acks.
    pub credit: Option<Arc<Credit>>,
    /// Where the subscriber's frames go.
    pub outbox: Arc<Outbox>,
    /// For a wildcard subscription under access rules: who subscribed, so each delivery's
    /// concrete destination is checked. `None` for everything checked once at SUBSCRIBE.
    pub guard: Option<Arc<crate::auth::Identity>>,
    /// Set when the next delivery must carry `resume-gap:true` (a resume that found a gap
    /// and nothing to replay).
    pub gap: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Which subscriptions a delivery goes to. In a cluster a history destination reaches its
/// exact subscriptions through the node's mirror of its stream and its wildcard ones through
/// pub/sub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Every matching subscription.
    All,
    /// Only subscriptions to exactly this destination.
    Exact,
    /// Only wildcard subscriptions.
    Patterns,
}

/// Bounds a subscription's unacknowledged deliveries (`prefetch-count`).
#[derive(Debug)]
pub struct Credit {
    in_flight: AtomicU32,
    limit: u32,
}

impl Credit {
    /// A window of `limit` unacknowledged deliveries.
    pub fn new(limit: u32) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            limit,
        }
    }

    /// Takes one unit of credit if any is left.
    pub fn try_take(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes one unit whatever the window (a resumed subscription's replay, bounded by the
    /// history instead); acknowledgements give it back as usual.
    pub fn take_forced(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Returns `n` units (acknowledged, or never delivered).
    pub fn give_back(&self, n: u32) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.saturating_sub(n))
            });
    }
}

/// A set of subscribers with O(1) insert and remove and a dense list for fan-out.
#[derive(Debug, Default)]
struct SubscriberList {
    list: Vec<Subscriber>,
    position: HashMap<(ConnId, u32), usize>,
}

impl SubscriberList {
    fn insert(&mut self, sub: Subscriber) {
        let k = (sub.conn, sub.key);
        if self.position.contains_key(&k) {
            return;
        }
        self.position.insert(k, self.list.len());
        self.list.push(sub);
    }

    fn remove(&mut self, conn: ConnId, key: u32) -> bool {
        let Some(i) = self.position.remove(&(conn, key)) else {
            return false;
        };
        self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.position.insert((moved.conn, moved.key), i);
        }
        true
    }
}

#[derive(Debug, Default)]
struct Topic {
    subs: RwLock<SubscriberList>,
}

#[derive(Debug)]
struct PatternEntry {
    pattern: Pattern,
    subs: SubscriberList,
}

#[derive(Debug, Default)]
struct PatternGroup {
    entries: RwLock<Vec<PatternEntry>>,
}

/// The broadcast subscription registry.
#[derive(Debug)]
pub struct Registry {
    exact: DashMap<Box<str>, Arc<Topic>>,
    patterns: DashMap<Box<str>, Arc<PatternGroup>>,
    pattern_subs: AtomicUsize,
    separator: u8,
}

impl Registry {
    /// An empty registry splitting pattern segments on `separator`.
    pub fn new(separator: u8) -> Self {
        Self {
            exact: DashMap::new(),
            patterns: DashMap::new(),
            pattern_subs: AtomicUsize::new(0),
            separator,
        }
    }

    /// Adds an exact subscription.
    pub fn subscribe_exact(&self, destination: &str, sub: Subscriber) {
        let topic = self.exact.entry(destination.into()).or_default();
        write(&topic.subs).insert(sub);
    }

    /// Removes an exact subscription; drops the destination's entry when it empties.
    pub fn unsubscribe_exact(&self, destination: &str, conn: ConnId, key: u32) {
        // `remove_if` holds the shard's write lock, so no subscribe can slip in between the
        // emptiness check and the removal.
        if let Some(topic) = self.exact.get(destination).map(|t| Arc::clone(&t)) {
            write(&topic.subs).remove(conn, key);
        }
        self.exact
            .remove_if(destination, |_, t| read(&t.subs).list.is_empty());
    }

    /// Adds a pattern subscription.
    pub fn subscribe_pattern(&self, pattern: Pattern, sub: Subscriber) {
        let group = self
            .patterns
            .entry(pattern.literal_prefix().into())
            .or_default();
        let mut entries = write(&group.entries);
        match entries.iter_mut().find(|e| e.pattern == pattern) {
            Some(entry) => entry.subs.insert(sub),
            None => {
                let mut subs = SubscriberList::default();
                subs.insert(sub);
                entries.push(PatternEntry { pattern, subs });
            }
        }
        self.pattern_subs.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a pattern subscription.
    pub fn unsubscribe_pattern(&self, pattern: &Pattern, conn: ConnId, key: u32) {
        let prefix = pattern.literal_prefix();
        if let Some(group) = self.patterns.get(prefix).map(|g| Arc::clone(&g)) {
            let mut entries = write(&group.entries);
            if let Some(i) = entries.iter().position(|e| &e.pattern == pattern) {
                if entries[i].subs.remove(conn, key) {
                    self.pattern_subs.fetch_sub(1, Ordering::Relaxed);
                }
                if entries[i].subs.list.is_empty() {
                    entries.swap_remove(i);
                }
            }
        }
        self.patterns
            .remove_if(prefix, |_, g| read(&g.entries).is_empty());
    }

    /// Calls `f` for every subscription matching `destination`, exact ones first.
    ///
    /// `f` runs under the destination's read lock and must not block or call back into the
    /// registry; pushing to an outbox is what it is for.
    pub fn for_each_match(&self, destination: &str, f: impl FnMut(&Subscriber)) {
        self.for_each_match_in(destination, Which::All, f);
    }

    /// As `for_each_match`, limited to exact or to wildcard subscriptions.
    pub fn for_each_match_in(
        &self,
        destination: &str,
        which: Which,
        mut f: impl FnMut(&Subscriber),
    ) {
        if which != Which::Patterns
            && let Some(topic) = self.exact.get(destination).map(|t| Arc::clone(&t))
        {
            for sub in read(&topic.subs).list.iter() {
                f(sub);
            }
        }
        if which == Which::Exact || self.pattern_subs.load(Ordering::Relaxed) == 0 {
            return;
        }
        let bytes = destination.as_bytes();
        let mut visit = |prefix: &str| {
            if let Some(group) = self.patterns.get(prefix).map(|g| Arc::clone(&g)) {
                for entry in read(&group.entries).iter() {
                    if entry.pattern.matches(destination) {
                        entry.subs.list.iter().for_each(&mut f);
                    }
                }
            }
        };
        if bytes.first() != Some(&self.separator) {
            visit("");
        }
        for (i, &b) in bytes.iter().enumerate() {
            if b == self.separator {
                visit(destination.get(..i).unwrap_or(""));
            }
        }
        visit(destination);
    }

    /// Number of exact destinations with subscribers (for tests and metrics).
    pub fn exact_destinations(&self) -> usize {
        self.exact.len()
    }

    /// Number of live wildcard subscriptions (for tests).
    pub fn pattern_subscriptions(&self) -> usize {
        self.pattern_subs.load(Ordering::Relaxed)
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(conn: ConnId, key: u32) -> Subscriber {
        Subscriber {
            conn,
            key,
            id: Bytes::from_static(b"sub-0"),
            version: Version::V1_2,
            auto_ack: true,
            credit: None,
            outbox: Arc::new(Outbox::new(10, 10_000)),
            guard: None,
            gap: None,
        }
    }

    fn matches(r: &Registry, d: &str) -> Vec<(ConnId, u32)> {
        let mut v = Vec::new();
        r.for_each_match(d, |s| v.push((s.conn, s.key)));
        v.sort();
        v
    }

    #[test]
    fn exact_and_patterns() {
        let r = Registry::new(b'/');
        r.subscribe_exact("/topic/a", sub(1, 0));
        r.subscribe_pattern(Pattern::parse("/topic/*", b'/').unwrap(), sub(2, 0));
        r.subscribe_pattern(Pattern::parse("/topic/**", b'/').unwrap(), sub(3, 0));
        r.subscribe_pattern(Pattern::parse("/**", b'/').unwrap(), sub(4, 0));
        assert_eq!(
            matches(&r, "/topic/a"),
            vec![(1, 0), (2, 0), (3, 0), (4, 0)]
        );
        assert_eq!(matches(&r, "/topic/b/c"), vec![(3, 0), (4, 0)]);
        assert_eq!(matches(&r, "/queue/x"), vec![(4, 0)]);
        r.unsubscribe_pattern(&Pattern::parse("/**", b'/').unwrap(), 4, 0);
        r.unsubscribe_exact("/topic/a", 1, 0);
        assert_eq!(matches(&r, "/topic/a"), vec![(2, 0), (3, 0)]);
        assert_eq!(r.exact_destinations(), 0);
    }

    #[test]
    fn removal_keeps_the_dense_list_consistent() {
        let r = Registry::new(b'/');
        for c in 0..100 {
            r.subscribe_exact("/topic/x", sub(c, 0));
        }
        for c in (0..100).step_by(2) {
            r.unsubscribe_exact("/topic/x", c, 0);
        }
        let got = matches(&r, "/topic/x");
        assert_eq!(got, (1..100).step_by(2).map(|c| (c, 0)).collect::<Vec<_>>());
    }

    #[test]
    fn credit_window() {
        let c = Credit::new(2);
        assert!(c.try_take() && c.try_take() && !c.try_take());
        c.give_back(1);
        assert!(c.try_take());
        c.give_back(10);
        assert!(c.try_take());
    }
}

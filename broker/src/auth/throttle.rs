//! Failed password logins, throttled per client address and per user name.
//!
//! Each failure counts against the address (IPv6: its /64, which one host usually has whole)
//! and against the user name tried. Past `failures_per_address` in a window, that address's
//! password logins are refused without verifying anything; past `failures_per_user`, so are
//! logins for that name — except from an address that logged in as that user within
//! `trusted_ms`. That exemption is what keeps a per-name budget from being a lock-out button:
//! an attacker spraying guesses at a name from anywhere exhausts its budget, and the owner, at
//! the addresses they use, still gets in. A success clears its address's count (typos of the
//! people behind one NAT do not add up), not the name's (the attacker's guesses would start
//! over each time the owner logs in).
//!
//! Memory: names are kept as keyed 64-bit hashes (a long name costs nothing more), and each
//! table holds at most `max_tracked` entries; when one is full of live entries, keys not in it
//! share a single budget, so varying addresses or names past the table cannot escape counting.
//! Unknown names are counted like known ones, so throttling tells nothing about which exist.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ThrottleConfig;

/// A client address as throttled: IPv4 whole, IPv6 by /64.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct AddrKey(u128);

impl AddrKey {
    /// The key of `ip`; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(u128::from(v4.to_ipv6_mapped())),
                None => Self(u128::from(v6) & !u128::from(u64::MAX)),
            },
        }
    }
}

/// Failures since `first`.
#[derive(Clone, Copy)]
struct Window {
    first: Instant,
    failures: u32,
}

impl Window {
    fn live(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.first) < window
    }
}

/// Failure windows by key, bounded.
struct Counts {
    map: HashMap<u64, Window>,
    /// Shared by keys that found the table full.
    overflow: Option<Window>,
}

impl Counts {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
            overflow: None,
        }
    }

    fn failures(&self, key: u64, now: Instant, window: Duration) -> u32 {
        let w = self.map.get(&key).or(self.overflow.as_ref());
        w.filter(|w| w.live(now, window)).map_or(0, |w| w.failures)
    }

    fn fail(&mut self, key: u64, now: Instant, window: Duration, max: usize) {
        if !self.map.contains_key(&key) && self.map.len() >= max {
            self.map.retain(|_, w| w.live(now, window));
        }
        let slot = if self.map.contains_key(&key) || self.map.len() < max {
            self.map.entry(key).or_insert(Window {
                first: now,
                failures: 0,
            })
        } else {
            self.overflow.get_or_insert(Window {
                first: now,
                failures: 0,
            })
        };
        if !slot.live(now, window) {
            *slot = Window {
                first: now,
                failures: 0,
            };
        }
        slot.failures = slot.failures.saturating_add(1);
    }
}

struct Tables {
    addresses: Counts,
    names: Counts,
    /// (name, address) pairs that logged in, until when they are trusted.
    trusted: HashMap<u64, Instant>,
}

/// The throttle. Its lock is held for a few map operations, never across an await.
pub(crate) struct Throttle {
    cfg: ThrottleConfig,
    keys: RandomState,
    tables: Mutex<Tables>,
}

impl Throttle {
    pub(crate) fn new(cfg: &ThrottleConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            keys: RandomState::new(),
            tables: Mutex::new(Tables {
                addresses: Counts::new(),
                names: Counts::new(),
                trusted: HashMap::new(),
            }),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.cfg.window_ms)
    }

    fn keys(&self, addr: AddrKey, name: &str) -> (u64, u64, u64) {
        let a = self.keys.hash_one(addr);
        let n = self.keys.hash_one(name);
        (a, n, self.keys.hash_one((name, addr)))
    }

    /// Whether a password login for `name` from `addr` may be verified now.
    pub(crate) fn allows(&self, addr: AddrKey, name: &str) -> bool {
        let (a, n, pair) = self.keys(addr, name);
        let now = Instant::now();
        let window = self.window();
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let per_addr = self.cfg.failures_per_address;
        if per_addr > 0 && t.addresses.failures(a, now, window) >= per_addr {
            return false;
        }
        let per_user = self.cfg.failures_per_user;
        if per_user > 0 && t.names.failures(n, now, window) >= per_user {
            return t.trusted.get(&pair).is_some_and(|until| now < *until);
        }
        true
    }

    /// Records a verification's outcome.
    pub(crate) fn record(&self, addr: AddrKey, name: &str, ok: bool) {
        let (a, n, pair) = self.keys(addr, name);
        let now = Instant::now();
        let window = self.window();
        let max = self.cfg.max_tracked;
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            t.addresses.map.remove(&a);
            if t.trusted.len() >= max && !t.trusted.contains_key(&pair) {
                t.trusted.retain(|_, until| now < *until);
                if t.trusted.len() >= max {
                    // Still full of live pairs: the one closest to expiring makes room.
                    let soonest = t.trusted.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k);
                    if let Some(k) = soonest {
                        t.trusted.remove(&k);
                    }
                }
            }
            let until = now + Duration::from_millis(self.cfg.trusted_ms);
            t.trusted.insert(pair, until);
        } else {
            t.addresses.fail(a, now, window, max);
            t.names.fail(n, now, window, max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_tracked: usize) -> ThrottleConfig {
        ThrottleConfig {
            failures_per_address: 3,
            failures_per_user: 3,
            window_ms: 60_000,
            trusted_ms: 60_000,
            max_tracked,
        }
    }

    fn ip(s: &str) -> AddrKey {
        AddrKey::of(s.parse().unwrap())
    }

    #[test]
    fn an_address_over_budget_is_refused_and_others_are_not() {
        let t = Throttle::new(&cfg(100));
        for i in 0..3 {
            assert!(t.allows(ip("10.0.0.1"), &format!("n{i}")));
            t.record(ip("10.0.0.1"), &format!("n{i}"), false);
        }
        assert!(!t.allows(ip("10.0.0.1"), "other"));
        assert!(t.allows(ip("10.0.0.2"), "other"));
    }

    #[test]
    fn a_name_over_budget_is_refused_except_where_its_owner_logged_in() {
        let t = Throttle::new(&cfg(100));
        t.record(ip("10.0.0.9"), "alice", true);
        for i in 0..3 {
            t.record(ip(&format!("10.0.1.{i}")), "alice", false);
        }
        assert!(!t.allows(ip("10.0.2.1"), "alice"));
        assert!(t.allows(ip("10.0.0.9"), "alice"));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8::1"), ip("2001:db8::ffff:2"));
        assert_ne!(ip("2001:db8::1"), ip("2001:db8:0:1::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
    }

    #[test]
    fn a_full_table_shares_one_budget() {
        let t = Throttle::new(&cfg(2));
        t.record(ip("10.0.0.1"), "a", false);
        t.record(ip("10.0.0.2"), "b", false);
        for i in 3..6 {
            t.record(ip(&format!("10.0.0.{i}")), &format!("x{i}"), false);
        }
        assert!(
            !t.allows(ip("10.0.0.77"), "y"),
            "untracked keys share the overflow budget"
        );
        assert!(t.allows(ip("10.0.0.1"), "a"), "tracked keys keep their own");
    }
}

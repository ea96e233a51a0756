//! Presence: who is subscribed to a destination that asks for it (`presence = true`).
//!
//! Every subscription to such a destination counts for its user (anonymous sessions are
//! counted together). Changes are published as JSON on the companion destination
//! `<destination>/presence` (`.presence` with the `.` separator):
//!
//! ```json
//! {"type":"join","destination":"/topic/room/1","user":"alice","sessions":2,"anonymous":0,
//!  "members":[{"user":"alice","sessions":2}]}
//! {"type":"leave","destination":"/topic/room/1","user":null,"sessions":0,"anonymous":3,
//!  "members":[{"user":"alice","sessions":2}]}
//! ```
//!
//! Each event carries the change and the whole list after it, so a client that missed one
//! (or joined in a cluster, where the first message is the latest event, marked
//! `retained:true`) always has the full picture.
//!
//! Subscribing to the companion destination first delivers a snapshot:
//!
//! ```json
//! {"type":"snapshot","destination":"/topic/room/1","members":[{"user":"alice","sessions":2}],"anonymous":3}
//! ```
//!
//! Snapshot and events for a destination are produced under one lock, so a companion
//! subscriber sees the snapshot and then every change after it, none twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

/// The companion destination's suffix, after the separator.
pub const SUFFIX: &str = "presence";

#[derive(Debug, Default)]
struct Members {
    users: BTreeMap<String, usize>,
    anonymous: usize,
}

/// Presence of every destination that has it.
#[derive(Debug, Default)]
pub struct Presence {
    map: DashMap<Box<str>, Arc<Mutex<Members>>>,
}

/// A change to announce.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// The JSON event.
    pub event: String,
}

impl Presence {
    /// Whether anyone is counted for `destination` here.
    pub fn has(&self, destination: &str) -> bool {
        self.map.contains_key(destination)
    }

    /// This node's count for each user of `destination` (anonymous sessions under `""`).
    pub fn local_counts(&self, destination: &str) -> Vec<(String, usize)> {
        let Some(m) = self.map.get(destination) else {
            return Vec::new();
        };
        let m = m.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, usize)> = m.users.iter().map(|(u, n)| (u.clone(), *n)).collect();
        if m.anonymous > 0 {
            out.push((String::new(), m.anonymous));
        }
        out
    }

    /// Counts a subscription in or out, and announces it with `announce` (called under the
    /// destination's lock, so announcements stay in order with snapshots).
    ///
    /// The change is made inside the map's entry for the destination, so it cannot land in
    /// an entry that another change is removing (the entry goes once nobody is counted).
    /// `announce` gets the event and this node's count for `user` after the change.
    pub fn change(
        &self,
        destination: &str,
        user: Option<&str>,
        joined: bool,
        announce: impl FnOnce(String, usize),
    ) {
        let entry = match self.map.entry(destination.into()) {
            dashmap::Entry::Occupied(o) => o,
            dashmap::Entry::Vacant(v) => v.insert_entry(Arc::default()),
        };
        let members = Arc::clone(entry.get());
        let mut m = members.lock().unwrap_or_else(|p| p.into_inner());
        let sessions = match user {
            Some(u) => {
                let n = m.users.entry(u.to_owned()).or_default();
                if joined {
                    *n += 1;
                } else {
                    *n = n.saturating_sub(1);
                }
                let n = *n;
                if n == 0 {
                    m.users.remove(u);
                }
                n
            }
            None => {
                if joined {
                    m.anonymous += 1;
                } else {
                    m.anonymous = m.anonymous.saturating_sub(1);
                }
                m.anonymous
            }
        };
        let event = serde_json::json!({
            "type": if joined { "join" } else { "leave" },
            "destination": destination,
            "user": user,
            "sessions": sessions,
            "anonymous": m.anonymous,
            "members": member_list(&m),
        })
        .to_string();
        announce(event, sessions);
        let empty = m.users.is_empty() && m.anonymous == 0;
        drop(m);
        if empty {
            drop(entry.remove());
        }
    }

    /// Hands the current snapshot to `deliver`, which delivers it and registers the
    /// subscriber (or, when it cannot deliver it now, does neither and returns `false`), under
    /// the destination's lock: a companion subscriber misses no change and sees none twice.
    pub fn snapshot(&self, destination: &str, deliver: impl FnOnce(String) -> bool) -> bool {
        // Inside the map's entry (created empty if need be, and dropped again when it stays
        // empty), so no change interleaves with the registration and the snapshot.
        let entry = match self.map.entry(destination.into()) {
            dashmap::Entry::Occupied(o) => o,
            dashmap::Entry::Vacant(v) => v.insert_entry(Arc::default()),
        };
        let members = Arc::clone(entry.get());
        let m = members.lock().unwrap_or_else(|p| p.into_inner());
        let list = member_list(&m);
        let done = deliver(
            serde_json::json!({
                "type": "snapshot",
                "destination": destination,
                "members": list,
                "anonymous": m.anonymous,
            })
            .to_string(),
        );
        let empty = m.users.is_empty() && m.anonymous == 0;
        drop(m);
        if empty {
            drop(entry.remove());
        }
        done
    }
}

fn member_list(m: &Members) -> Vec<serde_json::Value> {
    m.users
        .iter()
        .map(|(u, n)| serde_json::json!({"user": u, "sessions": n}))
        .collect()
}

/// The destination a companion destination reports on, if `destination` is one.
pub fn base_of(destination: &str, separator: u8) -> Option<&str> {
    let base = destination.strip_suffix(SUFFIX)?;
    let base = base.strip_suffix(separator as char)?;
    (!base.is_empty()).then_some(base)
}

/// The companion destination of `destination`.
pub fn companion(destination: &str, separator: u8) -> String {
    format!("{destination}{}{SUFFIX}", separator as char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let p = Presence::default();
        let mut events = Vec::new();
        p.change("/t", Some("alice"), true, |e, _| events.push(e));
        p.change("/t", Some("alice"), true, |e, _| events.push(e));
        p.change("/t", None, true, |e, _| events.push(e));
        let mut snap = String::new();
        p.snapshot("/t", |s| {
            snap = s;
            true
        });
        let v: serde_json::Value = serde_json::from_str(&snap).unwrap();
        assert_eq!(v["members"][0]["user"], "alice");
        assert_eq!(v["members"][0]["sessions"], 2);
        assert_eq!(v["anonymous"], 1);
        p.change("/t", Some("alice"), false, |e, _| events.push(e));
        p.change("/t", Some("alice"), false, |e, _| events.push(e));
        p.change("/t", None, false, |e, _| events.push(e));
        let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(last["type"], "leave");
        assert!(p.map.is_empty());
        assert_eq!(base_of("/topic/room/presence", b'/'), Some("/topic/room"));
        assert_eq!(base_of("/topic.room.presence", b'.'), Some("/topic.room"));
        assert_eq!(base_of("/topic/roompresence", b'/'), None);
        assert_eq!(companion("/topic/room", b'/'), "/topic/room/presence");
    }
}

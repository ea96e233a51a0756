//! A session's own view of its subscriptions: ids, ack modes, unacknowledged deliveries.
//!
//! Owned by the session task alone, so none of it needs a lock. Keys only grow, so a delivery
//! still queued for an unsubscribed subscription can never land on a newer one.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::message::Published;
use crate::pattern::Pattern;
use crate::queue::Queue;
use crate::registry::Credit;

/// How a subscription acknowledges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// Delivered means acknowledged.
    Auto,
    /// ACK acknowledges this message and every earlier one of the subscription.
    Client,
    /// ACK acknowledges this message only.
    ClientIndividual,
}

impl AckMode {
    /// Parses the SUBSCRIBE `ack` header; absent means auto.
    pub fn parse(v: Option<&str>) -> Option<Self> {
        match v {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

/// Where a subscription's messages come from.
#[derive(Debug)]
pub enum Source {
    /// A broadcast destination, exact.
    Exact,
    /// A broadcast destination pattern.
    Pattern(Pattern),
    /// A queue-mode destination.
    Queue(Arc<Queue>),
}

/// A delivery waiting for ACK or NACK.
#[derive(Debug)]
pub struct Unacked {
    /// The session-wide delivery number, which makes the ack id unique.
    pub seq: u64,
    /// The message.
    pub msg: Arc<Published>,
    /// Its bytes in the connection's unsettled budget, released with it.
    pub _charge: Option<crate::budget::Charge>,
}

/// One subscription.
#[derive(Debug)]
pub struct Subscription {
    /// The client's id, as sent.
    pub id: Bytes,
    /// The SUBSCRIBE destination (possibly a pattern).
    pub destination: String,
    /// Where the registry files it: the destination, or the user-keyed form of a `/user` one.
    pub registry_key: String,
    /// Its ack mode.
    pub ack: AckMode,
    /// Where messages come from.
    pub source: Source,
    /// Prefetch window of a broadcast subscription that needs acks.
    pub credit: Option<Arc<Credit>>,
    /// Deliveries not yet acknowledged, oldest first.
    pub unacked: VecDeque<Unacked>,
    /// Counted in the destination's presence (announce the leave when it ends).
    pub presence: bool,
    /// The destination's history, which counts its local subscribers.
    pub history: Option<Arc<crate::history::History>>,
    /// Still being handed what it asked for before the live stream (a replay, a retained
    /// value, a presence snapshot): its session pumps it as it writes and reads.
    pub catching_up: Option<CatchingUp>,
}

/// A subscription that is not live yet.
#[derive(Debug)]
pub enum CatchingUp {
    /// Its history hands it the entries after its position (`History::pump`).
    History,
    /// A presence companion whose snapshot did not fit the outbox yet (boxed: rare, and it
    /// would otherwise enlarge every subscription).
    Presence(Box<PresenceCatchup>),
}

/// A presence companion waiting for room for its snapshot: registered, with the snapshot
/// of that moment, once it has.
#[derive(Debug)]
pub struct PresenceCatchup {
    /// The destination whose presence it reports.
    pub base: String,
    /// The subscriber to register.
    pub subscriber: crate::registry::Subscriber,
    /// The SUBSCRIBE's RECEIPT, sent once it is live.
    pub receipt: Option<crate::wire::WireFrame>,
}

impl Subscriptions {
    /// The queues of queue subscriptions.
    pub fn queues(&self) -> impl Iterator<Item = &Arc<Queue>> + '_ {
        self.list.iter().filter_map(|(_, s)| match &s.source {
            Source::Queue(q) => Some(q),
            _ => None,
        })
    }
}

/// All of a session's subscriptions, in a vector sorted by key (keys only grow, so pushing
/// keeps it sorted). Most connections hold a handful; a vector costs a fraction of a hash map
/// per idle connection, finds a key by binary search and an id by a short scan.
#[derive(Debug, Default)]
pub struct Subscriptions {
    list: Vec<(u32, Subscription)>,
    next_key: u32,
}

impl Subscriptions {
    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether `id` is in use.
    pub fn contains_id(&self, id: &[u8]) -> bool {
        self.key_of(id).is_some()
    }

    /// The key the next subscription will get.
    pub fn next_key(&self) -> u32 {
        self.next_key
    }

    /// Adds a subscription under the key `next_key` returned.
    pub fn insert(&mut self, sub: Subscription) -> u32 {
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        self.list.push((key, sub));
        key
    }

    fn position(&self, key: u32) -> Option<usize> {
        self.list.binary_search_by_key(&key, |(k, _)| *k).ok()
    }

    /// Looks up by key.
    pub fn get_mut(&mut self, key: u32) -> Option<&mut Subscription> {
        let i = self.position(key)?;
        self.list.get_mut(i).map(|(_, s)| s)
    }

    /// Looks up the key of a client id.
    pub fn key_of(&self, id: &[u8]) -> Option<u32> {
        self.list.iter().find(|(_, s)| s.id == id).map(|(k, _)| *k)
    }

    /// Finds the key of the subscription to `destination` (STOMP 1.0 UNSUBSCRIBE by destination).
    pub fn key_of_destination(&self, destination: &str) -> Option<u32> {
        self.list
            .iter()
            .find(|(_, s)| s.destination == destination)
            .map(|(k, _)| *k)
    }

    /// Removes by key.
    pub fn remove(&mut self, key: u32) -> Option<Subscription> {
        let i = self.position(key)?;
        Some(self.list.remove(i).1)
    }

    /// Finds an unacknowledged delivery by message id, within one subscription or all of them
    /// (STOMP 1.0 and 1.1 acknowledge by `message-id`).
    pub fn find_message(&self, message_id: &[u8], within: Option<u32>) -> Option<(u32, u64)> {
        self.list
            .iter()
            .filter(|(k, _)| within.is_none_or(|w| w == *k))
            .find_map(|(k, s)| {
                s.unacked
                    .iter()
                    .find(|u| u.msg.prepared.message_id() == message_id)
                    .map(|u| (*k, u.seq))
            })
    }

    /// Takes every subscription out, for cleanup.
    pub fn drain(&mut self) -> impl Iterator<Item = (u32, Subscription)> + '_ {
        self.list.drain(..)
    }
}

/// Removes the deliveries an ACK or NACK covers: the one named, and for `client` mode every
/// earlier one too. Returns them oldest first.
/// Their unsettled bytes are released as the entries go.
pub fn take_acked(sub: &mut Subscription, seq: u64) -> Vec<Arc<Published>> {
    match sub.ack {
        AckMode::Client => {
            if !sub.unacked.iter().any(|u| u.seq == seq) {
                return Vec::new();
            }
            let mut out = Vec::new();
            while let Some(front) = sub.unacked.front() {
                if front.seq > seq {
                    break;
                }
                if let Some(u) = sub.unacked.pop_front() {
                    out.push(u.msg);
                }
            }
            out
        }
        AckMode::ClientIndividual | AckMode::Auto => {
            match sub.unacked.iter().position(|u| u.seq == seq) {
                Some(i) => sub
                    .unacked
                    .remove(i)
                    .map(|u| vec![u.msg])
                    .unwrap_or_default(),
                None => Vec::new(),
            }
        }
    }
}

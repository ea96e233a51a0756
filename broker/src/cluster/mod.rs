//! Several nodes as one broker, over Redis.
//!
//! - **Broadcast and user destinations**: a node publishes each message it accepts to Redis
//!   once (`PUBLISH {prefix}:d:{key}`), after delivering it to its own subscribers; it
//!   subscribes in Redis only to the keys its own clients subscribe to (`SUBSCRIBE` for exact
//!   destinations, `PSUBSCRIBE` on the literal prefix for wildcard ones, matched exactly
//!   again locally), and ignores its own messages coming back. So traffic follows interest,
//!   and a local subscriber gets a local message exactly once. User destinations ride on the
//!   same mechanism: their registry key names the user.
//! - **Queue destinations**: a Redis stream per destination (`{prefix}:q:{dest}`) with one
//!   consumer group. A SEND is `XADD`ed; each node with consumers reads (`XREADGROUP`) only
//!   as much as its consumers have credit for, and `XACK`s a message when its consumer has
//!   acknowledged it (or, for auto-ack, when it was written). Messages a node took but never
//!   acknowledged (the node died, its consumer vanished) are claimed by another node after
//!   `claim_idle_ms` (`XAUTOCLAIM`) and delivered again with `redelivered:true`.
//! - **Connections**: a fixed number per node whatever clients do (`redis_connections`, see
//!   `conn`): mirrors and pumps are entries in the readers' tables (`readers`), not
//!   connections.
//! - **Lifetimes**: every per-destination key (queue and history streams, presence hashes)
//!   expires after `key_ttl_ms` without use; writes and the nodes that follow it refresh it.
//! - **Faults**: each link reconnects with exponential backoff; while Redis is away local
//!   delivery goes on, messages for other nodes wait in a backlog bounded in messages and in
//!   bytes (beyond it they are dropped and counted), `/healthz` says `degraded`, and
//!   `/metrics` counts failures.

mod codec;
mod conn;
mod history;
mod link;
mod presence;
mod pump;
mod readers;

pub(crate) use history::history_tail;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use stomp_codec::Headers;
use tokio::sync::{Notify, mpsc};

pub use codec::Envelope;
use link::Outgoing;

use crate::config::{ClusterConfig, SlowConsumerPolicy};
use crate::queue::Queue;
use conn::Retry;

/// Why the cluster link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL or its options are unusable.
    #[error("cluster.redis: {0}")]
    Url(String),
    /// `password_env` names an unset variable.
    #[error("cluster.password_env: {0} is not set")]
    Password(String),
}

/// Where a queue message came from in Redis, so it can be acknowledged there.
#[derive(Debug)]
pub struct StreamRef {
    key: String,
    id: String,
}

/// This node's side of the cluster.
#[derive(Debug)]
pub struct Cluster {
    node: String,
    /// This run of the node (its id and a random part): presence counts are kept per
    /// instance, so a node restarted under the same id does not inherit stale counts.
    instance: String,
    presence_watch: Mutex<std::collections::HashSet<(String, String)>>,
    prefix: String,
    client: redis::Client,
    outgoing: mpsc::Sender<Outgoing>,
    outgoing_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    interest: Mutex<Interest>,
    interest_changed: Notify,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    reconnect_max: Duration,
    claim_idle: Duration,
    /// Every per-destination key expires after this long without use.
    key_ttl: Duration,
    /// Bytes waiting in `outgoing` (or in the batch being sent), and their bound.
    backlog_bytes: AtomicUsize,
    max_backlog_bytes: usize,
    /// The shared command connection.
    commands: conn::Commands,
    /// History streams followed here, by reader.
    histories: readers::Shards<history::HistoryReg>,
    /// Queue streams served here, by reader.
    queues: readers::Shards<pump::QueueReg>,
    pumps: Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
    /// Stream entries this node took and has not acknowledged yet, by stream: their idle
    /// time in Redis is refreshed, so other nodes claim them only when this node is gone.
    held: Mutex<HashMap<String, std::collections::HashSet<String>>>,
}

/// How many local subscriptions want each Redis channel and pattern.
#[derive(Debug, Default)]
struct Interest {
    channels: HashMap<String, usize>,
    patterns: HashMap<String, usize>,
}

impl Cluster {
    /// Sets up (but does not yet connect) this node's cluster side.
    pub fn new(cfg: &ClusterConfig) -> Result<Self, ClusterError> {
        let mut info: redis::ConnectionInfo = cfg
            .redis
            .as_str()
            .parse()
            .map_err(|e: redis::RedisError| ClusterError::Url(e.to_string()))?;
        if let Some(var) = &cfg.password_env {
            let password = std::env::var(var).map_err(|_| ClusterError::Password(var.clone()))?;
            let redis_info = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis_info);
        }
        if cfg.redis.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider for the client side; ring, as the
            // listeners use. An error means one is installed already, which is as good.
            let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        }
        let client = match &cfg.tls_ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    ClusterError::Url(format!("tls_ca_file {}: {e}", path.display()))
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| ClusterError::Url(e.to_string()))?;
        let node = if cfg.node_id.is_empty() {
            use std::hash::{BuildHasher, Hasher};
            let r = std::hash::RandomState::new().build_hasher().finish();
            format!("{r:012x}").get(..12).unwrap_or("node").to_owned()
        } else {
            cfg.node_id.clone()
        };
        let (tx, rx) = mpsc::channel(cfg.max_backlog);
        // Pub/sub and commands take one connection each; the rest read, histories (and
        // presence) first, then queues, alternately.
        let readers = cfg.redis_connections.saturating_sub(2).max(2);
        let (history_readers, queue_readers) = (readers.div_ceil(2), readers / 2);
        let instance = {
            use std::hash::{BuildHasher, Hasher};
            let r = std::hash::RandomState::new().build_hasher().finish();
            format!("{node}.{:08x}", r as u32)
        };
        Ok(Self {
            instance,
            presence_watch: Mutex::new(std::collections::HashSet::new()),
            node,
            prefix: cfg.channel_prefix.clone(),
            client,
            outgoing: tx,
            outgoing_rx: Mutex::new(Some(rx)),
            interest: Mutex::new(Interest::default()),
            interest_changed: Notify::new(),
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            reconnect_max: Duration::from_millis(cfg.reconnect_max_ms),
            claim_idle: Duration::from_millis(cfg.claim_idle_ms),
            key_ttl: Duration::from_millis(cfg.key_ttl_ms),
            backlog_bytes: AtomicUsize::new(0),
            max_backlog_bytes: cfg.max_backlog_bytes,
            commands: conn::Commands::new(),
            histories: readers::Shards::new(history_readers),
            queues: readers::Shards::new(queue_readers),
            pumps: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether both links to Redis are up (else `/healthz` says degraded).
    pub fn is_up(&self) -> bool {
        self.publisher_up.load(Ordering::Relaxed) && self.subscriber_up.load(Ordering::Relaxed)
    }

    fn channel(&self, key: &str) -> String {
        format!("{}:d:{key}", self.prefix)
    }

    fn channel_key<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())
            .and_then(|c| c.strip_prefix(":d:"))
    }

    fn stream(&self, destination: &str) -> String {
        format!("{}:q:{destination}", self.prefix)
    }

    fn history_stream(&self, destination: &str) -> String {
        format!("{}:h:{destination}", self.prefix)
    }

    /// A Redis glob matching every channel a wildcard subscription with this literal prefix
    /// can match (a superset: local matching is exact).
    fn pattern(&self, literal_prefix: &str) -> String {
        let mut p = format!("{}:d:", escape_glob(&self.prefix));
        p.push_str(&escape_glob(literal_prefix));
        p.push('*');
        p
    }

    /// A local subscription to an exact key (destination or user key) started.
    pub fn watch_key(&self, key: &str) {
        self.change(|i| *i.channels.entry(self.channel(key)).or_default() += 1);
    }

    /// A local subscription to an exact key ended.
    pub fn unwatch_key(&self, key: &str) {
        let ch = self.channel(key);
        self.change(|i| release(&mut i.channels, &ch));
    }

    /// A local wildcard subscription started.
    pub fn watch_pattern(&self, literal_prefix: &str) {
        self.change(|i| *i.patterns.entry(self.pattern(literal_prefix)).or_default() += 1);
    }

    /// A local wildcard subscription ended.
    pub fn unwatch_pattern(&self, literal_prefix: &str) {
        let p = self.pattern(literal_prefix);
        self.change(|i| release(&mut i.patterns, &p));
    }

    fn change(&self, f: impl FnOnce(&mut Interest)) {
        f(&mut self.interest.lock().unwrap_or_else(|p| p.into_inner()));
        // A stored permit when the subscriber task is busy: it will look again.
        self.interest_changed.notify_one();
    }

    fn interest_snapshot(&self) -> (Vec<String>, Vec<String>) {
        let i = self.interest.lock().unwrap_or_else(|p| p.into_inner());
        (
            i.channels.keys().cloned().collect(),
            i.patterns.keys().cloned().collect(),
        )
    }

    /// Sends a message this node accepted to the other nodes (`PUBLISH` on the key's channel).
    /// Never waits: with the backlog full the message is not sent (local delivery already
    /// happened) and `false` says so.
    pub fn publish(
        &self,
        key: &str,
        destination: &str,
        message_id: &str,
        policy: SlowConsumerPolicy,
        headers: &Headers,
        body: &Bytes,
    ) -> bool {
        let payload = self.envelope([key, destination, message_id], policy, headers, body);
        self.send(Outgoing::Publish {
            channel: self.channel(key),
            payload,
        })
    }

    /// Adds a message to a queue destination's stream. `false` when the backlog is full.
    pub fn enqueue(
        &self,
        destination: &str,
        message_id: &str,
        headers: &Headers,
        body: &Bytes,
        max_len: usize,
    ) -> bool {
        let payload = self.envelope(
            [destination, destination, message_id],
            SlowConsumerPolicy::Drop,
            headers,
            body,
        );
        self.send(Outgoing::XAdd {
            key: self.stream(destination),
            payload,
            max_len,
        })
    }

    /// Appends a message to a history destination's stream (its entry id becomes the
    /// message id). `false` when the backlog is full.
    pub fn append_history(
        &self,
        destination: &str,
        policy: SlowConsumerPolicy,
        headers: &Headers,
        body: &Bytes,
        max_len: usize,
    ) -> bool {
        let payload = self.envelope([destination, destination, ""], policy, headers, body);
        self.send(Outgoing::XAdd {
            key: self.history_stream(destination),
            payload,
            max_len,
        })
    }

    fn envelope(
        &self,
        [key, destination, message_id]: [&str; 3],
        policy: SlowConsumerPolicy,
        headers: &Headers,
        body: &Bytes,
    ) -> Bytes {
        codec::encode(
            [&self.node, key, destination, message_id],
            policy,
            headers.as_slice().iter().map(|(n, v)| (&n[..], &v[..])),
            body,
        )
    }

    /// Per-destination keys' expiry, in milliseconds.
    fn key_ttl_ms(&self) -> u64 {
        self.key_ttl.as_millis() as u64
    }

    fn hold(&self, r: &StreamRef) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(r.key.clone())
            .or_default()
            .insert(r.id.clone());
    }

    /// The entries of `key` this node holds (to refresh their idle time).
    fn held_ids(&self, key: &str) -> Vec<String> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A queue message was dropped here (a bound, eviction, expiry): no longer held, so
    /// another node claims it after `claim_idle_ms` instead of this one refreshing it forever.
    pub fn release(&self, r: &StreamRef) {
        if let Some(set) = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&r.key)
        {
            set.remove(&r.id);
        }
    }

    /// A queue message was acknowledged by its consumer: done in Redis too.
    pub fn acknowledge(&self, r: &StreamRef) {
        self.release(r);
        // Best effort: an ack that cannot be sent leaves the message to be claimed again
        // later (at-least-once), which is the safe side.
        let _ = self.send(Outgoing::XAck {
            key: r.key.clone(),
            id: r.id.clone(),
        });
    }

    /// A local consumer subscribed to a queue destination (already added to `queue`): make
    /// sure this node reads its stream. Decided under the pumps' lock, as is stopping, so a
    /// consumer arriving while the last one leaves never ends up without a reader.
    pub fn queue_consumer_added(self: &Arc<Self>, broker: &Arc<crate::Broker>, queue: &Arc<Queue>) {
        let mut pumps = self.pumps.lock().unwrap_or_else(|p| p.into_inner());
        if pumps.get(queue.name()).is_some_and(|t| !t.is_cancelled()) {
            return;
        }
        let stop = broker.shutdown.child_token();
        pumps.insert(queue.name().to_owned(), stop.clone());
        broker.tracker.spawn(pump::run(
            Arc::clone(broker),
            Arc::clone(self),
            Arc::clone(queue),
            stop,
        ));
    }

    /// A local consumer left a queue: when it was the last, stop reading the stream, drop
    /// what waits here and stop refreshing what this node held (other nodes claim it after
    /// `claim_idle_ms`).
    pub fn queue_consumer_removed(&self, queue: &Queue) {
        let mut pumps = self.pumps.lock().unwrap_or_else(|p| p.into_inner());
        if queue.consumer_count() > 0 {
            return;
        }
        if let Some(stop) = pumps.remove(queue.name()) {
            stop.cancel();
        }
        queue.clear_pending();
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.stream(queue.name()));
    }

    /// Starts the links (publisher and subscriber tasks).
    pub fn start(self: &Arc<Self>, broker: &Arc<crate::Broker>) {
        if let Some(rx) = self
            .outgoing_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            broker
                .tracker
                .spawn(link::publisher(Arc::clone(broker), Arc::clone(self), rx));
        }
        broker
            .tracker
            .spawn(link::subscriber(Arc::clone(broker), Arc::clone(self)));
        broker
            .tracker
            .spawn(presence::liveness(Arc::clone(broker), Arc::clone(self)));
        for i in 0..self.histories.len() {
            broker
                .tracker
                .spawn(history::reader(Arc::clone(broker), Arc::clone(self), i));
        }
        for i in 0..self.queues.len() {
            broker
                .tracker
                .spawn(pump::reader(Arc::clone(broker), Arc::clone(self), i));
        }
    }
}

fn release(map: &mut HashMap<String, usize>, name: &str) {
    if let Some(n) = map.get_mut(name) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(name);
        }
    }
}

/// Escapes Redis glob syntax, so a literal prefix matches only itself.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_patterns() {
        let c = Cluster::new(&ClusterConfig {
            redis: "redis://127.0.0.1:1".into(),
            password_env: None,
            tls_ca_file: None,
            node_id: "n1".into(),
            channel_prefix: "sb".into(),
            max_backlog: 10,
            max_backlog_bytes: 1 << 20,
            redis_connections: 4,
            key_ttl_ms: 60_000,
            reconnect_max_ms: 100,
            claim_idle_ms: 100,
        })
        .unwrap();
        assert_eq!(c.channel("/topic/a"), "sb:d:/topic/a");
        assert_eq!(c.channel_key("sb:d:/topic/a"), Some("/topic/a"));
        assert_eq!(c.channel_key("other:d:/topic/a"), None);
        assert_eq!(c.pattern("/topic/chat"), "sb:d:/topic/chat*");
        assert_eq!(c.pattern("/t/[x]"), "sb:d:/t/\\[x\\]*");
        c.watch_key("/topic/a");
        c.watch_key("/topic/a");
        c.unwatch_key("/topic/a");
        assert_eq!(c.interest_snapshot().0, vec!["sb:d:/topic/a".to_owned()]);
        c.unwatch_key("/topic/a");
        assert!(c.interest_snapshot().0.is_empty());
    }
}

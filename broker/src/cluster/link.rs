//! The publisher (everything the node sends to Redis, pipelined in order over the shared
//! command connection) and the pub/sub subscriber (its own connection: one in subscribe mode
//! can do nothing else). Each retries with exponential backoff and marks itself down
//! meanwhile.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::info;

use super::codec::Envelope;
use super::{Cluster, Retry};
use crate::broker::Broker;

/// Commands taken from the backlog at once.
const BATCH: usize = 128;

/// A pipeline is sent once it holds this many bytes of arguments (it copies them: this
/// bounds that copy).
const PIPE_BYTES: usize = 1 << 20;

/// A command for Redis that does not need an answer, in the order it must be applied.
#[derive(Debug)]
pub(super) enum Outgoing {
    Publish {
        channel: String,
        payload: Bytes,
    },
    XAdd {
        key: String,
        payload: Bytes,
        max_len: usize,
    },
    XAck {
        key: String,
        id: String,
    },
    /// Anything else (a presence script).
    Command(redis::Cmd),
}

impl Outgoing {
    /// Bytes it pins while it waits: its payload and names, plus the queue slot and the
    /// allocations' bookkeeping.
    fn size(&self) -> usize {
        const OVERHEAD: usize = 128;
        OVERHEAD
            + match self {
                Outgoing::Publish { channel, payload } => channel.len() + payload.len(),
                Outgoing::XAdd { key, payload, .. } => key.len() + payload.len(),
                Outgoing::XAck { key, id } => key.len() + id.len(),
                Outgoing::Command(cmd) => cmd.args_iter().map(|a| arg_len(&a)).sum(),
            }
    }
}

fn arg_len(a: &redis::Arg<&[u8]>) -> usize {
    match a {
        redis::Arg::Simple(b) => b.len(),
        // A cursor, or anything a later version adds: a few bytes.
        _ => 8,
    }
}

impl Cluster {
    /// Queues a command for the publisher link, in order, without waiting. `false` (not
    /// sent) when the backlog is full, in messages (`max_backlog`) or in bytes
    /// (`max_backlog_bytes`, the size it pins).
    pub(super) fn send(&self, what: Outgoing) -> bool {
        let size = what.size();
        let reserved = self
            .backlog_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + size <= self.max_backlog_bytes).then_some(b + size)
            })
            .is_ok();
        if !reserved {
            return false;
        }
        if self.outgoing.try_send(what).is_err() {
            self.sent(size);
            return false;
        }
        true
    }

    /// `size` bytes of the backlog went out (or were dropped).
    pub(super) fn sent(&self, size: usize) {
        self.backlog_bytes.fetch_sub(size, Ordering::AcqRel);
    }

    /// Bytes waiting for Redis (for `/metrics`).
    pub fn backlog_bytes(&self) -> usize {
        self.backlog_bytes.load(Ordering::Relaxed)
    }
}

/// Sends what the node has for Redis, in order.
pub(super) async fn publisher(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut retry = Retry::new(&broker, &cluster, "publish", None);
    // Taken from the backlog, not yet sent; still counted in its bytes.
    let mut batch: VecDeque<Outgoing> = VecDeque::with_capacity(BATCH);
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        let Some(mut shared) = retry.commands().await else {
            return;
        };
        cluster.publisher_up.store(true, Ordering::Relaxed);
        retry.worked();
        loop {
            if batch.is_empty() {
                let n = tokio::select! {
                    biased;
                    n = rx.recv_many(&mut buf, BATCH) => n,
                    _ = broker.shutdown.cancelled() => {
                        // A last drain of what is already there, so what was accepted before
                        // shutdown still goes out; then stop.
                        while buf.len() < BATCH {
                            match rx.try_recv() {
                                Ok(c) => buf.push(c),
                                Err(_) => break,
                            }
                        }
                        buf.len()
                    }
                };
                if n == 0 {
                    return;
                }
                batch.extend(buf.drain(..));
            }
            let (pipe, n, size) = pipeline(&cluster, &mut batch);
            let sent = pipe.query_async::<()>(&mut shared.con).await;
            cluster.sent(size);
            if let Err(e) = sent {
                // Lost for other nodes (local delivery happened), not retried (it may have
                // been applied); counted.
                broker.metrics.cluster_dropped(n as u64);
                cluster.publisher_up.store(false, Ordering::Relaxed);
                if !retry.command_failed(&shared, &e).await {
                    return;
                }
                break;
            }
            if broker.shutdown.is_cancelled() && batch.is_empty() && rx.is_empty() {
                return;
            }
        }
    }
}

/// The next pipeline from the front of `batch`, at most `PIPE_BYTES` (or one command);
/// returns it, how many messages it carries and the backlog bytes they held.
fn pipeline(cluster: &Cluster, batch: &mut VecDeque<Outgoing>) -> (redis::Pipeline, usize, usize) {
    let mut pipe = redis::pipe();
    let (mut n, mut size) = (0, 0);
    while let Some(cmd) = batch.front() {
        if n > 0 && size + cmd.size() > PIPE_BYTES {
            break;
        }
        let Some(cmd) = batch.pop_front() else { break };
        n += 1;
        size += cmd.size();
        match cmd {
            Outgoing::Publish { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]).ignore();
            }
            Outgoing::XAdd {
                key,
                payload,
                max_len,
            } => {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(max_len)
                    .arg("*")
                    .arg("m")
                    .arg(&payload[..])
                    .ignore();
                // Written to: alive for another key_ttl_ms.
                pipe.cmd("PEXPIRE")
                    .arg(key)
                    .arg(cluster.key_ttl_ms())
                    .ignore();
            }
            Outgoing::Command(cmd) => {
                pipe.add_command(cmd).ignore();
            }
            Outgoing::XAck { key, id } => {
                pipe.cmd("XACK")
                    .arg(key)
                    .arg(super::pump::GROUP)
                    .arg(id)
                    .ignore();
            }
        }
    }
    (pipe, n, size)
}

/// Receives other nodes' messages for the keys local clients subscribe to.
pub(super) async fn subscriber(broker: Arc<Broker>, cluster: Arc<Cluster>) {
    let mut retry = Retry::new(&broker, &cluster, "subscribe", None);
    let mut ever_up = false;
    loop {
        if broker.shutdown.is_cancelled() {
            return;
        }
        let pubsub = match cluster.client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                if !retry.failed(&e).await {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut channels = HashSet::new();
        let mut patterns = HashSet::new();
        if let Err(e) = sync(&cluster, &mut sink, &mut channels, &mut patterns).await {
            if !retry.failed(&e).await {
                return;
            }
            continue;
        }
        cluster.subscriber_up.store(true, Ordering::Relaxed);
        if ever_up {
            info!("cluster: reconnected to Redis");
        }
        ever_up = true;
        retry.worked();
        let mut recent = Recent::default();
        loop {
            tokio::select! {
                _ = broker.shutdown.cancelled() => return,
                _ = cluster.interest_changed.notified() => {
                    if sync(&cluster, &mut sink, &mut channels, &mut patterns).await.is_err() {
                        break;
                    }
                }
                msg = stream.next() => match msg {
                    Some(m) => deliver(&broker, &cluster, &m, &mut recent),
                    None => break,
                },
            }
        }
        cluster.subscriber_up.store(false, Ordering::Relaxed);
        if !retry.failed(&"the subscription link was lost").await {
            return;
        }
    }
}

/// Brings Redis subscriptions in line with local interest.
async fn sync(
    cluster: &Cluster,
    sink: &mut redis::aio::PubSubSink,
    channels: &mut HashSet<String>,
    patterns: &mut HashSet<String>,
) -> redis::RedisResult<()> {
    let (want_channels, want_patterns) = cluster.interest_snapshot();
    let want_channels: HashSet<String> = want_channels.into_iter().collect();
    let want_patterns: HashSet<String> = want_patterns.into_iter().collect();
    for c in want_channels.difference(channels) {
        sink.subscribe(c).await?;
    }
    for c in channels.difference(&want_channels) {
        sink.unsubscribe(c).await?;
    }
    for p in want_patterns.difference(patterns) {
        sink.psubscribe(p).await?;
    }
    for p in patterns.difference(&want_patterns) {
        sink.punsubscribe(p).await?;
    }
    *channels = want_channels;
    *patterns = want_patterns;
    Ok(())
}

/// Ids of the messages delivered last. Redis sends a message once per matching subscription
/// (an exact channel and each matching pattern), one copy right after another: each is
/// delivered once.
#[derive(Default)]
struct Recent {
    seen: HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl Recent {
    const KEEP: usize = 4096;

    /// Whether `id` is new (and remembers it).
    fn first(&mut self, id: String) -> bool {
        if self.seen.contains(&id) {
            return false;
        }
        if self.order.len() == Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id.clone());
        self.order.push_back(id);
        true
    }
}

fn deliver(broker: &Broker, cluster: &Cluster, m: &redis::Msg, recent: &mut Recent) {
    if cluster.channel_key(m.get_channel_name()).is_none() {
        return;
    }
    let Ok(env) = Envelope::decode(Bytes::copy_from_slice(m.get_payload_bytes())) else {
        broker.metrics.cluster_error();
        return;
    };
    if env.origin == cluster.node {
        // Delivered locally when it was accepted.
        return;
    }
    // Ids are unique in the cluster (they name their node); the key separates a message
    // published to a destination from its copy to a user.
    if !recent.first(format!("{}\u{0}{}", env.key, env.message_id)) {
        return;
    }
    broker.deliver_remote(&env);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use stomp_codec::Headers;

    use super::Cluster;
    use crate::config::{ClusterConfig, SlowConsumerPolicy};

    #[test]
    fn the_backlog_is_bounded_in_bytes_as_well_as_in_messages() {
        let c = Cluster::new(&ClusterConfig {
            redis: "redis://127.0.0.1:1".into(),
            password_env: None,
            tls_ca_file: None,
            node_id: "n1".into(),
            channel_prefix: "sb".into(),
            max_backlog: 1000,
            max_backlog_bytes: 10_000,
            redis_connections: 4,
            key_ttl_ms: 60_000,
            reconnect_max_ms: 100,
            claim_idle_ms: 100,
        })
        .unwrap();
        let body = Bytes::from(vec![b'x'; 1000]);
        let headers = Headers::new();
        let sent = (0..100)
            .filter(|i| {
                let id = i.to_string();
                c.publish("/t", "/t", &id, SlowConsumerPolicy::Drop, &headers, &body)
            })
            .count();
        // Each pins its body and envelope (about 1,030 bytes), its channel's name and the
        // fixed overhead (128): 8 fit in 10,000 bytes, far below the 1,000 messages allowed.
        assert_eq!(sent, 8);
        assert!(c.backlog_bytes() <= 10_000);
        // What goes out frees its bytes.
        c.sent(c.backlog_bytes());
        assert!(c.publish("/t", "/t", "x", SlowConsumerPolicy::Drop, &headers, &body));
    }
}

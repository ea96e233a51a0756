//! The two long-lived links to Redis: one sends (PUBLISH, XADD, XACK, pipelined in batches,
//! in order), one receives pub/sub messages for the keys local clients want. Each reconnects
//! with exponential backoff and marks itself down meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::info;

use super::codec::Envelope;
use super::{Cluster, Outgoing, Retry};
use crate::broker::Broker;

/// Commands sent in one pipeline at most.
const BATCH: usize = 128;

/// Sends what the node has for Redis, in order.
pub(super) async fn publisher(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut retry = Retry::new(&broker, &cluster, "publish", Some(Duration::from_secs(10)));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(mut con) = retry.connect().await else {
            return;
        };
        cluster.publisher_up.store(true, Ordering::Relaxed);
        retry.worked();
        loop {
            batch.clear();
            let n = tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, BATCH) => n,
                _ = broker.shutdown.cancelled() => {
                    // A last drain of what is already there, so what was accepted before
                    // shutdown still goes out; then stop.
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    batch.len()
                }
            };
            if n == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for cmd in batch.drain(..) {
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
                            .arg(key)
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(max_len)
                            .arg("*")
                            .arg("m")
                            .arg(&payload[..])
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
            if let Err(e) = pipe.query_async::<()>(&mut con).await {
                // The batch is lost for other nodes (local delivery happened); counted.
                broker.metrics.cluster_dropped(n as u64);
                cluster.publisher_up.store(false, Ordering::Relaxed);
                if !retry.failed(&e).await {
                    return;
                }
                break;
            }
            if broker.shutdown.is_cancelled() && rx.is_empty() {
                return;
            }
        }
    }
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

//! Feeds a queue destination's local consumers from its Redis stream.
//!
//! The pump reads only as many messages as the node's consumers have credit for, so nodes
//! compete for messages in proportion to what their consumers can take, and a message sits
//! on one node only while a consumer there is about to get it. Entries a node read but never
//! acknowledged are claimed (`XAUTOCLAIM`) by a pump with credit once they have been idle for
//! `claim_idle_ms`: a dead node's messages are delivered again elsewhere.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::codec::Envelope;
use super::{Cluster, StreamRef, back_off};
use crate::broker::Broker;
use crate::message::Published;
use crate::queue::Queue;

/// The consumer group every node reads queue streams in.
pub(super) const GROUP: &str = "stompbox";

/// Most entries read at once.
const READ_MAX: usize = 64;

/// How long one blocking read waits for new entries.
const BLOCK_MS: u64 = 500;

pub(super) async fn run(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    queue: Arc<Queue>,
    stop: CancellationToken,
) {
    let key = cluster.stream(queue.name());
    let claim_every = (cluster.claim_idle / 2).max(Duration::from_millis(100));
    let mut backoff = Duration::from_millis(50);
    loop {
        if stop.is_cancelled() {
            return;
        }
        let mut con = match cluster.client.get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(e) => {
                broker.metrics.cluster_error();
                warn!(error = %e, queue = queue.name(), "cluster: queue link down; retrying");
                if !back_off(&broker, &mut backoff, cluster.reconnect_max).await {
                    return;
                }
                continue;
            }
        };
        // From the stream's start: messages sent before any node consumed are not skipped.
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            broker.metrics.cluster_error();
            warn!(error = %e, queue = queue.name(), "cluster: cannot create the consumer group");
            if !back_off(&broker, &mut backoff, cluster.reconnect_max).await {
                return;
            }
            continue;
        }
        backoff = Duration::from_millis(50);
        let mut next_claim = Instant::now();
        loop {
            if stop.is_cancelled() {
                return;
            }
            let want = queue.wants();
            if want == 0 {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = queue.credit_changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(BLOCK_MS)) => {}
                }
                continue;
            }
            let count = want.min(READ_MAX);
            if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                let claimed: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(&cluster.node)
                    .arg(cluster.claim_idle.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut con)
                    .await;
                match claimed {
                    Ok(r) => {
                        for e in r.claimed {
                            hand(&cluster, &queue, &key, e, true);
                        }
                        continue;
                    }
                    Err(e) => {
                        broker.metrics.cluster_error();
                        warn!(error = %e, queue = queue.name(), "cluster: claiming failed");
                        break;
                    }
                }
            }
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(&cluster.node)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&key)
                .arg(">");
            let read = cmd.query_async::<Option<StreamReadReply>>(&mut con);
            let reply = tokio::select! {
                _ = stop.cancelled() => return,
                r = read => r,
            };
            match reply {
                Ok(Some(r)) => {
                    for k in r.keys {
                        for e in k.ids {
                            hand(&cluster, &queue, &key, e, false);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    broker.metrics.cluster_error();
                    warn!(error = %e, queue = queue.name(), "cluster: reading the queue failed");
                    break;
                }
            }
        }
        if !back_off(&broker, &mut backoff, cluster.reconnect_max).await {
            return;
        }
    }
}

/// Hands one stream entry to the local queue.
fn hand(cluster: &Cluster, queue: &Arc<Queue>, key: &str, e: StreamId, redelivered: bool) {
    let stream = StreamRef {
        key: key.to_owned(),
        id: e.id,
    };
    let env = match e.map.get("m") {
        Some(Value::BulkString(b)) => Envelope::decode(Bytes::copy_from_slice(b)).ok(),
        _ => None,
    };
    let Some(env) = env else {
        // Not ours to understand: acknowledge it, so it is not claimed forever.
        cluster.acknowledge(&stream);
        return;
    };
    let msg = Published::from_envelope(&env).with_stream(stream);
    queue.publish_from_stream(Arc::new(msg), redelivered);
}

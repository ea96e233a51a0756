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

use super::codec::Envelope;
use super::{Cluster, Retry, StreamRef};
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
    // Requests wait at most BLOCK_MS for entries; more than that plus slack is a stuck link.
    let response = Duration::from_millis(BLOCK_MS) + Duration::from_secs(5);
    let mut retry = Retry::new(&broker, &cluster, "queue", Some(response));
    while !stop.is_cancelled() {
        let Some(mut con) = retry.connect().await else {
            return;
        };
        match serve(&cluster, &queue, &stop, &mut con, &mut retry).await {
            Ok(()) => return,
            Err(e) => {
                if !retry.failed(&e).await {
                    return;
                }
            }
        }
    }
}

/// Feeds `queue` over one connection until `stop` (`Ok`) or a failure (`Err`: reconnect).
async fn serve(
    cluster: &Cluster,
    queue: &Arc<Queue>,
    stop: &CancellationToken,
    con: &mut redis::aio::MultiplexedConnection,
    retry: &mut Retry<'_>,
) -> redis::RedisResult<()> {
    let key = cluster.stream(queue.name());
    let claim_every = (cluster.claim_idle / 2).max(Duration::from_millis(100));
    // Held entries are refreshed well within claim_idle, and no wait here is longer.
    let refresh_every = (cluster.claim_idle / 3).max(Duration::from_millis(50));
    let block = refresh_every.min(Duration::from_millis(BLOCK_MS));
    // From the stream's start: messages sent before any node consumed are not skipped.
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(e);
    }
    retry.worked();
    let mut next_claim = Instant::now();
    let mut next_refresh = Instant::now();
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        if Instant::now() >= next_refresh {
            next_refresh = Instant::now() + refresh_every;
            // What this node still holds for its consumers is not idle: say so, so no other
            // node claims it while a consumer here works through it (however long that
            // takes, as long as this node lives).
            refresh(cluster, &key, con).await?;
        }
        let want = queue.wants();
        if want == 0 {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = queue.credit_changed() => {}
                _ = tokio::time::sleep(block) => {}
            }
            continue;
        }
        let count = want.min(READ_MAX);
        if Instant::now() >= next_claim {
            next_claim = Instant::now() + claim_every;
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(GROUP)
                .arg(&cluster.node)
                .arg(cluster.claim_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(count)
                .query_async(con)
                .await?;
            for e in claimed.claimed {
                hand(cluster, queue, &key, e, true);
            }
            continue;
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&cluster.node)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(">");
        let reply = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = cmd.query_async::<Option<StreamReadReply>>(con) => r?,
        };
        for e in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            hand(cluster, queue, &key, e, false);
        }
    }
}

/// Resets the idle time of every entry this node holds for `key` (XCLAIM to itself).
async fn refresh(
    cluster: &Cluster,
    key: &str,
    con: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<()> {
    let held = cluster.held_ids(key);
    for ids in held.chunks(256) {
        let _: Vec<String> = redis::cmd("XCLAIM")
            .arg(key)
            .arg(GROUP)
            .arg(&cluster.node)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async(con)
            .await?;
    }
    Ok(())
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
    cluster.hold(&stream);
    let msg = Published::from_envelope(&env).with_stream(stream);
    queue.publish_from_stream(Arc::new(msg), redelivered);
}

//! Feeds queue destinations' local consumers from their Redis streams.
//!
//! Nodes read only as many messages as their consumers have credit for, so they compete for
//! messages in proportion to what their consumers can take, and a message sits on one node
//! only while a consumer there is about to get it. Entries a node read but never acknowledged
//! are claimed (`XAUTOCLAIM`) by a node with credit once they have been idle for
//! `claim_idle_ms`: a dead node's messages are delivered again elsewhere.
//!
//! Each queue with local consumers has a small task ([`run`]: creates the group, keeps what
//! the node holds fresh, pokes its reader when credit appears) and an entry in the queue
//! readers' table ([`QueueReg`]). A reader ([`reader`]) serves every queue of its shard over
//! one connection: a pipelined, non-blocking pass reads (or claims) exactly each queue's
//! credit; when that finds nothing, one blocking `XREADGROUP` over every queue with credit
//! waits for new entries, asking each for no more than the smallest credit among them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Most entries read for one queue at once.
const READ_MAX: usize = 64;

/// Most entries one pass reads over all its queues (a bound on a reply's size).
const READ_BUDGET: usize = 128;

/// How long one blocking read waits for new entries (less when claims are due sooner).
const BLOCK_MS: u64 = 500;

/// One queue this node has consumers for, as its reader serves it.
#[derive(Debug)]
pub(super) struct QueueReg {
    queue: Arc<Queue>,
    /// In the reader's current call (then new credit needs no wake-up).
    included: AtomicBool,
    /// When to look for entries idle past `claim_idle_ms` next.
    next_claim: Mutex<Instant>,
}

impl Cluster {
    fn claim_every(&self) -> Duration {
        (self.claim_idle / 2).max(Duration::from_millis(100))
    }

    fn refresh_every(&self) -> Duration {
        // Held entries are refreshed well within claim_idle.
        (self.claim_idle / 3).max(Duration::from_millis(50))
    }

    fn block(&self) -> Duration {
        self.claim_every().min(Duration::from_millis(BLOCK_MS))
    }
}

/// Keeps `queue` served until `stop` (its last local consumer left, or shutdown).
pub(super) async fn run(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    queue: Arc<Queue>,
    stop: CancellationToken,
) {
    let key = cluster.stream(queue.name());
    // Boxed, as is each refresh: their state is freed when done, so the waiting task stays
    // small.
    if !Box::pin(create_until_done(&broker, &cluster, &key, &stop)).await {
        return;
    }
    let reg = Arc::new(QueueReg {
        queue: Arc::clone(&queue),
        included: AtomicBool::new(false),
        next_claim: Mutex::new(Instant::now()),
    });
    cluster.queues.register(&key, Arc::clone(&reg));
    let mut next_refresh = Instant::now() + cluster.refresh_every();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = queue.credit_changed() => {
                if !reg.included.load(Ordering::Relaxed) && queue.wants() > 0 {
                    cluster.queues.of(&key).poke();
                }
            }
            _ = tokio::time::sleep_until(next_refresh) => {
                next_refresh = Instant::now() + cluster.refresh_every();
                // What this node still holds for its consumers is not idle: say so, so no
                // other node claims it while a consumer here works through it (however long
                // that takes, as long as this node lives).
                if let Err(e) = Box::pin(refresh(&cluster, &key)).await {
                    broker.metrics.cluster_error();
                    tracing::debug!(error = %e, "cluster: refreshing held queue entries failed");
                }
            }
        }
    }
    cluster.queues.unregister(&key, &reg);
}

/// Creates `key`'s group, retrying until it works; `false` when no longer wanted.
async fn create_until_done(
    broker: &Broker,
    cluster: &Cluster,
    key: &str,
    stop: &CancellationToken,
) -> bool {
    let mut retry = Retry::new(broker, cluster, "queue", None);
    loop {
        if stop.is_cancelled() {
            return false;
        }
        let Some(mut shared) = retry.commands().await else {
            return false;
        };
        match create_groups(cluster, &mut shared.con, &[key.to_owned()]).await {
            Ok(()) => return true,
            Err(e) => {
                if !retry.command_failed(&shared, &e).await {
                    return false;
                }
            }
        }
    }
}

/// Creates the consumer group of each of `keys` (and the stream, with its expiry) unless it
/// exists.
async fn create_groups(
    cluster: &Cluster,
    con: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
) -> redis::RedisResult<()> {
    for chunk in keys.chunks(256) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in chunk {
            // From the stream's start: messages sent before any node consumed are not skipped.
            pipe.cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM");
            pipe.cmd("PEXPIRE").arg(key).arg(cluster.key_ttl_ms());
        }
        let replies: Vec<Value> = pipe.query_async(con).await?;
        for r in replies {
            if let Value::ServerError(e) = r
                && e.code() != "BUSYGROUP"
            {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Resets the idle time of every entry this node holds for `key` (XCLAIM to itself).
async fn refresh(cluster: &Cluster, key: &str) -> redis::RedisResult<()> {
    let held = cluster.held_ids(key);
    if held.is_empty() {
        return Ok(());
    }
    let mut shared = cluster.commands().await?;
    for ids in held.chunks(256) {
        let r: redis::RedisResult<Vec<String>> = redis::cmd("XCLAIM")
            .arg(key)
            .arg(GROUP)
            .arg(&cluster.node)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async(&mut shared.con)
            .await;
        if let Err(e) = r {
            cluster.command_failed(&shared, &e).await;
            return Err(e);
        }
    }
    Ok(())
}

/// One queue reader: serves every queue registered in its shard over one connection.
pub(super) async fn reader(broker: Arc<Broker>, cluster: Arc<Cluster>, index: usize) {
    let shard = cluster.queues.shard(index);
    let response = cluster.block() + Duration::from_secs(5);
    let mut retry = Retry::new(&broker, &cluster, "queue reader", Some(response));
    let mut rotate = 0usize;
    'connect: loop {
        let Some(mut con) = retry.connect().await else {
            return;
        };
        // Groups again: Redis may have restarted without them.
        shard.identify(&mut con).await;
        if let Err(e) = create_groups(&cluster, &mut con, &shard.keys()).await {
            if !retry.failed(&e).await {
                return;
            }
            continue;
        }
        // Groups recreated since the last pass that worked: twice in a row is a failure.
        let mut recreated = false;
        loop {
            rotate = rotate.wrapping_add(1);
            let Some(outcome) = pass(&broker, &cluster, shard, &mut con, rotate).await else {
                return;
            };
            match outcome {
                Ok(()) => {
                    recreated = false;
                    retry.worked();
                }
                Err(e) if e.code() == Some("NOGROUP") && !recreated => {
                    // A stream (and its group) vanished: expired, or Redis lost it.
                    recreated = true;
                    if let Err(e) = create_groups(&cluster, &mut con, &shard.keys()).await {
                        if !retry.failed(&e).await {
                            return;
                        }
                        continue 'connect;
                    }
                }
                Err(e) => {
                    if !retry.failed(&e).await {
                        return;
                    }
                    continue 'connect;
                }
            }
        }
    }
}

/// One round of a reader. `None` at shutdown.
async fn pass(
    broker: &Broker,
    cluster: &Cluster,
    shard: &super::readers::Shard<QueueReg>,
    con: &mut redis::aio::MultiplexedConnection,
    rotate: usize,
) -> Option<redis::RedisResult<()>> {
    let regs = shard.snapshot();
    let mut credited = Vec::with_capacity(regs.len());
    for (key, reg) in regs {
        let want = reg.queue.wants().min(READ_MAX);
        reg.included.store(want > 0, Ordering::Relaxed);
        if want > 0 {
            credited.push((key, reg, want));
        }
    }
    if credited.is_empty() {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return None,
            _ = shard.poked() => {}
            _ = tokio::time::sleep(cluster.block()) => {}
        }
        return Some(Ok(()));
    }
    let n = credited.len();
    let now = Instant::now();
    let claims_due = credited.iter().any(|(_, r, _)| *lock(&r.next_claim) <= now);
    let smallest = credited.iter().map(|c| c.2).min().unwrap_or(1);
    let each = smallest.min((READ_BUDGET / n).max(1));
    // The blocking call asks every queue for `each`: exact when that is each one's credit.
    if claims_due || credited.iter().any(|c| c.2 != each) {
        match exact(cluster, con, &credited, rotate, now).await {
            Ok(true) => return Some(Ok(())),
            Ok(false) => {}
            Err(e) => return Some(Err(e)),
        }
    }
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(GROUP)
        .arg(&cluster.node)
        .arg("COUNT")
        .arg(each)
        .arg("BLOCK")
        .arg(cluster.block().as_millis() as u64)
        .arg("STREAMS");
    for (key, _, _) in &credited {
        cmd.arg(key);
    }
    for _ in &credited {
        cmd.arg(">");
    }
    let reply = match shard
        .blocking::<Option<StreamReadReply>>(cluster, &broker.shutdown, con, &cmd)
        .await?
    {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    let by_key: HashMap<&str, &Arc<QueueReg>> =
        credited.iter().map(|(k, r, _)| (k.as_str(), r)).collect();
    for k in reply.into_iter().flat_map(|r| r.keys) {
        if let Some(reg) = by_key.get(k.key.as_str()) {
            for e in k.ids {
                hand(cluster, &reg.queue, &k.key, e, false);
            }
        }
    }
    Some(Ok(()))
}

/// The non-blocking pass: for each queue with credit (from a rotating start, within the
/// budget), reads exactly its credit, or claims that many idle entries when its claim is
/// due; pipelined in one round trip. `true` when anything came.
async fn exact(
    cluster: &Cluster,
    con: &mut redis::aio::MultiplexedConnection,
    credited: &[(String, Arc<QueueReg>, usize)],
    rotate: usize,
    now: Instant,
) -> redis::RedisResult<bool> {
    let n = credited.len();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut asked = Vec::new();
    let mut budget = READ_BUDGET;
    for i in 0..n {
        let (key, reg, want) = &credited[(rotate + i) % n];
        if *want > budget && !asked.is_empty() {
            break;
        }
        budget = budget.saturating_sub(*want);
        let claim = {
            let mut next = lock(&reg.next_claim);
            let due = *next <= now;
            if due {
                *next = now + cluster.claim_every();
            }
            due
        };
        if claim {
            pipe.cmd("XAUTOCLAIM")
                .arg(key)
                .arg(GROUP)
                .arg(&cluster.node)
                .arg(cluster.claim_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(*want);
        } else {
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&cluster.node)
                .arg("COUNT")
                .arg(*want)
                .arg("STREAMS")
                .arg(key)
                .arg(">");
        }
        asked.push((key, reg, claim));
    }
    let replies: Vec<Value> = pipe.query_async(con).await?;
    let mut any = false;
    let mut failure = None;
    for ((key, reg, claim), v) in asked.into_iter().zip(replies) {
        if let Value::ServerError(e) = v {
            failure = Some(e);
            continue;
        }
        let entries: Vec<StreamId> = if claim {
            redis::from_redis_value::<StreamAutoClaimReply>(v)
                .map(|r| r.claimed)
                .unwrap_or_default()
        } else {
            redis::from_redis_value::<Option<StreamReadReply>>(v)
                .ok()
                .flatten()
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect()
        };
        for e in entries {
            any = true;
            hand(cluster, &reg.queue, key, e, claim);
        }
    }
    match failure {
        // What did come is handed; the failure (a vanished group) is dealt with next.
        Some(e) if !any => Err(e.into()),
        _ => Ok(any),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

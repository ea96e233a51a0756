//! A node's mirror of a history destination's Redis stream: loads its newest entries, then
//! follows it, delivering each new entry to the node's subscribers (see `crate::history`).
//!
//! Loading goes through the shared command connection; following is an entry in the history
//! readers' table ([`HistoryReg`]), read together with every other mirrored stream of its
//! shard by one blocking `XREAD` ([`reader`]). The position lives in the entry, so after a
//! reconnect the reader goes on from where it was: what was published meanwhile is still
//! delivered, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use tokio_util::sync::CancellationToken;

use super::codec::Envelope;
use super::{Cluster, Retry};
use crate::broker::Broker;
use crate::history::{History, Seq};
use crate::message::Published;

/// How long one blocking read waits for new entries.
const BLOCK_MS: u64 = 500;

/// Entries one read may return over all its streams (a bound on the reply's size: this many
/// messages at most); each stream gets an equal share, at least one.
pub(super) const READ_BUDGET: usize = 128;

/// One mirrored stream, as its reader follows it.
#[derive(Debug)]
pub(super) struct HistoryReg {
    history: Arc<History>,
    generation: u64,
    /// The last entry id delivered (or loaded).
    position: Mutex<String>,
}

/// Loads `history`'s stream, then has it followed until `stop` (its last local subscriber
/// left, or shutdown).
pub(crate) async fn history_tail(
    broker: Arc<Broker>,
    history: Arc<History>,
    stop: CancellationToken,
    generation: u64,
) {
    let Some(cluster) = broker.cluster.clone() else {
        return;
    };
    let key = cluster.history_stream(history.destination());
    // Boxed: the loading state is freed once loaded, so the task that waits for `stop` stays
    // small.
    let loaded = Box::pin(load_until_done(
        &broker, &cluster, &history, generation, &key, &stop,
    ));
    let Some(position) = loaded.await else {
        return;
    };
    let reg = Arc::new(HistoryReg {
        history,
        generation,
        position: Mutex::new(position),
    });
    cluster.histories.register(&key, Arc::clone(&reg));
    stop.cancelled().await;
    cluster.histories.unregister(&key, &reg);
}

/// Loads the stream, retrying until it works: the position to follow from, or `None` when
/// the mirror is no longer wanted (stale, stopped, shutdown).
async fn load_until_done(
    broker: &Broker,
    cluster: &Cluster,
    history: &History,
    generation: u64,
    key: &str,
    stop: &CancellationToken,
) -> Option<String> {
    let mut retry = Retry::new(broker, cluster, "history", None);
    loop {
        if stop.is_cancelled() {
            return None;
        }
        let mut shared = retry.commands().await?;
        match load(broker, history, generation, key, &mut shared.con).await {
            Ok(found) => return found,
            Err(e) => {
                if !retry.command_failed(&shared, &e).await {
                    return None;
                }
            }
        }
    }
}

/// Loads the newest entries (and the one before them, so a client positioned there is known
/// to have missed nothing). Returns the newest id to follow from, or `None` when this mirror
/// is stale.
async fn load(
    broker: &Broker,
    history: &History,
    generation: u64,
    key: &str,
    con: &mut MultiplexedConnection,
) -> redis::RedisResult<Option<String>> {
    let capacity = history.keep().messages.max(1);
    let mut newest = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(capacity + 1)
        .query_async::<StreamRangeReply>(con)
        .await?
        .ids;
    let last = newest
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
    let before = if newest.len() > capacity {
        newest.pop().and_then(|e| Seq::parse(&e.id))
    } else {
        None
    };
    let destination = history.destination();
    let entries = newest
        .into_iter()
        .rev()
        .filter_map(|e| decode(destination, e))
        .map(|(s, m, _)| (s, m))
        .collect();
    Ok(history
        .load(broker, generation, before, entries)
        .then_some(last))
}

/// One history reader: follows every stream registered in its shard with one blocking
/// `XREAD` at a time, delivering each new entry to its mirror.
pub(super) async fn reader(broker: Arc<Broker>, cluster: Arc<Cluster>, index: usize) {
    let shard = cluster.histories.shard(index);
    let response = Duration::from_millis(BLOCK_MS) + Duration::from_secs(5);
    let mut retry = Retry::new(&broker, &cluster, "history reader", Some(response));
    loop {
        let Some(mut con) = retry.connect().await else {
            return;
        };
        shard.identify(&mut con).await;
        loop {
            let regs = shard.snapshot();
            if regs.is_empty() {
                tokio::select! {
                    _ = broker.shutdown.cancelled() => return,
                    _ = shard.poked() => {}
                }
                continue;
            }
            let count = (READ_BUDGET / regs.len()).max(1);
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS");
            for (key, _) in &regs {
                cmd.arg(key);
            }
            for (_, reg) in &regs {
                cmd.arg(
                    reg.position
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_str(),
                );
            }
            let reply = match shard
                .blocking::<Option<StreamReadReply>>(&cluster, &broker.shutdown, &mut con, &cmd)
                .await
            {
                None => return,
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    if !retry.failed(&e).await {
                        return;
                    }
                    break;
                }
            };
            retry.worked();
            let Some(reply) = reply else { continue };
            let regs: std::collections::HashMap<String, Arc<HistoryReg>> =
                regs.into_iter().collect();
            for k in reply.keys {
                if let Some(reg) = regs.get(&k.key)
                    && !follow(&broker, reg, k.ids)
                {
                    cluster.histories.unregister(&k.key, reg);
                }
            }
        }
    }
}

/// Delivers `entries` (new, in order) through `reg`'s mirror. `false` when it is stale.
fn follow(broker: &Broker, reg: &HistoryReg, entries: Vec<StreamId>) -> bool {
    for e in entries {
        *reg.position.lock().unwrap_or_else(|p| p.into_inner()) = e.id.clone();
        if let Some((seq, msg, policy)) = decode(reg.history.destination(), e)
            && !reg
                .history
                .append_remote(broker, reg.generation, seq, msg, policy)
        {
            return false;
        }
    }
    true
}

/// An entry as a message whose id is the entry's id: a SEND's envelope (`m`), or a presence
/// event's JSON (`j`) for `destination`.
fn decode(
    destination: &str,
    e: StreamId,
) -> Option<(Seq, Arc<Published>, crate::config::SlowConsumerPolicy)> {
    let seq = Seq::parse(&e.id)?;
    if let Some(Value::BulkString(json)) = e.map.get("j") {
        let mut headers = stomp_codec::Headers::new();
        headers.push("content-type", "application/json");
        let body = Bytes::copy_from_slice(json);
        let msg = Published::from_send(destination, &e.id, &headers, body);
        return Some((seq, Arc::new(msg), crate::config::SlowConsumerPolicy::Drop));
    }
    let env = match e.map.get("m") {
        Some(Value::BulkString(b)) => Envelope::decode(Bytes::copy_from_slice(b)).ok()?,
        _ => return None,
    };
    let msg = Published::from_send(&env.destination, &e.id, &env.headers(), env.body.clone());
    Some((seq, Arc::new(msg), env.policy))
}

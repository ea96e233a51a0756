//! A node's mirror of a history destination's Redis stream: loads its newest entries, then
//! follows it, delivering each new entry to the node's subscribers (see `crate::history`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::back_off;
use super::codec::Envelope;
use crate::broker::Broker;
use crate::history::{History, Seq};
use crate::message::Published;

/// How long one blocking read waits for new entries.
const BLOCK_MS: u64 = 500;

/// Follows `history`'s stream until `stop` (its last local subscriber left, or shutdown).
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
    let capacity = history.keep().messages.max(1);
    let mut backoff = Duration::from_millis(50);
    // Where this mirror is in the stream. After a reconnect it goes on from there (rather than
    // jumping to the newest entry), so what was published meanwhile is still delivered.
    let mut position: Option<String> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let response = Duration::from_millis(BLOCK_MS) + Duration::from_secs(5);
        let mut con = match cluster.connect(Some(response)).await {
            Ok(c) => c,
            Err(e) => {
                broker.metrics.cluster_error();
                warn!(error = %e, destination = history.destination(), "cluster: history link down; retrying");
                if !back_off(&broker, &mut backoff, cluster.reconnect_max).await {
                    return;
                }
                continue;
            }
        };
        if let Some(last) = position.clone() {
            backoff = Duration::from_millis(50);
            if !follow(
                &broker,
                &history,
                &mut con,
                &key,
                last,
                &mut position,
                &stop,
                generation,
            )
            .await
            {
                return;
            }
            if !back_off(&broker, &mut backoff, cluster.reconnect_max).await {
                return;
            }
            continue;
        }
        // The newest entries (and the one before them, to know that a client there missed
        // nothing), for resumes and the retained value.
        let newest: redis::RedisResult<StreamRangeReply> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(capacity + 1)
            .query_async(&mut con)
            .await;
        let newest = match newest {
            Ok(r) => r.ids,
            Err(e) => {
                broker.metrics.cluster_error();
                warn!(error = %e, destination = history.destination(), "cluster: loading history failed");
                if !back_off(&broker, &mut backoff, cluster.reconnect_max).await {
                    return;
                }
                continue;
            }
        };
        let last = newest
            .first()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| "0-0".to_owned());
        let mut newest = newest;
        let before = if newest.len() > capacity {
            newest.pop().and_then(|e| Seq::parse(&e.id))
        } else {
            None
        };
        let destination = history.destination();
        let entries: Vec<(Seq, Arc<Published>)> = newest
            .into_iter()
            .rev()
            .filter_map(|e| decode(destination, e))
            .map(|(s, m, _)| (s, m))
            .collect();
        if !history.load(&broker, generation, before, entries) {
            return;
        }
        backoff = Duration::from_millis(50);
        position = Some(last.clone());
        if !follow(
            &broker,
            &history,
            &mut con,
            &key,
            last,
            &mut position,
            &stop,
            generation,
        )
        .await
        {
            return;
        }
        if !back_off(&broker, &mut backoff, cluster.reconnect_max).await {
            return;
        }
    }
}

/// Reads the stream from `last` on, delivering each entry; returns `false` when the mirror
/// is stopped, `true` when the link failed (to reconnect).
#[allow(clippy::too_many_arguments)]
async fn follow(
    broker: &Broker,
    history: &History,
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
    mut last: String,
    position: &mut Option<String>,
    stop: &CancellationToken,
    generation: u64,
) -> bool {
    {
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(key)
                .arg(&last);
            let read = cmd.query_async::<Option<StreamReadReply>>(con);
            let reply = tokio::select! {
                _ = stop.cancelled() => return false,
                r = read => r,
            };
            match reply {
                Ok(Some(r)) => {
                    for k in r.keys {
                        for e in k.ids {
                            last = e.id.clone();
                            *position = Some(last.clone());
                            if let Some((seq, msg, policy)) = decode(history.destination(), e)
                                && !history.append_remote(broker, generation, seq, msg, policy)
                            {
                                return false;
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    broker.metrics.cluster_error();
                    warn!(error = %e, destination = history.destination(), "cluster: following history failed");
                    return true;
                }
            }
        }
    }
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

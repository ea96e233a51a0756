//! A node's mirror of a history destination's Redis stream: loads its newest entries, then
//! follows it, delivering each new entry to the node's subscribers (see `crate::history`).
//! After a reconnect it goes on from where it was, so what was published meanwhile is still
//! delivered, in order.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use tokio_util::sync::CancellationToken;

use super::Retry;
use super::codec::Envelope;
use crate::broker::Broker;
use crate::history::{History, Seq};
use crate::message::Published;

/// How long one blocking read waits for new entries.
const BLOCK_MS: u64 = 500;

/// Why following stopped.
enum Ended {
    /// The mirror is no longer wanted (last subscriber gone, shutdown, a newer mirror).
    Stopped,
    /// The link failed: reconnect and go on.
    Failed(redis::RedisError),
}

impl From<redis::RedisError> for Ended {
    fn from(e: redis::RedisError) -> Self {
        Ended::Failed(e)
    }
}

/// One mirror of one destination.
struct Mirror<'a> {
    broker: &'a Broker,
    history: &'a History,
    key: String,
    generation: u64,
    stop: &'a CancellationToken,
}

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
    let response = Duration::from_millis(BLOCK_MS) + Duration::from_secs(5);
    let mut retry = Retry::new(&broker, &cluster, "history", Some(response));
    let mirror = Mirror {
        broker: &broker,
        history: &history,
        key: cluster.history_stream(history.destination()),
        generation,
        stop: &stop,
    };
    // Where the mirror is in the stream, once loaded.
    let mut position: Option<String> = None;
    while !stop.is_cancelled() {
        let Some(mut con) = retry.connect().await else {
            return;
        };
        let ended = match &position {
            Some(_) => mirror.follow(&mut con, &mut position, &mut retry).await,
            None => match mirror.load(&mut con).await {
                Ok(Some(newest)) => {
                    position = Some(newest);
                    retry.worked();
                    mirror.follow(&mut con, &mut position, &mut retry).await
                }
                Ok(None) => Ended::Stopped,
                Err(e) => Ended::Failed(e),
            },
        };
        match ended {
            Ended::Stopped => return,
            Ended::Failed(e) => {
                if !retry.failed(&e).await {
                    return;
                }
            }
        }
    }
}

impl Mirror<'_> {
    /// Loads the newest entries (and the one before them, so a client positioned there is
    /// known to have missed nothing). Returns the newest id to follow from, or `None` when
    /// this mirror is stale.
    async fn load(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<Option<String>> {
        let capacity = self.history.keep().messages.max(1);
        let mut newest = redis::cmd("XREVRANGE")
            .arg(&self.key)
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
        let destination = self.history.destination();
        let entries = newest
            .into_iter()
            .rev()
            .filter_map(|e| decode(destination, e))
            .map(|(s, m, _)| (s, m))
            .collect();
        Ok(self
            .history
            .load(self.broker, self.generation, before, entries)
            .then_some(last))
    }

    /// Reads the stream after `position`, delivering each entry and moving `position` on.
    async fn follow(
        &self,
        con: &mut MultiplexedConnection,
        position: &mut Option<String>,
        retry: &mut Retry<'_>,
    ) -> Ended {
        loop {
            let from = position.clone().unwrap_or_else(|| "0-0".to_owned());
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(from);
            let reply = tokio::select! {
                _ = self.stop.cancelled() => return Ended::Stopped,
                r = cmd.query_async::<Option<StreamReadReply>>(con) => r,
            };
            let entries = match reply {
                Ok(r) => r.map(|r| r.keys).unwrap_or_default(),
                Err(e) => return e.into(),
            };
            retry.worked();
            for e in entries.into_iter().flat_map(|k| k.ids) {
                *position = Some(e.id.clone());
                if let Some((seq, msg, policy)) = decode(self.history.destination(), e)
                    && !self
                        .history
                        .append_remote(self.broker, self.generation, seq, msg, policy)
                {
                    return Ended::Stopped;
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

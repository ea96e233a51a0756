//! The shared tables the reader connections serve.
//!
//! A blocking `XREAD`/`XREADGROUP` holds its connection until an entry arrives or the block
//! times out, so a connection per mirror or pump would make Redis connections grow with
//! clients. Instead each stream is registered in a [`Shards`] table, sharded by the hash of
//! its key over a fixed number of reader connections; each reader issues one blocking read
//! covering every stream of its shard, and looks at the table again between calls.
//!
//! A stream registered (or a queue gaining credit) while its reader blocks must not wait for
//! the block to time out: [`Shard::poke`] wakes the reader, which ends its blocked call at
//! once with `CLIENT UNBLOCK` (sent on the command connection; the call returns as if it had
//! timed out, losing nothing) and issues a new one that includes the stream.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;

use super::Cluster;

/// After a wake-up, `CLIENT UNBLOCK` is sent again at this interval until the blocked call
/// returns (the first one may reach Redis before the call it should end).
const UNBLOCK_AGAIN: Duration = Duration::from_millis(20);

/// Streams read by a fixed set of reader connections, by hash of their key.
#[derive(Debug)]
pub(super) struct Shards<T> {
    shards: Vec<Shard<T>>,
}

/// The streams one reader connection covers.
#[derive(Debug)]
pub(super) struct Shard<T> {
    table: Mutex<HashMap<String, Arc<T>>>,
    wake: Notify,
    /// The reader connection's `CLIENT ID` (for `CLIENT UNBLOCK`); negative while unknown.
    client_id: AtomicI64,
}

impl<T> Shards<T> {
    pub(super) fn new(n: usize) -> Self {
        Self {
            shards: (0..n.max(1))
                .map(|_| Shard {
                    table: Mutex::new(HashMap::new()),
                    wake: Notify::new(),
                    client_id: AtomicI64::new(-1),
                })
                .collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.len()
    }

    pub(super) fn shard(&self, index: usize) -> &Shard<T> {
        &self.shards[index % self.shards.len()]
    }

    /// The shard reading `key`.
    pub(super) fn of(&self, key: &str) -> &Shard<T> {
        // A fixed hasher: the same key always lands on the same reader.
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        self.shard(h.finish() as usize)
    }

    /// Adds (or replaces) `key`'s registration, and wakes its reader to include it.
    pub(super) fn register(&self, key: &str, reg: Arc<T>) {
        let shard = self.of(key);
        shard.lock().insert(key.to_owned(), reg);
        shard.poke();
    }

    /// Removes `key`'s registration if it is still `reg` (a newer one stays).
    pub(super) fn unregister(&self, key: &str, reg: &Arc<T>) {
        let mut table = self.of(key).lock();
        if table.get(key).is_some_and(|r| Arc::ptr_eq(r, reg)) {
            table.remove(key);
        }
    }

    /// Every registered key (to refresh their expiry).
    pub(super) fn keys(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().keys().cloned().collect::<Vec<_>>())
            .collect()
    }
}

impl<T> Shard<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<T>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The registrations now, for one call (the lock is not held while it runs).
    pub(super) fn snapshot(&self) -> Vec<(String, Arc<T>)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// The registered keys (to recreate consumer groups).
    pub(super) fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Asks the reader to start a new call soon (a stream was added, or gained credit).
    pub(super) fn poke(&self) {
        // A permit is stored when the reader is not waiting: its next wait ends at once.
        self.wake.notify_one();
    }

    /// Waits for a poke.
    pub(super) async fn poked(&self) {
        self.wake.notified().await;
    }

    /// Learns the reader connection's id, for `CLIENT UNBLOCK`. A Redis user not allowed
    /// `CLIENT ID` still reads; its wake-ups wait for the block to time out instead.
    pub(super) async fn identify(&self, con: &mut MultiplexedConnection) {
        let id = match redis::cmd("CLIENT").arg("ID").query_async::<i64>(con).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: CLIENT ID refused; reads are woken only by their timeout");
                -1
            }
        };
        self.client_id.store(id, Ordering::Relaxed);
    }

    /// Runs the blocking `cmd` on the reader connection `con`; a poke meanwhile ends it early
    /// (`CLIENT UNBLOCK`: it returns as if it had timed out). `None` at shutdown.
    pub(super) async fn blocking<R: redis::FromRedisValue>(
        &self,
        cluster: &Cluster,
        shutdown: &tokio_util::sync::CancellationToken,
        con: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Option<redis::RedisResult<R>> {
        let call = cmd.query_async::<R>(con);
        tokio::pin!(call);
        let mut poked = false;
        loop {
            tokio::select! {
                biased;
                r = &mut call => return Some(r),
                _ = shutdown.cancelled() => return None,
                _ = self.wake.notified(), if !poked => poked = true,
                _ = tokio::time::sleep(UNBLOCK_AGAIN), if poked => {}
            }
            let id = self.client_id.load(Ordering::Relaxed);
            if id >= 0
                && let Ok(mut shared) = cluster.commands().await
            {
                // Best effort: the block times out anyway.
                let _ = redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .arg("TIMEOUT")
                    .query_async::<i64>(&mut shared.con)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::super::{Cluster, history, pump};
    use crate::config::{ClusterConfig, Config};
    use crate::history::Keep;

    /// What a destination with local subscribers costs the node besides its table entry: its
    /// task's state, small while it waits (docs/cluster.md counts 1 KiB with the task's
    /// header and the entry).
    #[test]
    fn a_mirrored_or_served_destination_costs_a_small_task() {
        let broker = crate::Broker::new(Config::default()).unwrap();
        let cluster = Arc::new(
            Cluster::new(&ClusterConfig {
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
            .unwrap(),
        );
        let stop = CancellationToken::new();
        let queue = broker.queues.get_or_create("/queue/a", 10);
        let pump = pump::run(Arc::clone(&broker), cluster, queue, stop.clone());
        let keep = Keep {
            messages: 5,
            ttl: None,
            retain_last: false,
        };
        let h = broker.histories.get_or_create("/topic/a", keep);
        let mirror = history::history_tail(Arc::clone(&broker), h, stop, 1);
        let sizes = (std::mem::size_of_val(&pump), std::mem::size_of_val(&mirror));
        // 400 and 184 bytes in a debug build.
        assert!(sizes.0 <= 512 && sizes.1 <= 512, "{sizes:?}");
    }
}

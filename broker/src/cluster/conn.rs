//! The node's connections to Redis, a fixed number whatever clients do
//! (`[cluster] redis_connections`):
//!
//! - one pub/sub connection (`link::subscriber`);
//! - one shared, multiplexed command connection for everything that does not block: the
//!   publisher's pipelines (PUBLISH, XADD, XACK, presence scripts), loading mirrors, creating
//!   consumer groups, claims of held entries, liveness and key expiry. Requests on it are
//!   pipelined, so sharing it costs no round trips;
//! - the rest are readers (`readers`), each doing one blocking `XREAD` or `XREADGROUP` over
//!   every stream of its shard at once: a mirror or a pump is an entry in a table, not a
//!   connection.
//!
//! A failed link is retried with exponential backoff ([`Retry`]); the command connection's
//! reconnection is shared, so a thousand pumps waiting for Redis make one attempt, not a
//! thousand.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use super::Cluster;

/// Requests on the command connection that take longer fail (the link is then replaced).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared command connection, or when the next attempt to open it may be made.
#[derive(Debug)]
pub(super) struct Commands {
    slot: tokio::sync::Mutex<Slot>,
}

#[derive(Debug)]
struct Slot {
    /// The connection and its generation (so a failure seen on an old one does not drop a
    /// newer one).
    con: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    next_attempt: Instant,
    backoff: Duration,
}

impl Commands {
    pub(super) fn new() -> Self {
        Self {
            slot: tokio::sync::Mutex::new(Slot {
                con: None,
                generation: 0,
                next_attempt: Instant::now(),
                backoff: Retry::FIRST,
            }),
        }
    }
}

/// A handle on the shared command connection.
pub(super) struct Shared {
    generation: u64,
    pub(super) con: MultiplexedConnection,
}

/// Whether an error means the connection itself is unusable (not a command's own error).
fn broken(e: &redis::RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_io_error() || e.is_timeout() || e.is_connection_dropped()
}

impl Cluster {
    /// A multiplexed connection whose requests time out after `response_timeout` (`None`:
    /// never).
    pub(super) async fn connect(
        &self,
        response_timeout: Option<Duration>,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(response_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// The shared command connection, opened if need be. While Redis is unreachable, at most
    /// one attempt is made per backoff period (node-wide); the others get the error at once.
    pub(super) async fn commands(&self) -> redis::RedisResult<Shared> {
        let mut slot = self.commands.slot.lock().await;
        if let Some((generation, con)) = &slot.con {
            return Ok(Shared {
                generation: *generation,
                con: con.clone(),
            });
        }
        if Instant::now() < slot.next_attempt {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis unreachable; waiting before the next attempt",
            )));
        }
        match self.connect(Some(COMMAND_TIMEOUT)).await {
            Ok(con) => {
                slot.generation += 1;
                slot.backoff = Retry::FIRST;
                slot.con = Some((slot.generation, con.clone()));
                Ok(Shared {
                    generation: slot.generation,
                    con,
                })
            }
            Err(e) => {
                slot.next_attempt = Instant::now() + slot.backoff;
                slot.backoff = (slot.backoff * 2).min(self.reconnect_max);
                Err(e)
            }
        }
    }

    /// A request on `shared` failed with `e`: when the connection is broken, the next caller
    /// opens a new one.
    pub(super) async fn command_failed(&self, shared: &Shared, e: &redis::RedisError) {
        if !broken(e) {
            return;
        }
        let mut slot = self.commands.slot.lock().await;
        if slot
            .con
            .as_ref()
            .is_some_and(|(g, _)| *g == shared.generation)
        {
            slot.con = None;
        }
    }
}

/// How one long-lived task recovers from Redis failures: failures are counted and logged,
/// then it waits (50 ms, doubling up to `reconnect_max_ms`) before trying again. Shutdown
/// ends the wait.
pub(super) struct Retry<'a> {
    broker: &'a crate::Broker,
    cluster: &'a Cluster,
    what: &'static str,
    response_timeout: Option<Duration>,
    backoff: Duration,
}

impl<'a> Retry<'a> {
    pub(super) const FIRST: Duration = Duration::from_millis(50);

    pub(super) fn new(
        broker: &'a crate::Broker,
        cluster: &'a Cluster,
        what: &'static str,
        response_timeout: Option<Duration>,
    ) -> Self {
        Self {
            broker,
            cluster,
            what,
            response_timeout,
            backoff: Self::FIRST,
        }
    }

    /// A dedicated connection (a reader's), trying until one works; `None` at shutdown.
    pub(super) async fn connect(&mut self) -> Option<MultiplexedConnection> {
        loop {
            match self.cluster.connect(self.response_timeout).await {
                Ok(c) => return Some(c),
                Err(e) => {
                    if !self.failed(&e).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The shared command connection, trying until it works; `None` at shutdown.
    pub(super) async fn commands(&mut self) -> Option<Shared> {
        loop {
            match self.cluster.commands().await {
                Ok(c) => return Some(c),
                Err(e) => {
                    if !self.failed(&e).await {
                        return None;
                    }
                }
            }
        }
    }

    /// A request on the command connection failed: the connection is replaced if it is
    /// broken, then the failure is counted and the pause taken. `false` at shutdown.
    pub(super) async fn command_failed(&mut self, shared: &Shared, e: &redis::RedisError) -> bool {
        self.cluster.command_failed(shared, e).await;
        self.failed(e).await
    }

    /// The link worked: the next failure starts the backoff afresh.
    pub(super) fn worked(&mut self) {
        self.backoff = Self::FIRST;
    }

    /// A failure: counted, logged, then the pause. `false` at shutdown.
    pub(super) async fn failed(&mut self, e: &(dyn std::fmt::Display + Sync)) -> bool {
        self.broker.metrics.cluster_error();
        tracing::warn!(error = %e, link = self.what, "cluster: Redis link failed; retrying");
        self.pause().await
    }

    /// The pause before the next attempt. `false` at shutdown.
    async fn pause(&mut self) -> bool {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cluster.reconnect_max);
        tokio::select! {
            _ = self.broker.shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

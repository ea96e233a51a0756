//! The shared heart of a running broker: configuration, routing table, registries, metrics,
//! and the publish path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use stomp_codec::{Delivery as WireDelivery, Headers, Version};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::{Access, Action};
use crate::app::{AppRouter, Backend};
use crate::auth::{AuthSetupError, Authenticator};
use crate::budget::Budget;
use crate::cluster::{Cluster, ClusterError, Envelope};
use crate::config::{Config, DestinationMode, SlowConsumerPolicy};
use crate::message::{MessageIds, Published};
use crate::metrics::{DropReason, LocalCounters, Metrics};
use crate::outbox::{Delivery, Outbound, Outbox, PushError};
use crate::pattern::Pattern;
use crate::queue::Queues;
use crate::registry::{ConnId, Registry, Subscriber, Which};
use crate::router::{Route, Router};
use crate::wire::WireFrame;

/// Why a publish was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No prefix serves the destination.
    #[error("destination {0} is not served by this broker")]
    Unserved(String),
    /// Application destinations are handled by routes, not published to.
    #[error(
        "destination {0} is an application destination; publish to a broker or user destination"
    )]
    AppDestination(String),
    /// A user destination without a user: `/user/{name}/...` is needed.
    #[error("user destination {0} names no user")]
    NoUser(String),
    /// The publishing client already holds its share of what queues or histories may hold.
    #[error("this connection's messages already hold their share of {0} ({1} bytes)")]
    ShareExceeded(&'static str, usize),
    /// The access rules (or the presence guard) refuse the publisher this destination.
    #[error("you may not send to '{0}'")]
    Denied(String),
    /// Over `stomp.max_destination_length` or `max_destination_segments`.
    #[error(transparent)]
    Limit(#[from] crate::pattern::LimitError),
}

/// What one client's published messages may hold: its share of all queues' bytes and of all
/// histories' bytes (`[broker] max_client_share_percent`). Per connection.
#[derive(Debug, Clone)]
pub struct Shares {
    /// Bytes of its messages waiting in queues.
    pub queues: Arc<Budget>,
    /// Bytes of its messages held in histories.
    pub histories: Arc<Budget>,
}

/// What a publish did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Deliveries queued to subscribers.
    pub delivered: usize,
    /// Deliveries dropped (slow consumers, full queues).
    pub dropped: usize,
}

/// Shared broker state. One per running broker, behind an `Arc`.
#[derive(Debug)]
pub struct Broker {
    /// The configuration it was started with.
    pub config: Arc<Config>,
    /// Destination routing.
    pub router: Router,
    /// Broadcast subscriptions.
    pub registry: Registry,
    /// Queue-mode destinations.
    pub queues: Queues,
    /// Exported metrics.
    pub metrics: Metrics,
    /// Application routes.
    pub app: AppRouter,
    /// HTTP client for `forward` routes.
    pub backend: Backend,
    /// Credential checks.
    pub auth: Authenticator,
    /// Authorization rules.
    pub access: Access,
    /// Connection slots (`max_connections`, `max_connections_per_ip`), for listeners and
    /// SockJS sessions alike.
    pub admission: Arc<crate::admission::Admission>,
    /// Live SockJS sessions.
    pub sockjs: crate::sockjs::Sessions,
    /// The cluster link, when `[cluster]` is configured.
    pub cluster: Option<Arc<Cluster>>,
    /// Destinations' histories and retained values.
    pub histories: crate::history::Histories,
    /// Who is subscribed to destinations with presence.
    pub presence: crate::presence::Presence,
    /// Bytes all connections hold in transactions and application messages (`[broker]
    /// sessions_max_bytes`); each connection's budgets for them sit inside it.
    pub sessions_budget: Arc<Budget>,
    ids: MessageIds,
    next_conn: AtomicU64,
    /// Every live session's outbox, so shutdown can reach them all.
    sessions: DashMap<ConnId, Arc<Outbox>>,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// Why the broker's shared state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Authentication settings.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// Cluster settings.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl Broker {
    /// Builds the shared state for a validated configuration, without Rust handlers.
    pub fn new(config: Config) -> Result<Arc<Self>, SetupError> {
        Self::with_app(config, AppRouter::new())
    }

    /// Builds the shared state with Rust application handlers; the configuration's
    /// `[[app.routes]]` come after them.
    pub fn with_app(config: Config, app: AppRouter) -> Result<Arc<Self>, SetupError> {
        let auth = Authenticator::from_config(&config.auth)?;
        let mut metrics = Metrics::new();
        metrics.register_password_checks(auth.password_checks());
        let cluster = config
            .cluster
            .as_ref()
            .map(Cluster::new)
            .transpose()?
            .map(Arc::new);
        let ids = match &cluster {
            Some(c) => MessageIds::with_node(c.node()),
            None => MessageIds::new(),
        };
        let router = Router::new(&config);
        // Validation compiled the rules already; should an unvalidated config get here with a
        // bad rule, fail closed.
        let access = Access::from_config(&config.access, router.separator()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "access rules unusable; denying everything");
            Access::deny_all()
        });
        let registry = Registry::new(router.separator());
        let b = &config.broker;
        let mut queues = Queues::new(
            b.max_pending_total,
            b.max_pending_total_bytes,
            b.share_of(b.max_pending_total_bytes),
        );
        if let Some(c) = &cluster {
            let c = Arc::clone(c);
            queues = queues.with_drop_hook(crate::queue::DropHook::new(move |msg| {
                if let Some(r) = &msg.stream {
                    c.release(r);
                }
            }));
        }
        let histories =
            crate::history::Histories::new(b.history_max_bytes, b.share_of(b.history_max_bytes));
        let sessions_budget = Budget::new(b.sessions_max_bytes, None);
        // Validation already compiled every route path, so this cannot fail.
        let app = app.clone().with_config_routes(&config).unwrap_or(app);
        let backend = Backend::new(std::time::Duration::from_millis(
            config.app.backend_timeout_ms,
        ));
        let admission = crate::admission::Admission::new(
            config.server.max_connections,
            config.server.max_connections_per_ip,
        );
        Ok(Arc::new(Self {
            auth,
            access,
            admission,
            sockjs: crate::sockjs::Sessions::default(),
            histories,
            sessions_budget,
            presence: crate::presence::Presence::default(),
            app,
            backend,
            config: Arc::new(config),
            router,
            registry,
            queues,
            metrics,
            ids,
            cluster,
            next_conn: AtomicU64::new(1),
            sessions: DashMap::new(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }))
    }

    /// The session id CONNECTED shows, which also keys an anonymous session's user
    /// destinations: unique across a cluster (the node's id is part of it).
    pub fn session_name(&self, conn: ConnId) -> String {
        match &self.cluster {
            Some(c) => format!("{}-s{conn}", c.node()),
            None => format!("s{conn}"),
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a live session. A session that starts while the broker is shutting down is
    /// told to stop at once.
    pub(crate) fn register_session(&self, conn: ConnId, outbox: &Arc<Outbox>) {
        self.sessions.insert(conn, Arc::clone(outbox));
        if self.shutdown.is_cancelled() {
            outbox.stop();
        }
    }

    /// Forgets a session that ended.
    pub(crate) fn unregister_session(&self, conn: ConnId) {
        self.sessions.remove(&conn);
    }

    /// Starts shutting down: listeners stop accepting and every session flushes and closes.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        for entry in self.sessions.iter() {
            entry.value().stop();
        }
    }

    /// A fresh, unique message id.
    pub fn next_message_id(&self) -> String {
        self.ids.next()
    }

    /// A new connection's shares of queue and history storage.
    pub fn shares(&self) -> Shares {
        let b = &self.config.broker;
        Shares {
            queues: Budget::new(b.client_share_of(b.max_pending_total_bytes), None),
            histories: Budget::new(b.client_share_of(b.history_max_bytes), None),
        }
    }

    /// A new connection's budget for one kind of what it holds, inside the budget of all
    /// connections.
    pub fn session_budget(&self, limit: usize) -> Arc<Budget> {
        Budget::new(limit, Some(Arc::clone(&self.sessions_budget)))
    }

    /// Runs `sweep` periodically (a quarter of `idle_expiry_ms`, at most every minute) until
    /// shutdown.
    pub async fn janitor(self: Arc<Self>) {
        let every = std::time::Duration::from_millis(self.config.broker.idle_expiry_ms / 4).clamp(
            std::time::Duration::from_millis(250),
            std::time::Duration::from_secs(60),
        );
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => self.sweep(),
            }
        }
    }

    /// Forgets queues and histories idle for longer than `idle_expiry_ms`, with what they
    /// hold, and restores the storage budgets. Run by a periodic task.
    pub fn sweep(&self) {
        let cutoff = crate::history::now_ms().saturating_sub(self.config.broker.idle_expiry_ms);
        let expired = self.queues.expire(cutoff);
        self.metrics.dropped(DropReason::Expired, expired as u64);
        self.histories.expire(cutoff);
        self.metrics
            .dropped(DropReason::Evicted, self.queues.enforce() as u64);
        self.histories.enforce();
        self.metrics.queued.set(self.queues.total_pending() as i64);
    }

    /// Publishes a message to a broker destination or to a user destination
    /// (`/user/{name}/queue/x`), as a client SEND does.
    pub fn publish(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<PublishOutcome, PublishError> {
        self.publish_as(destination, headers, body, None)
    }

    /// As `publish`, charging what queues and histories keep to a client's `shares` (an
    /// application route publishing for its sender).
    pub(crate) fn publish_as(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
        shares: Option<&Shares>,
    ) -> Result<PublishOutcome, PublishError> {
        self.router.check_limits(destination)?;
        let outcome = self.publish_routed(
            self.router.route(destination),
            destination,
            headers,
            body,
            shares,
        )?;
        self.metrics.published.inc();
        self.metrics.delivered.inc_by(outcome.delivered as u64);
        Ok(outcome)
    }

    /// As `publish`, counting into a session's private tally instead of the shared counters,
    /// which the session adds up in batches (see `LocalCounters`).
    /// `route` is `self.router.route(destination)`, already computed by the caller.
    pub(crate) fn publish_counted(
        &self,
        route: Route<'_>,
        destination: &str,
        headers: &Headers,
        body: Bytes,
        counters: &mut LocalCounters,
        shares: &Shares,
    ) -> Result<PublishOutcome, PublishError> {
        let outcome = self.publish_routed(route, destination, headers, body, Some(shares))?;
        counters.published(outcome.delivered);
        Ok(outcome)
    }

    fn publish_routed(
        &self,
        route: Route<'_>,
        destination: &str,
        headers: &Headers,
        body: Bytes,
        shares: Option<&Shares>,
    ) -> Result<PublishOutcome, PublishError> {
        let rule = match route {
            Route::Broker(rule) => rule,
            Route::User { rest } => {
                let (user, rest) =
                    split_user(rest).ok_or_else(|| PublishError::NoUser(destination.to_owned()))?;
                return self.owner_publish(Owner::User(&user), rest, headers, body);
            }
            Route::App { .. } => return Err(PublishError::AppDestination(destination.to_owned())),
            Route::Unserved => return Err(PublishError::Unserved(destination.to_owned())),
        };
        if rule.mode == DestinationMode::Broadcast
            && rule.keep.any()
            && let Some(c) = &self.cluster
        {
            // Into the destination's stream: every node with exact subscribers delivers from
            // its mirror of it. Wildcard subscriptions (which cannot resume) get it like any
            // broadcast message: here at once, elsewhere through pub/sub.
            let capacity = rule.keep.messages.max(1);
            let sent = c.append_history(destination, rule.slow_consumer, headers, &body, capacity);
            let id = self.ids.next_id();
            let mut outcome = PublishOutcome {
                delivered: 0,
                dropped: usize::from(!sent),
            };
            // Other nodes' wildcard subscriptions are not known here: one PUBLISH each.
            if !c.publish(
                destination,
                destination,
                id.as_str(),
                rule.slow_consumer,
                headers,
                &body,
            ) {
                self.metrics.cluster_dropped(1);
            }
            if self.registry.pattern_subscriptions() > 0 {
                let msg = Arc::new(Published::from_send(
                    destination,
                    id.as_str(),
                    headers,
                    body,
                ));
                outcome.delivered = self
                    .fan_out_to(destination, &msg, rule.slow_consumer, Which::Patterns)
                    .delivered;
            }
            if !sent {
                self.metrics.cluster_dropped(1);
            }
            return Ok(outcome);
        }
        if rule.mode == DestinationMode::Broadcast && rule.keep.any() {
            // Ids from the destination's own sequence, recorded and delivered in one step.
            let history = self.histories.get_or_create(destination, rule.keep);
            // The size it will pin, known before the id (which is a few bytes) is chosen.
            let size = body.len() + headers_size(headers) + crate::message::MESSAGE_OVERHEAD;
            let outcome = history
                .publish(shares.map(|s| &s.histories), size, |id| {
                    let msg = Arc::new(Published::from_send(destination, id, headers, body));
                    let outcome = self.fan_out(destination, &msg, rule.slow_consumer);
                    (msg, outcome)
                })
                .map_err(|_| PublishError::ShareExceeded("histories", self.histories_share()))?;
            self.histories.enforce();
            return Ok(outcome);
        }
        let id = self.ids.next_id();
        // For the cluster link (a reference count, not a copy).
        let msg_body = if self.cluster.is_some() {
            body.clone()
        } else {
            Bytes::new()
        };
        let msg = Arc::new(Published::from_send(
            destination,
            id.as_str(),
            headers,
            body,
        ));
        let outcome = match rule.mode {
            DestinationMode::Queue if self.cluster.is_some() => {
                // Into the cluster's stream; whichever node has a consumer with credit takes it.
                let sent = self.cluster.as_ref().is_some_and(|c| {
                    c.enqueue(
                        destination,
                        id.as_str(),
                        headers,
                        &msg_body,
                        rule.max_pending,
                    )
                });
                if !sent {
                    self.metrics.cluster_dropped(1);
                }
                PublishOutcome {
                    delivered: 0,
                    dropped: usize::from(!sent),
                }
            }
            DestinationMode::Queue => {
                let q = self.queues.get_or_create(destination, rule.max_pending);
                let o = q.publish(msg, shares.map(|s| &s.queues)).map_err(|_| {
                    let b = &self.config.broker;
                    PublishError::ShareExceeded(
                        "queues",
                        b.client_share_of(b.max_pending_total_bytes),
                    )
                })?;
                self.metrics
                    .dropped(DropReason::QueueFull, o.dropped as u64);
                self.metrics
                    .dropped(DropReason::Evicted, self.queues.enforce() as u64);
                self.metrics.queued.set(self.queues.total_pending() as i64);
                PublishOutcome {
                    delivered: o.delivered,
                    dropped: o.dropped,
                }
            }
            DestinationMode::Broadcast => {
                let outcome = self.fan_out(destination, &msg, rule.slow_consumer);
                if let Some(c) = &self.cluster
                    && !c.publish(
                        destination,
                        destination,
                        id.as_str(),
                        rule.slow_consumer,
                        headers,
                        &msg_body,
                    )
                {
                    self.metrics.cluster_dropped(1);
                }
                outcome
            }
        };
        Ok(outcome)
    }

    fn histories_share(&self) -> usize {
        let b = &self.config.broker;
        b.client_share_of(b.history_max_bytes)
    }

    /// Counts a subscription in or out of `destination`'s presence and announces the change
    /// on its companion destination.
    pub(crate) fn announce_presence(&self, destination: &str, user: Option<&str>, joined: bool) {
        let companion = crate::presence::companion(destination, self.router.separator());
        if let Some(c) = &self.cluster {
            // Counted here and, per node instance, in Redis; the event reaches watchers
            // through the companion's stream.
            self.presence.change(destination, user, joined, |_, count| {
                if !c.presence_change(destination, &companion, user, joined, count) {
                    self.metrics.cluster_dropped(1);
                }
            });
            return;
        }
        self.presence.change(destination, user, joined, |event, _| {
            let mut h = Headers::new();
            h.push("content-type", "application/json");
            let _ = self.publish(&companion, &h, Bytes::from(event));
        });
    }

    /// Whether `who` may subscribe to `destination`: the access rules for it, and for a
    /// presence companion also for the destination it reports on (who is in a room is as
    /// private as the room, whatever rules the companion's own name matches).
    pub(crate) fn may_subscribe(
        &self,
        destination: &str,
        who: Option<&crate::auth::Identity>,
    ) -> bool {
        self.access.allows(Action::Subscribe, destination, who)
            && self
                .presence_base(destination)
                .is_none_or(|base| self.access.allows(Action::Subscribe, base, who))
    }

    /// The destination `destination` reports presence for, when it is a companion
    /// destination of one with presence.
    pub fn presence_base<'a>(&self, destination: &'a str) -> Option<&'a str> {
        let base = crate::presence::base_of(destination, self.router.separator())?;
        match self.router.route_broker(base) {
            Route::Broker(rule) if rule.presence => Some(base),
            _ => None,
        }
    }

    /// Delivers a message another node accepted to this node's subscribers.
    pub(crate) fn deliver_remote(&self, env: &Envelope) {
        let msg = Arc::new(Published::from_envelope(env));
        // A history destination's exact subscribers are served by the node's mirror of its
        // stream; pub/sub carries it to wildcard subscriptions only.
        let which = if self.mirrored(&env.key) {
            Which::Patterns
        } else {
            Which::All
        };
        let outcome = self.fan_out_to(&env.key, &msg, env.policy, which);
        self.metrics.delivered.inc_by(outcome.delivered as u64);
    }

    /// A queue message reached its end here (acknowledged, or written for auto-ack): in a
    /// cluster, acknowledge it in Redis.
    pub(crate) fn queue_done(&self, msg: &Published) {
        if let (Some(c), Some(r)) = (&self.cluster, &msg.stream) {
            c.acknowledge(r);
        }
    }

    /// Registers a local subscription to an exact key (destination or user key).
    pub(crate) fn subscribe_exact(&self, key: &str, sub: Subscriber) {
        self.registry.subscribe_exact(key, sub);
        if let Some(c) = &self.cluster
            && !self.mirrored(key)
        {
            c.watch_key(key);
        }
    }

    /// Whether exact subscribers of `key` get its messages from the node's mirror of a
    /// history stream rather than from pub/sub (which then carries it to wildcards only).
    fn mirrored(&self, key: &str) -> bool {
        matches!(self.router.route_broker(key), Route::Broker(rule) if rule.keep.any())
            || self.presence_base(key).is_some()
    }

    /// Removes a local subscription to an exact key.
    pub(crate) fn unsubscribe_exact(&self, key: &str, conn: ConnId, sub_key: u32) {
        self.registry.unsubscribe_exact(key, conn, sub_key);
        if let Some(c) = &self.cluster
            && !self.mirrored(key)
        {
            c.unwatch_key(key);
        }
    }

    /// Registers a local wildcard subscription.
    pub(crate) fn subscribe_pattern(&self, pattern: Pattern, sub: Subscriber) {
        if let Some(c) = &self.cluster {
            c.watch_pattern(pattern.literal_prefix());
        }
        self.registry.subscribe_pattern(pattern, sub);
    }

    /// Removes a local wildcard subscription.
    pub(crate) fn unsubscribe_pattern(&self, pattern: &Pattern, conn: ConnId, sub_key: u32) {
        self.registry.unsubscribe_pattern(pattern, conn, sub_key);
        if let Some(c) = &self.cluster {
            c.unwatch_pattern(pattern.literal_prefix());
        }
    }

    /// A local consumer joined a queue destination.
    pub(crate) fn queue_consumer_added(self: &Arc<Self>, queue: &Arc<crate::queue::Queue>) {
        if let Some(c) = &self.cluster {
            c.queue_consumer_added(self, queue);
        }
    }

    /// A local consumer left a queue destination.
    pub(crate) fn queue_consumer_removed(&self, queue: &crate::queue::Queue) {
        if let Some(c) = &self.cluster {
            c.queue_consumer_removed(queue);
        }
    }

    /// Publishes to every session of `user` subscribed to `/user{destination}`; the MESSAGE shows
    /// `destination:/user{destination}`, as in Spring.
    pub fn publish_to_user(
        &self,
        user: &str,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<PublishOutcome, PublishError> {
        self.publish_to_owner(Owner::User(user), destination, headers, body)
    }

    /// Publishes to the user destinations of an owner: a named user, or one anonymous session.
    pub fn publish_to_owner(
        &self,
        owner: Owner<'_>,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<PublishOutcome, PublishError> {
        self.router.check_limits(destination)?;
        let outcome = self.owner_publish(owner, destination, headers, body)?;
        self.metrics.published.inc();
        self.metrics.delivered.inc_by(outcome.delivered as u64);
        Ok(outcome)
    }

    fn owner_publish(
        &self,
        owner: Owner<'_>,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<PublishOutcome, PublishError> {
        let user = owner.name();
        let Route::Broker(rule) = self.router.route_broker(destination) else {
            return Err(PublishError::Unserved(format!(
                "{}/{user}{destination}",
                self.router.user_prefix()
            )));
        };
        let id = self.ids.next_id();
        let shown = format!("{}{destination}", self.router.user_prefix());
        let key = user_key(owner, destination);
        if let Some(c) = &self.cluster
            && !c.publish(
                &key,
                &shown,
                id.as_str(),
                rule.slow_consumer,
                headers,
                &body,
            )
        {
            self.metrics.cluster_dropped(1);
        }
        let msg = Arc::new(Published::from_send(&shown, id.as_str(), headers, body));
        Ok(self.fan_out(&key, &msg, rule.slow_consumer))
    }

    /// Hands `msg` to every matching broadcast subscription without waiting on any of them.
    pub(crate) fn fan_out(
        &self,
        destination: &str,
        msg: &Arc<Published>,
        policy: SlowConsumerPolicy,
    ) -> PublishOutcome {
        self.fan_out_to(destination, msg, policy, Which::All)
    }

    /// As `fan_out`, to exact or to wildcard subscriptions only.
    pub(crate) fn fan_out_to(
        &self,
        destination: &str,
        msg: &Arc<Published>,
        policy: SlowConsumerPolicy,
        which: Which,
    ) -> PublishOutcome {
        let mut shared = SharedFrames::default();
        let mut outcome = PublishOutcome::default();
        let mut companion_of: Option<Option<&str>> = None;
        self.registry.for_each_match_in(destination, which, |sub| {
            if let Some(who) = &sub.guard {
                // What the destination is (a presence companion or not) is the same for every
                // subscriber: looked up once per fan-out, at the first guarded one.
                let base = *companion_of.get_or_insert_with(|| self.presence_base(destination));
                let allowed = self
                    .access
                    .allows(Action::Subscribe, destination, Some(who))
                    && base.is_none_or(|b| self.access.allows(Action::Subscribe, b, Some(who)));
                if !allowed {
                    return;
                }
            }
            // The first message after a resume that found a gap says so.
            let gap = sub
                .gap
                .as_ref()
                .is_some_and(|g| g.swap(false, std::sync::atomic::Ordering::AcqRel));
            let pushed = if gap {
                let r = deliver_with_credit(sub, msg, crate::outbox::Mark::Gap);
                if r.is_err()
                    && let Some(g) = &sub.gap
                {
                    // Not delivered: the next message carries the mark instead.
                    g.store(true, std::sync::atomic::Ordering::Release);
                }
                r
            } else if sub.auto_ack {
                let frame = shared.get(sub, msg);
                let size = frame.len();
                sub.outbox.push(Outbound::Frame(frame), size)
            } else {
                deliver_with_credit(sub, msg, crate::outbox::Mark::None)
            };
            match pushed {
                Ok(()) => outcome.delivered += 1,
                Err(PushError::Full) => {
                    outcome.dropped += 1;
                    if policy == SlowConsumerPolicy::Disconnect {
                        sub.outbox.kill();
                    }
                }
                Err(PushError::Closed) => {}
            }
        });
        self.metrics
            .dropped(DropReason::SlowConsumer, outcome.dropped as u64);
        outcome
    }
}

/// Bytes of a SEND's headers, an upper bound of what they add to a prepared message.
fn headers_size(headers: &Headers) -> usize {
    headers
        .as_slice()
        .iter()
        .map(|(n, v)| 3 * (n.len() + v.len() + 2))
        .sum()
}

/// Who a user destination belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// An authenticated user, by name: all of its sessions.
    User(&'a str),
    /// One anonymous session, by session id. Kept apart from user names, so a user who happens
    /// to be called like a session id shares nothing with it, and nobody can address anonymous
    /// sessions from outside.
    Session(&'a str),
}

impl Owner<'_> {
    /// The user name or session id.
    pub fn name(&self) -> &str {
        match self {
            Owner::User(n) | Owner::Session(n) => n,
        }
    }
}

/// The registry key of an owner's user destination. The name is hex-encoded so no name can
/// contain pattern syntax or a separator, a tag keeps users and anonymous sessions apart, and the
/// key starts with a control character no client destination can route to.
pub fn user_key(owner: Owner<'_>, destination: &str) -> String {
    let user = owner.name();
    let mut key = String::with_capacity(3 + user.len() * 2 + destination.len());
    key.push('\u{1}');
    key.push(if matches!(owner, Owner::User(_)) {
        'u'
    } else {
        's'
    });
    for b in user.bytes() {
        key.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        key.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    key.push('\u{1}');
    key.push_str(destination);
    key
}

/// Splits `/bob/queue/x` into `("bob", "/queue/x")`; `%2F` in the name stands for `/`.
pub fn split_user(rest: &str) -> Option<(String, &str)> {
    let rest = rest.strip_prefix('/')?;
    let slash = rest.find('/')?;
    let (name, dest) = rest.split_at(slash);
    if name.is_empty() {
        return None;
    }
    Some((name.replace("%2F", "/").replace("%2f", "/"), dest))
}

/// Queues one delivery that the subscriber's session encodes (it carries an ack id, a mark, or
/// both), within the outbox's bounds; one that waits for an ACK also within the subscription's
/// prefetch window and the connection's unsettled bytes. `Full` when any of them is reached.
pub(crate) fn deliver_with_credit(
    sub: &Subscriber,
    msg: &Arc<Published>,
    mark: crate::outbox::Mark,
) -> Result<(), PushError> {
    let credit = sub.credit.as_ref();
    let charge = match credit {
        Some(c) => {
            let charge = sub
                .outbox
                .unsettled()
                .try_charge(msg.memory_size())
                .ok_or(PushError::Full)?;
            if !c.try_take() {
                return Err(PushError::Full);
            }
            Some(charge)
        }
        None => None,
    };
    let item = Outbound::Deliver(Delivery {
        key: sub.key,
        msg: Arc::clone(msg),
        redelivered: false,
        queue: None,
        mark,
        charge,
    });
    let r = sub.outbox.push(item, msg.size_hint());
    if r.is_err()
        && let Some(c) = credit
    {
        c.give_back(1);
    }
    r
}

/// Frames encoded during one publish, keyed by what makes deliveries differ for auto-ack
/// subscriptions: the STOMP version and the subscription id. stomp.js numbers subscriptions
/// `sub-0`, `sub-1`, … per connection, so a fan-out to thousands of browsers typically encodes
/// a handful of frames and shares each of them.
#[derive(Default)]
struct SharedFrames {
    /// The first encoding, kept inline: the common case (every subscriber `sub-0`, all on one
    /// version) then allocates nothing beyond the frame itself.
    first: Option<(Version, Bytes, WireFrame)>,
    more: Vec<(Version, Bytes, WireFrame)>,
}

impl SharedFrames {
    /// Beyond this many distinct encodings a linear search costs more than it saves, so later
    /// variants are encoded per delivery.
    const MAX: usize = 16;

    fn get(&mut self, sub: &Subscriber, msg: &Published) -> WireFrame {
        let same = |(v, id, _): &&(Version, Bytes, WireFrame)| *v == sub.version && *id == sub.id;
        if let Some((_, _, f)) = self.first.iter().chain(self.more.iter()).find(same) {
            return f.clone();
        }
        let frame = msg.encode(
            sub.version,
            &WireDelivery {
                subscription: &sub.id,
                ..WireDelivery::default()
            },
        );
        if self.first.is_none() {
            self.first = Some((sub.version, sub.id.clone(), frame.clone()));
        } else if self.more.len() < Self::MAX {
            self.more.push((sub.version, sub.id.clone(), frame.clone()));
        }
        frame
    }
}

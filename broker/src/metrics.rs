//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! Counters that move per frame are accumulated per session (`LocalCounters`) and added to the
//! shared counters once per batch, so the hot path does not bounce a shared cache line per
//! message between cores.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use stomp_codec::Command;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// Why a message did not reach a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The subscriber's outbox or prefetch window was full.
    SlowConsumer,
    /// A queue-mode destination was over `max_pending` or its share of the queues' bytes.
    QueueFull,
    /// All queues together were over `max_pending_total_bytes`: the least recently used lost
    /// their oldest messages.
    Evicted,
    /// A queue idle for `idle_expiry_ms` was forgotten with its messages.
    Expired,
}

impl DropReason {
    const ALL: [DropReason; 4] = [
        DropReason::SlowConsumer,
        DropReason::QueueFull,
        DropReason::Evicted,
        DropReason::Expired,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::QueueFull => "queue_full",
            DropReason::Evicted => "evicted",
            DropReason::Expired => "expired",
        }
    }
}

/// Why a connection was closed by the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// A protocol error (ERROR frame sent).
    ProtocolError,
    /// No heart-beat from the client within the negotiated interval plus grace.
    HeartbeatTimeout,
    /// The slow-consumer policy disconnected it.
    SlowConsumer,
    /// A write did not complete within `write_timeout_ms`.
    WriteTimeout,
    /// No CONNECT frame within `connect_timeout_ms`.
    ConnectTimeout,
    /// Credentials refused.
    AuthFailed,
    /// Credentials refused without being checked: over a failure budget, or password
    /// verification busy.
    AuthThrottled,
    /// The connection's token expired.
    TokenExpired,
    /// A SUBSCRIBE or SEND the access rules refuse.
    AccessDenied,
    /// Over the inbound rate with `rate_limit.policy = "error"`.
    RateLimited,
    /// Nothing received for `server.idle_timeout_ms`.
    IdleTimeout,
    /// A frame not completed within `stomp.frame_timeout_ms`.
    FrameTimeout,
}

impl CloseReason {
    const ALL: [CloseReason; 12] = [
        CloseReason::ProtocolError,
        CloseReason::HeartbeatTimeout,
        CloseReason::SlowConsumer,
        CloseReason::WriteTimeout,
        CloseReason::ConnectTimeout,
        CloseReason::AuthFailed,
        CloseReason::AuthThrottled,
        CloseReason::TokenExpired,
        CloseReason::AccessDenied,
        CloseReason::RateLimited,
        CloseReason::IdleTimeout,
        CloseReason::FrameTimeout,
    ];

    fn label(self) -> &'static str {
        match self {
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::AuthFailed => "auth_failed",
            CloseReason::AuthThrottled => "auth_throttled",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::AccessDenied => "access_denied",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::FrameTimeout => "frame_timeout",
        }
    }
}

/// Why a connection was refused before it became a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` reached.
    Limit,
    /// `server.max_connections_per_ip` reached.
    PerIp,
    /// The handshake's `Origin` is not allowed.
    Origin,
    /// The TLS handshake failed or timed out.
    TlsHandshake,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::Limit,
        Refusal::PerIp,
        Refusal::Origin,
        Refusal::TlsHandshake,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::Limit => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
            Refusal::Origin => "origin",
            Refusal::TlsHandshake => "tls_handshake",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// Every metric the broker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open connections (after the WebSocket or TCP accept).
    pub connections: Gauge,
    connections_total: [Counter; 3],
    /// Live subscriptions.
    pub subscriptions: Gauge,
    frames_in: Vec<Counter>,
    frames_out: Vec<Counter>,
    /// Messages accepted from SEND (or the API) for routing.
    pub published: Counter,
    /// Deliveries handed to subscribers' outboxes.
    pub delivered: Counter,
    dropped: Vec<Counter>,
    closed: Vec<Counter>,
    /// Bytes read from clients.
    pub bytes_in: Counter,
    /// Bytes written to clients.
    pub bytes_out: Counter,
    /// Messages waiting in queue-mode destinations.
    pub queued: Gauge,
    /// Bytes charged to queues.
    pub queued_bytes: Gauge,
    /// Queue-mode destinations that exist.
    pub queue_destinations: Gauge,
    /// Destinations with a history.
    pub history_destinations: Gauge,
    /// Bytes held by sessions (transactions, application messages).
    pub session_held_bytes: Gauge,
    /// SENDs to application destinations that no route handles.
    pub app_unhandled: Counter,
    /// Application messages refused because the connection's handler queue was full.
    pub app_overflow: Counter,
    refused: Vec<Counter>,
    denied: [Counter; 2],
    cluster_errors: Counter,
    cluster_dropped: Counter,
    /// 1 while the cluster's links to Redis are up (0 when degraded or not clustered).
    pub cluster_up: Gauge,
    /// Bytes waiting to go to Redis (the cluster backlog).
    pub cluster_backlog_bytes: Gauge,
    history_messages: Gauge,
    history_bytes: Gauge,
    history_evicted: Counter,
    history_evicted_seen: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// Registers the count of argon2 password verifications run (kept by the authenticator).
    pub fn register_password_checks(
        &mut self,
        checks: prometheus_client::metrics::counter::Counter,
    ) {
        self.registry.register(
            "auth_password_checks",
            "Password verifications (argon2 hashes) run",
            checks,
        );
    }

    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stompbox");
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let conn_family = Family::<TransportLabel, Counter>::default();
        registry.register(
            "connections_accepted",
            "Connections accepted, by transport",
            conn_family.clone(),
        );
        let connections_total = ["websocket", "tcp", "sockjs"].map(|t| {
            conn_family
                .get_or_create(&TransportLabel { transport: t })
                .clone()
        });
        let subscriptions = Gauge::default();
        registry.register("subscriptions", "Live subscriptions", subscriptions.clone());
        let fin = Family::<CommandLabel, Counter>::default();
        registry.register(
            "frames_received",
            "STOMP frames received, by command",
            fin.clone(),
        );
        let fout = Family::<CommandLabel, Counter>::default();
        registry.register("frames_sent", "STOMP frames sent, by command", fout.clone());
        let per_command = |f: &Family<CommandLabel, Counter>| {
            Command::ALL
                .iter()
                .map(|c| {
                    f.get_or_create(&CommandLabel {
                        command: c.as_str(),
                    })
                    .clone()
                })
                .collect::<Vec<_>>()
        };
        let frames_in = per_command(&fin);
        let frames_out = per_command(&fout);
        let published = Counter::default();
        registry.register(
            "messages_published",
            "Messages published to broker destinations",
            published.clone(),
        );
        let delivered = Counter::default();
        registry.register(
            "messages_delivered",
            "Message deliveries queued to subscribers",
            delivered.clone(),
        );
        let drop_family = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "messages_dropped",
            "Deliveries dropped, by reason",
            drop_family.clone(),
        );
        let dropped = DropReason::ALL
            .iter()
            .map(|r| {
                drop_family
                    .get_or_create(&ReasonLabel { reason: r.label() })
                    .clone()
            })
            .collect();
        let close_family = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "disconnects",
            "Connections closed by the broker, by reason (slow_consumer counts slow-consumer disconnects)",
            close_family.clone(),
        );
        let closed = CloseReason::ALL
            .iter()
            .map(|r| {
                close_family
                    .get_or_create(&ReasonLabel { reason: r.label() })
                    .clone()
            })
            .collect();
        let bytes_in = Counter::default();
        registry.register(
            "received_bytes",
            "Bytes received from clients",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register("sent_bytes", "Bytes sent to clients", bytes_out.clone());
        let queued = Gauge::default();
        registry.register(
            "queued_messages",
            "Messages waiting in queue-mode destinations",
            queued.clone(),
        );
        let queued_bytes = Gauge::default();
        registry.register(
            "queued_bytes",
            "Bytes charged to queue-mode destinations: waiting messages at the size they pin, and each queue's overhead (bounded by broker.max_pending_total_bytes)",
            queued_bytes.clone(),
        );
        let queue_destinations = Gauge::default();
        registry.register(
            "queue_destinations",
            "Queue-mode destinations that exist (forgotten when idle, see broker.idle_expiry_ms)",
            queue_destinations.clone(),
        );
        let history_destinations = Gauge::default();
        registry.register(
            "history_destinations",
            "Destinations with a history or retained value",
            history_destinations.clone(),
        );
        let session_held_bytes = Gauge::default();
        registry.register(
            "session_held_bytes",
            "Bytes connections hold in open transactions and application messages waiting for their handler (bounded by broker.sessions_max_bytes)",
            session_held_bytes.clone(),
        );
        let app_unhandled = Counter::default();
        registry.register(
            "app_unhandled",
            "SENDs to application destinations no route handles",
            app_unhandled.clone(),
        );
        let app_overflow = Counter::default();
        registry.register(
            "app_overflow",
            "Application messages refused: the connection's handler queue was full",
            app_overflow.clone(),
        );
        let refused_family = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections refused before a session started, by reason",
            refused_family.clone(),
        );
        let refused = Refusal::ALL
            .iter()
            .map(|r| {
                refused_family
                    .get_or_create(&ReasonLabel { reason: r.label() })
                    .clone()
            })
            .collect();
        let denied_family = Family::<ActionLabel, Counter>::default();
        registry.register(
            "access_denied",
            "SUBSCRIBE and SEND frames refused by the access rules, by action",
            denied_family.clone(),
        );
        let denied = [
            crate::access::Action::Subscribe,
            crate::access::Action::Publish,
        ]
        .map(|a| {
            denied_family
                .get_or_create(&ActionLabel { action: a.as_str() })
                .clone()
        });
        let cluster_errors = Counter::default();
        registry.register(
            "cluster_errors",
            "Failures talking to Redis (connects, publishes, reads)",
            cluster_errors.clone(),
        );
        let cluster_dropped = Counter::default();
        registry.register(
            "cluster_dropped",
            "Messages not sent to other nodes (Redis unreachable and the backlog full)",
            cluster_dropped.clone(),
        );
        let cluster_up = Gauge::default();
        registry.register(
            "cluster_up",
            "1 while the links to Redis are up",
            cluster_up.clone(),
        );
        let cluster_backlog_bytes = Gauge::default();
        registry.register(
            "cluster_backlog_bytes",
            "Bytes waiting to go to Redis (bounded by cluster.max_backlog_bytes)",
            cluster_backlog_bytes.clone(),
        );
        let history_messages = Gauge::default();
        registry.register(
            "history_messages",
            "Messages held in destination histories (and retained values)",
            history_messages.clone(),
        );
        let history_bytes = Gauge::default();
        registry.register(
            "history_bytes",
            "Bytes held in destination histories (bounded by broker.history_max_bytes)",
            history_bytes.clone(),
        );
        let history_evicted = Counter::default();
        registry.register(
            "history_evicted",
            "Messages dropped from histories by their count, age or the total byte bound",
            history_evicted.clone(),
        );
        Self {
            history_messages,
            history_bytes,
            history_evicted,
            history_evicted_seen: std::sync::atomic::AtomicU64::new(0),
            cluster_errors,
            cluster_dropped,
            cluster_up,
            cluster_backlog_bytes,
            refused,
            denied,
            app_unhandled,
            app_overflow,
            registry,
            connections,
            connections_total,
            subscriptions,
            frames_in,
            frames_out,
            published,
            delivered,
            dropped,
            closed,
            bytes_in,
            bytes_out,
            queued,
            queued_bytes,
            queue_destinations,
            history_destinations,
            session_held_bytes,
        }
    }

    /// Brings the history figures up to date (called before rendering).
    pub fn history(&self, t: &crate::history::Totals) {
        use std::sync::atomic::Ordering::Relaxed;
        self.history_messages.set(t.messages.load(Relaxed) as i64);
        self.history_bytes.set(t.budget.used() as i64);
        let evicted = t.evicted.load(Relaxed);
        let seen = self.history_evicted_seen.swap(evicted, Relaxed);
        self.history_evicted.inc_by(evicted.saturating_sub(seen));
    }

    /// Counts a failure talking to Redis.
    pub fn cluster_error(&self) {
        self.cluster_errors.inc();
    }

    /// Counts messages that did not reach other nodes.
    pub fn cluster_dropped(&self, n: u64) {
        self.cluster_dropped.inc_by(n);
    }

    /// Counts a refused connection.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    /// Counts a refused SUBSCRIBE or SEND.
    pub fn denied(&self, action: crate::access::Action) {
        self.denied[action as usize].inc();
    }

    /// Counts an accepted connection by transport (`websocket`, `tcp`, `sockjs`).
    pub fn accepted(&self, transport: &str) {
        let i = match transport {
            "websocket" => 0,
            "tcp" => 1,
            _ => 2,
        };
        self.connections_total[i].inc();
    }

    /// Counts dropped deliveries.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.dropped[reason as usize].inc_by(n);
        }
    }

    /// Counts a broker-initiated close.
    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].inc();
    }

    /// The current values in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn command_index(c: Command) -> usize {
    Command::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

/// A session's private tally, added to the shared counters by `flush`.
#[derive(Debug, Default)]
pub struct LocalCounters {
    frames_in: [u64; 15],
    frames_out: [u64; 15],
    bytes_in: u64,
    bytes_out: u64,
    published: u64,
    delivered: u64,
    dirty: bool,
}

impl LocalCounters {
    /// One frame received.
    pub fn frame_in(&mut self, c: Command) {
        self.frames_in[command_index(c)] += 1;
        self.dirty = true;
    }

    /// Frames received since the last flush (for the rate limit's before/after difference).
    pub fn frames_in_total(&self) -> u64 {
        self.frames_in.iter().sum()
    }

    /// One frame sent.
    pub fn frame_out(&mut self, c: Command) {
        self.frames_out[command_index(c)] += 1;
        self.dirty = true;
    }

    /// Bytes received.
    pub fn bytes_in(&mut self, n: usize) {
        self.bytes_in += n as u64;
        self.dirty = true;
    }

    /// Bytes sent.
    pub fn bytes_out(&mut self, n: usize) {
        self.bytes_out += n as u64;
        self.dirty = true;
    }

    /// One message published, delivered to `delivered` subscribers.
    pub fn published(&mut self, delivered: usize) {
        self.published += 1;
        self.delivered += delivered as u64;
        self.dirty = true;
    }

    /// Whether anything was counted since the last flush.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Adds the tally to `m` and resets it.
    pub fn flush(&mut self, m: &Metrics) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if self.published > 0 {
            m.published.inc_by(std::mem::take(&mut self.published));
        }
        if self.delivered > 0 {
            m.delivered.inc_by(std::mem::take(&mut self.delivered));
        }
        for (i, n) in self.frames_in.iter_mut().enumerate() {
            if *n > 0 {
                m.frames_in[i].inc_by(*n);
                *n = 0;
            }
        }
        for (i, n) in self.frames_out.iter_mut().enumerate() {
            if *n > 0 {
                m.frames_out[i].inc_by(*n);
                *n = 0;
            }
        }
        if self.bytes_in > 0 {
            m.bytes_in.inc_by(std::mem::take(&mut self.bytes_in));
        }
        if self.bytes_out > 0 {
            m.bytes_out.inc_by(std::mem::take(&mut self.bytes_out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        let mut local = LocalCounters::default();
        local.frame_in(Command::Send);
        local.frame_out(Command::Message);
        local.flush(&m);
        m.dropped(DropReason::SlowConsumer, 2);
        let text = m.render();
        assert!(
            text.contains("stompbox_frames_received_total{command=\"SEND\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stompbox_frames_sent_total{command=\"MESSAGE\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stompbox_messages_dropped_total{reason=\"slow_consumer\"} 2"),
            "{text}"
        );
    }
}

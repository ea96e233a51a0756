//! The broker's configuration: the TOML schema, its documented defaults, and validation.
//!
//! Every section is `deny_unknown_fields`, so a typo in `broker.toml` is an error with a line and
//! column instead of a silently ignored setting. Every field has a default, and `broker.toml` at
//! the repository root documents each one; `stompbox print-config` prints that file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::pattern::{Pattern, PatternError};

mod auth_limits;
pub use auth_limits::{ThrottleConfig, VerifyConfig};

/// The documented default configuration, embedded so `stompbox print-config` can print it.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../broker.toml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema; the text carries line and column.
    #[error("{0}")]
    Parse(String),
    /// The values parsed but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, connection limits and timeouts.
    pub server: ServerConfig,
    /// WebSocket transport settings.
    pub websocket: WebSocketConfig,
    /// Plain HTTP settings of the listener.
    pub http: HttpConfig,
    /// STOMP protocol limits and heart-beats.
    pub stomp: StompConfig,
    /// The bounds of each connection's outgoing queue.
    pub outbox: OutboxConfig,
    /// Which destinations the broker serves and its default policies.
    pub broker: BrokerConfig,
    /// Per-destination settings, matched by pattern; the first matching entry wins.
    pub destinations: Vec<DestinationRule>,
    /// Application destinations (`/app`): routes to handlers.
    pub app: AppConfig,
    /// User destinations (`/user`).
    pub user: UserConfig,
    /// Who may connect, and as whom.
    pub auth: AuthConfig,
    /// Who may subscribe to and publish on which destinations.
    pub access: AccessConfig,
    /// Inbound rate limit per connection.
    pub rate_limit: RateLimitConfig,
    /// TLS for the listeners; absent means plain TCP.
    pub tls: Option<TlsConfig>,
    /// The SockJS endpoint.
    pub sockjs: SockJsConfig,
    /// Several nodes as one broker over Redis; absent means a single node.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: nodes share pub/sub, user destinations and queues through Redis.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port/db`, or `rediss://` for TLS; a password may sit in the URL.
    pub redis: String,
    /// Environment variable holding the Redis password (kept out of the file).
    #[serde(default)]
    pub password_env: Option<String>,
    /// For `rediss://`: a PEM file of the CA that signed Redis's certificate, instead of the
    /// system's trusted roots (a private CA).
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// This node's name in message ids and stream consumer groups; empty = random.
    #[serde(default)]
    pub node_id: String,
    /// Prefix of every Redis key and channel, so clusters can share a Redis.
    #[serde(default = "default_channel_prefix")]
    pub channel_prefix: String,
    /// Messages waiting to go to Redis (while it is slow or down); beyond, new ones are
    /// dropped for other nodes (local delivery goes on) and counted.
    #[serde(default = "default_cluster_backlog")]
    pub max_backlog: usize,
    /// The same backlog bounded in bytes (each message at the size it pins: its encoded
    /// form, its Redis key and a fixed overhead).
    #[serde(default = "default_cluster_backlog_bytes")]
    pub max_backlog_bytes: usize,
    /// Connections this node opens to Redis, whatever clients do: one for pub/sub, one for
    /// commands, the rest read history and queue streams (each covers many streams).
    #[serde(default = "default_redis_connections")]
    pub redis_connections: usize,
    /// Per-destination keys (queue and history streams, presence hashes) expire after this
    /// long without use: no write, and no node following or serving them.
    #[serde(default = "default_key_ttl_ms")]
    pub key_ttl_ms: u64,
    /// Longest wait between reconnection attempts (the backoff starts at 50 ms).
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// A queue message handed to a node that has not been acknowledged for this long is
    /// taken over by another node with consumers (the first node died, or its consumer
    /// did not ack).
    #[serde(default = "default_claim_idle_ms")]
    pub claim_idle_ms: u64,
}

fn default_channel_prefix() -> String {
    "stompbox".to_owned()
}

fn default_cluster_backlog() -> usize {
    10_000
}

fn default_cluster_backlog_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_redis_connections() -> usize {
    4
}

fn default_key_ttl_ms() -> u64 {
    86_400_000
}

fn default_reconnect_max_ms() -> u64 {
    5_000
}

fn default_claim_idle_ms() -> u64 {
    30_000
}

/// `[sockjs]`: the SockJS endpoint for `withSockJS()` front ends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SockJsConfig {
    /// Serve SockJS.
    pub enabled: bool,
    /// Its path; empty means the WebSocket endpoint's (`server.websocket_path`).
    pub path: String,
    /// SockJS heartbeat (`h`) after this much outbound silence, when no STOMP heart-beats
    /// were negotiated.
    pub heartbeat_ms: u64,
    /// A session without a receiving request for this long is closed.
    pub disconnect_delay_ms: u64,
    /// A streaming response (xhr_streaming, eventsource, htmlfile) ends after this many
    /// bytes and the client opens a new one.
    pub streaming_bytes_limit: usize,
    /// Largest `xhr_send` body; 0 means 6 × `stomp.max_frame_size` + 1 KiB (JSON escaping
    /// can make a frame up to six times longer).
    pub max_send_size: usize,
    /// The sockjs-client script `iframe.html` loads (iframe-based transports).
    pub client_library_url: String,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: String::new(),
            heartbeat_ms: 25_000,
            disconnect_delay_ms: 5_000,
            streaming_bytes_limit: 128 * 1024,
            max_send_size: 0,
            client_library_url: "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"
                .to_owned(),
        }
    }
}

impl SockJsConfig {
    /// The endpoint's path, or `None` when SockJS is off.
    pub fn effective_path<'a>(&'a self, server: &'a ServerConfig) -> Option<&'a str> {
        if !self.enabled {
            return None;
        }
        Some(if self.path.is_empty() {
            server.websocket_path.as_str()
        } else {
            self.path.as_str()
        })
    }

    /// The effective `xhr_send` body limit.
    pub fn effective_max_send_size(&self, stomp: &StompConfig) -> usize {
        if self.max_send_size == 0 {
            stomp.max_frame_size.saturating_mul(6).saturating_add(1024)
        } else {
            self.max_send_size
        }
    }
}

/// `[access]`: authorization rules.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// What an action no rule decides gets.
    pub default: AccessDefault,
    /// Rules by destination pattern; for each action the first matching rule listing it wins.
    pub rules: Vec<AccessRule>,
}

/// `[access] default`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessDefault {
    /// Allowed (as Spring's simple broker without Spring Security).
    #[default]
    Allow,
    /// Refused: only what a rule allows is possible.
    Deny,
}

/// `[[access.rules]]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Destination pattern (`*`, `**`, `{name}`).
    pub pattern: String,
    /// Who may subscribe; absent leaves subscribing to later rules.
    pub subscribe: Option<Vec<String>>,
    /// Who may publish (SEND); absent leaves publishing to later rules.
    pub publish: Option<Vec<String>>,
}

/// `[rate_limit]`: a token bucket per connection over inbound frames and bytes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained inbound frames per second (heart-beats excluded); 0 means no limit.
    pub messages_per_sec: u32,
    /// Sustained inbound bytes per second; 0 means no limit.
    pub bytes_per_sec: u64,
    /// Bucket size, in seconds of the sustained rate: how large a burst may be.
    pub burst_secs: u32,
    /// What exceeding it does.
    pub policy: RatePolicy,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            messages_per_sec: 0,
            bytes_per_sec: 0,
            burst_secs: 2,
            policy: RatePolicy::Delay,
        }
    }
}

/// What happens to a connection over its inbound rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RatePolicy {
    /// Stop reading from it until it is back within its rate (TCP pushes back on the client).
    #[default]
    Delay,
    /// ERROR "rate limit exceeded", then close.
    Error,
}

/// `[tls]`: certificate and key (PEM files), reloaded on SIGHUP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert_file: std::path::PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
    /// Serve the HTTP listener (WebSocket, /healthz, /metrics) as HTTPS (wss://).
    #[serde(default = "yes")]
    pub websocket: bool,
    /// Serve the raw STOMP listener over TLS.
    #[serde(default = "yes")]
    pub tcp: bool,
}

fn yes() -> bool {
    true
}

/// `[app]`: destinations handled by application code instead of the broker.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Prefixes of application destinations (Spring's `setApplicationDestinationPrefixes`).
    pub prefixes: Vec<String>,
    /// A SEND to an application destination with no handler: `"drop"` (Spring's behaviour,
    /// counted and logged) or `"error"` (ERROR frame and close).
    pub unhandled: Unhandled,
    /// Where handler and backend errors go, relative to the sender's user destinations
    /// (the sender subscribes to `/user/queue/errors`).
    pub errors_destination: String,
    /// Time an HTTP backend has to answer.
    pub backend_timeout_ms: u64,
    /// Application messages of one connection waiting for their handler; beyond it the sender
    /// gets an error on its errors destination.
    pub max_pending: usize,
    /// Bytes those waiting messages may hold (headers and body), likewise.
    pub max_pending_bytes: usize,
    /// Routes declared in the configuration.
    pub routes: Vec<AppRoute>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            prefixes: vec!["/app".to_owned()],
            unhandled: Unhandled::Drop,
            errors_destination: "/queue/errors".to_owned(),
            backend_timeout_ms: 5_000,
            max_pending: 64,
            max_pending_bytes: 1024 * 1024,
            routes: Vec::new(),
        }
    }
}

/// What happens to a SEND to an application destination that no route handles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unhandled {
    /// Drop it (counted in `/metrics`, logged at debug).
    #[default]
    Drop,
    /// Answer ERROR and close.
    Error,
}

/// Which frame a route answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteOn {
    /// SEND (Spring's `@MessageMapping`).
    #[default]
    Send,
    /// SUBSCRIBE: the reply goes to that subscriber once (Spring's `@SubscribeMapping`).
    Subscribe,
}

/// One `[[app.routes]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoute {
    /// The application destination, with `{name}` captures: `/app/chat/{room}`.
    pub destination: String,
    /// SEND (default) or SUBSCRIBE.
    #[serde(default)]
    pub on: RouteOn,
    /// Publish the message, unchanged, to this destination (captures substituted).
    #[serde(default)]
    pub send_to: Option<String>,
    /// POST the message as JSON to this HTTP URL; the response lists messages to publish.
    #[serde(default)]
    pub forward: Option<String>,
}

/// `[user]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    /// Prefix of user destinations (Spring's `setUserDestinationPrefix`).
    pub prefix: String,
}

impl Default for UserConfig {
    fn default() -> Self {
        Self {
            prefix: "/user".to_owned(),
        }
    }
}

/// `[auth]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether clients without credentials may connect (they get a per-session identity).
    pub allow_anonymous: bool,
    /// Static users.
    pub users: Vec<StaticUser>,
    /// JSON Web Tokens.
    pub jwt: Option<JwtConfig>,
    /// `[auth.verify]`: password verification's concurrency, queue and memory.
    pub verify: VerifyConfig,
    /// `[auth.throttle]`: failed password logins per address and per user name.
    pub throttle: ThrottleConfig,
    /// What credentials get when there is no credential store (no users, no JWT) and
    /// anonymous access is allowed.
    pub unverifiable_credentials: UnverifiableCredentials,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            users: Vec::new(),
            jwt: None,
            verify: VerifyConfig::default(),
            throttle: ThrottleConfig::default(),
            unverifiable_credentials: UnverifiableCredentials::Ignore,
        }
    }
}

/// `[auth] unverifiable_credentials`: credentials sent to a broker that has nothing to check
/// them against. Stock clients send them anyway (stomp.js's guide, guest/guest), and Spring's
/// simple broker ignores them; refusing them breaks those setups for no security gain, since
/// the same client without credentials is let in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnverifiableCredentials {
    /// Not checked: the session is anonymous, whatever `login` says.
    #[default]
    Ignore,
    /// Refused with ERROR "authentication failed".
    Refuse,
}

/// One `[[auth.users]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticUser {
    /// The login, which becomes the user name.
    pub name: String,
    /// An argon2 PHC string from `stompbox hash-password`.
    pub password_hash: String,
    /// Roles, for authorization rules.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl std::fmt::Debug for StaticUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticUser")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("roles", &self.roles)
            .finish()
    }
}

/// `[auth.jwt]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `"HS256"`, `"RS256"` or `"ES256"`.
    pub algorithm: String,
    /// HS256: the environment variable holding the shared secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// HS256: a file holding the shared secret (trailing whitespace ignored), e.g. a mounted
    /// Kubernetes secret. Used when `secret_env` is not set.
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    /// RS256/ES256: a PEM file with the public key.
    #[serde(default)]
    pub public_key_file: Option<std::path::PathBuf>,
    /// The claim that becomes the user name.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// A claim holding a list of roles, if any.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Required `iss`, if set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default)]
    pub leeway_secs: u64,
}

fn default_user_claim() -> String {
    "sub".to_owned()
}

/// `[server]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The HTTP listener: WebSocket endpoint, `/healthz` and `/metrics`.
    pub websocket: SocketAddr,
    /// The path of the WebSocket endpoint.
    pub websocket_path: String,
    /// Raw STOMP over TCP; absent means off.
    pub tcp: Option<SocketAddr>,
    /// Connections accepted at once, over all listeners; further connections are refused.
    pub max_connections: usize,
    /// Time allowed for the HTTP request line and headers of the WebSocket handshake.
    pub handshake_timeout_ms: u64,
    /// Time allowed between the connection opening and a complete CONNECT frame.
    pub connect_timeout_ms: u64,
    /// Time a single write to a client may block before the client is dropped.
    pub write_timeout_ms: u64,
    /// How long a shutdown waits for sessions to flush and close before exiting anyway.
    pub shutdown_grace_ms: u64,
    /// Connections accepted at once from one IP address; 0 means no limit beyond
    /// `max_connections`.
    pub max_connections_per_ip: usize,
    /// A connection that has sent nothing at all (not even a heart-beat) for this long is
    /// closed with ERROR; 0 means never. Applies whatever heart-beats were negotiated.
    pub idle_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            websocket: SocketAddr::from(([127, 0, 0, 1], 8080)),
            websocket_path: "/ws".to_owned(),
            tcp: None,
            max_connections: 100_000,
            handshake_timeout_ms: 10_000,
            connect_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            shutdown_grace_ms: 5_000,
            max_connections_per_ip: 0,
            idle_timeout_ms: 0,
        }
    }
}

/// `[http]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve the files in this directory at `/` (an app's web page); absent = off. No
    /// directory listings; `index.html` for directories; nothing outside the directory.
    pub static_dir: Option<std::path::PathBuf>,
}

/// `[websocket]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Largest single WebSocket message accepted; 0 means `stomp.max_frame_size` + 1 KiB.
    /// A STOMP frame may still span several WebSocket messages (stomp.js `splitLargeFrames`).
    pub max_message_size: usize,
    /// Initial read buffer per connection. Small keeps idle connections cheap.
    pub read_buffer_size: usize,
    /// Browser origins allowed to open a WebSocket besides the broker's own (an `Origin`
    /// whose host and port are the request's `Host`). `*` wildcards: `https://*.example.com`,
    /// `http://localhost:*`, or `*` for any.
    pub allowed_origins: Vec<String>,
    /// Whether a handshake without `Origin` (a non-browser client) is accepted.
    pub allow_missing_origin: bool,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_message_size: 0,
            read_buffer_size: 2048,
            allowed_origins: Vec::new(),
            allow_missing_origin: true,
        }
    }
}

impl WebSocketConfig {
    /// The effective WebSocket message limit.
    pub fn effective_max_message_size(&self, stomp: &StompConfig) -> usize {
        if self.max_message_size == 0 {
            stomp.max_frame_size.saturating_add(1024)
        } else {
            self.max_message_size
        }
    }
}

/// `[stomp]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StompConfig {
    /// Largest STOMP frame (command, headers, body), whole or assembled from pieces.
    pub max_frame_size: usize,
    /// Most header lines in one frame.
    pub max_header_lines: usize,
    /// Longest header line, in bytes.
    pub max_header_line_len: usize,
    /// Heart-beat floor `[send, receive]` in milliseconds: the shortest intervals the broker
    /// accepts, answered in CONNECTED, so a client gets the interval it asks for or this one
    /// when it asks for less (STOMP's max() rule); 0 disables a side.
    pub heartbeat: [u64; 2],
    /// Extra time, beyond the negotiated interval, before a silent client is disconnected;
    /// never more than the interval itself (so a 1 s client is dropped after 2 s of silence).
    pub heartbeat_grace_ms: u64,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Unacknowledged deliveries per subscription when SUBSCRIBE names no `prefetch-count`,
    /// and the upper bound of any `prefetch-count`.
    pub max_unacked: u32,
    /// Open transactions one connection may hold.
    pub max_transactions: usize,
    /// Frames (SEND, ACK, NACK) one transaction may hold.
    pub max_transaction_frames: usize,
    /// Bytes all open transactions of one connection may hold together, each frame charged
    /// at its real size (command, headers and body).
    pub max_transaction_bytes: usize,
    /// Bytes of messages one connection may hold unsettled: delivered and waiting for its
    /// ACK, or handed to it by a queue and not yet written. Past it, deliveries that need it
    /// wait (queues) or count as slow-consumer drops (broadcast).
    pub max_unacked_bytes: usize,
    /// Time a frame may take from its first byte to its last; a client that starts a frame
    /// and trickles the rest gets ERROR. 0 means no limit.
    pub frame_timeout_ms: u64,
    /// Longest destination (pattern or not) a frame may carry, in bytes; a longer one gets
    /// ERROR. With `max_destination_segments` it bounds what routing and matching one
    /// destination against one wildcard subscription can cost.
    pub max_destination_length: usize,
    /// Most segments in a destination, counted as the matcher splits it: separators + 1 (so
    /// `/topic/a/b` has 4).
    pub max_destination_segments: usize,
}

impl Default for StompConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 65_536,
            max_header_lines: 64,
            max_header_line_len: 8_192,
            heartbeat: [1_000, 1_000],
            heartbeat_grace_ms: 5_000,
            max_subscriptions: 1_000,
            max_unacked: 1_000,
            max_transactions: 16,
            max_transaction_frames: 1_000,
            max_transaction_bytes: 2 * 1024 * 1024,
            max_unacked_bytes: 2 * 1024 * 1024,
            frame_timeout_ms: 60_000,
            max_destination_length: 1_024,
            max_destination_segments: 32,
        }
    }
}

/// `[outbox]`: each connection's queue of frames waiting to be written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Frames queued per connection before the slow-consumer policy applies.
    pub max_messages: usize,
    /// Bytes queued per connection before the slow-consumer policy applies.
    pub max_bytes: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_messages: 1_024,
            max_bytes: 2 * 1024 * 1024,
        }
    }
}

/// What happens to a message for a subscriber whose outbox is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumerPolicy {
    /// Drop the message for that subscriber only, and count it.
    #[default]
    Drop,
    /// Send ERROR "slow consumer" and close that subscriber's connection.
    Disconnect,
}

/// How a destination distributes messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationMode {
    /// Every matching subscription gets every message (Spring's simple broker).
    #[default]
    Broadcast,
    /// Competing consumers: each message goes to one subscriber, round robin, and waits in the
    /// queue while no subscriber is connected.
    Queue,
}

/// `[broker]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Destination prefixes served by the broker (plain prefix match, as Spring's
    /// `enableSimpleBroker`).
    pub prefixes: Vec<String>,
    /// The separator of destination segments for patterns: "/" or ".".
    pub path_separator: String,
    /// Default slow-consumer policy for destinations that do not set one.
    pub slow_consumer: SlowConsumerPolicy,
    /// Default bound of messages held by a queue-mode destination.
    pub max_pending: usize,
    /// Bound of messages held by all queue-mode destinations together.
    pub max_pending_total: usize,
    /// Bytes all queue-mode destinations may hold together (messages at the size they pin,
    /// and each queue's own overhead). Past it the least recently used queues lose their
    /// oldest messages first.
    pub max_pending_total_bytes: usize,
    /// Bytes all destinations' histories may hold together. Past it the least recently used
    /// destinations lose their oldest messages first.
    pub history_max_bytes: usize,
    /// The most one destination may hold of `max_pending_total_bytes` and of
    /// `history_max_bytes`, in percent (past it, it drops its own oldest messages).
    pub max_share_percent: u8,
    /// The most one connection's published messages may hold of each, in percent (past it,
    /// its SENDs there are refused). Above `max_share_percent`, so a client publishing to one
    /// destination meets that destination's share (which drops the oldest) first.
    pub max_client_share_percent: u8,
    /// A queue or history that nobody consumes and nobody publishes to for this long is
    /// forgotten with what it holds (counted as dropped, `reason="expired"`).
    pub idle_expiry_ms: u64,
    /// Bytes all connections together may hold in open transactions and application messages
    /// waiting for their handler. Past it such frames are refused as at a connection's own
    /// limit, except for a connection that holds none yet (its first one always fits).
    pub sessions_max_bytes: usize,
}

impl BrokerConfig {
    /// `max_share_percent` of `total`: what one destination may hold.
    pub fn share_of(&self, total: usize) -> usize {
        (total / 100).saturating_mul(usize::from(self.max_share_percent))
    }

    /// `max_client_share_percent` of `total`: what one connection's messages may hold.
    pub fn client_share_of(&self, total: usize) -> usize {
        (total / 100).saturating_mul(usize::from(self.max_client_share_percent))
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            prefixes: vec!["/topic".to_owned(), "/queue".to_owned()],
            path_separator: "/".to_owned(),
            slow_consumer: SlowConsumerPolicy::Drop,
            max_pending: 10_000,
            max_pending_total: 1_000_000,
            max_pending_total_bytes: 64 * 1024 * 1024,
            history_max_bytes: 64 * 1024 * 1024,
            max_share_percent: 25,
            max_client_share_percent: 50,
            idle_expiry_ms: 86_400_000,
            sessions_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One `[[destinations]]` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRule {
    /// Ant-style pattern of the destinations this rule covers.
    pub pattern: String,
    /// Broadcast (default) or queue.
    #[serde(default)]
    pub mode: DestinationMode,
    /// Overrides `[broker] slow_consumer`.
    #[serde(default)]
    pub slow_consumer: Option<SlowConsumerPolicy>,
    /// Overrides `[broker] max_pending` (queue mode).
    #[serde(default)]
    pub max_pending: Option<usize>,
    /// Messages kept per destination for subscribers that resume (`resume-from`); 0: none.
    #[serde(default)]
    pub history: usize,
    /// Age limit of kept messages (milliseconds); 0: none.
    #[serde(default)]
    pub history_ttl_ms: u64,
    /// A new subscriber immediately gets the destination's latest message.
    #[serde(default)]
    pub retain_last: bool,
    /// Who is subscribed, as a snapshot and join/leave events on `<destination>/presence`.
    #[serde(default)]
    pub presence: bool,
}

impl Config {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse(msg) => ConfigError::Parse(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Things worth knowing about a valid configuration (printed by `check-config`).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.cluster.is_some() {
            if self
                .destinations
                .iter()
                .any(|d| d.mode == DestinationMode::Queue)
            {
                notes.push(
                    "cluster: queue destinations live in Redis streams; each one keeps about max_pending messages (Redis trims approximately, oldest first, uncounted), and broker.max_pending_total bounds only what a node holds for its own consumers; a queue stream nobody consumes expires, undelivered messages included, cluster.key_ttl_ms after its last SEND".to_owned(),
                );
                notes.push(
                    "cluster: queue delivery is at-least-once: a message a node took but did not see acknowledged within cluster.claim_idle_ms is delivered again elsewhere".to_owned(),
                );
            }
            if self
                .destinations
                .iter()
                .any(|d| d.history > 0 || d.retain_last || d.presence)
            {
                notes.push(
                    "cluster: history and presence live in Redis streams and hashes; a SUBSCRIBE to such a destination waits for the node to load the stream (its RECEIPT comes once it is served); a history or retained value nobody publishes to or follows expires after cluster.key_ttl_ms".to_owned(),
                );
            }
            if self.sockjs.enabled {
                notes.push(
                    "cluster: SockJS HTTP transports need the load balancer to keep a client on one node (sticky by client address); its websocket transport does not".to_owned(),
                );
            }
        }
        notes
    }

    /// Checks what serde cannot: relations between values and pattern syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !self.server.websocket_path.starts_with('/') {
            return invalid("server.websocket_path must start with '/'".into());
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections must be at least 1".into());
        }
        if self.stomp.max_frame_size < 256 {
            return invalid("stomp.max_frame_size must be at least 256 bytes".into());
        }
        if self.stomp.max_header_lines == 0 || self.stomp.max_header_line_len < 64 {
            return invalid(
                "stomp.max_header_lines must be at least 1 and stomp.max_header_line_len at least 64"
                    .into(),
            );
        }
        if self.stomp.max_unacked == 0 {
            return invalid("stomp.max_unacked must be at least 1".into());
        }
        // stomp.max_unacked_bytes, max_transaction_bytes and app.max_pending_bytes may be below
        // max_frame_size: an empty budget always takes one item, so one frame always fits.
        if !(1..=100).contains(&self.broker.max_share_percent)
            || !(1..=100).contains(&self.broker.max_client_share_percent)
        {
            return invalid(
                "broker.max_share_percent and broker.max_client_share_percent must be between 1 and 100"
                    .into(),
            );
        }
        if self.broker.idle_expiry_ms < 1_000 {
            return invalid("broker.idle_expiry_ms must be at least 1000".into());
        }
        if self.broker.sessions_max_bytes < self.stomp.max_transaction_bytes {
            return invalid(
                "broker.sessions_max_bytes must be at least stomp.max_transaction_bytes".into(),
            );
        }
        if self.outbox.max_messages == 0 || self.outbox.max_bytes < self.stomp.max_frame_size {
            return invalid(
                "outbox.max_messages must be at least 1 and outbox.max_bytes at least stomp.max_frame_size"
                    .into(),
            );
        }
        if self.websocket.read_buffer_size < 256 {
            return invalid("websocket.read_buffer_size must be at least 256".into());
        }
        let sep = self.separator()?;
        self.validate_destination_limits()?;
        if self.broker.prefixes.is_empty() {
            return invalid("broker.prefixes must name at least one prefix".into());
        }
        for p in &self.broker.prefixes {
            if !p.starts_with('/') {
                return invalid(format!("broker prefix {p:?} must start with '/'"));
            }
        }
        for (i, rule) in self.destinations.iter().enumerate() {
            if let Err(e) = Pattern::parse(&rule.pattern, sep) {
                return invalid(format!("destinations[{i}].pattern {:?}: {e}", rule.pattern));
            }
            let keeps = rule.history > 0 || rule.history_ttl_ms > 0 || rule.retain_last;
            if rule.mode == DestinationMode::Queue && (keeps || rule.presence) {
                return invalid(format!(
                    "destinations[{i}]: history, retain_last and presence are for broadcast destinations, not queues"
                ));
            }
            if rule.history_ttl_ms > 0 && rule.history == 0 {
                return invalid(format!(
                    "destinations[{i}]: history_ttl_ms needs history (the number of messages to keep)"
                ));
            }
            if !self
                .broker
                .prefixes
                .iter()
                .any(|p| rule.pattern.starts_with(p.as_str()))
            {
                return invalid(format!(
                    "destinations[{i}].pattern {:?} is outside every broker prefix {:?}",
                    rule.pattern, self.broker.prefixes
                ));
            }
        }
        for p in &self.app.prefixes {
            if !p.starts_with('/') {
                return invalid(format!("app prefix {p:?} must start with '/'"));
            }
        }
        if !self.user.prefix.starts_with('/') || self.user.prefix.len() < 2 {
            return invalid("user.prefix must start with '/' and name something".into());
        }
        for (i, route) in self.app.routes.iter().enumerate() {
            if !self
                .app
                .prefixes
                .iter()
                .any(|p| route.destination.starts_with(p.as_str()))
            {
                return invalid(format!(
                    "app.routes[{i}].destination {:?} is outside every app prefix {:?}",
                    route.destination, self.app.prefixes
                ));
            }
            match (&route.send_to, &route.forward) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return invalid(format!(
                        "app.routes[{i}] needs exactly one of send_to or forward"
                    ));
                }
            }
            let lookup = self
                .app
                .prefixes
                .iter()
                .find_map(|p| route.destination.strip_prefix(p.as_str()))
                .unwrap_or(&route.destination);
            if let Err(e) = crate::app::RoutePath::parse(lookup) {
                return invalid(format!("app.routes[{i}]: {e}"));
            }
            if route.on == RouteOn::Subscribe && route.send_to.is_some() {
                return invalid(format!(
                    "app.routes[{i}]: a subscribe route answers the subscriber, so it needs forward"
                ));
            }
            if let Some(url) = &route.forward
                && !url.starts_with("http://")
            {
                return invalid(format!("app.routes[{i}].forward must be an http:// URL"));
            }
        }
        if let Err(e) = crate::access::Access::from_config(&self.access, sep) {
            return invalid(e.to_string());
        }
        for o in &self.websocket.allowed_origins {
            if o != "*" && !o.contains("://") {
                return invalid(format!(
                    "websocket.allowed_origins: {o:?} must be \"*\" or scheme://host[:port]"
                ));
            }
        }
        if self.sockjs.enabled {
            let p = self.sockjs.effective_path(&self.server).unwrap_or_default();
            if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') {
                return invalid(format!(
                    "sockjs.path {p:?} must start with '/', name something and not end with '/'"
                ));
            }
            if self.sockjs.heartbeat_ms == 0 || self.sockjs.disconnect_delay_ms == 0 {
                return invalid(
                    "sockjs.heartbeat_ms and sockjs.disconnect_delay_ms must be above 0".into(),
                );
            }
            if self.sockjs.streaming_bytes_limit < 1024 {
                return invalid("sockjs.streaming_bytes_limit must be at least 1024".into());
            }
        }
        if let Some(c) = &self.cluster {
            if !(c.redis.starts_with("redis://") || c.redis.starts_with("rediss://")) {
                return invalid("cluster.redis must be a redis:// or rediss:// URL".into());
            }
            if c.max_backlog == 0 || c.claim_idle_ms == 0 || c.reconnect_max_ms == 0 {
                return invalid(
                    "cluster.max_backlog, cluster.claim_idle_ms and cluster.reconnect_max_ms must be above 0"
                        .into(),
                );
            }
            if c.max_backlog_bytes < 2 * self.stomp.max_frame_size {
                return invalid(
                    "cluster.max_backlog_bytes must be at least twice stomp.max_frame_size (a message must fit)"
                        .into(),
                );
            }
            if !(4..=64).contains(&c.redis_connections) {
                return invalid("cluster.redis_connections must be between 4 and 64".into());
            }
            if c.key_ttl_ms < 5_000 {
                return invalid(
                    "cluster.key_ttl_ms must be at least 5000 (presence is re-asserted every 2 s)"
                        .into(),
                );
            }
            if let Some(rule) = self
                .destinations
                .iter()
                .find(|r| r.history_ttl_ms > c.key_ttl_ms)
            {
                return invalid(format!(
                    "cluster.key_ttl_ms must be at least every history_ttl_ms ({} for {:?})",
                    rule.history_ttl_ms, rule.pattern
                ));
            }
            if c.channel_prefix.is_empty()
                || c.node_id.len() > 32
                || c.node_id.contains([' ', '\n', ':'])
            {
                return invalid(
                    "cluster.channel_prefix must not be empty, and cluster.node_id has no spaces or ':'"
                        .into(),
                );
            }
        }
        if self.rate_limit.burst_secs == 0 {
            return invalid("rate_limit.burst_secs must be at least 1".into());
        }
        auth_limits::validate(&self.auth).map_err(ConfigError::Invalid)?;
        if let Some(jwt) = &self.auth.jwt {
            match jwt.algorithm.as_str() {
                "HS256" if jwt.secret_env.is_some() || jwt.secret_file.is_some() => {}
                "RS256" | "ES256" if jwt.public_key_file.is_some() => {}
                "HS256" => {
                    return invalid("auth.jwt: HS256 needs secret_env or secret_file".into());
                }
                "RS256" | "ES256" => {
                    return invalid(format!("auth.jwt: {} needs public_key_file", jwt.algorithm));
                }
                other => {
                    return invalid(format!(
                        "auth.jwt.algorithm must be HS256, RS256 or ES256, not {other:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The pattern segment separator as a byte.
    pub fn separator(&self) -> Result<u8, ConfigError> {
        match self.broker.path_separator.as_str() {
            "/" => Ok(b'/'),
            "." => Ok(b'.'),
            other => Err(ConfigError::Invalid(format!(
                "broker.path_separator must be \"/\" or \".\", not {other:?}"
            ))),
        }
    }

    /// The size limits on destinations (see `pattern::Limits`).
    pub fn destination_limits(&self) -> crate::pattern::Limits {
        crate::pattern::Limits {
            max_length: self.stomp.max_destination_length,
            max_segments: self.stomp.max_destination_segments,
            separator: self.separator().unwrap_or(b'/'),
        }
    }

    /// The limits themselves, and every configured pattern within them (a rule that no
    /// client destination could ever reach is a mistake worth reporting).
    fn validate_destination_limits(&self) -> Result<(), ConfigError> {
        if self.stomp.max_destination_length < 16 || self.stomp.max_destination_segments < 2 {
            return Err(ConfigError::Invalid(
                "stomp.max_destination_length must be at least 16 and stomp.max_destination_segments at least 2".into(),
            ));
        }
        let limits = self.destination_limits();
        let destinations = self
            .destinations
            .iter()
            .map(|r| ("destinations", &r.pattern));
        let access = self
            .access
            .rules
            .iter()
            .map(|r| ("access.rules", &r.pattern));
        for (table, pattern) in destinations.chain(access) {
            if let Err(e) = limits.check(pattern) {
                return Err(ConfigError::Invalid(format!(
                    "{table} pattern {pattern:?}: {e} (stomp.max_destination_length / max_destination_segments)"
                )));
            }
        }
        Ok(())
    }

    /// Milliseconds to a `Duration`, for the `*_ms` settings.
    pub fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

impl From<PatternError> for ConfigError {
    fn from(e: PatternError) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_parse_and_match_the_code() {
        let from_file = Config::from_toml(DEFAULT_CONFIG_TOML).expect("broker.toml is valid");
        let builtin = Config::default();
        assert_eq!(from_file.server.websocket, builtin.server.websocket);
        assert_eq!(
            from_file.server.websocket_path,
            builtin.server.websocket_path
        );
        assert_eq!(from_file.stomp.max_frame_size, builtin.stomp.max_frame_size);
        assert_eq!(from_file.stomp.heartbeat, builtin.stomp.heartbeat);
        assert_eq!(from_file.outbox.max_bytes, builtin.outbox.max_bytes);
        assert_eq!(from_file.broker.prefixes, builtin.broker.prefixes);
        // Every setting, not just those above: broker.toml documents the code's defaults.
        assert_eq!(format!("{from_file:#?}"), format!("{builtin:#?}"));
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let err = Config::from_toml("[server]\nwebsockett = \"127.0.0.1:1\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("websockett"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn cluster_bounds_are_checked() {
        let cluster = |extra: &str| {
            Config::from_toml(&format!(
                "[[destinations]]\npattern = \"/topic/log/*\"\nhistory = 5\nhistory_ttl_ms = 60000\n\n\
                 [cluster]\nredis = \"redis://127.0.0.1:1\"\n{extra}"
            ))
        };
        let c = cluster("").unwrap().cluster.unwrap();
        assert_eq!(
            (c.redis_connections, c.key_ttl_ms, c.max_backlog_bytes),
            (4, 86_400_000, 16 << 20)
        );
        for (extra, says) in [
            ("redis_connections = 3\n", "redis_connections"),
            ("key_ttl_ms = 1000\n", "key_ttl_ms"),
            ("key_ttl_ms = 30000\n", "history_ttl_ms"),
            ("max_backlog_bytes = 65536\n", "max_backlog_bytes"),
        ] {
            let err = cluster(extra).unwrap_err().to_string();
            assert!(err.contains(says), "{extra}: {err}");
        }
    }

    #[test]
    fn bad_patterns_are_rejected() {
        let err =
            Config::from_toml("[[destinations]]\npattern = \"/queue/a**b\"\nmode = \"queue\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("destinations[0]"), "{err}");
    }

    #[test]
    fn patterns_over_the_destination_limits_are_rejected() {
        let deep = format!("/topic{}", "/**".repeat(32));
        let err =
            Config::from_toml(&format!("[[access.rules]]\npattern = \"{deep}\"\n")).unwrap_err();
        assert!(err.to_string().contains("access.rules"), "{err}");
        let err = Config::from_toml("[stomp]\nmax_destination_segments = 1\n").unwrap_err();
        assert!(
            err.to_string().contains("max_destination_segments"),
            "{err}"
        );
    }
}

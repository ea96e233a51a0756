//! Protocol errors and the ERROR frames they become.
//!
//! Each variant has a short summary (the ERROR frame's `message` header) and a detail (its
//! body). Texts are written for the application developer reading them in a browser console;
//! they name the limit or header involved and never expose internals.

use stomp_codec::{Command, DecodeError};

use crate::pattern::LimitError;

/// Something the client did that ends its connection with an ERROR frame.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes were not a valid frame.
    #[error("{0}")]
    Malformed(#[from] DecodeError),
    /// The first frame was not CONNECT or STOMP.
    #[error("the first frame must be CONNECT or STOMP, not {0}")]
    NotConnected(&'static str),
    /// A second CONNECT.
    #[error("this connection is already connected")]
    AlreadyConnected,
    /// A server-only command sent by the client.
    #[error("{0} is a server frame and cannot be sent by a client")]
    ServerCommand(&'static str),
    /// No common protocol version.
    #[error("supported protocol versions are 1.0, 1.1 and 1.2")]
    UnsupportedVersion,
    /// A required header is missing.
    #[error("{command} requires a '{header}' header")]
    MissingHeader {
        /// The frame's command.
        command: &'static str,
        /// The missing header.
        header: &'static str,
    },
    /// A header has a value the broker cannot use.
    #[error("invalid '{header}' header: {detail}")]
    InvalidHeader {
        /// The header.
        header: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No broker prefix serves the destination.
    #[error(
        "destination '{destination}' is not served; destinations must start with one of: {prefixes}"
    )]
    UnservedDestination {
        /// The destination.
        destination: String,
        /// The served prefixes.
        prefixes: String,
    },
    /// The subscription id is already in use on this connection.
    #[error("subscription id '{0}' is already in use on this connection")]
    DuplicateSubscription(String),
    /// Too many subscriptions.
    #[error("a connection may hold at most {limit} subscriptions")]
    TooManySubscriptions {
        /// The limit.
        limit: usize,
    },
    /// Wildcards on a queue-mode destination.
    #[error("queue destination '{0}' cannot be subscribed with a wildcard")]
    WildcardQueue(String),
    /// A transaction id already open.
    #[error("transaction '{0}' is already open")]
    DuplicateTransaction(String),
    /// A transaction id not open.
    #[error("transaction '{0}' is not open")]
    UnknownTransaction(String),
    /// Too many open transactions.
    #[error("a connection may hold at most {limit} open transactions")]
    TooManyTransactions {
        /// The limit.
        limit: usize,
    },
    /// A transaction holding too much.
    #[error("transaction '{tx}' exceeds its limit of {limit}")]
    TransactionTooLarge {
        /// The transaction.
        tx: String,
        /// The limit, with its unit.
        limit: String,
    },
    /// The client stopped sending heart-beats.
    #[error("no heart-beat or frame received within {0} ms")]
    HeartbeatTimeout(u128),
    /// CONNECT did not arrive in time.
    #[error("no CONNECT frame within {0} ms")]
    ConnectTimeout(u128),
    /// The client cannot keep up with its subscriptions.
    #[error("the client did not read its messages fast enough and was disconnected")]
    SlowConsumer,
    /// A WebSocket message over the limit.
    #[error("WebSocket message exceeds the maximum size of {0} bytes")]
    MessageTooLarge(usize),
    /// A WebSocket text message that is not UTF-8 (RFC 6455 §8.1): a client sending a binary
    /// body in text mode (stomp.py's WebSocket transport does).
    #[error(
        "a WebSocket text message was not valid UTF-8; send frames with binary bodies as binary WebSocket messages"
    )]
    InvalidText,
    /// Credentials missing or wrong; deliberately vague.
    #[error("the credentials were not accepted")]
    AuthenticationFailed,
    /// The token the connection authenticated with has expired.
    #[error("the token this connection authenticated with has expired; reconnect with a fresh one")]
    TokenExpired,
    /// Not allowed to subscribe or send there.
    #[error("{0}")]
    AccessDenied(String),
    /// An application destination with no route, when `[app] unhandled = "error"`.
    #[error("no application handler for '{0}'")]
    Unhandled(String),
    /// Over the inbound rate limit, with `rate_limit.policy = "error"`.
    #[error("this connection sent faster than its allowed rate")]
    RateLimited,
    /// Nothing received at all for the idle timeout.
    #[error("nothing received for {0} ms")]
    IdleTimeout(u128),
    /// A destination over `stomp.max_destination_length` or `max_destination_segments`.
    #[error("{0}")]
    DestinationLimit(#[from] crate::pattern::LimitError),
    /// A frame started but not finished in time.
    #[error("a frame was not completed within {0} ms of its first byte")]
    FrameTimeout(u128),
    /// The connection's published messages already hold its share of queue or history
    /// storage (`[broker] max_share_percent`).
    #[error(
        "this connection's messages already hold their share of {what} ({limit} bytes, broker.max_client_share_percent); let consumers catch up"
    )]
    StorageShare {
        /// "queues" or "histories".
        what: &'static str,
        /// The share, in bytes.
        limit: usize,
    },
}

impl ProtocolError {
    /// The short text for the ERROR frame's `message` header.
    pub fn summary(&self) -> &'static str {
        use ProtocolError::*;
        match self {
            Malformed(DecodeError::FrameTooLarge { .. }) => "frame too large",
            Malformed(DecodeError::BodyTooLarge { .. }) => "body too large",
            Malformed(DecodeError::TooManyHeaders { .. }) => "too many headers",
            Malformed(DecodeError::HeaderLineTooLong { .. }) => "header line too long",
            Malformed(DecodeError::UnknownCommand) => "unknown command",
            Malformed(_) => "malformed frame",
            NotConnected(_) => "not connected",
            AlreadyConnected => "already connected",
            ServerCommand(_) => "unknown command",
            UnsupportedVersion => "unsupported protocol version",
            MissingHeader { .. } => "missing header",
            InvalidHeader { .. } => "invalid header",
            UnservedDestination { .. } => "unknown destination",
            DuplicateSubscription(_) => "duplicate subscription id",
            TooManySubscriptions { .. } => "too many subscriptions",
            WildcardQueue(_) => "invalid subscription",
            DuplicateTransaction(_) | UnknownTransaction(_) => "invalid transaction",
            TooManyTransactions { .. } | TransactionTooLarge { .. } => "transaction limit exceeded",
            HeartbeatTimeout(_) => "heart-beat timeout",
            ConnectTimeout(_) => "connect timeout",
            SlowConsumer => "slow consumer",
            MessageTooLarge(_) => "message too large",
            InvalidText => "invalid UTF-8 in text message",
            AuthenticationFailed => "authentication failed",
            TokenExpired => "token expired",
            AccessDenied(_) => "access denied",
            Unhandled(_) => "no handler",
            RateLimited => "rate limit exceeded",
            IdleTimeout(_) => "idle timeout",
            FrameTimeout(_) => "frame timeout",
            StorageShare { .. } => "storage share exceeded",
            DestinationLimit(LimitError::TooLong { .. }) => "destination too long",
            DestinationLimit(LimitError::TooManySegments { .. }) => "too many destination segments",
        }
    }

    /// How the close is counted in /metrics.
    pub fn close_reason(&self) -> crate::metrics::CloseReason {
        use crate::metrics::CloseReason;
        match self {
            ProtocolError::AccessDenied(_) => CloseReason::AccessDenied,
            ProtocolError::RateLimited => CloseReason::RateLimited,
            _ => CloseReason::ProtocolError,
        }
    }

    /// Builds the detail for a missing header.
    pub fn missing(command: Command, header: &'static str) -> Self {
        ProtocolError::MissingHeader {
            command: command.as_str(),
            header,
        }
    }

    /// Builds the detail for an unusable header value.
    pub fn invalid(header: &'static str, detail: impl Into<String>) -> Self {
        ProtocolError::InvalidHeader {
            header,
            detail: detail.into(),
        }
    }
}

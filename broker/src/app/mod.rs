//! Application destinations: Spring's `@MessageMapping` / `@SendTo` / `@SendToUser` /
//! `@SubscribeMapping` model for Stompbox.
//!
//! A SEND to `/app/x` goes to the route for `x`, never straight to subscribers. Routes come from
//! three places, all with `{name}` captures:
//! 1. Rust handlers registered on an [`AppRouter`] when embedding the broker (axum style:
//!    `AppRouter::new().route("/chat/{room}", handler)`);
//! 2. `[[app.routes]]` with `send_to`, which republishes the message;
//! 3. `[[app.routes]]` with `forward`, which POSTs it to an HTTP backend (see `backend`).
//!
//! Handlers run on a per-connection worker task, in the order the connection sent the
//! messages, so a slow handler or backend delays only that connection's later application
//! messages, never its reads, writes or subscriptions.

mod backend;
mod path;
mod reply;
pub(crate) mod worker;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use stomp_codec::Headers;

use crate::broker::{Broker, Owner, PublishError};
use crate::config::{Config, RouteOn};

pub use backend::Backend;
pub use path::{Captures, RoutePath, RoutePathError};
pub use reply::{IntoReply, Payload, Reply};

/// A message sent to an application destination, as a handler sees it.
#[derive(Clone, Debug)]
pub struct AppMessage {
    /// The full destination, e.g. `/app/chat/lobby`.
    pub destination: String,
    /// The destination without its application prefix, e.g. `/chat/lobby`.
    pub path: String,
    /// Values of the route's `{name}` captures.
    pub captures: Captures,
    /// The frame's headers.
    pub headers: Headers,
    /// The frame's body.
    pub body: Bytes,
    /// The sending session's id (the CONNECTED `session` header).
    pub session: String,
    /// The authenticated user, if any.
    pub user: Option<String>,
}

impl AppMessage {
    /// The value of a capture.
    pub fn capture(&self, name: &str) -> Option<&str> {
        self.captures
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// What a handler can do besides returning a reply: publish, address users, answer the
/// sender.
///
/// It acts for the sender: `publish` and `send_to_user` (and the replies a handler returns,
/// which go through them) pass the access rules as the sender's own SEND to that destination
/// would, and presence companions are refused, so a route cannot be used to write where its
/// sender may not (a `send_to` template filled from the sender's captures, the default
/// `/topic{path}` reply). For the application's own publishing, on no client's behalf, use
/// [`AppContext::broker`].
#[derive(Clone)]
pub struct AppContext {
    broker: Arc<Broker>,
    identity: OwnerName,
    /// Who the access rules see: the sender's identity; `None` when anonymous (or when there
    /// are no rules).
    principal: Option<Arc<crate::auth::Identity>>,
    /// The sender's shares of queue and history storage, which what the route publishes
    /// counts against as the sender's own SENDs do.
    shares: Option<crate::broker::Shares>,
}

/// An owned [`Owner`]: who the sender is, for replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OwnerName {
    /// An authenticated user.
    User(Arc<str>),
    /// An anonymous session.
    Session(Arc<str>),
}

impl OwnerName {
    /// Borrowed form.
    pub(crate) fn as_owner(&self) -> Owner<'_> {
        match self {
            OwnerName::User(n) => Owner::User(n),
            OwnerName::Session(n) => Owner::Session(n),
        }
    }
}

impl std::fmt::Debug for AppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext")
            .field("identity", &self.identity)
            .finish()
    }
}

impl AppContext {
    pub(crate) fn new(
        broker: Arc<Broker>,
        identity: OwnerName,
        principal: Option<Arc<crate::auth::Identity>>,
        shares: Option<crate::broker::Shares>,
    ) -> Self {
        Self {
            broker,
            identity,
            principal,
            shares,
        }
    }

    /// Whether the sender may write to `destination` (the rules as for its own SEND, and
    /// never to a presence companion, which the broker alone writes).
    fn check(&self, destination: &str) -> Result<(), PublishError> {
        let b = &self.broker;
        let companion = b.presence_base(destination).is_some();
        if companion
            || !b.access.allows(
                crate::access::Action::Publish,
                destination,
                self.principal.as_deref(),
            )
        {
            b.metrics.denied(crate::access::Action::Publish);
            return Err(PublishError::Denied(destination.to_owned()));
        }
        Ok(())
    }

    /// Publishes to a broker destination (`/topic/x`) or a user destination
    /// (`/user/{name}/queue/x`), like Spring's `convertAndSend`.
    pub fn publish(
        &self,
        destination: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), PublishError> {
        self.check(destination)?;
        let p = payload.into();
        self.broker
            .publish_as(destination, &p.headers(), p.body, self.shares.as_ref())
            .map(drop)
    }

    /// Sends to every session of `user`, at its `/user{destination}` (e.g. `"/queue/x"`), like
    /// Spring's `convertAndSendToUser`.
    pub fn send_to_user(
        &self,
        user: &str,
        destination: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), PublishError> {
        let shown = format!(
            "{}/{}{destination}",
            self.broker.router.user_prefix(),
            user.replace('/', "%2F")
        );
        self.check(&shown)?;
        let p = payload.into();
        self.broker
            .publish_to_user(user, destination, &p.headers(), p.body)
            .map(drop)
    }

    /// Sends to the sender's `/user{destination}` (Spring's `@SendToUser`). Works for anonymous
    /// senders too: they have a per-session identity.
    pub fn reply_to_sender(
        &self,
        destination: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), PublishError> {
        let p = payload.into();
        self.broker
            .publish_to_owner(self.identity.as_owner(), destination, &p.headers(), p.body)
            .map(drop)
    }

    /// The broker, for anything else.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// An application handler. Implemented for every `async fn(AppMessage, AppContext) -> R` where
/// `R: IntoReply`.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message.
    fn call(&self, msg: AppMessage, ctx: AppContext) -> HandlerFuture;
}

impl<F, Fut, R> Handler for F
where
    F: Fn(AppMessage, AppContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    fn call(&self, msg: AppMessage, ctx: AppContext) -> HandlerFuture {
        let fut = self(msg, ctx);
        Box::pin(async move { fut.await.into_reply() })
    }
}

/// What a route does.
#[derive(Clone)]
pub(crate) enum Target {
    /// Republish to this destination template.
    SendTo(String),
    /// POST to this URL.
    Forward(String),
    /// Call Rust code.
    Rust(Arc<dyn Handler>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::SendTo(t) => write!(f, "SendTo({t})"),
            Target::Forward(u) => write!(f, "Forward({u})"),
            Target::Rust(_) => f.write_str("Rust"),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    path: RoutePath,
    on: RouteOn,
    target: Target,
}

/// The application routes, built once at start-up.
#[derive(Clone, Debug, Default)]
pub struct AppRouter {
    entries: Vec<Entry>,
}

impl AppRouter {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes SENDs to `/app{path}` to `handler` (`@MessageMapping`). The path is relative to
    /// the application prefix: `"/chat/{room}"`.
    ///
    /// # Panics
    /// When `path` is malformed, so mistakes show at start-up.
    #[track_caller]
    pub fn route(self, path: &str, handler: impl Handler) -> Self {
        self.add(path, RouteOn::Send, Target::Rust(Arc::new(handler)))
    }

    /// Answers SUBSCRIBEs to `/app{path}` once, to the subscriber only (`@SubscribeMapping`).
    ///
    /// # Panics
    /// When `path` is malformed.
    #[track_caller]
    pub fn subscribe(self, path: &str, handler: impl Handler) -> Self {
        self.add(path, RouteOn::Subscribe, Target::Rust(Arc::new(handler)))
    }

    #[track_caller]
    fn add(mut self, path: &str, on: RouteOn, target: Target) -> Self {
        let path = match RoutePath::parse(path) {
            Ok(p) => p,
            Err(e) => panic!("invalid application route: {e}"),
        };
        self.entries.push(Entry { path, on, target });
        self
    }

    /// Adds the `[[app.routes]]` of a configuration after the routes already present.
    pub(crate) fn with_config_routes(mut self, config: &Config) -> Result<Self, RoutePathError> {
        for route in &config.app.routes {
            let lookup = config
                .app
                .prefixes
                .iter()
                .find_map(|p| route.destination.strip_prefix(p.as_str()))
                .unwrap_or(&route.destination);
            let target = match (&route.send_to, &route.forward) {
                (Some(t), _) => Target::SendTo(t.clone()),
                (None, Some(url)) => Target::Forward(url.clone()),
                (None, None) => continue,
            };
            self.entries.push(Entry {
                path: RoutePath::parse(lookup)?,
                on: route.on,
                target,
            });
        }
        Ok(self)
    }

    /// The first route for `on` matching `lookup`.
    pub(crate) fn find(&self, on: RouteOn, lookup: &str) -> Option<(Target, Captures)> {
        self.entries
            .iter()
            .filter(|e| e.on == on)
            .find_map(|e| e.path.matches(lookup).map(|c| (e.target.clone(), c)))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

//! What the session does with each client frame. Synchronous: it routes, publishes, updates
//! subscriptions and queues replies in `Session::pending`; the I/O loop writes them.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use stomp_codec::{Command, Delivery as WireDelivery, Frame, Headers, Version};

use super::catchup::presence_join;
use super::error::ProtocolError;
use super::heartbeat;
use super::subscriptions::{AckMode, CatchingUp, Source, Subscription, Unacked, take_acked};
use super::{End, Session};
use tracing::debug;

use crate::access::Action;
use crate::app::worker::{AppJob, Worker};
use crate::app::{AppMessage, OwnerName, Payload, Target};
use crate::auth::Identity;
use crate::broker::{split_user, user_key};
use crate::config::{DestinationMode, RouteOn, Unhandled};
use crate::outbox::{Delivery, Mark, Outbound};
use crate::pattern::{Pattern, is_pattern};
use crate::registry::{Credit, Subscriber};
use crate::router::Route;
use crate::wire::WireFrame;

/// The longest subscription id: ids are held for the subscription's life and written into
/// every MESSAGE (stomp.js uses `sub-0`, `sub-1`, ...), so they count towards what each
/// subscription costs.
pub(super) const MAX_SUBSCRIPTION_ID: usize = 256;

/// The server name in CONNECTED.
const SERVER: &str = concat!("stompbox/", env!("CARGO_PKG_VERSION"));

type Result<T = ()> = std::result::Result<T, ProtocolError>;

impl Session {
    /// Handles one frame, then answers its `receipt` (looked up once by the caller, which
    /// also needs it for an ERROR).
    pub(super) fn handle(&mut self, frame: Frame, receipt: Option<Bytes>) -> Result {
        self.receipt_deferred = false;
        if !self.connected {
            return Err(ProtocolError::NotConnected(frame.command.as_str()));
        }
        match frame.command {
            Command::Connect | Command::Stomp => return Err(ProtocolError::AlreadyConnected),
            Command::Send => self.on_send(frame)?,
            Command::Subscribe => self.on_subscribe(&frame)?,
            Command::Unsubscribe => self.on_unsubscribe(&frame)?,
            Command::Ack | Command::Nack => self.on_ack_or_nack(frame)?,
            Command::Begin => self.on_begin(&frame)?,
            Command::Commit => self.on_commit(&frame)?,
            Command::Abort => self.on_abort(&frame)?,
            Command::Disconnect => {
                self.closing = Some(End::Disconnect(receipt));
                return Ok(());
            }
            c @ (Command::Connected | Command::Message | Command::Receipt | Command::Error) => {
                return Err(ProtocolError::ServerCommand(c.as_str()));
            }
        }
        if let Some(id) = receipt
            && !std::mem::take(&mut self.receipt_deferred)
        {
            // Whatever this frame routed to this very connection (a SEND to a topic it
            // subscribes to) is in the outbox now; it goes out before the receipt, so a receipt
            // means "everything this frame caused has been delivered here".
            self.take_outbox();
            self.reply(&Frame::new(Command::Receipt).header("receipt-id", id));
        }
        Ok(())
    }

    /// Completes a CONNECT whose credentials were accepted.
    pub(super) fn on_connect(&mut self, frame: &Frame, identity: Identity) -> Result {
        let h = &frame.headers;
        let version = match h.get_str("accept-version") {
            None => Version::V1_0,
            Some(list) => list
                .split(',')
                .filter_map(|v| Version::parse(v.trim()))
                .max()
                .ok_or(ProtocolError::UnsupportedVersion)?,
        };
        let client_hb = heartbeat::parse(h.get_str("heart-beat")).ok_or_else(|| {
            ProtocolError::invalid(
                "heart-beat",
                "expected two comma-separated numbers of milliseconds",
            )
        })?;
        let cfg = &self.broker.config.stomp;
        if version > Version::V1_0 {
            self.heartbeat = heartbeat::negotiate(
                client_hb,
                cfg.heartbeat,
                std::time::Duration::from_millis(cfg.heartbeat_grace_ms),
            );
        }
        self.version = version;
        self.decoder.set_version(version);
        self.connected = true;
        if let Some(user) = &identity.user {
            self.identity = OwnerName::User(Arc::from(user.as_str()));
            self.user = Some(user.clone());
            if !self.broker.access.is_open() {
                self.principal = Some(Arc::new(identity));
            }
        }
        let mut reply = Frame::new(Command::Connected).header("version", version.as_str());
        if version > Version::V1_0 {
            let [sx, sy] = cfg.heartbeat;
            reply = reply.header("heart-beat", format!("{sx},{sy}"));
        }
        reply = reply
            .header("session", self.session_id.clone())
            .header("server", SERVER);
        if let Some(user) = &self.user {
            reply = reply.header("user-name", user.clone());
        }
        self.reply(&reply);
        Ok(())
    }

    fn on_send(&mut self, frame: Frame) -> Result {
        // A cheap clone of the header's bytes, so the frame's headers can move on while the
        // destination is borrowed (no String per message).
        let dest_bytes = frame
            .headers
            .get_bytes("destination")
            .cloned()
            .ok_or(ProtocolError::missing(Command::Send, "destination"))?;
        let destination = std::str::from_utf8(&dest_bytes)
            .map_err(|_| ProtocolError::invalid("destination", "not UTF-8"))?;
        self.broker.router.check_limits(destination)?;
        // Refuse what can never be routed now, even inside a transaction.
        let route = self.broker.router.route(destination);
        match route {
            Route::Unserved => return Err(self.unserved(destination)),
            Route::User { rest } if split_user(rest).is_none() => {
                return Err(ProtocolError::invalid(
                    "destination",
                    format!(
                        "a SEND to a user destination names the user: {}/{{user}}{rest}",
                        self.broker.router.user_prefix()
                    ),
                ));
            }
            _ => {}
        }
        self.authorize(Action::Publish, destination)?;
        if self.broker.presence_base(destination).is_some() {
            return Err(ProtocolError::AccessDenied(format!(
                "'{destination}' reports presence and is written by the broker only"
            )));
        }
        if let Some(tx) = frame.headers.get_str("transaction") {
            return self.tx_send(tx, destination, &frame);
        }
        self.dispatch_send(destination, route, frame.headers, frame.body)
    }

    /// Sends to wherever `destination` routes (`route`, computed once by the caller): an
    /// application handler, a user, the broker.
    pub(super) fn dispatch_send(
        &mut self,
        destination: &str,
        route: Route<'_>,
        headers: Headers,
        body: Bytes,
    ) -> Result {
        match route {
            Route::App { lookup } => {
                let Some((target, captures)) = self.broker.app.find(RouteOn::Send, lookup) else {
                    self.broker.metrics.app_unhandled.inc();
                    debug!(destination, "no application handler; dropped");
                    return match self.broker.config.app.unhandled {
                        Unhandled::Drop => Ok(()),
                        Unhandled::Error => Err(ProtocolError::Unhandled(destination.to_owned())),
                    };
                };
                let msg = self.app_message(destination, lookup, captures, headers, body);
                self.run_handler(msg, target, None);
                Ok(())
            }
            _ => {
                // Routes were checked on arrival and do not change at run time; what can still
                // refuse it is this connection's share of queue or history storage.
                match self.broker.publish_counted(
                    route,
                    destination,
                    &headers,
                    body,
                    &mut self.counters,
                    self.shares.get_or_insert_with(|| self.broker.shares()),
                ) {
                    Err(crate::broker::PublishError::ShareExceeded(what, limit)) => {
                        Err(ProtocolError::StorageShare { what, limit })
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn app_message(
        &self,
        destination: &str,
        lookup: &str,
        captures: crate::app::Captures,
        headers: Headers,
        body: Bytes,
    ) -> (AppMessage, usize) {
        // Held until the handler runs: a compact copy, so it pins no read buffer.
        let (headers, body, size) = super::transactions::detach(&headers, &body, |_| true);
        let msg = AppMessage {
            destination: destination.to_owned(),
            path: lookup.to_owned(),
            captures,
            headers,
            body,
            session: self.session_id.clone(),
            user: self.user.clone(),
        };
        let size = size + msg.destination.len() + msg.path.len() + msg.session.len();
        (msg, size)
    }

    /// Hands a route's target to the connection's worker, which runs them in order, if the
    /// connection's waiting application messages have room for it.
    fn run_handler(
        &mut self,
        (msg, size): (AppMessage, usize),
        target: Target,
        subscription: Option<Bytes>,
    ) {
        let broker = &self.broker;
        let charge = self
            .app_budget
            .get_or_insert_with(|| broker.session_budget(broker.config.app.max_pending_bytes))
            .try_charge(size);
        let worker = self.app_worker.get_or_insert_with(|| {
            Worker::spawn(
                &self.broker,
                self.identity.clone(),
                self.principal.clone(),
                self.shares
                    .get_or_insert_with(|| self.broker.shares())
                    .clone(),
                Arc::clone(&self.outbox),
                self.version,
            )
        });
        let accepted = charge.is_some_and(|charge| {
            worker.submit(AppJob {
                msg,
                target,
                subscription,
                _charge: charge,
            })
        });
        if !accepted {
            self.broker.metrics.app_overflow.inc();
            let text = "too many application messages waiting for their handler";
            let p = Payload::from(text).header("message", text);
            let _ = self.broker.publish_to_owner(
                self.identity.as_owner(),
                &self.broker.config.app.errors_destination,
                &p.headers(),
                p.body,
            );
        }
    }

    /// The RECEIPT a frame with these headers asks for, encoded, for a join that may answer
    /// it later (once a cluster's history mirror has served it).
    fn receipt_for_later(&self, h: &Headers) -> Option<WireFrame> {
        // Held while the subscription catches up: a long id (up to a header line) is not
        // worth holding for each of a thousand subscriptions, so it is answered at once.
        h.get_bytes("receipt")
            .filter(|id| id.len() <= MAX_SUBSCRIPTION_ID)
            .map(|id| {
                let mut buf = bytes::BytesMut::new();
                stomp_codec::encode_frame(
                    &Frame::new(Command::Receipt).header("receipt-id", id.clone()),
                    self.version,
                    &mut buf,
                );
                WireFrame::new(buf.freeze(), true)
            })
    }

    /// Checks the access rules; a refusal ends the connection with ERROR "access denied".
    fn authorize(&self, action: Action, destination: &str) -> Result {
        let who = self.principal.as_deref();
        let allowed = match action {
            Action::Subscribe => self.broker.may_subscribe(destination, who),
            Action::Publish => self.broker.access.allows(action, destination, who),
        };
        if allowed {
            return Ok(());
        }
        self.broker.metrics.denied(action);
        debug!(
            conn = self.conn,
            destination,
            action = action.as_str(),
            "access denied"
        );
        let verb = match action {
            Action::Subscribe => "subscribe to",
            Action::Publish => "send to",
        };
        Err(ProtocolError::AccessDenied(format!(
            "you may not {verb} '{destination}'"
        )))
    }

    fn unserved(&self, destination: &str) -> ProtocolError {
        ProtocolError::UnservedDestination {
            destination: destination.to_owned(),
            prefixes: self.broker.router.all_prefixes().join(", "),
        }
    }

    fn on_subscribe(&mut self, frame: &Frame) -> Result {
        let h = &frame.headers;
        let destination = h
            .get_str("destination")
            .ok_or(ProtocolError::missing(Command::Subscribe, "destination"))?
            .to_owned();
        self.broker.router.check_limits(&destination)?;
        let id = match h.get_bytes("id") {
            // A copy: a slice would pin the whole buffer the SUBSCRIBE arrived in for as long
            // as the subscription lives.
            Some(id) => Bytes::copy_from_slice(id),
            // STOMP 1.0 made the id optional; the destination then names the subscription.
            None if self.version == Version::V1_0 => Bytes::from(destination.clone()),
            None => return Err(ProtocolError::missing(Command::Subscribe, "id")),
        };
        if id.len() > MAX_SUBSCRIPTION_ID {
            return Err(ProtocolError::invalid(
                "id",
                format!("a subscription id may be at most {MAX_SUBSCRIPTION_ID} bytes"),
            ));
        }
        let ack = AckMode::parse(h.get_str("ack")).ok_or_else(|| {
            ProtocolError::invalid("ack", "expected auto, client or client-individual")
        })?;
        let max_unacked = self.broker.config.stomp.max_unacked;
        let prefetch = match h.get_str("prefetch-count") {
            None => max_unacked,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(0) => max_unacked,
                Ok(n) => n.min(max_unacked),
                Err(_) => {
                    return Err(ProtocolError::invalid(
                        "prefetch-count",
                        "expected a whole number",
                    ));
                }
            },
        };
        if self.subs.contains_id(&id) {
            return Err(ProtocolError::DuplicateSubscription(
                String::from_utf8_lossy(&id).into_owned(),
            ));
        }
        let limit = self.broker.config.stomp.max_subscriptions;
        if self.subs.len() >= limit {
            return Err(ProtocolError::TooManySubscriptions { limit });
        }
        self.authorize(Action::Subscribe, &destination)?;
        // Where the subscription lives: an application route answers once and keeps nothing;
        // a user destination is keyed by this connection's identity; the rest by destination.
        let (rule, registry_key) = match self.broker.router.route(&destination) {
            Route::App { lookup } => {
                if let Some((target, captures)) = self.broker.app.find(RouteOn::Subscribe, lookup) {
                    let msg =
                        self.app_message(&destination, lookup, captures, h.clone(), Bytes::new());
                    self.run_handler(msg, target, Some(id));
                }
                return Ok(());
            }
            Route::User { rest } => match self.broker.router.route_broker(rest) {
                Route::Broker(rule) => (rule, user_key(self.identity.as_owner(), rest)),
                _ => {
                    return Err(ProtocolError::AccessDenied(format!(
                        "subscribe to {}{{destination}} to receive your own messages; other users' destinations are private",
                        self.broker.router.user_prefix()
                    )));
                }
            },
            Route::Broker(rule) => (rule, destination.clone()),
            Route::Unserved => return Err(self.unserved(&destination)),
        };
        let user_destination = registry_key != destination;
        let key = self.subs.next_key();
        let wildcard = is_pattern(&destination);
        let mode = if user_destination {
            DestinationMode::Broadcast
        } else {
            rule.mode
        };
        let mut joined: Option<Arc<crate::history::History>> = None;
        let mut catching_up = None;
        let (source, credit) = match mode {
            DestinationMode::Queue => {
                if wildcard {
                    return Err(ProtocolError::WildcardQueue(destination));
                }
                let (conn, outbox) = (self.conn, Arc::clone(&self.outbox));
                let q = self
                    .broker
                    .queues
                    .attach(&destination, rule.max_pending, |q| {
                        q.add_consumer(conn, key, outbox, prefetch)
                    });
                self.broker.queue_consumer_added(&q);
                (Source::Queue(q), None)
            }
            DestinationMode::Broadcast => {
                let credit = (ack != AckMode::Auto).then(|| Arc::new(Credit::new(prefetch)));
                let resume = h.get_str("resume-from");
                if resume.is_some() && wildcard {
                    return Err(ProtocolError::invalid(
                        "resume-from",
                        "resuming needs an exact destination, not a pattern",
                    ));
                }
                // A presence companion is served by its own branch below, whatever rules its
                // name matches.
                let companion = !user_destination
                    && !wildcard
                    && self.broker.presence_base(&destination).is_some();
                let history = (!user_destination && !wildcard && !companion && rule.keep.any())
                    .then(|| self.broker.histories.get_or_create(&destination, rule.keep));
                // A resume where nothing is kept is a gap: the first message says so.
                let gap = resume.map(|_| Arc::new(AtomicBool::new(history.is_none())));
                let subscriber = Subscriber {
                    conn: self.conn,
                    key,
                    id: id.clone(),
                    version: self.version,
                    auto_ack: ack == AckMode::Auto,
                    credit: credit.clone(),
                    outbox: Arc::clone(&self.outbox),
                    guard: (wildcard && !user_destination && self.broker.access.guards_subscribe())
                        .then(|| {
                            self.principal
                                .clone()
                                .unwrap_or_else(|| Arc::new(Identity::default()))
                        }),
                    gap,
                };
                if wildcard {
                    let pattern = Pattern::parse(&registry_key, self.broker.router.separator())
                        .map_err(|e| ProtocolError::invalid("destination", e.to_string()))?;
                    self.broker.subscribe_pattern(pattern.clone(), subscriber);
                    (Source::Pattern(pattern), credit)
                } else if let (Some(base), Some(cluster)) = (
                    (!user_destination)
                        .then(|| self.broker.presence_base(&destination))
                        .flatten(),
                    self.broker.cluster.clone(),
                ) {
                    // In a cluster the companion is a stream retaining the latest event (with
                    // the whole list): the new watcher gets it, then every later one.
                    cluster.watch_presence(base, &destination);
                    // Before anyone has joined, a watcher gets an empty snapshot, as on a
                    // single node.
                    let empty = serde_json::json!({
                        "type": "snapshot",
                        "destination": base,
                        "members": [],
                        "anonymous": 0,
                    })
                    .to_string();
                    let companion = self.broker.histories.get_or_create_with(
                        &destination,
                        crate::history::Keep {
                            messages: 1,
                            ttl: None,
                            retain_last: true,
                        },
                        Some(empty),
                    );
                    let receipt = self.receipt_for_later(h);
                    let defer = receipt.is_some();
                    let joined_now =
                        companion.join(&self.broker, &registry_key, subscriber, None, receipt);
                    if joined_now == crate::history::Join::Pending {
                        self.receipt_deferred = defer;
                        catching_up = Some(CatchingUp::History);
                    }
                    joined = Some(companion);
                    (Source::Exact, credit)
                } else if let Some(base) = (!user_destination)
                    .then(|| self.broker.presence_base(&destination))
                    .flatten()
                {
                    // A presence companion: the snapshot first, then the changes; when the
                    // snapshot does not fit the outbox now, both wait until it does.
                    let receipt = self.receipt_for_later(h);
                    if !presence_join(&self.broker, base, &registry_key, &subscriber, &destination)
                    {
                        self.receipt_deferred = receipt.is_some();
                        catching_up = Some(CatchingUp::Presence(Box::new(
                            super::subscriptions::PresenceCatchup {
                                base: base.to_owned(),
                                subscriber,
                                receipt,
                            },
                        )));
                    }
                    (Source::Exact, credit)
                } else if let Some(history) = &history {
                    // Registered and handed what came before in one step (see `history`).
                    // In a cluster the join may wait for the destination's mirror; then the
                    // RECEIPT goes out when it is served.
                    let receipt = self.receipt_for_later(h);
                    let defer = receipt.is_some();
                    let joined_now =
                        history.join(&self.broker, &registry_key, subscriber, resume, receipt);
                    if joined_now == crate::history::Join::Pending {
                        self.receipt_deferred = defer;
                        catching_up = Some(CatchingUp::History);
                    }
                    joined = Some(Arc::clone(history));
                    (Source::Exact, credit)
                } else {
                    self.broker.subscribe_exact(&registry_key, subscriber);
                    (Source::Exact, credit)
                }
            }
        };
        let presence = matches!(source, Source::Exact)
            && !user_destination
            && rule.presence
            && self.broker.presence_base(&destination).is_none();
        if presence {
            self.broker
                .announce_presence(&destination, self.user.as_deref(), true);
        }
        let waiting = catching_up.is_some();
        self.subs.insert(Subscription {
            id,
            destination,
            registry_key,
            ack,
            source,
            credit,
            unacked: Default::default(),
            presence,
            history: joined,
            catching_up,
        });
        if waiting {
            self.catching_up.push_back(key);
        }
        self.broker.metrics.subscriptions.inc();
        Ok(())
    }

    fn on_unsubscribe(&mut self, frame: &Frame) -> Result {
        let h = &frame.headers;
        let key = match h.get("id") {
            Some(id) => self.subs.key_of(id),
            None if self.version == Version::V1_0 => match h.get_str("destination") {
                Some(d) => self.subs.key_of_destination(d),
                None => return Err(ProtocolError::missing(Command::Unsubscribe, "id")),
            },
            None => return Err(ProtocolError::missing(Command::Unsubscribe, "id")),
        };
        // Unsubscribing an unknown id is harmless and, as in Spring, not an error.
        if let Some(key) = key {
            self.drop_subscription(key);
        }
        Ok(())
    }

    /// Removes a subscription everywhere.
    fn drop_subscription(&mut self, key: u32) {
        if let Some(sub) = self.subs.remove(key) {
            if sub.catching_up.is_some() {
                self.catching_up.retain(|k| *k != key);
            }
            if let Some(CatchingUp::Presence(p)) = &sub.catching_up
                && let Some(r) = &p.receipt
            {
                // The SUBSCRIBE's RECEIPT is still owed, whatever followed it.
                let _ = self
                    .outbox
                    .push_credited(Outbound::Frame(r.clone()), r.len());
            }
            self.release_subscription(key, sub);
        }
    }

    /// Takes a subscription out of the shared registries; its unacknowledged queue messages go
    /// back to their queue.
    fn release_subscription(&self, key: u32, sub: Subscription) {
        self.broker.metrics.subscriptions.dec();
        if sub.presence {
            self.broker
                .announce_presence(&sub.destination, self.user.as_deref(), false);
        }
        if let Some(h) = &sub.history {
            h.leave(self.conn, key);
        }
        match sub.source {
            Source::Exact => self
                .broker
                .unsubscribe_exact(&sub.registry_key, self.conn, key),
            Source::Pattern(p) => self.broker.unsubscribe_pattern(&p, self.conn, key),
            Source::Queue(q) => {
                q.remove_consumer(self.conn, key);
                q.requeue(sub.unacked.into_iter().map(|u| u.msg));
                self.broker.queue_consumer_removed(&q);
                self.broker.queues.remove_if_idle(q.name());
            }
        }
    }

    fn on_ack_or_nack(&mut self, frame: Frame) -> Result {
        if let Some(tx) = frame.headers.get_str("transaction") {
            return self.tx_ack(tx, &frame);
        }
        self.apply_ack(&frame);
        Ok(())
    }

    /// Finds the delivery an ACK or NACK names: `id` in 1.2 (our `ack` header, `key-seq`),
    /// `message-id` (and `subscription` in 1.1) before.
    fn find_ack_target(&self, h: &Headers) -> Option<(u32, u64)> {
        if let Some((k, s)) = h.get_str("id").and_then(|id| id.split_once('-'))
            && let (Ok(k), Ok(s)) = (k.parse(), s.parse())
        {
            return Some((k, s));
        }
        let mid = h.get("message-id")?;
        let within = match h.get("subscription") {
            Some(sub) => Some(self.subs.key_of(sub)?),
            None => None,
        };
        self.subs.find_message(mid, within)
    }

    /// Applies an ACK or NACK. Unknown or repeated acks are ignored, as Spring and RabbitMQ do:
    /// a client acking an auto-ack message must not lose its connection over it.
    pub(super) fn apply_ack(&mut self, frame: &Frame) {
        let Some((key, seq)) = self.find_ack_target(&frame.headers) else {
            return;
        };
        let conn = self.conn;
        let Some(sub) = self.subs.get_mut(key) else {
            return;
        };
        let msgs = take_acked(sub, seq);
        if msgs.is_empty() {
            return;
        }
        // Credit and unsettled bytes came back: what waits for them may move on.
        self.pump_due = true;
        self.settled = true;
        let n = msgs.len() as u32;
        let requeue = frame.command == Command::Nack
            && frame.headers.get("requeue") != Some(b"false".as_slice());
        match &sub.source {
            Source::Queue(q) => {
                if requeue {
                    q.requeue(msgs.into_iter());
                } else {
                    for m in &msgs {
                        self.broker.queue_done(m);
                    }
                }
                q.settle(conn, key, n);
            }
            Source::Exact | Source::Pattern(_) => {
                if let Some(c) = &sub.credit {
                    c.give_back(n);
                }
            }
        }
    }

    /// Encodes a delivery that carries per-delivery state, and records it for ACK.
    pub(super) fn encode_delivery(&mut self, d: Delivery) -> Option<WireFrame> {
        let conn = self.conn;
        let version = self.version;
        let Delivery {
            key,
            msg,
            redelivered,
            queue,
            mark,
            charge,
        } = d;
        let Some(sub) = self.subs.get_mut(key) else {
            // Unsubscribed meanwhile: a queue's message goes back to the queue.
            drop(charge);
            if let Some(q) = queue {
                q.requeue(std::iter::once(msg));
            }
            return None;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut ack_buf = [0u8; 24];
        let ack_id = (sub.ack != AckMode::Auto && version == Version::V1_2)
            .then(|| format_ack_id(&mut ack_buf, key, seq));
        let extra: &[(&[u8], &[u8])] = match (redelivered, mark) {
            (true, _) => &[(b"redelivered", b"true")],
            (false, Mark::Retained) => &[(b"retained", b"true")],
            (false, Mark::Gap) => &[(b"resume-gap", b"true")],
            (false, Mark::None) => &[],
        };
        let frame = msg.encode(
            version,
            &WireDelivery {
                subscription: &sub.id,
                ack: ack_id,
                extra,
            },
        );
        if sub.ack == AckMode::Auto {
            // Settled by the write: its unsettled bytes go back before the queue looks for
            // a consumer again.
            if charge.is_some() {
                self.settled = true;
            }
            drop(charge);
            if let Some(q) = &queue {
                self.broker.queue_done(&msg);
                q.settle(conn, key, 1);
            }
        } else {
            sub.unacked.push_back(Unacked {
                seq,
                msg,
                _charge: charge,
            });
        }
        Some(frame)
    }

    /// Releases everything the session holds in shared state: subscriptions, queue consumers,
    /// unacknowledged and still-queued queue messages (which go back to their queues).
    pub(super) fn release(&mut self) {
        let subs: Vec<(u32, Subscription)> = self.subs.drain().collect();
        for (key, sub) in subs {
            self.release_subscription(key, sub);
        }
        for item in self.outbox.close() {
            if let Outbound::Deliver(Delivery {
                queue: Some(q),
                msg,
                ..
            }) = item
            {
                q.requeue(std::iter::once(msg));
            }
        }
        self.broker
            .metrics
            .queued
            .set(self.broker.queues.total_pending() as i64);
    }
}

/// Writes `key-seq` into `buf` without allocating.
fn format_ack_id(buf: &mut [u8; 24], key: u32, seq: u64) -> &[u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{key}-{seq}");
    let n = cursor.position() as usize;
    &buf[..n]
}

/// The ERROR frame for a protocol error.
pub(super) fn error_frame(e: &ProtocolError, receipt: Option<Bytes>) -> Frame {
    let mut f = Frame::new(Command::Error).header("message", e.summary());
    if matches!(e, ProtocolError::UnsupportedVersion) {
        f = f.header("version", "1.0,1.1,1.2");
    }
    if let Some(r) = receipt {
        f = f.header("receipt-id", r);
    }
    f.header("content-type", "text/plain")
        .with_body(Bytes::from(e.to_string()))
}

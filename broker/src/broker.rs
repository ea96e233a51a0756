//! The shared heart of a running broker: configuration, routing table, registries, metrics,
//! and the publish path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use stomp_codec::{Delivery as WireDelivery, Headers, Version};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DestinationMode, SlowConsumerPolicy};
use crate::message::{MessageIds, Published};
use crate::metrics::{DropReason, Metrics};
use crate::outbox::{Delivery, Outbound, PushError};
use crate::queue::Queues;
use crate::registry::{ConnId, Registry, Subscriber};
use crate::router::{Route, Router};
use crate::wire::WireFrame;

/// Why a publish was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No prefix serves the destination.
    #[error("destination {0} is not served by this broker")]
    Unserved(String),
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
    ids: MessageIds,
    next_conn: AtomicU64,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl Broker {
    /// Builds the shared state for a validated configuration.
    pub fn new(config: Config) -> Arc<Self> {
        let router = Router::new(&config);
        let registry = Registry::new(router.separator());
        Arc::new(Self {
            config: Arc::new(config),
            router,
            registry,
            queues: Queues::default(),
            metrics: Metrics::new(),
            ids: MessageIds::new(),
            next_conn: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        })
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes a message to a broker destination, as a SEND does.
    pub fn publish(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<PublishOutcome, PublishError> {
        let Route::Broker(rule) = self.router.route(destination) else {
            return Err(PublishError::Unserved(destination.to_owned()));
        };
        let id = self.ids.next();
        let msg = Arc::new(Published::from_send(destination, &id, headers, body));
        self.metrics.published.inc();
        let outcome = match rule.mode {
            DestinationMode::Queue => {
                let q = self.queues.get_or_create(destination, rule.max_pending);
                let o = q.publish(msg);
                self.metrics
                    .dropped(DropReason::QueueFull, o.dropped as u64);
                self.metrics.queued.set(self.queues.total_pending() as i64);
                PublishOutcome {
                    delivered: o.delivered,
                    dropped: o.dropped,
                }
            }
            DestinationMode::Broadcast => self.fan_out(destination, &msg, rule.slow_consumer),
        };
        self.metrics.delivered.inc_by(outcome.delivered as u64);
        Ok(outcome)
    }

    /// Hands `msg` to every matching broadcast subscription without waiting on any of them.
    fn fan_out(
        &self,
        destination: &str,
        msg: &Arc<Published>,
        policy: SlowConsumerPolicy,
    ) -> PublishOutcome {
        let mut shared = SharedFrames::default();
        let mut outcome = PublishOutcome::default();
        self.registry.for_each_match(destination, |sub| {
            let pushed = if sub.auto_ack {
                let frame = shared.get(sub, msg);
                let size = frame.len();
                sub.outbox.push(Outbound::Frame(frame), size)
            } else {
                deliver_with_credit(sub, msg)
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

fn deliver_with_credit(sub: &Subscriber, msg: &Arc<Published>) -> Result<(), PushError> {
    let credit = sub.credit.as_ref();
    if let Some(c) = credit
        && !c.try_take()
    {
        return Err(PushError::Full);
    }
    let item = Outbound::Deliver(Delivery {
        key: sub.key,
        msg: Arc::clone(msg),
        redelivered: false,
        queue: None,
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
    frames: Vec<(Version, Bytes, WireFrame)>,
}

impl SharedFrames {
    /// Beyond this many distinct encodings a linear search costs more than it saves, so later
    /// variants are encoded per delivery.
    const MAX: usize = 16;

    fn get(&mut self, sub: &Subscriber, msg: &Published) -> WireFrame {
        if let Some((_, _, f)) = self
            .frames
            .iter()
            .find(|(v, id, _)| *v == sub.version && *id == sub.id)
        {
            return f.clone();
        }
        let frame = msg.encode(
            sub.version,
            &WireDelivery {
                subscription: &sub.id,
                ..WireDelivery::default()
            },
        );
        if self.frames.len() < Self::MAX {
            self.frames
                .push((sub.version, sub.id.clone(), frame.clone()));
        }
        frame
    }
}

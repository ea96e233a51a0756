//! The per-connection application worker: runs that connection's handler calls one after the
//! other and delivers their replies.

use std::sync::Arc;

use bytes::Bytes;
use stomp_codec::{Delivery as WireDelivery, Version};
use tokio::sync::mpsc;
use tracing::debug;

use super::{AppContext, AppMessage, OwnerName, Payload, Reply, Target};
use crate::broker::Broker;
use crate::message::Published;
use crate::outbox::{Outbound, Outbox};

/// One handler call waiting for the worker.
#[derive(Debug)]
pub(crate) struct AppJob {
    /// The message.
    pub msg: AppMessage,
    /// The route's target.
    pub target: Target,
    /// For subscribe routes: the subscription id the reply carries.
    pub subscription: Option<Bytes>,
    /// Its bytes in the connection's budget for waiting application messages, released when
    /// the handler is done with it.
    pub _charge: crate::budget::Charge,
}

/// Handle to a connection's worker; dropping it ends the worker after its queue drains.
#[derive(Debug)]
pub(crate) struct Worker {
    tx: mpsc::Sender<AppJob>,
}

struct State {
    broker: Arc<Broker>,
    ctx: AppContext,
    identity: OwnerName,
    outbox: Arc<Outbox>,
    version: Version,
}

impl Worker {
    /// Starts a worker for a connection.
    pub fn spawn(
        broker: &Arc<Broker>,
        identity: OwnerName,
        principal: Option<Arc<crate::auth::Identity>>,
        shares: crate::broker::Shares,
        outbox: Arc<Outbox>,
        version: Version,
    ) -> Self {
        let (tx, rx) = mpsc::channel(broker.config.app.max_pending.max(1));
        let state = State {
            broker: Arc::clone(broker),
            ctx: AppContext::new(
                Arc::clone(broker),
                identity.clone(),
                principal,
                Some(shares),
            ),
            identity,
            outbox,
            version,
        };
        broker.tracker.spawn(run(rx, state));
        Self { tx }
    }

    /// Queues a call; false when the connection's queue is full.
    pub fn submit(&self, job: AppJob) -> bool {
        self.tx.try_send(job).is_ok()
    }
}

async fn run(mut rx: mpsc::Receiver<AppJob>, st: State) {
    while let Some(job) = rx.recv().await {
        let kind = if job.subscription.is_some() {
            "subscribe"
        } else {
            "send"
        };
        let reply = match &job.target {
            Target::Rust(h) => h.call(job.msg.clone(), st.ctx.clone()).await,
            Target::Forward(url) => match st.broker.backend.forward(url, kind, &job.msg).await {
                Ok(r) => r,
                Err(e) => Reply::Error(e),
            },
            Target::SendTo(template) => {
                let dest = super::path::fill(template, &job.msg.captures);
                Reply::To(
                    dest,
                    Payload {
                        body: job.msg.body.clone(),
                        headers: header_pairs(&job.msg),
                    },
                )
            }
        };
        st.deliver(reply, &job);
    }
}

fn header_pairs(msg: &AppMessage) -> Vec<(String, String)> {
    msg.headers
        .iter()
        .filter(|(n, _)| n.as_ref() != b"destination")
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

impl State {
    fn deliver(&self, reply: Reply, job: &AppJob) {
        let result = match reply {
            Reply::None => Ok(()),
            Reply::Many(all) => {
                for r in all {
                    self.deliver(r, job);
                }
                Ok(())
            }
            Reply::Default(p) => match &job.subscription {
                Some(sub) => {
                    self.reply_to_subscriber(&job.msg.destination, sub, p);
                    Ok(())
                }
                None => self.ctx.publish(&format!("/topic{}", job.msg.path), p),
            },
            Reply::To(dest, p) => self.ctx.publish(&dest, p),
            Reply::ToUser {
                user,
                destination,
                payload,
            } => self.ctx.send_to_user(&user, &destination, payload),
            Reply::ToSender(dest, p) => self.ctx.reply_to_sender(&dest, p),
            Reply::Error(text) => {
                debug!(identity = ?self.identity, error = %text, "application error for the sender");
                let dest = self.broker.config.app.errors_destination.clone();
                let p = Payload::from(text.clone()).header("message", text);
                self.ctx.reply_to_sender(&dest, p)
            }
        };
        if let Err(e) = result {
            // A reply to a destination nobody serves is the handler's bug: tell the sender.
            let text = e.to_string();
            let dest = self.broker.config.app.errors_destination.clone();
            let _ = self
                .ctx
                .reply_to_sender(&dest, Payload::from(text.clone()).header("message", text));
        }
    }

    /// `@SubscribeMapping`: one MESSAGE, to this subscriber only, with its subscription id.
    fn reply_to_subscriber(&self, destination: &str, sub: &Bytes, p: Payload) {
        let id = self.broker.next_message_id();
        let msg = Published::from_send(destination, &id, &p.headers(), p.body);
        let frame = msg.encode(
            self.version,
            &WireDelivery {
                subscription: sub,
                ..WireDelivery::default()
            },
        );
        let size = frame.len();
        let _ = self.outbox.push(Outbound::Frame(frame), size);
    }
}

//! Subscriptions that are handed something before the live stream (a history replay, a
//! retained value, a presence snapshot) get it flow-controlled: as much as the outbox and the
//! prefetch window take now, the rest as the client reads. The session pumps them after each
//! turn of its loop (a write drained the outbox, an ACK gave credit back) until they are live.

use std::sync::Arc;

use bytes::Bytes;

use super::Session;
use super::subscriptions::CatchingUp;
use crate::broker::{Broker, deliver_with_credit};
use crate::message::Published;
use crate::outbox::{Mark, Outbound};
use crate::registry::Subscriber;

/// Registers `subscriber` to `base`'s presence companion and hands it the snapshot, in one
/// step under the presence lock, if the snapshot fits its outbox now. `false`: nothing was
/// done; try again when the client has read.
pub(super) fn presence_join(
    broker: &Broker,
    base: &str,
    registry_key: &str,
    subscriber: &Subscriber,
    destination: &str,
) -> bool {
    broker.presence.snapshot(base, |snapshot| {
        let mut headers = stomp_codec::Headers::new();
        headers.push("content-type", "application/json");
        let id = broker.next_message_id();
        let msg = Arc::new(Published::from_send(
            destination,
            &id,
            &headers,
            Bytes::from(snapshot),
        ));
        if deliver_with_credit(subscriber, &msg, Mark::None).is_err() {
            return false;
        }
        broker.subscribe_exact(registry_key, subscriber.clone());
        true
    })
}

impl Session {
    /// Hands subscriptions that are catching up what they may take now, oldest first; those
    /// that reach the live stream stop being pumped. Runs only when something may have
    /// changed (a write drained the outbox, an ACK gave credit back), and stops at the first
    /// that cannot move on: they share the outbox, so the others could not either. Costs
    /// nothing when none is catching up.
    pub(super) fn pump_catchups(&mut self) {
        if self.catching_up.is_empty() || !std::mem::take(&mut self.pump_due) {
            return;
        }
        while let Some(&key) = self.catching_up.front() {
            let Some(sub) = self.subs.get_mut(key) else {
                self.catching_up.pop_front();
                continue;
            };
            let live = match &mut sub.catching_up {
                None => true,
                Some(CatchingUp::History) => sub
                    .history
                    .as_ref()
                    .is_none_or(|h| h.pump(&self.broker, self.conn, key)),
                Some(CatchingUp::Presence(p)) => {
                    let live = presence_join(
                        &self.broker,
                        &p.base,
                        &sub.registry_key,
                        &p.subscriber,
                        &sub.destination,
                    );
                    if live && let Some(r) = p.receipt.take() {
                        let size = r.len();
                        let _ = self.outbox.push_credited(Outbound::Frame(r), size);
                    }
                    live
                }
            };
            if !live {
                return;
            }
            sub.catching_up = None;
            self.catching_up.pop_front();
        }
    }

    /// After acknowledgements gave unsettled bytes back: queues that passed this connection
    /// over for want of them dispatch again.
    pub(super) fn kick_starved_queues(&mut self) {
        // Only after an ACK (or an auto-ack queue delivery written) gave bytes back: a queue
        // kicked with nothing given back would starve the connection again at once.
        if std::mem::take(&mut self.settled) && self.outbox.take_starved() {
            for q in self.subs.queues() {
                q.kick();
            }
        }
    }
}

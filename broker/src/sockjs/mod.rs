//! SockJS, for front ends written against Spring's `withSockJS()`: `new SockJS('/ws')` under
//! `Stomp.over(...)` or stomp.js's `webSocketFactory`.
//!
//! SockJS falls back from WebSocket to HTTP streaming and polling where proxies block
//! WebSockets. Under the endpoint path `P` (by default the WebSocket endpoint's own path, so
//! `ws://host/ws` and `new SockJS('http://host/ws')` both work):
//!
//! - `GET P/info`: what the client needs to pick a transport;
//! - `GET P/iframe.html`: the page iframe-based transports load;
//! - `P/websocket`: plain STOMP over WebSocket;
//! - `P/{server}/{session}/{transport}`: `websocket`, `xhr`, `xhr_send`, `xhr_streaming`,
//!   `eventsource`, `htmlfile`.
//!
//! A SockJS session carries one STOMP session, run by the same code as over WebSocket (auth,
//! acks, receipts, limits). It counts as a connection for `server.max_connections` and
//! `server.max_connections_per_ip`. Sessions left without a receiving request for
//! `disconnect_delay_ms` are closed and reaped.

mod frame;
mod receive;
mod session;
mod websocket;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use session::SjSession;
pub use session::SockJsPipe;

use crate::broker::Broker;

/// Every live SockJS session, by session id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: DashMap<String, Arc<SjSession>>,
}

impl Sessions {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<SjSession>> {
        self.map.get(id).map(|s| Arc::clone(&s))
    }

    /// Live sessions (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Closes sessions nobody has received from for `delay` and forgets closed ones after the
    /// same delay (so a polling client can still fetch the last frames and the close).
    pub fn reap(&self, delay: Duration) {
        let now = Instant::now();
        self.map.retain(|_, s| {
            if !s.idle_for(delay, now) {
                return true;
            }
            if s.is_closed() {
                return false;
            }
            s.close(1000, "Session abandoned");
            true
        });
    }
}

/// Reaps abandoned sessions until the broker shuts down. (At shutdown each STOMP session
/// flushes and closes its SockJS session itself, as over WebSocket.)
pub async fn reaper(broker: Arc<Broker>) {
    let delay = Duration::from_millis(broker.config.sockjs.disconnect_delay_ms);
    let mut tick = tokio::time::interval((delay / 2).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => broker.sockjs.reap(delay),
        }
    }
}

pub(crate) use receive::{handle, handshake_of};
pub(crate) use websocket::bridge;

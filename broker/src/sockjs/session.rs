//! One SockJS session: the state its HTTP requests (or its SockJS WebSocket) and its STOMP
//! session share.
//!
//! The STOMP session runs over a [`SockJsPipe`], exactly as over a WebSocket: inbound
//! messages arrive on a bounded channel (an `xhr_send` waits while it is full), and outbound
//! frames go to a bounded queue that the current receiving request drains (a flush waits
//! while the queue is over its bound, so a client that stops polling stalls its own session
//! into the write timeout, never the broker's memory).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::frame;
use crate::admission::Permit;
use crate::wire::WireFrame;

/// Messages queued from a client towards its STOMP session (each at most
/// `sockjs.max_send_size`): an `xhr_send` beyond them waits, so a flooding client is held
/// back by its own requests.
const INBOUND_MESSAGES: usize = 2;

/// What a receiving request gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Everything queued (sent as one `a[...]` frame); hand it back with `unread` if it
    /// could not be sent.
    Messages(Vec<String>),
    /// Nothing to send for a heartbeat interval: `h`.
    Heartbeat,
    /// The session is closed: `c[code,"reason"]`.
    Close(String),
}

/// A receiving request could not attach.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

#[derive(Debug)]
struct State {
    queue: VecDeque<String>,
    queued_bytes: usize,
    closed: Option<(u16, String)>,
    receiving: bool,
    last_active: Instant,
    inbound: Option<mpsc::Sender<Bytes>>,
}

/// The shared half of a session.
#[derive(Debug)]
pub struct SjSession {
    /// The transport that created it; later requests must use the same kind.
    pub kind: &'static str,
    /// The address that created it; later requests must come from it.
    pub ip: IpAddr,
    state: Mutex<State>,
    changed: Notify,
    heartbeats: AtomicBool,
    max_queued: usize,
    heartbeat_every: Duration,
}

impl SjSession {
    /// A new session and the pipe its STOMP session runs over.
    pub fn new(
        kind: &'static str,
        ip: IpAddr,
        max_queued: usize,
        heartbeat_every: Duration,
        permit: Permit,
    ) -> (std::sync::Arc<Self>, SockJsPipe) {
        let (tx, rx) = mpsc::channel(INBOUND_MESSAGES);
        let session = std::sync::Arc::new(Self {
            kind,
            ip,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                closed: None,
                receiving: false,
                last_active: Instant::now(),
                inbound: Some(tx),
            }),
            changed: Notify::new(),
            heartbeats: AtomicBool::new(true),
            max_queued,
            heartbeat_every,
        });
        let pipe = SockJsPipe {
            session: std::sync::Arc::clone(&session),
            inbound: rx,
            pending: Vec::new(),
            _permit: permit,
        };
        (session, pipe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a client's messages to the STOMP session, waiting while its inbound queue is
    /// full. `false` when the session is closed.
    pub async fn deliver(&self, messages: Vec<String>) -> bool {
        let Some(tx) = self.lock().inbound.clone() else {
            return false;
        };
        for m in messages {
            if !m.is_empty() && tx.send(Bytes::from(m)).await.is_err() {
                return false;
            }
        }
        self.touch();
        true
    }

    fn touch(&self) {
        self.lock().last_active = Instant::now();
    }

    /// Attaches a receiving request; only one may be attached at a time.
    pub fn attach(&self) -> Result<Receiving<'_>, Busy> {
        let mut st = self.lock();
        if st.receiving {
            return Err(Busy);
        }
        st.receiving = true;
        Ok(Receiving { session: self })
    }

    /// Whether nothing has been attached for longer than `delay` (an abandoned session).
    pub fn idle_for(&self, delay: Duration, now: Instant) -> bool {
        let st = self.lock();
        !st.receiving && now.saturating_duration_since(st.last_active) >= delay
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Closes the session: the STOMP session sees the client gone, receivers get `c[...]`.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut st = self.lock();
            if st.closed.is_none() {
                st.closed = Some((code, reason.to_owned()));
            }
            st.inbound = None;
        }
        self.changed.notify_waiters();
    }

    /// Turns SockJS heartbeats off (STOMP heart-beats were negotiated), as Spring does.
    pub fn stomp_heartbeats(&self, on: bool) {
        self.heartbeats.store(!on, Ordering::Relaxed);
    }

    async fn push(&self, mut messages: Vec<String>) -> Result<(), ()> {
        let size: usize = messages.iter().map(String::len).sum();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed.is_some() {
                    return Err(());
                }
                if st.queue.is_empty() || st.queued_bytes + size <= self.max_queued {
                    st.queued_bytes += size;
                    st.queue.extend(messages.drain(..));
                    drop(st);
                    self.changed.notify_waiters();
                    return Ok(());
                }
            }
            // Over the bound: wait for a receiver to take some (the session's write timeout
            // bounds this wait).
            notified.await;
        }
    }
}

/// An attached receiving request; detaches when dropped.
#[derive(Debug)]
pub struct Receiving<'a> {
    session: &'a SjSession,
}

impl Receiving<'_> {
    /// Waits for the next thing to send: queued messages, the close, or a heartbeat after
    /// the heartbeat interval of silence.
    pub async fn next(&self) -> Next {
        let s = self.session;
        let deadline = Instant::now() + s.heartbeat_every;
        loop {
            let notified = s.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = s.lock();
                if !st.queue.is_empty() {
                    let out: Vec<String> = st.queue.drain(..).collect();
                    st.queued_bytes = 0;
                    st.last_active = Instant::now();
                    drop(st);
                    s.changed.notify_waiters();
                    return Next::Messages(out);
                }
                if let Some((code, reason)) = &st.closed {
                    return Next::Close(frame::close(*code, reason));
                }
            }
            if s.heartbeats.load(Ordering::Relaxed) {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Next::Heartbeat;
                }
            } else {
                notified.await;
            }
        }
    }
}

impl Receiving<'_> {
    /// Puts messages taken by `next` back in front of the queue: the request that took them
    /// could not deliver them (its client went away), the next one will.
    pub fn unread(&self, messages: Vec<String>) {
        let mut st = self.session.lock();
        st.queued_bytes += messages.iter().map(String::len).sum::<usize>();
        for m in messages.into_iter().rev() {
            st.queue.push_front(m);
        }
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        let mut st = self.session.lock();
        st.receiving = false;
        st.last_active = Instant::now();
    }
}

/// The STOMP session's end of a SockJS session (see `transport`).
#[derive(Debug)]
pub struct SockJsPipe {
    session: std::sync::Arc<SjSession>,
    inbound: mpsc::Receiver<Bytes>,
    pending: Vec<String>,
    _permit: Permit,
}

impl SockJsPipe {
    /// The next client message appended to `buf`; `0` when the client is gone.
    pub async fn recv_into(&mut self, buf: &mut BytesMut) -> usize {
        match self.inbound.recv().await {
            Some(m) => {
                buf.extend_from_slice(&m);
                m.len()
            }
            None => 0,
        }
    }

    /// Queues a frame for the next flush. SockJS carries text: a binary frame's invalid
    /// UTF-8 sequences become U+FFFD, as with Spring.
    pub fn feed(&mut self, f: WireFrame) {
        self.pending
            .push(String::from_utf8_lossy(f.as_bytes()).into_owned());
    }

    /// Moves what was fed to the session's queue, waiting while it is over its bound.
    pub async fn flush(&mut self) -> Result<(), ()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.session.push(batch).await
    }

    /// Ends the session with a close frame after what is queued.
    pub fn close(&mut self, code: u16, reason: &str) {
        self.session.close(code, reason);
    }

    /// STOMP heart-beats were negotiated: SockJS ones are not needed.
    pub fn stomp_heartbeats(&self, on: bool) {
        self.session.stomp_heartbeats(on);
    }
}

impl Drop for SockJsPipe {
    fn drop(&mut self) {
        // The STOMP session ended (for any reason): receivers learn it.
        self.session.close(1000, "Normal closure");
    }
}

//! One client connection: its STOMP session from CONNECT to close.
//!
//! A session is one task. It reads and decodes inbound bytes, handles each frame (the logic in
//! `frames.rs` is synchronous: it routes, publishes and queues replies, never awaits), drains its
//! outbox in one swap, encodes what needs per-delivery state, and writes everything as one
//! batch with one flush. Heart-beats, the CONNECT deadline, slow-consumer kills and broker
//! shutdown are arms of the same `select!`.

mod catchup;
mod error;
mod frames;
pub mod heartbeat;
mod rate;
mod subscriptions;
mod transactions;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Decoded, Decoder, DecoderConfig, Frame, Version};
use tokio::time::{Instant, sleep_until, timeout};
use tracing::debug;

pub use error::ProtocolError;
use heartbeat::Heartbeat;

use crate::app::OwnerName;
use crate::auth::{AuthError, HandshakeAuth, Identity};
use crate::config::RatePolicy;
use rate::RateLimiter;
use subscriptions::Subscriptions;

use crate::broker::Broker;
use crate::metrics::{CloseReason, LocalCounters};
use crate::outbox::{ITEMS, KILL, Outbound, Outbox, STOP};
use crate::registry::ConnId;
use crate::transport::{Closing, Transport, TransportError};
use crate::wire::WireFrame;

/// How often a busy session adds its counters to the shared metrics.
const METRICS_EVERY: Duration = Duration::from_millis(100);

/// A deadline far enough away to mean "never" for a connection.
const YEAR: Duration = Duration::from_secs(86_400 * 365);

/// How long the broker tries to deliver a final ERROR frame before closing regardless.
const ERROR_WRITE_DEADLINE: Duration = Duration::from_secs(2);

/// How a session ends.
enum End {
    /// The peer closed or the stream broke: nothing more to write.
    Gone,
    /// DISCONNECT: flush, answer its receipt, close normally.
    Disconnect(Option<Bytes>),
    /// A protocol error: ERROR frame (with the offending frame's receipt), then close.
    Error(ProtocolError, Option<Bytes>),
    /// Broker shutdown.
    Shutdown,
}

/// Per-connection state, owned by the connection's task.
struct Session {
    broker: Arc<Broker>,
    conn: ConnId,
    version: Version,
    connected: bool,
    decoder: Decoder,
    read_buf: BytesMut,
    outbox: Arc<Outbox>,
    /// Frames to write on the next flush, in order.
    pending: Vec<WireFrame>,
    /// Scratch queue the outbox is swapped into (kept to reuse its allocation).
    batch: VecDeque<Outbound>,
    subs: Subscriptions,
    /// Keys of subscriptions still catching up, oldest first (see `catchup.rs`).
    catching_up: std::collections::VecDeque<u32>,
    /// Something may let them move on: a write drained the outbox, or an ACK gave back
    /// prefetch credit or unsettled bytes.
    pump_due: bool,
    /// Unsettled bytes were given back since the last look (an ACK, an auto-ack queue
    /// delivery written): queues that passed this connection over may dispatch again.
    settled: bool,
    txs: transactions::Transactions,
    /// This connection's shares of queue and history storage, made at its first SEND (a
    /// subscriber that never publishes pays nothing for them).
    shares: Option<crate::broker::Shares>,
    /// What its application messages waiting for their handler may hold, made at the first.
    app_budget: Option<Arc<crate::budget::Budget>>,
    counters: LocalCounters,
    heartbeat: Heartbeat,
    next_seq: u64,
    closing: Option<End>,
    last_read: Instant,
    last_write: Instant,
    /// Credentials from the WebSocket handshake.
    handshake: HandshakeAuth,
    /// The client's address, for the failed-login throttle.
    peer: std::net::IpAddr,
    /// A CONNECT waiting for authentication (which may hash, so it runs outside `handle`).
    pending_connect: Option<Frame>,
    /// The session id shown in CONNECTED.
    session_id: String,
    /// The authenticated user name.
    user: Option<String>,
    /// Whose user destinations this session sees: its user, or itself when anonymous.
    identity: OwnerName,
    /// When the connection's token expires.
    expires_at: Option<Instant>,
    /// Runs this connection's application handlers, started on first use.
    app_worker: Option<crate::app::worker::Worker>,
    /// When the counters are next added to the shared metrics.
    counters_due: Option<Instant>,
    /// Who the access rules see: the authenticated identity; `None` while anonymous.
    principal: Option<Arc<Identity>>,
    /// The inbound rate limit, when configured.
    rate: Option<RateLimiter>,
    /// Reading is paused until then: the connection is over its rate (policy "delay").
    paused_until: Option<Instant>,
    /// When the incomplete frame at the end of the read buffer began to arrive.
    frame_started: Option<Instant>,
    /// The frame just handled answers its RECEIPT later itself (a SUBSCRIBE waiting for a
    /// cluster's history mirror).
    receipt_deferred: bool,
}

/// Runs a session over `transport` until it ends, then releases everything it held.
pub async fn run(
    broker: Arc<Broker>,
    mut transport: Transport,
    peer: SocketAddr,
    handshake: HandshakeAuth,
) {
    let conn = broker.next_conn_id();
    let metrics = &broker.metrics;
    metrics.connections.inc();
    metrics.accepted(transport.kind());
    debug!(conn, %peer, "session opened");
    let cfg = &broker.config;
    let decoder = Decoder::new(
        DecoderConfig::default()
            .max_frame_size(cfg.stomp.max_frame_size)
            .max_body_size(cfg.stomp.max_frame_size)
            .max_header_lines(cfg.stomp.max_header_lines)
            .max_header_line_len(cfg.stomp.max_header_line_len),
    );
    let now = Instant::now();
    let mut session = Session {
        outbox: Arc::new(Outbox::with_unsettled_limit(
            cfg.outbox.max_messages,
            cfg.outbox.max_bytes,
            // Its own budget only: the messages are shared (queues and histories count them),
            // and no other client can take a connection's room to receive.
            cfg.stomp.max_unacked_bytes,
        )),
        broker: Arc::clone(&broker),
        conn,
        version: Version::V1_0,
        connected: false,
        decoder,
        read_buf: BytesMut::new(),
        pending: Vec::new(),
        batch: VecDeque::new(),
        subs: Subscriptions::default(),
        catching_up: std::collections::VecDeque::new(),
        pump_due: false,
        settled: false,
        txs: transactions::Transactions::default(),
        shares: None,
        app_budget: None,
        counters: LocalCounters::default(),
        heartbeat: Heartbeat::default(),
        next_seq: 0,
        closing: None,
        last_read: now,
        last_write: now,
        handshake,
        peer: peer.ip(),
        pending_connect: None,
        session_id: broker.session_name(conn),
        user: None,
        identity: OwnerName::Session(Arc::from(broker.session_name(conn).as_str())),
        expires_at: None,
        app_worker: None,
        counters_due: None,
        principal: None,
        rate: RateLimiter::new(&cfg.rate_limit, now),
        paused_until: None,
        frame_started: None,
        receipt_deferred: false,
    };
    broker.register_session(conn, &session.outbox);
    let end = session.serve(&mut transport).await;
    // Boxed for the same reason: only ever run once, at the end.
    Box::pin(session.finish(&mut transport, end)).await;
    session.release();
    broker.unregister_session(conn);
    session.counters.flush(&broker.metrics);
    broker.metrics.connections.dec();
    debug!(conn, %peer, "session closed");
}

impl Session {
    /// The main loop. Returns why the session ends; `finish` does the closing writes.
    async fn serve(&mut self, t: &mut Transport) -> End {
        let cfg = Arc::clone(&self.broker.config);
        // For use while `self` is mutably borrowed by a pending write.
        let broker = Arc::clone(&self.broker);
        let outbox = Arc::clone(&self.outbox);
        let connect_deadline =
            Instant::now() + Duration::from_millis(cfg.server.connect_timeout_ms);
        // One timer for every deadline (CONNECT, heart-beats both ways, token expiry), set to
        // the nearest: one timer entry per connection instead of four.
        let mut armed_for = connect_deadline;
        let timer = sleep_until(armed_for);
        tokio::pin!(timer);
        loop {
            let next = self.next_deadline(connect_deadline);
            if next != armed_for {
                armed_for = next;
                timer.as_mut().reset(next);
            }
            tokio::select! {
                biased;
                // Frames waiting, a slow-consumer kill and shutdown all arrive through the
                // outbox's signal: one lock-free wait per turn of the loop.
                bits = outbox.wait(ITEMS | KILL | STOP) => {
                    if bits & STOP != 0 {
                        self.take_outbox();
                        return End::Shutdown;
                    }
                    if bits & KILL != 0 {
                        self.broker.metrics.closed(CloseReason::SlowConsumer);
                        return End::Error(ProtocolError::SlowConsumer, None);
                    }
                    self.take_outbox();
                }
                r = t.recv_into(&mut self.read_buf), if self.paused_until.is_none() => {
                    match r {
                        Ok(0) => return End::Gone,
                        Ok(n) => {
                            self.counters.bytes_in(n);
                            self.last_read = Instant::now();
                            let frames_before = self.counters.frames_in_total();
                            if let Err(end) = self.process_input() {
                                return end;
                            }
                            let frames = self.counters.frames_in_total() - frames_before;
                            if let Err(end) = self.limit_rate(frames, n) {
                                return end;
                            }
                            self.track_partial_frame(frames);
                            if let Some(frame) = self.pending_connect.take() {
                                // Boxed: a rare, large future that would otherwise enlarge
                                // every idle connection's task.
                                let connect = self.authenticate_and_connect(frame, t, connect_deadline);
                                if let Err(end) = Box::pin(connect).await {
                                    return end;
                                }
                                t.stomp_heartbeats(self.heartbeat.send_every.is_some());
                                if let Err(end) = self.process_input() {
                                    return end;
                                }
                            }
                        }
                        Err(TransportError::MessageTooLarge { limit }) => {
                            return End::Error(ProtocolError::MessageTooLarge(limit), None);
                        }
                        Err(TransportError::InvalidText) => {
                            return End::Error(ProtocolError::InvalidText, None);
                        }
                        Err(TransportError::Io(e)) => {
                            debug!(conn = self.conn, error = %e, "read failed");
                            return End::Gone;
                        }
                    }
                }
                _ = &mut timer => {
                    if let Some(end) = self.on_deadline(connect_deadline) {
                        return end;
                    }
                }
            }
            if let Some(end) = self.closing.take() {
                return end;
            }
            if !self.pending.is_empty() {
                let write_timeout = Duration::from_millis(cfg.server.write_timeout_ms);
                let write = self.write_pending(t);
                tokio::pin!(write);
                // Most writes complete at once (the socket has room). Only a write that has to
                // wait gets a deadline, so the common case registers no timer.
                let first = std::future::poll_fn(|cx| match write.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
                    std::task::Poll::Pending => std::task::Poll::Ready(None),
                })
                .await;
                let result = match first {
                    Some(r) => Ok(r),
                    None => {
                        tokio::select! {
                            r = timeout(write_timeout, &mut write) => r,
                            _ = outbox.wait(KILL) => {
                                // Blocked writing to a client that does not read: no ERROR can
                                // get through, so drop it.
                                broker.metrics.closed(CloseReason::SlowConsumer);
                                return End::Gone;
                            }
                        }
                    }
                };
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return End::Gone,
                    Err(_) => {
                        broker.metrics.closed(CloseReason::WriteTimeout);
                        return End::Gone;
                    }
                }
            }
            self.tally();
            // The outbox may have room again (a write), or the prefetch windows and unsettled
            // bytes (an ACK): what waits for either moves on.
            self.pump_catchups();
            self.kick_starved_queues();
        }
    }

    /// Charges what was just read to the rate limit: over it, the connection is either not
    /// read again until it is back within its rate, or ended, by policy.
    fn limit_rate(&mut self, frames: u64, bytes: usize) -> Result<(), End> {
        let Some(rate) = &mut self.rate else {
            return Ok(());
        };
        let now = Instant::now();
        let over = rate.take(u32::try_from(frames).unwrap_or(u32::MAX), bytes, now);
        if over.is_zero() {
            return Ok(());
        }
        match self.broker.config.rate_limit.policy {
            RatePolicy::Delay => {
                self.paused_until = Some(now + over);
                Ok(())
            }
            RatePolicy::Error => {
                self.broker.metrics.closed(CloseReason::RateLimited);
                Err(End::Error(ProtocolError::RateLimited, None))
            }
        }
    }

    /// Notes when the incomplete frame at the end of the buffer started, for
    /// `stomp.frame_timeout_ms`: a read that completed frames and left bytes over starts a new
    /// frame, so a client streaming whole frames in writes that do not line up with frame
    /// boundaries is never timed out.
    fn track_partial_frame(&mut self, completed: u64) {
        if self.read_buf.is_empty() {
            self.frame_started = None;
        } else if completed > 0 || self.frame_started.is_none() {
            self.frame_started = Some(self.last_read);
        }
    }

    /// Adds the session's counters to the shared metrics at most every `METRICS_EVERY`, so the
    /// hot path does not bounce shared cache lines between cores per message. A session that
    /// goes quiet is flushed by its deadline timer.
    fn tally(&mut self) {
        if !self.counters.is_dirty() {
            return;
        }
        let now = self.last_read.max(self.last_write);
        match self.counters_due {
            None => self.counters_due = Some(now + METRICS_EVERY),
            Some(due) if now >= due => {
                self.counters.flush(&self.broker.metrics);
                self.counters_due = None;
            }
            Some(_) => {}
        }
    }

    /// The nearest moment something must happen without any I/O: the CONNECT deadline before
    /// CONNECT; afterwards the next heart-beat to send, the client's heart-beat deadline and
    /// the token's expiry.
    fn next_deadline(&self, connect_deadline: Instant) -> Instant {
        let flush = self
            .counters_due
            .unwrap_or(connect_deadline + Duration::from_secs(86_400 * 365));
        let mut next = flush;
        let server = &self.broker.config.server;
        // While the broker itself does not read (rate limit), the client's silence is not the
        // client's: the receive-side deadlines wait until reading resumes.
        let reading = self.paused_until.is_none();
        if let Some(at) = self.paused_until {
            next = next.min(at);
        }
        let frame_timeout = self.broker.config.stomp.frame_timeout_ms;
        if let Some(at) = self.frame_started
            && frame_timeout > 0
            && reading
        {
            next = next.min(at + Duration::from_millis(frame_timeout));
        }
        if server.idle_timeout_ms > 0 && reading {
            next = next.min(self.last_read + Duration::from_millis(server.idle_timeout_ms));
        }
        if !self.connected {
            return connect_deadline.min(next);
        }
        next = next.min(self.last_read + Duration::from_secs(86_400 * 365));
        if let Some(at) = self.expires_at {
            next = next.min(at);
        }
        if let Some(every) = self.heartbeat.send_every {
            next = next.min(self.last_write + every);
        }
        if let Some(limit) = self.heartbeat.receive_timeout
            && reading
        {
            next = next.min(self.last_read + limit);
        }
        next
    }

    /// The timer fired: whichever deadlines have passed take effect. A heart-beat to send is
    /// queued (the write that follows moves the next deadline on).
    fn on_deadline(&mut self, connect_deadline: Instant) -> Option<End> {
        let now = Instant::now();
        if self.counters_due.is_some_and(|due| now >= due) {
            self.counters.flush(&self.broker.metrics);
            self.counters_due = None;
        }
        if self.paused_until.is_some_and(|at| now >= at) {
            // Reading resumes: the receive-side deadlines start again from now.
            self.paused_until = None;
            self.last_read = now;
            if self.frame_started.is_some() {
                self.frame_started = Some(now);
            }
        }
        let reading = self.paused_until.is_none();
        let frame_timeout = self.broker.config.stomp.frame_timeout_ms;
        if reading
            && frame_timeout > 0
            && self
                .frame_started
                .is_some_and(|at| now >= at + Duration::from_millis(frame_timeout))
        {
            self.broker.metrics.closed(CloseReason::FrameTimeout);
            return Some(End::Error(
                ProtocolError::FrameTimeout(u128::from(frame_timeout)),
                None,
            ));
        }
        let idle = self.broker.config.server.idle_timeout_ms;
        if reading && idle > 0 && now >= self.last_read + Duration::from_millis(idle) {
            self.broker.metrics.closed(CloseReason::IdleTimeout);
            return Some(End::Error(
                ProtocolError::IdleTimeout(u128::from(idle)),
                None,
            ));
        }
        if !self.connected {
            if now < connect_deadline {
                return None;
            }
            self.broker.metrics.closed(CloseReason::ConnectTimeout);
            let ms = u128::from(self.broker.config.server.connect_timeout_ms);
            return Some(End::Error(ProtocolError::ConnectTimeout(ms), None));
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            self.broker.metrics.closed(CloseReason::TokenExpired);
            return Some(End::Error(ProtocolError::TokenExpired, None));
        }
        if let Some(limit) = self.heartbeat.receive_timeout
            && reading
            && now >= self.last_read + limit
        {
            self.broker.metrics.closed(CloseReason::HeartbeatTimeout);
            return Some(End::Error(
                ProtocolError::HeartbeatTimeout(limit.as_millis()),
                None,
            ));
        }
        if let Some(every) = self.heartbeat.send_every
            && now >= self.last_write + every
        {
            self.pending.push(WireFrame::heartbeat());
        }
        None
    }

    /// Decodes and handles every complete frame in the read buffer.
    fn process_input(&mut self) -> Result<(), End> {
        while self.closing.is_none() {
            // The frame will be a slice of this allocation (from the buffer's start to its end).
            let span = self.read_buf.capacity();
            match self.decoder.decode(&mut self.read_buf) {
                Ok(None) => break,
                Ok(Some(Decoded::Heartbeat)) => {}
                Ok(Some(Decoded::Frame(mut frame))) => {
                    // A body that is a small part of a large buffer would pin all of it for as
                    // long as the message is held (a queue, a history, a slow subscriber's
                    // outbox) while being charged its own size: copy it out. A frame that fills
                    // its buffer (one frame per WebSocket message) stays zero-copy.
                    if !frame.body.is_empty() && frame.body.len().saturating_mul(2) < span {
                        frame.body = Bytes::copy_from_slice(&frame.body);
                    }
                    self.counters.frame_in(frame.command);
                    if !self.connected && matches!(frame.command, Command::Connect | Command::Stomp)
                    {
                        // Authentication may be slow (argon2); the loop awaits it, then
                        // resumes decoding what followed the CONNECT.
                        self.pending_connect = Some(frame);
                        break;
                    }
                    let receipt = frame.headers.get_bytes("receipt").cloned();
                    if let Err(e) = self.handle(frame, receipt.clone()) {
                        self.broker.metrics.closed(e.close_reason());
                        return Err(End::Error(e, receipt));
                    }
                }
                Err(e) => {
                    self.broker.metrics.closed(CloseReason::ProtocolError);
                    return Err(End::Error(ProtocolError::Malformed(e), None));
                }
            }
        }
        Ok(())
    }

    /// Authenticates a CONNECT, then answers CONNECTED (or ends with ERROR).
    ///
    /// Authentication may wait for a password verification slot, so the connection is still
    /// watched meanwhile: a hang-up or the CONNECT deadline drops the wait (and the place in
    /// the queue). Bytes that arrive meanwhile are kept for after CONNECTED, up to one frame.
    async fn authenticate_and_connect(
        &mut self,
        frame: Frame,
        t: &mut Transport,
        connect_deadline: Instant,
    ) -> Result<(), End> {
        let receipt = frame.headers.get_bytes("receipt").cloned();
        let broker = Arc::clone(&self.broker);
        let room = self.broker.config.stomp.max_frame_size;
        let mut auth = Box::pin(broker.auth.authenticate(
            &frame.headers,
            &self.handshake,
            self.peer,
        ));
        // A client that half-closes after pipelining frames (CONNECT, SEND, DISCONNECT) still
        // gets them handled; one that hangs up with nothing more to say is gone.
        let mut half_closed = false;
        let verdict = loop {
            tokio::select! {
                biased;
                r = t.recv_into(&mut self.read_buf),
                    if !half_closed && self.read_buf.len() < room => match r {
                    Ok(0) if !self.read_buf.is_empty() => half_closed = true,
                    Ok(0) | Err(TransportError::Io(_)) => return Err(End::Gone),
                    Ok(n) => {
                        self.counters.bytes_in(n);
                        self.last_read = Instant::now();
                    }
                    Err(TransportError::MessageTooLarge { limit }) => {
                        return Err(End::Error(ProtocolError::MessageTooLarge(limit), None));
                    }
                    Err(TransportError::InvalidText) => {
                        return Err(End::Error(ProtocolError::InvalidText, None));
                    }
                },
                () = sleep_until(connect_deadline) => {
                    broker.metrics.closed(CloseReason::ConnectTimeout);
                    let ms = u128::from(broker.config.server.connect_timeout_ms);
                    return Err(End::Error(ProtocolError::ConnectTimeout(ms), None));
                }
                r = &mut auth => break r,
            }
        };
        drop(auth);
        let identity = match verdict {
            Ok(id) => id,
            Err(e) => {
                broker.metrics.closed(match e {
                    AuthError::Failed => CloseReason::AuthFailed,
                    AuthError::Throttled => CloseReason::AuthThrottled,
                });
                return Err(End::Error(ProtocolError::AuthenticationFailed, receipt));
            }
        };
        if let Some(exp) = identity.expires_at {
            let left = exp
                .duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO);
            let now = Instant::now();
            self.expires_at = Some(now.checked_add(left).unwrap_or(now + YEAR));
        }
        if let Err(e) = self.on_connect(&frame, identity) {
            self.broker.metrics.closed(CloseReason::ProtocolError);
            return Err(End::Error(e, receipt));
        }
        Ok(())
    }

    /// Moves the outbox into `pending`, encoding deliveries that carry per-delivery state.
    fn take_outbox(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        self.outbox.take(&mut batch);
        for item in batch.drain(..) {
            match item {
                Outbound::Frame(f) => {
                    self.counters.frame_out(Command::Message);
                    self.pending.push(f);
                }
                Outbound::Deliver(d) => {
                    if let Some(f) = self.encode_delivery(d) {
                        self.counters.frame_out(Command::Message);
                        self.pending.push(f);
                    }
                }
            }
        }
        self.batch = batch;
    }

    /// Queues a frame the session itself produced (CONNECTED, RECEIPT, ERROR).
    fn reply(&mut self, frame: &Frame) {
        let mut buf = BytesMut::with_capacity(64 + frame.body.len());
        stomp_codec::encode_frame(frame, self.version, &mut buf);
        self.counters.frame_out(frame.command);
        self.pending.push(WireFrame::new(buf.freeze(), true));
    }

    /// Feeds `pending` to the transport and flushes once.
    async fn write_pending(&mut self, t: &mut Transport) -> Result<(), TransportError> {
        for f in self.pending.drain(..) {
            self.counters.bytes_out(f.len());
            t.feed(f);
        }
        t.flush().await?;
        self.last_write = Instant::now();
        self.pump_due = true;
        Ok(())
    }

    /// The closing writes for each way a session ends.
    async fn finish(&mut self, t: &mut Transport, end: End) {
        let deadline = ERROR_WRITE_DEADLINE.min(Duration::from_millis(
            self.broker.config.server.write_timeout_ms.max(1),
        ));
        let how = match end {
            End::Gone => return,
            End::Shutdown => Closing::GoingAway,
            End::Disconnect(receipt) => {
                // Everything queued before the DISCONNECT goes out first, then its receipt.
                self.take_outbox();
                if let Some(id) = receipt {
                    self.reply(&Frame::new(Command::Receipt).header("receipt-id", id));
                }
                Closing::Normal
            }
            End::Error(e, receipt) => {
                debug!(conn = self.conn, error = %e, "closing with ERROR");
                let how = match e {
                    ProtocolError::MessageTooLarge(_) => Closing::TooBig,
                    ProtocolError::InvalidText => Closing::InvalidText,
                    _ => Closing::Error,
                };
                let frame = frames::error_frame(&e, receipt);
                self.reply(&frame);
                how
            }
        };
        let _ = timeout(deadline, self.write_pending(t)).await;
        // Bounded as a whole: a close frame (or a TLS close_notify) written to a client that
        // reads nothing must not hold the session, and what it frees, forever.
        let _ = timeout(deadline + Duration::from_secs(2), t.close(how)).await;
    }
}

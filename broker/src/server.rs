//! Binding listeners, accepting connections, and shutting down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::admission::{Admission, Permit, Refused};
use crate::app::AppRouter;
use crate::auth::HandshakeAuth;
use crate::broker::Broker;
use crate::config::Config;
use crate::http;
use crate::metrics::Refusal;
use crate::session;
use crate::tls::{Tls, TlsError};
use crate::transport::{ByteStream, Transport};

/// A running broker: its bound addresses and a handle to its shared state.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    http_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tls: Option<Tls>,
}

impl Server {
    /// Binds every configured listener (port 0 picks a free port) and starts accepting.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        Self::start_with(config, AppRouter::new()).await
    }

    /// As `start`, with Rust application handlers (see [`AppRouter`]).
    pub async fn start_with(config: Config, app: AppRouter) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let http_listener = TcpListener::bind(config.server.websocket).await?;
        let http_addr = http_listener.local_addr()?;
        let tcp_listener = match config.server.tcp {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let tcp_addr = tcp_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let tls = config
            .tls
            .as_ref()
            .map(Tls::load)
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        let (tls_http, tls_tcp) = config
            .tls
            .as_ref()
            .map_or((false, false), |t| (t.websocket, t.tcp));
        let broker = Broker::with_app(config, app).map_err(|e| invalid(e.to_string()))?;
        let admission = Arc::clone(&broker.admission);
        if let Some(c) = &broker.cluster {
            c.start(&broker);
        }
        if broker.config.sockjs.enabled {
            broker
                .tracker
                .spawn(crate::sockjs::reaper(Arc::clone(&broker)));
        }
        broker.tracker.spawn(Arc::clone(&broker).janitor());

        broker.tracker.spawn(accept_loop(
            Arc::clone(&broker),
            http_listener,
            Arc::clone(&admission),
            tls.clone().filter(|_| tls_http),
            |broker, stream, peer, permit| async move {
                http::serve_connection(broker, stream, peer, permit).await;
            },
        ));
        if let Some(listener) = tcp_listener {
            broker.tracker.spawn(accept_loop(
                Arc::clone(&broker),
                listener,
                admission,
                tls.as_ref().map(Tls::for_stream).filter(|_| tls_tcp),
                |broker, stream, peer, permit| async move {
                    let chunk = broker.config.websocket.read_buffer_size;
                    let transport = Transport::boxed_stream(stream, chunk);
                    Box::pin(session::run(
                        broker,
                        transport,
                        peer,
                        HandshakeAuth::default(),
                    ))
                    .await;
                    drop(permit);
                },
            ));
        }
        info!(%http_addr, ?tcp_addr, tls = tls.is_some(), "stompbox listening");
        if broker.auth.ignores_credentials() {
            info!(
                "no credential store ([[auth.users]], [auth.jwt]): CONNECT credentials are \
                 not checked and every session is anonymous (auth.unverifiable_credentials = \
                 \"refuse\" refuses them instead)"
            );
        }
        Ok(Self {
            broker,
            http_addr,
            tcp_addr,
            tls,
        })
    }

    /// Re-reads the TLS certificate and key (SIGHUP). Established connections are not
    /// touched; on failure the current certificate stays in use. Without `[tls]`, nothing.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// The HTTP/WebSocket listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The raw STOMP/TCP listener's address, when enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The shared broker state (metrics, registries, publish API).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, lets every session flush and close (WebSockets with 1001), and waits
    /// for them up to `server.shutdown_grace_ms`. Returns whether everything closed in time.
    pub async fn shutdown(self) -> bool {
        self.shutdown_shared().await
    }

    /// As `shutdown`, for a server shared with other tasks (the SIGHUP handler).
    pub async fn shutdown_shared(&self) -> bool {
        let grace = Duration::from_millis(self.broker.config.server.shutdown_grace_ms);
        self.broker.begin_shutdown();
        self.broker.tracker.close();
        let done = tokio::time::timeout(grace, self.broker.tracker.wait())
            .await
            .is_ok();
        if !done {
            warn!("shutdown grace period elapsed with sessions still open");
        }
        done
    }

    /// Runs until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> bool {
        signal.await;
        info!("shutting down");
        self.shutdown().await
    }
}

/// Accepts until shutdown. Each connection needs a permit (`server.max_connections` and
/// `server.max_connections_per_ip`; without one it is closed at once, before any byte is read)
/// and gets its own tracked task, so a slow handshake never holds up the next accept. With
/// `tls`, the task first completes the TLS handshake within `server.handshake_timeout_ms`.
async fn accept_loop<F, Fut>(
    broker: Arc<Broker>,
    listener: TcpListener,
    admission: Arc<Admission>,
    tls: Option<Tls>,
    handle: F,
) where
    F: Fn(Arc<Broker>, Box<dyn ByteStream>, SocketAddr, Permit) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let permit = match admission.admit(peer.ip()) {
                        Ok(p) => p,
                        Err(why) => {
                            broker.metrics.refused(match why {
                                Refused::Total => Refusal::Limit,
                                Refused::PerIp => Refusal::PerIp,
                            });
                            debug!(%peer, ?why, "connection refused");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let handle = Arc::clone(&handle);
                    let broker2 = Arc::clone(&broker);
                    let tls = tls.clone();
                    broker.tracker.spawn(async move {
                        // Boxed: the TLS handshake's state is large and needed only briefly.
                        let Some(io) = Box::pin(secure(&broker2, tls, stream, peer)).await else {
                            return;
                        };
                        handle(broker2, io, peer, permit).await;
                    });
                }
                Err(e) => {
                    // Usually out of file descriptors: wait a little instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The connection as a byte stream: as accepted, or after a TLS handshake that must finish
/// within the handshake deadline (a client that opens TLS and stalls holds nothing for long).
async fn secure(
    broker: &Broker,
    tls: Option<Tls>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<Box<dyn ByteStream>> {
    let Some(tls) = tls else {
        return Some(Box::new(stream));
    };
    let deadline = Duration::from_millis(broker.config.server.handshake_timeout_ms);
    match tokio::time::timeout(deadline, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            broker.metrics.refused(Refusal::TlsHandshake);
            debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            broker.metrics.refused(Refusal::TlsHandshake);
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

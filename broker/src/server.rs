//! Binding listeners, accepting connections, and shutting down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::app::AppRouter;
use crate::auth::HandshakeAuth;
use crate::broker::Broker;
use crate::config::Config;
use crate::http;
use crate::session;
use crate::transport::Transport;

/// A running broker: its bound addresses and a handle to its shared state.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    http_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
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
        let permits = Arc::new(Semaphore::new(config.server.max_connections));
        let broker = Broker::with_app(config, app)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;

        broker.tracker.spawn(accept_loop(
            Arc::clone(&broker),
            http_listener,
            Arc::clone(&permits),
            http::serve_connection,
        ));
        if let Some(listener) = tcp_listener {
            broker.tracker.spawn(accept_loop(
                Arc::clone(&broker),
                listener,
                permits,
                |broker, stream, peer, permit| async move {
                    let chunk = broker.config.websocket.read_buffer_size;
                    let transport = Transport::stream(stream, chunk);
                    session::run(broker, transport, peer, HandshakeAuth::default()).await;
                    drop(permit);
                },
            ));
        }
        info!(%http_addr, ?tcp_addr, "stompbox listening");
        Ok(Self {
            broker,
            http_addr,
            tcp_addr,
        })
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

/// Accepts until shutdown. Each connection needs a permit (`server.max_connections`; without
/// one it is closed at once) and gets its own tracked task, so a slow handshake never holds up
/// the next accept.
async fn accept_loop<F, Fut>(
    broker: Arc<Broker>,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    handle: F,
) where
    F: Fn(Arc<Broker>, TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        debug!(%peer, "connection limit reached; refusing");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    broker
                        .tracker
                        .spawn(handle(Arc::clone(&broker), stream, peer, permit));
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

//! The HTTP listener: the WebSocket endpoint, `/healthz` and `/metrics`, on one port.
//!
//! hyper parses HTTP (with a deadline on the request head, which bounds slow handshakes);
//! this module validates the WebSocket upgrade, picks the STOMP subprotocol, answers 101 and
//! hands the upgraded stream to tokio-tungstenite and a session.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::debug;

use crate::admission::Permit;
use crate::broker::Broker;
use crate::metrics::Refusal;
use crate::origin;
use crate::session;
use crate::static_files;
use crate::transport::{ByteStream, Transport};

/// The STOMP subprotocols, highest version first: the highest one offered is answered.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// Response bodies: whole (`Full`) or streamed (SockJS).
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(b: Bytes) -> Body {
    Full::new(b).boxed_unsync()
}

/// Serves one accepted connection (TCP, or TLS over TCP) as HTTP/1.1 until it closes or
/// upgrades.
pub async fn serve_connection(
    broker: Arc<Broker>,
    stream: impl ByteStream,
    peer: SocketAddr,
    permit: Permit,
) {
    let handshake_timeout = Duration::from_millis(broker.config.server.handshake_timeout_ms);
    // The permit follows the connection: the upgrade handler moves it into the session task.
    let permit = Arc::new(Mutex::new(Some(permit)));
    let shutdown = broker.shutdown.clone();
    let svc_broker = Arc::clone(&broker);
    let service = service_fn(move |req| {
        let broker = Arc::clone(&svc_broker);
        let permit = Arc::clone(&permit);
        async move { Ok::<_, Infallible>(route(broker, req, peer, &permit).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "http connection ended");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

async fn route(
    broker: Arc<Broker>,
    req: Request<Incoming>,
    peer: SocketAddr,
    permit: &Mutex<Option<Permit>>,
) -> Response<Body> {
    let path = req.uri().path();
    let ws_path = broker.config.server.websocket_path.as_str();
    if path == ws_path && (!broker.config.sockjs.enabled || is_upgrade(req.headers())) {
        return upgrade(broker, req, peer, permit);
    }
    if let Some(prefix) = broker.config.sockjs.effective_path(&broker.config.server)
        && let Some(rest) = path.strip_prefix(prefix)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        let rest = rest.to_owned();
        return crate::sockjs::handle(Arc::clone(&broker), req, &rest, peer, permit).await;
    }
    match (req.method(), path) {
        (&Method::GET, "/healthz") => match &broker.cluster {
            // Still serving its own clients: up, but say what is missing.
            Some(c) if !c.is_up() => text(StatusCode::OK, "degraded: Redis unreachable\n"),
            _ => text(StatusCode::OK, "ok\n"),
        },
        (&Method::GET, "/metrics") => {
            broker.metrics.cluster_up.set(i64::from(
                broker.cluster.as_ref().is_some_and(|c| c.is_up()),
            ));
            broker.metrics.cluster_backlog_bytes.set(
                broker
                    .cluster
                    .as_ref()
                    .map_or(0, |c| c.backlog_bytes() as i64),
            );
            broker.metrics.history(&broker.histories.totals);
            let m = &broker.metrics;
            m.queued_bytes.set(broker.queues.bytes() as i64);
            m.queue_destinations.set(broker.queues.len() as i64);
            m.history_destinations.set(broker.histories.len() as i64);
            m.session_held_bytes
                .set(broker.sessions_budget.used() as i64);
            let mut r = Response::new(full(Bytes::from(broker.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET | &Method::HEAD, _) => match &broker.config.http.static_dir {
            Some(dir) => match static_files::lookup(dir, path).await {
                Some(f) => {
                    let mut r = Response::new(full(f.body));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(f.content_type),
                    );
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    r.headers_mut().insert(
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    );
                    r
                }
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn is_upgrade(h: &HeaderMap) -> bool {
    header_has_token(h, header::UPGRADE, "websocket")
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The highest STOMP version among the subprotocols the client offered, whatever their order
/// (as RabbitMQ). Clients such as webstomp-client offer `v10.stomp, v11.stomp, v12.stomp` and
/// speak whichever version is answered, so answering the first offer would hold them to 1.0.
pub fn select_subprotocol(headers: &HeaderMap) -> Option<&'static str> {
    // SUBPROTOCOLS is highest first; the offer is scanned once per known protocol, and the
    // header's size is bounded by the HTTP server's limits.
    SUBPROTOCOLS.iter().copied().find(|known| {
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .any(|offered| offered.trim().eq_ignore_ascii_case(known))
    })
}

/// What runs over an accepted WebSocket.
enum Then {
    /// A STOMP session (the WebSocket endpoint, and SockJS's raw `/websocket`).
    Stomp,
    /// A SockJS session with this id (SockJS's `websocket` transport).
    SockJs(String),
}

/// Accepts a WebSocket upgrade for a STOMP session.
pub(crate) fn upgrade(
    broker: Arc<Broker>,
    req: Request<Incoming>,
    peer: SocketAddr,
    permit: &Mutex<Option<Permit>>,
) -> Response<Body> {
    upgrade_then(broker, req, peer, permit, Then::Stomp)
}

/// Accepts a WebSocket upgrade for SockJS's `websocket` transport.
pub(crate) fn upgrade_sockjs(
    broker: Arc<Broker>,
    req: Request<Incoming>,
    peer: SocketAddr,
    permit: &Mutex<Option<Permit>>,
    id: String,
) -> Response<Body> {
    upgrade_then(broker, req, peer, permit, Then::SockJs(id))
}

fn upgrade_then(
    broker: Arc<Broker>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    permit: &Mutex<Option<Permit>>,
    then: Then,
) -> Response<Body> {
    let h = req.headers();
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the WebSocket endpoint accepts GET only\n",
        );
    }
    if !header_has_token(h, header::UPGRADE, "websocket")
        || !header_has_token(h, header::CONNECTION, "upgrade")
    {
        return text(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade request\n",
        );
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = text(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 is required\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let origin = h.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    if !origin::allowed(&broker.config.websocket, origin, host) {
        broker.metrics.refused(Refusal::Origin);
        debug!(%peer, ?origin, "origin not allowed");
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let protocol = select_subprotocol(h);
    let handshake = crate::sockjs::handshake_of(&req);
    let Some(permit) = permit.lock().ok().and_then(|mut p| p.take()) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "connection limit reached\n",
        );
    };

    let cfg = &broker.config;
    let limit = match then {
        Then::Stomp => cfg.websocket.effective_max_message_size(&cfg.stomp),
        // SockJS's JSON quoting makes a frame up to six times longer.
        Then::SockJs(_) => cfg.sockjs.effective_max_send_size(&cfg.stomp),
    };
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.websocket.read_buffer_size)
        // Frames accumulate up to this size before a write; the session flushes each batch.
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tracker = broker.tracker.clone();
    tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(%peer, error = %e, "upgrade failed");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        match then {
            // Boxed, so the task holds the session future alone rather than one sized for
            // the largest state of this whole block (the handshake's included): idle
            // connections are the common case, and each saves kilobytes.
            Then::Stomp => {
                Box::pin(session::run(
                    broker,
                    Transport::websocket(ws, limit),
                    peer,
                    handshake,
                ))
                .await;
                drop(permit);
            }
            Then::SockJs(id) => {
                Box::pin(crate::sockjs::bridge(
                    broker, ws, id, peer, handshake, permit,
                ))
                .await;
            }
        }
    });

    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hm = r.headers_mut();
    hm.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hm.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hm.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        hm.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_is_the_highest_version_offered() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v10.stomp, v11.stomp, v12.stomp"),
        );
        assert_eq!(select_subprotocol(&h), Some("v12.stomp"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mqtt, v11.stomp, v10.stomp"),
        );
        assert_eq!(select_subprotocol(&h), Some("v11.stomp"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mqtt"),
        );
        assert_eq!(select_subprotocol(&h), None);
        assert_eq!(select_subprotocol(&HeaderMap::new()), None);
    }
}

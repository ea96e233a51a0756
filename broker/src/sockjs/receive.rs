//! SockJS's HTTP side: `/info`, `/iframe.html`, and the session transports.
//!
//! Receiving transports differ only in how a frame is wrapped and when the response ends:
//! `xhr` (polling) answers one frame per request; `xhr_streaming`, `eventsource` and
//! `htmlfile` keep the response open and stream frames until `streaming_bytes_limit` bytes
//! have gone out, then end it so the client opens a new one (browsers and proxies keep
//! whole streamed responses in memory). `xhr_send` carries client messages.

use std::convert::Infallible;
use std::hash::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tracing::debug;

use super::frame::{self, parse_payload};
use super::session::{Next, SjSession};
use crate::admission::{Permit, Refused};
use crate::auth::HandshakeAuth;
use crate::broker::Broker;
use crate::http::{self, Body};
use crate::metrics::Refusal;
use crate::origin;
use crate::session;
use crate::transport::Transport;

/// Bytes of `h` that open an `xhr_streaming` response: some browsers deliver nothing of a
/// streamed XHR before 2 KiB have arrived.
const XHR_STREAMING_PRELUDE: usize = 2048;

/// The transports, with what each needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    WebSocket,
    Xhr,
    XhrSend,
    XhrStreaming,
    EventSource,
    HtmlFile,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "websocket" => Kind::WebSocket,
            "xhr" => Kind::Xhr,
            "xhr_send" => Kind::XhrSend,
            "xhr_streaming" => Kind::XhrStreaming,
            "eventsource" => Kind::EventSource,
            "htmlfile" => Kind::HtmlFile,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::WebSocket => "websocket",
            Kind::Xhr => "xhr",
            Kind::XhrSend => "xhr_send",
            Kind::XhrStreaming => "xhr_streaming",
            Kind::EventSource => "eventsource",
            Kind::HtmlFile => "htmlfile",
        }
    }

    fn method(self) -> Method {
        match self {
            Kind::WebSocket | Kind::EventSource | Kind::HtmlFile => Method::GET,
            Kind::Xhr | Kind::XhrSend | Kind::XhrStreaming => Method::POST,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Xhr | Kind::XhrStreaming => "application/javascript;charset=UTF-8",
            Kind::EventSource => "text/event-stream;charset=UTF-8",
            Kind::HtmlFile => "text/html;charset=UTF-8",
            Kind::WebSocket | Kind::XhrSend => "text/plain;charset=UTF-8",
        }
    }
}

/// Serves a request under the SockJS path; `rest` is the path after it (`""`, `/info`,
/// `/123/abc/xhr`...). `permit` is the HTTP connection's, which a WebSocket takes over.
pub(crate) async fn handle(
    broker: Arc<Broker>,
    req: Request<Incoming>,
    rest: &str,
    peer: SocketAddr,
    permit: &Mutex<Option<Permit>>,
) -> Response<Body> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !origin::allowed(&broker.config.websocket, origin.as_deref(), host) {
        broker.metrics.refused(Refusal::Origin);
        return http::text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let cors = Cors::from(req.headers(), origin);
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let mut resp = match parts.as_slice() {
        [""] => match *req.method() {
            Method::GET => http::text(StatusCode::OK, "Welcome to SockJS!\n"),
            _ => http::text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"),
        },
        ["info"] => match *req.method() {
            Method::GET => info(),
            Method::OPTIONS => preflight("GET, OPTIONS"),
            _ => http::text(StatusCode::METHOD_NOT_ALLOWED, "GET or OPTIONS only\n"),
        },
        [page] if is_iframe_page(page) => iframe(
            &broker.config.sockjs.client_library_url,
            req.headers().get(header::IF_NONE_MATCH),
        ),
        ["websocket"] => return http::upgrade(broker, req, peer, permit),
        [server, session, transport] => {
            let Some(kind) = Kind::parse(transport) else {
                return http::text(StatusCode::NOT_FOUND, "not found\n");
            };
            if !valid_id(server) || !valid_id(session) {
                return http::text(StatusCode::NOT_FOUND, "not found\n");
            }
            if *req.method() == Method::OPTIONS && kind != Kind::WebSocket {
                preflight(if kind.method() == Method::GET {
                    "GET, OPTIONS"
                } else {
                    "POST, OPTIONS"
                })
            } else if *req.method() != kind.method() {
                http::text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "wrong method for this transport\n",
                )
            } else {
                let session = (*session).to_owned();
                transport_request(broker, req, kind, session, peer, permit).await
            }
        }
        _ => http::text(StatusCode::NOT_FOUND, "not found\n"),
    };
    cors.apply(resp.headers_mut());
    resp
}

fn is_iframe_page(page: &str) -> bool {
    page.strip_prefix("iframe")
        .and_then(|p| p.strip_suffix(".html"))
        .is_some_and(|mid| {
            mid.bytes().all(|b| {
                b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_') || b.is_ascii_lowercase()
            })
        })
}

/// Server and session ids: non-empty, no dots (as SockJS requires).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && !id.contains('.') && !id.contains(';')
}

async fn transport_request(
    broker: Arc<Broker>,
    req: Request<Incoming>,
    kind: Kind,
    id: String,
    peer: SocketAddr,
    permit: &Mutex<Option<Permit>>,
) -> Response<Body> {
    let existing = broker.sockjs.get(&id);
    if let Some(s) = &existing
        && (s.ip != peer.ip() || (s.kind != kind.name() && kind != Kind::XhrSend))
    {
        // Another address or another transport naming this session: not theirs.
        return http::text(StatusCode::NOT_FOUND, "not found\n");
    }
    match kind {
        Kind::XhrSend => match existing {
            Some(s) => xhr_send(&broker, req, &s).await,
            None => http::text(StatusCode::NOT_FOUND, "not found\n"),
        },
        Kind::WebSocket => {
            if existing.is_some() {
                return http::text(StatusCode::NOT_FOUND, "not found\n");
            }
            http::upgrade_sockjs(broker, req, peer, permit, id)
        }
        _ => {
            let (session, fresh) = match existing {
                Some(s) => (s, false),
                None => match open(&broker, &id, kind.name(), peer, handshake_of(&req), None) {
                    Ok(s) => (s, true),
                    Err(e) => return e.response(),
                },
            };
            receive(broker, kind, session, fresh, &req)
        }
    }
}

/// Credentials on the request that opens a session, as on a WebSocket handshake.
pub(crate) fn handshake_of<B>(req: &Request<B>) -> HandshakeAuth {
    HandshakeAuth {
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        access_token: req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("access_token="))
                .map(str::to_owned)
        }),
    }
}

/// Why a session could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// No connection slot (`max_connections`, `max_connections_per_ip`).
    Limit,
    /// A concurrent request took the id first.
    Taken,
}

impl OpenError {
    fn response(self) -> Response<Body> {
        match self {
            OpenError::Limit => http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection limit reached\n",
            ),
            OpenError::Taken => http::text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Opens a session and starts its STOMP session. `permit` is the connection slot it holds:
/// the upgraded connection's for the SockJS WebSocket, a new one for HTTP transports.
pub(crate) fn open(
    broker: &Arc<Broker>,
    id: &str,
    kind: &'static str,
    peer: SocketAddr,
    handshake: HandshakeAuth,
    permit: Option<Permit>,
) -> Result<Arc<SjSession>, OpenError> {
    let permit = match permit.map_or_else(|| broker.admission.admit(peer.ip()), Ok) {
        Ok(p) => p,
        Err(why) => {
            broker.metrics.refused(match why {
                Refused::Total => Refusal::Limit,
                Refused::PerIp => Refusal::PerIp,
            });
            return Err(OpenError::Limit);
        }
    };
    let cfg = &broker.config;
    // Half the outbox: a transfer buffer between the session and the polling requests (a
    // frame larger than it still goes alone), so a SockJS session stays within the memory a
    // connection may hold (docs/security.md).
    let (session, pipe) = SjSession::new(
        kind,
        peer.ip(),
        cfg.outbox.max_bytes / 2,
        Duration::from_millis(cfg.sockjs.heartbeat_ms),
        permit,
    );
    // An id already taken by a concurrent request: that one wins.
    match broker.sockjs.map.entry(id.to_owned()) {
        dashmap::Entry::Occupied(_) => return Err(OpenError::Taken),
        dashmap::Entry::Vacant(v) => {
            v.insert(Arc::clone(&session));
        }
    }
    debug!(%peer, session = id, kind, "SockJS session opened");
    broker.tracker.spawn(Box::pin(session::run(
        Arc::clone(broker),
        Transport::sockjs(pipe),
        peer,
        handshake,
    )));
    Ok(session)
}

async fn xhr_send(broker: &Broker, req: Request<Incoming>, s: &SjSession) -> Response<Body> {
    let limit = broker
        .config
        .sockjs
        .effective_max_send_size(&broker.config.stomp);
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return http::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the message exceeds sockjs.max_send_size\n",
            );
        }
        Err(_) => {
            return http::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to read message(s)\n",
            );
        }
    };
    let messages = match parse_payload(&body) {
        Ok(m) => m,
        Err(e) => return http::text(StatusCode::INTERNAL_SERVER_ERROR, e.text()),
    };
    if !s.deliver(messages).await {
        return http::text(StatusCode::NOT_FOUND, "not found\n");
    }
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    no_cache(r.headers_mut());
    r
}

/// A receiving request: a response that streams (or, for `xhr`, carries one) frame(s).
fn receive(
    broker: Arc<Broker>,
    kind: Kind,
    session: Arc<SjSession>,
    fresh: bool,
    req: &Request<Incoming>,
) -> Response<Body> {
    let callback = if kind == Kind::HtmlFile {
        match req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("c="))
                .filter(|c| {
                    !c.is_empty()
                        && c.len() <= 64
                        && c.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                })
                .map(str::to_owned)
        }) {
            Some(c) => Some(c),
            None => {
                return http::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "\"callback\" parameter required\n",
                );
            }
        }
    } else {
        None
    };
    let limit = broker.config.sockjs.streaming_bytes_limit;
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let shutdown = broker.shutdown.clone();
    broker.tracker.spawn(async move {
        let _ = tokio::select! {
            r = stream(kind, &session, fresh, callback.as_deref(), limit, &tx) => r,
            _ = shutdown.cancelled() => Ok(()),
        };
    });
    let mut r = Response::new(ChannelBody { rx }.boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    no_cache(r.headers_mut());
    r
}

/// Produces a receiving response's bytes into `tx`. Returns when the response is complete
/// (or its client went away: `Err`).
async fn stream(
    kind: Kind,
    session: &SjSession,
    fresh: bool,
    callback: Option<&str>,
    limit: usize,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), ()> {
    let send = |b: Bytes| async move { tx.send(b).await.map_err(|_| ()) };
    let receiving = match session.attach() {
        Ok(r) => r,
        Err(_) => {
            let close = frame::close(2010, "Another connection still open");
            send(wrap(kind, &close)).await?;
            return Ok(());
        }
    };
    match kind {
        Kind::XhrStreaming => {
            let mut prelude = vec![b'h'; XHR_STREAMING_PRELUDE];
            prelude.push(b'\n');
            send(Bytes::from(prelude)).await?;
        }
        Kind::EventSource => send(Bytes::from_static(b"\r\n")).await?,
        Kind::HtmlFile => send(Bytes::from(htmlfile_prelude(callback.unwrap_or("c")))).await?,
        _ => {}
    }
    if fresh {
        send(wrap(kind, frame::OPEN)).await?;
        if kind == Kind::Xhr {
            return Ok(());
        }
    }
    let mut sent = 0usize;
    loop {
        // A client that went away stops this request at once, so it neither holds the
        // session's receiving slot nor takes messages it cannot deliver.
        let next = tokio::select! {
            n = receiving.next() => n,
            _ = tx.closed() => return Err(()),
        };
        let (text, last, taken) = match next {
            Next::Messages(m) => (
                frame::messages(m.iter().map(String::as_str)),
                false,
                Some(m),
            ),
            Next::Heartbeat => (frame::HEARTBEAT.to_owned(), false, None),
            Next::Close(c) => (c, true, None),
        };
        let chunk = wrap(kind, &text);
        sent += chunk.len();
        if send(chunk).await.is_err() {
            if let Some(m) = taken {
                receiving.unread(m);
            }
            return Err(());
        }
        if last || kind == Kind::Xhr || sent >= limit {
            return Ok(());
        }
    }
}

fn wrap(kind: Kind, frame: &str) -> Bytes {
    match kind {
        Kind::EventSource => {
            Bytes::from(format!("data: {}\r\n\r\n", frame::for_eventsource(frame)))
        }
        Kind::HtmlFile => {
            // Inside a <script> element: no '<', '>' or '&' may appear raw, or a message
            // containing "</script>" would end the script and run its own.
            let mut quoted = String::new();
            frame::push_quoted(&mut quoted, frame);
            let quoted = quoted
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
            Bytes::from(format!("<script>\np({quoted});\n</script>\r\n"))
        }
        _ => Bytes::from(format!("{frame}\n")),
    }
}

fn htmlfile_prelude(callback: &str) -> String {
    let mut page = format!(
        "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  <script>\n    document.domain = document.domain;\n    var c = parent.{callback};\n    c.start();\n    function p(d) {{c.message(d);}};\n    window.onload = function() {{c.stop();}};\n  </script>"
    );
    // Browsers render nothing of a streamed page before 1 KiB.
    while page.len() < 1024 {
        page.push(' ');
    }
    page.push_str("\r\n");
    page
}

fn info() -> Response<Body> {
    let entropy = RandomState::new().build_hasher().finish() as u32;
    let body = format!(
        "{{\"entropy\":{entropy},\"origins\":[\"*:*\"],\"cookie_needed\":false,\"websocket\":true}}"
    );
    let mut r = Response::new(full(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    no_cache(r.headers_mut());
    r
}

/// The iframe page, with an ETag of its content (304 when the browser has it).
fn iframe(client_url: &str, if_none_match: Option<&HeaderValue>) -> Response<Body> {
    let page = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script>\n    document.domain = document.domain;\n    _sockjs_onload = function(){{SockJS.bootstrap_iframe();}};\n  </script>\n  <script src=\"{client_url}\"></script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
    );
    // A fixed-key hash: the same page gives the same tag across restarts and nodes.
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(page.as_bytes());
    let etag = format!("\"0{:016x}\"", hasher.finish());
    let not_modified = if_none_match.is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut r = if not_modified {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(full(Bytes::from(page)))
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000"),
    );
    h.insert("X-Frame-Options", HeaderValue::from_static("SAMEORIGIN"));
    r
}

fn preflight(methods: &'static str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("31536000"),
    );
    r
}

fn no_cache(h: &mut HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
}

fn full(b: Bytes) -> Body {
    Full::new(b).boxed_unsync()
}

fn empty() -> Body {
    full(Bytes::new())
}

/// CORS for cross-origin XHR. sockjs-client sends credentials, so the allowed origin is the
/// request's own (already checked against the allow-list), never `*`.
struct Cors {
    origin: Option<HeaderValue>,
    request_headers: Option<HeaderValue>,
}

impl Cors {
    fn from(h: &HeaderMap, origin: Option<String>) -> Self {
        Self {
            origin: origin.and_then(|o| HeaderValue::from_str(&o).ok()),
            request_headers: h.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
        }
    }

    fn apply(self, h: &mut HeaderMap) {
        let Some(origin) = self.origin else {
            return;
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        if let Some(rh) = self.request_headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, rh);
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// A response body fed by a producer task; ends when the producer finishes.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_pages() {
        assert!(valid_id("abc123"));
        assert!(!valid_id(""));
        assert!(!valid_id("a.b"));
        assert!(is_iframe_page("iframe.html"));
        assert!(is_iframe_page("iframe-1.6.1.html"));
        assert!(!is_iframe_page("iframe.htm"));
        assert!(!is_iframe_page("iframe<x>.html"));
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap(Kind::Xhr, "o"), Bytes::from_static(b"o\n"));
        assert_eq!(
            wrap(Kind::EventSource, "h"),
            Bytes::from_static(b"data: h\r\n\r\n")
        );
        assert_eq!(
            wrap(Kind::HtmlFile, "a[\"x\"]"),
            Bytes::from_static(b"<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n")
        );
        assert!(htmlfile_prelude("cb").len() >= 1024);
        let evil = wrap(Kind::HtmlFile, "a[\"</script><script>alert(1)</script>&\"]");
        let text = String::from_utf8(evil.to_vec()).unwrap();
        assert_eq!(text.matches("</script>").count(), 1, "{text}");
        assert!(text.contains("\\u003c/script\\u003e"), "{text}");
    }
}

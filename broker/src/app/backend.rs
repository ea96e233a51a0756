//! HTTP backends: a route with `forward = "http://…"` POSTs each message as JSON and publishes
//! what the response lists.
//!
//! Request body:
//! `{"kind":"send"|"subscribe","destination","path","captures":{..},"headers":{..},
//!   "body":"text"|null,"body_base64":"…"|null,"session","user":"name"|null}`
//! (`body` when the body is UTF-8, `body_base64` otherwise).
//!
//! Response: 204, an empty body, or `{"messages":[…]}` where each message has `body` or
//! `body_base64`, optional `headers` and `content_type`, and one of:
//! `"destination"` (a broker destination or `/user/{name}/…`), `"user"` + `"destination"`
//! (user-relative, e.g. `/queue/x`), `"to_sender": true` + `"destination"` (the sender's
//! `/user…`), or `"reply": true` (the subscriber, for subscribe routes).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::{AppMessage, Payload, Reply};

/// Largest backend response read.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// A pooled HTTP/1.1 client for backends.
#[derive(Clone)]
pub struct Backend {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    to_sender: bool,
    #[serde(default)]
    reply: bool,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    content_type: Option<String>,
}

impl Backend {
    /// A client whose calls give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// Forwards `msg` and converts the response. Errors are texts for the sender.
    pub async fn forward(&self, url: &str, kind: &str, msg: &AppMessage) -> Result<Reply, String> {
        let body = request_body(kind, msg);
        let req = Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "the backend URL is invalid".to_owned())?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|_| "the backend is unavailable".to_owned())?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|_| "the backend response could not be read".to_owned())?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                format!(
                    "the backend did not answer within {} ms",
                    self.timeout.as_millis()
                )
            })??;
        if !status.is_success() {
            return Err(format!("the backend answered {}", status.as_u16()));
        }
        if status == StatusCode::NO_CONTENT || bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Reply::None);
        }
        let parsed: Response = serde_json::from_slice(&bytes)
            .map_err(|_| "the backend response is not valid JSON".to_owned())?;
        parsed
            .messages
            .into_iter()
            .map(to_reply)
            .collect::<Result<Vec<_>, _>>()
            .map(Reply::Many)
    }
}

fn request_body(kind: &str, msg: &AppMessage) -> Vec<u8> {
    let headers: serde_json::Map<String, serde_json::Value> = msg
        .headers
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let captures: serde_json::Map<String, serde_json::Value> = msg
        .captures
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let (body, body_base64) = match std::str::from_utf8(&msg.body) {
        Ok(text) => (
            serde_json::Value::String(text.to_owned()),
            serde_json::Value::Null,
        ),
        Err(_) => (
            serde_json::Value::Null,
            serde_json::Value::String(BASE64.encode(&msg.body)),
        ),
    };
    let value = serde_json::json!({
        "kind": kind,
        "destination": msg.destination,
        "path": msg.path,
        "captures": captures,
        "headers": headers,
        "body": body,
        "body_base64": body_base64,
        "session": msg.session,
        "user": msg.user,
    });
    value.to_string().into_bytes()
}

fn to_reply(m: Message) -> Result<Reply, String> {
    let body = match (m.body, m.body_base64) {
        (Some(text), _) => Bytes::from(text),
        (None, Some(b64)) => Bytes::from(
            BASE64
                .decode(b64)
                .map_err(|_| "the backend sent invalid base64".to_owned())?,
        ),
        (None, None) => Bytes::new(),
    };
    let mut payload = Payload {
        body,
        headers: Vec::new(),
    };
    if let Some(ct) = m.content_type {
        payload.headers.push(("content-type".to_owned(), ct));
    }
    payload.headers.extend(m.headers);
    let missing = || "a backend message names no destination".to_owned();
    Ok(if m.reply {
        Reply::Default(payload)
    } else if m.to_sender {
        Reply::ToSender(m.destination.ok_or_else(missing)?, payload)
    } else if let Some(user) = m.user {
        Reply::ToUser {
            user,
            destination: m.destination.ok_or_else(missing)?,
            payload,
        }
    } else {
        Reply::To(m.destination.ok_or_else(missing)?, payload)
    })
}

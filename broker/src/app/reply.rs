//! What handlers return, following Spring's conventions for return values.

use bytes::Bytes;
use stomp_codec::Headers;

/// A message body with its headers (content-type among them).
#[derive(Clone, Debug, Default)]
pub struct Payload {
    /// The body.
    pub body: Bytes,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Payload {
    /// A body with a content type.
    pub fn new(body: impl Into<Bytes>, content_type: &str) -> Self {
        Self {
            body: body.into(),
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
        }
    }

    /// JSON, `application/json`.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::new(value.to_string(), "application/json")
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn headers(&self) -> Headers {
        let mut h = Headers::with_capacity(self.headers.len());
        for (n, v) in &self.headers {
            h.push(n.clone(), v.clone());
        }
        h
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::new(s, "text/plain;charset=UTF-8")
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::from(s.to_owned())
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Payload::new(b, "application/octet-stream")
    }
}

impl From<serde_json::Value> for Payload {
    fn from(v: serde_json::Value) -> Self {
        Payload::json(&v)
    }
}

/// What happens after a handler returns.
#[derive(Clone, Debug, Default)]
pub enum Reply {
    /// Nothing is sent.
    #[default]
    None,
    /// To the default destination: `/topic` + the route's path for a SEND handler (Spring's
    /// default for a return value without `@SendTo`), or the subscriber itself for a subscribe
    /// handler (`@SubscribeMapping`).
    Default(Payload),
    /// To a broker destination or `/user/{name}/...` (`@SendTo`).
    To(String, Payload),
    /// To every session of a user, at `/user{destination}`.
    ToUser {
        /// The user.
        user: String,
        /// User-relative destination, e.g. `/queue/notifications`.
        destination: String,
        /// The message.
        payload: Payload,
    },
    /// To the sender's `/user{destination}` (`@SendToUser`).
    ToSender(String, Payload),
    /// An error for the sender, delivered on its errors destination
    /// (`@MessageExceptionHandler` + `@SendToUser("/queue/errors")`).
    Error(String),
    /// Several of the above, in order.
    Many(Vec<Reply>),
}

/// Conversion of handler return values into a [`Reply`].
pub trait IntoReply {
    /// Converts.
    fn into_reply(self) -> Reply;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Reply {
        self
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Reply {
        Reply::None
    }
}

impl IntoReply for Payload {
    fn into_reply(self) -> Reply {
        Reply::Default(self)
    }
}

impl IntoReply for String {
    fn into_reply(self) -> Reply {
        Reply::Default(self.into())
    }
}

impl IntoReply for &'static str {
    fn into_reply(self) -> Reply {
        Reply::Default(self.into())
    }
}

impl IntoReply for serde_json::Value {
    fn into_reply(self) -> Reply {
        Reply::Default(self.into())
    }
}

impl<T: IntoReply> IntoReply for Option<T> {
    fn into_reply(self) -> Reply {
        self.map(IntoReply::into_reply).unwrap_or_default()
    }
}

impl<T: IntoReply, E: std::fmt::Display> IntoReply for Result<T, E> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(v) => v.into_reply(),
            Err(e) => Reply::Error(e.to_string()),
        }
    }
}

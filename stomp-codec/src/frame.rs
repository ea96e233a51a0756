//! The frame value shared by the decoder and the encoder.

use bytes::Bytes;

use crate::{Command, Headers};

/// One STOMP frame: command, ordered headers and body.
///
/// Decoded frames borrow nothing: headers and body are [`Bytes`] slices of the input
/// buffer, so a frame can be moved to another task while the connection keeps reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The command line.
    pub command: Command,
    /// Headers in wire order (unescaped).
    pub headers: Headers,
    /// The body, without the terminating NUL. Empty when the frame has none.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and an empty body.
    pub fn new(command: Command) -> Self {
        Self {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Builder: appends a header.
    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Builder: sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder() {
        let f = Frame::new(Command::Send)
            .header("destination", "/q")
            .with_body(&b"x"[..]);
        assert_eq!(f.command, Command::Send);
        assert_eq!(f.headers.get("destination"), Some(&b"/q"[..]));
        assert_eq!(f.body, Bytes::from_static(b"x"));
    }
}

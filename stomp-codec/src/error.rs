//! Decoder errors.
//!
//! Every error is fatal for the connection (the peer's byte stream can no longer be
//! framed reliably), so each variant is a cheap, `Copy` value whose `Display` text is
//! short enough to become the `message` header of the ERROR frame sent before closing.

use crate::Command;

/// Why a byte stream could not be decoded. Display texts are user-facing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The command line is not one of the fifteen STOMP commands (exact case).
    #[error("unknown or malformed command")]
    UnknownCommand,
    /// A header line has no `:` or an empty name.
    #[error("malformed header line: a header must be of the form name:value")]
    InvalidHeader,
    /// An undefined escape sequence (1.1+), or a trailing backslash.
    #[error("invalid escape sequence in header")]
    InvalidEscape,
    /// A `\r` not followed by `\n`.
    #[error("carriage return must be followed by a line feed")]
    InvalidEol,
    /// The command line, a header name or a header value is not UTF-8.
    #[error("command or header is not valid UTF-8")]
    InvalidUtf8,
    /// `content-length` is not a non-negative decimal integer.
    #[error("invalid content-length header")]
    InvalidContentLength,
    /// `content-length` was given and the byte after the body is not NUL.
    #[error("frame must be terminated with a NUL octet")]
    MissingNul,
    /// A non-empty body on a command that allows none.
    #[error("{} frame must not have a body", .0.as_str())]
    BodyNotAllowed(Command),
    /// The frame (command, headers, body and NUL) is larger than
    /// [`DecoderConfig::max_frame_size`](crate::DecoderConfig::max_frame_size).
    #[error("frame exceeds the maximum frame size of {limit} bytes")]
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More header lines than
    /// [`DecoderConfig::max_header_lines`](crate::DecoderConfig::max_header_lines).
    #[error("frame exceeds the maximum of {limit} header lines")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A command or header line longer than
    /// [`DecoderConfig::max_header_line_len`](crate::DecoderConfig::max_header_line_len).
    #[error("header line exceeds the maximum length of {limit} bytes")]
    HeaderLineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// `content-length` above the limit (including values that overflow `u64`), or an
    /// unterminated body longer than
    /// [`DecoderConfig::max_body_size`](crate::DecoderConfig::max_body_size).
    #[error("body exceeds the maximum body size of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
}

impl DecodeError {
    /// Whether the error is a configured limit (as opposed to malformed input); useful
    /// for metrics and log levels.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DecodeError::FrameTooLarge { .. }
                | DecodeError::TooManyHeaders { .. }
                | DecodeError::HeaderLineTooLong { .. }
                | DecodeError::BodyTooLarge { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small() {
        assert!(std::mem::size_of::<DecodeError>() <= 24);
    }

    #[test]
    fn messages_name_the_limit() {
        assert_eq!(
            DecodeError::FrameTooLarge { limit: 65536 }.to_string(),
            "frame exceeds the maximum frame size of 65536 bytes"
        );
        assert_eq!(
            DecodeError::BodyNotAllowed(Command::Subscribe).to_string(),
            "SUBSCRIBE frame must not have a body"
        );
        assert!(DecodeError::BodyTooLarge { limit: 1 }.is_limit());
        assert!(!DecodeError::MissingNul.is_limit());
    }
}

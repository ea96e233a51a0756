//! `stomp-codec`: an I/O-free, incremental STOMP 1.0–1.2 frame decoder and encoder.
//!
//! Every byte that reaches Stompbox passes through this crate, so it is written to be
//! fast, allocation-light and impossible to crash from the wire:
//!
//! - [`Decoder`] turns a growing [`bytes::BytesMut`] into [`Decoded`] items
//!   (frames and heart-beats). "Need more bytes" is `Ok(None)` and leaves the
//!   buffer untouched; bodies are zero-copy slices of the input; every
//!   [limit](DecoderConfig) is checked before more input has to be buffered.
//! - [`encode_frame`] writes any [`Frame`] with the escaping of the negotiated
//!   [`Version`].
//! - [`PreparedMessage`] is the broker's fan-out hot path: the part of a MESSAGE
//!   frame shared by all subscribers is escaped once, and each delivery only adds
//!   what differs (subscription, ack id).
//!
//! Module map (one job each): [`command`](Command) names, [`version`](Version)
//! numbers, header list, frame value, escaping, limits, header-block parsing (nom),
//! decoding, encoding, prepared MESSAGE, errors.
//!
//! ```
//! use bytes::BytesMut;
//! use stomp_codec::{Command, Decoded, Decoder, DecoderConfig, Frame, Version, encode_frame};
//!
//! let mut out = BytesMut::new();
//! let frame = Frame::new(Command::Send)
//!     .header("destination", "/topic/a:b")
//!     .with_body("hello");
//! encode_frame(&frame, Version::V1_2, &mut out);
//! assert_eq!(&out[..], b"SEND\ndestination:/topic/a\\cb\ncontent-length:5\n\nhello\0");
//!
//! let mut decoder = Decoder::new(DecoderConfig::default());
//! match decoder.decode(&mut out)? {
//!     Some(Decoded::Frame(f)) => assert_eq!(f, frame.header("content-length", "5")),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), stomp_codec::DecodeError>(())
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![deny(missing_docs)]

mod command;
mod config;
mod decode;
mod encode;
mod error;
mod escape;
mod frame;
mod headers;
mod message;
mod parse;
mod version;

pub use command::Command;
pub use config::DecoderConfig;
pub use decode::{Decoded, Decoder};
pub use encode::encode_frame;
pub use error::DecodeError;
pub use frame::Frame;
pub use headers::Headers;
pub use message::{Delivery, PreparedMessage};
pub use version::Version;

/// The README's examples, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

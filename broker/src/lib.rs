//! The Stompbox broker: STOMP 1.0–1.2 over WebSocket and TCP.
//!
//! How a SEND travels: a listener (`server`, `http`) accepts the connection and hands a
//! `transport` to a `session` task; the session decodes frames with `stomp_codec`, routes the
//! destination (`router`) and publishes through `broker::Broker::publish`, which prepares the
//! message once (`message`) and pushes it into each matching subscriber's bounded `outbox`
//! (`registry` for broadcast destinations, `queue` for competing consumers). Each subscriber's
//! session drains its outbox in one swap, writes the batch and flushes once.
//!
//! Embedding: build a [`config::Config`], call [`Server::start`], and stop it with
//! [`Server::shutdown`].

#![warn(clippy::print_stdout)]

pub mod access;
pub mod admission;
pub mod app;
pub mod auth;
pub mod bench;
pub mod broker;
pub mod budget;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod history;
mod http;
pub mod message;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod pattern;
pub mod presence;
pub mod queue;
pub mod registry;
pub mod router;
pub mod server;
pub mod session;
pub mod sockjs;
mod static_files;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod wire;
mod write_queue;

pub use app::{AppContext, AppMessage, AppRouter, Payload, Reply};
pub use broker::Broker;
pub use config::Config;
pub use server::Server;

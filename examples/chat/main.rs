//! A chat server built on Stompbox's Rust handler API, with its web page.
//!
//! Run it with `cargo run --example chat`, then open http://127.0.0.1:8080/ in two browser
//! windows. The page (in `examples/chat/web/`) talks to these routes:
//!
//! - SEND `/app/chat/{room}` with `{"nick","text"}`: the handler stamps the message and its
//!   return value goes to `/topic/chat/{room}` (Spring's default for `@MessageMapping`).
//! - SEND `/app/join/{room}` with `{"nick"}`: a join notice goes to `/topic/chat/{room}` and a
//!   personal welcome to the sender's `/user/queue/welcome` (`@SendToUser`).
//! - SUBSCRIBE `/app/rooms`: answered once with the list of rooms (`@SubscribeMapping`).

use std::time::{SystemTime, UNIX_EPOCH};

use broker::{AppContext, AppMessage, AppRouter, Payload, Reply};
use serde_json::{Value, json};

/// The chat's routes.
pub fn router() -> AppRouter {
    AppRouter::new()
        .route("/chat/{room}", chat)
        .route("/join/{room}", join)
        .subscribe("/rooms", rooms)
}

fn nick_of(msg: &AppMessage) -> String {
    let v: Value = serde_json::from_slice(&msg.body).unwrap_or(Value::Null);
    let nick = v.get("nick").and_then(Value::as_str).unwrap_or("anonymous");
    nick.chars().take(32).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn chat(msg: AppMessage, _ctx: AppContext) -> Result<Value, String> {
    let v: Value =
        serde_json::from_slice(&msg.body).map_err(|_| "a chat message is JSON".to_owned())?;
    let text: String = v
        .get("text")
        .and_then(Value::as_str)
        .ok_or("a chat message has a text")?
        .chars()
        .take(2000)
        .collect();
    Ok(json!({
        "type": "message",
        "room": msg.capture("room"),
        "nick": nick_of(&msg),
        "text": text,
        "at": now_ms(),
    }))
}

async fn join(msg: AppMessage, ctx: AppContext) -> Reply {
    let room = msg.capture("room").unwrap_or("lobby").to_owned();
    let nick = nick_of(&msg);
    let notice = json!({"type": "join", "room": room, "nick": nick, "at": now_ms()});
    let welcome = json!({
        "type": "welcome",
        "room": room,
        "text": format!("Welcome to #{room}, {nick}!"),
        "session": msg.session,
    });
    let _ = ctx.publish(&format!("/topic/chat/{room}"), notice);
    Reply::ToSender("/queue/welcome".to_owned(), Payload::json(&welcome))
}

async fn rooms(_msg: AppMessage, _ctx: AppContext) -> Value {
    json!(["lobby", "rust", "random"])
}

#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    let path = std::env::var("STOMPBOX_CHAT_CONFIG").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat/broker.toml").to_owned()
    });
    broker::telemetry::init(0, broker::telemetry::LogFormat::Text);
    let mut config = match broker::Config::load(std::path::Path::new(&path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Each room keeps its last 100 messages, so a page that was offline for a moment (a
    // phone switching networks) catches up when it reconnects (web/stompbox-resume.js).
    if !config
        .destinations
        .iter()
        .any(|d| d.pattern.starts_with("/topic/chat"))
    {
        config.destinations.push(broker::config::DestinationRule {
            pattern: "/topic/chat/*".into(),
            history: 100,
            ..Default::default()
        });
    }
    if let Some(dir) = &config.http.static_dir
        && dir.is_relative()
    {
        let base = std::path::Path::new(&path)
            .parent()
            .unwrap_or(std::path::Path::new("."));
        config.http.static_dir = Some(base.join(dir));
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match broker::Server::start_with(config, router()).await {
            Ok(server) => {
                eprintln!("chat on http://{}/", server.http_addr());
                server
                    .run_until(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await;
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot start: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

//! A lean reference server, built only to compare Stompbox against: the least a hand-written
//! tokio-tungstenite STOMP fan-out needs (CONNECT, SUBSCRIBE, SEND → MESSAGE to every
//! subscriber of the exact destination, batched writes), none of what makes a broker (no
//! acks, receipts, heart-beats, limits beyond a bounded queue per connection, patterns,
//! auth, metrics, shutdown). If Stompbox, with all of that, costs no more per delivery than
//! this, the features are not paid for on the hot path.
//!
//! `cargo run --release --example reference_server -- 127.0.0.1:18090`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use stomp_codec::{Command, Decoded, Decoder, DecoderConfig, Frame, Version, encode_frame};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Subscribers = RwLock<HashMap<String, Vec<(u64, Bytes, mpsc::Sender<Utf8Bytes>)>>>;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("reference server on {}", listener.local_addr()?);
        let topics: Arc<Subscribers> = Arc::default();
        let ids = Arc::new(AtomicU64::new(1));
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream, Arc::clone(&topics), Arc::clone(&ids)));
        }
    })
}

// tungstenite's handshake callback must return its `ErrorResponse`, which is large.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, topics: Arc<Subscribers>, ids: Arc<AtomicU64>) {
    let echo = |req: &Request, mut resp: Response| {
        let offered = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').map(str::trim).find(|p| p.ends_with(".stomp")))
            .map(str::to_owned);
        if let Some(p) = offered.and_then(|p| HeaderValue::from_str(&p).ok()) {
            resp.headers_mut().insert("Sec-WebSocket-Protocol", p);
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(64 * 1024);
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, echo, Some(config)).await
    else {
        return;
    };
    let me = ids.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(1024);
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut buf = BytesMut::new();
    let mut mine: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            msg = source.next() => {
                let data: Bytes = match msg {
                    Some(Ok(Message::Text(t))) => t.into(),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                buf.extend_from_slice(&data);
                while let Ok(Some(d)) = decoder.decode(&mut buf) {
                    let Decoded::Frame(f) = d else { continue };
                    match f.command {
                        Command::Connect | Command::Stomp => {
                            let reply = Frame::new(Command::Connected).header("version", "1.2");
                            let mut out = BytesMut::new();
                            encode_frame(&reply, Version::V1_2, &mut out);
                            if let Ok(t) = Utf8Bytes::try_from(out.freeze()) {
                                let _ = sink.send(Message::Text(t)).await;
                            }
                        }
                        Command::Subscribe => {
                            let (Some(dest), Some(id)) = (f.headers.get_str("destination"), f.headers.get_bytes("id")) else { continue };
                            topics
                                .write()
                                .unwrap_or_else(|p| p.into_inner())
                                .entry(dest.to_owned())
                                .or_default()
                                .push((me, id.clone(), tx.clone()));
                            mine.push(dest.to_owned());
                            if let Some(r) = f.headers.get_bytes("receipt") {
                                let reply = Frame::new(Command::Receipt).header("receipt-id", r.clone());
                                let mut out = BytesMut::new();
                                encode_frame(&reply, Version::V1_2, &mut out);
                                if let Ok(t) = Utf8Bytes::try_from(out.freeze()) {
                                    let _ = sink.send(Message::Text(t)).await;
                                }
                            }
                        }
                        Command::Send => {
                            let Some(dest) = f.headers.get_str("destination") else { continue };
                            let id = ids.fetch_add(1, Ordering::Relaxed).to_string();
                            let map = topics.read().unwrap_or_else(|p| p.into_inner());
                            let Some(subs) = map.get(dest) else { continue };
                            // One encoding per distinct subscription id, shared by reference.
                            let mut cache: Vec<(Bytes, Utf8Bytes)> = Vec::new();
                            for (_, sub_id, sender) in subs {
                                let frame = match cache.iter().find(|(s, _)| s == sub_id) {
                                    Some((_, f)) => f.clone(),
                                    None => {
                                        let m = Frame::new(Command::Message)
                                            .header("subscription", sub_id.clone())
                                            .header("destination", dest.to_owned())
                                            .header("message-id", id.clone())
                                            .with_body(f.body.clone());
                                        let mut out = BytesMut::new();
                                        encode_frame(&m, Version::V1_2, &mut out);
                                        let Ok(t) = Utf8Bytes::try_from(out.freeze()) else { continue };
                                        cache.push((sub_id.clone(), t.clone()));
                                        t
                                    }
                                };
                                let _ = sender.try_send(frame);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Some(first) = rx.recv() => {
                // Batched writes: everything queued goes out with one flush.
                if sink.feed(Message::Text(first)).await.is_err() { break }
                while let Ok(more) = rx.try_recv() {
                    if sink.feed(Message::Text(more)).await.is_err() { break }
                }
                if sink.flush().await.is_err() { break }
            }
        }
    }
    let mut map = topics.write().unwrap_or_else(|p| p.into_inner());
    for dest in mine {
        if let Some(v) = map.get_mut(&dest) {
            v.retain(|(c, _, _)| *c != me);
        }
    }
}

//! TLS: wss://, STOMP over TLS, HTTPS for /healthz, and a certificate reload on SIGHUP that
//! leaves established connections alone. Clients trust only the test CA in tests/keys.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;

use broker::config::TlsConfig;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn connector() -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(key_path("tls-ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls(addr: std::net::SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector()
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with a certificate the test CA signed")
}

/// The leaf certificate the server presented.
fn served_cert(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf(name: &str) -> Vec<u8> {
    CertificateDer::pem_file_iter(key_path(name))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

async fn wss(addr: std::net::SocketAddr) -> WebSocketStream<TlsStream<TcpStream>> {
    let mut req = format!("wss://localhost:{}/ws", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(req, tls(addr).await)
        .await
        .expect("WebSocket over TLS");
    ws
}

/// The next STOMP frame's text (heart-beat EOLs skipped).
async fn next_frame(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("well-formed");
        if let Message::Text(t) = msg
            && t.as_str() != "\n"
        {
            return t.as_str().to_owned();
        }
    }
}

/// A subscribed STOMP session over wss://.
async fn stomp_over_wss(addr: std::net::SocketAddr) -> WebSocketStream<TlsStream<TcpStream>> {
    let mut ws = wss(addr).await;
    ws.send(Message::text("CONNECT\naccept-version:1.2\nhost:x\n\n\0"))
        .await
        .unwrap();
    assert!(next_frame(&mut ws).await.starts_with("CONNECTED\n"));
    ws.send(Message::text(
        "SUBSCRIBE\nid:0\ndestination:/topic/secure\nreceipt:r\n\n\0",
    ))
    .await
    .unwrap();
    assert!(next_frame(&mut ws).await.starts_with("RECEIPT\n"));
    ws
}

/// Sends on `ws` and expects the message back (it is subscribed to the same topic).
async fn round_trip(ws: &mut WebSocketStream<TlsStream<TcpStream>>, body: &str) {
    ws.send(Message::text(format!(
        "SEND\ndestination:/topic/secure\n\n{body}\0"
    )))
    .await
    .unwrap();
    let f = next_frame(ws).await;
    assert!(
        f.starts_with("MESSAGE\n") && f.ends_with(&format!("\n\n{body}\0")),
        "{f:?}"
    );
}

#[tokio::test]
async fn wss_stomp_over_tls_and_https_healthz() {
    let server = start(|c| {
        c.tls = Some(TlsConfig {
            cert_file: key_path("tls-server1.pem"),
            key_file: key_path("tls-server1.key"),
            websocket: true,
            tcp: true,
        });
    })
    .await;
    let mut ws = stomp_over_wss(server.http_addr()).await;
    round_trip(&mut ws, "over wss").await;

    // STOMP over TLS on the TCP listener.
    let mut s = tls(server.tcp_addr().unwrap()).await;
    assert_eq!(served_cert(&s), leaf("tls-server1.pem"));
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"CONNECTED\n"));

    // HTTPS health check.
    let mut h = tls(server.http_addr()).await;
    h.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, h.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Plain text to a TLS port is a failed handshake, counted; nobody else notices.
    let mut plain = TcpStream::connect(server.http_addr()).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut sink)).await;
    eventually("the failed handshake is counted", || async {
        server
            .broker()
            .metrics
            .render()
            .contains("stompbox_connections_refused_total{reason=\"tls_handshake\"} 1")
    })
    .await;
    round_trip(&mut ws, "still fine").await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = std::env::temp_dir().join(format!("stompbox-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(key_path("tls-server1.pem"), &cert).unwrap();
    std::fs::copy(key_path("tls-server1.key"), &key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nwebsocket = \"127.0.0.1:{port}\"\n\n[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n"
        ),
    )
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Process::new(env!("CARGO_BIN_EXE_stompbox"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    // The log, line by line, to see when a reload has been attempted.
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.0.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the binary listens", || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;

    let mut established = stomp_over_wss(addr).await;
    assert_eq!(served_cert(&tls(addr).await), leaf("tls-server1.pem"));

    std::fs::copy(key_path("tls-server2.pem"), &cert).unwrap();
    std::fs::copy(key_path("tls-server2.key"), &key).unwrap();
    let hup = Process::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("new handshakes get the new certificate", || async {
        served_cert(&tls(addr).await) == leaf("tls-server2.pem")
    })
    .await;
    // The connection made before the reload is still served.
    round_trip(&mut established, "after reload").await;

    // A broken file on reload keeps the current certificate.
    std::fs::write(&key, "not a key").unwrap();
    let hup = Process::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("the failed reload is logged", || async {
        log.lock().unwrap().contains("TLS reload failed")
    })
    .await;
    assert_eq!(served_cert(&tls(addr).await), leaf("tls-server2.pem"));
    round_trip(&mut established, "after a failed reload").await;
    let _ = std::fs::remove_dir_all(&dir);
}

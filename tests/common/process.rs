//! The `stompbox` binary as a child process, for hostile-client tests that measure the whole
//! broker: its resident memory (VmRSS from `/proc/<pid>/status`) and its HTTP endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{WAIT, free_port};

/// The `stompbox` child process; killed when dropped, so a failing test leaves nothing behind.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// The WebSocket/HTTP listener.
    pub http: SocketAddr,
    /// The raw STOMP TCP listener.
    pub tcp: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
    /// The largest VmRSS seen by `sample_rss`, in KiB.
    pub peak_rss_kib: u64,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl BrokerProcess {
    /// Starts `bin` with the configuration `config(http_port, tcp_port)` on two free ports and
    /// waits (at most 10 s) until /healthz answers.
    pub async fn start(bin: &str, name: &str, config: impl Fn(u16, u16) -> String) -> Self {
        let http = free_port();
        let mut tcp = free_port();
        for _ in 0..10 {
            if tcp != http {
                break;
            }
            tcp = free_port();
        }
        assert_ne!(tcp, http, "two distinct free ports");
        let dir =
            std::env::temp_dir().join(format!("stompbox-{name}-{}-{http}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("broker.toml");
        std::fs::write(&cfg, config(http, tcp)).unwrap();
        let log = dir.join("broker.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Process::new(bin)
            .arg("--config")
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("stompbox starts");
        let mut b = Self {
            pid: child.id(),
            child,
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            tcp: SocketAddr::from(([127, 0, 0, 1], tcp)),
            dir,
            log,
            peak_rss_kib: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = b.child.try_wait().unwrap() {
                panic!("stompbox exited at start ({status}):\n{}", b.log_text());
            }
            if let Some((200, _)) = http_get(b.http, "/healthz").await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stompbox did not answer /healthz within 10 s:\n{}",
                b.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        b
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// What the broker logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Samples VmRSS, records the peak, asserts the process lives, and returns the sample.
    pub fn sample_rss(&mut self, when: &str) -> u64 {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("stompbox died ({status}) {when}:\n{}", self.log_text());
        }
        let kib = rss_kib(self.pid);
        self.peak_rss_kib = self.peak_rss_kib.max(kib);
        eprintln!(
            "[process] {when}: VmRSS {:.1} MiB (peak {:.1} MiB)",
            kib as f64 / 1024.0,
            self.peak_rss_kib as f64 / 1024.0
        );
        kib
    }
}

/// The resident set of a process, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// A plain HTTP GET with `Connection: close`: status and whole response, or `None` if the
/// connection was refused or broke or took longer than `WAIT`.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        Some((status, text))
    };
    timeout(WAIT, exchange).await.ok().flatten()
}

/// A STOMP 1.2 session over WebSocket at `url`, within `WAIT`.
pub async fn ws_session_at(url: &str) -> broker::client::Client {
    let mut c = timeout(WAIT, broker::client::Client::websocket(url, &[]))
        .await
        .expect("websocket handshake in time")
        .expect("websocket connects");
    c.connect(&[]).await.expect("CONNECTED");
    c
}

/// How long a canary's round trip may take, whatever attackers do: a deadline, not a
/// performance target.
pub const CANARY_DEADLINE: Duration = Duration::from_secs(1);

/// A well-behaved client of the hostile suites: it publishes to a topic it subscribes to and
/// must get its message back within `CANARY_DEADLINE`.
#[derive(Debug)]
pub struct Canary {
    client: broker::client::Client,
    sent: u32,
}

impl Canary {
    /// Connects and subscribes to `/topic/canary`.
    pub async fn new(url: &str) -> Self {
        let mut client = ws_session_at(url).await;
        client
            .subscribe("canary", "/topic/canary", &[])
            .await
            .expect("canary subscribes");
        Self { client, sent: 0 }
    }

    /// One round trip; panics naming `when` if it fails or misses its deadline.
    pub async fn round_trip(&mut self, when: &str) {
        self.sent += 1;
        let body = format!("canary {}", self.sent);
        let started = Instant::now();
        let c = &mut self.client;
        let exchange = async {
            c.publish("/topic/canary", &body).await?;
            c.expect(stomp_codec::Command::Message, CANARY_DEADLINE)
                .await
        };
        let m = match timeout(CANARY_DEADLINE, exchange).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => panic!("canary failed {when}: {e}"),
            Err(_) => panic!("canary got no answer within {CANARY_DEADLINE:?} {when}"),
        };
        assert_eq!(
            m.body,
            bytes::Bytes::from(body),
            "canary's own message {when}"
        );
        eprintln!("[canary] {when}: round trip {:?}", started.elapsed());
    }
}

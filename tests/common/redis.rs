//! Fixtures for the cluster tests: a real `redis-server` and `stompbox` processes on free
//! 127.0.0.1 ports, killed when dropped. Included by the cluster test files with `#[path]`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command as Process, Stdio};

use std::time::Duration;

use broker::client::{Client, Event};
use stomp_codec::Command;

use crate::common::{WAIT, eventually, free_port};

pub const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn wait_port(port: u16) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the process listens", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
}

/// A redis-server with `args` (which say where it listens), once `port` accepts.
pub async fn redis_server(port: u16, args: &[String]) -> Proc {
    let child = Process::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on the PATH (apt-get install redis-server)");
    let p = Proc(child);
    wait_port(port).await;
    p
}

/// A plain redis-server on `port`.
pub async fn redis(port: u16) -> Proc {
    redis_server(port, &["--port".into(), port.to_string()]).await
}

pub struct Node {
    /// Killed with the node.
    _proc: Proc,
    pub port: u16,
}

impl Node {
    pub async fn start(name: &str, redis_port: u16, dir: &std::path::Path, users: &str) -> Self {
        let config = format!(
            "[[destinations]]\npattern = \"/queue/**\"\nmode = \"queue\"\n\n\
             [[destinations]]\npattern = \"/topic/log/*\"\nhistory = 5\n\n\
             [[destinations]]\npattern = \"/topic/last/*\"\nretain_last = true\n\n\
             [[destinations]]\npattern = \"/topic/room/*\"\npresence = true\n\n\
             [cluster]\nredis = \"redis://127.0.0.1:{redis_port}\"\nnode_id = \"{name}\"\n\
             reconnect_max_ms = 200\nclaim_idle_ms = 1000\n\n{users}"
        );
        Self::spawn(name, dir, &config, &[]).await
    }

    /// A node with `config` (all but `[server]`) and `env`, once it listens.
    pub async fn spawn(
        name: &str,
        dir: &std::path::Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\nwebsocket = \"127.0.0.1:{port}\"\nshutdown_grace_ms = 1000\n\n{config}"
            ),
        )
        .unwrap();
        let child = Process::new(BIN)
            .arg("--config")
            .arg(&path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc(child);
        wait_port(port).await;
        Self { _proc: proc, port }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    pub async fn client(&self, headers: &[(&str, &str)]) -> Client {
        let mut c = Client::websocket(&self.url(), &[]).await.unwrap();
        c.connect(headers).await.unwrap();
        c
    }
}

/// The bodies of the next MESSAGE frames on `c` until one with body `last` (bounded).
pub async fn bodies_until(c: &mut Client, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let f = c.expect(Command::Message, WAIT).await.unwrap();
        let body = String::from_utf8_lossy(&f.body).into_owned();
        let done = body == last;
        got.push(body);
        if done {
            return got;
        }
    }
    panic!("never got {last}");
}

pub fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("stompbox-cluster-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Node {
    /// The node's process id (to read its memory use).
    pub fn pid(&self) -> u32 {
        self._proc.0.id()
    }
}

/// The resident set size of process `pid`, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// `redis-cli` against the Redis on `port`: its output, trimmed.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Process::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli on the PATH (apt-get install redis-server)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until a message published on `from` to `destination` reaches `to` (subscribed to
/// it): Redis subscriptions are set up asynchronously after SUBSCRIBE's receipt. Returns
/// once the link works, having drained the probes.
pub async fn linked(from: &mut Client, to: &mut Client, destination: &str) {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for i in 0..200 {
        let probe = format!("probe-{call}-{i}");
        from.publish(destination, &probe).await.unwrap();
        if let Ok(Event::Frame(f)) = to.next_event(Duration::from_millis(50)).await
            && f.command == Command::Message
        {
            // Drain the probes still in flight, up to a marker.
            let marker = format!("marker-{call}-{i}");
            from.publish(destination, &marker).await.unwrap();
            bodies_until(to, &marker).await;
            return;
        }
    }
    panic!("no link from one node to the other on {destination}");
}

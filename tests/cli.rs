//! The `stompbox` binary: config commands, running with a config file, SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stompbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn print_config_prints_the_documented_defaults_which_check_clean() {
    let out = Command::new(BIN).arg("print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("websocket = \"127.0.0.1:8080\""));
    let p = temp_file("defaults.toml", &text);
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_reports_line_and_column() {
    let p = temp_file(
        "bad.toml",
        "[server]\nwebsocket = \"127.0.0.1:1\"\n\n[stomp]\nmax_frame_sise = 5\n",
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("max_frame_sise"), "{err}");
}

#[tokio::test]
async fn runs_with_a_config_and_exits_cleanly_on_sigterm() {
    let port = free_port();
    let cfg = temp_file(
        "run.toml",
        &format!("[server]\nwebsocket = \"127.0.0.1:{port}\"\nshutdown_grace_ms = 2000\n"),
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the binary listens", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let mut c = broker::client::Client::websocket(&format!("ws://{addr}/ws"), &[])
        .await
        .unwrap();
    c.connect(&[]).await.unwrap();
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(c.closed(WAIT).await.unwrap(), Some(1001));
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("exited within the grace period")
    .unwrap()
    .unwrap();
    assert!(status.success());
}

#[test]
fn check_config_notes_what_a_cluster_keeps_per_node() {
    let p = temp_file(
        "cluster.toml",
        "[[destinations]]\npattern = \"/queue/**\"\nmode = \"queue\"\n\n[cluster]\nredis = \"redis://127.0.0.1:6379\"\n",
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": ok"), "{text}");
    assert!(
        text.contains("note: cluster: queue destinations live in Redis streams"),
        "{text}"
    );
    assert!(text.contains("at-least-once"), "{text}");
    let bad = temp_file("cluster-bad.toml", "[cluster]\nredis = \"http://x\"\n");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.redis"));
}

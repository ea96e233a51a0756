//! `stompbox bench` against a broker: every scenario runs, counts what it should, and reads the
//! server's CPU and memory from /proc.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_stompbox");

async fn bench(server: &broker::Server, args: &[&str]) -> Value {
    let url = ws_url(server);
    let pid = std::process::id().to_string();
    let mut all: Vec<String> = vec!["bench".into()];
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend(["--url".into(), url, "--pid".into(), pid, "--quiet".into()]);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::task::spawn_blocking(move || Command::new(BIN).args(&all).output()),
    )
    .await
    .expect("bench finishes")
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

fn assert_complete(r: &Value) {
    assert_eq!(r["delivered"], r["expected"], "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicated"], 0, "{r}");
    assert_eq!(r["reordered"], 0, "{r}");
    assert!(r["latency_us"]["p99"].as_u64().unwrap() > 0, "{r}");
    assert!(r["server"]["cpu_s"].as_f64().is_some(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_pairs_latency_and_idle() {
    let server = start(|_| {}).await;
    let r = bench(
        &server,
        &[
            "fanout",
            "--subscribers",
            "20",
            "--messages",
            "500",
            "--window",
            "50",
        ],
    )
    .await;
    assert_complete(&r);
    assert_eq!(r["expected"], 10_000);

    let r = bench(
        &server,
        &["pairs", "--pairs", "5", "--messages", "300", "--binary"],
    )
    .await;
    assert_complete(&r);
    assert_eq!(r["expected"], 1_500);

    let r = bench(
        &server,
        &[
            "latency",
            "--shape",
            "pairs",
            "--pairs",
            "3",
            "--rate",
            "500",
            "--messages",
            "50",
        ],
    )
    .await;
    assert_complete(&r);
    assert_eq!(r["rate_per_publisher"], 500);

    let r = bench(&server, &["idle", "--connections", "40", "--hold", "0"]).await;
    assert_eq!(r["connections"], 40, "{r}");
    assert!(r["server"]["rss_kib_after"].as_u64().unwrap() > 0, "{r}");
    assert!(r["connections_per_s"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn refuses_bodies_too_small_to_carry_the_sequence() {
    let server = start(|_| {}).await;
    let url = ws_url(&server);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["bench", "fanout", "--size", "8", "--url", &url])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size must be at least 40"));
}

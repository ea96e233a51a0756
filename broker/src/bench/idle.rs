//! The idle scenario: many connected, subscribed connections doing nothing. Measures how fast
//! they are set up and what each costs the broker in resident memory.

use std::time::{Duration, Instant};

use serde_json::json;

use super::procstat;
use super::{BenchArgs, Connector};

/// Topics the idle connections spread over.
const TOPICS: usize = 64;

pub(super) async fn run(
    connector: &Connector,
    args: &BenchArgs,
) -> Result<serde_json::Value, String> {
    let before = args.pid.and_then(procstat::sample);
    let started = Instant::now();
    let topics = (0..args.connections)
        .map(|i| Some(format!("{}.idle.{}", args.topic, i % TOPICS)))
        .collect();
    let clients = connector.open_many(topics).await?;
    let setup = started.elapsed();
    if args.hold > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    let after = args.pid.and_then(procstat::sample);
    let n = clients.len();
    let mut result = json!({
        "scenario": "idle",
        "url": args.url,
        "connections": n,
        "setup_s": setup.as_secs_f64(),
        "connections_per_s": n as f64 / setup.as_secs_f64().max(1e-9),
    });
    if let (Some(b), Some(a)) = (before, after) {
        let grown = a.rss_kib.saturating_sub(b.rss_kib);
        result["server"] = json!({
            "pid": args.pid,
            "rss_kib_before": b.rss_kib,
            "rss_kib_after": a.rss_kib,
            "rss_kib_per_connection": grown as f64 / n.max(1) as f64,
            "cpu_s_setup": a.cpu_s - b.cpu_s,
        });
    }
    drop(clients);
    Ok(result)
}

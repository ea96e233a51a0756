//! What a cluster node makes Redis and itself hold, whatever its clients do: a fixed number
//! of Redis connections however many history and queue destinations clients subscribe to;
//! per-destination keys that expire once nobody uses them; a backlog bounded in bytes while
//! Redis is away. Real `redis-server` and `stompbox` processes on free 127.0.0.1 ports.
//!
//! Needs `redis-server` and `redis-cli` on the PATH (the test command installs Debian's).

mod common;
#[path = "common/redis.rs"]
mod redis_fixtures;

use std::time::Duration;

use common::*;
use redis_fixtures::*;
use stomp_codec::Command;

/// Connections Redis has from clients other than the `redis-cli` asking.
fn redis_clients(port: u16) -> usize {
    let list = redis_cli(port, &["CLIENT", "LIST"]);
    list.lines().filter(|l| !l.contains("cmd=client")).count()
}

/// A metric of the node listening on `addr` (0 when absent).
async fn node_metric(addr: std::net::SocketAddr, series: &str) -> f64 {
    let (_, text) = http_get(addr, "/metrics", "").await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const DESTINATIONS: &str = "[[destinations]]\npattern = \"/queue/**\"\nmode = \"queue\"\n\n\
     [[destinations]]\npattern = \"/topic/log/*\"\nhistory = 5\n\n\
     [[destinations]]\npattern = \"/topic/room/*\"\npresence = true\n\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connections_stay_fixed_whatever_clients_subscribe_to() {
    let dir = tempdir("connections");
    let rport = free_port();
    let _redis = redis(rport).await;
    let config = format!(
        "[stomp]\nmax_subscriptions = 2500\n\n{DESTINATIONS}\
         [cluster]\nredis = \"redis://127.0.0.1:{rport}\"\nnode_id = \"a\"\nredis_connections = 4\n"
    );
    let node = Node::spawn("a", &dir, &config, &[]).await;
    let mut c = node.client(&[]).await;
    let mut most = 0;
    // 1,000 history destinations (each mirrored from its own stream) and 1,000 queues (each
    // read from its own stream), all on one connection.
    for i in 0..1000 {
        c.subscribe(&format!("h{i}"), &format!("/topic/log/{i}"), &[])
            .await
            .unwrap();
        c.subscribe(&format!("q{i}"), &format!("/queue/jobs{i}"), &[])
            .await
            .unwrap();
        if i % 100 == 0 {
            most = most.max(redis_clients(rport));
        }
    }
    // Every one of them is served: a message to the last of each kind arrives.
    let mut p = node.client(&[]).await;
    p.publish("/topic/log/999", "history").await.unwrap();
    p.publish("/queue/jobs999", "queue").await.unwrap();
    p.publish("/queue/jobs0", "first queue").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = c.expect(Command::Message, WAIT).await.unwrap();
        got.push(String::from_utf8_lossy(&f.body).into_owned());
    }
    got.sort();
    assert_eq!(got, ["first queue", "history", "queue"]);
    most = most.max(redis_clients(rport));
    assert_eq!(
        most, 4,
        "the node's Redis connections (pub/sub, commands, two readers)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The PTTL of `key` (-2: no such key, -1: no expiry).
fn pttl(port: u16, key: &str) -> i64 {
    redis_cli(port, &["PTTL", key]).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_destination_keys_expire_once_nobody_uses_them() {
    let dir = tempdir("expiry");
    let rport = free_port();
    let _redis = redis(rport).await;
    let config = format!(
        "{DESTINATIONS}[cluster]\nredis = \"redis://127.0.0.1:{rport}\"\nnode_id = \"a\"\n\
         key_ttl_ms = 5000\n"
    );
    let node = Node::spawn("a", &dir, &config, &[]).await;
    let mut c = node.client(&[]).await;
    c.subscribe("h", "/topic/log/x", &[]).await.unwrap();
    c.subscribe("q", "/queue/x", &[]).await.unwrap();
    c.subscribe("p", "/topic/room/x", &[]).await.unwrap();
    c.publish("/topic/log/x", "one").await.unwrap();
    c.publish("/queue/x", "two").await.unwrap();
    let keys = [
        "stompbox:h:/topic/log/x",
        "stompbox:q:/queue/x",
        "stompbox:p:/topic/room/x",
    ];
    eventually("every key exists, with an expiry", || async {
        keys.iter().all(|k| {
            let t = pttl(rport, k);
            t > 0 && t <= 5000
        })
    })
    .await;
    // While the node uses them, they outlive the TTL (it renews them); sampled over 7 s.
    let until = tokio::time::Instant::now() + Duration::from_secs(7);
    let mut samples = 0;
    while tokio::time::Instant::now() < until && samples < 200 {
        for k in keys {
            assert!(pttl(rport, k) > 0, "{k} expired while in use");
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nobody uses them any more: gone within the TTL (and a renewal period).
    c.abort().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| pttl(rport, k) != -2)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "keys still there: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_while_redis_is_away_is_bounded_in_bytes() {
    let dir = tempdir("backlog");
    let rport = free_port();
    let redis_proc = redis(rport).await;
    let config = format!(
        "[cluster]\nredis = \"redis://127.0.0.1:{rport}\"\nreconnect_max_ms = 200\n\
         max_backlog_bytes = 1048576\n"
    );
    let a = Node::spawn("a", &dir, &config, &[]).await;
    let b = Node::spawn("b", &dir, &config, &[]).await;
    let mut pa = a.client(&[]).await;
    let mut remote = b.client(&[]).await;
    remote.subscribe("r", "/topic/live", &[]).await.unwrap();
    linked(&mut pa, &mut remote, "/topic/live").await;

    drop(redis_proc);
    eventually("health says degraded", || async {
        http_get(a.addr(), "/healthz", "")
            .await
            .1
            .contains("degraded")
    })
    .await;
    let dropped_before = node_metric(a.addr(), "stompbox_cluster_dropped_total").await;
    let rss_before = rss(a.pid());
    // 32 MiB for other nodes while Redis is away, 32 times the bound.
    let body = "x".repeat(32 * 1024);
    for _ in 0..1024 {
        pa.publish("/topic/live", &body).await.unwrap();
    }
    // A receipt: the node has taken every SEND.
    pa.send(&stomp_codec::Frame::new(Command::Disconnect).header("receipt", "done".to_owned()))
        .await
        .unwrap();
    pa.receipt("done").await.unwrap();
    let dropped = node_metric(a.addr(), "stompbox_cluster_dropped_total").await - dropped_before;
    assert!(
        dropped >= 1024.0 - 32.0,
        "messages beyond the bound are dropped and counted: {dropped}"
    );
    let grew = rss(a.pid()).saturating_sub(rss_before);
    assert!(grew < 16 << 20, "the node grew by {grew} bytes");
    let backlog = node_metric(a.addr(), "stompbox_cluster_backlog_bytes").await;
    assert!(backlog > 0.0 && backlog <= 1048576.0, "backlog {backlog}");

    // Redis comes back: the node recovers by itself.
    let _redis2 = redis(rport).await;
    eventually("health is ok again", || async {
        http_get(a.addr(), "/healthz", "").await.1.ends_with("ok\n")
    })
    .await;
    let mut pa = a.client(&[]).await;
    linked(&mut pa, &mut remote, "/topic/live").await;
    eventually("the backlog drained", || async {
        node_metric(a.addr(), "stompbox_cluster_backlog_bytes").await == 0.0
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

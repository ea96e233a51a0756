//! Three `stompbox` processes and a real `redis-server`, all on free 127.0.0.1 ports: pub/sub,
//! patterns and user destinations across nodes, each message exactly once; competing queue
//! consumers across nodes, with nothing lost when a consumer's node is killed; Redis stopped
//! and restarted mid-traffic; a node killed while the others keep serving.
//!
//! Needs `redis-server` on the PATH (the test command installs Debian's when missing).

mod common;
#[path = "common/redis.rs"]
mod redis_fixtures;

use std::collections::HashSet;
use std::time::Duration;

use broker::client::{Client, Event};
use common::*;
use redis_fixtures::*;
use stomp_codec::{Command, Frame};

/// `[auth]` with the user alice (password "pw") besides anonymous sessions.
fn alice_user() -> String {
    let hash = broker::auth::hash_password("pw").unwrap();
    format!(
        "[auth]\nallow_anonymous = true\n\n[[auth.users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"
    )
}

/// A redis-server and three nodes (a, b, c) on it, with `extra` TOML; returns the Redis
/// process, the scratch directory, Redis's port and the nodes.
async fn three_nodes(tag: &str, extra: &str) -> (Proc, std::path::PathBuf, u16, [Node; 3]) {
    let dir = tempdir(tag);
    let rport = free_port();
    let redis = redis(rport).await;
    let a = Node::start("a", rport, &dir, extra).await;
    let b = Node::start("b", rport, &dir, extra).await;
    let c = Node::start("c", rport, &dir, extra).await;
    (redis, dir, rport, [a, b, c])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_patterns_and_users_across_nodes_exactly_once() {
    let (_redis, dir, _, [a, b, c]) = three_nodes("pubsub", &alice_user()).await;

    // Exact destinations.
    let mut pa = a.client(&[]).await;
    let mut sb = b.client(&[]).await;
    let mut sc = c.client(&[]).await;
    sb.subscribe("t", "/topic/news", &[]).await.unwrap();
    sc.subscribe("t", "/topic/news", &[]).await.unwrap();
    linked(&mut pa, &mut sb, "/topic/news").await;
    linked(&mut pa, &mut sc, "/topic/news").await;
    // sb saw the probes of sc's link too: drain them.
    pa.publish("/topic/news", "drained").await.unwrap();
    bodies_until(&mut sb, "drained").await;
    bodies_until(&mut sc, "drained").await;
    for i in 0..50 {
        pa.publish("/topic/news", &format!("n{i}")).await.unwrap();
    }
    pa.publish("/topic/news", "end").await.unwrap();
    let expected: Vec<String> = (0..50)
        .map(|i| format!("n{i}"))
        .chain(["end".into()])
        .collect();
    // In order, once each.
    assert_eq!(bodies_until(&mut sb, "end").await, expected);
    assert_eq!(bodies_until(&mut sc, "end").await, expected);

    // A node's own subscriber gets its node's message once (not again from Redis).
    let mut sb2 = b.client(&[]).await;
    sb2.subscribe("t", "/topic/news", &[]).await.unwrap();
    let mut pb = b.client(&[]).await;
    pb.publish("/topic/news", "from-b").await.unwrap();
    pb.publish("/topic/news", "from-b-end").await.unwrap();
    assert_eq!(
        bodies_until(&mut sb2, "from-b-end").await,
        ["from-b", "from-b-end"]
    );
    assert_eq!(
        bodies_until(&mut sc, "from-b-end").await,
        ["from-b", "from-b-end"]
    );
    assert_eq!(
        bodies_until(&mut sb, "from-b-end").await,
        ["from-b", "from-b-end"]
    );
    let ids: HashSet<String> = {
        pa.publish("/topic/news", "id-check").await.unwrap();
        let f1 = sb.expect(Command::Message, WAIT).await.unwrap();
        pb.publish("/topic/news", "id-check-2").await.unwrap();
        let f2 = sb.expect(Command::Message, WAIT).await.unwrap();
        [f1, f2]
            .iter()
            .map(|f| f.headers.get_str("message-id").unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids.len(), 2, "message ids are unique across nodes: {ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("a-")) && ids.iter().any(|i| i.starts_with("b-")));

    // Wildcard subscriptions.
    let mut wc = c.client(&[]).await;
    wc.subscribe("w", "/topic/chat/**", &[]).await.unwrap();
    linked(&mut pa, &mut wc, "/topic/chat/lobby").await;
    pa.publish("/topic/chat/rust/today", "deep").await.unwrap();
    pa.publish("/topic/chatter", "not-matching").await.unwrap();
    pa.publish("/topic/chat/x", "last").await.unwrap();
    assert_eq!(bodies_until(&mut wc, "last").await, ["deep", "last"]);

    // User destinations: alice on two nodes, a message sent from the third.
    let login = [("login", "alice"), ("passcode", "pw")];
    let mut alice_a = a.client(&login).await;
    let mut alice_b = b.client(&login).await;
    alice_a
        .subscribe("q", "/user/queue/inbox", &[])
        .await
        .unwrap();
    alice_b
        .subscribe("q", "/user/queue/inbox", &[])
        .await
        .unwrap();
    let mut sender = c.client(&[]).await;
    linked(&mut sender, &mut alice_b, "/user/alice/queue/inbox").await;
    // alice_a got the probes too; drain them with a marker of its own.
    sender
        .publish("/user/alice/queue/inbox", "marker-a")
        .await
        .unwrap();
    bodies_until(&mut alice_a, "marker-a").await;
    bodies_until(&mut alice_b, "marker-a").await;
    sender
        .publish("/user/alice/queue/inbox", "hi alice")
        .await
        .unwrap();
    for s in [&mut alice_a, &mut alice_b] {
        let f = s.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(&f.body[..], b"hi alice");
        assert_eq!(f.headers.get_str("destination"), Some("/user/queue/inbox"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_consumers_compete_and_a_dead_nodes_messages_move_on() {
    let (_redis, dir, _, [a, b, c]) = three_nodes("queue", "").await;

    // Competing consumers on two nodes: each message exactly once over both.
    let mut cb = b.client(&[]).await;
    let mut cc = c.client(&[]).await;
    cb.subscribe("q", "/queue/jobs", &[]).await.unwrap();
    cc.subscribe("q", "/queue/jobs", &[]).await.unwrap();
    let mut pa = a.client(&[]).await;
    const N: usize = 200;
    for i in 0..N {
        pa.publish("/queue/jobs", &format!("job{i}")).await.unwrap();
    }
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {N}",
            seen.len()
        );
        for cl in [&mut cb, &mut cc] {
            if let Ok(Event::Frame(f)) = cl.next_event(Duration::from_millis(20)).await
                && f.command == Command::Message
            {
                let body = String::from_utf8_lossy(&f.body).into_owned();
                assert!(seen.insert(body.clone()), "{body} delivered twice");
            }
        }
    }

    // A consumer takes messages and never acknowledges them; its node is killed. Another
    // node's consumer gets every one of them.
    drop(cb);
    drop(cc);
    let mut slow = b.client(&[]).await;
    slow.subscribe(
        "s",
        "/queue/orders",
        &[("ack", "client-individual"), ("prefetch-count", "5")],
    )
    .await
    .unwrap();
    for i in 0..5 {
        pa.publish("/queue/orders", &format!("order{i}"))
            .await
            .unwrap();
    }
    for _ in 0..5 {
        slow.expect(Command::Message, Duration::from_secs(10))
            .await
            .unwrap();
    }
    // Another node's consumer arrives. While B lives and holds the messages, even past
    // claim_idle_ms (1 s here), nothing is taken away from it.
    let mut rescuer = c.client(&[]).await;
    rescuer
        .subscribe("r", "/queue/orders", &[("ack", "client-individual")])
        .await
        .unwrap();
    // The property is about a stretch of time: for 2.5 × claim_idle_ms, nothing arrives.
    let window = tokio::time::Instant::now() + Duration::from_millis(2500);
    loop {
        let left = window.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match rescuer.next_event(left).await {
            Ok(Event::Frame(f)) => panic!("taken from a live node: {f:?}"),
            Ok(_) => {}      // heart-beats
            Err(_) => break, // nothing within the window
        }
    }
    drop(b); // SIGKILL: no ack ever reaches Redis.
    let mut got = HashSet::new();
    for _ in 0..5 {
        let f = rescuer
            .expect(Command::Message, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(f.headers.get_str("redelivered"), Some("true"));
        got.insert(String::from_utf8_lossy(&f.body).into_owned());
        let ack = f.headers.get_str("ack").unwrap().to_owned();
        rescuer
            .send(&Frame::new(Command::Ack).header("id", ack))
            .await
            .unwrap();
    }
    let want: HashSet<String> = (0..5).map(|i| format!("order{i}")).collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_and_a_dead_node_leave_the_rest_serving() {
    let (redis_proc, dir, rport, [a, b, c]) = three_nodes("faults", "").await;
    let mut pa = a.client(&[]).await;
    let mut local = a.client(&[]).await;
    let mut remote = b.client(&[]).await;
    local.subscribe("l", "/topic/live", &[]).await.unwrap();
    remote.subscribe("r", "/topic/live", &[]).await.unwrap();
    linked(&mut pa, &mut remote, "/topic/live").await;
    pa.publish("/topic/live", "m").await.unwrap();
    bodies_until(&mut local, "m").await;

    // Redis goes away: local delivery goes on, health says degraded, failures are counted.
    drop(redis_proc);
    eventually("health says degraded", || async {
        http_get(a.addr(), "/healthz", "")
            .await
            .1
            .contains("degraded")
    })
    .await;
    pa.publish("/topic/live", "during-outage").await.unwrap();
    bodies_until(&mut local, "during-outage").await;
    let (_, metrics) = http_get(a.addr(), "/metrics", "").await;
    assert!(metrics.contains("stompbox_cluster_up 0"), "{metrics}");
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("stompbox_cluster_errors_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(errors > 0.0);

    // Redis comes back on the same port: cross-node delivery resumes by itself.
    let _redis2 = redis(rport).await;
    eventually("health is ok again", || async {
        http_get(a.addr(), "/healthz", "").await.1.ends_with("ok\n")
    })
    .await;
    linked(&mut pa, &mut remote, "/topic/live").await;

    // A node dies; the others keep serving each other.
    drop(a);
    drop(pa);
    drop(local);
    let mut pc = c.client(&[]).await;
    linked(&mut pc, &mut remote, "/topic/live").await;
    pc.publish("/topic/live", "after-a").await.unwrap();
    bodies_until(&mut remote, "after-a").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_password() {
    let dir = tempdir("tls");
    let rport = free_port();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let key = |f: &str| keys.join(f).display().to_string();
    let _redis = redis_server(
        rport,
        &[
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            rport.to_string(),
            "--tls-cert-file".into(),
            key("tls-server1.pem"),
            "--tls-key-file".into(),
            key("tls-server1.key"),
            "--tls-ca-cert-file".into(),
            key("tls-ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            "s3cret".into(),
        ],
    )
    .await;
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let config = format!(
            "[cluster]\nredis = \"rediss://localhost:{rport}\"\npassword_env = \"TEST_REDIS_PASSWORD\"\n\
             tls_ca_file = {:?}\nnode_id = \"{name}\"\n",
            key("tls-ca.pem")
        );
        nodes.push(Node::spawn(name, &dir, &config, &[("TEST_REDIS_PASSWORD", "s3cret")]).await);
    }
    let mut pa = nodes[0].client(&[]).await;
    let mut sb = nodes[1].client(&[]).await;
    sb.subscribe("t", "/topic/secure", &[]).await.unwrap();
    linked(&mut pa, &mut sb, "/topic/secure").await;
    eventually("both nodes report healthy", || async {
        http_get(nodes[0].addr(), "/healthz", "")
            .await
            .1
            .ends_with("ok\n")
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Subscribes with an optional resume position, confirmed by a receipt.
async fn subscribe_from(c: &mut Client, destination: &str, from: Option<&str>) {
    let mut f = Frame::new(Command::Subscribe)
        .header("id", "h")
        .header("destination", destination.to_owned())
        .header("receipt", "h");
    if let Some(from) = from {
        f = f.header("resume-from", from.to_owned());
    }
    c.send(&f).await.unwrap();
    c.receipt("h").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_shared_so_a_client_resumes_on_another_node() {
    let (_redis, dir, _, [a, b, c]) = three_nodes("history", "").await;
    let mut pub_c = c.client(&[]).await;
    // A reader on A, until it drops.
    let mut reader = a.client(&[]).await;
    subscribe_from(&mut reader, "/topic/log/x", None).await;
    for i in 0..3 {
        pub_c
            .publish("/topic/log/x", &format!("m{i}"))
            .await
            .unwrap();
    }
    let mut last = String::new();
    for i in 0..3 {
        let f = reader.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(f.body, format!("m{i}").as_bytes());
        last = f.headers.get_str("message-id").unwrap().to_owned();
    }
    drop(reader);
    for i in 3..5 {
        pub_c
            .publish("/topic/log/x", &format!("m{i}"))
            .await
            .unwrap();
    }
    // Back, on node B: exactly what it missed, then live.
    let mut back = b.client(&[]).await;
    subscribe_from(&mut back, "/topic/log/x", Some(&last)).await;
    for i in 3..5 {
        let f = back.expect(Command::Message, WAIT).await.unwrap();
        assert_eq!(f.body, format!("m{i}").as_bytes());
        assert_eq!(f.headers.get_str("resume-gap"), None);
    }
    pub_c.publish("/topic/log/x", "live").await.unwrap();
    let f = back.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(&f.body[..], b"live");
    assert_quiet(&mut back).await;
    // A wildcard subscription covering the history destination, on a node with no exact
    // subscriber (C), and on one with (B): each gets each message once.
    let mut wild_c = c.client(&[]).await;
    wild_c.subscribe("w", "/topic/log/*", &[]).await.unwrap();
    let mut wild_b = b.client(&[]).await;
    wild_b.subscribe("w", "/topic/log/*", &[]).await.unwrap();
    linked(&mut pub_c, &mut wild_b, "/topic/log/other").await;
    pub_c.publish("/topic/log/other", "drained").await.unwrap();
    bodies_until(&mut wild_c, "drained").await;
    bodies_until(&mut wild_b, "drained").await;
    pub_c.publish("/topic/log/x", "for everyone").await.unwrap();
    pub_c
        .publish("/topic/log/x", "for everyone 2")
        .await
        .unwrap();
    assert_eq!(
        bodies_until(&mut wild_c, "for everyone 2").await,
        ["for everyone", "for everyone 2"]
    );
    assert_eq!(
        bodies_until(&mut wild_b, "for everyone 2").await,
        ["for everyone", "for everyone 2"]
    );
    assert_eq!(
        bodies_until(&mut back, "for everyone 2").await,
        ["for everyone", "for everyone 2"]
    );
    // Away too long (history = 5): a gap, reported.
    for i in 0..10 {
        pub_c
            .publish("/topic/log/x", &format!("n{i}"))
            .await
            .unwrap();
    }
    pub_c.publish("/topic/log/x", "end").await.unwrap();
    bodies_until(&mut back, "end").await;
    let mut late = a.client(&[]).await;
    subscribe_from(&mut late, "/topic/log/x", Some(&last)).await;
    let f = late.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(f.headers.get_str("resume-gap"), Some("true"));
    // The retained value, from whichever node published it.
    pub_c.publish("/topic/last/p", "1.07").await.unwrap();
    pub_c.publish("/topic/last/p", "1.08").await.unwrap();
    let mut fresh = b.client(&[]).await;
    eventually("the retained value reaches B", || async {
        let mut probe = b.client(&[]).await;
        subscribe_from(&mut probe, "/topic/last/p", None).await;
        matches!(probe.next_event(std::time::Duration::from_millis(200)).await,
            Ok(Event::Frame(f)) if f.command == Command::Message && &f.body[..] == b"1.08")
    })
    .await;
    subscribe_from(&mut fresh, "/topic/last/p", None).await;
    let f = fresh.expect(Command::Message, WAIT).await.unwrap();
    assert_eq!(
        (&f.body[..], f.headers.get_str("retained")),
        (&b"1.08"[..], Some("true"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next presence event on `c` (JSON).
async fn presence_event(c: &mut Client) -> (serde_json::Value, Option<String>) {
    let f = c
        .expect(Command::Message, Duration::from_secs(15))
        .await
        .unwrap();
    (
        serde_json::from_slice(&f.body).unwrap(),
        f.headers.get_str("retained").map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_cluster_wide_and_a_dead_node_leaves_it() {
    let (_redis, dir, _, [a, b, c]) = three_nodes("presence", &alice_user()).await;
    let mut watcher = c.client(&[]).await;
    subscribe_from(&mut watcher, "/topic/room/1/presence", None).await;
    // Nobody there yet: an empty snapshot.
    let (e, _) = presence_event(&mut watcher).await;
    assert_eq!(
        (e["type"].as_str(), e["members"].clone()),
        (Some("snapshot"), serde_json::json!([]))
    );

    let mut alice = a.client(&[("login", "alice"), ("passcode", "pw")]).await;
    alice.subscribe("r", "/topic/room/1", &[]).await.unwrap();
    let (e, _) = presence_event(&mut watcher).await;
    assert_eq!(
        (e["type"].as_str(), e["user"].as_str()),
        (Some("join"), Some("alice"))
    );
    assert_eq!(
        e["members"],
        serde_json::json!([{"user": "alice", "sessions": 1}])
    );

    let mut anon = b.client(&[]).await;
    anon.subscribe("r", "/topic/room/1", &[]).await.unwrap();
    let (e, _) = presence_event(&mut watcher).await;
    assert_eq!(
        (e["type"].as_str(), e["anonymous"].as_u64()),
        (Some("join"), Some(1))
    );
    assert_eq!(
        e["members"],
        serde_json::json!([{"user": "alice", "sessions": 1}])
    );

    // A watcher arriving later, on another node, starts from the latest state.
    let mut late = b.client(&[]).await;
    subscribe_from(&mut late, "/topic/room/1/presence", None).await;
    let (e, retained) = presence_event(&mut late).await;
    assert_eq!(retained.as_deref(), Some("true"));
    assert_eq!(
        e["members"],
        serde_json::json!([{"user": "alice", "sessions": 1}])
    );
    assert_eq!(e["anonymous"], 1);

    // Alice's node dies (SIGKILL, so it says nothing): within seconds, once its liveness key
    // expires, the surviving nodes sweep its counts and everyone sees her gone.
    drop(a);
    drop(alice);
    for w in [&mut watcher, &mut late] {
        let (e, _) = presence_event(w).await;
        assert_eq!(e["type"], "leave");
        assert_eq!(e["members"], serde_json::json!([]));
        assert_eq!(e["anonymous"], 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

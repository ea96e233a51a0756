//! Unit tests of histories: ids, resume, retain, gaps, eviction, catch-up.

use super::*;
use crate::broker::Broker;
use crate::config::SlowConsumerPolicy;
use crate::outbox::{Mark, Outbound, Outbox};
use crate::registry::Subscriber;
use bytes::Bytes;
use stomp_codec::Headers;

fn publish(h: &History, body: &str) -> String {
    h.publish(None, 0, |id| {
        let msg = Arc::new(Published::from_send(
            "/topic/h",
            id,
            &Headers::new(),
            Bytes::from(body.to_owned()),
        ));
        (msg, id.to_owned())
    })
    .unwrap()
}

fn keep(messages: usize, retain_last: bool) -> Keep {
    Keep {
        messages,
        ttl: None,
        retain_last,
    }
}

/// What a subscriber joining with `from` is handed: bodies and whether each is marked.
fn bodies(h: &Arc<History>, from: Option<&str>) -> (Join, Vec<(String, bool)>) {
    let broker = Broker::new(crate::config::Config::default()).unwrap();
    let outbox = Arc::new(Outbox::new(1000, 1 << 20));
    let j = h.join(&broker, "/topic/h", subscriber(&outbox, 0), from, None);
    (j, drain(&outbox))
}

fn subscriber(outbox: &Arc<Outbox>, key: u32) -> Subscriber {
    Subscriber {
        conn: 1,
        key,
        id: Bytes::from_static(b"0"),
        version: stomp_codec::Version::V1_2,
        auto_ack: true,
        credit: None,
        outbox: Arc::clone(outbox),
        guard: None,
        gap: Some(Arc::new(std::sync::atomic::AtomicBool::new(false))),
    }
}

/// What the outbox holds: bodies and whether each is marked as following a gap.
fn drain(outbox: &Outbox) -> Vec<(String, bool)> {
    let mut items = std::collections::VecDeque::new();
    outbox.take(&mut items);
    items
        .into_iter()
        .filter_map(|o| match o {
            Outbound::Deliver(d) => Some((
                String::from_utf8_lossy(d.msg.prepared.body()).into_owned(),
                d.mark == Mark::Gap,
            )),
            Outbound::Frame(f) => {
                let text = String::from_utf8_lossy(f.as_bytes()).into_owned();
                let (_, body) = text.split_once("\n\n")?;
                Some((body.trim_end_matches('\0').to_owned(), false))
            }
        })
        .collect()
}

/// Publishes as the broker does: recorded and handed to the live subscribers in one step.
fn publish_live(broker: &Broker, h: &History, body: &str) {
    h.publish(None, 0, |id| {
        let msg = Arc::new(Published::from_send(
            "/topic/h",
            id,
            &Headers::new(),
            Bytes::from(body.to_owned()),
        ));
        let outcome = broker.fan_out("/topic/h", &msg, SlowConsumerPolicy::Drop);
        (msg, outcome)
    })
    .unwrap();
}

#[test]
fn a_replay_goes_as_fast_as_the_subscriber_reads_and_meets_the_live_stream() {
    let broker = Broker::new(crate::config::Config::default()).unwrap();
    let hs = Histories::new(usize::MAX, usize::MAX);
    let h = hs.get_or_create("/topic/h", keep(100, false));
    let first = publish(&h, "m0");
    for i in 1..50 {
        publish(&h, &format!("m{i}"));
    }
    // An outbox of 8 messages: the replay of 49 cannot be pushed at once.
    let outbox = Arc::new(Outbox::new(8, 1 << 20));
    let j = h.join(
        &broker,
        "/topic/h",
        subscriber(&outbox, 0),
        Some(&first),
        None,
    );
    assert_eq!(j, Join::Pending);
    let mut got = drain(&outbox);
    assert_eq!(got.len(), 8, "no more than the outbox holds");
    let mut next = 50;
    for _ in 0..100 {
        // Live messages keep arriving while it catches up; the client reads 8 at a time.
        publish_live(&broker, &h, &format!("m{next}"));
        next += 1;
        if h.pump(&broker, 1, 0) {
            break;
        }
        got.extend(drain(&outbox));
    }
    // Live now: the next messages come straight from the publish.
    for _ in 0..3 {
        got.extend(drain(&outbox));
        publish_live(&broker, &h, &format!("m{next}"));
        next += 1;
    }
    got.extend(drain(&outbox));
    let bodies: Vec<String> = got.into_iter().map(|(b, _)| b).collect();
    let want: Vec<String> = (1..next).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want, "every message once, in order, no gap");
}

#[test]
fn a_replay_overtaken_by_eviction_is_marked_as_a_gap() {
    let broker = Broker::new(crate::config::Config::default()).unwrap();
    let hs = Histories::new(usize::MAX, usize::MAX);
    let h = hs.get_or_create("/topic/h", keep(10, false));
    let first = publish(&h, "m0");
    for i in 1..10 {
        publish(&h, &format!("m{i}"));
    }
    let outbox = Arc::new(Outbox::new(2, 1 << 20));
    assert_eq!(
        h.join(
            &broker,
            "/topic/h",
            subscriber(&outbox, 0),
            Some(&first),
            None
        ),
        Join::Pending
    );
    assert_eq!(
        drain(&outbox),
        vec![("m1".into(), false), ("m2".into(), false)]
    );
    // Ten more push m3..m12 out of the history before the client reads again.
    for i in 10..20 {
        publish_live(&broker, &h, &format!("m{i}"));
    }
    assert!(!h.pump(&broker, 1, 0));
    assert_eq!(
        drain(&outbox),
        vec![("m10".into(), true), ("m11".into(), false)]
    );
}

#[test]
fn a_subscriber_that_never_reads_holds_only_its_outbox() {
    let broker = Broker::new(crate::config::Config::default()).unwrap();
    let hs = Histories::new(usize::MAX, usize::MAX);
    let h = hs.get_or_create("/topic/h", keep(1000, false));
    let first = publish(&h, "m0");
    for i in 1..1000 {
        publish(&h, &format!("m{i}"));
    }
    let outbox = Arc::new(Outbox::new(16, 1 << 20));
    for key in 0..50 {
        h.join(
            &broker,
            "/topic/h",
            subscriber(&outbox, key),
            Some(&first),
            None,
        );
    }
    for key in 0..50 {
        assert!(!h.pump(&broker, 1, key));
    }
    assert_eq!(drain(&outbox).len(), 16);
}

#[test]
fn the_total_evicts_the_least_recently_used_destinations_first() {
    let hs = Histories::new(64 * 1024, usize::MAX);
    let old = hs.get_or_create("/topic/old", keep(1000, false));
    let body = "x".repeat(500);
    for _ in 0..60 {
        publish(&old, &body);
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let live = hs.get_or_create("/topic/live", keep(5, false));
    for _ in 0..200 {
        publish(&live, &body);
        hs.enforce();
    }
    assert_eq!(live.len(), 5, "the destination in use keeps its history");
    assert!(old.len() < 60, "the idle one paid for it");
    assert!(hs.totals.budget.used() <= 64 * 1024);
}

#[test]
fn ids_increase_and_parse() {
    let a = Seq::after(None, 5);
    let b = Seq::after(Some(a), 5);
    let c = Seq::after(Some(b), 4);
    let d = Seq::after(Some(c), 9);
    assert!(a < b && b < c && c < d);
    assert_eq!(Seq::parse(&d.to_string()), Some(d));
    assert_eq!(Seq::parse("x-1"), None);
}

#[test]
fn resume_retain_gap_and_eviction() {
    let hs = Histories::new(usize::MAX, usize::MAX);
    let h = hs.get_or_create("/topic/h", keep(3, true));
    let ids: Vec<String> = (0..5).map(|i| publish(&h, &format!("m{i}"))).collect();
    assert_eq!(h.len(), 3);
    assert_eq!(hs.totals.evicted.load(Ordering::Relaxed), 2);
    // Resume from a held id: what follows.
    let (j, got) = bodies(&h, Some(&ids[2]));
    assert_eq!(j, Join::Resumed);
    assert_eq!(got, vec![("m3".into(), false), ("m4".into(), false)]);
    // From the last one dropped: everything held, no gap.
    let (j, got) = bodies(&h, Some(&ids[1]));
    assert_eq!(j, Join::Resumed);
    assert_eq!(got.len(), 3);
    // From the newest: nothing.
    assert_eq!(bodies(&h, Some(&ids[4])).0, Join::Nothing);
    // From further back, or an unknown id: a gap, then everything held.
    let (j, got) = bodies(&h, Some(&ids[0]));
    assert_eq!(j, Join::Gap);
    assert_eq!(got[0], ("m2".into(), true));
    assert_eq!(bodies(&h, Some("garbage")).0, Join::Gap);
    // No position: the retained value.
    let (j, got) = bodies(&h, None);
    assert_eq!(j, Join::Retained);
    assert_eq!(got, vec![("m4".into(), false)]);
}

#[test]
fn the_global_byte_bound_evicts() {
    let hs = Histories::new(1, 1);
    let h = hs.get_or_create("/topic/h", keep(100, false));
    for i in 0..10 {
        publish(&h, &format!("m{i}"));
    }
    // Over the global bound every append drops everything, its own message included.
    assert_eq!(h.len(), 0);
    assert_eq!(hs.totals.messages.load(Ordering::Relaxed), 0);
}

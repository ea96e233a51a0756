//! The message-moving scenarios: fan-out (one publisher, many subscribers on one topic) and
//! pairs (independent publisher→subscriber pairs), each either as fast as a bounded in-flight
//! window allows or at a fixed rate (the latency scenario).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use hdrhistogram::Histogram;
use stomp_codec::Command;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::connect::Connector;
use super::payload;
use crate::client::{Client, Event};

/// One publisher: its id and topic.
#[derive(Clone, Debug)]
pub struct PublisherPlan {
    /// Written into every body, so subscribers know whose sequence a message belongs to.
    pub id: u32,
    /// Where it publishes.
    pub topic: String,
    /// How many subscribers receive each of its messages.
    pub fanout: u64,
}

/// One subscriber: its topic and the publisher it follows.
#[derive(Clone, Debug)]
pub struct SubscriberPlan {
    /// What it subscribes to.
    pub topic: String,
    /// The publisher whose messages it counts.
    pub publisher: u32,
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Publishers.
    pub publishers: Vec<PublisherPlan>,
    /// Subscribers.
    pub subscribers: Vec<SubscriberPlan>,
    /// Messages per publisher.
    pub messages: u64,
    /// Body size.
    pub size: usize,
    /// Binary frames (`application/octet-stream`) instead of text.
    pub binary: bool,
    /// Fixed rate per publisher (messages/s), or `None` for window mode.
    pub rate: Option<u64>,
    /// Window mode: messages a publisher may have in flight (sent, not yet received by all of
    /// its subscribers).
    pub window: u64,
    /// How long to wait for stragglers once publishing is over, without progress.
    pub drain_timeout: Duration,
    /// Print a progress line every second to stderr.
    pub progress: bool,
    /// The broker's pid, to sample its CPU time around the message phase only (connection
    /// set-up excluded).
    pub pid: Option<u32>,
}

/// What a run measured on the client side.
#[derive(Debug)]
pub struct Outcome {
    /// Messages published.
    pub published: u64,
    /// Deliveries expected (published × fan-out).
    pub expected: u64,
    /// Deliveries received (unique).
    pub delivered: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicated: u64,
    /// Deliveries that arrived after a later message of the same publisher.
    pub reordered: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Publish-to-receive latency, microseconds.
    pub latency: Histogram<u64>,
    /// The broker's CPU seconds spent from the first publish to the end of the drain.
    pub server_cpu_s: Option<f64>,
    /// The broker's resident memory at the end, KiB.
    pub server_rss_kib: Option<u64>,
}

struct Shared {
    start: Instant,
    /// Messages each subscriber has received.
    received: Vec<AtomicU64>,
    /// Each publisher's subscribers (indexes into `received`).
    audience: Vec<Vec<usize>>,
    wake: Vec<Notify>,
    total: AtomicU64,
    published: AtomicU64,
    last_delivery_ns: AtomicU64,
}

struct SubResult {
    unique: u64,
    duplicated: u64,
    reordered: u64,
    latency: Histogram<u64>,
}

pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant histogram bounds are valid")
}

/// Runs a plan against a broker.
pub async fn run(connector: &Connector, plan: &Plan) -> Result<Outcome, String> {
    let npub = plan.publishers.len();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        received: plan.subscribers.iter().map(|_| AtomicU64::new(0)).collect(),
        audience: plan
            .publishers
            .iter()
            .map(|p| {
                plan.subscribers
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.publisher == p.id)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect(),
        wake: (0..npub).map(|_| Notify::new()).collect(),
        total: AtomicU64::new(0),
        published: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
    });
    let stop = CancellationToken::new();

    // Subscribers first, each confirmed by a receipt, so nothing published is missed.
    let subs = connector
        .open_many(
            plan.subscribers
                .iter()
                .map(|s| Some(s.topic.clone()))
                .collect(),
        )
        .await?;
    let pubs = connector.open_many(vec![None; npub]).await?;
    if !connector.subscriber_urls.is_empty() {
        // Cluster nodes subscribe in Redis just after the local receipt: give them a moment,
        // so the first messages are not counted lost.
        tokio::time::sleep(connector.settle).await;
    }

    let mut sub_tasks = Vec::with_capacity(subs.len());
    for (i, (c, sp)) in subs.into_iter().zip(&plan.subscribers).enumerate() {
        sub_tasks.push(tokio::spawn(subscriber(
            c,
            i,
            sp.publisher,
            plan.messages,
            Arc::clone(&shared),
            stop.clone(),
        )));
    }
    let progress = plan
        .progress
        .then(|| tokio::spawn(progress_line(Arc::clone(&shared), stop.clone())));

    let cpu_before = plan.pid.and_then(super::procstat::sample);
    let t0 = Instant::now();
    let t0_ns = ns_since(shared.start, t0);
    let mut pub_tasks = Vec::with_capacity(npub);
    for (c, pp) in pubs.into_iter().zip(&plan.publishers) {
        pub_tasks.push(tokio::spawn(publisher(
            c,
            pp.clone(),
            plan.clone(),
            Arc::clone(&shared),
        )));
    }
    for t in pub_tasks {
        t.await.map_err(|e| e.to_string())??;
    }

    // Drain: wait until everything arrived, or until nothing has moved for drain_timeout.
    let expected: u64 = plan
        .publishers
        .iter()
        .map(|p| p.fanout * plan.messages)
        .sum();
    let mut last = shared.total.load(Ordering::Acquire);
    let mut still_since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let now = shared.total.load(Ordering::Acquire);
        if now >= expected {
            break;
        }
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= plan.drain_timeout {
            break;
        }
    }
    let cpu_after = plan.pid.and_then(super::procstat::sample);
    stop.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    let mut latency = histogram();
    let (mut unique, mut duplicated, mut reordered) = (0, 0, 0);
    for t in sub_tasks {
        let r = t.await.map_err(|e| e.to_string())?;
        unique += r.unique;
        duplicated += r.duplicated;
        reordered += r.reordered;
        let _ = latency.add(&r.latency);
    }
    let last_ns = shared
        .last_delivery_ns
        .load(Ordering::Acquire)
        .max(t0_ns + 1);
    Ok(Outcome {
        published: shared.published.load(Ordering::Acquire),
        expected,
        delivered: unique,
        lost: expected.saturating_sub(unique),
        duplicated,
        reordered,
        elapsed: Duration::from_nanos(last_ns - t0_ns),
        latency,
        server_cpu_s: cpu_before.zip(cpu_after).map(|(b, a)| a.cpu_s - b.cpu_s),
        server_rss_kib: cpu_after.map(|a| a.rss_kib),
    })
}

fn ns_since(start: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(start).as_nanos() as u64
}

async fn progress_line(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut prev = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let total = shared.total.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>5.1}s] published {} delivered {} ({}/s)",
                    shared.start.elapsed().as_secs_f64(),
                    shared.published.load(Ordering::Relaxed),
                    total,
                    total - prev
                );
                prev = total;
            }
        }
    }
}

async fn publisher(
    mut c: Client,
    pp: PublisherPlan,
    plan: Plan,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let idx = pp.id as usize;
    let mut head = format!("SEND\ndestination:{}\n", pp.topic);
    if plan.binary {
        head.push_str("content-type:application/octet-stream\n");
    }
    let mut body = Vec::with_capacity(plan.size);
    let mut frame = BytesMut::new();
    let mut interval = plan.rate.map(|r| {
        let mut iv = tokio::time::interval(Duration::from_nanos(1_000_000_000 / r.max(1)));
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        iv
    });
    // The slowest subscriber's count, refreshed only when it holds the publisher back: it only
    // grows, so a stale value is a safe underestimate.
    let mut slowest = 0u64;
    let mut unflushed = 0u32;
    for seq in 0..plan.messages {
        let sent_ns = match interval.as_mut() {
            // Timestamped when actually sent: the timer's own lateness (up to a millisecond) is
            // the client's, not the broker's. A fixed-rate publisher never waits for the broker,
            // so a stalled broker still shows up as latency.
            Some(iv) => {
                iv.tick().await;
                ns_since(shared.start, Instant::now())
            }
            None => {
                while seq.saturating_sub(slowest) >= plan.window {
                    slowest = shared.audience[idx]
                        .iter()
                        .filter_map(|&s| shared.received.get(s))
                        .map(|r| r.load(Ordering::Acquire))
                        .min()
                        .unwrap_or(seq);
                    if seq.saturating_sub(slowest) < plan.window {
                        break;
                    }
                    if unflushed > 0 {
                        c.flush().await.map_err(|e| e.to_string())?;
                        unflushed = 0;
                    }
                    let _ =
                        tokio::time::timeout(Duration::from_millis(5), shared.wake[idx].notified())
                            .await;
                }
                ns_since(shared.start, Instant::now())
            }
        };
        payload::encode(pp.id, seq, sent_ns, plan.size, &mut body);
        frame.reserve(head.len() + body.len() + 24);
        frame.put_slice(head.as_bytes());
        frame.put_slice(format!("content-length:{}\n\n", body.len()).as_bytes());
        frame.put_slice(&body);
        frame.put_u8(0);
        c.feed_raw(frame.split().freeze(), !plan.binary)
            .await
            .map_err(|e| e.to_string())?;
        shared.published.fetch_add(1, Ordering::Relaxed);
        unflushed += 1;
        if interval.is_some() || unflushed >= 32 {
            c.flush().await.map_err(|e| e.to_string())?;
            unflushed = 0;
        }
    }
    c.flush().await.map_err(|e| e.to_string())?;
    // Stay connected until the end of the run: closing now could race the last deliveries.
    tokio::spawn(async move {
        let _ = c.closed(Duration::from_secs(3600)).await;
    });
    Ok(())
}

async fn subscriber(
    mut c: Client,
    me: usize,
    publisher: u32,
    messages: u64,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> SubResult {
    let idx = publisher as usize;
    let mut seen = vec![0u64; messages.div_ceil(64) as usize];
    let mut r = SubResult {
        unique: 0,
        duplicated: 0,
        reordered: 0,
        latency: histogram(),
    };
    let mut highest: Option<u64> = None;
    while r.unique < messages {
        let ev = tokio::select! {
            _ = stop.cancelled() => break,
            ev = c.next_event(Duration::from_secs(3600)) => ev,
        };
        let f = match ev {
            Ok(Event::Frame(f)) if f.command == Command::Message => f,
            Ok(Event::Frame(_) | Event::Heartbeat) => continue,
            Ok(Event::Closed(_)) | Err(_) => break,
        };
        let Some((p, seq, sent_ns)) = payload::decode(&f.body) else {
            continue;
        };
        if p != publisher || seq >= messages {
            continue;
        }
        let now_ns = ns_since(shared.start, Instant::now());
        let _ = r
            .latency
            .record((now_ns.saturating_sub(sent_ns) / 1000).max(1));
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        let Some(w) = seen.get_mut(word) else {
            continue;
        };
        if *w & (1 << bit) != 0 {
            r.duplicated += 1;
            continue;
        }
        *w |= 1 << bit;
        r.unique += 1;
        if highest.is_some_and(|h| seq < h) {
            r.reordered += 1;
        }
        highest = Some(highest.map_or(seq, |h| h.max(seq)));
        if let Some(count) = shared.received.get(me) {
            count.store(r.unique, Ordering::Release);
        }
        shared.total.fetch_add(1, Ordering::AcqRel);
        shared.last_delivery_ns.fetch_max(now_ns, Ordering::AcqRel);
        if r.unique.is_multiple_of(16) || r.unique == messages {
            shared.wake[idx].notify_one();
        }
    }
    r
}

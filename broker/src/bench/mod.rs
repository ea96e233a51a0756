//! `stompbox bench`: a load generator for any STOMP-over-WebSocket broker, so users can measure
//! their own deployment (as `nats bench` does) and so Stompbox can be compared with others.
//!
//! Scenarios: `fanout` (1 publisher → N subscribers on one topic), `pairs` (P independent
//! publisher→subscriber pairs), `latency` (either shape at a fixed rate, for the latency
//! distribution), `idle` (C connected, subscribed connections: connect rate and memory per
//! connection). Every body carries publisher, sequence number and send time, so lost,
//! duplicated and reordered messages are counted and latency is measured end to end. Given the
//! broker's pid, the run samples its CPU time and resident memory from /proc: the load tool
//! shares the machine, so throughput alone may be client-bound, while server CPU per delivery
//! is not. The last line on stdout is the result as JSON.

mod connect;
mod idle;
mod load;
mod payload;
pub mod procstat;

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::json;

pub use connect::Connector;

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// One publisher, `--subscribers` subscribers on one topic.
    Fanout,
    /// `--pairs` independent publisher→subscriber pairs, each on its own topic.
    Pairs,
    /// `--shape` fanout or pairs at a fixed `--rate`, for the latency distribution.
    Latency,
    /// `--connections` connected, subscribed, idle connections.
    Idle,
}

/// The shape of the latency scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// 1 → `--subscribers`.
    Fanout,
    /// `--pairs` pairs.
    Pairs,
}

/// `stompbox bench` options.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// The scenario.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The broker's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// CONNECT login.
    #[arg(long)]
    pub login: Option<String>,
    /// CONNECT passcode.
    #[arg(long)]
    pub passcode: Option<String>,
    /// Subscribers of the fan-out topic.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Publisher→subscriber pairs.
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Connections of the idle scenario.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Body size in bytes (at least 40).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Send binary frames (`application/octet-stream`) instead of text.
    #[arg(long)]
    pub binary: bool,
    /// Messages a publisher may have in flight (window mode, the default).
    #[arg(long, default_value_t = 1000)]
    pub window: u64,
    /// Publish at this fixed rate per publisher (messages/s) instead of window mode.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Shape of the latency scenario.
    #[arg(long, value_enum, default_value_t = Shape::Fanout)]
    pub shape: Shape,
    /// The broker's process id: sample its CPU time and memory from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Topic prefix.
    #[arg(long, default_value = "/topic/bench")]
    pub topic: String,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Spread subscribers round robin over these URLs (repeat the option) instead of
    /// `--url`, which publishers keep using: for a fan-out across cluster nodes.
    #[arg(long = "subscriber-url")]
    pub subscriber_urls: Vec<String>,
    /// With `--subscriber-url`: wait this long after the subscriptions' receipts before
    /// publishing, so every cluster node has subscribed in Redis (milliseconds).
    #[arg(long, default_value_t = 500)]
    pub settle_ms: u64,
    /// Give up waiting for stragglers after this long without progress (seconds).
    #[arg(long, default_value_t = 5)]
    pub drain_timeout: u64,
    /// Idle scenario: wait this long with everything connected before sampling memory (s).
    #[arg(long, default_value_t = 1)]
    pub hold: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the benchmark and returns the JSON result.
pub async fn run(args: &BenchArgs) -> Result<serde_json::Value, String> {
    if args.size < payload::MIN_SIZE {
        return Err(format!("--size must be at least {}", payload::MIN_SIZE));
    }
    let connector = Connector {
        url: args.url.clone(),
        login: args.login.clone(),
        passcode: args.passcode.clone(),
        concurrency: args.connect_concurrency,
        subscriber_urls: args.subscriber_urls.clone(),
        settle: std::time::Duration::from_millis(args.settle_ms),
    };
    if args.scenario == Scenario::Idle {
        return idle::run(&connector, args).await;
    }
    let shape = match args.scenario {
        Scenario::Fanout => Shape::Fanout,
        Scenario::Pairs => Shape::Pairs,
        _ => args.shape,
    };
    let rate = match args.scenario {
        Scenario::Latency => Some(args.rate.unwrap_or(100)),
        _ => args.rate,
    };
    let plan = match shape {
        Shape::Fanout => load::Plan {
            publishers: vec![load::PublisherPlan {
                id: 0,
                topic: args.topic.clone(),
                fanout: args.subscribers as u64,
            }],
            subscribers: (0..args.subscribers)
                .map(|_| load::SubscriberPlan {
                    topic: args.topic.clone(),
                    publisher: 0,
                })
                .collect(),
            ..plan_defaults(args, rate)
        },
        Shape::Pairs => load::Plan {
            publishers: (0..args.pairs)
                .map(|i| load::PublisherPlan {
                    id: i as u32,
                    topic: format!("{}.{i}", args.topic),
                    fanout: 1,
                })
                .collect(),
            subscribers: (0..args.pairs)
                .map(|i| load::SubscriberPlan {
                    topic: format!("{}.{i}", args.topic),
                    publisher: i as u32,
                })
                .collect(),
            ..plan_defaults(args, rate)
        },
    };
    let started = Instant::now();
    let out = load::run(&connector, &plan).await?;
    let secs = out.elapsed.as_secs_f64().max(1e-9);
    let q = |p: f64| out.latency.value_at_quantile(p);
    let mut result = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "shape": format!("{shape:?}").to_lowercase(),
        "url": args.url,
        "subscriber_urls": args.subscriber_urls,
        "publishers": plan.publishers.len(),
        "subscribers": plan.subscribers.len(),
        "messages_per_publisher": args.messages,
        "size": args.size,
        "binary": args.binary,
        "rate_per_publisher": rate,
        "window": if rate.is_none() { Some(args.window) } else { None },
        "published": out.published,
        "expected": out.expected,
        "delivered": out.delivered,
        "lost": out.lost,
        "duplicated": out.duplicated,
        "reordered": out.reordered,
        "duration_s": secs,
        "wall_s": started.elapsed().as_secs_f64(),
        "deliveries_per_s": out.delivered as f64 / secs,
        "latency_us": {
            "p50": q(0.50), "p99": q(0.99), "p999": q(0.999), "max": out.latency.max(),
            "mean": out.latency.mean(),
        },
    });
    if let (Some(cpu), Some(rss)) = (out.server_cpu_s, out.server_rss_kib) {
        // CPU from the first publish to the last delivery: connection set-up is not counted.
        result["server"] = json!({
            "pid": args.pid,
            "cpu_s": cpu,
            "cpu_us_per_delivery": if out.delivered > 0 { cpu * 1e6 / out.delivered as f64 } else { 0.0 },
            "rss_kib": rss,
        });
    }
    Ok(result)
}

fn plan_defaults(args: &BenchArgs, rate: Option<u64>) -> load::Plan {
    load::Plan {
        publishers: Vec::new(),
        subscribers: Vec::new(),
        messages: args.messages,
        size: args.size,
        binary: args.binary,
        rate,
        window: args.window.max(1),
        drain_timeout: Duration::from_secs(args.drain_timeout.max(1)),
        progress: !args.quiet,
        pid: args.pid,
    }
}

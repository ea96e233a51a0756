//! The inbound rate limit of one connection: two token buckets, frames and bytes.
//!
//! Each bucket holds up to `burst_secs` seconds of its sustained rate and refills
//! continuously. Taking may drive a bucket below zero; the deficit says how long the
//! connection must stay unread (policy "delay") before it is back within its rate.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateLimitConfig;

/// The buckets of one connection.
#[derive(Debug)]
pub struct RateLimiter {
    frames: Bucket,
    bytes: Bucket,
    last: Instant,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens per second; 0 means unlimited.
    rate: f64,
    capacity: f64,
    tokens: f64,
}

impl Bucket {
    fn new(rate: f64, burst_secs: u32) -> Self {
        let capacity = rate * f64::from(burst_secs);
        Self {
            rate,
            capacity,
            tokens: capacity,
        }
    }

    fn refill(&mut self, secs: f64) {
        if self.rate > 0.0 {
            self.tokens = (self.tokens + secs * self.rate).min(self.capacity);
        }
    }

    fn take(&mut self, n: f64) {
        if self.rate > 0.0 {
            self.tokens -= n;
        }
    }

    /// Time until the bucket is no longer in deficit.
    fn wait(&self) -> Duration {
        if self.rate > 0.0 && self.tokens < 0.0 {
            Duration::from_secs_f64(-self.tokens / self.rate)
        } else {
            Duration::ZERO
        }
    }
}

impl RateLimiter {
    /// The configured limiter, or `None` when no rate is set.
    pub fn new(cfg: &RateLimitConfig, now: Instant) -> Option<Self> {
        if cfg.messages_per_sec == 0 && cfg.bytes_per_sec == 0 {
            return None;
        }
        Some(Self {
            frames: Bucket::new(f64::from(cfg.messages_per_sec), cfg.burst_secs),
            bytes: Bucket::new(cfg.bytes_per_sec as f64, cfg.burst_secs),
            last: now,
        })
    }

    /// Accounts for `frames` frames and `bytes` bytes received at `now`; returns how long the
    /// connection is over its rate (zero when it is within it).
    pub fn take(&mut self, frames: u32, bytes: usize, now: Instant) -> Duration {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.frames.refill(secs);
        self.bytes.refill(secs);
        self.frames.take(f64::from(frames));
        self.bytes.take(bytes as f64);
        self.frames.wait().max(self.bytes.wait())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RatePolicy;

    #[test]
    fn burst_then_sustained_rate() {
        let cfg = RateLimitConfig {
            messages_per_sec: 10,
            bytes_per_sec: 0,
            burst_secs: 2,
            policy: RatePolicy::Delay,
        };
        let t0 = Instant::now();
        let mut r = RateLimiter::new(&cfg, t0).unwrap();
        // A burst of 20 fits.
        assert_eq!(r.take(20, 5000, t0), Duration::ZERO);
        // The 21st is 0.1 s early.
        let over = r.take(1, 0, t0);
        assert!((over.as_secs_f64() - 0.1).abs() < 1e-9, "{over:?}");
        // After 0.1 s it is even again; after another second, 10 more fit.
        assert_eq!(
            r.take(0, 0, t0 + Duration::from_millis(100)),
            Duration::ZERO
        );
        assert_eq!(
            r.take(10, 0, t0 + Duration::from_millis(1100)),
            Duration::ZERO
        );
        assert!(r.take(1, 0, t0 + Duration::from_millis(1100)) > Duration::ZERO);
        assert!(RateLimiter::new(&RateLimitConfig::default(), t0).is_none());
    }

    #[test]
    fn bytes_bucket() {
        let cfg = RateLimitConfig {
            messages_per_sec: 0,
            bytes_per_sec: 1000,
            burst_secs: 1,
            policy: RatePolicy::Error,
        };
        let t0 = Instant::now();
        let mut r = RateLimiter::new(&cfg, t0).unwrap();
        assert_eq!(r.take(100, 1000, t0), Duration::ZERO);
        assert_eq!(r.take(0, 500, t0), Duration::from_millis(500));
    }
}

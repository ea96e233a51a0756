//! Opening many benchmark connections quickly, with bounded concurrency.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Client;

/// How to reach and log in to the broker under test.
#[derive(Clone, Debug)]
pub struct Connector {
    /// `ws://host:port/path`.
    pub url: String,
    /// CONNECT `login`.
    pub login: Option<String>,
    /// CONNECT `passcode`.
    pub passcode: Option<String>,
    /// Connections being set up at once.
    pub concurrency: usize,
    /// Where subscribers connect, round robin (empty: `url`).
    pub subscriber_urls: Vec<String>,
    /// With subscriber URLs: the pause between subscribing and publishing.
    pub settle: Duration,
}

impl Connector {
    /// One STOMP 1.2 session, heart-beats off (the benchmark measures messages, not pings).
    pub async fn open(&self) -> Result<Client, String> {
        self.open_at(&self.url).await
    }

    async fn open_at(&self, url: &str) -> Result<Client, String> {
        let mut c = Client::websocket(url, &["v12.stomp"])
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        let mut headers: Vec<(&str, &str)> = vec![("heart-beat", "0,0"), ("host", "/")];
        if let Some(l) = &self.login {
            headers.push(("login", l));
        }
        if let Some(p) = &self.passcode {
            headers.push(("passcode", p));
        }
        c.connect_within(&headers, Duration::from_secs(30))
            .await
            .map_err(|e| format!("CONNECT: {e}"))?;
        Ok(c)
    }

    /// Opens one session per entry, `concurrency` at a time, subscribing each to its topic
    /// when it has one (confirmed by a receipt). Returns them in entry order.
    pub async fn open_many(&self, topics: Vec<Option<String>>) -> Result<Vec<Client>, String> {
        let limit = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut set = JoinSet::new();
        let n = topics.len();
        for (i, topic) in topics.into_iter().enumerate() {
            let permit = Arc::clone(&limit)
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            let this = self.clone();
            set.spawn(async move {
                let setup = async {
                    // Subscribers spread over the subscriber URLs, when given.
                    let url = match (&topic, this.subscriber_urls.len()) {
                        (Some(_), n) if n > 0 => this.subscriber_urls[i % n].clone(),
                        _ => this.url.clone(),
                    };
                    let mut c = this.open_at(&url).await?;
                    if let Some(t) = topic {
                        c.subscribe("sub-0", &t, &[])
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(c)
                };
                let r = tokio::time::timeout(Duration::from_secs(30), setup)
                    .await
                    .map_err(|_| "connection setup timed out".to_owned())
                    .and_then(|r| r);
                drop(permit);
                r.map(|c| (i, c))
            });
        }
        let mut out: Vec<Option<Client>> = (0..n).map(|_| None).collect();
        while let Some(done) = set.join_next().await {
            let (i, c) = done.map_err(|e| e.to_string())??;
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(c);
            }
        }
        out.into_iter()
            .map(|c| c.ok_or_else(|| "a connection was lost during setup".to_owned()))
            .collect()
    }
}

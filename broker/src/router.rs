//! Where a destination goes: which prefix serves it and which per-destination rule applies.
//!
//! Broker prefixes are plain prefix matches, as in Spring's `enableSimpleBroker("/topic",
//! "/queue")`. Application (`/app`) and user (`/user`) prefixes are resolved here too once they
//! are configured; a destination that no prefix serves is refused with a clear ERROR rather than
//! dropped silently.

use crate::config::{Config, DestinationMode, SlowConsumerPolicy};
use crate::pattern::{LimitError, Limits, Pattern};

/// The settings that apply to one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Broadcast or queue.
    pub mode: DestinationMode,
    /// What happens when a subscriber's outbox is full.
    pub slow_consumer: SlowConsumerPolicy,
    /// Queue bound.
    pub max_pending: usize,
    /// History and retained value.
    pub keep: crate::history::Keep,
    /// Presence on `<destination>/presence`.
    pub presence: bool,
}

/// The outcome of routing a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// An application destination; `lookup` is the destination without its prefix.
    App {
        /// E.g. `/chat/lobby` for `/app/chat/lobby`.
        lookup: &'a str,
    },
    /// A user destination: `/user/{name}/queue/x` (a SEND names the user) or `/user/queue/x`
    /// (a SUBSCRIBE means its own user).
    User {
        /// The text after the user prefix, e.g. `/bob/queue/x` or `/queue/x`.
        rest: &'a str,
    },
    /// Served by the broker under this rule.
    Broker(Rule),
    /// No prefix serves it.
    Unserved,
}

/// The routing table, built once from the configuration.
#[derive(Debug)]
pub struct Router {
    app_prefixes: Vec<String>,
    user_prefix: String,
    broker_prefixes: Vec<String>,
    rules: Vec<(Pattern, Rule)>,
    default: Rule,
    separator: u8,
    limits: Limits,
}

impl Router {
    /// Builds the table. The configuration was validated, so patterns compile.
    pub fn new(config: &Config) -> Self {
        let separator = config.separator().unwrap_or(b'/');
        let default = Rule {
            mode: DestinationMode::Broadcast,
            slow_consumer: config.broker.slow_consumer,
            max_pending: config.broker.max_pending,
            keep: crate::history::Keep {
                messages: 0,
                ttl: None,
                retain_last: false,
            },
            presence: false,
        };
        let rules = config
            .destinations
            .iter()
            .filter_map(|r| {
                let pattern = Pattern::parse(&r.pattern, separator).ok()?;
                Some((
                    pattern,
                    Rule {
                        mode: r.mode,
                        slow_consumer: r.slow_consumer.unwrap_or(default.slow_consumer),
                        max_pending: r.max_pending.unwrap_or(default.max_pending),
                        keep: crate::history::Keep {
                            messages: r.history,
                            ttl: (r.history_ttl_ms > 0)
                                .then(|| std::time::Duration::from_millis(r.history_ttl_ms)),
                            retain_last: r.retain_last,
                        },
                        presence: r.presence,
                    },
                ))
            })
            .collect();
        Self {
            app_prefixes: config.app.prefixes.clone(),
            user_prefix: config.user.prefix.trim_end_matches('/').to_owned(),
            broker_prefixes: config.broker.prefixes.clone(),
            rules,
            default,
            separator,
            limits: config.destination_limits(),
        }
    }

    /// Checks a destination from outside (a frame, an application handler) against
    /// `stomp.max_destination_length` and `max_destination_segments`, before it is routed or
    /// matched against anything.
    pub fn check_limits(&self, destination: &str) -> Result<(), LimitError> {
        self.limits.check(destination)
    }

    /// Routes a destination (a SEND's, or a SUBSCRIBE's, which may be a pattern). Application
    /// prefixes are tried first, then the user prefix, then the broker's.
    pub fn route<'a>(&self, destination: &'a str) -> Route<'a> {
        if let Some(lookup) = self
            .app_prefixes
            .iter()
            .find_map(|p| destination.strip_prefix(p.as_str()))
            .filter(|l| l.starts_with('/'))
        {
            return Route::App { lookup };
        }
        if let Some(rest) = destination
            .strip_prefix(self.user_prefix.as_str())
            .filter(|r| r.starts_with('/'))
        {
            return Route::User { rest };
        }
        self.route_broker(destination)
    }

    /// Routes a destination against the broker prefixes only.
    pub fn route_broker(&self, destination: &str) -> Route<'static> {
        if !self
            .broker_prefixes
            .iter()
            .any(|p| destination.starts_with(p.as_str()))
        {
            return Route::Unserved;
        }
        let rule = self
            .rules
            .iter()
            .find(|(p, _)| p.matches(destination))
            .map(|(_, r)| *r)
            .unwrap_or(self.default);
        Route::Broker(rule)
    }

    /// The broker prefixes, for error messages.
    pub fn broker_prefixes(&self) -> &[String] {
        &self.broker_prefixes
    }

    /// Every prefix a client may use, for error messages.
    pub fn all_prefixes(&self) -> Vec<&str> {
        self.app_prefixes
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(self.user_prefix.as_str()))
            .chain(self.broker_prefixes.iter().map(String::as_str))
            .collect()
    }

    /// The user prefix, without a trailing slash.
    pub fn user_prefix(&self) -> &str {
        &self.user_prefix
    }

    /// The segment separator for patterns.
    pub fn separator(&self) -> u8 {
        self.separator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_rules() {
        let config = Config::from_toml(
            "[[destinations]]\npattern = \"/queue/work.*\"\nmode = \"queue\"\nslow_consumer = \"disconnect\"\n",
        )
        .unwrap();
        let r = Router::new(&config);
        assert_eq!(r.route("/app/x"), Route::App { lookup: "/x" });
        assert_eq!(r.route("/user/queue/x"), Route::User { rest: "/queue/x" });
        assert_eq!(r.route("/application"), Route::Unserved);
        assert_eq!(r.route("/elsewhere"), Route::Unserved);
        match r.route("/queue/work.a") {
            Route::Broker(rule) => {
                assert_eq!(rule.mode, DestinationMode::Queue);
                assert_eq!(rule.slow_consumer, SlowConsumerPolicy::Disconnect);
            }
            other => panic!("{other:?}"),
        }
        match r.route("/topic/x") {
            Route::Broker(rule) => assert_eq!(rule.mode, DestinationMode::Broadcast),
            other => panic!("{other:?}"),
        }
    }
}

//! Authorization: who may subscribe to, and who may publish on, which destinations.
//!
//! Rules come from `[[access.rules]]`, each a destination pattern with a `subscribe` and/or a
//! `publish` list of principals. For each action, the first rule whose pattern matches the
//! destination *and* that lists that action decides; a rule that lists only `publish` leaves
//! subscribing to later rules. When no rule decides, `[access] default` does.
//!
//! Principals: `*` (everyone), `authenticated`, `anonymous`, `user:NAME`, `role:NAME`,
//! `claim:NAME=VALUE` (a JWT claim, or one element of an array claim). `user:{x}` names the
//! user by the destination segment the pattern captures as `{x}`, which gives every user a
//! private space such as `/topic/private/{owner}/**`.
//!
//! A wildcard subscription is checked as written when it is made, and each delivery it
//! would receive is checked again against the concrete destination, so `/topic/**` never
//! leaks what a rule on `/topic/admin/**` keeps from this user.

use std::sync::Arc;

use crate::auth::Identity;
use crate::config::{AccessConfig, AccessDefault};
use crate::pattern::{Pattern, PatternError};

/// What a client wants to do with a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// SUBSCRIBE, and every delivery to a wildcard subscription.
    Subscribe,
    /// SEND, including to application and user destinations.
    Publish,
}

impl Action {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe",
            Action::Publish => "publish",
        }
    }
}

/// A rule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The pattern does not compile.
    #[error("access.rules[{0}].pattern: {1}")]
    Pattern(usize, PatternError),
    /// A principal is not one of the documented forms.
    #[error(
        "access.rules[{0}]: unknown principal {1:?} (expected \"*\", \"authenticated\", \"anonymous\", \"user:NAME\", \"role:NAME\" or \"claim:NAME=VALUE\")"
    )]
    Principal(usize, String),
    /// `user:{x}` names a capture the pattern does not have as a whole segment before any
    /// `**`.
    #[error(
        "access.rules[{0}]: {1:?} needs {{{2}}} as a whole segment of the pattern, before any '**'"
    )]
    Capture(usize, String, String),
    /// A rule that lists neither action would never decide anything.
    #[error("access.rules[{0}] lists neither subscribe nor publish")]
    Empty(usize),
}

/// Who a principal admits.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Who {
    Everyone,
    Authenticated,
    Anonymous,
    User(String),
    /// The user named by this segment of the destination.
    UserAt(usize),
    Role(String),
    Claim(String, String),
}

#[derive(Debug)]
struct Rule {
    pattern: Pattern,
    subscribe: Option<Vec<Who>>,
    publish: Option<Vec<Who>>,
}

/// The compiled rules.
#[derive(Debug)]
pub struct Access {
    rules: Vec<Rule>,
    default_allow: bool,
    separator: u8,
}

impl Access {
    /// Compiles `[access]`; `separator` is the broker's pattern separator.
    pub fn from_config(cfg: &AccessConfig, separator: u8) -> Result<Self, AccessError> {
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (i, r) in cfg.rules.iter().enumerate() {
            let pattern =
                Pattern::parse(&r.pattern, separator).map_err(|e| AccessError::Pattern(i, e))?;
            if r.subscribe.is_none() && r.publish.is_none() {
                return Err(AccessError::Empty(i));
            }
            let compile = |list: &Option<Vec<String>>| -> Result<Option<Vec<Who>>, AccessError> {
                list.as_ref()
                    .map(|l| {
                        l.iter()
                            .map(|p| parse_who(i, p, &r.pattern, separator))
                            .collect()
                    })
                    .transpose()
            };
            rules.push(Rule {
                subscribe: compile(&r.subscribe)?,
                publish: compile(&r.publish)?,
                pattern,
            });
        }
        Ok(Self {
            rules,
            default_allow: cfg.default == AccessDefault::Allow,
            separator,
        })
    }

    /// Everything allowed to everyone: no checks needed at all.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default_allow
    }

    /// Whether subscribing can ever be refused, so wildcard subscriptions need a check per
    /// delivery.
    pub fn guards_subscribe(&self) -> bool {
        !self.default_allow || self.rules.iter().any(|r| r.subscribe.is_some())
    }

    /// Whether `who` (`None`: anonymous) may do `action` on `destination`.
    pub fn allows(&self, action: Action, destination: &str, who: Option<&Identity>) -> bool {
        for rule in &self.rules {
            let list = match action {
                Action::Subscribe => &rule.subscribe,
                Action::Publish => &rule.publish,
            };
            let Some(list) = list else { continue };
            if !rule.pattern.matches(destination) {
                continue;
            }
            return list
                .iter()
                .any(|w| self.admits(w, destination, who.filter(|i| i.user.is_some())));
        }
        self.default_allow
    }

    fn admits(&self, w: &Who, destination: &str, who: Option<&Identity>) -> bool {
        let user = who.and_then(|i| i.user.as_deref());
        match w {
            Who::Everyone => true,
            Who::Authenticated => user.is_some(),
            Who::Anonymous => user.is_none(),
            Who::User(name) => user == Some(name.as_str()),
            Who::UserAt(i) => {
                user.is_some() && destination.split(self.separator as char).nth(*i) == user
            }
            Who::Role(role) => who.is_some_and(|i| i.roles.iter().any(|r| r == role)),
            Who::Claim(name, value) => {
                who.is_some_and(|i| i.claims.iter().any(|(n, v)| n == name && v == value))
            }
        }
    }
}

impl Access {
    /// Refuses everything: the fallback for rules that cannot be compiled.
    pub fn deny_all() -> Self {
        Self {
            rules: Vec::new(),
            default_allow: false,
            separator: b'/',
        }
    }
}

impl Default for Access {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_allow: true,
            separator: b'/',
        }
    }
}

/// A subscriber's identity kept for the per-delivery check of a wildcard subscription.
pub type Guard = Option<Arc<Identity>>;

fn parse_who(rule: usize, text: &str, pattern: &str, separator: u8) -> Result<Who, AccessError> {
    let bad = || AccessError::Principal(rule, text.to_owned());
    Ok(match text {
        "*" => Who::Everyone,
        "authenticated" => Who::Authenticated,
        "anonymous" => Who::Anonymous,
        _ => {
            match text.split_once(':') {
                Some(("user", name)) if name.starts_with('{') && name.ends_with('}') => {
                    let capture = name;
                    let mut at = None;
                    for (i, seg) in pattern.split(separator as char).enumerate() {
                        if seg == "**" {
                            break;
                        }
                        if seg == capture {
                            at = Some(i);
                            break;
                        }
                    }
                    let inner = capture.trim_start_matches('{').trim_end_matches('}');
                    Who::UserAt(at.ok_or_else(|| {
                        AccessError::Capture(rule, text.to_owned(), inner.to_owned())
                    })?)
                }
                Some(("user", name)) if !name.is_empty() => Who::User(name.to_owned()),
                Some(("role", name)) if !name.is_empty() => Who::Role(name.to_owned()),
                Some(("claim", kv)) => match kv.split_once('=') {
                    Some((n, v)) if !n.is_empty() => Who::Claim(n.to_owned(), v.to_owned()),
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessRule;

    /// A rule as (pattern, subscribe, publish).
    type Spec<'a> = (&'a str, Option<&'a [&'a str]>, Option<&'a [&'a str]>);

    fn access(default: AccessDefault, rules: &[Spec<'_>]) -> Access {
        let to = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| s.to_string()).collect());
        let cfg = AccessConfig {
            default,
            rules: rules
                .iter()
                .map(|(p, s, pb)| AccessRule {
                    pattern: p.to_string(),
                    subscribe: to(*s),
                    publish: to(*pb),
                })
                .collect(),
        };
        Access::from_config(&cfg, b'/').unwrap()
    }

    fn user(name: &str, roles: &[&str], claims: &[(&str, &str)]) -> Identity {
        Identity {
            user: Some(name.to_owned()),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            claims: claims
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            expires_at: None,
        }
    }

    #[test]
    fn first_rule_listing_the_action_decides() {
        let a = access(
            AccessDefault::Deny,
            &[
                ("/topic/prices/**", None, Some(&["role:pricer"])),
                ("/topic/**", Some(&["*"]), Some(&["authenticated"])),
            ],
        );
        let alice = user("alice", &[], &[]);
        let pricer = user("bob", &["pricer"], &[]);
        // Subscribing to prices falls through the publish-only rule to the second rule.
        assert!(a.allows(Action::Subscribe, "/topic/prices/eur", None));
        assert!(!a.allows(Action::Publish, "/topic/prices/eur", Some(&alice)));
        assert!(a.allows(Action::Publish, "/topic/prices/eur", Some(&pricer)));
        assert!(a.allows(Action::Publish, "/topic/chat", Some(&alice)));
        assert!(!a.allows(Action::Publish, "/topic/chat", None));
        // Nothing matches: the default.
        assert!(!a.allows(Action::Subscribe, "/queue/x", Some(&alice)));
        assert!(a.guards_subscribe());
    }

    #[test]
    fn principals() {
        let a = access(
            AccessDefault::Allow,
            &[
                (
                    "/topic/private/{owner}/**",
                    Some(&["user:{owner}", "role:admin"]),
                    None,
                ),
                ("/topic/acme/**", Some(&["claim:tenant=acme"]), None),
                ("/topic/guests", Some(&["anonymous"]), Some(&["user:carol"])),
            ],
        );
        let alice = user("alice", &[], &[("tenant", "acme")]);
        let admin = user("root", &["admin"], &[]);
        let carol = user("carol", &[], &[("tenant", "other")]);
        assert!(a.allows(
            Action::Subscribe,
            "/topic/private/alice/inbox",
            Some(&alice)
        ));
        assert!(!a.allows(
            Action::Subscribe,
            "/topic/private/alice/inbox",
            Some(&carol)
        ));
        assert!(!a.allows(Action::Subscribe, "/topic/private/alice/inbox", None));
        assert!(a.allows(
            Action::Subscribe,
            "/topic/private/alice/inbox",
            Some(&admin)
        ));
        // A wildcard in the owner's place matches no user name.
        assert!(!a.allows(Action::Subscribe, "/topic/private/*/inbox", Some(&alice)));
        assert!(a.allows(Action::Subscribe, "/topic/acme/news", Some(&alice)));
        assert!(!a.allows(Action::Subscribe, "/topic/acme/news", Some(&carol)));
        assert!(a.allows(Action::Subscribe, "/topic/guests", None));
        assert!(!a.allows(Action::Subscribe, "/topic/guests", Some(&carol)));
        assert!(a.allows(Action::Publish, "/topic/guests", Some(&carol)));
        assert!(!a.allows(Action::Publish, "/topic/guests", Some(&alice)));
        assert!(a.allows(Action::Publish, "/topic/other", None));
    }

    #[test]
    fn bad_rules_are_refused() {
        let cfg = |p: &str, who: &str| AccessConfig {
            default: AccessDefault::Allow,
            rules: vec![AccessRule {
                pattern: p.to_owned(),
                subscribe: Some(vec![who.to_owned()]),
                publish: None,
            }],
        };
        for (p, who) in [
            ("/topic/x", "root"),
            ("/topic/x", "role:"),
            ("/topic/x", "claim:=1"),
            ("/topic/**/{u}", "user:{u}"),
            ("/topic/{u}", "user:{v}"),
            ("/topic/a**", "*"),
        ] {
            assert!(
                Access::from_config(&cfg(p, who), b'/').is_err(),
                "{p} {who}"
            );
        }
        let empty = AccessConfig {
            default: AccessDefault::Allow,
            rules: vec![AccessRule {
                pattern: "/topic/x".into(),
                subscribe: None,
                publish: None,
            }],
        };
        assert_eq!(
            Access::from_config(&empty, b'/').unwrap_err(),
            AccessError::Empty(0)
        );
    }
}

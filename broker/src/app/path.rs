//! Route paths with captures, as Spring's `@MessageMapping("/chat/{room}")`.

/// One segment of a route path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Literal(String),
    Capture(String),
    /// `*`: any one segment, not captured.
    Any,
    /// `**`: any number of trailing segments.
    Rest,
}

/// A compiled route path such as `/chat/{room}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePath {
    source: String,
    segs: Vec<Seg>,
}

/// Why a route path was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutePathError {
    /// Must start with '/'.
    #[error("route path {0:?} must start with '/'")]
    NoLeadingSlash(String),
    /// A segment that mixes a capture with other text, or an unclosed brace.
    #[error("route path {0:?}: a capture must be a whole segment like {{name}}")]
    BadCapture(String),
    /// `**` anywhere but last.
    #[error("route path {0:?}: '**' may only be the last segment")]
    RestNotLast(String),
}

/// Captured values by name, in path order.
pub type Captures = Vec<(String, String)>;

impl RoutePath {
    /// Compiles a path.
    pub fn parse(source: &str) -> Result<Self, RoutePathError> {
        let rest = source
            .strip_prefix('/')
            .ok_or_else(|| RoutePathError::NoLeadingSlash(source.to_owned()))?;
        let mut segs = Vec::new();
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let seg = if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(RoutePathError::BadCapture(source.to_owned()));
                }
                // `{name:regex}` is accepted for Spring compatibility; the regex is not applied.
                Seg::Capture(name.split(':').next().unwrap_or(name).to_owned())
            } else if part.contains(['{', '}']) {
                return Err(RoutePathError::BadCapture(source.to_owned()));
            } else if *part == "*" {
                Seg::Any
            } else if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(RoutePathError::RestNotLast(source.to_owned()));
                }
                Seg::Rest
            } else {
                Seg::Literal((*part).to_owned())
            };
            segs.push(seg);
        }
        Ok(Self {
            source: source.to_owned(),
            segs,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Matches a lookup path (`/chat/lobby`), returning the captures.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let rest = path.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let mut captures = Vec::new();
        for seg in &self.segs {
            match seg {
                Seg::Rest => return Some(captures),
                _ => {
                    let part = parts.next()?;
                    match seg {
                        Seg::Literal(l) if l == part => {}
                        Seg::Capture(name) if !part.is_empty() => {
                            captures.push((name.clone(), part.to_owned()));
                        }
                        Seg::Any if !part.is_empty() => {}
                        _ => return None,
                    }
                }
            }
        }
        parts.next().is_none().then_some(captures)
    }
}

/// Replaces each `{name}` in `template` with its captured value.
pub fn fill(template: &str, captures: &Captures) -> String {
    let mut out = template.to_owned();
    for (name, value) in captures {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_and_wildcards() {
        let p = RoutePath::parse("/chat/{room}").unwrap();
        assert_eq!(
            p.matches("/chat/lobby"),
            Some(vec![("room".into(), "lobby".into())])
        );
        assert_eq!(p.matches("/chat"), None);
        assert_eq!(p.matches("/chat/a/b"), None);
        assert_eq!(p.matches("/chat/"), None);
        let p = RoutePath::parse("/orders/**").unwrap();
        assert_eq!(p.matches("/orders/1/lines"), Some(vec![]));
        let p = RoutePath::parse("/x/*/{id:\\d+}").unwrap();
        assert_eq!(p.matches("/x/y/7"), Some(vec![("id".into(), "7".into())]));
        assert!(RoutePath::parse("chat").is_err());
        assert!(RoutePath::parse("/a{b}").is_err());
        assert!(RoutePath::parse("/**/x").is_err());
    }

    #[test]
    fn fills_templates() {
        let c = vec![("room".to_owned(), "lobby".to_owned())];
        assert_eq!(fill("/topic/chat/{room}", &c), "/topic/chat/lobby");
    }
}

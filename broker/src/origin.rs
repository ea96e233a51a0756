//! The browser origin check of the WebSocket handshake.
//!
//! Browsers let any page open a WebSocket to any host and attach that host's cookies, so a
//! broker that authenticates by cookie (or sits on a trusted network) must refuse pages it
//! does not know: cross-site WebSocket hijacking. The check allows the broker's own origin
//! (the `Origin` whose host and port are the request's `Host`, as Spring's default) and the
//! configured allow-list; a request without `Origin` comes from a non-browser client and is
//! allowed or refused by `websocket.allow_missing_origin`.

use crate::config::WebSocketConfig;

/// Whether a handshake with these `Origin` and `Host` headers may proceed.
pub fn allowed(cfg: &WebSocketConfig, origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin.map(str::trim) else {
        return cfg.allow_missing_origin;
    };
    if let (Some(host), Some((_, authority))) = (host, origin.split_once("://"))
        && authority.eq_ignore_ascii_case(host.trim())
    {
        return true;
    }
    cfg.allowed_origins.iter().any(|p| matches(p, origin))
}

/// Matches an origin against one allow-list entry: `*` alone matches anything; elsewhere `*`
/// stands for any run of characters other than `/` (so `https://*.example.com` matches every
/// subdomain, and `http://localhost:*` every port). Case-insensitive, as origins are.
pub fn matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    glob(pattern.as_bytes(), origin.as_bytes())
}

/// Iterative glob with backtracking to the last `*`: linear in practice, never recursive.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c.eq_ignore_ascii_case(&s[si]) => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                // The star may take one more character, unless that character is a '/'.
                Some((sp, ss)) if s[ss] != b'/' => {
                    star = Some((sp, ss + 1));
                    pi = sp + 1;
                    si = ss + 1;
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*", "https://evil.example"));
        assert!(matches("https://*.example.com", "https://app.example.com"));
        assert!(matches("https://*.example.com", "https://a.b.example.com"));
        assert!(matches("https://*.example.com", "HTTPS://App.Example.com"));
        assert!(!matches("https://*.example.com", "https://example.com"));
        assert!(!matches(
            "https://*.example.com",
            "https://evil.com/.example.com"
        ));
        assert!(!matches(
            "https://*.example.com",
            "https://example.com.evil.net"
        ));
        assert!(!matches("https://*.example.com", "http://app.example.com"));
        assert!(matches("http://localhost:*", "http://localhost:5173"));
        assert!(!matches(
            "http://localhost:*",
            "http://localhost.evil.net:80"
        ));
        assert!(matches(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(!matches(
            "https://app.example.com",
            "https://app.example.com.evil"
        ));
    }

    #[test]
    fn own_origin_allow_list_and_missing_origin() {
        let mut cfg = WebSocketConfig::default();
        assert!(allowed(&cfg, None, Some("broker:8080")));
        assert!(allowed(
            &cfg,
            Some("http://broker:8080"),
            Some("broker:8080")
        ));
        assert!(!allowed(
            &cfg,
            Some("http://evil:8080"),
            Some("broker:8080")
        ));
        assert!(!allowed(&cfg, Some("null"), Some("broker:8080")));
        cfg.allowed_origins = vec!["https://*.example.com".into()];
        assert!(allowed(
            &cfg,
            Some("https://app.example.com"),
            Some("broker:8080")
        ));
        cfg.allow_missing_origin = false;
        assert!(!allowed(&cfg, None, Some("broker:8080")));
    }
}

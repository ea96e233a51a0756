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

/// The glob as a set of pattern positions advanced over the origin one byte at a time,
/// `BITS` positions to a word: bit `i` means the first `i` pattern bytes match what was read.
/// A literal byte moves its position on when it equals the origin byte (ignoring case), a `*`
/// keeps its position for any byte but `/` and may also be skipped. No backtracking: the cost
/// is O(256·w + |origin|·w) word operations with w = ⌈(|pattern|+1)/64⌉, so one word per byte
/// for any realistic pattern, however the stars are arranged.
fn glob(pattern: &[u8], origin: &[u8]) -> bool {
    // Runs of stars match what one star does.
    let mut p = pattern.to_vec();
    p.dedup_by(|a, b| *a == b'*' && *b == b'*');
    let words = (p.len() + 1).div_ceil(BITS);
    let mut star = vec![0u64; words];
    let mut table = vec![0u64; 256 * words];
    for (i, &c) in p.iter().enumerate() {
        let bit = 1u64 << (i % BITS);
        if c == b'*' {
            star[i / BITS] |= bit;
        } else {
            for b in [c.to_ascii_lowercase(), c.to_ascii_uppercase()] {
                table[usize::from(b) * words + i / BITS] |= bit;
            }
        }
    }
    let mut live = vec![0u64; words];
    live[0] = 1;
    skip_stars(&mut live, &star);
    let mut next = vec![0u64; words];
    for &c in origin {
        let row = &table[usize::from(c) * words..][..words];
        let mut carry = 0u64;
        for w in 0..words {
            let moved = live[w] & row[w];
            let stay = if c == b'/' { 0 } else { live[w] & star[w] };
            next[w] = (moved << 1) | carry | stay;
            carry = moved >> (BITS - 1);
        }
        skip_stars(&mut next, &star);
        std::mem::swap(&mut live, &mut next);
        if live.iter().all(|&w| w == 0) {
            return false;
        }
    }
    live[p.len() / BITS] & (1 << (p.len() % BITS)) != 0
}

const BITS: usize = 64;

/// A live `*` position may match nothing: its successor is live too. Stars never follow
/// stars (runs were collapsed), so one step is enough.
fn skip_stars(live: &mut [u64], star: &[u64]) {
    let mut carry = 0u64;
    for (w, s) in live.iter_mut().zip(star) {
        let skipped = *w & s;
        *w |= (skipped << 1) | carry;
        carry = skipped >> (BITS - 1);
    }
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
    fn many_stars_against_a_long_origin() {
        // The shape that made the backtracking glob quadratic: every star retried at every
        // byte. Linear now; this ran for seconds before.
        let pattern = format!("https://{}.example.com", "*a".repeat(200));
        let origin = format!("https://{}", "a".repeat(200_000));
        assert!(!matches(&pattern, &origin));
        let pattern = format!("https://*{}b", "a".repeat(2_000));
        assert!(!matches(&pattern, &origin));
        assert!(matches(&pattern, &format!("{origin}b")));
        // Long patterns span several words of state.
        let long = format!("https://{}*.example.com", "x".repeat(150));
        assert!(matches(
            &long,
            &format!("https://{}app.example.com", "x".repeat(150))
        ));
        assert!(!matches(
            &long,
            &format!("https://{}a/b.example.com", "x".repeat(150))
        ));
    }

    /// Reference: recursion over every split, exponential, fine for tiny inputs.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len())
                .take_while(|&k| k == 0 || s[k - 1] != b'/')
                .any(|k| reference(rest, &s[k..])),
            Some((c, rest)) => s
                .split_first()
                .is_some_and(|(x, more)| c.eq_ignore_ascii_case(x) && reference(rest, more)),
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_reference(p in "[aB/*.]{0,8}", s in "[AbB/.]{0,10}") {
            proptest::prop_assert_eq!(glob(p.as_bytes(), s.as_bytes()), reference(p.as_bytes(), s.as_bytes()));
        }
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

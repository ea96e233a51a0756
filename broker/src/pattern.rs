//! Spring-style (Ant) destination patterns: `*` and `?` inside a segment, `**` across segments,
//! `{name}` captures (which match like `*`).
//!
//! Segments are split on one separator byte, `/` by default or `.` for dotted destinations, as
//! Spring's `AntPathMatcher` does. A pattern is compiled once, when it is subscribed or
//! configured, so matching a published destination allocates nothing for patterns of up to
//! 127 segments.
//!
//! Matching never backtracks. A pattern is run as a set of positions (how many of its segments
//! have matched so far) over the destination's segments, one at a time: each segment moves
//! every live position on by one when that pattern segment matches it, and `**` keeps its
//! position alive. Each (pattern segment, destination segment) pair is tested at most once, and
//! a segment test is linear (see `glob`), so a pattern `p` with `P` segments against a
//! destination `d` with `D` segments costs O(D·|p| + P·|d|) byte steps, bounded by
//! O(|p|·|d|), however the `**`, `*` and `?` are arranged. `Limits` bounds |d| and D for
//! everything a client sends.

use std::sync::Arc;

mod glob;
#[cfg(test)]
mod prop;

/// Why a pattern was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `**` must be a whole segment.
    #[error("'**' must be a whole segment")]
    DoubleStarInSegment,
    /// A `{` without its `}`, or a `}` without its `{`.
    #[error("unbalanced '{{' or '}}'")]
    UnbalancedBrace,
    /// The pattern is empty.
    #[error("pattern is empty")]
    Empty,
    /// Over 4 GiB (the destination limits keep client patterns far below).
    #[error("pattern is too long")]
    TooLong,
}

/// A destination (or pattern) over the configured size limits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// More bytes than `stomp.max_destination_length`.
    #[error("destination is {length} bytes long; the limit is {limit} bytes")]
    TooLong {
        /// The destination's length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// More segments than `stomp.max_destination_segments`.
    #[error("destination has more than {limit} segments (separator-delimited parts)")]
    TooManySegments {
        /// The limit.
        limit: usize,
    },
}

/// The size limits every destination from a client (and every configured pattern) must meet
/// before it is routed or matched: they bound the cost of matching one destination against one
/// pattern (see the module documentation) and of the registry's per-prefix lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes.
    pub max_length: usize,
    /// Most segments, counted as the matcher splits: separators + 1, so `/topic/a/b` has four
    /// (the empty one before the leading `/` included).
    pub max_segments: usize,
    /// The separator segments are split on.
    pub separator: u8,
}

impl Limits {
    /// Checks `destination`; costs O(min(|destination|, max_length)).
    pub fn check(&self, destination: &str) -> Result<(), LimitError> {
        let bytes = destination.as_bytes();
        if bytes.len() > self.max_length {
            return Err(LimitError::TooLong {
                length: bytes.len(),
                limit: self.max_length,
            });
        }
        let separators = memchr::memchr_iter(self.separator, bytes).count();
        if separators >= self.max_segments {
            return Err(LimitError::TooManySegments {
                limit: self.max_segments,
            });
        }
        Ok(())
    }
}

/// What one compiled segment matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Exactly its text.
    Literal,
    /// One segment with `*`/`?` wildcards; `{..}` captures were turned into `*`, runs of `*`
    /// collapsed to one.
    Glob,
    /// `**`: zero or more whole segments. Never two in a row (`**/**` compiles to one).
    AnySegments,
}

/// One compiled segment: its kind and its text, a range of the pattern's normal form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    kind: Kind,
    start: u32,
    end: u32,
}

/// A pattern's normal form and its segments, shared by every clone (a subscription's session
/// and the registry hold the same one). Its size is the normal form (at most the source) plus
/// 12 bytes a segment.
#[derive(Debug, PartialEq, Eq)]
struct Compiled {
    text: Box<str>,
    segments: Box<[Segment]>,
    separator: u8,
}

/// A compiled destination pattern. Two patterns are equal when their normal forms are
/// (`/topic/{room}` and `/topic/*`, `/a/**/**` and `/a/**`): they match the same destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(Arc<Compiled>);

/// True when a destination string uses pattern syntax (as `AntPathMatcher::isPattern`).
pub fn is_pattern(destination: &str) -> bool {
    destination.bytes().any(|b| matches!(b, b'*' | b'?' | b'{'))
}

/// Positions of a pattern that fit in the stack state: 2 words.
const STACK_WORDS: usize = 2;

impl Pattern {
    /// Compiles `source`, splitting segments on `separator` (an ASCII byte).
    pub fn parse(source: &str, separator: u8) -> Result<Self, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        let offset = |n: usize| u32::try_from(n).map_err(|_| PatternError::TooLong);
        let mut text = String::with_capacity(source.len());
        let mut segments: Vec<Segment> = Vec::new();
        for seg in source.as_bytes().split(|&b| b == separator) {
            let (kind, bytes) = compile_segment(seg)?;
            let last = segments.last().map(|s| s.kind);
            if kind == Kind::AnySegments && last == Some(Kind::AnySegments) {
                continue;
            }
            if last.is_some() {
                text.push(char::from(separator));
            }
            let start = offset(text.len())?;
            // Whole characters were copied or dropped (braces are ASCII), so this is UTF-8.
            text.push_str(&String::from_utf8_lossy(&bytes));
            segments.push(Segment {
                kind,
                start,
                end: offset(text.len())?,
            });
        }
        Ok(Self(Arc::new(Compiled {
            text: text.into_boxed_str(),
            segments: segments.into_boxed_slice(),
            separator,
        })))
    }

    /// The pattern in its normal form: `{name}` as `*`, runs of `*` and of `**` segments
    /// collapsed.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// The literal segments before the first wildcard segment, joined by the separator: every
    /// destination the pattern matches starts with this text, followed by the separator or the
    /// end. The registry files pattern subscriptions under it.
    pub fn literal_prefix(&self) -> &str {
        let end = self
            .0
            .segments
            .iter()
            .take_while(|s| s.kind == Kind::Literal)
            .last()
            .map_or(0, |s| s.end as usize);
        self.0.text.get(..end).unwrap_or("")
    }

    /// Whether segment `seg` accepts the destination segment `part`.
    fn accepts(&self, seg: &Segment, part: &[u8]) -> bool {
        let text = self
            .0
            .text
            .as_bytes()
            .get(seg.start as usize..seg.end as usize)
            .unwrap_or_default();
        match seg.kind {
            Kind::Literal => text == part,
            Kind::Glob => glob::matches(text, part),
            Kind::AnySegments => true,
        }
    }

    /// Whether `destination` matches. Worst case O(|pattern| · |destination|), see the module
    /// documentation; no allocation unless the pattern has more than 127 segments.
    pub fn matches(&self, destination: &str) -> bool {
        // Most patterns have no `**` but a trailing one (`/topic/chat/*`, `/topic/**`): those
        // match segment by segment in lockstep, without the position set.
        let segments = &self.0.segments;
        let any = segments.iter().position(|s| s.kind == Kind::AnySegments);
        if any.is_none_or(|i| i + 1 == segments.len()) {
            return self.lockstep(destination.as_bytes(), any.is_some());
        }
        let words = (segments.len() + 1).div_ceil(64);
        if words <= STACK_WORDS {
            let (mut a, mut b) = ([0u64; STACK_WORDS], [0u64; STACK_WORDS]);
            self.run(destination.as_bytes(), &mut a[..words], &mut b[..words])
        } else {
            let (mut a, mut b) = (vec![0u64; words], vec![0u64; words]);
            self.run(destination.as_bytes(), &mut a, &mut b)
        }
    }

    /// Each pattern segment against the next destination segment; with `trailing_any` the
    /// last pattern segment is `**` and takes whatever is left.
    fn lockstep(&self, destination: &[u8], trailing_any: bool) -> bool {
        let segments = &self.0.segments;
        let fixed = &segments[..segments.len() - usize::from(trailing_any)];
        let mut parts = destination.split(|&b| b == self.0.separator);
        for seg in fixed {
            match parts.next() {
                Some(part) if self.accepts(seg, part) => {}
                _ => return false,
            }
        }
        trailing_any || parts.next().is_none()
    }

    /// The position-set simulation: bit `i` of `live` means the first `i` pattern segments
    /// match the destination segments read so far.
    fn run<'a>(
        &self,
        destination: &[u8],
        mut live: &'a mut [u64],
        mut next: &'a mut [u64],
    ) -> bool {
        let segments = &self.0.segments;
        let end = segments.len();
        self.enter(live, 0);
        for part in destination.split(|&b| b == self.0.separator) {
            next.fill(0);
            let mut alive = false;
            for (w, &word) in live.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    match segments.get(i) {
                        Some(seg) if seg.kind == Kind::AnySegments => self.enter(next, i),
                        Some(seg) if self.accepts(seg, part) => self.enter(next, i + 1),
                        _ => continue,
                    }
                    alive = true;
                }
            }
            if !alive {
                return false;
            }
            std::mem::swap(&mut live, &mut next);
        }
        live[end / 64] & (1 << (end % 64)) != 0
    }

    /// Marks position `i` live, and the one after it when segment `i` is `**` (which may match
    /// no segment); `**` never follows `**`, so one step closes the set.
    fn enter(&self, set: &mut [u64], i: usize) {
        set[i / 64] |= 1 << (i % 64);
        if self.0.segments.get(i).map(|s| s.kind) == Some(Kind::AnySegments) {
            set[(i + 1) / 64] |= 1 << ((i + 1) % 64);
        }
    }
}

/// A segment's kind and its text in normal form.
fn compile_segment(seg: &[u8]) -> Result<(Kind, Vec<u8>), PatternError> {
    if seg == b"**" {
        return Ok((Kind::AnySegments, seg.to_vec()));
    }
    if seg.windows(2).any(|w| w == b"**") {
        return Err(PatternError::DoubleStarInSegment);
    }
    let mut glob = Vec::with_capacity(seg.len());
    let mut wild = false;
    let mut depth = 0usize;
    for &b in seg {
        match b {
            b'{' => {
                if depth == 0 {
                    glob.push(b'*');
                    wild = true;
                }
                depth += 1;
            }
            b'}' => {
                depth = depth.checked_sub(1).ok_or(PatternError::UnbalancedBrace)?;
            }
            _ if depth > 0 => {}
            b'*' | b'?' => {
                wild = true;
                glob.push(b);
            }
            _ => glob.push(b),
        }
    }
    if depth != 0 {
        return Err(PatternError::UnbalancedBrace);
    }
    if wild {
        glob::normalize(&mut glob);
        Ok((Kind::Glob, glob))
    } else {
        Ok((Kind::Literal, seg.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, d: &str) -> bool {
        Pattern::parse(p, b'/').unwrap().matches(d)
    }

    #[test]
    fn ant_rules() {
        assert!(m("/topic/*", "/topic/a"));
        assert!(!m("/topic/*", "/topic/a/b"));
        assert!(m("/topic/**", "/topic/a/b"));
        assert!(m("/topic/**", "/topic"));
        assert!(m("/topic/**/x", "/topic/a/b/x"));
        assert!(m("/topic/**/x", "/topic/x"));
        assert!(m("/topic/price.*", "/topic/price.eur"));
        assert!(!m("/topic/price.*", "/topic/volume.eur"));
        assert!(m("/topic/p?ice", "/topic/price"));
        assert!(m("/topic/chat/{room}", "/topic/chat/lobby"));
        assert!(!m("/topic/chat/{room}", "/topic/chat"));
        assert!(m("/**", "/anything/at/all"));
    }

    #[test]
    fn dotted() {
        let p = Pattern::parse("/topic/stocks.*.nyse", b'.').unwrap();
        assert!(p.matches("/topic/stocks.ibm.nyse"));
        assert!(!p.matches("/topic/stocks.ibm.lse"));
        assert_eq!(p.literal_prefix(), "/topic/stocks");
    }

    #[test]
    fn prefixes() {
        let p = |s| Pattern::parse(s, b'/').unwrap();
        assert_eq!(p("/topic/chat/*").literal_prefix(), "/topic/chat");
        assert_eq!(p("/topic/**").literal_prefix(), "/topic");
        assert_eq!(p("/*").literal_prefix(), "");
        assert_eq!(p("**").literal_prefix(), "");
    }

    #[test]
    fn errors() {
        assert_eq!(
            Pattern::parse("/a/b**", b'/'),
            Err(PatternError::DoubleStarInSegment)
        );
        assert_eq!(
            Pattern::parse("/a/{x", b'/'),
            Err(PatternError::UnbalancedBrace)
        );
        assert!(is_pattern("/a/*") && is_pattern("/a/{b}") && !is_pattern("/a/b"));
    }

    #[test]
    fn double_stars_collapse_and_still_match() {
        let p = Pattern::parse("/topic/**/**/x", b'/').unwrap();
        assert_eq!(p.0.segments.len(), 4);
        assert!(p.matches("/topic/x") && p.matches("/topic/a/b/x") && !p.matches("/topic/a"));
        assert_eq!(p.as_str(), "/topic/**/x");
        let q = Pattern::parse("/topic/{room}/x*{y}?", b'/').unwrap();
        assert_eq!(q.as_str(), "/topic/*/x*?");
        assert_eq!(q, Pattern::parse("/topic/*/x*?", b'/').unwrap());
    }

    #[test]
    fn exponential_shapes_finish() {
        // Thousands of `**` (alternating with a segment so they do not collapse) against a long
        // destination that almost matches: the recursive matcher tried every split.
        let pattern = format!("/topic{}/zzz", "/**/a".repeat(2_000));
        let p = Pattern::parse(&pattern, b'/').unwrap();
        let dest = format!("/topic{}", "/a".repeat(3_000));
        assert!(!p.matches(&dest));
        assert!(p.matches(&format!("{dest}/zzz")));
        let stars = format!("/topic{}/zzz", "/**".repeat(2_700));
        assert!(!Pattern::parse(&stars, b'/').unwrap().matches(&dest));
        // Within a segment: `*` + many `a` + `b` against a run of `a`.
        let glob = format!("/t/*{}b", "a".repeat(4_000));
        let p = Pattern::parse(&glob, b'/').unwrap();
        assert!(!p.matches(&format!("/t/{}", "a".repeat(100_000))));
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_length: 16,
            max_segments: 4,
            separator: b'/',
        };
        assert_eq!(limits.check("/topic/a/b"), Ok(()));
        assert_eq!(
            limits.check("/topic/a/b/c"),
            Err(LimitError::TooManySegments { limit: 4 })
        );
        assert_eq!(
            limits.check("/topic/abcdefghijk"),
            Err(LimitError::TooLong {
                length: 18,
                limit: 16
            })
        );
    }

    #[test]
    fn deep_destinations_match() {
        let deep = format!("/topic{}", "/x".repeat(40));
        assert!(m("/topic/**", &deep));
    }
}

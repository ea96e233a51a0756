//! Spring-style (Ant) destination patterns: `*` and `?` inside a segment, `**` across segments,
//! `{name}` captures (which match like `*`).
//!
//! Segments are split on one separator byte, `/` by default or `.` for dotted destinations, as
//! Spring's `AntPathMatcher` does. A pattern is compiled once, when it is subscribed or
//! configured, so matching a published destination allocates nothing.

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
}

/// One compiled segment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this text.
    Literal(Box<str>),
    /// Matches one segment with `*`/`?` wildcards; `{..}` captures were turned into `*`.
    Glob(Box<[u8]>),
    /// `**`: zero or more whole segments.
    AnySegments,
}

/// A compiled destination pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    source: Box<str>,
    segments: Box<[Segment]>,
    separator: u8,
}

/// True when a destination string uses pattern syntax (as `AntPathMatcher::isPattern`).
pub fn is_pattern(destination: &str) -> bool {
    destination.bytes().any(|b| matches!(b, b'*' | b'?' | b'{'))
}

impl Pattern {
    /// Compiles `source`, splitting segments on `separator`.
    pub fn parse(source: &str, separator: u8) -> Result<Self, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        let mut segments = Vec::new();
        for seg in source.as_bytes().split(|&b| b == separator) {
            segments.push(compile_segment(seg)?);
        }
        Ok(Self {
            source: source.into(),
            segments: segments.into_boxed_slice(),
            separator,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal segments before the first wildcard segment, joined by the separator: every
    /// destination the pattern matches starts with this text, followed by the separator or the
    /// end. The registry files pattern subscriptions under it.
    pub fn literal_prefix(&self) -> &str {
        let mut end = 0usize;
        let mut first = true;
        for seg in self.segments.iter() {
            match seg {
                Segment::Literal(text) => {
                    end += text.len() + usize::from(!first);
                    first = false;
                }
                _ => break,
            }
        }
        self.source.get(..end).unwrap_or("")
    }

    /// Whether `destination` matches.
    pub fn matches(&self, destination: &str) -> bool {
        let mut parts = destination.as_bytes().split(|&b| b == self.separator);
        // Collecting would allocate; destinations are short, so match on a small stack array
        // when possible and fall back to a Vec for very deep ones.
        let mut stack: [&[u8]; 32] = [&[]; 32];
        let mut n = 0;
        for part in parts.by_ref() {
            if n == stack.len() {
                let mut all: Vec<&[u8]> = stack.to_vec();
                all.push(part);
                all.extend(parts);
                return match_segments(&self.segments, &all);
            }
            stack[n] = part;
            n += 1;
        }
        match_segments(&self.segments, &stack[..n])
    }
}

fn compile_segment(seg: &[u8]) -> Result<Segment, PatternError> {
    if seg == b"**" {
        return Ok(Segment::AnySegments);
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
        Ok(Segment::Glob(glob.into_boxed_slice()))
    } else {
        // The bytes came from a &str split on an ASCII separator, so they are UTF-8.
        Ok(Segment::Literal(String::from_utf8_lossy(seg).into()))
    }
}

fn match_segments(pattern: &[Segment], parts: &[&[u8]]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((Segment::AnySegments, rest)) => {
            (0..=parts.len()).any(|skip| parts.get(skip..).is_some_and(|p| match_segments(rest, p)))
        }
        Some((seg, rest)) => match parts.split_first() {
            None => false,
            Some((part, more)) => {
                let ok = match seg {
                    Segment::Literal(text) => text.as_bytes() == *part,
                    Segment::Glob(glob) => glob_match(glob, part),
                    Segment::AnySegments => false,
                };
                ok && match_segments(rest, more)
            }
        },
    }
}

/// `*` (any run) and `?` (one byte) within one segment; linear time with one backtrack point.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    g = sg + 1;
                    t = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    glob.get(g..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
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
    fn deep_destinations_match() {
        let deep = format!("/topic{}", "/x".repeat(40));
        assert!(m("/topic/**", &deep));
    }
}

//! Destination pattern matching: common subscriptions next to the worst a client can subscribe
//! within the default limits (1024-byte destinations, 32 segments). Run with
//! `cargo bench -p broker --bench matcher -- --warm-up-time 1 --measurement-time 2`.
//! Figures: docs/benchmarks.md, section "Matcher".
//!
//! Each case matches one pattern against one destination. The worst cases are the attacks of
//! issue 16: `**` runs (exponential for a matcher trying every split) and `*` + `a…a` + `b`
//! globs (quadratic for a backtracking one); both are bounded by O(|pattern| · |destination|)
//! now, and most run in O(|pattern| + |destination|).

use std::hint::black_box;

use broker::origin;
use broker::pattern::{Limits, Pattern};
use criterion::{Criterion, criterion_group, criterion_main};

const MAX_LENGTH: usize = 1024;
const MAX_SEGMENTS: usize = 32;

/// `/topic` and `n` segments of `seg`.
fn deep(n: usize, seg: &str) -> String {
    format!("/topic{}", format!("/{seg}").repeat(n))
}

fn cases() -> Vec<(&'static str, String, String)> {
    let a32 = "a".repeat(32);
    let mut v = vec![
        // Common subscriptions.
        (
            "common/literal",
            "/topic/chat/lobby".to_owned(),
            "/topic/chat/lobby".to_owned(),
        ),
        (
            "common/topic-double-star",
            "/topic/**".to_owned(),
            "/topic/chat/lobby/42".to_owned(),
        ),
        (
            "common/chat-star",
            "/topic/chat/*".to_owned(),
            "/topic/chat/lobby".to_owned(),
        ),
        (
            "common/glob-in-segment",
            "/topic/stocks/*.nyse".to_owned(),
            "/topic/stocks/ibm.nyse".to_owned(),
        ),
        (
            "common/capture-miss",
            "/topic/chat/{room}/typing".to_owned(),
            "/topic/chat/lobby/messages".to_owned(),
        ),
        // Worst cases at the limits.
        (
            "worst/double-star-run",
            format!("/topic{}/zzz", "/**".repeat(MAX_SEGMENTS - 3)),
            deep(MAX_SEGMENTS - 2, &a32),
        ),
        (
            "worst/double-star-alternating",
            format!("/topic{}/zzz", "/**/*a?a*".repeat((MAX_SEGMENTS - 4) / 2)),
            deep(MAX_SEGMENTS - 2, &a32),
        ),
        (
            "worst/star-a-b",
            format!("/topic/g/*{}b", "a".repeat(MAX_LENGTH - 11)),
            format!("/topic/g/{}", "a".repeat(MAX_LENGTH - 9)),
        ),
        (
            "worst/star-a-b-star",
            format!("/topic/g/*{}b*", "a".repeat(MAX_LENGTH - 12)),
            format!("/topic/g/{}", "a".repeat(MAX_LENGTH - 9)),
        ),
        (
            "worst/many-stars",
            format!("/topic/g/{}b", "*a".repeat((MAX_LENGTH - 10) / 2)),
            format!("/topic/g/{}", "a".repeat(MAX_LENGTH - 9)),
        ),
        (
            // 58 middle chunks with `?`, each found once in a 16-byte period of the text.
            "worst/question-chunks",
            format!("/topic/g/{}*", "*aaaaaaaaaaaaaa?b".repeat(58)),
            format!("/topic/g/{}", "aaaaaaaaaaaaaaab".repeat(63)),
        ),
    ];
    for (_, p, d) in &mut v {
        p.truncate(MAX_LENGTH);
        assert!(d.len() <= MAX_LENGTH);
    }
    v
}

fn bench_patterns(c: &mut Criterion) {
    let limits = Limits {
        max_length: MAX_LENGTH,
        max_segments: MAX_SEGMENTS,
        separator: b'/',
    };
    let mut g = c.benchmark_group("pattern");
    for (name, pattern, destination) in cases() {
        limits.check(&pattern).expect("pattern within the limits");
        limits
            .check(&destination)
            .expect("destination within the limits");
        let p = Pattern::parse(&pattern, b'/').expect("pattern compiles");
        assert_eq!(
            p.matches(&destination),
            name == "worst/question-chunks",
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(&p).matches(black_box(&destination)))
        });
        if name.starts_with("common/") {
            let old = legacy::compile(&pattern);
            assert_eq!(legacy::matches(&old, &destination), p.matches(&destination));
            g.bench_function(format!("{name}/before"), |b| {
                b.iter(|| legacy::matches(black_box(&old), black_box(&destination)))
            });
        }
    }
    g.bench_function("limits-check-1024", |b| {
        let d = deep(MAX_SEGMENTS - 2, &"a".repeat(32));
        b.iter(|| black_box(&limits).check(black_box(&d)))
    });
    g.finish();
}

fn bench_origins(c: &mut Criterion) {
    let mut g = c.benchmark_group("origin");
    g.bench_function("common/subdomain", |b| {
        b.iter(|| {
            origin::matches(
                black_box("https://*.example.com"),
                black_box("https://app.example.com"),
            )
        })
    });
    let pattern = format!("https://{}.example.com", "*a".repeat(100));
    let long = format!("https://{}", "a".repeat(4096));
    g.bench_function("worst/many-stars-4k-origin", |b| {
        b.iter(|| origin::matches(black_box(&pattern), black_box(&long)))
    });
    g.finish();
}

/// The recursive, backtracking matcher this crate had before (issue 16, item 1), to show the
/// common cases did not get slower. Its worst cases are not benchmarked: they do not finish.
mod legacy {
    pub enum Seg {
        Literal(Vec<u8>),
        Glob(Vec<u8>),
        AnySegments,
    }

    pub fn compile(pattern: &str) -> Vec<Seg> {
        let seg = |s: &str| {
            if s == "**" {
                Seg::AnySegments
            } else if s.contains(['*', '?', '{']) {
                let mut glob = Vec::new();
                let mut depth = 0;
                for b in s.bytes() {
                    match b {
                        b'{' => {
                            if depth == 0 {
                                glob.push(b'*');
                            }
                            depth += 1;
                        }
                        b'}' => depth -= 1,
                        _ if depth > 0 => {}
                        _ => glob.push(b),
                    }
                }
                Seg::Glob(glob)
            } else {
                Seg::Literal(s.as_bytes().to_vec())
            }
        };
        pattern.split('/').map(seg).collect()
    }

    pub fn matches(pattern: &[Seg], destination: &str) -> bool {
        let mut stack: [&[u8]; 32] = [&[]; 32];
        let mut n = 0;
        for part in destination.as_bytes().split(|&b| b == b'/') {
            stack[n] = part;
            n += 1;
        }
        match_segments(pattern, &stack[..n])
    }

    fn match_segments(pattern: &[Seg], parts: &[&[u8]]) -> bool {
        match pattern.split_first() {
            None => parts.is_empty(),
            Some((Seg::AnySegments, rest)) => {
                (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
            }
            Some((seg, rest)) => match parts.split_first() {
                None => false,
                Some((part, more)) => {
                    let ok = match seg {
                        Seg::Literal(text) => text.as_slice() == *part,
                        Seg::Glob(glob) => glob_match(glob, part),
                        Seg::AnySegments => false,
                    };
                    ok && match_segments(rest, more)
                }
            },
        }
    }

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
        glob[g..].iter().all(|&c| c == b'*')
    }
}

criterion_group!(benches, bench_patterns, bench_origins);
criterion_main!(benches);

//! The matcher against a plain recursive reference (exponential, so only for the tiny
//! patterns and destinations generated here) on random patterns and destinations.

use proptest::prelude::*;

use super::Pattern;

/// Reference glob: `*` any run, `?` one byte, by recursion over every split.
fn glob_ref(g: &[u8], t: &[u8]) -> bool {
    match g.split_first() {
        None => t.is_empty(),
        Some((b'*', rest)) => (0..=t.len()).any(|k| glob_ref(rest, &t[k..])),
        Some((&c, rest)) => t
            .split_first()
            .is_some_and(|(&x, more)| (c == b'?' || c == x) && glob_ref(rest, more)),
    }
}

/// Reference pattern: `**` takes any number of whole segments, `{x}` is `*`.
fn pattern_ref(p: &[&str], d: &[&str]) -> bool {
    match p.split_first() {
        None => d.is_empty(),
        Some((&"**", rest)) => (0..=d.len()).any(|k| pattern_ref(rest, &d[k..])),
        Some((seg, rest)) => d.split_first().is_some_and(|(part, more)| {
            let g = seg.replace("{x}", "*");
            glob_ref(g.as_bytes(), part.as_bytes()) && pattern_ref(rest, more)
        }),
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("**".to_owned()),
        Just("{x}".to_owned()),
        "[ab]{0,3}",
        // Globs mixing literals, `*` and `?` (no `**` inside a segment: that is an error).
        "[ab*?]{1,5}".prop_filter("'**' is a whole segment only", |s| !s.contains("**")),
        "[ab]{0,2}\\{x\\}[ab?]{0,2}",
    ]
}

fn destination() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[ab]{0,4}", 0..7)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn agrees_with_the_reference(
        pattern in prop::collection::vec(segment(), 0..7),
        dest in destination(),
        leading in any::<bool>(),
    ) {
        let mut source = pattern.join("/");
        if leading {
            source.insert(0, '/');
        }
        prop_assume!(!source.is_empty());
        let destination = dest.join("/");
        let compiled = Pattern::parse(&source, b'/').unwrap();
        let p: Vec<&str> = source.split('/').collect();
        let d: Vec<&str> = destination.split('/').collect();
        prop_assert_eq!(
            compiled.matches(&destination),
            pattern_ref(&p, &d),
            "pattern {:?} destination {:?}", source, destination
        );
    }

    #[test]
    fn globs_agree_with_the_reference(glob in "[ab*?]{1,8}", text in "[ab]{0,10}") {
        // `**` inside a segment is an error; one star stands for a run of them.
        let mut glob = glob;
        while glob.contains("**") {
            glob = glob.replace("**", "*");
        }
        let compiled = Pattern::parse(&glob, b'/').unwrap();
        prop_assert_eq!(
            compiled.matches(&text),
            glob_ref(glob.as_bytes(), text.as_bytes()),
            "glob {:?} text {:?}", glob, text
        );
    }
}

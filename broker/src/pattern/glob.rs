//! One segment's wildcards: `*` (any run of bytes) and `?` (exactly one byte), without
//! backtracking.
//!
//! A glob is a sequence of chunks separated by stars (`a*b?c*d` is `a`, `b?c`, `d`). Every
//! chunk matches a window of fixed length (its own), so the first chunk is pinned to the start
//! of the text, the last to its end, and each middle chunk can be placed at its leftmost
//! occurrence after the previous one: any match can be slid left to that placement without
//! disturbing the others, so the greedy choice never needs revisiting.
//!
//! Cost, for a glob `g` and a text `t`: the anchored chunks are compared once (O(|g|)); a
//! middle chunk without `?` is found with `memchr::memmem` (linear in the text it scans, which
//! never overlaps the next chunk's scan); a middle chunk with `?` of length `k` is found with
//! a bit-parallel shift-and in O(k + |t|) for k ≤ 64, and O(256·w + |t|·w) word operations,
//! w = ⌈k/64⌉, beyond. So a glob costs O(|g| + |t|) for ordinary patterns and at most
//! O(|g| + |t|·⌈|g|/64⌉) for the worst, never the O(|g|·|t|) of a backtracking matcher.

use std::cell::RefCell;

/// Collapses runs of `*` (`a**b` cannot occur inside a segment, but `{x}*` and `*{y}` compile
/// to `**`), which match exactly what one star does.
pub(super) fn normalize(glob: &mut Vec<u8>) {
    glob.dedup_by(|a, b| *a == b'*' && *b == b'*');
}

/// Whether `text` matches `glob` (already normalized).
pub(super) fn matches(glob: &[u8], text: &[u8]) -> bool {
    let Some(star) = glob.iter().position(|&b| b == b'*') else {
        return glob.len() == text.len() && same(glob, text);
    };
    let last_star = glob.iter().rposition(|&b| b == b'*').unwrap_or(star);
    let (first, last) = (&glob[..star], &glob[last_star + 1..]);
    if text.len() < first.len() + last.len() {
        return false;
    }
    let (head, rest) = text.split_at(first.len());
    let (mut hay, tail) = rest.split_at(rest.len() - last.len());
    if !same(first, head) || !same(last, tail) {
        return false;
    }
    if star == last_star {
        return true;
    }
    for chunk in glob[star + 1..last_star].split(|&b| b == b'*') {
        match find(chunk, hay) {
            Some(end) => hay = &hay[end..],
            None => return false,
        }
    }
    true
}

/// Equal lengths assumed: each byte equal, or `?` in the glob.
fn same(chunk: &[u8], text: &[u8]) -> bool {
    chunk.iter().zip(text).all(|(&g, &t)| g == b'?' || g == t)
}

/// The end of the leftmost occurrence of `chunk` in `hay`.
fn find(chunk: &[u8], hay: &[u8]) -> Option<usize> {
    if !chunk.contains(&b'?') {
        return memchr::memmem::find(hay, chunk).map(|i| i + chunk.len());
    }
    if chunk.len() <= 64 {
        find_short(chunk, hay)
    } else {
        find_long(chunk, hay)
    }
}

/// Shift-and in one machine word: bit `i` of the state says the last `i + 1` bytes of the
/// text match the chunk's first `i + 1`. The byte table is a per-thread scratch that is all
/// zero between calls: only the chunk's own bytes are set and then cleared again, so a search
/// costs O(|chunk| + |hay|), not a 256-entry table fill.
fn find_short(chunk: &[u8], hay: &[u8]) -> Option<usize> {
    thread_local! {
        static TABLE: RefCell<[u64; 256]> = const { RefCell::new([0; 256]) };
    }
    let mut any = 0u64;
    for (i, &b) in chunk.iter().enumerate() {
        if b == b'?' {
            any |= 1 << i;
        }
    }
    let done = 1u64 << (chunk.len() - 1);
    TABLE.with_borrow_mut(|table| {
        for (i, &b) in chunk.iter().enumerate() {
            if b != b'?' {
                table[usize::from(b)] |= 1 << i;
            }
        }
        let mut state = 0u64;
        let mut found = None;
        for (pos, &b) in hay.iter().enumerate() {
            state = ((state << 1) | 1) & (any | table[usize::from(b)]);
            if state & done != 0 {
                found = Some(pos + 1);
                break;
            }
        }
        for &b in chunk {
            table[usize::from(b)] = 0;
        }
        found
    })
}

/// Shift-and over several words, for chunks longer than 64 bytes (only hostile or very
/// unusual patterns have them; the tables are allocated per search).
fn find_long(chunk: &[u8], hay: &[u8]) -> Option<usize> {
    let words = chunk.len().div_ceil(64);
    let mut any = vec![0u64; words];
    for (i, &b) in chunk.iter().enumerate() {
        if b == b'?' {
            any[i / 64] |= 1 << (i % 64);
        }
    }
    let mut table: Vec<u64> = std::iter::repeat_n(any.iter().copied(), 256)
        .flatten()
        .collect();
    for (i, &b) in chunk.iter().enumerate() {
        if b != b'?' {
            table[usize::from(b) * words + i / 64] |= 1 << (i % 64);
        }
    }
    let (done_word, done_bit) = ((chunk.len() - 1) / 64, 1u64 << ((chunk.len() - 1) % 64));
    let mut state = vec![0u64; words];
    for (pos, &b) in hay.iter().enumerate() {
        let row = &table[usize::from(b) * words..][..words];
        let mut carry = 1u64;
        for (s, &mask) in state.iter_mut().zip(row) {
            let out = *s >> 63;
            *s = ((*s << 1) | carry) & mask;
            carry = out;
        }
        if state[done_word] & done_bit != 0 {
            return Some(pos + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, text: &str) -> bool {
        let mut g = glob.as_bytes().to_vec();
        normalize(&mut g);
        matches(&g, text.as_bytes())
    }

    #[test]
    fn chunks() {
        assert!(m("*", ""));
        assert!(m("a*", "a"));
        assert!(!m("a*b", "a"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxcyyb"));
        assert!(m("*b?d*", "abcd"));
        assert!(!m("*b?d*", "abd"));
        assert!(m("?", "x"));
        assert!(!m("?", ""));
        assert!(m("*aa*aa*", "aaaa"));
        assert!(!m("*aa*aa*", "aaa"));
        // The first and last chunks must not overlap.
        assert!(!m("ab*ba", "aba"));
    }

    #[test]
    fn long_question_chunks() {
        let chunk = format!("{}?b", "a".repeat(100));
        let glob = format!("x*{chunk}*y");
        let text = format!("x{}zb{}y", "a".repeat(100), "a".repeat(50));
        assert!(m(&glob, &text));
        let text = format!("x{}y", "a".repeat(300));
        assert!(!m(&glob, &text));
    }

    #[test]
    fn worst_cases_finish() {
        // The shapes that made the backtracking matcher quadratic per segment.
        let text = "a".repeat(100_000);
        assert!(!m(&format!("*{}b", "a".repeat(4_000)), &text));
        assert!(!m(&format!("*{}b*", "a".repeat(4_000)), &text));
        assert!(!m(&format!("*{}?b*", "a".repeat(60)), &text));
        assert!(!m(&format!("*{}?b*", "a".repeat(600)), &text));
        assert!(!m(&"*a".repeat(2_000), &"a".repeat(1_999)));
    }
}

//! The ordered header list of a frame.

use bytes::Bytes;

/// Ordered header list; names and values are [`Bytes`] (zero-copy slices of the input
/// when no unescaping was needed).
///
/// Order is kept and duplicates are allowed because the specification says that when a
/// header is repeated, only the **first** occurrence counts — so lookups return the
/// first match, and re-encoding a decoded frame reproduces what the peer sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(Bytes, Bytes)>,
}

impl Headers {
    /// An empty list (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `n` headers.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Appends a header; an existing header of the same name keeps precedence.
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.entries.push((name.into(), value.into()));
    }

    /// The value of the first header called `name` (exact, case-sensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_bytes(name).map(|v| &v[..])
    }

    /// Like [`get`](Self::get), as `&str`; `None` if absent or not UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as [`Bytes`], so callers can keep it without copying.
    pub fn get_bytes(&self, name: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// All headers in wire order, duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.entries.iter().map(|(n, v)| (n, v))
    }

    /// Number of header lines (duplicates counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every header called `name`; returns how many were removed. Useful when
    /// a frame is forwarded with some headers replaced.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| n.as_ref() != name.as_bytes());
        before - self.entries.len()
    }

    /// The underlying list, in order.
    pub fn as_slice(&self) -> &[(Bytes, Bytes)] {
        &self.entries
    }

    /// Consumes the list and returns the underlying vector.
    pub fn into_vec(self) -> Vec<(Bytes, Bytes)> {
        self.entries
    }
}

impl From<Vec<(Bytes, Bytes)>> for Headers {
    fn from(entries: Vec<(Bytes, Bytes)>) -> Self {
        Self { entries }
    }
}

impl<N: Into<Bytes>, V: Into<Bytes>> FromIterator<(N, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        Self {
            entries: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a Bytes, &'a Bytes);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Bytes, Bytes)>,
        fn(&'a (Bytes, Bytes)) -> (&'a Bytes, &'a Bytes),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(n, v)| (n, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_wins_and_order_kept() {
        let mut h = Headers::new();
        h.push("a", "1");
        h.push("b", "2");
        h.push("a", "3");
        assert_eq!(h.get("a"), Some(&b"1"[..]));
        assert_eq!(h.get_str("b"), Some("2"));
        assert_eq!(h.get("c"), None);
        assert_eq!(h.len(), 3);
        let names: Vec<_> = h.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, ["a", "b", "a"]);
        assert_eq!(h.remove("a"), 2);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn get_str_rejects_non_utf8() {
        let mut h = Headers::with_capacity(1);
        h.push("x", Bytes::from_static(&[0xff]));
        assert_eq!(h.get_str("x"), None);
        assert!(h.get("x").is_some());
        assert!(!h.is_empty());
    }
}

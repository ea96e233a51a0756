//! STOMP protocol versions; the version decides how headers are escaped.

use std::fmt;

/// A STOMP protocol version.
///
/// Ordered so that `v >= Version::V1_1` reads as "escaping is in effect". The default is
/// 1.2 because that is what the decoder assumes until the session negotiates otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Version {
    /// STOMP 1.0: no header escaping at all.
    V1_0,
    /// STOMP 1.1: escapes `\\`, `\n` and `\c`.
    V1_1,
    /// STOMP 1.2: escapes `\\`, `\n`, `\c` and `\r`.
    #[default]
    V1_2,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version as written in `accept-version` / `version` headers, e.g. `"1.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses exactly `"1.0"`, `"1.1"` or `"1.2"`.
    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// Picks the highest version listed in an `accept-version` header value
    /// (comma-separated, e.g. `"1.0,1.1,1.2"`); unknown entries are ignored.
    ///
    /// `None` means no supported version was offered. A missing header means 1.0 by
    /// the specification; that decision is left to the caller.
    pub fn negotiate(accept_version: &str) -> Option<Version> {
        accept_version.split(',').filter_map(Version::parse).max()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
        assert_eq!(Version::parse("1.3"), None);
        assert_eq!(Version::parse(" 1.2"), None);
        assert!(Version::V1_0 < Version::V1_1 && Version::V1_1 < Version::V1_2);
        assert_eq!(Version::default(), Version::V1_2);
    }

    #[test]
    fn negotiate() {
        assert_eq!(Version::negotiate("1.0,1.1,1.2"), Some(Version::V1_2));
        assert_eq!(Version::negotiate("1.1,1.0"), Some(Version::V1_1));
        assert_eq!(Version::negotiate("2.0,1.0"), Some(Version::V1_0));
        assert_eq!(Version::negotiate("2.0"), None);
        assert_eq!(Version::negotiate(""), None);
    }
}

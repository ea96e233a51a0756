//! Header escaping (STOMP 1.1 and 1.2), both directions.
//!
//! 1.1 defines `\\`, `\n` and `\c` (colon); 1.2 adds `\r`. 1.0 has no escaping, and
//! `CONNECT`, `STOMP` and `CONNECTED` are never escaped so that a 1.0 peer can read the
//! handshake before a version is agreed.

use bytes::BytesMut;
use memchr::memchr;

use crate::{Command, DecodeError, Version};

/// Which escape set applies to one frame's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escaping {
    /// Raw bytes: 1.0, or a handshake frame.
    None,
    /// `\\`, `\n`, `\c`.
    V11,
    /// `\\`, `\n`, `\c`, `\r`.
    V12,
}

impl Escaping {
    /// The escape set of `version` for ordinary frames.
    pub(crate) fn for_version(version: Version) -> Self {
        match version {
            Version::V1_0 => Escaping::None,
            Version::V1_1 => Escaping::V11,
            Version::V1_2 => Escaping::V12,
        }
    }

    /// The escape set for `command` under `version`.
    pub(crate) fn for_frame(version: Version, command: Command) -> Self {
        if command.escapes_headers() {
            Self::for_version(version)
        } else {
            Escaping::None
        }
    }

    /// The escape sequence that replaces `b`, if any.
    ///
    /// A line break cannot be represented where no escape exists for it (any header of a 1.0
    /// frame or of a handshake frame; a carriage return in 1.1), and written raw it would end
    /// the header line and let a value inject headers of its own. It becomes a space.
    #[inline]
    fn replacement(self, b: u8) -> Option<&'static [u8]> {
        match (self, b) {
            (Escaping::None, b'\n' | b'\r') | (Escaping::V11, b'\r') => Some(b" "),
            (Escaping::None, _) => None,
            (_, b'\\') => Some(b"\\\\"),
            (_, b'\n') => Some(b"\\n"),
            (_, b':') => Some(b"\\c"),
            (Escaping::V12, b'\r') => Some(b"\\r"),
            _ => None,
        }
    }

    /// Per-byte "needs escaping" table, so scans are one load per byte.
    #[inline]
    fn table(self) -> &'static [bool; 256] {
        match self {
            Escaping::None => &NEEDS_NONE,
            Escaping::V11 => &NEEDS_V11,
            Escaping::V12 => &NEEDS_V12,
        }
    }
}

// Indexing with constants below 256 in a `const fn` evaluated at compile time: an
// out-of-range index would fail the build, never a running program.
#[allow(clippy::indexing_slicing)]
const fn line_breaks_only() -> [bool; 256] {
    let mut t = [false; 256];
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
}

// As above: compile-time indexing only.
#[allow(clippy::indexing_slicing)]
const fn needs_table(cr: bool) -> [bool; 256] {
    let mut t = [false; 256];
    t[b'\\' as usize] = true;
    t[b'\n' as usize] = true;
    t[b':' as usize] = true;
    t[b'\r' as usize] = cr;
    t
}

static NEEDS_NONE: [bool; 256] = line_breaks_only();
static NEEDS_V11: [bool; 256] = needs_table(true);
static NEEDS_V12: [bool; 256] = needs_table(true);

/// Length of `src` once escaped.
pub(crate) fn escaped_len(src: &[u8], esc: Escaping) -> usize {
    let table = esc.table();
    src.len()
        + src
            .iter()
            .filter(|&&b| table.get(usize::from(b)) == Some(&true))
            .map(|&b| esc.replacement(b).map_or(0, |r| r.len().saturating_sub(1)))
            .sum::<usize>()
}

/// Appends `src` to `out`, escaped. Runs of plain bytes are copied in one call.
pub(crate) fn escape_into(src: &[u8], esc: Escaping, out: &mut BytesMut) {
    let table = esc.table();
    let mut rest = src;
    while let Some(pos) = rest
        .iter()
        .position(|&b| table.get(usize::from(b)) == Some(&true))
    {
        let Some((plain, tail)) = rest.split_at_checked(pos) else {
            break;
        };
        out.extend_from_slice(plain);
        let Some((&special, tail)) = tail.split_first() else {
            break;
        };
        out.extend_from_slice(esc.replacement(special).unwrap_or_default());
        rest = tail;
    }
    out.extend_from_slice(rest);
}

/// Decodes escapes in `raw`. `Ok(None)` means `raw` has no backslash and can be used
/// as is (the zero-copy case); otherwise the unescaped bytes are returned.
///
/// Errors with [`DecodeError::InvalidEscape`] on an undefined sequence (including `\r`
/// under 1.1) or a trailing backslash.
pub(crate) fn unescape(raw: &[u8], version: Version) -> Result<Option<Vec<u8>>, DecodeError> {
    let Some(first) = memchr(b'\\', raw) else {
        return Ok(None);
    };
    let (plain, rest) = raw.split_at_checked(first).unwrap_or((raw, &[]));
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(plain);
    let mut bytes = rest.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next() {
            Some(b'\\') => b'\\',
            Some(b'n') => b'\n',
            Some(b'c') => b':',
            Some(b'r') if version >= Version::V1_2 => b'\r',
            _ => return Err(DecodeError::InvalidEscape),
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(src: &[u8], e: Escaping) -> Vec<u8> {
        let mut out = BytesMut::new();
        escape_into(src, e, &mut out);
        assert_eq!(out.len(), escaped_len(src, e));
        out.to_vec()
    }

    #[test]
    fn escapes_per_version() {
        let src = b"a:b\\c\nd\re";
        // Line breaks that cannot be escaped become spaces, so no header can be injected.
        assert_eq!(esc(src, Escaping::None), b"a:b\\c d e");
        assert_eq!(esc(src, Escaping::V11), b"a\\cb\\\\c\\nd e");
        assert_eq!(esc(src, Escaping::V12), b"a\\cb\\\\c\\nd\\re");
        assert_eq!(esc(b"plain", Escaping::V12), b"plain");
        assert_eq!(esc(b"", Escaping::V12), b"");
    }

    #[test]
    fn unescapes() {
        assert_eq!(unescape(b"plain", Version::V1_2), Ok(None));
        assert_eq!(
            unescape(b"a\\cb\\\\c\\nd\\re", Version::V1_2),
            Ok(Some(b"a:b\\c\nd\re".to_vec()))
        );
        assert_eq!(
            unescape(b"\\r", Version::V1_1),
            Err(DecodeError::InvalidEscape)
        );
        assert_eq!(
            unescape(b"\\t", Version::V1_2),
            Err(DecodeError::InvalidEscape)
        );
        assert_eq!(
            unescape(b"ab\\", Version::V1_2),
            Err(DecodeError::InvalidEscape)
        );
    }

    #[test]
    fn frame_rules() {
        assert_eq!(
            Escaping::for_frame(Version::V1_2, Command::Connect),
            Escaping::None
        );
        assert_eq!(
            Escaping::for_frame(Version::V1_1, Command::Send),
            Escaping::V11
        );
        assert_eq!(
            Escaping::for_frame(Version::V1_0, Command::Send),
            Escaping::None
        );
    }
}

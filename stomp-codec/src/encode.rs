//! The general frame encoder.

use bytes::{BufMut, BytesMut};

use crate::escape::{Escaping, escape_into, escaped_len};
use crate::{Frame, Version};

/// Name of the header the encoder computes itself.
pub(crate) const CONTENT_LENGTH: &[u8] = b"content-length";

/// Encodes `frame` into `out` for a peer speaking `version`.
///
/// - Header names and values are escaped per version unless the command is exempt
///   ([`Command::escapes_headers`](crate::Command::escapes_headers)): 1.0 none; 1.1
///   `\\`, `\n`, `\c`; 1.2 also `\r`. Unescapable bytes in exempt frames or 1.0 (a
///   `\n` in a value, a `:` in a name) are the caller's responsibility.
/// - Any `content-length` in `frame.headers` is skipped, and the real one is written
///   last whenever the body is non-empty, so a stale value can never desynchronise the
///   peer and bodies containing NUL always arrive intact. An empty body gets none.
/// - LF line ends; nothing after the NUL.
pub fn encode_frame(frame: &Frame, version: Version, out: &mut BytesMut) {
    let esc = Escaping::for_frame(version, frame.command);
    let headers = frame
        .headers
        .as_slice()
        .iter()
        .filter(|(name, _)| name.as_ref() != CONTENT_LENGTH);
    let mut len = frame.command.as_str().len() + 1 + 1 + frame.body.len() + 1;
    for (name, value) in headers.clone() {
        len += escaped_len(name, esc) + 1 + escaped_len(value, esc) + 1;
    }
    if !frame.body.is_empty() {
        len += CONTENT_LENGTH.len() + 1 + 20 + 1;
    }
    out.reserve(len);

    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (name, value) in headers {
        escape_into(name, esc, out);
        out.put_u8(b':');
        escape_into(value, esc, out);
        out.put_u8(b'\n');
    }
    if !frame.body.is_empty() {
        put_content_length(frame.body.len(), out);
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// Writes `content-length:<n>\n`.
pub(crate) fn put_content_length(n: usize, out: &mut BytesMut) {
    out.put_slice(CONTENT_LENGTH);
    out.put_u8(b':');
    put_decimal(n, out);
    out.put_u8(b'\n');
}

/// Writes `n` in decimal without allocating.
pub(crate) fn put_decimal(mut n: usize, out: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            // `n % 10 < 10`, so the cast cannot truncate.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put_slice(digits.get(i..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    fn enc(f: &Frame, v: Version) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(f, v, &mut out);
        out.to_vec()
    }

    #[test]
    fn decimal() {
        for n in [0usize, 7, 10, 65536, usize::MAX] {
            let mut out = BytesMut::new();
            put_decimal(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn content_length_is_computed() {
        let f = Frame::new(Command::Send)
            .header("content-length", "99")
            .header("destination", "/q")
            .with_body(&b"a\0b"[..]);
        assert_eq!(
            enc(&f, Version::V1_2),
            b"SEND\ndestination:/q\ncontent-length:3\n\na\0b\0"
        );
        let empty = Frame::new(Command::Send).header("content-length", "5");
        assert_eq!(enc(&empty, Version::V1_2), b"SEND\n\n\0");
    }

    #[test]
    fn escaping_per_version_and_command() {
        let f = Frame::new(Command::Message).header("a:b", "x\ny\rz\\");
        assert_eq!(
            enc(&f, Version::V1_2),
            b"MESSAGE\na\\cb:x\\ny\\rz\\\\\n\n\0"
        );
        assert_eq!(enc(&f, Version::V1_1), b"MESSAGE\na\\cb:x\\ny z\\\\\n\n\0");
        // No escapes in 1.0: line breaks become spaces so a value cannot inject headers.
        assert_eq!(enc(&f, Version::V1_0), b"MESSAGE\na:b:x y z\\\n\n\0");
        let c = Frame::new(Command::Connected).header("version", "1:2");
        assert_eq!(enc(&c, Version::V1_2), b"CONNECTED\nversion:1:2\n\n\0");
    }
}

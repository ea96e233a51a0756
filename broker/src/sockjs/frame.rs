//! SockJS framing: `o` (open), `h` (heartbeat), `a[...]` (messages), `c[code,"reason"]`
//! (close), and the JSON arrays of strings clients send.
//!
//! Messages travel as JSON strings. Beyond JSON's own escapes, SockJS escapes the characters
//! some browsers and proxies mangle (control characters, the Unicode separators and
//! specials), so a STOMP frame's NUL goes over the wire as `\u0000`.

use std::fmt::Write as _;

/// The open frame.
pub const OPEN: &str = "o";
/// The heartbeat frame.
pub const HEARTBEAT: &str = "h";

/// Appends `s` as a JSON string with SockJS's extra escapes.
pub fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn needs_escape(c: char) -> bool {
    matches!(u32::from(c),
        0x0000..=0x001f
            | 0x007f..=0x009f
            | 0x00ad
            | 0x0600..=0x0604
            | 0x070f
            | 0x17b4
            | 0x17b5
            | 0x200c..=0x200f
            | 0x2028..=0x202f
            | 0x2060..=0x206f
            | 0xfeff
            | 0xfff0..=0xffff)
}

/// An `a[...]` frame holding `messages`.
pub fn messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("a[");
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_quoted(&mut out, m);
    }
    out.push(']');
    out
}

/// A `c[code,"reason"]` frame.
pub fn close(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    push_quoted(&mut out, reason);
    out.push(']');
    out
}

/// Why a client's payload was refused (the texts Spring answers with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// An empty body.
    #[error("Payload expected.")]
    Missing,
    /// Not a JSON array of strings.
    #[error("Broken JSON encoding.")]
    Broken,
}

impl PayloadError {
    /// The response text.
    pub fn text(self) -> &'static str {
        match self {
            PayloadError::Missing => "Payload expected.",
            PayloadError::Broken => "Broken JSON encoding.",
        }
    }
}

/// Parses what a client sends: a JSON array of strings, nothing else (as Spring).
pub fn parse_payload(body: &[u8]) -> Result<Vec<String>, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Missing);
    }
    serde_json::from_slice::<Vec<String>>(body).map_err(|_| PayloadError::Broken)
}

/// An eventsource `data:` line's frame. sockjs-client passes the data through `decodeURI`,
/// so a `%` must travel as `%25` (line breaks and NULs never appear raw: JSON escaped them).
pub fn for_eventsource(frame: &str) -> std::borrow::Cow<'_, str> {
    if frame.contains('%') {
        frame.replace('%', "%25").into()
    } else {
        frame.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(
            messages(["CONNECTED\nversion:1.2\n\n\0", "a\"b\\"]),
            r#"a["CONNECTED\nversion:1.2\n\n\u0000","a\"b\\"]"#
        );
        assert_eq!(close(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(messages(["\u{2028}\u{7f}é"]), r#"a["\u2028\u007fé"]"#);
    }

    #[test]
    fn payloads() {
        assert_eq!(
            parse_payload(br#"["SEND\ndestination:/t\n\nx\u0000","y"]"#).unwrap(),
            vec!["SEND\ndestination:/t\n\nx\0".to_owned(), "y".to_owned()]
        );
        assert_eq!(parse_payload(br#""one""#), Err(PayloadError::Broken));
        assert_eq!(for_eventsource("a[\"50%\"]"), "a[\"50%25\"]");
        assert_eq!(parse_payload(b"  "), Err(PayloadError::Missing));
        assert_eq!(parse_payload(b"[1]"), Err(PayloadError::Broken));
        assert_eq!(parse_payload(b"[\"x\""), Err(PayloadError::Broken));
        // Round trip through the escapes.
        let s = "MESSAGE\n\n\0\u{1}\u{2029}";
        let framed = messages([s]);
        assert_eq!(
            parse_payload(&framed.as_bytes()[1..]).unwrap(),
            vec![s.to_owned()]
        );
    }
}

//! Parsing of a complete header block (command line, header lines, blank line) with nom.
//!
//! The decoder only calls this once the blank line ending the block has been found, so
//! every parser runs with `parse_complete` and only mode-generic (`nom::bytes::*`)
//! combinators are used: a streaming `Incomplete` can never leak out (see the nom 8
//! notes in the style guide). Header names and values are returned as byte ranges into
//! the block when no unescaping was needed, so the decoder can turn them into zero-copy
//! [`Bytes`] slices once the whole frame is buffered.

use std::ops::Range;

use bytes::Bytes;
use memchr::memchr;
use nom::branch::alt;
use nom::bytes::{tag, take_till, take_till1};
use nom::combinator::map_res;
use nom::error::{ErrorKind, FromExternalError, ParseError};
use nom::sequence::{separated_pair, terminated};
use nom::{IResult, Parser};

use crate::escape::unescape;
use crate::{Command, DecodeError, DecoderConfig, Version};

/// A header name or value: where it lies in the frame, or its unescaped copy.
#[derive(Debug)]
pub(crate) enum Field {
    /// Byte range in the frame; used as is.
    Raw(Range<usize>),
    /// Unescaped bytes (the raw form contained a backslash).
    Owned(Bytes),
}

impl Field {
    /// The decoded bytes, given the block the ranges point into.
    fn as_slice<'a>(&'a self, block: &'a [u8]) -> &'a [u8] {
        match self {
            Field::Raw(r) => block.get(r.clone()).unwrap_or_default(),
            Field::Owned(b) => b,
        }
    }

    /// Converts to [`Bytes`], slicing `frame` (the frozen frame) for raw fields.
    pub(crate) fn into_bytes(self, frame: &Bytes) -> Bytes {
        match self {
            Field::Raw(r) if r.start <= r.end && r.end <= frame.len() => frame.slice(r),
            Field::Raw(_) => Bytes::new(),
            Field::Owned(b) => b,
        }
    }

    /// Like [`into_bytes`](Self::into_bytes) for a header name: well-known names
    /// become static [`Bytes`]. A slice of the frame costs an atomic reference-count
    /// increment and decrement; a static costs nothing, and these names make up most
    /// header lines.
    pub(crate) fn into_name(self, frame: &Bytes) -> Bytes {
        if let Field::Raw(r) = &self
            && let Some(name) = frame.get(r.clone()).and_then(well_known_name)
        {
            return Bytes::from_static(name);
        }
        self.into_bytes(frame)
    }
}

/// The static copy of a header name defined by the specification (or by common
/// brokers), if `name` is one.
fn well_known_name(name: &[u8]) -> Option<&'static [u8]> {
    macro_rules! names {
        ($($n:literal),* $(,)?) => {
            match name {
                $($n => Some(&$n[..]),)*
                _ => None,
            }
        };
    }
    names!(
        b"accept-version",
        b"ack",
        b"content-length",
        b"content-type",
        b"destination",
        b"expires",
        b"heart-beat",
        b"host",
        b"id",
        b"login",
        b"message",
        b"message-id",
        b"passcode",
        b"persistent",
        b"priority",
        b"receipt",
        b"receipt-id",
        b"reply-to",
        b"server",
        b"session",
        b"subscription",
        b"transaction",
        b"version",
    )
}

/// What the header block says about the frame.
#[derive(Debug)]
pub(crate) struct ParsedHead {
    /// The command.
    pub(crate) command: Command,
    /// Headers in wire order.
    pub(crate) headers: Vec<(Field, Field)>,
    /// Bytes from the start of the frame through the blank line.
    pub(crate) len: usize,
    /// The first `content-length`, already checked against `max_body_size`.
    pub(crate) content_length: Option<usize>,
}

/// nom error type that carries the [`DecodeError`] to report.
#[derive(Debug)]
struct HeadError(DecodeError);

impl ParseError<&[u8]> for HeadError {
    fn from_error_kind(input: &[u8], _: ErrorKind) -> Self {
        // A failure right at a lone '\r' is a bad line end, whatever was expected there.
        match input {
            [b'\r', b'\n', ..] => HeadError(DecodeError::InvalidHeader),
            [b'\r', ..] => HeadError(DecodeError::InvalidEol),
            _ => HeadError(DecodeError::InvalidHeader),
        }
    }

    fn append(_: &[u8], _: ErrorKind, other: Self) -> Self {
        other
    }
}

impl FromExternalError<&[u8], DecodeError> for HeadError {
    fn from_external_error(_: &[u8], _: ErrorKind, e: DecodeError) -> Self {
        HeadError(e)
    }
}

fn into_decode_error(e: nom::Err<HeadError>) -> DecodeError {
    match e {
        nom::Err::Error(HeadError(d)) | nom::Err::Failure(HeadError(d)) => d,
        // Unreachable under `parse_complete`; reported as a malformed header rather
        // than panicking.
        nom::Err::Incomplete(_) => DecodeError::InvalidHeader,
    }
}

fn is_eol_byte(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// `\n` or `\r\n`.
fn eol<'a>() -> impl Parser<&'a [u8], Output = &'a [u8], Error = HeadError> {
    alt((tag(&b"\n"[..]), tag(&b"\r\n"[..])))
}

/// `COMMAND EOL`, the command matched exactly.
fn command_line<'a>() -> impl Parser<&'a [u8], Output = Command, Error = HeadError> {
    terminated(
        map_res(take_till(is_eol_byte), |c: &[u8]| {
            Command::from_bytes(c).ok_or(DecodeError::UnknownCommand)
        }),
        eol(),
    )
}

/// `name:value EOL`, split at the first colon, nothing trimmed.
fn header_line<'a>() -> impl Parser<&'a [u8], Output = (&'a [u8], &'a [u8]), Error = HeadError> {
    terminated(
        separated_pair(
            take_till1(|b| b == b':' || is_eol_byte(b)),
            tag(&b":"[..]),
            take_till(is_eol_byte),
        ),
        eol(),
    )
}

fn parse_command(block: &[u8]) -> IResult<&[u8], Command, HeadError> {
    command_line().parse_complete(block)
}

/// Parses the complete header block `block` (through its blank line).
///
/// `lines` is the number of header lines the scanner counted, used to size the list.
pub(crate) fn parse_head(
    block: &[u8],
    lines: usize,
    version: Version,
    config: &DecoderConfig,
) -> Result<ParsedHead, DecodeError> {
    // Checking the whole block once is cheaper than checking every field, and
    // equivalent: fields are split at ASCII bytes and escapes map ASCII to ASCII.
    if std::str::from_utf8(block).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    let (mut rest, command) = parse_command(block).map_err(|e| match into_decode_error(e) {
        DecodeError::InvalidHeader => DecodeError::UnknownCommand,
        other => other,
    })?;
    // One search of the whole block instead of one per field: most frames carry no
    // escapes at all, and then every field is used as is.
    let unescape_as =
        (version >= Version::V1_1 && command.escapes_headers() && memchr(b'\\', rest).is_some())
            .then_some(version);
    let mut headers = Vec::with_capacity(lines);
    let mut content_length = None;
    let mut blank = eol();
    let mut header = header_line();
    loop {
        // Peek rather than attempt a parse on every line: a failed nom parse builds
        // an error value, which costs more than looking at two bytes.
        if matches!(rest, [b'\n', ..] | [b'\r', b'\n', ..]) {
            let (after, _) = blank.parse_complete(rest).map_err(into_decode_error)?;
            rest = after;
            break;
        }
        let start = block.len() - rest.len();
        let (after, (name, value)) = header.parse_complete(rest).map_err(into_decode_error)?;
        let value_start = start + name.len() + 1;
        let name = field(name, start, unescape_as)?;
        let value = field(value, value_start, unescape_as)?;
        if content_length.is_none() && name.as_slice(block) == b"content-length" {
            content_length = Some(parse_content_length(value.as_slice(block), config)?);
        }
        headers.push((name, value));
        rest = after;
    }
    Ok(ParsedHead {
        command,
        headers,
        len: block.len() - rest.len(),
        content_length,
    })
}

fn field(raw: &[u8], start: usize, unescape_as: Option<Version>) -> Result<Field, DecodeError> {
    if let Some(version) = unescape_as
        && let Some(owned) = unescape(raw, version)?
    {
        return Ok(Field::Owned(Bytes::from(owned)));
    }
    Ok(Field::Raw(start..start + raw.len()))
}

/// A non-empty run of ASCII digits. Values that do not fit `u64`, or exceed the body
/// limit, are [`DecodeError::BodyTooLarge`] so the peer learns which limit it hit.
fn parse_content_length(value: &[u8], config: &DecoderConfig) -> Result<usize, DecodeError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::InvalidContentLength);
    }
    let too_large = DecodeError::BodyTooLarge {
        limit: config.max_body_size,
    };
    let n = value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    match n.and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n <= config.max_body_size => Ok(n),
        _ => Err(too_large),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(block: &[u8], v: Version) -> Result<ParsedHead, DecodeError> {
        parse_head(block, 0, v, &DecoderConfig::default())
    }

    fn headers(block: &[u8], v: Version) -> Vec<(Vec<u8>, Vec<u8>)> {
        parse(block, v)
            .unwrap()
            .headers
            .iter()
            .map(|(n, v)| (n.as_slice(block).to_vec(), v.as_slice(block).to_vec()))
            .collect()
    }

    #[test]
    fn basic() {
        let block = b"SEND\r\na:b:c\nempty:\n\n";
        let head = parse(block, Version::V1_2).unwrap();
        assert_eq!(head.command, Command::Send);
        assert_eq!(head.len, block.len());
        assert_eq!(
            headers(block, Version::V1_2),
            [
                (b"a".to_vec(), b"b:c".to_vec()),
                (b"empty".to_vec(), b"".to_vec())
            ]
        );
    }

    #[test]
    fn errors() {
        let e = |b: &[u8]| parse(b, Version::V1_2).unwrap_err();
        assert_eq!(e(b"send\n\n"), DecodeError::UnknownCommand);
        assert_eq!(e(b"SEND\rx\n\n"), DecodeError::InvalidEol);
        assert_eq!(e(b"SEND\nnocolon\n\n"), DecodeError::InvalidHeader);
        assert_eq!(e(b"SEND\n:v\n\n"), DecodeError::InvalidHeader);
        assert_eq!(e(b"SEND\na\rb:v\n\n"), DecodeError::InvalidEol);
        assert_eq!(e(b"SEND\na:v\rb\n\n"), DecodeError::InvalidEol);
        assert_eq!(e(b"SEND\na:\\t\n\n"), DecodeError::InvalidEscape);
        assert_eq!(e(b"SEND\na:\xff\n\n"), DecodeError::InvalidUtf8);
        assert_eq!(
            e(b"SEND\ncontent-length:-1\n\n"),
            DecodeError::InvalidContentLength
        );
        assert_eq!(
            e(b"SEND\ncontent-length:18446744073709551616\n\n"),
            DecodeError::BodyTooLarge { limit: 65536 }
        );
        assert_eq!(
            e(b"SEND\ncontent-length:65537\n\n"),
            DecodeError::BodyTooLarge { limit: 65536 }
        );
    }

    #[test]
    fn escapes_only_where_due() {
        let block = b"SEND\na\\cb:x\\ny\n\n";
        assert_eq!(
            headers(block, Version::V1_2),
            [(b"a:b".to_vec(), b"x\ny".to_vec())]
        );
        assert_eq!(
            headers(block, Version::V1_0),
            [(b"a\\cb".to_vec(), b"x\\ny".to_vec())]
        );
        let connect = b"CONNECT\nlogin:a\\c\n\n";
        assert_eq!(
            headers(connect, Version::V1_2),
            [(b"login".to_vec(), b"a\\c".to_vec())]
        );
    }

    #[test]
    fn first_content_length_wins() {
        let head = parse(
            b"SEND\ncontent-length:3\ncontent-length:x\n\n",
            Version::V1_2,
        )
        .unwrap();
        assert_eq!(head.content_length, Some(3));
    }
}

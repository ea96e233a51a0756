//! Parsing of a complete header block (command line, header lines, blank line) with nom.
//!
//! The decoder only calls this once the blank line ending the block has been found, so
//! every parser runs with `parse_complete` and is built only from mode-generic
//! (`nom::bytes::*`) combinators plus one hand-written parser that never returns
//! `Incomplete`: a streaming `Incomplete` can never leak out (see the nom 8 notes in
//! the style guide). Header names and values are returned as byte ranges into
//! the block when no unescaping was needed, so the decoder can turn them into zero-copy
//! [`Bytes`] slices once the whole frame is buffered.

use bytes::Bytes;
use memchr::{memchr, memchr2};
use nom::branch::alt;
use nom::bytes::{tag, take_till, take_till1};
use nom::combinator::map_res;
use nom::error::{ErrorKind, FromExternalError, ParseError};
use nom::sequence::{separated_pair, terminated};
use nom::{IResult, Parser};

use crate::escape::unescape;
use crate::{Command, DecodeError, DecoderConfig, Version};

/// Where a header name or value is: a byte range of the frame, or (if it had to be
/// unescaped) an index into [`ParsedHead::owned`].
///
/// Kept to two words so the per-frame list of spans is small and can live in a buffer
/// the decoder reuses; the [`Bytes`] are only created once the frame is complete.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// Marks an owned span in `start`; `end` is then the index.
    const OWNED: usize = usize::MAX;

    fn raw(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    fn owned(index: usize) -> Self {
        Self {
            start: Self::OWNED,
            end: index,
        }
    }

    /// The decoded bytes, given the block the ranges point into.
    fn as_slice<'a>(&self, block: &'a [u8], owned: &'a [Bytes]) -> &'a [u8] {
        if self.start == Self::OWNED {
            owned.get(self.end).map_or(&[], |b| &b[..])
        } else {
            block.get(self.start..self.end).unwrap_or_default()
        }
    }

    /// The field as [`Bytes`]: a slice of `frame` (the frozen frame), or the
    /// unescaped copy taken out of `owned`.
    pub(crate) fn to_bytes(self, frame: &Bytes, owned: &mut [Bytes]) -> Bytes {
        if self.start == Self::OWNED {
            owned
                .get_mut(self.end)
                .map(std::mem::take)
                .unwrap_or_default()
        } else if self.start <= self.end && self.end <= frame.len() {
            frame.slice(self.start..self.end)
        } else {
            Bytes::new()
        }
    }

    /// Like [`to_bytes`](Self::to_bytes) for a header name: well-known names become
    /// static [`Bytes`]. A slice of the frame costs an atomic reference-count
    /// increment and decrement; a static costs nothing, and these names make up most
    /// header lines.
    pub(crate) fn to_name(self, frame: &Bytes, owned: &mut [Bytes]) -> Bytes {
        if self.start != Self::OWNED
            && let Some(name) = frame.get(self.start..self.end).and_then(well_known_name)
        {
            return Bytes::from_static(name);
        }
        self.to_bytes(frame, owned)
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
    /// Unescaped header names and values, referred to by [`Span`]s. Empty (and so
    /// not allocated) for frames without escapes.
    pub(crate) owned: Vec<Bytes>,
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
            till_eol,
        ),
        eol(),
    )
}

/// Everything up to the next `\r` or `\n` (possibly empty); never fails, never
/// `Incomplete`, so it behaves the same in complete mode.
///
/// Written by hand so the search is a SIMD `memchr2` rather than a byte-at-a-time
/// loop: header values are most of a header block's bytes.
fn till_eol(input: &[u8]) -> IResult<&[u8], &[u8], HeadError> {
    let n = memchr2(b'\r', b'\n', input).unwrap_or(input.len());
    let (taken, rest) = input.split_at_checked(n).unwrap_or((input, &[]));
    Ok((rest, taken))
}

fn parse_command(block: &[u8]) -> IResult<&[u8], Command, HeadError> {
    command_line().parse_complete(block)
}

/// Parses the complete header block `block` (through its blank line). The headers'
/// (name, value) spans are written, in order, to `spans` (cleared first).
pub(crate) fn parse_head(
    block: &[u8],
    version: Version,
    config: &DecoderConfig,
    spans: &mut Vec<(Span, Span)>,
) -> Result<ParsedHead, DecodeError> {
    spans.clear();
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
    let mut owned = Vec::new();
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
        let name = span(name, start, unescape_as, &mut owned)?;
        let value = span(value, value_start, unescape_as, &mut owned)?;
        if content_length.is_none() && name.as_slice(block, &owned) == b"content-length" {
            content_length = Some(parse_content_length(value.as_slice(block, &owned), config)?);
        }
        spans.push((name, value));
        rest = after;
    }
    Ok(ParsedHead {
        command,
        owned,
        len: block.len() - rest.len(),
        content_length,
    })
}

fn span(
    raw: &[u8],
    start: usize,
    unescape_as: Option<Version>,
    owned: &mut Vec<Bytes>,
) -> Result<Span, DecodeError> {
    if let Some(version) = unescape_as
        && let Some(unescaped) = unescape(raw, version)?
    {
        owned.push(Bytes::from(unescaped));
        return Ok(Span::owned(owned.len() - 1));
    }
    Ok(Span::raw(start, start + raw.len()))
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
        parse_head(block, v, &DecoderConfig::default(), &mut Vec::new())
    }

    fn headers(block: &[u8], v: Version) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut spans = Vec::new();
        let head = parse_head(block, v, &DecoderConfig::default(), &mut spans).unwrap();
        spans
            .iter()
            .map(|(n, v)| {
                (
                    n.as_slice(block, &head.owned).to_vec(),
                    v.as_slice(block, &head.owned).to_vec(),
                )
            })
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

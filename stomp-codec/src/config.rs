//! Decoder limits.

/// Limits that bound what one connection can make the decoder buffer.
///
/// Each limit is checked as soon as the bytes that could violate it are buffered, so a
/// peer can never make the caller hold much more than `max_frame_size` plus one read.
/// Build with [`Default`] and the setters (the struct is `#[non_exhaustive]` so limits
/// can be added without breaking callers):
///
/// ```
/// use stomp_codec::DecoderConfig;
/// let cfg = DecoderConfig::default().max_frame_size(1 << 20).max_body_size(1 << 20);
/// assert_eq!(cfg.max_header_lines, 64);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Whole frame including command line, headers, blank line, body and NUL.
    /// Default **65536** (64 KiB), the same as Spring's STOMP buffer limit, so clients
    /// written against Spring fit.
    pub max_frame_size: usize,
    /// Header lines per frame (the command line and the blank line do not count).
    /// Default **64**: real clients send fewer than 15.
    pub max_header_lines: usize,
    /// Bytes in one command or header line, EOL excluded. Default **8192**, like
    /// common HTTP servers' per-line limit.
    pub max_header_line_len: usize,
    /// Body bytes (NUL excluded). Default **65536**; it never matters more than
    /// `max_frame_size`, but can be set lower to cap bodies alone.
    pub max_body_size: usize,
}

impl DecoderConfig {
    /// Default of [`max_frame_size`](Self::max_frame_size).
    pub const DEFAULT_MAX_FRAME_SIZE: usize = 65536;
    /// Default of [`max_header_lines`](Self::max_header_lines).
    pub const DEFAULT_MAX_HEADER_LINES: usize = 64;
    /// Default of [`max_header_line_len`](Self::max_header_line_len).
    pub const DEFAULT_MAX_HEADER_LINE_LEN: usize = 8192;
    /// Default of [`max_body_size`](Self::max_body_size).
    pub const DEFAULT_MAX_BODY_SIZE: usize = 65536;

    /// Sets [`max_frame_size`](Self::max_frame_size).
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }

    /// Sets [`max_header_lines`](Self::max_header_lines).
    pub fn max_header_lines(mut self, n: usize) -> Self {
        self.max_header_lines = n;
        self
    }

    /// Sets [`max_header_line_len`](Self::max_header_line_len).
    pub fn max_header_line_len(mut self, n: usize) -> Self {
        self.max_header_line_len = n;
        self
    }

    /// Sets [`max_body_size`](Self::max_body_size).
    pub fn max_body_size(mut self, n: usize) -> Self {
        self.max_body_size = n;
        self
    }
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_frame_size: Self::DEFAULT_MAX_FRAME_SIZE,
            max_header_lines: Self::DEFAULT_MAX_HEADER_LINES,
            max_header_line_len: Self::DEFAULT_MAX_HEADER_LINE_LEN,
            max_body_size: Self::DEFAULT_MAX_BODY_SIZE,
        }
    }
}

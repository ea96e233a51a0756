//! The body of a benchmark message: who sent it, its sequence number and when, padded to the
//! requested size. Hex keeps it valid UTF-8 (text frames) and fixed-width (cheap to parse).

/// Bytes the header part takes; bodies are at least this long.
pub const MIN_SIZE: usize = 40;

/// Writes a body of `size` bytes (at least `MIN_SIZE`).
pub fn encode(publisher: u32, seq: u64, sent_ns: u64, size: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "{publisher:08x}{seq:016x}{sent_ns:016x}");
    out.resize(size.max(MIN_SIZE), b'x');
}

/// Reads `(publisher, seq, sent_ns)` back.
pub fn decode(body: &[u8]) -> Option<(u32, u64, u64)> {
    let text = std::str::from_utf8(body.get(..MIN_SIZE)?).ok()?;
    Some((
        u32::from_str_radix(text.get(0..8)?, 16).ok()?,
        u64::from_str_radix(text.get(8..24)?, 16).ok()?,
        u64::from_str_radix(text.get(24..40)?, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut b = Vec::new();
        encode(7, 123_456, 9_999_999_999, 128, &mut b);
        assert_eq!(b.len(), 128);
        assert_eq!(decode(&b), Some((7, 123_456, 9_999_999_999)));
        encode(1, 2, 3, 10, &mut b);
        assert_eq!(b.len(), MIN_SIZE);
        assert_eq!(decode(b"short"), None);
    }
}

//! The message format between nodes: everything a node needs to deliver a message another
//! node accepted, in one length-prefixed binary record (bodies may be binary).
//!
//! `version u8 | origin | key | destination | message-id | policy u8 | header count u16 |
//! (name, value)* | body`, where each string is a `u32` big-endian length and its bytes, and
//! the body is the rest.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use stomp_codec::Headers;

use crate::config::SlowConsumerPolicy;

const VERSION: u8 = 1;

/// A message as it travels between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The node that accepted it (it delivers to its own subscribers itself).
    pub origin: String,
    /// The registry key it is delivered under (the destination, or a user destination's key).
    pub key: String,
    /// The destination MESSAGE frames show.
    pub destination: String,
    /// Its message id, unique in the cluster.
    pub message_id: String,
    /// The destination's slow-consumer policy.
    pub policy: SlowConsumerPolicy,
    /// The SEND's headers.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body.
    pub body: Bytes,
}

/// A record that is not an envelope (another version, or damaged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a cluster message this node understands")]
pub struct BadEnvelope;

impl Envelope {
    /// The headers as the codec's type.
    pub fn headers(&self) -> Headers {
        let mut h = Headers::new();
        for (n, v) in &self.headers {
            h.push(n.clone(), v.clone());
        }
        h
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Bytes {
        encode(
            [&self.origin, &self.key, &self.destination, &self.message_id],
            self.policy,
            self.headers.iter().map(|(n, v)| (&n[..], &v[..])),
            &self.body,
        )
    }

    /// Decodes an envelope; the body is a slice of `data`, not a copy.
    pub fn decode(mut data: Bytes) -> Result<Self, BadEnvelope> {
        if data.try_get_u8().map_err(|_| BadEnvelope)? != VERSION {
            return Err(BadEnvelope);
        }
        let origin = take_str(&mut data)?;
        let key = take_str(&mut data)?;
        let destination = take_str(&mut data)?;
        let message_id = take_str(&mut data)?;
        let policy = match data.try_get_u8().map_err(|_| BadEnvelope)? {
            0 => SlowConsumerPolicy::Drop,
            1 => SlowConsumerPolicy::Disconnect,
            _ => return Err(BadEnvelope),
        };
        let count = data.try_get_u16().map_err(|_| BadEnvelope)?;
        let mut headers = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            let n = take(&mut data)?;
            let v = take(&mut data)?;
            headers.push((n, v));
        }
        Ok(Self {
            origin,
            key,
            destination,
            message_id,
            policy,
            headers,
            body: data,
        })
    }
}

/// Encodes an envelope from borrowed parts (`origin`, `key`, `destination`, `message-id`),
/// in one allocation: the publish path builds no owned `Envelope` first.
pub fn encode<'a>(
    strings: [&str; 4],
    policy: SlowConsumerPolicy,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    body: &[u8],
) -> Bytes {
    let size = 1
        + strings.iter().map(|s| 4 + s.len()).sum::<usize>()
        + 3
        + headers
            .clone()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>()
        + body.len();
    let mut out = BytesMut::with_capacity(size);
    out.put_u8(VERSION);
    for s in strings {
        put(&mut out, s.as_bytes());
    }
    out.put_u8(match policy {
        SlowConsumerPolicy::Drop => 0,
        SlowConsumerPolicy::Disconnect => 1,
    });
    let count = headers.clone().count().min(usize::from(u16::MAX));
    out.put_u16(count as u16);
    for (n, v) in headers.take(count) {
        put(&mut out, n);
        put(&mut out, v);
    }
    out.put_slice(body);
    out.freeze()
}

fn put(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.put_slice(b);
}

fn take(data: &mut Bytes) -> Result<Bytes, BadEnvelope> {
    let n = data.try_get_u32().map_err(|_| BadEnvelope)? as usize;
    if data.len() < n {
        return Err(BadEnvelope);
    }
    Ok(data.split_to(n))
}

fn take_str(data: &mut Bytes) -> Result<String, BadEnvelope> {
    String::from_utf8(take(data)?.to_vec()).map_err(|_| BadEnvelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let e = Envelope {
            origin: "n1".into(),
            key: "/topic/a".into(),
            destination: "/topic/a".into(),
            message_id: "n1-x-1".into(),
            policy: SlowConsumerPolicy::Disconnect,
            headers: vec![(
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"text/plain"),
            )],
            body: Bytes::from_static(b"\0\xffbody"),
        };
        let bytes = e.encode();
        assert_eq!(Envelope::decode(bytes.clone()).unwrap(), e);
        for cut in 0..bytes.len() - e.body.len() {
            assert!(
                Envelope::decode(bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        assert!(Envelope::decode(Bytes::from_static(b"\x02")).is_err());
    }
}

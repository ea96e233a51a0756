//! STOMP heart-beat negotiation (STOMP 1.1 §Heart-beating), as pure functions.

use std::time::Duration;

/// The negotiated intervals for one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often the broker sends an EOL when it has nothing else to send; `None` = never.
    pub send_every: Option<Duration>,
    /// How long the client may stay silent before it is disconnected, grace included.
    pub receive_timeout: Option<Duration>,
}

/// Parses a client's `heart-beat:cx,cy`. A missing header means `0,0`.
pub fn parse(value: Option<&str>) -> Option<(u64, u64)> {
    let Some(v) = value else {
        return Some((0, 0));
    };
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Negotiates from the client's `(cx, cy)` and the server's `[sx, sy]` preference.
///
/// The broker sends every `max(sx, cy)` when both are non-zero, and expects something from the
/// client every `max(cx, sy)` when both are non-zero; `grace` is added before giving up, since
/// timers and networks are not exact.
pub fn negotiate(client: (u64, u64), server: [u64; 2], grace: Duration) -> Heartbeat {
    let (cx, cy) = client;
    let [sx, sy] = server;
    let send_every = (sx > 0 && cy > 0).then(|| Duration::from_millis(sx.max(cy)));
    let receive_timeout = (cx > 0 && sy > 0).then(|| Duration::from_millis(cx.max(sy)) + grace);
    Heartbeat {
        send_every,
        receive_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse(None), Some((0, 0)));
        assert_eq!(parse(Some("10000,5000")), Some((10000, 5000)));
        assert_eq!(parse(Some("10000, 5000")), Some((10000, 5000)));
        assert_eq!(parse(Some("10000")), None);
        assert_eq!(parse(Some("a,b")), None);
    }

    #[test]
    fn negotiates_per_the_spec() {
        let g = Duration::from_millis(100);
        let hb = negotiate((4000, 20000), [10000, 10000], g);
        assert_eq!(hb.send_every, Some(Duration::from_millis(20000)));
        assert_eq!(hb.receive_timeout, Some(Duration::from_millis(10100)));
        let off = negotiate((0, 0), [10000, 10000], g);
        assert_eq!(off, Heartbeat::default());
        let server_off = negotiate((1000, 1000), [0, 0], g);
        assert_eq!(server_off, Heartbeat::default());
    }
}

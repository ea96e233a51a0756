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

/// Negotiates from the client's `(cx, cy)` and the server's `[sx, sy]` (`[stomp] heartbeat`).
///
/// `[sx, sy]` is the floor: the shortest intervals the broker accepts, and what it answers in
/// CONNECTED. The spec's rule then gives the client the interval it asked for unless that is
/// shorter than the floor: the broker sends every `max(sx, cy)` when both are non-zero, and
/// expects something from the client every `max(cx, sy)` when both are non-zero. Were the
/// server's value a preference above what clients ask (say 10 s), the max() would override a
/// client wanting quick dead-peer detection.
///
/// A silent client is given up on after its interval plus a tolerance, since timers and
/// networks are not exact: `grace`, but never more than the interval itself. So a client
/// asking for 1 s heart-beats is dropped after 2 s of silence (twice the interval, the rule
/// RabbitMQ and stomp.js apply), one asking for 10 s after 15 s with the default grace.
pub fn negotiate(client: (u64, u64), floor: [u64; 2], grace: Duration) -> Heartbeat {
    let (cx, cy) = client;
    let [sx, sy] = floor;
    let send_every = (sx > 0 && cy > 0).then(|| Duration::from_millis(sx.max(cy)));
    let receive_timeout = (cx > 0 && sy > 0).then(|| {
        let every = Duration::from_millis(cx.max(sy));
        every + grace.min(every)
    });
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

    #[test]
    fn the_server_setting_is_a_floor() {
        let g = Duration::from_millis(100);
        let floor = [1000, 1000];
        // What the client asks for, when at or above the floor (stomp.js: 10 s by default).
        let asked = negotiate((1000, 1000), floor, g);
        assert_eq!(asked.send_every, Some(Duration::from_millis(1000)));
        assert_eq!(asked.receive_timeout, Some(Duration::from_millis(1100)));
        let stompjs = negotiate((10000, 10000), floor, g);
        assert_eq!(stompjs.send_every, Some(Duration::from_millis(10000)));
        // Below the floor, the floor.
        let eager = negotiate((10, 1), floor, g);
        assert_eq!(eager.send_every, Some(Duration::from_millis(1000)));
        assert_eq!(eager.receive_timeout, Some(Duration::from_millis(1100)));
    }

    #[test]
    fn tolerance_is_at_most_the_interval() {
        let grace = Duration::from_millis(5000);
        let quick = negotiate((1000, 0), [1000, 1000], grace);
        assert_eq!(quick.receive_timeout, Some(Duration::from_millis(2000)));
        let slow = negotiate((10000, 0), [1000, 1000], grace);
        assert_eq!(slow.receive_timeout, Some(Duration::from_millis(15000)));
    }
}

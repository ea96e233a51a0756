//! The fifteen STOMP commands and the per-command rules the codec needs.

use std::fmt;

/// A STOMP command (the first line of a frame).
///
/// Client frames: `CONNECT`, `STOMP`, `SEND`, `SUBSCRIBE`, `UNSUBSCRIBE`, `ACK`, `NACK`,
/// `BEGIN`, `COMMIT`, `ABORT`, `DISCONNECT`. Server frames: `CONNECTED`, `MESSAGE`,
/// `RECEIPT`, `ERROR`. The decoder accepts both directions so that the same codec serves
/// the broker and test clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `CONNECT`: open a session.
    Connect,
    /// `STOMP`: the 1.1+ alias of `CONNECT`.
    Stomp,
    /// `SEND`: publish a message.
    Send,
    /// `SUBSCRIBE`: start a subscription.
    Subscribe,
    /// `UNSUBSCRIBE`: end a subscription.
    Unsubscribe,
    /// `ACK`: acknowledge a message.
    Ack,
    /// `NACK`: reject a message (1.1+).
    Nack,
    /// `BEGIN`: start a transaction.
    Begin,
    /// `COMMIT`: commit a transaction.
    Commit,
    /// `ABORT`: roll back a transaction.
    Abort,
    /// `DISCONNECT`: close the session gracefully.
    Disconnect,
    /// `CONNECTED`: the server's answer to `CONNECT`.
    Connected,
    /// `MESSAGE`: a delivery to a subscriber.
    Message,
    /// `RECEIPT`: confirmation of a frame that carried `receipt`.
    Receipt,
    /// `ERROR`: the server reports a failure (and usually closes).
    Error,
}

impl Command {
    /// Every command, in the order of the enum.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The command as written on the wire, e.g. `"CONNECT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Parses a command line (without its EOL). Exact and case-sensitive, as the
    /// specification requires: `send` or `SEND ` are not commands.
    pub fn from_bytes(b: &[u8]) -> Option<Command> {
        // Matching on the slice compiles to a length switch plus short compares,
        // which is cheaper than looping over `ALL`.
        Some(match b {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// Whether header names and values of this command are escaped (1.1+).
    ///
    /// The 1.2 specification exempts `CONNECT` and `CONNECTED` (and so `STOMP`) so that
    /// 1.0 peers can still read the handshake before a version is negotiated.
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }

    /// Whether a non-empty body is allowed: only `SEND`, `MESSAGE` and `ERROR` carry one
    /// according to the specification.
    pub fn allows_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Command::ALL {
            assert_eq!(Command::from_bytes(c.as_str().as_bytes()), Some(c));
        }
        assert_eq!(Command::from_bytes(b"send"), None);
        assert_eq!(Command::from_bytes(b"SEND "), None);
        assert_eq!(Command::from_bytes(b""), None);
    }

    #[test]
    fn rules() {
        let escaping: Vec<_> = Command::ALL
            .into_iter()
            .filter(|c| !c.escapes_headers())
            .collect();
        assert_eq!(
            escaping,
            [Command::Connect, Command::Stomp, Command::Connected]
        );
        let bodies: Vec<_> = Command::ALL
            .into_iter()
            .filter(|c| c.allows_body())
            .collect();
        assert_eq!(bodies, [Command::Send, Command::Message, Command::Error]);
    }
}

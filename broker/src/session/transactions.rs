//! Transactions: BEGIN, then SEND, ACK and NACK held until COMMIT (or dropped at ABORT and
//! disconnect).
//!
//! What a transaction holds is a compact copy of each frame (one allocation, so it never pins
//! the buffer the frame arrived in), charged at that copy's real size to the connection's
//! transaction budget (`[stomp] max_transaction_bytes`, all open transactions together), which
//! sits inside the budget of all connections (`[broker] sessions_max_bytes`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use stomp_codec::{Command, Frame, Headers};

use super::Session;
use super::error::ProtocolError;
use crate::budget::{Budget, Charge};

/// What each held header costs beyond its bytes (two `Bytes` handles and the vector slot).
const HEADER_OVERHEAD: usize = 72;
/// What each held frame costs beyond its headers and body.
const FRAME_OVERHEAD: usize = 128;

/// An operation held by an open transaction until COMMIT.
#[derive(Debug)]
pub(super) enum TxOp {
    Send {
        destination: String,
        headers: Headers,
        body: Bytes,
    },
    Ack(Frame),
    Nack(Frame),
}

#[derive(Debug, Default)]
struct Tx {
    ops: Vec<(TxOp, Charge)>,
}

/// A session's open transactions and what they may hold (a budget made at the first BEGIN).
#[derive(Debug, Default)]
pub(super) struct Transactions {
    open: HashMap<String, Tx>,
    budget: Option<Arc<Budget>>,
}

/// Copies `headers` (those `keep` accepts) and `body` into one fresh allocation. Returns the
/// copies and the bytes they pin.
pub(super) fn detach(
    headers: &Headers,
    body: &Bytes,
    keep: impl Fn(&[u8]) -> bool,
) -> (Headers, Bytes, usize) {
    let kept = || headers.as_slice().iter().filter(|(n, _)| keep(n));
    let total: usize = kept().map(|(n, v)| n.len() + v.len()).sum::<usize>() + body.len();
    let mut buf = BytesMut::with_capacity(total);
    for (n, v) in kept() {
        buf.put_slice(n);
        buf.put_slice(v);
    }
    buf.put_slice(body);
    let mut all = buf.freeze();
    let mut copy = Headers::new();
    let mut count = 0;
    for (n, v) in kept() {
        let name = all.split_to(n.len());
        let value = all.split_to(v.len());
        copy.push(name, value);
        count += 1;
    }
    (copy, all, total + count * HEADER_OVERHEAD + FRAME_OVERHEAD)
}

/// The headers an ACK or NACK needs at COMMIT.
fn ack_header(name: &[u8]) -> bool {
    matches!(
        name,
        b"id" | b"message-id" | b"subscription" | b"requeue" | b"transaction"
    )
}

type Result<T = ()> = std::result::Result<T, ProtocolError>;

impl Session {
    fn tx_id<'a>(&self, frame: &'a Frame) -> Result<&'a str> {
        frame
            .headers
            .get_str("transaction")
            .ok_or(ProtocolError::missing(frame.command, "transaction"))
    }

    pub(super) fn on_begin(&mut self, frame: &Frame) -> Result {
        let tx = self.tx_id(frame)?;
        let limit = self.broker.config.stomp.max_transactions;
        if self.txs.open.contains_key(tx) {
            return Err(ProtocolError::DuplicateTransaction(tx.to_owned()));
        }
        if self.txs.open.len() >= limit {
            return Err(ProtocolError::TooManyTransactions { limit });
        }
        self.txs.open.insert(tx.to_owned(), Tx::default());
        Ok(())
    }

    pub(super) fn on_commit(&mut self, frame: &Frame) -> Result {
        let tx = self.tx_id(frame)?;
        let t = self
            .txs
            .open
            .remove(tx)
            .ok_or_else(|| ProtocolError::UnknownTransaction(tx.to_owned()))?;
        for (op, _charge) in t.ops {
            match op {
                TxOp::Send {
                    destination,
                    headers,
                    body,
                } => {
                    let route = self.broker.router.route(&destination);
                    self.dispatch_send(&destination, route, headers, body)?;
                }
                TxOp::Ack(f) | TxOp::Nack(f) => self.apply_ack(&f),
            }
        }
        Ok(())
    }

    pub(super) fn on_abort(&mut self, frame: &Frame) -> Result {
        let tx = self.tx_id(frame)?;
        self.txs
            .open
            .remove(tx)
            .map(drop)
            .ok_or_else(|| ProtocolError::UnknownTransaction(tx.to_owned()))
    }

    /// Holds a SEND in transaction `tx`.
    pub(super) fn tx_send(&mut self, tx: &str, destination: &str, frame: &Frame) -> Result {
        let (headers, body, size) = detach(&frame.headers, &frame.body, |_| true);
        let op = TxOp::Send {
            destination: destination.to_owned(),
            headers,
            body,
        };
        self.tx_push(tx, op, size + destination.len())
    }

    /// Holds an ACK or NACK in transaction `tx`.
    pub(super) fn tx_ack(&mut self, tx: &str, frame: &Frame) -> Result {
        let (headers, _, size) = detach(&frame.headers, &Bytes::new(), ack_header);
        let mut copy = Frame::new(frame.command);
        copy.headers = headers;
        let op = if frame.command == Command::Ack {
            TxOp::Ack(copy)
        } else {
            TxOp::Nack(copy)
        };
        self.tx_push(tx, op, size)
    }

    fn tx_push(&mut self, tx: &str, op: TxOp, bytes: usize) -> Result {
        let cfg = &self.broker.config.stomp;
        let t = self
            .txs
            .open
            .get_mut(tx)
            .ok_or_else(|| ProtocolError::UnknownTransaction(tx.to_owned()))?;
        if t.ops.len() >= cfg.max_transaction_frames {
            return Err(ProtocolError::TransactionTooLarge {
                tx: tx.to_owned(),
                limit: format!("{} frames", cfg.max_transaction_frames),
            });
        }
        let budget = self
            .txs
            .budget
            .get_or_insert_with(|| self.broker.session_budget(cfg.max_transaction_bytes));
        let Some(charge) = budget.try_charge(bytes) else {
            let limit = if budget.used() + bytes > budget.limit() {
                format!(
                    "{} bytes in this connection's open transactions (stomp.max_transaction_bytes)",
                    cfg.max_transaction_bytes
                )
            } else {
                format!(
                    "{} bytes held by all connections (broker.sessions_max_bytes)",
                    self.broker.config.broker.sessions_max_bytes
                )
            };
            return Err(ProtocolError::TransactionTooLarge {
                tx: tx.to_owned(),
                limit,
            });
        };
        t.ops.push((op, charge));
        Ok(())
    }
}

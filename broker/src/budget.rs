//! Byte budgets: what a client makes the broker hold is charged here at the size it pins.
//!
//! A [`Budget`] counts bytes against a limit and may have a parent (a destination's share
//! inside the budget of all destinations, a connection's inside the budget of all
//! connections): a charge is taken from the budget and every ancestor, all or nothing. A
//! [`Charge`] gives its bytes back when dropped, so whatever holds a message (a queue entry,
//! a history entry, an open transaction) releases it on every path that lets go of it.
//!
//! Budgets are atomics, never locks: charging costs one compare-and-swap per level, and only
//! where memory is retained (queues, histories, transactions, unacknowledged deliveries,
//! application messages), never per subscriber on the fan-out path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A byte budget.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
    parent: Option<Arc<Budget>>,
}

impl Budget {
    /// A budget of `limit` bytes inside `parent` (if any).
    pub fn new(limit: usize, parent: Option<Arc<Budget>>) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
            parent,
        })
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether more is charged than the limit allows (after forced charges).
    pub fn over(&self) -> bool {
        self.used() > self.limit
    }

    /// Charges `bytes` if this budget and every ancestor have room. An empty budget always
    /// takes one charge, however large and however full its ancestors are: a single item
    /// larger than the limit still moves (other limits bound one item's size), and every
    /// holder keeps a minimum nobody else can take from it, so clients filling the shared
    /// budget cannot stop another client that holds nothing.
    pub fn try_charge(self: &Arc<Self>, bytes: usize) -> Option<Charge> {
        if self.used() == 0 {
            // Racing charges of the same holder may both see it empty: each is one item.
            return Some(self.force_charge(bytes));
        }
        self.try_take(bytes).then(|| Charge {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Charges `bytes` whatever the limits: for what must not be refused (a message going
    /// back to its queue); the owner evicts right after.
    pub fn force_charge(self: &Arc<Self>, bytes: usize) -> Charge {
        let mut b = Some(self.as_ref());
        while let Some(budget) = b {
            budget.used.fetch_add(bytes, Ordering::Relaxed);
            b = budget.parent.as_deref();
        }
        Charge {
            budget: Arc::clone(self),
            bytes,
        }
    }

    fn try_take(&self, bytes: usize) -> bool {
        let took = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used.saturating_add(bytes) <= self.limit).then(|| used + bytes)
            })
            .is_ok();
        if !took {
            return false;
        }
        match &self.parent {
            Some(p) if !p.try_take(bytes) => {
                self.used.fetch_sub(bytes, Ordering::AcqRel);
                false
            }
            _ => true,
        }
    }

    fn release(&self, bytes: usize) {
        let mut b = Some(self);
        while let Some(budget) = b {
            budget.used.fetch_sub(bytes, Ordering::AcqRel);
            b = budget.parent.as_deref();
        }
    }
}

/// Bytes charged to a budget, released when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Charge {
    /// The bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_nest_and_release_on_drop() {
        let all = Budget::new(100, None);
        let a = Budget::new(60, Some(Arc::clone(&all)));
        let b = Budget::new(60, Some(Arc::clone(&all)));
        let c1 = a.try_charge(50).unwrap();
        assert!(a.try_charge(20).is_none(), "over a's own limit");
        let c2 = b.try_charge(40).unwrap();
        assert!(b.try_charge(20).is_none(), "over the parent's limit");
        assert_eq!((a.used(), b.used(), all.used()), (50, 40, 90));
        drop(c1);
        assert_eq!(all.used(), 40);
        let big = a
            .try_charge(1_000)
            .expect("an empty budget takes one item, however full its parent");
        assert!(all.over());
        assert!(a.try_charge(1).is_none(), "but only one");
        drop((big, c2));
        assert_eq!((a.used(), b.used(), all.used()), (0, 0, 0));
        let f = a.force_charge(500);
        assert!(a.over() && all.over());
        drop(f);
        assert_eq!(all.used(), 0);
    }
}

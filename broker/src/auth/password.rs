//! Argon2 password verification with bounded concurrency, queue and memory.
//!
//! Each configured hash is parsed once at start-up. A verification runs on a blocking thread
//! while holding one of `[auth.verify] concurrency` slots, and fills a block buffer that belongs
//! to the slot: buffers are allocated on first use, sized for the costliest configured hash,
//! and reused, so verification never holds more than `concurrency` × that hash's `m` KiB,
//! however many CONNECTs arrive (argon2's own `verify_password` allocates, and the allocator
//! keeps, a fresh buffer per call).
//!
//! Admission is bounded before anything waits: at most `max_waiting` CONNECTs wait for a slot,
//! at most `max_per_address` per address wait or run, and a wait ends after `wait_ms`. The
//! waiting future is the session's, so a hang-up or the CONNECT deadline drops it and frees
//! its place at once; a verification already running finishes on its thread (it cannot be
//! interrupted) and its outcome is still recorded by the throttle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

use super::throttle::AddrKey;
use crate::config::VerifyConfig;

/// A configured hash, parsed: what verifying against it needs, without re-parsing per login.
#[derive(Clone)]
pub(super) struct StoredHash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    hash: Output,
}

impl StoredHash {
    /// Parses an argon2 PHC string; `None` if it is not one this broker can verify.
    pub(super) fn parse(phc: &str) -> Option<Self> {
        let h = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(h.algorithm).ok()?;
        let version = h
            .version
            .map_or(Ok(Version::default()), Version::try_from)
            .ok()?;
        let params = Params::try_from(&h).ok()?;
        let mut salt = [0u8; 64];
        let salt = h.salt?.decode_b64(&mut salt).ok()?.to_vec();
        let hash = h.hash?;
        Some(Self {
            algorithm,
            version,
            params,
            salt,
            hash,
        })
    }

    /// The same parameters with another salt and an output nobody can produce: verifying an
    /// unknown login against it costs what a known login costs and always fails.
    pub(super) fn decoy(&self) -> Self {
        let zero = vec![0u8; self.hash.len()];
        Self {
            salt: b"stompbox-decoy-salt".to_vec(),
            hash: Output::new(&zero).unwrap_or(self.hash),
            ..self.clone()
        }
    }

    pub(super) fn blocks(&self) -> usize {
        self.params.block_count()
    }

    /// Hashes `password` into `memory` and compares in constant time.
    fn verify(&self, password: &[u8], memory: &mut [Block]) -> bool {
        let ctx = Argon2::new(self.algorithm, self.version, self.params.clone());
        let mut out = [0u8; Output::MAX_LENGTH];
        let Some(out) = out.get_mut(..self.hash.len()) else {
            return false;
        };
        if ctx
            .hash_password_into_with_memory(password, &self.salt, out, memory)
            .is_err()
        {
            return false;
        }
        Output::new(out).is_ok_and(|o| o == self.hash)
    }
}

/// Why a verification did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The queue, the address's share of it, or the wait was over its bound.
    Busy,
}

/// The verification slots, their memory, and the bounded queue in front of them.
pub(super) struct Verifier {
    slots: Arc<Semaphore>,
    /// One buffer per slot at most: taken by a verification, put back when it ends.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Blocks each buffer has: the costliest configured hash's.
    blocks: usize,
    waiting: AtomicUsize,
    per_address: Mutex<HashMap<AddrKey, usize>>,
    cfg: VerifyConfig,
    /// Verifications run (`stompbox_auth_password_checks_total`).
    pub(super) checks: Counter,
}

/// A place in the queue for one address; gives it back when dropped.
struct Place<'a> {
    verifier: &'a Verifier,
    addr: AddrKey,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut map = self
            .verifier
            .per_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

/// Counts a waiter while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Verifier {
    /// Slots for hashes needing up to `blocks` KiB each.
    pub(super) fn new(cfg: &VerifyConfig, blocks: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(cfg.concurrency)),
            buffers: Arc::new(Mutex::new(Vec::with_capacity(cfg.concurrency))),
            blocks,
            waiting: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            cfg: cfg.clone(),
            checks: Counter::default(),
        }
    }

    /// The most memory verification can hold, in bytes.
    pub(super) fn memory_bound(&self) -> usize {
        self.cfg.concurrency * self.blocks * Block::SIZE
    }

    /// Verifies `password` against `stored` once a slot is free, then calls `done` with the
    /// outcome on the verifying thread (so it is recorded even if the caller has gone).
    pub(super) async fn verify(
        &self,
        addr: AddrKey,
        stored: Arc<StoredHash>,
        password: &str,
        done: impl FnOnce(bool) + Send + 'static,
    ) -> Result<bool, Refused> {
        let _place = self.enter(addr)?;
        let permit = {
            if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.cfg.max_waiting {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Busy);
            }
            let _waiting = Waiting(&self.waiting);
            let wait = Duration::from_millis(self.cfg.wait_ms);
            match tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => return Err(Refused::Busy),
            }
        };
        self.checks.inc();
        let buffers = Arc::clone(&self.buffers);
        let blocks = self.blocks;
        let password = password.as_bytes().to_vec();
        let run = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut memory = taken.unwrap_or_else(|| vec![Block::new(); blocks]);
            let ok = stored.verify(&password, &mut memory);
            buffers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(memory);
            done(ok);
            ok
        });
        Ok(run.await.unwrap_or(false))
    }

    /// Takes a place for `addr` if it has fewer than `max_per_address`.
    fn enter(&self, addr: AddrKey) -> Result<Place<'_>, Refused> {
        let mut map = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(addr).or_insert(0);
        if *n >= self.cfg.max_per_address {
            return Err(Refused::Busy);
        }
        *n += 1;
        Ok(Place {
            verifier: self,
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_a_hash_from_hash_password_and_refuses_others() {
        let phc = super::super::hash_password("s3cret").unwrap();
        let stored = StoredHash::parse(&phc).unwrap();
        let mut memory = vec![Block::new(); stored.blocks()];
        assert!(stored.verify(b"s3cret", &mut memory));
        assert!(!stored.verify(b"s3cre", &mut memory));
        assert!(!stored.decoy().verify(b"s3cret", &mut memory));
    }
}

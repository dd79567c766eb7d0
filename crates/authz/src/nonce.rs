//! The nonce store seam: an atomic check-and-record that the pipeline's last step asks, and that
//! a caller uses *after* role scoping and binding to consume the nonce. An in-memory store lives
//! here for tests and tools; the durable one is the journal's. A store must never report a nonce
//! as fresh when it cannot tell: errors fail closed.

use crate::op::Nonce;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// The store could not answer (I/O, corruption, poisoned lock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonceStoreError(pub String);

impl fmt::Display for NonceStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nonce store: {}", self.0)
    }
}

impl std::error::Error for NonceStoreError {}

/// What an attempt to consume a nonce found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// This call recorded the nonce: the caller owns the op.
    Fresh,
    /// The nonce was already recorded: a replay.
    AlreadyConsumed,
}

/// Where consumed nonces are kept.
pub trait NonceStore: Send + Sync {
    /// Whether `nonce` was consumed already (a read; consumes nothing).
    fn is_consumed(&self, nonce: &Nonce) -> Result<bool, NonceStoreError>;

    /// Atomically records `nonce` unless it is there. Two concurrent calls with one nonce: exactly
    /// one gets [`Consumed::Fresh`]. The record must be durable before `Fresh` is returned and
    /// must be kept at least until `keep_until` (Unix seconds: the op's `not_after` plus skew).
    fn consume(&self, nonce: &Nonce, keep_until: i64) -> Result<Consumed, NonceStoreError>;
}

/// A process-local store: for tests, benchmarks and tools with no journal.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    seen: Mutex<HashMap<Nonce, i64>>,
}

impl MemoryNonceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets nonces whose `keep_until` is before `now`; returns how many went.
    pub fn prune(&self, now: i64) -> Result<usize, NonceStoreError> {
        let mut seen = self.lock()?;
        let before = seen.len();
        seen.retain(|_, keep_until| *keep_until >= now);
        Ok(before - seen.len())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<Nonce, i64>>, NonceStoreError> {
        self.seen
            .lock()
            .map_err(|_| NonceStoreError("lock poisoned".into()))
    }
}

impl NonceStore for MemoryNonceStore {
    fn is_consumed(&self, nonce: &Nonce) -> Result<bool, NonceStoreError> {
        Ok(self.lock()?.contains_key(nonce))
    }

    fn consume(&self, nonce: &Nonce, keep_until: i64) -> Result<Consumed, NonceStoreError> {
        let mut seen = self.lock()?;
        if seen.contains_key(nonce) {
            return Ok(Consumed::AlreadyConsumed);
        }
        seen.insert(nonce.clone(), keep_until);
        Ok(Consumed::Fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn nonce(i: u8) -> Nonce {
        use base64::Engine as _;
        Nonce::parse(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([i; 16])).unwrap()
    }

    #[test]
    fn exactly_one_of_many_concurrent_consumers_wins() {
        let store = Arc::new(MemoryNonceStore::new());
        let n = nonce(0);
        let wins: usize = (0..64)
            .map(|_| {
                let (store, n) = (store.clone(), n.clone());
                std::thread::spawn(move || store.consume(&n, 100).unwrap() == Consumed::Fresh)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(wins, 1);
        assert!(store.is_consumed(&n).unwrap());
    }

    #[test]
    fn prune_keeps_what_is_still_in_its_window() {
        let store = MemoryNonceStore::new();
        store.consume(&nonce(1), 10).unwrap();
        store.consume(&nonce(2), 20).unwrap();
        assert_eq!(store.prune(15).unwrap(), 1);
        assert!(!store.is_consumed(&nonce(1)).unwrap());
        assert!(store.is_consumed(&nonce(2)).unwrap());
    }
}

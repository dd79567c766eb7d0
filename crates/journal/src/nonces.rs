//! The journal as authz's durable `NonceStore`: check-and-record in one sled transaction, durable
//! before `Fresh` is returned. Errors fail closed (the caller refuses the op).
//! It must never answer `Fresh` twice for one nonce.

use crate::handle::Journal;
use steward_authz::{Consumed, Nonce, NonceStore, NonceStoreError};

impl NonceStore for Journal {
    fn is_consumed(&self, nonce: &Nonce) -> Result<bool, NonceStoreError> {
        self.nonce_consumed(nonce)
            .map_err(|e| NonceStoreError(e.to_string()))
    }

    fn consume(&self, nonce: &Nonce, keep_until: i64) -> Result<Consumed, NonceStoreError> {
        self.consume_bare_nonce(nonce, keep_until)
            .map_err(|e| NonceStoreError(e.to_string()))
    }
}

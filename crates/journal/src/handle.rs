//! The journal as its callers hold it: one open store at a time, opened again after a storage
//! error. sled keeps the first I/O error it meets (a full disk, a read-only remount) and answers
//! every later call with it for the life of the process, so a journal that hit a full disk would
//! refuse every op until a restart, long after the space came back. Here a storage error marks
//! the store broken; the next call (at most one attempt a second) drops it and opens the
//! directory again with [`Store::open`], which never creates, resets or repairs anything, and
//! answers with the reopen's error while it fails.
//!
//! It must never retry a write itself: a write that failed was not acknowledged, and the caller
//! (the gate) refuses the op it belonged to. Nothing is lost by reopening: what sled
//! acknowledged is on disk (every write passed the barrier), and what it did not was refused.

use crate::audit::{AuditEntry, AuditReport};
use crate::barrier::{BarrierHook, Hooks};
use crate::error::JournalError;
use crate::journal::Store;
use crate::record::{Approval, NewOp, OpId, OpRecord, OpState, ProvenanceFact, Signer, TxnId};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use steward_authz::{Consumed, Nonce};
use steward_model::Vmid;

/// The least time between two attempts to open a broken store again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// The durable journal (see the module's comment for how it survives a storage error).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// The open store; None while a reopen has not succeeded.
    store: RwLock<Option<Arc<Store>>>,
    /// A storage error was seen since the store was opened.
    broken: AtomicBool,
    /// When a reopen was last tried, and why it failed.
    reopen: Mutex<(Option<Instant>, Option<String>)>,
    hook: OnceLock<BarrierHook>,
    hooks: Hooks,
}

impl Journal {
    fn assemble(path: PathBuf, store: Store, hooks: Hooks) -> Journal {
        Journal {
            path,
            store: RwLock::new(Some(Arc::new(store))),
            broken: AtomicBool::new(false),
            reopen: Mutex::new((None, None)),
            hook: OnceLock::new(),
            hooks,
        }
    }

    /// Creates a new journal at `path`, which must not exist or be an empty directory.
    pub fn create(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        let hooks = Hooks::default();
        let store = Store::create(path.as_ref(), hooks.clone())?;
        Ok(Journal::assemble(path.as_ref().to_path_buf(), store, hooks))
    }

    /// Opens an existing journal. Never creates, resets or repairs one.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        let hooks = Hooks::default();
        let store = Store::open(path.as_ref(), hooks.clone())?;
        Ok(Journal::assemble(path.as_ref().to_path_buf(), store, hooks))
    }

    /// Opens the journal at `path`, creating it only if `path` does not exist at all.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        if path.as_ref().exists() {
            Journal::open(path)
        } else {
            Journal::create(path)
        }
    }

    /// The store to use now: the open one, or, after a storage error, a fresh one.
    fn current(&self) -> Result<Arc<Store>, JournalError> {
        if self.broken.load(Ordering::SeqCst) {
            self.try_reopen();
        }
        let slot = self
            .store
            .read()
            .map_err(|_| JournalError::Storage("journal store lock poisoned".into()))?;
        match slot.as_ref() {
            Some(s) => Ok(Arc::clone(s)),
            None => {
                let why = self
                    .reopen
                    .lock()
                    .ok()
                    .and_then(|r| r.1.clone())
                    .unwrap_or_else(|| "not reopened yet".into());
                Err(JournalError::Storage(format!(
                    "{}: reopening after a storage error failed: {why}",
                    self.path.display()
                )))
            }
        }
    }

    fn try_reopen(&self) {
        let Ok(mut last) = self.reopen.lock() else {
            return;
        };
        if last.0.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return;
        }
        last.0 = Some(Instant::now());
        let Ok(mut slot) = self.store.write() else {
            return;
        };
        if !self.broken.load(Ordering::SeqCst) {
            return;
        }
        // sled holds its directory's lock while any handle lives: ours goes first, and calls
        // still running on the old store finish within `open`'s lock wait.
        drop(slot.take());
        match Store::open(&self.path, self.hooks.clone()) {
            Ok(store) => {
                if let Some(h) = self.hook.get() {
                    store.observe_barriers(h.clone());
                }
                *slot = Some(Arc::new(store));
                last.1 = None;
                self.broken.store(false, Ordering::SeqCst);
                tracing::info!(path = %self.path.display(), "journal reopened after a storage error");
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "journal still unavailable");
                last.1 = Some(e.to_string());
            }
        }
    }

    /// Runs `f` on the current store; a storage error marks the store broken, so that the next
    /// call opens it again.
    fn with<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let store = self.current()?;
        let r = f(&store);
        if matches!(r, Err(JournalError::Storage(_))) {
            self.broken.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Reports every durability barrier (flush + fdatasync) to `hook`: its latency and
    /// whether it worked. The first hook set stays (across reopens too).
    pub fn observe_barriers(&self, hook: BarrierHook) {
        if self.hook.set(hook.clone()).is_ok() {
            if let Ok(Some(s)) = self.store.read().as_deref().map(Option::as_ref) {
                s.observe_barriers(hook);
            }
        }
    }

    /// (durable writes, flushes) since the store was (re)opened: how well concurrent writes
    /// share barriers.
    pub fn barrier_counts(&self) -> (u64, u64) {
        self.current().map_or((0, 0), |s| s.barrier_counts())
    }

    /// The fault seam (feature `test-hooks` only).
    #[cfg(feature = "test-hooks")]
    pub fn test_hooks(&self) -> &crate::hooks::TestHooks {
        &self.hooks
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new journaled transaction id.
    pub fn new_txn(&self) -> Result<TxnId, JournalError> {
        self.with(|s| s.new_txn())
    }

    /// Records a new op in `initial` state (planned, pending_signature or refused). Durable on
    /// return.
    pub fn record(&self, new: NewOp, initial: OpState) -> Result<OpRecord, JournalError> {
        self.with(|s| s.record(new, initial))
    }

    /// Moves op `id` to `to`, if the lifecycle allows it. A destructive op cannot reach
    /// `intent` here (see [`Journal::consume_nonce_into_intent`]). Durable on return.
    pub fn transition(&self, id: OpId, to: OpState) -> Result<OpRecord, JournalError> {
        self.with(|s| s.transition(id, to))
    }

    /// Moves op `id` to `to` as [`Journal::transition`] does, and keeps `warnings` with it
    /// (the `WARN:` lines of a task that ended `WARNINGS: n`). Durable on return.
    pub fn transition_noting(
        &self,
        id: OpId,
        to: OpState,
        warnings: Vec<String>,
    ) -> Result<OpRecord, JournalError> {
        self.with(|s| s.transition_noting(id, to, warnings))
    }

    /// Consumes `nonce` and moves destructive op `id` to `intent`, with its signer and the
    /// approvals that counted, in one durable step: the only way a destructive op reaches
    /// `intent`. `AlreadyConsumed` changes nothing.
    pub fn consume_nonce_into_intent(
        &self,
        id: OpId,
        nonce: &Nonce,
        keep_until: i64,
        signer: Signer,
        approvals: Vec<Approval>,
    ) -> Result<Consumed, JournalError> {
        self.with(|s| s.consume_nonce_into_intent(id, nonce, keep_until, signer, approvals, None))
    }

    /// [`Journal::consume_nonce_into_intent`], keeping `proof` (the signed bytes, every
    /// signature that counted, the trust store in force) in the audit entry of the step, so
    /// the chain proves the authorization offline (`steward-verify audit`).
    pub fn consume_nonce_into_intent_proven(
        &self,
        id: OpId,
        nonce: &Nonce,
        keep_until: i64,
        signer: Signer,
        approvals: Vec<Approval>,
        proof: steward_audit::Proof,
    ) -> Result<Consumed, JournalError> {
        self.with(|s| {
            s.consume_nonce_into_intent(id, nonce, keep_until, signer, approvals, Some(&proof))
        })
    }

    /// Adds approvals to held op `id` (m-of-n), keeping one per signer.
    pub fn add_approvals(&self, id: OpId, new: Vec<Approval>) -> Result<OpRecord, JournalError> {
        self.with(|s| s.add_approvals(id, new))
    }

    /// Consumes a nonce that authorizes no op of its own (a key rotation, a signature spent
    /// for an op that is no longer held).
    pub(crate) fn consume_bare_nonce(
        &self,
        nonce: &Nonce,
        keep_until: i64,
    ) -> Result<Consumed, JournalError> {
        self.with(|s| s.consume_bare_nonce(nonce, keep_until, None))
    }

    /// Consumes a nonce that authorizes no op of its own, recording `event` (an object: the
    /// nonce is added to it) as the step's audit entry: a key rotation and its proof are on the
    /// chain exactly when its nonce is spent.
    pub fn consume_nonce_recording(
        &self,
        nonce: &Nonce,
        keep_until: i64,
        event: serde_json::Value,
    ) -> Result<Consumed, JournalError> {
        self.with(|s| s.consume_bare_nonce(nonce, keep_until, Some(event)))
    }

    /// Whether `nonce` was consumed.
    pub fn nonce_consumed(&self, nonce: &Nonce) -> Result<bool, JournalError> {
        self.with(|s| s.nonce_consumed(nonce))
    }

    /// Appends a free-form audit event; returns its sequence number.
    pub fn audit(&self, event: serde_json::Value) -> Result<u64, JournalError> {
        self.with(|s| s.audit(event))
    }

    /// The op `id`, if the journal has it.
    pub fn get(&self, id: OpId) -> Result<Option<OpRecord>, JournalError> {
        self.with(|s| s.get(id))
    }

    /// The op that consumed `nonce`, if any (the first outcome a replay is answered with).
    pub fn by_nonce(&self, nonce: &Nonce) -> Result<Option<OpRecord>, JournalError> {
        self.with(|s| s.by_nonce(nonce))
    }

    /// Every op in flight (intent or dispatched).
    pub fn in_flight(&self) -> Result<Vec<OpRecord>, JournalError> {
        self.with(|s| s.in_flight())
    }

    /// Every op held for a signature, from an index (no scan of history).
    pub fn held(&self) -> Result<Vec<OpRecord>, JournalError> {
        self.with(|s| s.held())
    }

    /// Every op, oldest first.
    pub fn all_ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        self.with(|s| s.all_ops())
    }

    /// The agent's own facts about the guest at `vmid`.
    pub fn provenance(&self, vmid: Vmid) -> Result<Vec<ProvenanceFact>, JournalError> {
        self.with(|s| s.provenance(vmid))
    }

    /// Forgets the facts about `vmid` (its guest is gone); true if there were any.
    pub fn forget_provenance(&self, vmid: Vmid) -> Result<bool, JournalError> {
        self.with(|s| s.forget_provenance(vmid))
    }

    /// When nonces were last pruned (Unix seconds), if ever.
    pub fn last_prune(&self) -> Result<Option<i64>, JournalError> {
        self.with(|s| s.last_prune())
    }

    /// Forgets spent nonces whose window (and every skew) has passed at `now_secs`.
    pub fn prune_nonces(&self, now_secs: i64) -> Result<usize, JournalError> {
        self.with(|s| s.prune_nonces(now_secs))
    }

    /// Forgets terminal ops older than `cutoff_ms`.
    pub fn compact(&self, cutoff_ms: i64) -> Result<usize, JournalError> {
        self.with(|s| s.compact(cutoff_ms))
    }

    /// Prunes audit entries older than `before_ms`, keeping the chain verifiable from its new
    /// anchor.
    pub fn prune_audit(&self, before_ms: i64) -> Result<usize, JournalError> {
        self.with(|s| s.prune_audit(before_ms))
    }

    /// Up to `limit` audit entries from sequence number `since` on, as stored.
    pub fn audit_entries(&self, since: u64, limit: usize) -> Result<Vec<AuditEntry>, JournalError> {
        self.with(|s| s.audit_entries(since, limit))
    }

    /// The audit chain's head (sequence number and hash), None before the first entry.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, JournalError> {
        self.with(|s| s.audit_head())
    }

    /// Verifies the audit chain from its anchor to its head.
    pub fn verify_audit_chain(&self) -> Result<AuditReport, JournalError> {
        self.with(|s| s.verify_audit_chain())
    }

    /// Test access to the raw tree (to prove tampering is detected); see
    /// [`crate::audit_key`].
    #[doc(hidden)]
    pub fn raw_tree_for_tests(&self) -> Result<sled::Tree, JournalError> {
        self.current().map(|s| s.raw_tree_for_tests())
    }
}

//! The journal itself: one sled tree with a key prefix per record kind, the checked writes,
//! and the opening rules. A write is a read-check-build under the journal's writer lock, applied
//! as one atomic sled batch (record + index + audit together), then made durable by the barrier
//! after the lock is released, so concurrent writers share flushes. sled holds an exclusive file
//! lock, so this process is the only writer; the mutex orders writers within it. Nothing outside
//! this crate names sled.
//! It must never acknowledge a write before it is durable.

use crate::audit::{AuditEntry, GENESIS};
use crate::barrier::{Barrier, Hooks, WriteToken};
use crate::error::JournalError;
use crate::lifecycle;
use crate::record::{
    Approval, Class, NewOp, OpId, OpRecord, OpState, ProvenanceFact, Signer, Transition, TxnId,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use steward_authz::{Consumed, Nonce};
use steward_model::{Action, Vmid};

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The one tree every record lives in.
const TREE: &str = "journal";
const META_SCHEMA: &[u8] = b"m/schema";
pub(crate) const META_AUDIT_HEAD: &[u8] = b"m/audit_head";
pub(crate) const META_LAST_PRUNE: &[u8] = b"m/last_prune";
/// The last audit entry pruned (its seq and hash): the chain is verified from here.
pub(crate) const META_AUDIT_ANCHOR: &[u8] = b"m/audit_anchor";
/// The most audit entries one prune removes (one sled batch); the next prune goes on.
pub(crate) const MAX_PRUNE_BATCH: usize = 20_000;
pub(crate) const OPS: &[u8] = b"o/";
const INFLIGHT: &[u8] = b"i/";
/// Ops in `pending_signature` (`h/<id>`): the engine asks for them every pass.
const HELD: &[u8] = b"h/";
/// Set once the held index covers every op (journals written before it existed are indexed
/// once, when first opened).
const META_HELD_INDEX: &[u8] = b"m/held_index";
pub(crate) const NONCES: &[u8] = b"n/";
const PROVENANCE: &[u8] = b"p/";
pub(crate) const AUDIT: &[u8] = b"a/";

/// Keeps op `id`'s entry in the held index in step with its new state `to`.
fn index_held(batch: &mut sled::Batch, id: OpId, to: &OpState) {
    let key = k(HELD, &id.0.to_be_bytes());
    if matches!(to, OpState::PendingSignature { .. }) {
        batch.insert(key, &[][..]);
    } else {
        batch.remove(key);
    }
}

/// The audit chain's head (`m/audit_head`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditHead {
    pub(crate) seq: u64,
    pub(crate) hash: String,
}

/// A consumed nonce (`n/<nonce>`): the op it authorized, if any, and until when it is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NonceRecord {
    pub(crate) op: Option<OpId>,
    pub(crate) keep_until: i64,
}

/// One open sled database holding the journal (the handle callers hold, [`crate::Journal`],
/// replaces it after a storage error).
#[derive(Debug)]
pub(crate) struct Store {
    db: sled::Db,
    pub(crate) tree: sled::Tree,
    /// The writer lock; it also caches the audit head, which only writers change.
    writer: Mutex<Option<AuditHead>>,
    barrier: Barrier,
}

/// How long to wait for sled's file lock: a journal just closed in this process is released by
/// sled's background threads a moment after the handle drops; a second agent keeps it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled, waiting up to [`LOCK_WAIT`] for its exclusive lock.
fn open_sled(path: &Path) -> Result<sled::Db, String> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled_config(path).open() {
            Ok(db) => return Ok(db),
            // sled reports lock contention as ErrorKind::Other with this message.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(format!(
                        "locked by another process (is another steward-agent running?): {e}"
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The most memory sled may use to cache pages. Its default (1 GiB) would let a long-running
/// agent's memory grow with its journal; the journal's working set (ops in flight, the newest
/// audit entries, nonces being checked, the held index) is small, and a cache miss costs a
/// read from the page cache, not a fsync. 4 MiB holds a 1,000-guest converge's working set
/// (`cargo xtask bench agent`; 16 MiB left its writes resident after the burst).
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// sled's settings, the same for create and open. (`snapshot_after_ops`, which would bound
/// recovery time, is a no-op in 0.34.7.)
fn sled_config(path: &Path) -> sled::Config {
    sled::Config::new().path(path).cache_capacity(CACHE_BYTES)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn k(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + rest.len());
    v.extend_from_slice(prefix);
    v.extend_from_slice(rest);
    v
}

fn op_key(id: OpId) -> Vec<u8> {
    k(OPS, &id.0.to_be_bytes())
}

/// The key of audit entry `seq` (for tests that tamper with the chain).
#[doc(hidden)]
pub fn audit_key(seq: u64) -> Vec<u8> {
    k(AUDIT, &seq.to_be_bytes())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(v).map_err(|e| JournalError::Corrupt(format!("encode: {e}")))
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    what: &str,
    bytes: &[u8],
) -> Result<T, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::Corrupt(format!("{what}: {e}")))
}

/// Decodes an op record, refusing one with no history (it would have no state).
pub(crate) fn decode_op(what: &str, bytes: &[u8]) -> Result<OpRecord, JournalError> {
    let rec: OpRecord = decode(what, bytes)?;
    if rec.history.is_empty() {
        return Err(JournalError::Corrupt(format!(
            "{what}: op record with no history"
        )));
    }
    Ok(rec)
}

fn transition_event(rec: &OpRecord, from: Option<&OpState>) -> serde_json::Value {
    serde_json::json!({
        "type": "transition",
        "op": rec.id,
        "guest": rec.guest,
        "action": rec.action.op_kind(),
        "class": rec.class,
        "from": from.map(OpState::name),
        "to": rec.state(),
        "nonce": rec.nonce,
        "signer": rec.signer,
    })
}

/// One write in preparation: reads see the tree, writes go to the batch.
pub(crate) struct Write<'a> {
    tree: &'a sled::Tree,
    pub(crate) batch: sled::Batch,
    token: WriteToken<'a>,
    head: Option<AuditHead>,
    lock: MutexGuard<'a, Option<AuditHead>>,
}

impl<'a> Write<'a> {
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, JournalError> {
        Ok(self.tree.get(key)?)
    }

    pub(crate) fn put<T: Serialize>(&mut self, key: Vec<u8>, v: &T) -> Result<(), JournalError> {
        self.batch.insert(key, encode(v)?);
        Ok(())
    }

    fn load(&self, id: OpId) -> Result<OpRecord, JournalError> {
        let bytes = self.get(&op_key(id))?.ok_or(JournalError::UnknownOp(id))?;
        decode_op(&format!("{id}"), &bytes)
    }

    /// Stages the consumption of `nonce` (for `op`, kept until `keep_until`); false if it was
    /// consumed already. Under the writer lock, so check and record are one step.
    fn claim_nonce(
        &mut self,
        nonce: &Nonce,
        op: Option<OpId>,
        keep_until: i64,
    ) -> Result<bool, JournalError> {
        let key = k(NONCES, nonce.as_str().as_bytes());
        if self.get(&key)?.is_some() {
            return Ok(false);
        }
        self.put(key, &NonceRecord { op, keep_until })?;
        Ok(true)
    }

    /// Appends one audit entry after the current head.
    pub(crate) fn audit(
        &mut self,
        at_ms: i64,
        event: serde_json::Value,
    ) -> Result<u64, JournalError> {
        let (seq, prev) = match &self.head {
            Some(h) => (h.seq + 1, h.hash.as_str()),
            None => (1, GENESIS),
        };
        let entry = AuditEntry::new(seq, at_ms, prev, event);
        self.put(audit_key(seq), &entry)?;
        let head = AuditHead {
            seq,
            hash: entry.hash,
        };
        self.put(META_AUDIT_HEAD.to_vec(), &head)?;
        self.head = Some(head);
        Ok(seq)
    }

    /// Applies the batch atomically (still under the writer lock), then publishes the new audit
    /// head; the token then waits for durability, after the lock is released.
    pub(crate) fn commit(mut self) -> Result<WriteToken<'a>, JournalError> {
        self.tree.apply_batch(self.batch)?;
        *self.lock = self.head;
        Ok(self.token)
    }
}

impl Store {
    /// Creates a new journal at `path`, which must not exist or be an empty directory.
    pub fn create(path: impl AsRef<Path>, hooks: Hooks) -> Result<Store, JournalError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |reason: String| JournalError::Open {
            path: path.clone(),
            reason,
        };
        if path.exists() {
            let mut entries = std::fs::read_dir(&path).map_err(|e| open_err(e.to_string()))?;
            if entries.next().is_some() {
                return Err(open_err(
                    "exists and is not empty; refusing to create over it".into(),
                ));
            }
        }
        std::fs::create_dir_all(&path).map_err(|e| open_err(e.to_string()))?;
        let db = open_sled(&path).map_err(open_err)?;
        db.open_tree(TREE)
            .and_then(|t| t.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()))
            .map_err(|e| open_err(e.to_string()))?;
        let j = Store::assemble(path.clone(), db, hooks)?;
        let token = j.barrier.begin();
        j.sync(token)?;
        // The new files must be reachable after a power loss too: sync their directory.
        std::fs::File::open(&path)
            .and_then(|d| d.sync_all())
            .map_err(|e| open_err(format!("fsync of the directory: {e}")))?;
        Ok(j)
    }

    /// Opens an existing journal. Never creates, resets or repairs one.
    pub fn open(path: impl AsRef<Path>, hooks: Hooks) -> Result<Store, JournalError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |reason: String| JournalError::Open {
            path: path.clone(),
            reason,
        };
        for f in ["conf", "db"] {
            if !path.join(f).is_file() {
                return Err(open_err(format!("not a journal: {f} is missing")));
            }
        }
        let db = open_sled(&path).map_err(open_err)?;
        let tree = db.open_tree(TREE).map_err(|e| open_err(e.to_string()))?;
        let schema = tree
            .get(META_SCHEMA)
            .map_err(|e| open_err(e.to_string()))?
            .ok_or_else(|| open_err("no schema version: not a Steward journal".into()))?;
        let found = <[u8; 4]>::try_from(schema.as_ref())
            .map(u32::from_be_bytes)
            .map_err(|_| open_err("unreadable schema version".into()))?;
        if found > SCHEMA_VERSION {
            return Err(JournalError::SchemaTooNew {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Store::assemble(path, db, hooks)
    }

    fn assemble(path: PathBuf, db: sled::Db, hooks: Hooks) -> Result<Store, JournalError> {
        let tree = db.open_tree(TREE).map_err(|e| JournalError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let barrier = Barrier::new(db.clone(), &path, hooks).map_err(|e| JournalError::Open {
            path: path.clone(),
            reason: format!("data file: {e}"),
        })?;
        let head = match tree.get(META_AUDIT_HEAD)? {
            Some(b) => Some(decode::<AuditHead>("audit head", &b)?),
            None => None,
        };
        if tree.get(META_HELD_INDEX)?.is_none() {
            // A journal from before the held index: one scan, in one batch with the marker.
            let mut batch = sled::Batch::default();
            for item in tree.scan_prefix(OPS) {
                let (key, v) = item?;
                let rec = decode_op(&format!("op key {key:?}"), &v)?;
                index_held(&mut batch, rec.id, rec.state());
            }
            batch.insert(META_HELD_INDEX, &[1u8][..]);
            tree.apply_batch(batch)?;
            db.flush()?;
        }
        Ok(Store {
            tree,
            writer: Mutex::new(head),
            db,
            barrier,
        })
    }

    pub(crate) fn write(&self) -> Result<Write<'_>, JournalError> {
        let token = self.barrier.begin();
        let lock = self
            .writer
            .lock()
            .map_err(|_| JournalError::Storage("journal writer lock poisoned".into()))?;
        Ok(Write {
            tree: &self.tree,
            batch: sled::Batch::default(),
            token,
            head: lock.clone(),
            lock,
        })
    }

    /// Reports every durability barrier (flush + fdatasync) to `hook`: its latency and
    /// whether it worked. The first hook set stays.
    pub fn observe_barriers(&self, hook: crate::barrier::BarrierHook) {
        self.barrier.set_hook(hook);
    }

    /// (durable writes, flushes) since open: how well concurrent writes share barriers.
    pub fn barrier_counts(&self) -> (u64, u64) {
        self.barrier.counts()
    }

    pub(crate) fn sync(&self, token: WriteToken<'_>) -> Result<(), JournalError> {
        self.barrier.sync(token).map_err(JournalError::Storage)
    }

    /// A new journaled transaction id.
    pub fn new_txn(&self) -> Result<TxnId, JournalError> {
        Ok(TxnId(self.db.generate_id()?))
    }

    /// Records a new op in `initial` state (planned, pending_signature or refused). Durable on
    /// return.
    pub fn record(&self, new: NewOp, initial: OpState) -> Result<OpRecord, JournalError> {
        let id = OpId(self.db.generate_id()?);
        if !lifecycle::initial(&initial) {
            return Err(JournalError::illegal(id, &OpState::Planned, &initial));
        }
        let rec = OpRecord {
            id,
            guest: new.action.vmid(),
            action: new.action,
            class: new.class,
            txn: new.txn,
            scratch: new.scratch,
            identity: new.identity,
            nonce: None,
            signer: None,
            approvals: Vec::new(),
            warnings: Vec::new(),
            history: vec![Transition {
                at_ms: now_ms(),
                state: initial,
            }],
        };
        let mut w = self.write()?;
        w.put(op_key(id), &rec)?;
        index_held(&mut w.batch, id, rec.state());
        // An op's first entry carries the whole action, so an auditor classifies what ran
        // for itself rather than trusting the `class` recorded beside it.
        let mut event = transition_event(&rec, None);
        if let (Some(obj), Ok(action)) = (event.as_object_mut(), serde_json::to_value(&rec.action))
        {
            obj.insert("action_spec".into(), action);
            obj.insert("txn".into(), serde_json::json!(rec.txn.map(|t| t.0)));
        }
        w.audit(rec.history[0].at_ms, event)?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(rec)
    }

    /// Moves op `id` to `to`, if the lifecycle allows it. A destructive op cannot reach
    /// `intent` here (see [`Store::consume_nonce_into_intent`]). Durable on return.
    pub fn transition(&self, id: OpId, to: OpState) -> Result<OpRecord, JournalError> {
        self.transition_noting(id, to, Vec::new())
    }

    /// [`Store::transition`], keeping `warnings` (a task's `WARN:` lines) with the op.
    pub fn transition_noting(
        &self,
        id: OpId,
        to: OpState,
        warnings: Vec<String>,
    ) -> Result<OpRecord, JournalError> {
        let at_ms = now_ms();
        let mut w = self.write()?;
        let mut rec = w.load(id)?;
        let from = rec.state().clone();
        if !lifecycle::allowed(&from, &to) {
            return Err(JournalError::illegal(id, &from, &to));
        }
        if to == OpState::Intent && rec.class == Class::Destructive {
            return Err(JournalError::NeedsNonce(id));
        }
        rec.history.push(Transition {
            at_ms,
            state: to.clone(),
        });
        rec.warnings.extend(warnings);
        w.put(op_key(id), &rec)?;
        if to.is_in_flight() {
            w.batch.insert(k(INFLIGHT, &id.0.to_be_bytes()), &[][..]);
        } else {
            w.batch.remove(k(INFLIGHT, &id.0.to_be_bytes()));
        }
        index_held(&mut w.batch, id, &to);
        if to == OpState::Succeeded {
            match rec.action {
                Action::Create { .. } => set_provenance(&mut w, &rec, at_ms)?,
                // The guest is gone: what the agent knew about it must not carry over to a
                // later guest that reuses the VMID.
                Action::Destroy { .. } => {
                    w.batch
                        .remove(k(PROVENANCE, &u64::from(rec.guest.get()).to_be_bytes()));
                }
                _ => {}
            }
        }
        w.audit(at_ms, transition_event(&rec, Some(&from)))?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(rec)
    }

    /// The signed path to `intent`: in one atomic step, consume `nonce` (kept until
    /// `keep_until`, Unix seconds), bind it and the signer to op `id`, and move the op to
    /// `intent`. Exactly one of concurrent presentations of one nonce gets `Fresh`. Durable
    /// before it returns.
    ///
    /// `approvals` are every approval that counted towards the op's threshold (empty under a
    /// threshold of one); they replace those collected while the op was held.
    pub fn consume_nonce_into_intent(
        &self,
        id: OpId,
        nonce: &Nonce,
        keep_until: i64,
        signer: Signer,
        approvals: Vec<Approval>,
        proof: Option<&steward_audit::Proof>,
    ) -> Result<Consumed, JournalError> {
        let at_ms = now_ms();
        let mut w = self.write()?;
        if !w.claim_nonce(nonce, Some(id), keep_until)? {
            return Ok(Consumed::AlreadyConsumed);
        }
        let mut rec = w.load(id)?;
        let from = rec.state().clone();
        if !lifecycle::allowed(&from, &OpState::Intent) {
            return Err(JournalError::illegal(id, &from, &OpState::Intent));
        }
        rec.nonce = Some(nonce.as_str().to_string());
        rec.signer = Some(signer);
        rec.approvals = approvals;
        rec.history.push(Transition {
            at_ms,
            state: OpState::Intent,
        });
        w.put(op_key(id), &rec)?;
        w.batch.insert(k(INFLIGHT, &id.0.to_be_bytes()), &[][..]);
        index_held(&mut w.batch, id, &OpState::Intent);
        let mut event = transition_event(&rec, Some(&from));
        if let (Some(p), Some(obj)) = (proof, event.as_object_mut()) {
            let p = serde_json::to_value(p)
                .map_err(|e| JournalError::Corrupt(format!("encode proof: {e}")))?;
            obj.insert("proof".into(), p);
        }
        w.audit(at_ms, event)?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(Consumed::Fresh)
    }

    /// Adds `new` approvals to held op `id` (m-of-n, threshold not yet met), durably. Only a
    /// `pending_signature` op collects approvals: once it left that state (it ran, was
    /// superseded or refused) nothing more can be added, and this is
    /// [`JournalError::NotHeld`]. Approvals of a key already recorded over the same bytes are not added twice.
    pub fn add_approvals(&self, id: OpId, new: Vec<Approval>) -> Result<OpRecord, JournalError> {
        let at_ms = now_ms();
        let mut w = self.write()?;
        let mut rec = w.load(id)?;
        if !matches!(rec.state(), OpState::PendingSignature { .. }) {
            return Err(JournalError::NotHeld(id, rec.state().name()));
        }
        let mut added = Vec::new();
        for a in new {
            let known = rec.approvals.iter().any(|b| {
                b.payload == a.payload && b.signer.key_fingerprint == a.signer.key_fingerprint
            });
            if !known {
                added.push(a.signer.clone());
                rec.approvals.push(a);
            }
        }
        if added.is_empty() {
            return Ok(rec);
        }
        w.put(op_key(id), &rec)?;
        w.audit(
            at_ms,
            serde_json::json!({
                "type": "approvals_added",
                "op": rec.id,
                "guest": rec.guest,
                "action": rec.action.op_kind(),
                "signers": added,
                "approvals": rec.approvals.len(),
            }),
        )?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(rec)
    }

    /// Records a nonce with no op (the plain `NonceStore::consume`).
    /// With `event`, that is the step's audit entry (the nonce added to it) instead of a plain
    /// `nonce_consumed`: what the nonce authorized is on the chain in the same durable step.
    pub(crate) fn consume_bare_nonce(
        &self,
        nonce: &Nonce,
        keep_until: i64,
        event: Option<serde_json::Value>,
    ) -> Result<Consumed, JournalError> {
        let at_ms = now_ms();
        let mut w = self.write()?;
        if !w.claim_nonce(nonce, None, keep_until)? {
            return Ok(Consumed::AlreadyConsumed);
        }
        let event = match event {
            Some(serde_json::Value::Object(mut m)) => {
                m.insert("nonce".into(), nonce.as_str().into());
                serde_json::Value::Object(m)
            }
            _ => serde_json::json!({"type": "nonce_consumed", "nonce": nonce.as_str()}),
        };
        w.audit(at_ms, event)?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(Consumed::Fresh)
    }

    /// Whether a nonce was consumed.
    pub fn nonce_consumed(&self, nonce: &Nonce) -> Result<bool, JournalError> {
        Ok(self
            .tree
            .contains_key(k(NONCES, nonce.as_str().as_bytes()))?)
    }

    /// Appends a free-standing audit event (a gate decision). Durable on return.
    pub fn audit(&self, event: serde_json::Value) -> Result<u64, JournalError> {
        let at_ms = now_ms();
        let mut w = self.write()?;
        let seq = w.audit(at_ms, event)?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(seq)
    }

    /// One op.
    pub fn get(&self, id: OpId) -> Result<Option<OpRecord>, JournalError> {
        match self.tree.get(op_key(id))? {
            Some(b) => Ok(Some(decode_op(&format!("{id}"), &b)?)),
            None => Ok(None),
        }
    }

    /// The op that consumed `nonce`, with its outcome: the idempotency lookup.
    pub fn by_nonce(&self, nonce: &Nonce) -> Result<Option<OpRecord>, JournalError> {
        let Some(b) = self.tree.get(k(NONCES, nonce.as_str().as_bytes()))? else {
            return Ok(None);
        };
        let n: NonceRecord = decode("nonce record", &b)?;
        match n.op {
            Some(id) => self.get(id),
            None => Ok(None),
        }
    }

    /// Every op in `intent` or `dispatched`, from the index (no scan of history).
    pub fn in_flight(&self) -> Result<Vec<OpRecord>, JournalError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(INFLIGHT) {
            let (key, _) = item?;
            let id = OpId(u64::from_be_bytes(
                <[u8; 8]>::try_from(&key[INFLIGHT.len()..])
                    .map_err(|_| JournalError::Corrupt("in-flight key".into()))?,
            ));
            let rec = self
                .get(id)?
                .ok_or_else(|| JournalError::Corrupt(format!("in-flight {id} has no record")))?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Every op held for a signature, from the index (no scan of history).
    pub fn held(&self) -> Result<Vec<OpRecord>, JournalError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(HELD) {
            let (key, _) = item?;
            let id = OpId(u64::from_be_bytes(
                <[u8; 8]>::try_from(&key[HELD.len()..])
                    .map_err(|_| JournalError::Corrupt("held key".into()))?,
            ));
            // An index entry left by a build that did not keep the index (a downgrade and back)
            // may name an op that is gone or no longer held: the op's own state decides.
            if let Some(rec) = self.get(id)? {
                if matches!(rec.state(), OpState::PendingSignature { .. }) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// Every op record (for recovery tools and tests: a full scan).
    pub fn all_ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        self.tree
            .scan_prefix(OPS)
            .map(|item| {
                let (key, v) = item?;
                decode_op(&format!("op key {key:?}"), &v)
            })
            .collect()
    }

    /// What the agent established about `vmid`.
    pub fn provenance(&self, vmid: Vmid) -> Result<Vec<ProvenanceFact>, JournalError> {
        match self
            .tree
            .get(k(PROVENANCE, &u64::from(vmid.get()).to_be_bytes()))?
        {
            Some(b) => decode("provenance", &b),
            None => Ok(Vec::new()),
        }
    }

    /// Forgets what the agent established about `vmid`: the engine saw the VMID absent from
    /// the node, so whatever holds it next is not the guest the agent created. Audited.
    pub fn forget_provenance(&self, vmid: Vmid) -> Result<bool, JournalError> {
        let key = k(PROVENANCE, &u64::from(vmid.get()).to_be_bytes());
        let mut w = self.write()?;
        if w.get(&key)?.is_none() {
            return Ok(false);
        }
        w.batch.remove(key);
        w.audit(
            now_ms(),
            serde_json::json!({"type": "provenance_forgotten", "guest": vmid, "why": "seen absent from the node"}),
        )?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(true)
    }

    /// Test access to the raw tree (to prove tampering is detected); see [`audit_key`].
    #[doc(hidden)]
    pub fn raw_tree_for_tests(&self) -> sled::Tree {
        self.tree.clone()
    }
}

/// Records the agent's creation of `rec.guest`, replacing any older fact: only the latest
/// create of a VMID describes the guest that has it now.
fn set_provenance(w: &mut Write<'_>, rec: &OpRecord, at_ms: i64) -> Result<(), JournalError> {
    let key = k(PROVENANCE, &u64::from(rec.guest.get()).to_be_bytes());
    let (kind, identity) = match &rec.action {
        Action::Create { kind, config, .. } => {
            (*kind, steward_model::guest_identity(*kind, config))
        }
        other => (other.kind(), None),
    };
    let facts = vec![ProvenanceFact {
        created_by: rec.id,
        kind,
        identity,
        txn: rec.txn,
        scratch: rec.scratch,
        at_ms,
    }];
    w.put(key, &facts)
}

//! What the journal may forget, and the check that what it kept was not rewritten: spent
//! nonces past their window (never with a clock behind the last prune), terminal ops past the
//! retention, the oldest audit entries (the chain re-anchored on the last one removed, the prune
//! itself audited), and the walk of the audit chain from its anchor to its head. The engine's
//! `retention` decides when. It must never remove an op that is not terminal, an audit entry
//! but from the start of the chain, or a nonce its op could still be admitted with.

use crate::audit::{AuditEntry, AuditReport, GENESIS};
use crate::error::JournalError;
use crate::journal::{
    decode, decode_op, now_ms, AuditHead, NonceRecord, Store, AUDIT, MAX_PRUNE_BATCH,
    META_AUDIT_ANCHOR, META_AUDIT_HEAD, META_LAST_PRUNE, NONCES, OPS,
};

impl Store {
    /// When nonces were last pruned (Unix seconds), if ever. A verifier whose clock reads
    /// earlier must not trust the nonce store: nonces that clock would still admit may be gone.
    pub fn last_prune(&self) -> Result<Option<i64>, JournalError> {
        match self.tree.get(META_LAST_PRUNE)? {
            Some(b) => decode("last prune", &b).map(Some),
            None => Ok(None),
        }
    }

    /// Forgets nonces whose `keep_until` (Unix seconds) is before `now_secs`; never earlier,
    /// and never with a clock earlier than the last prune's (`ClockBehind`, nothing pruned).
    pub fn prune_nonces(&self, now_secs: i64) -> Result<usize, JournalError> {
        let mut w = self.write()?;
        if let Some(b) = w.get(META_LAST_PRUNE)? {
            let last: i64 = decode("last prune", &b)?;
            if now_secs < last {
                return Err(JournalError::ClockBehind {
                    last,
                    now: now_secs,
                });
            }
        }
        w.put(META_LAST_PRUNE.to_vec(), &now_secs)?;
        let mut n = 0;
        for item in self.tree.scan_prefix(NONCES) {
            let (key, v) = item?;
            let rec: NonceRecord = decode("nonce record", &v)?;
            if rec.keep_until < now_secs {
                w.batch.remove(key);
                n += 1;
            }
        }
        let token = w.commit()?;
        self.sync(token)?;
        Ok(n)
    }

    /// Removes terminal ops whose last transition is older than `cutoff_ms` (their audit
    /// entries, nonces and provenance stay). Returns how many went.
    pub fn compact(&self, cutoff_ms: i64) -> Result<usize, JournalError> {
        let mut w = self.write()?;
        let mut n = 0;
        for item in self.tree.scan_prefix(OPS) {
            let (key, v) = item?;
            let rec = decode_op("op", &v)?;
            let last = rec.history.last().map_or(i64::MAX, |t| t.at_ms);
            if rec.state().is_terminal() && last < cutoff_ms {
                w.batch.remove(key);
                n += 1;
            }
        }
        let token = w.commit()?;
        self.sync(token)?;
        Ok(n)
    }

    /// Removes the oldest audit entries, those written before `before_ms` (at most 20 000 per
    /// call), and records the last one removed as the chain's anchor, so the rest still
    /// verifies; the prune itself is audited. Entries are only ever removed from the start:
    /// the chain stays contiguous. Returns how many went.
    pub fn prune_audit(&self, before_ms: i64) -> Result<usize, JournalError> {
        let mut w = self.write()?;
        let mut anchor: Option<AuditHead> = None;
        let mut n = 0;
        for item in self.tree.scan_prefix(AUDIT) {
            let (key, v) = item?;
            let entry: AuditEntry = decode("audit entry", &v)?;
            if entry.at_ms >= before_ms || n >= MAX_PRUNE_BATCH {
                break;
            }
            w.batch.remove(key);
            n += 1;
            anchor = Some(AuditHead {
                seq: entry.seq,
                hash: entry.hash,
            });
        }
        let Some(anchor) = anchor else {
            return Ok(0);
        };
        w.put(META_AUDIT_ANCHOR.to_vec(), &anchor)?;
        w.audit(
            now_ms(),
            serde_json::json!({"type": "audit_pruned", "through": anchor.seq, "entries": n}),
        )?;
        let token = w.commit()?;
        self.sync(token)?;
        Ok(n)
    }

    /// Walks the audit chain: sequence without gaps, each entry's hash, each link, and the head.
    /// After a prune it starts at the anchor (the last entry pruned): what is left must link to
    /// it.
    pub fn verify_audit_chain(&self) -> Result<AuditReport, JournalError> {
        let mut problems = Vec::new();
        let (mut prev, mut expected) = match self.tree.get(META_AUDIT_ANCHOR)? {
            Some(b) => {
                let a: AuditHead = decode("audit anchor", &b)?;
                (a.hash, a.seq + 1)
            }
            None => (GENESIS.to_string(), 1u64),
        };
        let first = expected;
        for item in self.tree.scan_prefix(AUDIT) {
            let (key, v) = item?;
            let entry: AuditEntry = match decode("audit entry", &v) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(e.to_string());
                    expected += 1;
                    continue;
                }
            };
            let k_seq = <[u8; 8]>::try_from(&key[AUDIT.len()..])
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if entry.seq != expected || k_seq != entry.seq {
                problems.push(format!(
                    "entry {} found where {expected} was expected",
                    entry.seq
                ));
            }
            if entry.prev != prev {
                problems.push(format!(
                    "entry {} does not link to its predecessor",
                    entry.seq
                ));
            }
            if !entry.hash_ok() {
                problems.push(format!("entry {} was altered (hash mismatch)", entry.seq));
            }
            prev = entry.hash.clone();
            expected = entry.seq + 1;
        }
        let last = expected - 1;
        let entries = expected - first;
        match self.tree.get(META_AUDIT_HEAD)? {
            Some(b) => {
                let head: AuditHead = decode("audit head", &b)?;
                if head.seq != last || head.hash != prev {
                    problems.push(format!(
                        "chain ends at entry {last}, but the head says {}: entries were removed from the end",
                        head.seq
                    ));
                }
            }
            None if entries > 0 => problems.push("entries but no head".into()),
            None => {}
        }
        Ok(AuditReport { entries, problems })
    }
}

//! Reading the audit chain out, for `steward-agent audit export` and for the head the agent
//! witnesses (status, hub report, log): entries from a sequence number on, in order, exactly as
//! stored, and the head. It must never write, and never hand out an entry it could not decode
//! as anything but an error.

use crate::audit::AuditEntry;
use crate::error::JournalError;
use crate::journal::{audit_key, decode, AuditHead, Store, AUDIT, META_AUDIT_HEAD};

impl Store {
    /// Up to `limit` audit entries with `seq >= since`, in order.
    pub fn audit_entries(&self, since: u64, limit: usize) -> Result<Vec<AuditEntry>, JournalError> {
        let mut out = Vec::new();
        for item in self.tree.range(audit_key(since)..) {
            let (key, v) = item?;
            if !key.starts_with(AUDIT) || out.len() >= limit {
                break;
            }
            out.push(decode("audit entry", &v)?);
        }
        Ok(out)
    }

    /// The chain's head: the last entry's sequence number and hash (None before the first).
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, JournalError> {
        match self.tree.get(META_AUDIT_HEAD)? {
            Some(b) => {
                let h: AuditHead = decode("audit head", &b)?;
                Ok(Some((h.seq, h.hash)))
            }
            None => Ok(None),
        }
    }
}

//! Journal retention: what the journal may forget, and when. Consumed nonces go once no
//! verifier could admit their op again (`keep_until`, exact); terminal ops and audit entries go
//! once they are older than the retention period (the audit chain keeps an anchor, so what is
//! left still verifies). It must never remove anything an in-flight or held op needs: held and
//! in-flight ops are never terminal, and nonces are pruned by their own window, never by age.

use crate::blocking;
use std::sync::Arc;
use std::time::Duration;
use steward_journal::{Journal, JournalError};
use time::OffsetDateTime;
use tokio::sync::watch;

/// The default retention of terminal ops and audit entries (30 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// What one round removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Consumed nonces past their window.
    pub nonces: usize,
    /// Terminal ops older than the retention.
    pub ops: usize,
    /// Audit entries older than the retention.
    pub audit: usize,
}

/// One round at `now`, keeping `keep` of history.
pub fn once(j: &Journal, keep: Duration, now: OffsetDateTime) -> Result<Pruned, JournalError> {
    let nonces = j.prune_nonces(now.unix_timestamp())?;
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
    let ops = j.compact(cutoff)?;
    let audit = j.prune_audit(cutoff)?;
    Ok(Pruned { nonces, ops, audit })
}

/// Prunes every `every` (the first round right away) until `shutdown` turns true. A failing
/// round is logged once per distinct error and retried next time; nothing else depends on it.
pub async fn run(
    journal: Arc<Journal>,
    keep: Duration,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
        match blocking::journal(&journal, move |j| once(j, keep, OffsetDateTime::now_utc())).await {
            Ok(p) => {
                last_error = None;
                if p != Pruned::default() {
                    tracing::info!(
                        nonces = p.nonces,
                        ops = p.ops,
                        audit = p.audit,
                        "journal pruned"
                    );
                }
            }
            Err(e) => {
                let e = e.to_string();
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "journal retention failed; retried later");
                    last_error = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_journal::{Class, NewOp, OpState};
    use steward_model::{Action, GuestKind, Vmid};

    fn op(vmid: u32) -> NewOp {
        NewOp {
            action: Action::Start {
                vmid: Vmid::new(u64::from(vmid)).unwrap_or_else(|_| unreachable!()),
                kind: GuestKind::Qemu,
            },
            class: Class::Benign,
            txn: None,
            scratch: false,
            identity: None,
        }
    }

    #[test]
    fn old_finished_ops_audit_and_spent_nonces_go_held_ops_stay() -> Result<(), JournalError> {
        let dir = tempfile::tempdir().map_err(JournalError::from)?;
        let j = Journal::create(dir.path().join("journal"))?;
        let done = j.record(op(101), OpState::Planned)?;
        j.transition(done.id, OpState::Intent)?;
        j.transition(done.id, OpState::Succeeded)?;
        let held = j.record(
            op(102),
            OpState::PendingSignature {
                template: serde_json::json!({}),
            },
        )?;
        let now = OffsetDateTime::now_utc();
        let nonce =
            steward_authz::Nonce::parse("AAAAAAAAAAAAAAAAAAAAAA").map_err(JournalError::Corrupt)?;
        steward_authz::NonceStore::consume(&j, &nonce, now.unix_timestamp() + 60)
            .map_err(|e| JournalError::Storage(e.to_string()))?;
        // Within the retention: nothing goes (the nonce is still in its window).
        let kept = once(&j, Duration::from_secs(3600), now)?;
        assert_eq!(kept, Pruned::default());
        // Two hours on, with an hour of history kept.
        let later = now + time::Duration::hours(2);
        let p = once(&j, Duration::from_secs(3600), later)?;
        assert_eq!((p.nonces, p.ops), (1, 1));
        assert!(p.audit >= 4, "{p:?}");
        assert!(j.get(done.id)?.is_none());
        assert!(j.get(held.id)?.is_some(), "a held op is never pruned");
        assert!(j.verify_audit_chain()?.intact());
        Ok(())
    }
}

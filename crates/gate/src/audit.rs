//! Decision audit: one structured `tracing` event (target `audit`) and one journal audit entry per
//! decision. Signal only: errors here are logged and swallowed, never turned into a different
//! decision. Must never include payload bytes or signatures beyond their digests.

use crate::decision::Decision;
use serde_json::json;
use steward_journal::Journal;

/// Records `decision` about `what` (an op kind and guest).
pub fn decision(journal: &Journal, what: &str, guest: Option<u32>, decision: &Decision) {
    let (op, detail) = match decision {
        Decision::Executed { op, outcome, .. } => (Some(*op), format!("{outcome:?}")),
        Decision::PendingSignature { op, .. } => (Some(*op), String::new()),
        Decision::PartlyApproved {
            op,
            needs,
            approvals,
        } => (
            Some(*op),
            format!(
                "{} of {needs}: {}",
                approvals.len(),
                crate::approval::names(approvals)
            ),
        ),
        Decision::Refused { op, detail, .. } => (*op, detail.clone()),
        Decision::Replay { first } => (first.as_ref().map(|f| f.id), String::new()),
        Decision::Rotated { entries } => (None, format!("{entries} entries")),
    };
    let label = decision.label();
    tracing::info!(target: "audit", decision = %label, what, guest, op = ?op, detail = %detail, "gate decision");
    let event = json!({"type": "gate_decision", "decision": label, "what": what, "guest": guest, "op": op, "detail": detail});
    if let Err(e) = journal.audit(event) {
        tracing::warn!(target: "audit", error = %e, "journal audit entry failed; decision stands");
    }
}

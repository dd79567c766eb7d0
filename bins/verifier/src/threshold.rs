//! m-of-n offline: each signature's verdict and the count of distinct approvers, by the agent's
//! rule (`steward_gate::approval`): a signature counts only if it verified; one approver is one
//! key (whatever certificate carries it) and one principal name
//! (`steward_authz::same_approver`, shared with the gate); only operational keys approve a
//! guest op, and for `keys.rotate` each role is counted apart against its own threshold (the
//! agent rotates when either role meets its own). It must never count one key or one name
//! twice.

use serde_json::json;
use steward_authz::{escape_controls, same_approver, Rejection, Role, VerifiedOp};

/// What one signature came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Mark {
    /// Verified, and its key counted.
    Counted,
    /// Verified, but its approver (key or name) was counted by an earlier signature (index,
    /// 0-based).
    SameKeyAs(usize),
    /// Verified, but its role may not approve this op.
    RoleDenied,
    /// Rejected by the pipeline.
    Rejected,
}

/// The count.
#[derive(Debug)]
pub struct Count {
    /// Per signature, in order.
    pub marks: Vec<Mark>,
    /// Distinct approving keys (of the role counted).
    pub keys: usize,
    /// The role whose keys were counted.
    pub role: Role,
    /// Needed.
    pub threshold: u8,
}

impl Count {
    /// Enough distinct keys approved.
    pub fn met(&self) -> bool {
        self.keys >= usize::from(self.threshold)
    }
}

/// Counts `verdicts` against `threshold` (operational keys) and, for `keys.rotate`,
/// `recovery_threshold` (recovery keys).
pub fn count(
    verdicts: &[Result<VerifiedOp, Rejection>],
    threshold: u8,
    recovery_threshold: u8,
) -> Count {
    let rotation = verdicts
        .iter()
        .flatten()
        .any(|v| v.payload.op == "keys.rotate");
    let roles: &[Role] = if rotation {
        &[Role::Operational, Role::Recovery]
    } else {
        &[Role::Operational]
    };
    let mut best: Option<Count> = None;
    for &role in roles {
        let mut marks = Vec::new();
        let mut seen: Vec<(&VerifiedOp, usize)> = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            marks.push(match v {
                Err(_) => Mark::Rejected,
                Ok(v) if v.role != role => Mark::RoleDenied,
                Ok(v) => match seen.iter().find(|(k, _)| {
                    same_approver(
                        &k.key_fingerprint,
                        &k.principal,
                        &v.key_fingerprint,
                        &v.principal,
                    )
                }) {
                    Some((_, first)) => Mark::SameKeyAs(*first),
                    None => {
                        seen.push((v, i));
                        Mark::Counted
                    }
                },
            });
        }
        let needs = if role == Role::Recovery {
            recovery_threshold
        } else {
            threshold
        };
        let c = Count {
            marks,
            keys: seen.len(),
            role,
            threshold: needs,
        };
        // The role that meets its threshold, else the one closest to it.
        let better = |c: &Count, b: &Count| {
            (c.met(), c.keys as i64 - i64::from(c.threshold))
                > (b.met(), b.keys as i64 - i64::from(b.threshold))
        };
        if best.as_ref().is_none_or(|b| better(&c, b)) {
            best = Some(c);
        }
    }
    best.unwrap_or(Count {
        marks: Vec::new(),
        keys: 0,
        role: Role::Operational,
        threshold,
    })
}

/// The text (first line: `approved: …` or `rejected: threshold_not_met: …`, then one line per
/// signature) or one JSON object.
pub fn render(
    verdicts: &[Result<VerifiedOp, Rejection>],
    files: &[String],
    count: &Count,
    json: bool,
) -> String {
    let head = if count.met() {
        format!(
            "approved: {} distinct {} key(s), threshold {}",
            count.keys, count.role, count.threshold
        )
    } else {
        format!(
            "rejected: threshold_not_met: {} distinct {} key(s), threshold {}",
            count.keys, count.role, count.threshold
        )
    };
    let mut lines = vec![head];
    let mut items = Vec::new();
    for (i, (v, mark)) in verdicts.iter().zip(&count.marks).enumerate() {
        let file = escape_controls(files.get(i).map_or("?", String::as_str));
        let (text, item) = match (v, mark) {
            (Err(r), _) => (
                format!("rejected: {}: {}", r.reason, r.detail),
                json!({"result": "rejected", "reason": r.reason.code(), "detail": r.detail}),
            ),
            (Ok(v), m) => {
                let verdict = match m {
                    Mark::Counted => "counted".to_string(),
                    Mark::SameKeyAs(j) => format!(
                        "same approver (key or name) as signature {}: not counted again",
                        j + 1
                    ),
                    Mark::RoleDenied => format!("a {} key does not count here", v.role),
                    Mark::Rejected => "rejected".to_string(),
                };
                (
                    format!(
                        "verified: principal={} role={} key={}: {verdict}",
                        escape_controls(&v.principal),
                        v.role,
                        v.key_fingerprint
                    ),
                    json!({
                        "result": "verified",
                        "principal": v.principal,
                        "role": v.role.as_str(),
                        "key_fingerprint": v.key_fingerprint,
                        "counted": *m == Mark::Counted,
                        "note": verdict,
                    }),
                )
            }
        };
        lines.push(format!("signature {} ({file}): {text}", i + 1));
        let mut item = item;
        item["file"] = json!(files.get(i));
        items.push(item);
    }
    lines.push("note: offline check; the nonce was not checked for replay".into());
    if json {
        json!({
            "result": if count.met() { "approved" } else { "rejected" },
            "reason": if count.met() { None } else { Some("threshold_not_met") },
            "threshold": count.threshold,
            "distinct_keys": count.keys,
            "role": count.role.as_str(),
            "signatures": items,
            "nonce_checked": false,
        })
        .to_string()
    } else {
        lines.join("\n")
    }
}

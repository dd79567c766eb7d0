//! m-of-n offline: each signature's verdict and the count of distinct approving keys, by the
//! agent's rule (`steward_gate::approval`): a signature counts only if it verified; a key
//! counts once, whatever certificate carries it; only operational keys approve a guest op, and
//! for `keys.rotate` each role is counted apart (the agent rotates when either role meets its
//! threshold; offline, one threshold is checked against the better of the two). It must never
//! count by principal: names are labels, keys are identities.

use serde_json::json;
use steward_authz::{escape_controls, Rejection, Role, VerifiedOp};

/// What one signature came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Mark {
    /// Verified, and its key counted.
    Counted,
    /// Verified, but its key was counted by an earlier signature (index, 0-based).
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

/// Counts `verdicts` against `threshold`.
pub fn count(verdicts: &[Result<VerifiedOp, Rejection>], threshold: u8) -> Count {
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
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            marks.push(match v {
                Err(_) => Mark::Rejected,
                Ok(v) if v.role != role => Mark::RoleDenied,
                Ok(v) => match seen.iter().find(|(k, _)| *k == v.key_fingerprint) {
                    Some((_, first)) => Mark::SameKeyAs(*first),
                    None => {
                        seen.push((v.key_fingerprint.as_str(), i));
                        Mark::Counted
                    }
                },
            });
        }
        let c = Count {
            marks,
            keys: seen.len(),
            role,
            threshold,
        };
        if best.as_ref().is_none_or(|b| c.keys > b.keys) {
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
                    Mark::SameKeyAs(j) => {
                        format!("same key as signature {}: not counted again", j + 1)
                    }
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

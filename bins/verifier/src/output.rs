//! How `steward-verify` prints a verdict: the first line is the contract
//! (`verified: …` / `rejected: REASON: detail`); `--json` prints the same facts as one object.
//! It must never print a verdict that differs from the exit code's.

use steward_authz::{escape_controls, fmt_time};
use steward_authz::{Rejection, VerifiedOp};

/// The text or JSON for a verdict.
pub fn render(verdict: &Result<VerifiedOp, Rejection>, json: bool) -> String {
    match (verdict, json) {
        (Ok(v), false) => format!(
            "verified: principal={} role={} op={} host={} guest={}\n\
             key={} trust-line={} nonce={} window={}..{}\n\
             note: offline check; the nonce was not checked for replay",
            // A certificate's principal is the certificate holder's text: escaped like any
            // detail, so it cannot draw on the terminal.
            escape_controls(&v.principal),
            v.role,
            v.payload.op,
            v.payload.host,
            v.payload.guest.map_or("-".to_string(), |g| g.to_string()),
            v.key_fingerprint,
            v.trust_line,
            v.payload.nonce,
            fmt_time(v.payload.not_before),
            fmt_time(v.payload.not_after),
        ),
        (Err(r), false) => format!("rejected: {}: {}", r.reason, r.detail),
        (Ok(v), true) => serde_json::json!({
            "result": "verified",
            "principal": v.principal,
            "role": v.role.as_str(),
            "op": v.payload.op,
            "host": v.payload.host,
            "guest": v.payload.guest,
            "params": v.payload.params,
            "nonce": v.payload.nonce.as_str(),
            "not_before": fmt_time(v.payload.not_before),
            "not_after": fmt_time(v.payload.not_after),
            "key_fingerprint": v.key_fingerprint,
            "trust_line": v.trust_line,
            "nonce_checked": false,
        })
        .to_string(),
        (Err(r), true) => serde_json::json!({
            "result": "rejected",
            "reason": r.reason.code(),
            "detail": r.detail,
        })
        .to_string(),
    }
}

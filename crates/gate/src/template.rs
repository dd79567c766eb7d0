//! The ready-to-sign payload for an action the gate holds: exactly the binding, this host, a
//! fresh 128-bit nonce from the OS, and a suggested window. An operator signs it as written.
//! It must never reuse a nonce or take one from the hub.

use crate::binding::binding_of;
use base64::Engine as _;
use serde_json::{json, Value};
use steward_model::Action;
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

/// The suggested validity window of a template.
pub const TEMPLATE_WINDOW: Duration = Duration::hours(1);

/// A payload template for `action` on the guest with `identity`, on `host`, valid from `now`
/// for [`TEMPLATE_WINDOW`].
pub fn pending_template(
    action: &Action,
    identity: Option<&str>,
    host: &str,
    now: OffsetDateTime,
) -> Result<Value, String> {
    let b = binding_of(action, identity);
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for a nonce: {e}"))?;
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).map_err(|e| e.to_string());
    Ok(json!({
        "v": 1,
        "op": b.op,
        "host": host,
        "guest": b.guest,
        "params": b.params,
        "nonce": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce),
        "not_before": fmt(now.replace_nanosecond(0).map_err(|e| e.to_string())?)?,
        "not_after": fmt((now + TEMPLATE_WINDOW).replace_nanosecond(0).map_err(|e| e.to_string())?)?,
    }))
}

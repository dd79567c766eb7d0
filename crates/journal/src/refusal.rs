//! Why the gate refused an op, as the journal keeps it: a closed set of stable codes (authz's
//! pipeline reasons, and the gate's own), stored as the code's text so a record reads the same
//! to any tool. It must never store a code outside the set: a journal naming an unknown code
//! is refused when read, never taken as some other reason.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use steward_authz::Reason;

/// Why the gate refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GateReason {
    /// The signed op failed a step of authz's pipeline.
    Authz(Reason),
    /// The signer's role may not authorize this op.
    RoleDenied,
    /// The signed op names another op kind, guest, host or params than the held action.
    BindingMismatch,
    /// A key rotation that would break the trust store's rules.
    RotationRefused,
    /// A journal write that must precede execution failed.
    Journal,
    /// Fewer distinct keys approved the op than its policy asks (m-of-n); nothing ran and, for
    /// a signed job, nothing was kept.
    Threshold,
    /// A held op's guest changed before it was signed (gone, another guest on the VMID, its
    /// config moved): it no longer means what it was held for, and its template's nonce is
    /// spent.
    Superseded,
    /// The node has no quorum, so every write would fail: nothing ran and nothing was spent
    /// (a held op stays held, a nonce stays unused); the same signature may be presented again
    /// once quorum is back, and a hub's job is, on its next poll.
    NoQuorum,
}

impl GateReason {
    /// The gate's own reasons (authz's are `Reason::ALL`).
    pub const OWN: [GateReason; 7] = [
        GateReason::RoleDenied,
        GateReason::BindingMismatch,
        GateReason::RotationRefused,
        GateReason::Journal,
        GateReason::Threshold,
        GateReason::Superseded,
        GateReason::NoQuorum,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            GateReason::Authz(r) => r.code(),
            GateReason::RoleDenied => "role_denied",
            GateReason::BindingMismatch => "binding_mismatch",
            GateReason::RotationRefused => "rotation_refused",
            GateReason::Journal => "journal",
            GateReason::Threshold => "threshold_not_met",
            GateReason::Superseded => "superseded",
            GateReason::NoQuorum => "no_quorum",
        }
    }

    /// The reason whose code is `code`, if any.
    pub fn from_code(code: &str) -> Option<GateReason> {
        Reason::from_code(code)
            .map(GateReason::Authz)
            .or_else(|| GateReason::OWN.into_iter().find(|r| r.code() == code))
    }
}

impl fmt::Display for GateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for GateReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for GateReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GateReason, D::Error> {
        let code = String::deserialize(d)?;
        GateReason::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown refusal code {code:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself_and_no_other_is_taken() {
        let all = Reason::ALL
            .into_iter()
            .map(GateReason::Authz)
            .chain(GateReason::OWN);
        let mut seen = std::collections::BTreeSet::new();
        for r in all {
            assert!(seen.insert(r.code()), "{} twice", r.code());
            let text = serde_json::to_string(&r).expect("serializes");
            assert_eq!(text, format!("\"{}\"", r.code()));
            assert_eq!(serde_json::from_str::<GateReason>(&text).ok(), Some(r));
        }
        assert!(serde_json::from_str::<GateReason>("\"made_up\"").is_err());
    }
}

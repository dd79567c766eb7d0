//! A gate decision as the local API (`POST /submit`) and the hub report show it. It must never
//! carry more than the decision says: no payload, no signature.

use serde::{Deserialize, Serialize};

/// A gate decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionView {
    /// `executed`, `pending_signature`, `partly_approved`, `refused:<code>`, `replay`,
    /// `rotated`.
    pub decision: String,
    /// The journal op, when there is one.
    pub op: Option<u64>,
    /// For `executed`: whether a signature authorized it.
    pub signed: Option<bool>,
    /// For `executed`: `succeeded`, or the failure.
    pub outcome: Option<String>,
    /// For refusals: why. For `partly_approved`: how many of how many, and who.
    pub detail: Option<String>,
    /// What became of each signature presented, in order (none for an unsigned decision).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureView>,
}

impl DecisionView {
    /// Whether the gate refused (the CLI's exit status 1).
    pub fn refused(&self) -> bool {
        self.decision.starts_with("refused")
    }
}

/// One presented signature's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignatureView {
    /// `counted`, `already_counted` (its key was counted already), or `refused:<code>`.
    pub verdict: String,
    /// The signer's principal, for a signature that passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The signing key's `SHA256:…` fingerprint, for a signature that passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

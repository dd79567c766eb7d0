//! `GET /pending` and the report's `held`: an op held for a signature, as an operator must see
//! it before signing. It must never show a summary the engine did not take from the node's
//! own config.

use serde::{Deserialize, Serialize};

/// A held op, ready to show and to sign.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeldOp {
    /// The journal op.
    pub op: u64,
    /// The guest.
    pub guest: u32,
    /// `guest.destroy`, …
    pub op_kind: String,
    /// The ready-to-sign payload (sign exactly these bytes: `serde_json` compact form, which
    /// `GET /pending/{op}/template` serves).
    pub template: serde_json::Value,
    /// What it destroys, for a human.
    pub summary: String,
    /// The volumes it removes: (volume id, size as Proxmox writes it, if known).
    pub volumes: Vec<(String, Option<String>)>,
    /// The template's `not_after`.
    pub expires: Option<String>,
    /// Distinct operational keys its policy asks for (m-of-n).
    pub needs: u8,
    /// Who approved it so far (principals, one per distinct key, approvals still in their
    /// window); it runs when there are `needs` of them.
    pub approved_by: Vec<String>,
}

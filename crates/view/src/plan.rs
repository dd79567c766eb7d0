//! What `steward-agent plan` prints with `--json`: per guest, each action the next pass would
//! take, whether it would wait for a signature and why, the fields it changes (observed and
//! desired) and the volumes it would remove, and what is left alone with the reason. It must
//! never carry a value the node or the document did not give.

use serde::{Deserialize, Serialize};

/// The whole dry run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// Every guest the document names that something would happen to, or that has notes.
    pub guests: Vec<GuestPlan>,
}

impl PlanView {
    /// Whether any action would run (or be held): `plan`'s exit status 2.
    pub fn changes(&self) -> bool {
        self.guests.iter().any(|g| !g.actions.is_empty())
    }
}

/// One guest's plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPlan {
    /// The guest.
    pub vmid: u32,
    /// `qemu` or `lxc`.
    pub kind: String,
    /// Its actions, in the order they would run.
    pub actions: Vec<ActionPlan>,
    /// What is left alone, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionPlan {
    /// The op kind (`guest.config`, `guest.resize`, `guest.destroy`, …).
    pub op: String,
    /// Whether it would wait for an operator's signature.
    pub destructive: bool,
    /// The classifier's reason.
    pub reason: String,
    /// The fields it changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// The volumes it would remove, each with its size where known (`local-lvm:vm-104-disk-1
    /// (32G)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<String>,
}

/// One field: what the node has, what the document asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The config key, or `status` for power.
    pub field: String,
    /// The node's value (None: absent).
    pub observed: Option<String>,
    /// The value written (None: deleted).
    pub desired: Option<String>,
}

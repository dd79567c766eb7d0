//! Roles and the namespaces that carry them. A key's role is the one Steward namespace its
//! trust-store line admits; nothing else (a comment, a principal name) can confer a role.
//! A role must never come from anything but that namespace.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The namespace of operational signatures.
pub const OP_NAMESPACE: &str = "op@steward";
/// The namespace of recovery signatures.
pub const RECOVERY_NAMESPACE: &str = "recovery@steward";

/// What a key may authorize. Role scoping itself is the gate's job; authz only reports it.
/// Serialized as its stable name (`operational`, `recovery`), as journal records store it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Admitted to `op@steward`: ordinary destructive actions and planned key rotation.
    Operational,
    /// Admitted to `recovery@steward`: key rotation only.
    Recovery,
}

impl Role {
    /// The role's namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            Role::Operational => OP_NAMESPACE,
            Role::Recovery => RECOVERY_NAMESPACE,
        }
    }

    /// The role a Steward namespace confers, if it is one.
    pub fn for_namespace(ns: &str) -> Option<Role> {
        match ns {
            OP_NAMESPACE => Some(Role::Operational),
            RECOVERY_NAMESPACE => Some(Role::Recovery),
            _ => None,
        }
    }

    /// Stable lower-case name (`operational`, `recovery`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operational => "operational",
            Role::Recovery => "recovery",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

//! What the chain keeps of a signature that authorized something: the exact payload bytes
//! signed (as text: a payload is JSON, so UTF-8), every armored signature that counted towards
//! the threshold, the SHA-256 of the trust store in force, and, for an op, the action that ran
//! and the guest identity its binding named. Keeping a spent signature is safe: its nonce is
//! consumed and its window short, so it authorizes nothing new. Must never hold anything but
//! what an operator published by signing (no token, no key material).

use serde::{Deserialize, Serialize};
use steward_model::Action;

/// The `type` of the audit event an agent writes when it starts with a trust store: its
/// `trust_store` digest, the file it came from and how many lines it admits.
pub const LOADED_EVENT: &str = "trust_store_loaded";

/// The `type` of the audit event a key rotation writes (its proof signed by the keys of the
/// trust store before it).
pub const ROTATION_EVENT: &str = "key_rotation";

/// The proof kept for one authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The exact signed bytes.
    pub payload: String,
    /// Every armored `ssh-keygen -Y sign` signature that counted, in the order counted.
    pub signatures: Vec<String>,
    /// Lower-case hex SHA-256 of the allowed_signers text in force when it was accepted.
    pub trust_store: String,
    /// The node name the signatures were checked for (the payload's `host`).
    pub host: String,
    /// The action that ran (none for a key rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The guest identity the binding named (`steward_model::guest_identity`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

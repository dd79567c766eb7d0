//! Managed config keys beyond a guest's fixed fields (NICs, cloud-init, CPU type, boot order, …):
//! what the document asks of each, already checked and in the planner's normal form. A key's
//! whole value, or only some options of a property string (the others stay as the guest has
//! them). It must never hold a value the document did not check, nor a secret: passwords do not
//! travel in desired state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the document asks of one managed config key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// The key's whole value, in normal form (`numa` → `"1"`, `boot` → `"order=scsi0;net0"`).
    Value(String),
    /// Some options of a property string, option → normal-form value (`bridge` → `"vmbr0"`,
    /// `firewall` → `"1"`). Options it does not name are not managed.
    Options(BTreeMap<String, String>),
}

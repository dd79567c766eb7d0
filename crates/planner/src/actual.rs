//! What the node has, as the Proxmox client read it: per guest, its kind, status, config (the
//! default `GET …/config` view, pending values applied), digest and the keys with pending
//! changes. Raw strings as Proxmox returns them; normalizing them is `normalize`'s job.
//! It must never be built from anything but the node's answers.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use steward_model::{GuestKind, Vmid};

/// One guest on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualGuest {
    /// Guest id.
    pub vmid: Vmid,
    /// QEMU or LXC.
    pub kind: GuestKind,
    /// `status` from the list (`running`, `stopped`, …), as Proxmox says it.
    pub status: String,
    /// Config keys and values (pending values applied), without `digest`.
    pub config: BTreeMap<String, String>,
    /// The config's `digest`.
    pub digest: String,
    /// Keys with a change waiting for a restart (from `GET …/pending`).
    pub pending: BTreeSet<String>,
}

impl ActualGuest {
    /// Whether the guest is a template (`template: 1`): templates never run.
    pub fn is_template(&self) -> bool {
        self.config.get("template").map(String::as_str) == Some("1")
    }
}

/// Every guest on the node, by VMID.
pub type ActualState = BTreeMap<Vmid, ActualGuest>;

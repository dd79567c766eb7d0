//! `steward-classifier`: is an action benign (runs unsigned) or destructive (needs an
//! operator's signature)? A pure function of the action and the provenance facts the agent's own
//! journal holds about the guest. Decided by whether customer data is at stake, never by the
//! verb alone, and never by anything a hub can say (a `scratch` tag is just a tag).
//!
//! Unknown is destructive: a config key not in the known-benign tables below, and any action
//! shape this crate has not been taught, need a signature until someone adds them here with a
//! reason. It must never do I/O and never consult hub-supplied labels.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binding;
mod keys;

pub use keys::{disk_write_benign, is_benign_key, is_data_bearing_key, is_new_volume, lxc_hwaddr};

use steward_model::{Action, ConfigChange, GuestKind};

/// What the agent itself established about a guest (from its journal, never from a hub).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The agent created the guest, in journaled transaction `txn` (if any).
    pub created_in_txn: Option<u64>,
    /// The agent created the guest as its own scratch space.
    pub scratch: bool,
}

/// The journaled transaction the action belongs to, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The current transaction.
    pub txn: Option<u64>,
}

/// Benign or destructive, with a reason a human can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Runs without a signature.
    Benign(String),
    /// Needs a verified signed op.
    Destructive(String),
}

impl Verdict {
    /// Whether it needs a signature.
    pub fn is_destructive(&self) -> bool {
        matches!(self, Verdict::Destructive(_))
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Benign(r) | Verdict::Destructive(r) => r,
        }
    }
}

/// Classifies `action`, given the agent's own provenance facts about its guest.
pub fn classify(action: &Action, provenance: &[Provenance], ctx: Context) -> Verdict {
    match action {
        Action::Create { kind, config, .. } => create(*kind, config),
        Action::Start { .. } | Action::Reboot { .. } => {
            Verdict::Benign("power: no data at stake".into())
        }
        Action::Stop { .. } | Action::Shutdown { .. } => {
            Verdict::Benign("power off: disks are kept".into())
        }
        Action::SetConfig { kind, change, .. } => config(*kind, change),
        Action::ResizeDisk { .. } => Verdict::Benign(
            "growing a disk destroys nothing (Proxmox refuses to shrink one)".into(),
        ),
        Action::MoveDisk {
            disk,
            volume,
            delete: true,
            ..
        } => Verdict::Destructive(format!(
            "moving {disk} deletes its source volume {volume} after the copy"
        )),
        Action::MoveDisk { .. } => Verdict::Benign(
            "a copy on another storage; the source stays as an unused volume".into(),
        ),
        Action::Destroy {
            destroy_unreferenced_disks,
            ..
        } => destroy(*destroy_unreferenced_disks, provenance, ctx),
        Action::SnapshotRollback { .. } => {
            Verdict::Destructive("snapshot rollback discards everything written since".into())
        }
        Action::RestoreOver { .. } => {
            Verdict::Destructive("restoring over an existing guest overwrites its disks".into())
        }
    }
}

/// A create is benign only if it allocates new, empty volumes and sets known-benign keys: a
/// create can also restore a backup over an existing guest (`archive` + `force`, LXC `restore`),
/// import or attach existing volumes, or pass host devices through.
fn create(kind: GuestKind, config: &std::collections::BTreeMap<String, String>) -> Verdict {
    for (key, value) in config {
        if [
            "archive",
            "force",
            "restore",
            "unique",
            "import-from",
            "live-restore",
        ]
        .contains(&key.as_str())
            || value.contains("import-from")
        {
            return Verdict::Destructive(format!(
                "create with {key} restores or imports existing data"
            ));
        }
        // An unprivileged container (the usual create) confines more; a privileged one is the
        // operator's call.
        if kind == GuestKind::Lxc && key == "unprivileged" && value == "1" {
            continue;
        }
        if kind == GuestKind::Lxc && key == "ostemplate" {
            if value.contains(":vztmpl/") {
                continue;
            }
            return Verdict::Destructive(
                "an LXC ostemplate that is not a vztmpl template can be a backup".into(),
            );
        }
        if is_data_bearing_key(kind, key) {
            if keys::is_new_volume(kind, key, value) || keys::is_iso_cdrom(kind, key, value) {
                continue;
            }
            return Verdict::Destructive(format!(
                "create with {key}={value} attaches an existing volume (only STORAGE:SIZE allocates a new one)"
            ));
        }
        if !is_benign_key(kind, key) && !keys::is_benign_create_key(kind, key) {
            return Verdict::Destructive(format!(
                "create with {key}: not a known-benign {kind} key (unknown is destructive)"
            ));
        }
    }
    Verdict::Benign("creating a guest with new, empty volumes destroys nothing".into())
}

/// Provenance covers only what the agent made: a destroy that also removes volumes no config
/// references (`destroy-unreferenced-disks`) can take data the agent never created, so it is
/// destructive whatever the provenance.
fn destroy(unreferenced: bool, provenance: &[Provenance], ctx: Context) -> Verdict {
    if unreferenced {
        return Verdict::Destructive(
            "destroy-unreferenced-disks removes volumes no config references, which the agent did not create".into(),
        );
    }
    if let Some(txn) = ctx.txn {
        if provenance.iter().any(|p| p.created_in_txn == Some(txn)) {
            return Verdict::Benign(format!(
                "compensating rollback: the agent created this guest in transaction {txn}"
            ));
        }
    }
    if provenance.iter().any(|p| p.scratch) {
        return Verdict::Benign("the agent created this guest as its own scratch space".into());
    }
    Verdict::Destructive("destroying a guest destroys its disks".into())
}

fn config(kind: GuestKind, change: &ConfigChange) -> Verdict {
    // The executor removes the volumes `removes` names: only a signature may ask for that.
    if !change.removes.is_empty() {
        return Verdict::Destructive("the change removes volumes".into());
    }
    for (key, value) in &change.set {
        // An LXC's network MACs are its identity (`steward_model::guest_identity`): a NIC
        // written with another MAC, or rewritten without one (Proxmox makes up a new one),
        // would let the guest pass for another. Benign only with the MAC it keeps, or as a new
        // NIC in an empty slot (claims the executor checks at the digest).
        if kind == GuestKind::Lxc && steward_model::is_net_key(key) {
            if keys::lxc_nic_write_benign(key, value, change) {
                continue;
            }
            return Verdict::Destructive(format!(
                "{key} carries the container's identity (its MAC)"
            ));
        }
        if key == "protection" {
            if value == "1" {
                continue; // setting protection only guards more
            }
            return Verdict::Destructive(
                "clearing protection is what lets Proxmox remove the guest and its disks".into(),
            );
        }
        if is_data_bearing_key(kind, key) {
            // A new volume, an ISO, or options on the volume the slot keeps: benign on the
            // claims the executor checks at the digest before it writes.
            if keys::disk_write_benign(kind, key, value, change).is_some() {
                continue;
            }
            return Verdict::Destructive(format!("writing {key} can replace or detach a disk"));
        }
        if !is_benign_key(kind, key) {
            return Verdict::Destructive(format!(
                "{key} is not a known-benign {kind} key (unknown is destructive)"
            ));
        }
    }
    for key in &change.delete {
        if kind == GuestKind::Lxc && steward_model::is_net_key(key) {
            return Verdict::Destructive(format!(
                "deleting {key} removes the container's identity (its MAC)"
            ));
        }
        if key == "protection" {
            return Verdict::Destructive("deleting protection clears it".into());
        }
        if is_data_bearing_key(kind, key) {
            return Verdict::Destructive(format!("deleting {key} detaches or destroys a disk"));
        }
        if !is_benign_key(kind, key) {
            return Verdict::Destructive(format!(
                "deleting {key}: not a known-benign {kind} key (unknown is destructive)"
            ));
        }
    }
    Verdict::Benign("config change touching only non-data keys".into())
}

#[cfg(test)]
mod tests;

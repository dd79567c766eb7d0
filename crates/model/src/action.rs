//! The closed set of things the engine can do to a guest. Every mutation Steward makes is one of
//! these, so the classifier and the gate can reason about all of them; adding a variant is a
//! security decision (the classifier treats anything it does not know as destructive). Actions
//! carry no judgement of danger.
//! It must never carry a judgement of danger or anything to send but the action itself.

use crate::{GuestKind, Vmid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A config write: the exact keys set and deleted, and the digest it was planned against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Keys to set, with their Proxmox property-string values.
    pub set: BTreeMap<String, String>,
    /// Keys to delete.
    pub delete: BTreeSet<String>,
    /// The config `digest` read when planning; Proxmox refuses the write if it moved.
    pub digest: Option<String>,
    /// For each data-bearing key this change deletes or replaces, the volume it holds now (read
    /// from the config the change was planned against): what a signature over the change
    /// names, so that it names the data and not a slot such as `unused0`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removes: BTreeMap<String, String>,
    /// For each data-bearing key this change rewrites while keeping its volume (a disk's
    /// options), the slot's whole value now: the change claims the slot holds exactly that and
    /// writes back the same volume, and the executor checks the claim against the config at
    /// the digest (the classifier judges only the options that differ from it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keeps: BTreeMap<String, String>,
}

/// Whether `key` can be a config key in a change Steward sends: lower-case letters, digits, `_`
/// and `-`, starting with a letter, and none of the config call's own parameters (`delete`,
/// `digest`, `revert`, `skiplock`, …). Anything else would change what the call does (Proxmox
/// splits `delete` on `,`, `;` and spaces) rather than set or delete one key.
pub fn is_config_key(key: &str) -> bool {
    const CALL_PARAMS: &[&str] = &[
        "delete",
        "digest",
        "revert",
        "skiplock",
        "force",
        "vmid",
        "node",
        "background_delay",
        "skip_cloud_init",
        "lock",
    ];
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !CALL_PARAMS.contains(&key)
}

/// One thing the engine can do to one guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the guest with this config (disks included).
    Create {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// Every key of the create call but `vmid`.
        config: BTreeMap<String, String>,
    },
    /// Start it.
    Start {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
    },
    /// Stop it hard.
    Stop {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
    },
    /// Shut it down cleanly, stopping it hard after `timeout_secs` if `force_stop`.
    Shutdown {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// Seconds to wait.
        timeout_secs: u32,
        /// Stop hard when the timeout passes.
        force_stop: bool,
    },
    /// Reboot it.
    Reboot {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
    },
    /// Change its config.
    SetConfig {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// What changes.
        change: ConfigChange,
    },
    /// Grow one disk to `size` (absolute, as Proxmox writes sizes: `40G`, `40960M`), so that
    /// sending it twice grows it once.
    ResizeDisk {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// The disk's config key (`scsi1`, `rootfs`, `mp0`).
        disk: String,
        /// The new size.
        size: String,
    },
    /// Move one disk to another storage (`move_disk` for QEMU, `move_volume` for LXC): a new
    /// volume on `storage` gets a copy of `volume`, and the slot names the copy. With `delete`
    /// the source volume is freed after the copy; without, Proxmox keeps it as `unusedN`.
    MoveDisk {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// The disk's config key (`scsi1`, `rootfs`, `mp0`).
        disk: String,
        /// The volume the slot holds (read from the config at `digest`): the one copied, and
        /// with `delete` the one freed.
        volume: String,
        /// The target storage.
        storage: String,
        /// Free the source volume after the copy.
        delete: bool,
        /// The config digest the move was planned against; Proxmox refuses it if it moved.
        digest: Option<String>,
    },
    /// Destroy it and its disks.
    Destroy {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// Also remove it from backup jobs, HA and replication.
        purge: bool,
        /// Also destroy disks not referenced by the config.
        destroy_unreferenced_disks: bool,
    },
    /// Roll it back to a snapshot (discards everything since).
    SnapshotRollback {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// Snapshot name.
        snapshot: String,
    },
    /// Restore a backup over the existing guest (overwrites its disks).
    RestoreOver {
        /// Guest id.
        vmid: Vmid,
        /// Kind.
        kind: GuestKind,
        /// Backup volume id.
        archive: String,
    },
}

impl Action {
    /// The guest it acts on.
    pub fn vmid(&self) -> Vmid {
        match self {
            Action::Create { vmid, .. }
            | Action::Start { vmid, .. }
            | Action::Stop { vmid, .. }
            | Action::Shutdown { vmid, .. }
            | Action::Reboot { vmid, .. }
            | Action::SetConfig { vmid, .. }
            | Action::ResizeDisk { vmid, .. }
            | Action::MoveDisk { vmid, .. }
            | Action::Destroy { vmid, .. }
            | Action::SnapshotRollback { vmid, .. }
            | Action::RestoreOver { vmid, .. } => *vmid,
        }
    }

    /// The guest's kind.
    pub fn kind(&self) -> GuestKind {
        match self {
            Action::Create { kind, .. }
            | Action::Start { kind, .. }
            | Action::Stop { kind, .. }
            | Action::Shutdown { kind, .. }
            | Action::Reboot { kind, .. }
            | Action::SetConfig { kind, .. }
            | Action::ResizeDisk { kind, .. }
            | Action::MoveDisk { kind, .. }
            | Action::Destroy { kind, .. }
            | Action::SnapshotRollback { kind, .. }
            | Action::RestoreOver { kind, .. } => *kind,
        }
    }

    /// The op kind an operator signs for this action (`guest.destroy`, …).
    pub fn op_kind(&self) -> &'static str {
        match self {
            Action::Create { .. } => "guest.create",
            Action::Start { .. } => "guest.start",
            Action::Stop { .. } => "guest.stop",
            Action::Shutdown { .. } => "guest.shutdown",
            Action::Reboot { .. } => "guest.reboot",
            Action::SetConfig { .. } => "guest.config",
            Action::ResizeDisk { .. } => "guest.resize",
            Action::MoveDisk { .. } => "guest.move",
            Action::Destroy { .. } => "guest.destroy",
            Action::SnapshotRollback { .. } => "guest.rollback",
            Action::RestoreOver { .. } => "guest.restore",
        }
    }

    /// The config digest the action was planned against, when it carries one: a held op with
    /// one means nothing once the guest's config moved past it.
    pub fn digest(&self) -> Option<&str> {
        match self {
            Action::SetConfig { change, .. } => change.digest.as_deref(),
            Action::MoveDisk { digest, .. } => digest.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialize_with_a_tag_and_round_trip() {
        let a = Action::SetConfig {
            vmid: Vmid::new(104).unwrap(),
            kind: GuestKind::Qemu,
            change: ConfigChange {
                set: [("memory".to_string(), "4096".to_string())].into(),
                delete: ["tags".to_string()].into(),
                digest: Some("abc".into()),
                removes: Default::default(),
                keeps: Default::default(),
            },
        };
        let j = serde_json::to_string(&a).unwrap();
        assert!(
            j.starts_with(r#"{"action":"set_config","vmid":104,"kind":"qemu""#),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<Action>(&j).unwrap(), a);
        assert_eq!(a.op_kind(), "guest.config");
        assert_eq!(a.vmid().get(), 104);
    }
}

//! What the document asks of one disk slot (QEMU `scsiN`, `virtioN`, `sataN`, `ideN`,
//! `efidisk0`, `tpmstate0`; LXC `rootfs`, `mpN`): a disk on a storage with a size and the
//! options it manages, or a CD-ROM drive with an ISO or none. Values are checked and in normal
//! form. It must never name an existing volume: a document asks for a storage and a size, and
//! only Proxmox allocates (attaching a volume that exists is an operator's signed job).

use crate::MiB;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One managed disk slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "media", rename_all = "snake_case")]
pub enum DiskSpec {
    /// A disk: where a new volume goes, how large it is, and the options managed.
    Disk {
        /// The storage (`local-lvm`); needed to add the disk, compared with the volume's.
        storage: Option<String>,
        /// The size; a larger one grows the disk, a smaller one is refused.
        size: Option<MiB>,
        /// Managed options, in normal form (`discard` → `on`, `ssd` → `1`, `mp` → `/data`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        options: BTreeMap<String, String>,
    },
    /// A CD-ROM drive with `iso` (`local:iso/debian.iso`) or `none` in it.
    Cdrom {
        /// The ISO volume, or `none`.
        iso: String,
    },
}

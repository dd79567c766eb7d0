//! What a guest should be: its kind, power state, and the managed settings. A field left `None`
//! is not managed: the planner never touches it. Values here are already normalized (sizes in
//! MiB, tags sorted); parsing and validating documents is the planner's job, not this module's.

use crate::{DiskSpec, MiB, Setting, Vmid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// QEMU virtual machine or LXC container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// A QEMU/KVM virtual machine (`/nodes/{node}/qemu`).
    Qemu,
    /// An LXC container (`/nodes/{node}/lxc`).
    Lxc,
}

impl GuestKind {
    /// The API path segment and document spelling (`qemu`, `lxc`).
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }

    /// The config key that holds the guest's name (`name` for QEMU, `hostname` for LXC).
    pub fn name_key(self) -> &'static str {
        match self {
            GuestKind::Qemu => "name",
            GuestKind::Lxc => "hostname",
        }
    }
}

impl fmt::Display for GuestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
}

/// What the desired state asks for a guest's existence and power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestState {
    /// Exists and runs.
    Running,
    /// Exists, stopped.
    Stopped,
    /// Must not exist: asks for destruction explicitly (a destructive action).
    Absent,
}

/// Proxmox `startup`: boot order and delays (`order=N,up=S,down=S`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Startup {
    /// Start order (lower first).
    pub order: Option<u32>,
    /// Seconds to wait after starting before the next guest.
    pub up: Option<u32>,
    /// Seconds to wait for shutdown before the next guest.
    pub down: Option<u32>,
}

impl Startup {
    /// The canonical property string, keys in Proxmox's documented order.
    pub fn to_property_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(o) = self.order {
            parts.push(format!("order={o}"));
        }
        if let Some(u) = self.up {
            parts.push(format!("up={u}"));
        }
        if let Some(d) = self.down {
            parts.push(format!("down={d}"));
        }
        parts.join(",")
    }
}

/// One managed guest, normalized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestSpec {
    /// The guest's id.
    pub vmid: Vmid,
    /// QEMU or LXC.
    pub kind: GuestKind,
    /// Running, stopped, or absent.
    pub state: GuestState,
    /// `name` (QEMU) / `hostname` (LXC).
    pub name: Option<String>,
    /// Memory in MiB.
    pub memory: Option<MiB>,
    /// CPU cores (per socket, for QEMU).
    pub cores: Option<u32>,
    /// CPU sockets (QEMU only).
    pub sockets: Option<u32>,
    /// Swap in MiB (LXC only).
    pub swap: Option<MiB>,
    /// Tags, sorted and without duplicates.
    pub tags: Option<Vec<String>>,
    /// Description, with `\n` line ends and no trailing newline.
    pub description: Option<String>,
    /// Start at node boot.
    pub onboot: Option<bool>,
    /// Boot order and delays.
    pub startup: Option<Startup>,
    /// CPU limit in thousandths of a CPU (`cpulimit`, 0 = unlimited).
    pub cpulimit_milli: Option<u32>,
    /// CPU weight (`cpuunits`).
    pub cpuunits: Option<u32>,
    /// Further managed config keys (NICs, cloud-init, CPU type, boot order, …), by Proxmox key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, Setting>,
    /// Managed disk slots, by config key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub disks: BTreeMap<String, DiskSpec>,
    /// `disks = "exact"`: a disk the guest has and the document omits is detached and its
    /// volume removed (held for a signature). Otherwise such disks are left alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exact_disks: bool,
    /// Keys written only when the guest is created (disks, rootfs, template, network), as raw
    /// Proxmox property strings. Ignored for a guest that exists.
    pub create: BTreeMap<String, String>,
    /// The node the guest is placed on, in a document for several nodes: only that node's
    /// agent manages it (None: the agent that reads the document does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl GuestSpec {
    /// A spec that manages nothing but existence and power.
    pub fn new(vmid: Vmid, kind: GuestKind, state: GuestState) -> GuestSpec {
        GuestSpec {
            vmid,
            kind,
            state,
            name: None,
            memory: None,
            cores: None,
            sockets: None,
            swap: None,
            tags: None,
            description: None,
            onboot: None,
            startup: None,
            cpulimit_milli: None,
            cpuunits: None,
            settings: BTreeMap::new(),
            disks: BTreeMap::new(),
            exact_disks: false,
            create: BTreeMap::new(),
            node: None,
        }
    }
}

/// The whole desired state of one node: every managed guest, by VMID. Guests not named are
/// unmanaged and left alone. The default is empty: nothing is managed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Document schema version (1).
    pub version: u32,
    /// Monotonic generation number set by the hub.
    pub generation: u64,
    /// The managed guests, sorted by VMID, no duplicates.
    pub guests: Vec<GuestSpec>,
}

impl DesiredState {
    /// The part of the document that `node` manages: every guest placed on it, and every guest
    /// placed nowhere. A guest placed on another node is that node's agent's business: this one
    /// neither creates it, nor changes it, nor destroys it.
    pub fn for_node(&self, node: &str) -> DesiredState {
        DesiredState {
            version: self.version,
            generation: self.generation,
            guests: self
                .guests
                .iter()
                .filter(|g| g.node.as_deref().is_none_or(|n| n == node))
                .cloned()
                .collect(),
        }
    }
}

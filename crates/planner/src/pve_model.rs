//! A reference model of how Proxmox VE stores what a client writes, for the convergence tests:
//! tags de-duplicated (case-insensitively, pve-guest-common `get_unique_tags`) and re-joined with
//! `;`, lower-cased and sorted as the datacenter's `tag-style` says; descriptions read back as
//! written by QEMU and with a `\n` after each line by LXC; memory kept as the property string
//! written; digests that move on every write and refuse a stale one with each kind's text; a
//! running QEMU guest's memory/cores/sockets changes held as pending until it restarts (LXC
//! applies them at once). Written from qemu-server and pve-container (see
//! `docs/reference/pve-api.md`), not from the simulator. It must never be used to talk to a
//! real node.

use crate::actual::{ActualGuest, ActualState};
use crate::normalize::split_tags;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use steward_model::{Action, GuestKind};

/// Datacenter settings that change how tags are stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct TagStyle {
    /// Lower-case tags on write.
    pub lowercase: bool,
    /// Store tags sorted instead of in the order written.
    pub sorted: bool,
}

/// Keys whose change on a running QEMU guest waits for a restart (no hotplug in this model).
const COLD_KEYS: &[&str] = &["memory", "cores", "sockets"];

/// A node as Proxmox would hold it.
#[derive(Clone, Debug, Default)]
pub struct PveModel {
    /// The guests, in the same shape the client reads.
    pub guests: ActualState,
    /// Tag storage style.
    pub tags: TagStyle,
}

/// How Proxmox would store `value` under `key` of a `kind` guest, as `GET …/config` reads it
/// back.
pub fn stored_form(kind: GuestKind, key: &str, value: &str, tags: TagStyle) -> String {
    match key {
        "tags" => {
            let mut t: Vec<String> = Vec::new();
            for x in split_tags(value) {
                let x = if tags.lowercase {
                    x.to_ascii_lowercase()
                } else {
                    x
                };
                if !t.iter().any(|have| have.eq_ignore_ascii_case(&x)) {
                    t.push(x);
                }
            }
            if tags.sorted {
                t.sort();
            }
            t.join(";")
        }
        // Stored as `#` comment lines; QEMU reads them back as written, LXC ends each line
        // with `\n`.
        "description" => match kind {
            GuestKind::Qemu => value.trim_end_matches('\n').to_string(),
            GuestKind::Lxc => value.lines().map(|l| format!("{l}\n")).collect(),
        },
        // Proxmox makes a MAC for a NIC written without one: `virtio` becomes
        // `virtio=BC:24:11:…`, an LXC NIC gains `hwaddr=`.
        k if steward_model::is_net_key(k) => match kind {
            GuestKind::Qemu => {
                let (first, rest) = value.split_once(',').unwrap_or((value, ""));
                if first.contains('=') {
                    value.to_string()
                } else {
                    let sep = if rest.is_empty() { "" } else { "," };
                    format!("{first}=BC:24:11:00:00:01{sep}{rest}")
                }
            }
            GuestKind::Lxc if value.contains("hwaddr=") => value.to_string(),
            GuestKind::Lxc => format!("{value},hwaddr=BC:24:11:00:00:02"),
        },
        _ => value.to_string(),
    }
}

/// A digest of a config (the real one is SHA-1 of the file; any change moves it here too).
pub fn digest(config: &BTreeMap<String, String>) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    config.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl PveModel {
    /// Applies one action as Proxmox would, or says how Proxmox would refuse it.
    pub fn apply(&mut self, a: &Action) -> Result<(), String> {
        let vmid = a.vmid();
        let style = self.tags;
        match a {
            Action::Create { kind, config, .. } => {
                if self.guests.contains_key(&vmid) {
                    return Err(format!("VM {vmid} already exists"));
                }
                let mut stored = BTreeMap::new();
                for (k, v) in config.iter().filter(|(k, _)| !is_create_only(*kind, k)) {
                    let v = allocated(*kind, vmid, &stored, k, v);
                    stored.insert(k.clone(), stored_form(*kind, k, &v, style));
                }
                let config = stored;
                let digest = digest(&config);
                self.guests.insert(
                    vmid,
                    ActualGuest {
                        vmid,
                        kind: *kind,
                        status: "stopped".into(),
                        config,
                        digest,
                        pending: BTreeSet::new(),
                    },
                );
                Ok(())
            }
            Action::SetConfig { change, .. } => {
                let g = self.guest(vmid)?;
                if change.digest.as_deref().is_some_and(|d| d != g.digest) {
                    return Err(match g.kind {
                        GuestKind::Qemu => "checksum mismatch (file change by other user?)",
                        GuestKind::Lxc => {
                            "detected modified configuration - file changed by other user? Try again."
                        }
                    }
                    .into());
                }
                let running = g.status == "running";
                let kind = g.kind;
                for (k, v) in &change.set {
                    let v = allocated(kind, vmid, &g.config, k, v);
                    g.config.insert(k.clone(), stored_form(kind, k, &v, style));
                    if running && g.kind == GuestKind::Qemu && COLD_KEYS.contains(&k.as_str()) {
                        g.pending.insert(k.clone());
                    }
                }
                for k in &change.delete {
                    g.config.remove(k);
                }
                g.digest = digest(&g.config);
                Ok(())
            }
            Action::Start { .. } => {
                let g = self.guest(vmid)?;
                if g.status == "running" {
                    return Err(format!("VM {vmid} already running"));
                }
                g.status = "running".into();
                g.pending.clear();
                Ok(())
            }
            Action::Stop { .. } | Action::Shutdown { .. } => {
                let g = self.guest(vmid)?;
                g.status = "stopped".into();
                Ok(())
            }
            Action::Reboot { .. } => {
                self.guest(vmid)?.pending.clear();
                Ok(())
            }
            Action::MoveDisk {
                disk,
                volume,
                storage,
                delete,
                digest: planned,
                ..
            } => {
                let g = self.guest(vmid)?;
                if planned.as_deref().is_some_and(|d| d != g.digest) {
                    return Err(
                        "detected modified configuration - file changed by other user? Try again."
                            .into(),
                    );
                }
                let value = g
                    .config
                    .get(disk)
                    .cloned()
                    .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
                if volume.split_once(':').map(|(s, _)| s) == Some(storage.as_str()) {
                    return Err("you can't move to the same storage with same format".into());
                }
                let copy = format!("{storage}:vm-{vmid}-disk-{}", g.config.len());
                let rest: Vec<&str> = value
                    .split(',')
                    .filter(|p| {
                        p.contains('=') && !p.starts_with("file=") && !p.starts_with("volume=")
                    })
                    .collect();
                let prefix = if g.kind == GuestKind::Lxc && value.contains("volume=") {
                    "volume="
                } else {
                    ""
                };
                let moved = std::iter::once(format!("{prefix}{copy}"))
                    .chain(rest.iter().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(",");
                g.config.insert(disk.clone(), moved);
                if !delete {
                    let slot = (0..)
                        .map(|i| format!("unused{i}"))
                        .find(|k| !g.config.contains_key(k))
                        .unwrap_or_default();
                    g.config.insert(slot, volume.clone());
                }
                g.digest = digest(&g.config);
                Ok(())
            }
            Action::ResizeDisk { disk, size, .. } => {
                let g = self.guest(vmid)?;
                let value = g
                    .config
                    .get(disk)
                    .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
                let mut parts: Vec<String> = value
                    .split(',')
                    .filter(|p| !p.starts_with("size="))
                    .map(str::to_string)
                    .collect();
                parts.push(format!("size={size}"));
                g.config.insert(disk.clone(), parts.join(","));
                g.digest = digest(&g.config);
                Ok(())
            }
            Action::Destroy { .. } => self
                .guests
                .remove(&vmid)
                .map(|_| ())
                .ok_or_else(|| format!("VM {vmid} does not exist")),
            Action::SnapshotRollback { .. } | Action::RestoreOver { .. } => {
                self.guest(vmid).map(|_| ())
            }
        }
    }

    fn guest(&mut self, vmid: steward_model::Vmid) -> Result<&mut ActualGuest, String> {
        self.guests.get_mut(&vmid).ok_or_else(|| {
            format!("Configuration file 'nodes/pve/qemu-server/{vmid}.conf' does not exist")
        })
    }
}

/// What Proxmox stores for a disk value that allocates (`local-lvm:4,ssd=1`): the new volume
/// (`local-lvm:vm-<vmid>-disk-<n>`), then the options and its `size`, sorted.
fn allocated(
    kind: GuestKind,
    vmid: steward_model::Vmid,
    config: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> String {
    if !crate::keys::is_disk_slot(key) {
        return value.to_string();
    }
    let Ok(Some(volume)) = steward_model::volume_of(kind, key, value) else {
        return value.to_string();
    };
    let Some((storage, gib)) = volume.split_once(':') else {
        return value.to_string();
    };
    let Ok(gib) = gib.parse::<f64>() else {
        return value.to_string(); // a volume id: stored as written
    };
    let n = config.len();
    let mut opts: Vec<String> = value
        .split(',')
        .filter(|p| p.contains('=') && !p.starts_with("file=") && !p.starts_with("volume="))
        .map(str::to_string)
        .collect();
    let mib = (gib * 1024.0).round() as u64;
    opts.push(format!(
        "size={}",
        crate::plan::size_text(steward_model::MiB(mib))
    ));
    opts.sort();
    format!("{storage}:vm-{vmid}-disk-{n},{}", opts.join(","))
}

/// Create-call keys that are not stored verbatim (LXC `ostemplate` is consumed by the create).
fn is_create_only(kind: GuestKind, key: &str) -> bool {
    kind == GuestKind::Lxc && key == "ostemplate"
}

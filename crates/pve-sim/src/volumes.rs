//! Storages and the volumes on them: what `…/storage` and `…/storage/{storage}/content` list,
//! what a create allocates (`local-lvm:4` becomes `local-lvm:vm-<vmid>-disk-<n>,size=4G`),
//! what destroy, unlink, `delete=unusedN` and resize change, and the backups a restore reads.
//! Sizes are bytes inside, `…G`/`…M` in config values, as Proxmox writes them. It must never
//! lose track of a volume: every volume is either referenced, `unusedN`, or listed as orphaned
//! content with its owner VMID, exactly as on a node.

use crate::forms::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A storage: name, type, content types.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Storage {
    /// `local`, `local-lvm`.
    pub name: String,
    /// `dir`, `lvmthin`.
    pub kind: String,
    /// Content types it holds.
    pub content: Vec<String>,
    /// Capacity, bytes.
    pub total: u64,
}

/// One volume.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    /// Size, bytes.
    pub size: u64,
    /// Owner.
    pub vmid: Option<u32>,
    /// `images`, `rootdir`, `backup`, `vztmpl`, `iso`.
    pub content: String,
    /// `raw`, `vma.zst`, `tar.zst`, …
    pub format: String,
    /// Creation time, Unix seconds.
    pub ctime: u64,
    /// For a backup: the guest's kind and config at backup time.
    pub backup_of: Option<(Kind, BTreeMap<String, String>)>,
}

/// The node's storages and volumes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volumes {
    /// Storages.
    pub storages: Vec<Storage>,
    /// By volume id (`local-lvm:vm-100-disk-0`).
    pub volumes: BTreeMap<String, Volume>,
}

const GIB: u64 = 1024 * 1024 * 1024;

/// Whether a disk value asks for a new allocation: `STORAGE:SIZE` with SIZE `\d+(\.\d+)?` GiB.
pub fn new_allocation(value: &str) -> Option<(&str, f64)> {
    let first = value.split(',').next()?;
    let (storage, size) = first.split_once(':')?;
    let mut parts = size.splitn(2, '.');
    let int_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let frac_ok = parts
        .next()
        .is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (int_ok && frac_ok).then(|| size.parse().ok().map(|s| (storage, s)))?
}

/// The volume id a disk value refers to (`local-lvm:vm-100-disk-0`), if any.
pub fn volid(value: &str) -> Option<&str> {
    let first = value.split(',').next()?;
    (first.contains(':')
        && new_allocation(value).is_none()
        && first != "none"
        && !first.ends_with(":cloudinit"))
    .then_some(first)
}

/// `32G`, `512M`, `1536K` or bytes, as Proxmox prints sizes in config values.
pub fn format_size(bytes: u64) -> String {
    if bytes.is_multiple_of(GIB) {
        format!("{}G", bytes / GIB)
    } else if bytes.is_multiple_of(1024 * 1024) {
        format!("{}M", bytes / (1024 * 1024))
    } else if bytes.is_multiple_of(1024) {
        format!("{}K", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// Parses `20G`, `512M`, `100K`, `1T` or bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024),
        'M' => (&s[..s.len() - 1], 1024 * 1024),
        'G' => (&s[..s.len() - 1], GIB),
        'T' => (&s[..s.len() - 1], GIB * 1024),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}

/// Whether a config key holds a disk (or mount point).
pub fn is_disk_key(kind: Kind, key: &str) -> bool {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    match kind {
        Kind::Qemu => {
            matches!(base, "scsi" | "virtio" | "sata" | "ide" | "unused") && base.len() < key.len()
                || matches!(key, "efidisk0" | "tpmstate0")
        }
        Kind::Lxc => key == "rootfs" || (matches!(base, "mp" | "unused") && base.len() < key.len()),
    }
}

impl Volumes {
    /// `local` (directory: ISOs, templates, backups), `local-lvm` (thin pool: disks) and
    /// `local-zfs` (a second disk storage, where disks move to), with one container template.
    pub fn new(now: u64) -> Volumes {
        let mut v = Volumes {
            storages: vec![
                Storage {
                    name: "local".into(),
                    kind: "dir".into(),
                    content: vec!["iso".into(), "vztmpl".into(), "backup".into()],
                    total: 100 * GIB,
                },
                Storage {
                    name: "local-lvm".into(),
                    kind: "lvmthin".into(),
                    content: vec!["images".into(), "rootdir".into()],
                    total: 2000 * GIB,
                },
                Storage {
                    name: "local-zfs".into(),
                    kind: "zfspool".into(),
                    content: vec!["images".into(), "rootdir".into()],
                    total: 1000 * GIB,
                },
            ],
            volumes: BTreeMap::new(),
        };
        v.volumes.insert(
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
            Volume {
                size: 126 * 1024 * 1024,
                vmid: None,
                content: "vztmpl".into(),
                format: "tzst".into(),
                ctime: now,
                backup_of: None,
            },
        );
        v
    }

    /// Allocates a disk for `vmid` on `storage`: the next free `vm-<vmid>-disk-<n>`.
    pub fn allocate(
        &mut self,
        storage: &str,
        vmid: u32,
        bytes: u64,
        kind: Kind,
        now: u64,
    ) -> Result<String, String> {
        let s = self
            .storages
            .iter()
            .find(|s| s.name == storage)
            .ok_or_else(|| format!("storage '{storage}' does not exist"))?;
        let content = if kind == Kind::Qemu {
            "images"
        } else {
            "rootdir"
        };
        if !s.content.iter().any(|c| c == content) {
            return Err(format!(
                "storage '{storage}' does not support content-type '{content}'"
            ));
        }
        let mut n = 0;
        let volid = loop {
            let id = format!("{storage}:vm-{vmid}-disk-{n}");
            if !self.volumes.contains_key(&id) {
                break id;
            }
            n += 1;
        };
        self.volumes.insert(
            volid.clone(),
            Volume {
                size: bytes,
                vmid: Some(vmid),
                content: content.into(),
                format: "raw".into(),
                ctime: now,
                backup_of: None,
            },
        );
        Ok(volid)
    }

    /// Frees a volume (gone from storage).
    pub fn free(&mut self, volid: &str) {
        self.volumes.remove(volid);
    }

    /// Volumes of `vmid` on image storages.
    pub fn owned_by(&self, vmid: u32) -> Vec<String> {
        self.volumes
            .iter()
            .filter(|(_, v)| v.vmid == Some(vmid) && v.content != "backup")
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Records a backup of a guest on `local`.
    pub fn add_backup(
        &mut self,
        vmid: u32,
        kind: Kind,
        config: BTreeMap<String, String>,
        now: u64,
    ) -> String {
        let (ty, ext) = match kind {
            Kind::Qemu => ("qemu", "vma.zst"),
            Kind::Lxc => ("lxc", "tar.zst"),
        };
        let volid = format!("local:backup/vzdump-{ty}-{vmid}-{now}.{ext}");
        self.volumes.insert(
            volid.clone(),
            Volume {
                size: 2 * GIB,
                vmid: Some(vmid),
                content: "backup".into(),
                format: ext.into(),
                ctime: now,
                backup_of: Some((kind, config)),
            },
        );
        volid
    }

    /// `GET /nodes/{node}/storage` entries.
    pub fn storage_list(&self) -> Vec<(String, Value)> {
        self.storages
            .iter()
            .map(|s| {
                let used: u64 = self
                    .volumes
                    .iter()
                    .filter(|(k, _)| k.split(':').next() == Some(s.name.as_str()))
                    .map(|(_, v)| v.size)
                    .sum();
                let mut e = json!({
                    "storage": s.name, "type": s.kind, "content": s.content.join(","),
                    "active": 1, "enabled": 1, "shared": 0, "total": s.total, "used": used,
                    "avail": s.total.saturating_sub(used),
                });
                // pve-storage's `Status.pm` computes it only for a storage with a total.
                if s.total > 0 {
                    e["used_fraction"] = json!(used as f64 / s.total as f64);
                }
                (s.name.clone(), e)
            })
            .collect()
    }

    /// `GET …/storage/{storage}/content` (filters `content`, `vmid`).
    pub fn content(
        &self,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Option<Value> {
        self.storages.iter().find(|s| s.name == storage)?;
        Some(Value::Array(
            self.volumes
                .iter()
                .filter(|(k, _)| k.split(':').next() == Some(storage))
                .filter(|(_, v)| content.is_none_or(|c| v.content == c))
                .filter(|(_, v)| vmid.is_none_or(|id| v.vmid == Some(id)))
                .map(|(k, v)| {
                    let mut e = json!({
                        "volid": k, "size": v.size, "format": v.format, "ctime": v.ctime,
                        "content": v.content,
                    });
                    if let Some(id) = v.vmid {
                        e["vmid"] = json!(id);
                    }
                    e
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_follows_proxmox_syntax_and_naming() {
        assert_eq!(new_allocation("local-lvm:32"), Some(("local-lvm", 32.0)));
        assert_eq!(
            new_allocation("local-lvm:0.5,ssd=1"),
            Some(("local-lvm", 0.5))
        );
        assert_eq!(new_allocation("local-lvm:vm-1-disk-0"), None);
        assert_eq!(new_allocation("local-lvm:1."), None);
        assert_eq!(new_allocation("local-lvm:.5"), None);
        assert_eq!(
            volid("local-lvm:vm-100-disk-0,size=32G"),
            Some("local-lvm:vm-100-disk-0")
        );
        assert_eq!(format_size(32 * GIB), "32G");
        assert_eq!(parse_size("512M"), Some(512 * 1024 * 1024));
        let mut v = Volumes::new(0);
        let a = v.allocate("local-lvm", 100, GIB, Kind::Qemu, 0).unwrap();
        let b = v.allocate("local-lvm", 100, GIB, Kind::Qemu, 0).unwrap();
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("local-lvm:vm-100-disk-0", "local-lvm:vm-100-disk-1")
        );
        assert!(v.allocate("local", 100, GIB, Kind::Qemu, 0).is_err());
        assert!(
            is_disk_key(Kind::Qemu, "scsi3")
                && is_disk_key(Kind::Lxc, "mp0")
                && !is_disk_key(Kind::Qemu, "scsihw")
        );
    }
}

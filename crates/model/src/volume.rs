//! Which volume a data-bearing config value names, read the way Proxmox reads it: a property
//! string whose default key (`file` for QEMU drives and `unusedN`, `volume` for LXC `rootfs`,
//! `mpN` and `unusedN`, `path` for LXC `devN`, `dirid` for `virtiofsN`) may be written bare or
//! as `key=`. Every reader of a disk value (the classifier's new-volume rule, the gate's check
//! that a signature names what a slot holds, the executor, held-op summaries) uses this one
//! function, so none of them can read a different volume than Proxmox acts on. It must never
//! guess: a value that names its volume twice (`local-lvm:4,file=local-lvm:vm-101-disk-7`) or
//! not at all is ambiguous, and callers treat ambiguous as destructive or as a mismatch.

use crate::GuestKind;
use std::fmt;

/// A disk value whose volume cannot be told for sure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmbiguousVolume {
    /// Why, for a human.
    pub why: String,
}

impl fmt::Display for AmbiguousVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for AmbiguousVolume {}

/// The property-string key that holds the volume of `key`'s value, or None when the whole value
/// is the volume (`vmstate`).
fn default_key(kind: GuestKind, key: &str) -> Option<&'static str> {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    match (kind, base) {
        (GuestKind::Qemu, "vmstate") => None,
        (GuestKind::Qemu, "virtiofs") => Some("dirid"),
        (GuestKind::Qemu, _) => Some("file"),
        (GuestKind::Lxc, "dev") => Some("path"),
        (GuestKind::Lxc, _) => Some("volume"),
    }
}

/// The volume (or host path) that config key `key` of a `kind` guest names with `value`:
/// `Ok(None)` for an empty drive (`none`, as a CD-ROM slot without media is written), `Err`
/// when the value names it twice or not at all.
pub fn volume_of<'a>(
    kind: GuestKind,
    key: &str,
    value: &'a str,
) -> Result<Option<&'a str>, AmbiguousVolume> {
    let Some(default) = default_key(kind, key) else {
        let v = value.trim();
        return if v.is_empty() || v.contains(',') {
            Err(AmbiguousVolume {
                why: format!("{key}={value:?} is not one volume id"),
            })
        } else {
            Ok(Some(v))
        };
    };
    let mut found: Option<&str> = None;
    // A QEMU drive's `file` has an alias, `volume`: older pve-common resolved the alias after
    // its duplicate check, so `file` and `volume` in one value named two volumes and the last
    // won. Either spelling names the volume here, and both at once is ambiguous.
    let alias = (kind == GuestKind::Qemu && default == "file").then_some("volume");
    // pve-common's parse_property_string: empty parts are skipped, a part without `=` is the
    // default key's value, and a key given twice is an error. A part with space around it is
    // not read at all: which key it is would be a guess.
    for part in value.split(',').filter(|p| !p.trim().is_empty()) {
        if part.trim() != part {
            return Err(AmbiguousVolume {
                why: format!("{key}: {part:?} has space around it"),
            });
        }
        let v = match part.split_once('=') {
            Some((k, v)) if k == default || Some(k) == alias => v,
            Some(_) => continue,
            None => part,
        };
        if let Some(first) = found {
            return Err(AmbiguousVolume {
                why: format!("{key} names two volumes ({first} and {v})"),
            });
        }
        found = Some(v);
    }
    match found {
        Some("none") if kind == GuestKind::Qemu => Ok(None),
        Some(v) if !v.is_empty() => Ok(Some(v)),
        _ => Err(AmbiguousVolume {
            why: format!("{key}={value:?} names no volume"),
        }),
    }
}

/// The `size=` option of a disk value, as Proxmox writes it (`32G`), if present.
pub fn volume_size(value: &str) -> Option<&str> {
    value.split(',').find_map(|p| p.strip_prefix("size="))
}

/// Whether `s` is a storage id as Proxmox allows one (`local-lvm`, `ceph_ssd`): a letter, then
/// letters, digits, `-`, `_` and `.`; at most 64.
pub fn is_storage_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_is_the_default_key_bare_or_named_and_only_once() {
        let q = GuestKind::Qemu;
        let l = GuestKind::Lxc;
        assert_eq!(
            volume_of(q, "scsi0", "local-lvm:vm-101-disk-0,size=32G"),
            Ok(Some("local-lvm:vm-101-disk-0"))
        );
        assert_eq!(
            volume_of(q, "scsi0", "cache=none,file=local-lvm:vm-101-disk-0"),
            Ok(Some("local-lvm:vm-101-disk-0"))
        );
        assert_eq!(volume_of(q, "ide2", "none,media=cdrom"), Ok(None));
        assert_eq!(
            volume_of(q, "unused0", "local-lvm:vm-101-disk-7"),
            Ok(Some("local-lvm:vm-101-disk-7"))
        );
        assert_eq!(
            volume_of(l, "mp0", "local-lvm:vm-102-disk-1,mp=/data"),
            Ok(Some("local-lvm:vm-102-disk-1"))
        );
        assert_eq!(
            volume_of(l, "rootfs", "volume=local-lvm:8,size=8G"),
            Ok(Some("local-lvm:8"))
        );
        assert_eq!(
            volume_of(q, "vmstate", "local-lvm:vm-101-state-pre"),
            Ok(Some("local-lvm:vm-101-state-pre"))
        );
        for ambiguous in [
            "local-lvm:4,file=local-lvm:vm-101-disk-7",
            "file=local-lvm:4,file=local-lvm:vm-101-disk-7",
            "local-lvm:4,local-lvm:vm-101-disk-7",
            "size=4G",
            "",
        ] {
            assert!(volume_of(q, "scsi1", ambiguous).is_err(), "{ambiguous}");
        }
        assert!(volume_of(l, "mp0", "local-lvm:4,volume=local-lvm:vm-1-disk-0").is_err());
        // QEMU's `volume=` is an alias of `file=`: a second volume either way.
        assert!(volume_of(q, "scsi1", "local-lvm:4,volume=local-lvm:vm-200-disk-0").is_err());
        assert!(volume_of(
            q,
            "scsi0",
            "file=local-lvm:vm-100-disk-0,volume=local-lvm:vm-200-disk-0"
        )
        .is_err());
        assert_eq!(
            volume_of(q, "scsi1", "volume=local-lvm:vm-101-disk-1,size=4G"),
            Ok(Some("local-lvm:vm-101-disk-1"))
        );
        // Space around a part: not read as any key.
        assert!(volume_of(q, "scsi1", "local-lvm:4, file=local-lvm:vm-200-disk-0").is_err());
        // `none` is an empty QEMU drive only; an LXC volume has no such spelling.
        assert!(volume_of(l, "mp0", "none").is_ok_and(|v| v == Some("none")));
        assert_eq!(volume_size("local-lvm:vm-1-disk-0,size=32G"), Some("32G"));
    }
}

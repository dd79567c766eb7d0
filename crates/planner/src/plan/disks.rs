//! One guest's disk slots against the document: a disk the guest lacks is added as a new volume
//! (`STORAGE:GiB` and its options); a larger size grows it (`ResizeDisk`, absolute); a smaller
//! one is refused with the disk named; changed options rewrite the slot keeping its volume
//! (`keeps`: the slot's value now, checked by the executor at the digest); a CD-ROM drive gets
//! its ISO (held for a signature on an existing guest; ejecting is benign); with
//! `disks = "exact"`, a disk the document omits is detached and its volume removed (`removes`:
//! the exact volume, at the digest), which the classifier holds for a signature; a disk on
//! another storage than the document's is moved there, its source deleted after the copy (a
//! `MoveDisk` naming the source volume at the digest: held too). It must never plan a write
//! that names a volume the guest does not hold in that slot.

use crate::actual::ActualGuest;
use crate::keys;
use crate::normalize::setting::{options_equal, options_value};
use std::collections::BTreeMap;
use steward_model::{volume_of, volume_size, DiskSpec, GuestKind, GuestSpec, MiB};

/// What the disk slots ask for.
#[derive(Debug, Default)]
pub(super) struct DiskPlan {
    /// Slots to write (adds, CD-ROM media, options).
    pub set: BTreeMap<String, String>,
    /// Of those, the slots that keep their volume, and the volume.
    pub keeps: BTreeMap<String, String>,
    /// Disks to grow, and to what.
    pub resizes: Vec<(String, String)>,
    /// Slots to detach (`disks = "exact"`), and the volume each holds.
    pub detach: BTreeMap<String, String>,
    /// Disks to move: slot → (the volume it holds, the storage the document says).
    pub moves: BTreeMap<String, (String, String)>,
    /// What is left alone, and why.
    pub notes: Vec<String>,
}

/// Whether a drive value is a CD-ROM drive.
pub(crate) fn is_cdrom(value: &str) -> bool {
    value.split(',').any(|p| p.trim() == "media=cdrom")
}

/// A stored size (`32G`, `512M`, `1T`, `4096K`, bytes) in MiB, rounded up.
pub(crate) fn size_mib(stored: &str) -> Option<MiB> {
    let s = stored.trim();
    let (num, scale) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let bytes = (n * scale as f64).ceil() as u64;
    Some(steward_model::ByteSize(bytes).to_mib_ceil())
}

/// A size as Proxmox writes one (`40G`, `1536M`).
pub(crate) fn size_text(m: MiB) -> String {
    if m.0.is_multiple_of(1024) {
        format!("{}G", m.0 / 1024)
    } else {
        format!("{}M", m.0)
    }
}

/// The allocation syntax for a new volume: `STORAGE:GiB` (a decimal where needed).
fn allocation(storage: &str, size: Option<MiB>) -> String {
    let gib = match size {
        None => "1".to_string(), // Proxmox sizes efidisk0/tpmstate0 itself.
        Some(m) if m.0.is_multiple_of(1024) => (m.0 / 1024).to_string(),
        Some(m) => {
            let g = format!("{:.10}", m.0 as f64 / 1024.0);
            g.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    format!("{storage}:{gib}")
}

/// The value that adds disk `want` to an empty slot, or None when the document does not say
/// enough to add it.
fn new_value(slot: &keys::DiskSlot, want: &DiskSpec) -> Option<String> {
    match want {
        DiskSpec::Cdrom { iso } => Some(format!("{iso},media=cdrom")),
        DiskSpec::Disk {
            storage: Some(st),
            size,
            options,
        } if size.is_some() || !slot.sized => {
            let mut value = allocation(st, *size);
            for (k, o) in options {
                value.push_str(&format!(",{k}={o}"));
            }
            Some(value)
        }
        DiskSpec::Disk { .. } => None,
    }
}

/// The disk values of a create call: every managed disk the document says enough to add.
pub(super) fn create_values(spec: &GuestSpec) -> BTreeMap<String, String> {
    spec.disks
        .iter()
        .filter_map(|(key, want)| {
            let slot = keys::disk_slot(spec.kind, key)?;
            Some((key.clone(), new_value(slot, want)?))
        })
        .collect()
}

pub(super) fn plan(spec: &GuestSpec, actual: &ActualGuest) -> DiskPlan {
    let mut p = DiskPlan::default();
    let kind = spec.kind;
    for (key, want) in &spec.disks {
        let Some(slot) = keys::disk_slot(kind, key) else {
            continue; // refused by the document
        };
        let stored = actual.config.get(key).map(String::as_str);
        match want {
            DiskSpec::Cdrom { iso } => {
                if let Some(v) = stored {
                    if !is_cdrom(v) {
                        p.notes.push(format!(
                            "{key} holds a disk, the document says a CD-ROM drive: left alone (replacing a disk is an operator's signed job)"
                        ));
                        continue;
                    }
                    let held = volume_of(kind, key, v);
                    let wanted = (iso != "none").then_some(iso.as_str());
                    if held == Ok(wanted) {
                        continue;
                    }
                    if let Ok(Some(h)) = held {
                        if !h.contains(":iso/") {
                            p.notes.push(format!(
                                "{key} holds {h}, not an ISO: left alone (removing it is an operator's signed job)"
                            ));
                            continue;
                        }
                    }
                }
                if let Some(value) = new_value(slot, want) {
                    p.set.insert(key.clone(), value);
                }
            }
            DiskSpec::Disk {
                storage,
                size,
                options,
            } => {
                let Some(v) = stored else {
                    match new_value(slot, want) {
                        Some(value) => {
                            p.set.insert(key.clone(), value);
                        }
                        None => p.notes.push(format!(
                            "{key} is missing, and the document gives no storage and size to add it"
                        )),
                    }
                    continue;
                };
                if is_cdrom(v) {
                    p.notes.push(format!(
                        "{key} is a CD-ROM drive, the document says a disk: left alone"
                    ));
                    continue;
                }
                let vol = match volume_of(kind, key, v) {
                    Ok(Some(vol)) => vol,
                    Ok(None) => {
                        p.notes.push(format!("{key} is an empty drive: left alone"));
                        continue;
                    }
                    Err(e) => {
                        p.notes.push(format!("{key}: {e}: left alone"));
                        continue;
                    }
                };
                if let Some(st) = storage {
                    let on = vol.split_once(':').map_or(vol, |(s, _)| s);
                    if on != st {
                        // Its options and size follow once it is there (the move rewrites the
                        // slot, so a claim about its value now would be stale).
                        if kind == GuestKind::Lxc && actual.status != "stopped" {
                            p.notes.push(format!(
                                "{key} is on {on}, the document says {st}: Proxmox moves a container's volume only while it is stopped (say state = \"stopped\" to move it)"
                            ));
                        } else {
                            p.moves.insert(key.clone(), (vol.to_string(), st.clone()));
                        }
                        continue;
                    }
                }
                if !options.is_empty()
                    && !options_equal(options, Some(v), Some(slot.volume_option()), slot.opts)
                {
                    p.set.insert(
                        key.clone(),
                        options_value(options, Some(v), Some(slot.volume_option()), slot.opts),
                    );
                    p.keeps.insert(key.clone(), v.to_string());
                }
                if let Some(want) = size {
                    match volume_size(v).and_then(size_mib) {
                        Some(have) if *want > have => {
                            p.resizes.push((key.clone(), size_text(*want)));
                        }
                        Some(have) if *want < have => p.notes.push(format!(
                            "{key} cannot shrink from {} to {}: Proxmox cannot shrink a disk (say {} or more)",
                            size_text(have),
                            size_text(*want),
                            size_text(have)
                        )),
                        Some(_) => {}
                        None => p.notes.push(format!(
                            "{key} has no size Proxmox wrote: its size is left alone"
                        )),
                    }
                }
            }
        }
    }
    if spec.exact_disks {
        for (key, v) in &actual.config {
            if spec.disks.contains_key(key)
                || keys::disk_slot(kind, key).is_none()
                || (kind == GuestKind::Lxc && key == "rootfs")
                || is_cdrom(v)
            {
                continue;
            }
            match volume_of(kind, key, v) {
                Ok(Some(vol)) => {
                    p.detach.insert(key.clone(), vol.to_string());
                }
                Ok(None) => {}
                Err(e) => p.notes.push(format!("{key}: {e}: not detached")),
            }
        }
    }
    p
}

#[cfg(test)]
mod tests;

//! The document's disk slots (`keys::DISKS`) and `disks = "exact"`: a disk is a storage, a
//! size and the options the slot's table knows; a CD-ROM drive is an ISO or `none`. A document
//! never names a volume (only Proxmox allocates one; attaching a volume that exists is an
//! operator's signed job) and never a host path (a bind mount): both are refused with the
//! reason. Sizes are binary: `32G` as Proxmox writes it, or `32 GiB`. It must never accept a
//! disk it could not add as a new, empty volume.

use super::units;
use crate::keys::DiskSlot;
use crate::normalize::setting::option_text;
use serde_json::Value;
use std::collections::BTreeMap;
use steward_model::{is_storage_id, DiskSpec, MiB};

/// Parses the document's value for disk slot `key` (row `slot`).
pub fn parse(slot: &DiskSlot, key: &str, v: &Value) -> Result<DiskSpec, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!(
            "expected a table (storage, size, options), got {v}"
        ));
    };
    let media = match obj.get("media") {
        None => "disk",
        Some(Value::String(m)) if m == "disk" || m == "cdrom" => m.as_str(),
        Some(other) => return Err(format!("media: {other} is not \"disk\" or \"cdrom\"")),
    };
    if media == "cdrom" {
        if !slot.cdrom {
            return Err(format!("{key} cannot be a CD-ROM drive"));
        }
        if let Some(k) = obj.keys().find(|k| !["media", "iso"].contains(&k.as_str())) {
            return Err(format!("{k}: a CD-ROM drive has only media and iso"));
        }
        let iso = match obj.get("iso").and_then(Value::as_str) {
            Some("none") => "none".to_string(),
            Some(i) if is_iso(i) => i.to_string(),
            Some(i) => return Err(format!("iso: {i:?} is not STORAGE:iso/FILE or none")),
            None => return Err("iso is required (STORAGE:iso/FILE, or none)".into()),
        };
        return Ok(DiskSpec::Cdrom { iso });
    }
    let mut storage = None;
    let mut size = None;
    let mut options = BTreeMap::new();
    for (name, value) in obj {
        match name.as_str() {
            "media" => {}
            "storage" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| format!("storage: {value} is not a storage id"))?;
                if s.starts_with('/') {
                    return Err(format!(
                        "storage: {s:?} is a host path: bind mounts are refused in a document (only an operator can sign one)"
                    ));
                }
                if !is_storage_id(s) {
                    return Err(format!("storage: {s:?} is not a storage id"));
                }
                storage = Some(s.to_string());
            }
            "size" if slot.sized => size = Some(disk_size(value).map_err(|e| format!("size: {e}"))?),
            "size" => return Err(format!("size: Proxmox sizes {key} itself")),
            "file" | "volume" | "import-from" => {
                return Err(format!(
                    "{name}: a document never names a volume: give storage and size for a new one (attaching an existing volume is an operator's signed job)"
                ))
            }
            _ => {
                let Some(o) = slot.opts.iter().find(|o| o.name == name) else {
                    let known: Vec<&str> = ["storage", "size", "media"]
                        .into_iter()
                        .filter(|k| *k != "size" || slot.sized)
                        .chain(slot.opts.iter().map(|o| o.name))
                        .collect();
                    return Err(format!(
                        "unknown option {name:?} (known: {})",
                        known.join(", ")
                    ));
                };
                let raw = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                    other => return Err(format!("{name}: {other} is not a value")),
                };
                let text = option_text(o.ty, &raw)
                    .ok_or_else(|| format!("{name}: {raw:?} is not a valid value"))?;
                options.insert(name.clone(), text);
            }
        }
    }
    if let Some(r) = slot.required.iter().find(|r| !options.contains_key(**r)) {
        return Err(format!("{r} is required"));
    }
    Ok(DiskSpec::Disk {
        storage,
        size,
        options,
    })
}

/// `disks`: `"exact"` (a disk the document omits is detached, held for a signature) or
/// `"listed"` (the default: such disks are left alone).
pub fn mode(v: &Value) -> Result<bool, String> {
    match v.as_str() {
        Some("exact") => Ok(true),
        Some("listed") => Ok(false),
        _ => Err(format!(
            "{v} is not \"exact\" (disks the document omits are detached) or \"listed\" (left alone)"
        )),
    }
}

fn is_iso(s: &str) -> bool {
    s.split_once(":iso/").is_some_and(|(storage, file)| {
        is_storage_id(storage)
            && !file.is_empty()
            && !file.contains(['/', ',', '=', '\n'])
            && file != ".."
    })
}

/// A disk size: Proxmox's own spelling (`32G`, `512M`, `1T`, binary) or a binary unit
/// (`32 GiB`); at least 1 MiB, whole MiB. A bare number is refused: its unit would be a guess.
pub fn disk_size(v: &Value) -> Result<MiB, String> {
    let Some(s) = v.as_str() else {
        return Err(format!(
            "{v}: give a size with its unit (\"32G\" or \"32 GiB\")"
        ));
    };
    let t = s.trim();
    let proxmox = t
        .strip_suffix(['K', 'M', 'G', 'T'])
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    let mib = match proxmox {
        Some(n) => {
            let unit = match t.as_bytes()[t.len() - 1] {
                b'K' => "KiB",
                b'M' => "MiB",
                b'G' => "GiB",
                _ => "TiB",
            };
            units::parse_mib(&Value::String(format!("{n} {unit}")))?
        }
        None if t.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!(
                "{s:?}: give a size with its unit (\"32G\" or \"32 GiB\")"
            ))
        }
        None => units::parse_mib(v)?,
    };
    if mib.0 == 0 {
        return Err("a disk holds at least 1 MiB".into());
    }
    Ok(mib)
}

//! Held ops (`pending_signature`), as an operator must see them before signing: the exact bytes
//! to sign, and a human summary of exactly what would be destroyed — the guest's name and kind
//! and every volume the action removes, with its size — taken from the newest observation.
//! A held op whose guest changed under it (another identity, gone, or, for a config change,
//! the digest it was planned against moved) is superseded, never executed with a stale
//! meaning. It must never summarize from anything but the node's own config.

use crate::observe::Snapshot;
use std::collections::{BTreeMap, BTreeSet};
use steward_journal::{OpRecord, OpState};
use steward_model::{volume_of, volume_size, Action, GuestKind};
use steward_proxmox_client::GuestRead;
pub use steward_view::HeldOp;

/// The volume config key `key` names with `value` (read as Proxmox reads it:
/// `steward_model::volume_of`), and its `size=`. A value whose volume is ambiguous is shown
/// whole: the operator must see it, not a guess.
fn volume(kind: GuestKind, key: &str, value: &str) -> Option<(String, Option<String>)> {
    let size = volume_size(value).map(str::to_string);
    match volume_of(kind, key, value) {
        Ok(Some(v)) if v.contains(':') && !v.ends_with(":cloudinit") => Some((v.to_string(), size)),
        Ok(_) => None,
        Err(e) => Some((format!("{key}={value} ({e})"), size)),
    }
}

fn is_disk(key: &str) -> bool {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    (base.len() < key.len() && matches!(base, "scsi" | "virtio" | "sata" | "ide" | "unused" | "mp"))
        || matches!(key, "efidisk0" | "tpmstate0" | "rootfs" | "vmstate")
}

/// A volume a destroy removes that the guest's current config does not name, and why it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extra {
    /// The volume id (or, when the node could not be asked, what could not be read).
    pub volume: String,
    /// Its size, as Proxmox writes it, if known.
    pub size: Option<String>,
    /// Where it comes from: `only in snapshot NAME`, `referenced by no config`.
    pub origin: String,
}

/// Bytes as Proxmox writes disk sizes (`32G`, `512M`), or bytes.
fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{}G", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        format!("{}M", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// What destroying the guest of `action` removes beyond the volumes its current config names,
/// read from the node (once per held op: the engine keeps the answer): the volumes only its
/// snapshots reference (a purge removes them with the guest), and, with
/// `destroy-unreferenced-disks`, every volume the storages hold for the guest that no config
/// references. What cannot be read is said as such, never left out silently.
pub async fn destroy_extras(
    api: &dyn GuestRead,
    volumes: &dyn GuestRead,
    action: &Action,
    config: Option<&BTreeMap<String, String>>,
) -> Vec<Extra> {
    let Action::Destroy {
        vmid,
        kind,
        destroy_unreferenced_disks,
        ..
    } = action
    else {
        return Vec::new();
    };
    let (vmid, kind) = (*vmid, *kind);
    let mut known: BTreeSet<String> = config
        .into_iter()
        .flatten()
        .filter(|(k, _)| is_disk(k))
        .filter_map(|(k, v)| volume(kind, k, v).map(|(vol, _)| vol))
        .collect();
    let mut out = Vec::new();
    match api.snapshots(kind, vmid).await {
        Ok(names) => {
            for name in names {
                match api.snapshot_config(kind, vmid, &name).await {
                    Ok(c) => {
                        for (k, v) in c.iter().filter(|(k, _)| is_disk(k)) {
                            if let Some((vol, size)) = volume(kind, k, v) {
                                if known.insert(vol.clone()) {
                                    out.push(Extra {
                                        volume: vol,
                                        size,
                                        origin: format!("only in snapshot {name}"),
                                    });
                                }
                            }
                        }
                    }
                    Err(e) => out.push(Extra {
                        volume: format!("(snapshot {name} could not be read: {e})"),
                        size: None,
                        origin: String::new(),
                    }),
                }
            }
        }
        Err(e) => out.push(Extra {
            volume: format!("(snapshots could not be listed: {e})"),
            size: None,
            origin: String::new(),
        }),
    }
    if *destroy_unreferenced_disks {
        match volumes.guest_volumes(vmid).await {
            Ok(vols) => {
                for (vol, bytes) in vols {
                    if known.insert(vol.clone()) {
                        out.push(Extra {
                            volume: vol,
                            size: bytes.map(size_text),
                            origin: "referenced by no config".into(),
                        });
                    }
                }
            }
            Err(e) => out.push(Extra {
                volume: format!("(the storages could not be listed: {e})"),
                size: None,
                origin: String::new(),
            }),
        }
    }
    out
}

/// The summary of `rec` (a held op) against `snap`, under a policy of `needs` distinct
/// approvers, `approved` by those the gate would count now (`Gate::approvals_in_force`).
pub fn held_op(
    rec: &OpRecord,
    snap: &Snapshot,
    needs: u8,
    approved: &[steward_journal::Signer],
    extras: &[Extra],
) -> Option<HeldOp> {
    let OpState::PendingSignature { template } = rec.state() else {
        return None;
    };
    let observed = snap.guests.get(&rec.guest);
    let config = observed.and_then(|o| o.actual.as_ref()).map(|a| &a.config);
    // The name and every volume are the node's text, which a hub can choose (it names guests
    // and creates them): escaped here, so neither the CLI, the hub report nor a log can be
    // shown a forged line.
    let name = observed
        .and_then(|o| o.entry.name.as_deref())
        .map_or_else(|| "(unnamed)".into(), steward_authz::escape_controls);
    let kind = rec.action.kind();
    let mut volumes: Vec<(String, Option<String>)> = Vec::new();
    let what_move: String;
    let what = match &rec.action {
        Action::Destroy {
            destroy_unreferenced_disks,
            ..
        } => {
            if let Some(c) = config {
                volumes.extend(
                    c.iter()
                        .filter(|(k, _)| is_disk(k))
                        .filter_map(|(k, v)| volume(kind, k, v)),
                );
            }
            if *destroy_unreferenced_disks {
                "destroy the guest, every disk its config names, and every volume it owns that no config references"
            } else {
                "destroy the guest and every disk its config names"
            }
        }
        Action::SetConfig { change, .. } => {
            for (key, vol) in &change.removes {
                let size = config
                    .and_then(|c| c.get(key))
                    .and_then(|v| volume(kind, key, v))
                    .and_then(|(_, s)| s);
                volumes.push((vol.clone(), size));
            }
            "change the config, removing the disks named"
        }
        Action::MoveDisk {
            disk,
            volume: source,
            storage,
            ..
        } => {
            let size = config
                .and_then(|c| c.get(disk))
                .and_then(|v| volume(kind, disk, v))
                .and_then(|(_, s)| s);
            volumes.push((source.clone(), size));
            what_move = format!(
                "move {disk} to storage {}, deleting the source volume named after the copy",
                steward_authz::escape_controls(storage)
            );
            &what_move
        }
        Action::SnapshotRollback { .. } => {
            "roll back to the snapshot, discarding everything written since"
        }
        Action::RestoreOver { .. } => {
            if let Some(c) = config {
                volumes.extend(
                    c.iter()
                        .filter(|(k, _)| is_disk(k))
                        .filter_map(|(k, v)| volume(kind, k, v)),
                );
            }
            "restore the backup over the guest, overwriting every disk"
        }
        Action::Create { config, .. } => {
            // A held create attaches, imports or restores something that exists: name every
            // disk value that is not a new allocation, as the classifier saw it.
            volumes.extend(
                config
                    .iter()
                    .filter(|(k, _)| is_disk(k))
                    .filter(|(k, v)| !steward_gate::is_new_volume(kind, k, v))
                    .filter_map(|(k, v)| volume(kind, k, v)),
            );
            for key in ["archive", "ostemplate"] {
                if let Some(a) = config.get(key).filter(|a| !a.contains(":vztmpl/")) {
                    volumes.push((a.clone(), None));
                }
            }
            "create the guest with existing data (attached, imported or restored)"
        }
        _ => "an action classified destructive",
    };
    let shown = |v: &str, s: &Option<String>, origin: &str| {
        let size = s.as_deref().unwrap_or("size unknown");
        steward_authz::escape_controls(&if origin.is_empty() {
            format!("{v} ({size})")
        } else {
            format!("{v} ({size}, {origin})")
        })
    };
    let mut listed: Vec<String> = volumes.iter().map(|(v, s)| shown(v, s, "")).collect();
    for e in extras {
        if e.origin.is_empty() {
            listed.push(steward_authz::escape_controls(&e.volume));
        } else {
            listed.push(shown(&e.volume, &e.size, &e.origin));
            volumes.push((e.volume.clone(), e.size.clone()));
        }
    }
    let vols = if listed.is_empty() {
        String::from("no volumes")
    } else {
        listed.join(", ")
    };
    let approvals = if needs > 1 || !approved.is_empty() {
        format!(
            "; needs {needs} signatures, has {}{}",
            approved.len(),
            if approved.is_empty() {
                String::new()
            } else {
                format!(": {}", steward_gate::approval::names(approved))
            }
        )
    } else {
        String::new()
    };
    Some(HeldOp {
        op: rec.id.0,
        guest: rec.guest.get(),
        op_kind: rec.action.op_kind().into(),
        template: template.clone(),
        summary: format!(
            "{} {} {} ({kind}): {what}: {vols}{approvals}",
            rec.action.op_kind(),
            rec.guest,
            name
        ),
        volumes,
        expires: template
            .get("not_after")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        needs,
        approved_by: approved.iter().map(|s| s.principal.clone()).collect(),
    })
}

/// Why a held op no longer means what it meant when it was held, if it does not. The identity
/// it was held for is in its journal record, so this holds across restarts too (and the
/// executor checks the identity again just before any call).
pub fn superseded(rec: &OpRecord, snap: &Snapshot) -> Option<String> {
    let observed = snap.guests.get(&rec.guest);
    if let Action::Create { .. } = rec.action {
        // A held create waits for a guest that does not exist yet; something else taking the
        // VMID, on any node of the cluster, is what changes its meaning.
        if let Some(node) = snap.elsewhere.get(&rec.guest) {
            return Some(format!("VMID {} was taken on node {node}", rec.guest));
        }
        return observed.map(|_| format!("VMID {} was taken by another guest", rec.guest));
    }
    if let Some(node) = snap.elsewhere.get(&rec.guest) {
        // The op was held for this node; the guest now lives on another, whose agent decides.
        return Some(format!("guest {} moved to node {node}", rec.guest));
    }
    let Some(o) = observed else {
        return Some(format!("guest {} is gone from the node", rec.guest));
    };
    if o.entry.kind != rec.action.kind() {
        return Some(format!("guest {} is now a {}", rec.guest, o.entry.kind));
    }
    if o.actual.is_some() && o.identity != rec.identity {
        return Some(format!("VMID {} is now held by another guest", rec.guest));
    }
    if let (Some(planned), Some(a)) = (rec.action.digest(), &o.actual) {
        if planned != a.digest {
            return Some("the config changed since the op was held (digest moved)".into());
        }
    }
    None
}

/// The nonce of held op `rec`'s template and how long to keep it spent: past its window and
/// every skew a verifier could be configured with.
pub(crate) fn template_nonce(rec: &OpRecord) -> Option<(steward_authz::Nonce, i64)> {
    let OpState::PendingSignature { template } = rec.state() else {
        return None;
    };
    let nonce = steward_authz::Nonce::parse(template.get("nonce")?.as_str()?).ok()?;
    let not_after = time::OffsetDateTime::parse(
        template.get("not_after")?.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some((
        nonce,
        not_after.unix_timestamp() + steward_authz::MAX_SKEW_SECS,
    ))
}

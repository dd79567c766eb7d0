//! Op-to-action binding: the one mapping between an `Action` and the (op kind, guest, params)
//! an operator signs. It lives beside the classifier, pure and without I/O, because three
//! parties apply it: the gate (is this signature for this action?), the executor (does the
//! node still hold what the action names?) and `steward-verify audit` (was what ran what was
//! signed?), and the last must not depend on the gate's runtime. The gate compares the verified op with the binding of the action it holds,
//! field by field, exactly; a signed job is turned into an action by the inverse mapping. Must
//! never let a field the operator did not sign influence what runs.
//!
//! A config change that deletes or replaces a data-bearing key binds the volumes it removes
//! (`removes`: key → volume id, read from the config it was planned against) and the config
//! `digest` it was planned against: the signature names the data, not a slot such as `unused0`,
//! and the write cannot land on a config that changed since (Proxmox refuses a stale digest). A
//! signed job that touches data-bearing keys without a digest is refused. Other config changes
//! bind neither (their digest is Proxmox's business; the executor still sends it).
//!
//! Binding the params is not enough: a hub can compose an op whose `removes` names a harmless
//! volume while the slot it deletes holds another. So before a signature over such a change is
//! spent, [`check_slots`] holds it against the config read from the node at the signed
//! digest: `removes` must be exactly the volumes the touched keys hold there, key by key.

use crate::is_data_bearing_key;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use steward_model::{volume_of, Action, ConfigChange, GuestKind, Vmid};

/// A guest's config as just read from the node, with its `digest`: what a signed data-bearing
/// change (or a move) is checked against before the nonce is spent, and what the executor
/// checks a claiming write against before it sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedConfig {
    /// Proxmox's config digest.
    pub digest: String,
    /// Every key with its value, as `GET …/config` answers.
    pub values: BTreeMap<String, String>,
}

/// The data-bearing keys a change deletes or replaces.
fn data_keys(kind: GuestKind, change: &ConfigChange) -> Vec<&String> {
    change
        .set
        .keys()
        .chain(change.delete.iter())
        .filter(|k| is_data_bearing_key(kind, k))
        .collect()
}

/// Whether `action` touches data (and so is checked before a signature over it is spent, and
/// runs with the admin token when benign): a config change that touches a data-bearing key,
/// names volumes it removes or claims volumes it keeps; a disk move.
pub fn touches_volumes(action: &Action) -> bool {
    match action {
        Action::MoveDisk { .. } => true,
        Action::SetConfig { kind, change, .. } => {
            !change.removes.is_empty()
                || change.keeps.keys().any(|k| is_data_bearing_key(*kind, k))
                || !data_keys(*kind, change).is_empty()
        }
        _ => false,
    }
}

/// The container NICs a change with a digest writes: what it claims about each (the value it
/// keeps, or an empty slot) is checked like a disk slot's.
fn nic_keys(kind: GuestKind, change: &ConfigChange) -> Vec<&String> {
    if kind != GuestKind::Lxc || change.digest.is_none() {
        return Vec::new();
    }
    change
        .set
        .keys()
        .filter(|k| steward_model::is_net_key(k))
        .collect()
}

/// Whether `action` must be checked against the guest's config just before it is written:
/// it touches data, or writes a container's NIC with a claim about it.
pub fn claims_slots(action: &Action) -> bool {
    touches_volumes(action)
        || match action {
            Action::SetConfig { kind, change, .. } => {
                !change.keeps.is_empty() || !nic_keys(*kind, change).is_empty()
            }
            _ => false,
        }
}

fn is_cdrom(value: &str) -> bool {
    value.split(',').any(|p| p.trim() == "media=cdrom")
}

/// Checks that `change` says exactly what it does to the data on `observed`, the guest's
/// config as just read from the node: the change was planned against this very config (same
/// digest, so Proxmox applies it to nothing else); every data-bearing key it sets or deletes is
/// either in `removes` with exactly the volume it holds there, or in `keeps` with exactly the
/// volume it holds and writes back, or holds no volume (a new disk in an empty slot; an ISO
/// into a CD-ROM drive); and `removes` and `keeps` name nothing else. `Err` names the key, the
/// volume the change names and the volume held.
pub fn check_slots(
    kind: GuestKind,
    change: &ConfigChange,
    observed: &ObservedConfig,
) -> Result<(), String> {
    match change.digest.as_deref() {
        Some(d) if d == observed.digest => {}
        Some(d) => {
            return Err(format!(
                "the change was signed against config digest {d}; the guest's config is at {} now",
                observed.digest
            ))
        }
        None => {
            return Err(
                "a change that touches volumes must carry the digest it was planned against".into(),
            )
        }
    }
    let touched = data_keys(kind, change);
    for key in &touched {
        let stored = observed.values.get(key.as_str());
        let held = match stored {
            None => None,
            Some(v) => volume_of(kind, key, v)
                .map_err(|e| format!("{key}: the guest's value is ambiguous ({e})"))?,
        };
        if let Some(kept) = change.keeps.get(key.as_str()) {
            if change.removes.contains_key(key.as_str()) {
                return Err(format!("{key}: the change both keeps and removes it"));
            }
            // `keeps` is the slot's whole value as planned: it must be the value there now, and
            // the value written must name the same volume.
            let written = change
                .set
                .get(key.as_str())
                .map(|v| volume_of(kind, key, v));
            let kept_volume = volume_of(kind, key, kept)
                .map_err(|e| format!("{key}: the kept value is ambiguous ({e})"))?;
            if stored != Some(kept) || written != Some(Ok(kept_volume)) || kept_volume.is_none() {
                return Err(format!(
                    "{key}: the change keeps {kept:?}, the guest holds {} there",
                    stored.map_or("nothing".to_string(), |s| format!("{s:?}"))
                ));
            }
            continue;
        }
        let signed = change.removes.get(key.as_str());
        // A CD-ROM drive that holds no volume or an ISO, given another ISO (or none), frees
        // nothing. One that holds anything else (a cloud-init drive) would drop it.
        let media_swap = signed.is_none()
            && stored.is_some_and(|v| is_cdrom(v))
            && held.is_none_or(|h| h.contains(":iso/"))
            && change.set.get(key.as_str()).is_some_and(|v| is_cdrom(v));
        if signed.map(String::as_str) != held && !media_swap {
            return Err(format!(
                "{key}: the signature names {}, the guest holds {} there",
                signed.map_or("no volume", String::as_str),
                held.unwrap_or("no volume")
            ));
        }
    }
    if let Some((key, vol)) = change
        .removes
        .iter()
        .find(|(k, _)| !touched.iter().any(|t| t == k))
    {
        return Err(format!(
            "{key}: the signature names {vol} as removed, but the change does not touch {key}"
        ));
    }
    // A container's NIC: the value kept (with the same MAC written back), or an empty slot after
    // the NIC that holds its identity (the first with a MAC), so that the MAC Proxmox makes for
    // the new one never becomes the container's identity.
    let nics = nic_keys(kind, change);
    let index = |k: &str| k.strip_prefix("net").and_then(|n| n.parse::<u32>().ok());
    let identity_nic = observed
        .values
        .iter()
        .filter(|(k, v)| steward_model::is_net_key(k) && crate::lxc_hwaddr(v).is_some())
        .filter_map(|(k, _)| index(k))
        .min();
    // A stored NIC without exactly one MAC gets one from Proxmox when it is next applied,
    // which may then become the identity: no NIC is written unsigned while one is there.
    if !nics.is_empty() {
        if let Some((k, _)) = observed
            .values
            .iter()
            .find(|(k, v)| steward_model::is_net_key(k) && crate::lxc_hwaddr(v).is_none())
        {
            return Err(format!(
                "{k} holds no MAC yet: Proxmox would make one up, which may become the container's identity"
            ));
        }
    }
    for key in &nics {
        let stored = observed.values.get(key.as_str());
        let written = change.set.get(key.as_str()).map(String::as_str);
        let ok = match change.keeps.get(key.as_str()) {
            Some(kept) => {
                stored == Some(kept)
                    && crate::lxc_hwaddr(kept).is_some()
                    && written.and_then(crate::lxc_hwaddr) == crate::lxc_hwaddr(kept)
            }
            // A new NIC only after the one that holds the identity: a container with no
            // identity yet would take the new NIC's made-up MAC as its identity.
            None => {
                stored.is_none()
                    && identity_nic.is_some_and(|first| index(key).is_some_and(|i| i > first))
            }
        };
        if !ok {
            return Err(format!(
                "{key}: the change keeps {:?}, the guest holds {} there",
                change
                    .keeps
                    .get(key.as_str())
                    .map_or("an empty slot", String::as_str),
                stored.map_or("nothing".to_string(), |s| format!("{s:?}"))
            ));
        }
    }
    if let Some((key, vol)) = change
        .keeps
        .iter()
        .find(|(k, _)| !touched.iter().any(|t| t == k) && !nics.iter().any(|n| n == k))
    {
        return Err(format!(
            "{key}: the change claims to keep {vol} there, but does not write {key}"
        ));
    }
    Ok(())
}

/// Checks what `action` claims about the guest's slots against `observed`, the config just
/// read from the node: a config change's `removes` and `keeps` ([`check_slots`]); a move's
/// source volume, at the digest it was planned against. Actions that claim nothing pass.
pub fn check_claims(action: &Action, observed: &ObservedConfig) -> Result<(), String> {
    match action {
        Action::SetConfig { kind, change, .. } => check_slots(*kind, change, observed),
        Action::MoveDisk {
            kind,
            disk,
            volume,
            digest,
            ..
        } => check_move(*kind, disk, volume, digest.as_deref(), observed),
        _ => Ok(()),
    }
}

/// A move names the volume its slot holds at the digest it was planned against: the copy and
/// (with `delete`) the volume freed are that one, and no other.
fn check_move(
    kind: GuestKind,
    disk: &str,
    volume: &str,
    digest: Option<&str>,
    observed: &ObservedConfig,
) -> Result<(), String> {
    match digest {
        Some(d) if d == observed.digest => {}
        Some(d) => {
            return Err(format!(
                "the move was signed against config digest {d}; the guest's config is at {} now",
                observed.digest
            ))
        }
        None => return Err("a disk move must carry the digest it was planned against".into()),
    }
    if !is_data_bearing_key(kind, disk) || disk.starts_with("unused") {
        return Err(format!("{disk} is not a disk slot a move can name"));
    }
    let stored = observed.values.get(disk);
    if stored.is_some_and(|v| is_cdrom(v)) {
        return Err(format!(
            "{disk} is a CD-ROM drive, which Proxmox does not move"
        ));
    }
    let held = match stored {
        None => None,
        Some(v) => volume_of(kind, disk, v)
            .map_err(|e| format!("{disk}: the guest's value is ambiguous ({e})"))?,
    };
    if held != Some(volume) {
        return Err(format!(
            "{disk}: the move names {volume}, the guest holds {} there",
            held.unwrap_or("no volume")
        ));
    }
    Ok(())
}

/// What an operator signs for an action.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// `guest.destroy`, …
    pub op: &'static str,
    /// The guest.
    pub guest: Vmid,
    /// Exactly the params the op must carry.
    pub params: Map<String, Value>,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Whether an action's binding names the guest's identity: everything that destroys or
/// overwrites data on an existing guest.
pub fn binds_identity(action: &Action) -> bool {
    match action {
        Action::Destroy { .. } | Action::SnapshotRollback { .. } | Action::RestoreOver { .. } => {
            true
        }
        // A signed config change is destructive for a reason (a disk, protection, an unknown
        // key, an identity): whatever it is, it names the guest. A move names the guest whose
        // volume it copies (and may free).
        Action::SetConfig { .. } | Action::MoveDisk { .. } => true,
        _ => false,
    }
}

/// The binding of `action` on the guest with `identity` (`steward_model::guest_identity`, as
/// observed when the op was made): destructive bindings carry it, so a signature names a
/// guest, not a VMID that another guest may hold by the time the op runs.
pub fn binding_of(action: &Action, identity: Option<&str>) -> Binding {
    let kind = action.kind().as_str();
    let params = match action {
        Action::Destroy {
            purge,
            destroy_unreferenced_disks,
            ..
        } => {
            json!({"kind": kind, "purge": purge, "destroy_unreferenced_disks": destroy_unreferenced_disks})
        }
        Action::SnapshotRollback { snapshot, .. } => json!({"kind": kind, "snapshot": snapshot}),
        Action::RestoreOver { archive, .. } => json!({"kind": kind, "archive": archive}),
        Action::SetConfig {
            kind: k, change, ..
        } => {
            let mut p = json!({"kind": kind, "set": change.set, "delete": change.delete});
            if !data_keys(*k, change).is_empty() || !change.removes.is_empty() {
                p["removes"] = json!(change.removes);
                p["digest"] = json!(change.digest);
            }
            if !change.keeps.is_empty() {
                p["keeps"] = json!(change.keeps);
            }
            p
        }
        Action::ResizeDisk { disk, size, .. } => {
            json!({"kind": kind, "disk": disk, "size": size})
        }
        Action::MoveDisk {
            disk,
            volume,
            storage,
            delete,
            digest,
            ..
        } => {
            json!({"kind": kind, "disk": disk, "volume": volume, "storage": storage, "delete": delete, "digest": digest})
        }
        Action::Create { config, .. } => json!({"kind": kind, "config": config}),
        Action::Shutdown {
            timeout_secs,
            force_stop,
            ..
        } => json!({"kind": kind, "timeout_secs": timeout_secs, "force_stop": force_stop}),
        Action::Start { .. } | Action::Stop { .. } | Action::Reboot { .. } => json!({"kind": kind}),
    };
    let mut params = obj(params);
    if binds_identity(action) {
        params.insert("identity".into(), json!(identity));
    }
    Binding {
        op: action.op_kind(),
        guest: action.vmid(),
        params,
    }
}

/// The action a signed job asks for and the identity it names (the inverse of
/// [`binding_of`]); re-binding the result must give back exactly the signed params, or the job
/// is refused.
pub fn action_from_op(
    op: &str,
    guest: Option<u32>,
    params: &Map<String, Value>,
) -> Result<(Action, Option<String>), String> {
    let guest = guest.ok_or("the op names no guest")?;
    let vmid = Vmid::new(u64::from(guest)).map_err(|e| e.to_string())?;
    let kind = match params.get("kind").and_then(Value::as_str) {
        Some("qemu") => GuestKind::Qemu,
        Some("lxc") => GuestKind::Lxc,
        _ => return Err("params.kind must be qemu or lxc".into()),
    };
    let boolean = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_bool)
            .ok_or(format!("params.{k} must be a boolean"))
    };
    let string = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(format!("params.{k} must be a string"))
    };
    let action = match op {
        "guest.destroy" => Action::Destroy {
            vmid,
            kind,
            purge: boolean("purge")?,
            destroy_unreferenced_disks: boolean("destroy_unreferenced_disks")?,
        },
        "guest.rollback" => Action::SnapshotRollback {
            vmid,
            kind,
            snapshot: string("snapshot")?,
        },
        "guest.restore" => Action::RestoreOver {
            vmid,
            kind,
            archive: string("archive")?,
        },
        "guest.config" => {
            let change: ConfigChange = serde_json::from_value(json!({
                "set": params.get("set").cloned().unwrap_or(json!({})),
                "delete": params.get("delete").cloned().unwrap_or(json!([])),
                "digest": params.get("digest").cloned().unwrap_or(Value::Null),
                "removes": params.get("removes").cloned().unwrap_or(json!({})),
                "keeps": params.get("keeps").cloned().unwrap_or(json!({})),
            }))
            .map_err(|e| format!("params.set/delete/digest/removes/keeps: {e}"))?;
            let data = data_keys(kind, &change);
            if !data.is_empty() && change.digest.is_none() {
                return Err(format!(
                    "a change to data-bearing keys ({}) must carry params.digest, the config it was planned against",
                    data.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            // What each key holds is checked against the node's config before the signature
            // is spent (`check_slots`); here only what needs no config.
            if let Some(k) = change.removes.keys().find(|k| !data.iter().any(|d| d == k)) {
                return Err(format!(
                    "params.removes names {k}, which the change does not set or delete"
                ));
            }
            if let Some(k) = change.keeps.keys().find(|k| !change.set.contains_key(*k)) {
                return Err(format!(
                    "params.keeps names {k}, which the change does not set"
                ));
            }
            Action::SetConfig { vmid, kind, change }
        }
        "guest.move" => {
            let disk = string("disk")?;
            if !is_data_bearing_key(kind, &disk) || disk.starts_with("unused") {
                return Err(format!("params.disk {disk:?} is not a {kind} disk slot"));
            }
            Action::MoveDisk {
                vmid,
                kind,
                disk,
                volume: string("volume")?,
                storage: string("storage").and_then(|s| {
                    if steward_model::is_storage_id(&s) {
                        Ok(s)
                    } else {
                        Err(format!("params.storage {s:?} is not a storage id"))
                    }
                })?,
                delete: boolean("delete")?,
                // A move names its source at a config: without the digest it could land on a
                // slot that holds something else by then.
                digest: Some(string("digest").map_err(|_| {
                    "params.digest must name the config the move was planned against".to_string()
                })?),
            }
        }
        other => return Err(format!("op {other:?} is not a signed job Steward runs")),
    };
    if let Action::SetConfig { change, .. } = &action {
        if let Some(k) = change
            .set
            .keys()
            .chain(change.delete.iter())
            .find(|k| !steward_model::is_config_key(k))
        {
            return Err(format!("{k:?} is not a config key Steward sends"));
        }
    }
    let identity = match params.get("identity") {
        None => None,
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "params.identity must be a string or null, not {other}"
            ))
        }
    };
    if binds_identity(&action) && !params.contains_key("identity") {
        return Err(
            "params.identity must name the guest (or be null for a guest without one)".into(),
        );
    }
    if binding_of(&action, identity.as_deref()).params != *params {
        return Err("params carry fields the op does not use".into());
    }
    Ok((action, identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_actions_round_trip_through_their_binding() {
        let v = Vmid::new(104).unwrap();
        for a in [
            Action::Destroy {
                vmid: v,
                kind: GuestKind::Qemu,
                purge: true,
                destroy_unreferenced_disks: false,
            },
            Action::SnapshotRollback {
                vmid: v,
                kind: GuestKind::Lxc,
                snapshot: "pre".into(),
            },
            Action::RestoreOver {
                vmid: v,
                kind: GuestKind::Qemu,
                archive: "local:backup/x".into(),
            },
            Action::SetConfig {
                vmid: v,
                kind: GuestKind::Qemu,
                change: ConfigChange {
                    set: [("scsi1".into(), "local:8".into())].into(),
                    delete: ["unused0".into()].into(),
                    digest: Some("3f2a9c0d1e".into()),
                    removes: [
                        ("scsi1".to_string(), "local-lvm:vm-104-disk-1".to_string()),
                        ("unused0".to_string(), "local-lvm:vm-104-disk-2".to_string()),
                    ]
                    .into(),
                    keeps: Default::default(),
                },
            },
            Action::MoveDisk {
                vmid: v,
                kind: GuestKind::Lxc,
                disk: "mp0".into(),
                volume: "local-lvm:vm-104-disk-1".into(),
                storage: "local-zfs".into(),
                delete: true,
                digest: Some("3f2a9c0d1e".into()),
            },
        ] {
            let id = Some("vmgenid:0badc0de-0000-4000-8000-000000000104");
            let b = binding_of(&a, id);
            assert_eq!(
                action_from_op(b.op, Some(b.guest.get()), &b.params),
                Ok((a, id.map(str::to_string)))
            );
        }
    }

    #[test]
    fn a_data_bearing_change_binds_its_volumes_and_its_digest() {
        let v = Vmid::new(104).unwrap();
        let change = ConfigChange {
            delete: ["scsi1".into()].into(),
            digest: Some("3f2a".into()),
            removes: [("scsi1".to_string(), "local-lvm:vm-104-disk-1".to_string())].into(),
            ..ConfigChange::default()
        };
        let a = Action::SetConfig {
            vmid: v,
            kind: GuestKind::Qemu,
            change: change.clone(),
        };
        let b = binding_of(&a, None);
        assert_eq!(b.params["removes"]["scsi1"], "local-lvm:vm-104-disk-1");
        assert_eq!(b.params["digest"], "3f2a");
        // A job deleting a disk without the digest, or naming a volume of a key it does not
        // touch, is refused.
        let mut p = b.params.clone();
        p["digest"] = Value::Null;
        assert!(action_from_op(b.op, Some(104), &p)
            .unwrap_err()
            .contains("digest"));
        let mut p = b.params.clone();
        p["removes"] =
            json!({"scsi1": "local-lvm:vm-104-disk-1", "scsi2": "local-lvm:vm-104-disk-2"});
        assert!(action_from_op(b.op, Some(104), &p)
            .unwrap_err()
            .contains("scsi2"));
        // A benign change binds neither.
        let benign = Action::SetConfig {
            vmid: v,
            kind: GuestKind::Qemu,
            change: ConfigChange {
                set: [("cores".into(), "2".into())].into(),
                digest: Some("3f2a".into()),
                ..ConfigChange::default()
            },
        };
        let b = binding_of(&benign, None);
        assert!(!b.params.contains_key("digest") && !b.params.contains_key("removes"));
    }

    #[test]
    fn extra_or_missing_params_are_refused() {
        let mut p =
            obj(json!({"kind": "qemu", "purge": true, "destroy_unreferenced_disks": true, "x": 1}));
        assert!(action_from_op("guest.destroy", Some(104), &p).is_err());
        p.remove("x");
        assert!(
            action_from_op("guest.destroy", Some(104), &p).is_err(),
            "a destroy must name the guest's identity (or null)"
        );
        p.insert("identity".into(), Value::Null);
        assert!(action_from_op("guest.destroy", Some(104), &p).is_ok());
        // Keys that are not config keys, or that are the call's own parameters, never reach
        // the wire through a signed change.
        for bad in ["tags,unused0", "delete", "skiplock", "Digest"] {
            let q = obj(json!({"kind": "qemu", "set": {}, "delete": [bad]}));
            assert!(
                action_from_op("guest.config", Some(104), &q).is_err(),
                "{bad}"
            );
        }
        p.remove("purge");
        assert!(action_from_op("guest.destroy", Some(104), &p).is_err());
        assert!(action_from_op("guest.destroy", None, &p).is_err());
        assert!(action_from_op("guest.start", Some(104), &obj(json!({"kind": "qemu"}))).is_err());
    }

    fn observed(digest: &str, pairs: &[(&str, &str)]) -> ObservedConfig {
        ObservedConfig {
            digest: digest.into(),
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn change(set: &[(&str, &str)], delete: &[&str], removes: &[(&str, &str)]) -> ConfigChange {
        ConfigChange {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
            digest: Some("D".into()),
            removes: removes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            keeps: Default::default(),
        }
    }

    #[test]
    fn a_kept_volume_must_be_the_one_held_and_the_one_written_back() {
        let q = GuestKind::Qemu;
        let cfg = observed(
            "D",
            &[
                ("scsi0", "local-lvm:vm-101-disk-0,size=32G"),
                ("ide2", "local:iso/old.iso,media=cdrom"),
            ],
        );
        let mut keep = change(
            &[("scsi0", "local-lvm:vm-101-disk-0,iothread=1,size=32G")],
            &[],
            &[],
        );
        keep.keeps
            .insert("scsi0".into(), "local-lvm:vm-101-disk-0,size=32G".into());
        assert_eq!(check_slots(q, &keep, &cfg), Ok(()));
        // The value names another volume than the one kept: refused.
        let mut swapped = keep.clone();
        swapped
            .set
            .insert("scsi0".into(), "local-lvm:vm-101-disk-5,iothread=1".into());
        assert!(check_slots(q, &swapped, &cfg)
            .unwrap_err()
            .contains("keeps"));
        // The slot holds another value than the one claimed: refused.
        let mut wrong = keep.clone();
        wrong
            .keeps
            .insert("scsi0".into(), "local-lvm:vm-101-disk-5,size=32G".into());
        wrong
            .set
            .insert("scsi0".into(), "local-lvm:vm-101-disk-5,iothread=1".into());
        assert!(check_slots(q, &wrong, &cfg).is_err());
        // A claim for a key the change does not write: refused.
        let mut stray = change(&[("memory", "4096")], &[], &[]);
        stray
            .keeps
            .insert("scsi0".into(), "local-lvm:vm-101-disk-0,size=32G".into());
        assert!(check_slots(q, &stray, &cfg).is_err());
        // Kept and removed at once: refused.
        let mut both = keep.clone();
        both.removes
            .insert("scsi0".into(), "local-lvm:vm-101-disk-0".into());
        assert!(check_slots(q, &both, &cfg).is_err());
        // Another ISO in a CD-ROM drive frees nothing; a disk in its place would detach it.
        let media = change(&[("ide2", "local:iso/new.iso,media=cdrom")], &[], &[]);
        assert_eq!(check_slots(q, &media, &cfg), Ok(()));
        let disk = change(&[("ide2", "local-lvm:4")], &[], &[]);
        assert!(check_slots(q, &disk, &cfg).is_err());
        // A CD-ROM drive holding a cloud-init volume is no ISO to swap: dropping it needs
        // `removes`.
        let ci = observed("D", &[("ide2", "local-lvm:vm-101-cloudinit,media=cdrom")]);
        let eject = change(&[("ide2", "none,media=cdrom")], &[], &[]);
        assert!(check_slots(q, &eject, &ci).is_err());
    }

    #[test]
    fn a_container_nic_claim_must_hold_at_the_digest() {
        let l = GuestKind::Lxc;
        let held = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:02,type=veth";
        let cfg = observed("D", &[("net0", held)]);
        let mut keep = change(
            &[(
                "net0",
                "bridge=vmbr1,hwaddr=BC:24:11:00:00:02,name=eth0,type=veth",
            )],
            &[],
            &[],
        );
        keep.keeps.insert("net0".into(), held.into());
        assert_eq!(check_slots(l, &keep, &cfg), Ok(()));
        // Another MAC written back than the one kept.
        let mut other = keep.clone();
        other.set.insert(
            "net0".into(),
            "bridge=vmbr1,hwaddr=BC:24:11:00:00:09,name=eth0".into(),
        );
        assert!(check_slots(l, &other, &cfg).is_err());
        // A claim of an empty slot over a NIC that is there.
        let fresh = change(&[("net0", "name=eth0,bridge=vmbr1")], &[], &[]);
        assert!(check_slots(l, &fresh, &cfg).is_err());
        // A new NIC after the identity NIC: fine; before it, its new MAC would become the
        // container's identity: refused.
        let after = change(&[("net2", "name=eth2,bridge=vmbr1")], &[], &[]);
        assert_eq!(check_slots(l, &after, &cfg), Ok(()));
        let second = observed("D", &[("net1", held)]);
        let before = change(&[("net0", "name=eth9,bridge=vmbr1")], &[], &[]);
        assert!(check_slots(l, &before, &second).is_err());
        // A container with no MAC yet: the new NIC's made-up MAC would become its identity.
        let bare = observed("D", &[("hostname", "ct")]);
        assert!(check_slots(l, &before, &bare).is_err());
        // A stored NIC without a MAC (Proxmox makes one up when it is applied): no NIC is
        // written unsigned, not even after the identity NIC.
        let unapplied = observed(
            "D",
            &[("net0", held), ("net1", "name=eth1,bridge=nosuchbr")],
        );
        let third = change(&[("net2", "name=eth2,bridge=vmbr1")], &[], &[]);
        let why = check_slots(l, &third, &unapplied).unwrap_err();
        assert!(why.contains("net1 holds no MAC"), "{why}");
        // Another value kept than the one held.
        let mut stale = keep.clone();
        stale.keeps.insert(
            "net0".into(),
            "name=eth0,bridge=vmbr2,hwaddr=BC:24:11:00:00:02".into(),
        );
        assert!(check_slots(l, &stale, &cfg).is_err());
        assert!(claims_slots(&Action::SetConfig {
            vmid: Vmid::new(104).unwrap(),
            kind: l,
            change: keep.clone(),
        }));
        // Not a disk: the everyday token's business.
        assert!(!touches_volumes(&Action::SetConfig {
            vmid: Vmid::new(104).unwrap(),
            kind: l,
            change: keep,
        }));
    }

    #[test]
    fn a_signed_change_must_name_exactly_the_volumes_its_keys_hold() {
        let q = GuestKind::Qemu;
        let cfg = observed(
            "D",
            &[
                ("scsi0", "local-lvm:vm-101-disk-0,size=32G"),
                ("unused0", "local-lvm:vm-101-disk-7"),
                ("ide2", "none,media=cdrom"),
            ],
        );
        // The review's finding: unused0 holds disk-7, the signature names disk-0.
        let lie = change(&[], &["unused0"], &[("unused0", "local-lvm:vm-101-disk-0")]);
        let e = check_slots(q, &lie, &cfg).unwrap_err();
        assert!(
            e.contains("unused0")
                && e.contains("local-lvm:vm-101-disk-0")
                && e.contains("local-lvm:vm-101-disk-7"),
            "{e}"
        );
        let truth = change(&[], &["unused0"], &[("unused0", "local-lvm:vm-101-disk-7")]);
        assert_eq!(check_slots(q, &truth, &cfg), Ok(()));
        // A touched key that holds a volume must be named.
        let silent = change(&[("scsi0", "local-lvm:8")], &[], &[]);
        assert!(check_slots(q, &silent, &cfg).unwrap_err().contains("scsi0"));
        // A slot that holds nothing is named by nothing (an empty CD-ROM, a new disk).
        let add = change(
            &[
                ("scsi1", "local-lvm:8"),
                ("ide2", "local:iso/x.iso,media=cdrom"),
            ],
            &[],
            &[],
        );
        assert_eq!(check_slots(q, &add, &cfg), Ok(()));
        let invented = change(
            &[("scsi1", "local-lvm:8")],
            &[],
            &[("scsi1", "local-lvm:vm-101-disk-0")],
        );
        assert!(check_slots(q, &invented, &cfg).is_err());
        // Another digest: the config the signature was made for is not the one on the node.
        let mut stale = truth.clone();
        stale.digest = Some("E".into());
        assert!(check_slots(q, &stale, &cfg).unwrap_err().contains("digest"));
        stale.digest = None;
        assert!(check_slots(q, &stale, &cfg).is_err());
        // `removes` naming a key the change leaves alone.
        let extra = change(
            &[],
            &["unused0"],
            &[
                ("unused0", "local-lvm:vm-101-disk-7"),
                ("scsi0", "local-lvm:vm-101-disk-0"),
            ],
        );
        assert!(check_slots(q, &extra, &cfg).unwrap_err().contains("scsi0"));
        // A slot whose value names two volumes is never taken as either.
        let two = observed(
            "D",
            &[(
                "scsi0",
                "local-lvm:vm-101-disk-0,file=local-lvm:vm-101-disk-9",
            )],
        );
        let del = change(&[], &["scsi0"], &[("scsi0", "local-lvm:vm-101-disk-0")]);
        assert!(check_slots(q, &del, &two)
            .unwrap_err()
            .contains("ambiguous"));
    }

    #[test]
    fn a_move_names_the_volume_its_slot_holds_at_the_signed_digest() {
        let q = GuestKind::Qemu;
        let cfg = ObservedConfig {
            digest: "d1".into(),
            values: [
                (
                    "scsi1".to_string(),
                    "local-lvm:vm-104-disk-1,discard=on,size=8G".to_string(),
                ),
                (
                    "ide2".to_string(),
                    "local:iso/debian.iso,media=cdrom".to_string(),
                ),
            ]
            .into(),
        };
        let mv = |disk: &str, volume: &str, digest: Option<&str>| Action::MoveDisk {
            vmid: Vmid::new(104).unwrap(),
            kind: q,
            disk: disk.into(),
            volume: volume.into(),
            storage: "local-zfs".into(),
            delete: true,
            digest: digest.map(str::to_string),
        };
        assert_eq!(
            check_claims(&mv("scsi1", "local-lvm:vm-104-disk-1", Some("d1")), &cfg),
            Ok(())
        );
        let wrong = check_claims(&mv("scsi1", "local-lvm:vm-200-disk-0", Some("d1")), &cfg);
        assert!(
            wrong
                .as_ref()
                .is_err_and(|e| e.contains("local-lvm:vm-104-disk-1")),
            "{wrong:?}"
        );
        assert!(check_claims(&mv("scsi1", "local-lvm:vm-104-disk-1", Some("d0")), &cfg).is_err());
        assert!(check_claims(&mv("scsi1", "local-lvm:vm-104-disk-1", None), &cfg).is_err());
        assert!(check_claims(&mv("scsi2", "local-lvm:vm-104-disk-1", Some("d1")), &cfg).is_err());
        assert!(check_claims(&mv("ide2", "local:iso/debian.iso", Some("d1")), &cfg).is_err());
        assert!(check_claims(&mv("unused0", "local-lvm:vm-104-disk-1", Some("d1")), &cfg).is_err());
        assert!(
            touches_volumes(&mv("scsi1", "x", None)) && binds_identity(&mv("scsi1", "x", None))
        );

        // A signed job asking for a move must give a disk slot, a storage id and the digest.
        let good = binding_of(&mv("scsi1", "local-lvm:vm-104-disk-1", Some("d1")), None);
        for (field, value) in [
            ("disk", json!("unused0")),
            ("disk", json!("net0")),
            ("storage", json!("local-zfs,delete=1")),
            ("digest", Value::Null),
        ] {
            let mut p = good.params.clone();
            p.insert(field.into(), value.clone());
            assert!(
                action_from_op("guest.move", Some(104), &p).is_err(),
                "{field} = {value}"
            );
        }
    }
}

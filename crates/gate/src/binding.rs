//! Op-to-action binding: the one mapping between an `Action` and the (op kind, guest, params)
//! an operator signs. The gate compares the verified op with the binding of the action it holds,
//! field by field, exactly; a signed job is turned into an action by the inverse mapping. Must
//! never let a field the operator did not sign influence what runs.
//!
//! A config change that deletes or replaces a data-bearing key binds the volumes it removes
//! (`removes`: key → volume id, read from the config it was planned against) and the config
//! `digest` it was planned against: the signature names the data, not a slot such as `unused0`,
//! and the write cannot land on a config that changed since (Proxmox refuses a stale digest). A
//! signed job that touches data-bearing keys without both is refused. Other config changes bind
//! neither (their digest is Proxmox's business; the executor still sends it).

use serde_json::{json, Map, Value};
use steward_classifier::is_data_bearing_key;
use steward_model::{Action, ConfigChange, GuestKind, Vmid};

/// The data-bearing keys a change deletes or replaces.
fn data_keys(kind: GuestKind, change: &ConfigChange) -> Vec<&String> {
    change
        .set
        .keys()
        .chain(change.delete.iter())
        .filter(|k| is_data_bearing_key(kind, k))
        .collect()
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
        // key, an identity): whatever it is, it names the guest.
        Action::SetConfig { .. } => true,
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
            p
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
            }))
            .map_err(|e| format!("params.set/delete/digest/removes: {e}"))?;
            let data = data_keys(kind, &change);
            if !data.is_empty() {
                if change.digest.is_none() {
                    return Err(format!(
                        "a change to data-bearing keys ({}) must carry params.digest, the config it was planned against",
                        data.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
                if let Some(k) = data
                    .iter()
                    .find(|k| !change.removes.contains_key(k.as_str()))
                {
                    return Err(format!(
                        "params.removes must name the volume {k} holds (the data the signature destroys)"
                    ));
                }
            }
            Action::SetConfig { vmid, kind, change }
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
                },
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
        // A job deleting a disk without the digest, or without naming the volume, is refused.
        let mut p = b.params.clone();
        p["digest"] = Value::Null;
        assert!(action_from_op(b.op, Some(104), &p)
            .unwrap_err()
            .contains("digest"));
        let mut p = b.params.clone();
        p["removes"] = json!({});
        assert!(action_from_op(b.op, Some(104), &p)
            .unwrap_err()
            .contains("removes"));
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
}

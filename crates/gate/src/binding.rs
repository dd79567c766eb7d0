//! Op-to-action binding: the one mapping between an `Action` and the (op kind, guest, params)
//! an operator signs. The gate compares the verified op with the binding of the action it holds,
//! field by field, exactly; a signed job is turned into an action by the inverse mapping. Must
//! never let a field the operator did not sign influence what runs (a config `digest` is
//! excluded because Proxmox, not the operator, owns it; the executor still sends it).

use serde_json::{json, Map, Value};
use steward_model::{Action, ConfigChange, GuestKind, Vmid};

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

/// The binding of `action`.
pub fn binding_of(action: &Action) -> Binding {
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
        Action::SetConfig { change, .. } => {
            json!({"kind": kind, "set": change.set, "delete": change.delete})
        }
        Action::Create { config, .. } => json!({"kind": kind, "config": config}),
        Action::Shutdown {
            timeout_secs,
            force_stop,
            ..
        } => json!({"kind": kind, "timeout_secs": timeout_secs, "force_stop": force_stop}),
        Action::Start { .. } | Action::Stop { .. } | Action::Reboot { .. } => json!({"kind": kind}),
    };
    Binding {
        op: action.op_kind(),
        guest: action.vmid(),
        params: obj(params),
    }
}

/// The action a signed job asks for (the inverse of [`binding_of`]); re-binding the result must
/// give back exactly the signed params, or the job is refused.
pub fn action_from_op(
    op: &str,
    guest: Option<u32>,
    params: &Map<String, Value>,
) -> Result<Action, String> {
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
                "digest": null,
            }))
            .map_err(|e| format!("params.set/delete: {e}"))?;
            Action::SetConfig { vmid, kind, change }
        }
        other => return Err(format!("op {other:?} is not a signed job Steward runs")),
    };
    if binding_of(&action).params != *params {
        return Err("params carry fields the op does not use".into());
    }
    Ok(action)
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
                    digest: None,
                },
            },
        ] {
            let b = binding_of(&a);
            assert_eq!(action_from_op(b.op, Some(b.guest.get()), &b.params), Ok(a));
        }
    }

    #[test]
    fn extra_or_missing_params_are_refused() {
        let mut p =
            obj(json!({"kind": "qemu", "purge": true, "destroy_unreferenced_disks": true, "x": 1}));
        assert!(action_from_op("guest.destroy", Some(104), &p).is_err());
        p.remove("x");
        assert!(action_from_op("guest.destroy", Some(104), &p).is_ok());
        p.remove("purge");
        assert!(action_from_op("guest.destroy", Some(104), &p).is_err());
        assert!(action_from_op("guest.destroy", None, &p).is_err());
        assert!(action_from_op("guest.start", Some(104), &obj(json!({"kind": "qemu"}))).is_err());
    }
}

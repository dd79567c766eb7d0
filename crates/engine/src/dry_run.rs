//! What the next pass would do, without the engine and without writing: read the node once
//! through the read half of the API, plan every guest the document names exactly as a pass
//! would (`steward_planner::plan_guest`), and say of each action whether the classifier would
//! hold it, which fields it changes (the node's value beside the document's) and which volumes
//! it would remove. What `steward-agent plan` prints. It must never hold a writer: it is given
//! a `GuestRead`, and nothing here can send a write.
//!
//! The classifier is asked without the journal's provenance facts, so a destroy the agent's own
//! records would allow shows as held: a dry run errs towards "needs a signature".

use std::collections::BTreeSet;
use steward_gate::{classify, Context};
use steward_model::{volume_of, volume_size, Action, DesiredState, Vmid};
use steward_planner::{ActualGuest, ActualState};
use steward_proxmox_client::{ApiError, GuestRead};
use steward_view::{ActionPlan, FieldChange, GuestPlan, PlanView};

/// Reads the guests of the node (all of them, or those in `only`) with their configs (pending
/// values applied) and pending keys: two requests and one per guest.
pub async fn read_node(
    api: &dyn GuestRead,
    only: Option<&BTreeSet<Vmid>>,
) -> Result<ActualState, ApiError> {
    let mut out = ActualState::new();
    for entry in api.list_guests().await? {
        if only.is_some_and(|o| !o.contains(&entry.vmid)) {
            continue;
        }
        let (cfg, pending) = api.config_and_pending(entry.kind, entry.vmid).await?;
        out.insert(
            entry.vmid,
            ActualGuest {
                vmid: entry.vmid,
                kind: entry.kind,
                status: entry.status,
                config: cfg.values,
                digest: cfg.digest,
                pending,
            },
        );
    }
    Ok(out)
}

/// The dry run of `desired` against `actual`.
pub fn explain(desired: &DesiredState, actual: &ActualState) -> PlanView {
    let mut view = PlanView::default();
    for spec in &desired.guests {
        let node = actual.get(&spec.vmid);
        let plan = steward_planner::plan_guest(spec, node);
        if plan.actions.is_empty() && plan.notes.is_empty() && plan.problems.is_empty() {
            continue;
        }
        view.guests.push(GuestPlan {
            vmid: spec.vmid.get(),
            kind: spec.kind.as_str().into(),
            actions: plan.actions.iter().map(|a| action(a, node)).collect(),
            notes: plan
                .problems
                .into_iter()
                .chain(plan.notes)
                .map(|n| n.message)
                .collect(),
        });
    }
    view
}

fn field(field: &str, observed: Option<&String>, desired: Option<String>) -> FieldChange {
    FieldChange {
        field: field.into(),
        observed: observed.cloned(),
        desired,
    }
}

fn action(a: &Action, node: Option<&ActualGuest>) -> ActionPlan {
    let verdict = classify(a, &[], Context::default());
    let have = |k: &str| node.and_then(|g| g.config.get(k));
    let status = node.map(|g| g.status.clone());
    let sized = |key: &str, vol: &str| {
        let size = have(key)
            .and_then(|v| volume_size(v))
            .unwrap_or("size unknown");
        format!("{vol} ({size})")
    };
    let mut fields = Vec::new();
    let mut removes = Vec::new();
    match a {
        Action::Create { config, .. } => {
            fields.extend(config.iter().map(|(k, v)| field(k, None, Some(v.clone()))));
        }
        Action::SetConfig { change, .. } => {
            for (k, v) in &change.set {
                fields.push(field(k, have(k), Some(v.clone())));
            }
            for k in &change.delete {
                fields.push(field(k, have(k), None));
            }
            removes.extend(change.removes.iter().map(|(k, v)| sized(k, v)));
        }
        Action::ResizeDisk { disk, size, .. } => {
            let now = have(disk).and_then(|v| volume_size(v)).map(str::to_string);
            fields.push(FieldChange {
                field: format!("{disk}.size"),
                observed: now,
                desired: Some(size.clone()),
            });
        }
        Action::MoveDisk {
            disk,
            volume,
            storage,
            delete,
            ..
        } => {
            fields.push(FieldChange {
                field: format!("{disk}.storage"),
                observed: volume.split_once(':').map(|(s, _)| s.to_string()),
                desired: Some(storage.clone()),
            });
            if *delete {
                removes.push(sized(disk, volume));
            }
        }
        Action::Start { .. } => {
            fields.push(field("status", status.as_ref(), Some("running".into())))
        }
        Action::Stop { .. } | Action::Shutdown { .. } => {
            fields.push(field("status", status.as_ref(), Some("stopped".into())))
        }
        Action::Reboot { .. } => {
            fields.push(field("status", status.as_ref(), Some("rebooted".into())))
        }
        Action::Destroy { kind, .. } | Action::RestoreOver { kind, .. } => {
            fields.push(field("guest", status.as_ref(), None));
            if let Some(g) = node {
                for (k, v) in &g.config {
                    if steward_gate::is_data_bearing_key(*kind, k) {
                        if let Ok(Some(vol)) = volume_of(*kind, k, v) {
                            removes.push(sized(k, vol));
                        }
                    }
                }
            }
        }
        Action::SnapshotRollback { snapshot, .. } => {
            fields.push(field("snapshot", None, Some(snapshot.clone())))
        }
    }
    ActionPlan {
        op: a.op_kind().into(),
        destructive: verdict.is_destructive(),
        reason: verdict.reason().into(),
        fields,
        removes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_model::{GuestKind, GuestSpec, GuestState};

    #[test]
    fn a_detach_is_marked_held_and_names_its_volume_with_its_size() {
        let config: std::collections::BTreeMap<String, String> = [
            ("scsi0", "local-lvm:vm-101-disk-0,size=32G"),
            ("scsi1", "local-lvm:vm-101-disk-1,size=8G"),
            ("memory", "2048"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let vmid = Vmid::new(101).unwrap();
        let node: ActualState = [(
            vmid,
            ActualGuest {
                vmid,
                kind: GuestKind::Qemu,
                status: "stopped".into(),
                config,
                digest: "d".into(),
                pending: BTreeSet::new(),
            },
        )]
        .into();
        let doc = r#"{"version":1,"generation":1,"guests":[{"vmid":101,"kind":"qemu","state":"running",
            "disks":"exact","scsi0":{"storage":"local-lvm","size":"32G"}}]}"#;
        let d = steward_planner::document::parse_json("d", doc).unwrap();
        let v = explain(&d, &node);
        let g = &v.guests[0];
        assert_eq!(g.actions.len(), 2, "{g:?}");
        assert_eq!(g.actions[0].op, "guest.start");
        assert!(!g.actions[0].destructive);
        assert_eq!(g.actions[0].fields[0].observed.as_deref(), Some("stopped"));
        // The detach comes last: held, naming the volume and its size.
        let a = &g.actions[1];
        assert!(a.destructive, "{a:?}");
        assert_eq!(a.removes, vec!["local-lvm:vm-101-disk-1 (8G)".to_string()]);
        assert_eq!(a.fields[0].desired, None);
        assert!(v.changes());
        // Nothing to do: no guests listed, no changes.
        let mut same = GuestSpec::new(vmid, GuestKind::Qemu, GuestState::Stopped);
        same.memory = Some(steward_model::MiB(2048));
        let d3 = DesiredState {
            version: 1,
            generation: 1,
            guests: vec![same],
        };
        assert!(!explain(&d3, &node).changes());
    }
}

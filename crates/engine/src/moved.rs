//! Where a guest went, for an op that failed: read from one `/cluster/resources` answer, so a
//! failure that a migration or an HA move caused ends its op as moved (`OpState::Moved`), not
//! as a failure the retry policy would count. It must never turn a failure into a move on a
//! guess: only a node other than this one, or this node's `lock: migrate` with a migration
//! task running, says moved.

use steward_gate::Whereabouts;
use steward_model::Vmid;
use steward_proxmox_client::{ClusterView, GuestRead, TaskFilter, TaskSource};

/// Where `vmid` is by `view`.
pub(crate) fn whereabouts(view: &ClusterView, vmid: Vmid) -> Whereabouts {
    if let Some(node) = view.elsewhere.get(&vmid) {
        return Whereabouts::Elsewhere { node: node.clone() };
    }
    match view.here.iter().find(|g| g.vmid == vmid) {
        Some(g) if g.lock.as_deref() == Some("migrate") => Whereabouts::Migrating,
        Some(_) => Whereabouts::Here,
        None => Whereabouts::Unknown,
    }
}

/// Where `vmid` is now, asking the cluster once; `Unknown` when it does not answer. A
/// `lock: migrate` counts only while a migration task runs for the guest: a failed or killed
/// migration can leave the lock behind with nothing moving (then it is `Here`, and the engine's
/// lock policy parks it for an administrator).
pub(crate) async fn locate(api: &dyn GuestRead, vmid: Vmid) -> Whereabouts {
    let seen = match api.cluster_view().await {
        Ok(view) => whereabouts(&view, vmid),
        Err(e) => {
            tracing::debug!(guest = %vmid, error = %e, "where the guest is could not be read");
            return Whereabouts::Unknown;
        }
    };
    if seen != Whereabouts::Migrating {
        return seen;
    }
    let running = api
        .list_tasks(&TaskFilter {
            vmid: Some(vmid),
            source: TaskSource::Active,
            ..TaskFilter::default()
        })
        .await;
    match running {
        Ok(tasks)
            if tasks
                .iter()
                .any(|t| t.running && is_migration(&t.upid.kind)) =>
        {
            seen
        }
        Ok(_) => Whereabouts::Here,
        Err(e) => {
            tracing::debug!(guest = %vmid, error = %e, "the node's running tasks could not be read");
            Whereabouts::Unknown
        }
    }
}

/// A migration's task type: `qmigrate` (QEMU), `vzmigrate` (LXC).
fn is_migration(kind: &str) -> bool {
    matches!(kind, "qmigrate" | "vzmigrate")
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_model::GuestKind;
    use steward_proxmox_client::GuestEntry;

    fn entry(vmid: u64, lock: Option<&str>) -> GuestEntry {
        GuestEntry {
            vmid: Vmid::new(vmid).expect("vmid"),
            kind: GuestKind::Qemu,
            status: "running".into(),
            name: None,
            maxmem: None,
            lock: lock.map(str::to_string),
            template: false,
            hastate: None,
        }
    }

    #[test]
    fn only_another_node_or_a_migrate_lock_says_moved() {
        let v = |n: u64| Vmid::new(n).expect("vmid");
        let view = ClusterView {
            here: vec![
                entry(100, None),
                entry(101, Some("migrate")),
                entry(102, Some("backup")),
            ],
            elsewhere: [(v(103), "pve-b".to_string())].into_iter().collect(),
            quorate: true,
        };
        assert_eq!(whereabouts(&view, v(100)), Whereabouts::Here);
        assert_eq!(whereabouts(&view, v(101)), Whereabouts::Migrating);
        assert_eq!(whereabouts(&view, v(102)), Whereabouts::Here);
        assert_eq!(
            whereabouts(&view, v(103)),
            Whereabouts::Elsewhere {
                node: "pve-b".into()
            }
        );
        assert_eq!(whereabouts(&view, v(104)), Whereabouts::Unknown);
    }
}

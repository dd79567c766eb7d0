//! Migration between the cluster's nodes, as qemu-server's and pve-container's `migrate_vm`
//! do it: the checks made before a worker is forked (target not the local node, quorum, the
//! target exists, the config exists, QEMU's lock check, a running guest needs `online`, or for a
//! container `online` or `restart`), then a `qmigrate`/`vzmigrate` task holding `lock: migrate`
//! whose worker makes the rest (a running VM's local disks need `with-local-disks`; a running
//! container cannot migrate live; a container's lock). When the task ends the guest's config and
//! its volumes leave the source and land on the target, unlocked, running if it ran (QEMU
//! online, LXC restart mode). It must never leave a guest on two nodes or on none.

use crate::cluster::Cluster;
use crate::forms::Kind;
use crate::node::{Effect, Node, Refusal, SimGuest};
use crate::upid::TaskId;
use crate::volumes::{self, Volume};
use std::collections::BTreeMap;

/// A guest whose migration ended, on its way from one node's state to another's.
#[derive(Debug)]
pub struct Departure {
    /// VMID.
    pub vmid: u32,
    /// Its config, snapshots and power state.
    pub guest: SimGuest,
    /// Its volumes, by id.
    pub volumes: Vec<(String, Volume)>,
    /// The node it goes to.
    pub target: String,
}

fn flag(params: &BTreeMap<String, String>, k: &str) -> bool {
    params
        .get(k)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

impl Cluster {
    /// `POST /nodes/{source}/{kind}/{vmid}/migrate` (privileges already checked); also what a
    /// root shell's `qm migrate` / `pct migrate` does, with `user` `root@pam`.
    pub fn migrate(
        &mut self,
        source: &str,
        kind: Kind,
        vmid: u32,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let target = params.get("target").cloned().unwrap_or_default();
        if target == source {
            return Err(Refusal::param("target", "target is local node."));
        }
        self.require_quorum(source)?;
        if !self.nodes.contains_key(&target) {
            return Err(Refusal::new(
                500,
                format!("no such cluster node '{target}'"),
            ));
        }
        let node = self
            .node_mut(source)
            .ok_or_else(|| Refusal::new(500, format!("no such cluster node '{source}'")))?;
        node.migrate(kind, vmid, &target, params, user)
    }
}

impl Node {
    /// The node's part of a migration: its checks before the worker, then the task.
    fn migrate(
        &mut self,
        kind: Kind,
        vmid: u32,
        target: &str,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let g = self.guest(kind, vmid)?;
        let online = flag(params, "online");
        let restart = flag(params, "restart");
        let locked = g
            .lock
            .as_ref()
            .map(|l| format!("{} is locked ({l})", kind.who()));
        match kind {
            Kind::Qemu => {
                if let Some(l) = locked.clone() {
                    return Err(Refusal::new(500, l));
                }
                if g.running() && !online {
                    return Err(Refusal::new(
                        500,
                        "can't migrate running VM without --online",
                    ));
                }
            }
            Kind::Lxc => {
                if g.running() && !online && !restart {
                    return Err(Refusal::new(
                        500,
                        "can't migrate running container without --online or --restart",
                    ));
                }
            }
        }
        let local_disks = g
            .config
            .iter()
            .any(|(k, v)| volumes::is_disk_key(kind, k) && volumes::volid(v).is_some());
        let in_worker = match kind {
            Kind::Qemu if g.running() && local_disks && !flag(params, "with-local-disks") => {
                Some("can't migrate VM - check log".to_string())
            }
            Kind::Lxc if locked.is_some() => locked,
            Kind::Lxc if g.running() && online => {
                Some("lxc live migration is currently not implemented".to_string())
            }
            _ => None,
        };
        let ty = match kind {
            Kind::Qemu => "qmigrate",
            Kind::Lxc => "vzmigrate",
        };
        self.st.counters.count(vmid, "migrate", user);
        if let Some(e) = in_worker {
            return Ok(self.failing_task(ty, vmid, user, e));
        }
        Ok(self.start_task(
            ty,
            Some(vmid),
            user,
            Some("migrate"),
            Effect::Migrate {
                target: target.to_string(),
            },
        ))
    }

    /// A migration task ended: the guest and its volumes leave this node.
    pub(crate) fn depart(&mut self, vmid: u32, target: &str) -> Result<(), String> {
        let guest = self
            .st
            .guests
            .remove(&vmid)
            .ok_or_else(|| format!("Configuration file for {vmid} vanished"))?;
        let volumes = self
            .st
            .volumes
            .owned_by(vmid)
            .into_iter()
            .filter_map(|id| {
                let v = self.st.volumes.volumes.remove(&id)?;
                Some((id, v))
            })
            .collect();
        self.departures.push(Departure {
            vmid,
            guest,
            volumes,
            target: target.to_string(),
        });
        Ok(())
    }

    /// A migrated guest lands here, unlocked.
    pub(crate) fn arrive(&mut self, d: Departure) {
        let mut g = d.guest;
        g.lock = None;
        g.touch();
        for (id, v) in d.volumes {
            self.st.volumes.volumes.insert(id, v);
        }
        self.st.guests.insert(d.vmid, g);
        self.changed();
    }
}

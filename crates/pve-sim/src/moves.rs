//! Moving a disk to another storage as qemu-server (`POST …/qemu/{vmid}/move_disk`, worker
//! `qmmove`) and pve-container (`POST …/lxc/{vmid}/move_volume`, worker `move_volume`) do it:
//! the checks made under the config lock before the worker forks (a 500 with the reason), a
//! copy allocated on the target storage when the task ends, the slot rewritten to name the copy
//! with its options kept, and the source either freed (`delete=1`) or kept as `unusedN`. A
//! container must be stopped and is locked `disk` while its volume moves; a VM moves live.
//! Moving to another guest (`target-vmid`) is not simulated and is refused. Texts and the
//! order of checks are read from qemu-server's `move_vm_disk` and pve-container's
//! `move_volume` (what each checks before forking a worker, and what only the worker finds).
//! It must never free a volume a snapshot still references, nor one it did not copy.

use crate::forms::Kind;
use crate::node::{Effect, Node, Refusal};
use crate::upid::TaskId;
use crate::volumes;
use std::collections::BTreeMap;

fn fail(msg: impl Into<String>) -> Refusal {
    Refusal::new(500, msg)
}

impl Node {
    /// `POST …/move_disk` (QEMU: `disk`) or `…/move_volume` (LXC: `volume`).
    pub fn move_disk(
        &mut self,
        kind: Kind,
        vmid: u32,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let key = match kind {
            Kind::Qemu => "disk",
            Kind::Lxc => "volume",
        };
        let disk = params.get(key).cloned().unwrap_or_default();
        let storage = params.get("storage").cloned().unwrap_or_default();
        let delete = params
            .get("delete")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"));
        if params.contains_key("target-vmid") {
            return Err(Refusal::new(
                501,
                "moving a disk to another guest is not simulated",
            ));
        }
        if storage.is_empty() {
            return Err(Refusal::param(
                "storage",
                "property is missing and it is not optional",
            ));
        }
        let g = self.guest(kind, vmid)?;
        if let Some(l) = &g.lock {
            return Err(fail(format!("{} is locked ({l})", kind.who())));
        }
        let stale = params.get("digest").is_some_and(|d| *d != Node::digest(g));
        const STALE: &str =
            "detected modified configuration - file changed by other user? Try again.";
        let value = g.config.get(&disk).cloned();
        let source = value
            .as_deref()
            .and_then(volumes::volid)
            .map(str::to_string);
        let in_use = |vol: &str| {
            g.snapshots
                .values()
                .any(|s| s.config.values().any(|v| volumes::volid(v) == Some(vol)))
        };
        // In the order qemu-server's `load_and_check_move` and pve-container's
        // `move_to_storage_checks` check, before the worker forks; what they leave to the
        // worker fails the task.
        let mut in_worker: Option<String> = None;
        match kind {
            Kind::Qemu => {
                if stale {
                    return Err(fail(STALE));
                }
                let Some(value) = &value else {
                    return Err(fail(format!("disk '{disk}' does not exist")));
                };
                if value.split(',').any(|p| p == "media=cdrom") {
                    return Err(fail("you can't move a cdrom"));
                }
                let Some(src) = &source else {
                    return Err(fail(format!("disk '{disk}' has no associated volume")));
                };
                if src.split(':').next() == Some(storage.as_str()) {
                    return Err(fail("you can't move to the same storage with same format"));
                }
                let target = self.st.volumes.storages.iter().find(|s| s.name == storage);
                match target {
                    None => return Err(fail(format!("storage '{storage}' does not exist"))),
                    Some(t) if !t.content.iter().any(|c| c == "images") => {
                        return Err(Refusal::param(
                            "storage",
                            format!("storage '{storage}' does not support vm images"),
                        ))
                    }
                    Some(_) => {}
                }
                let other_drive = g.config.iter().any(|(k, v)| {
                    k != &disk && volumes::is_disk_key(kind, k) && volumes::volid(v) == Some(src)
                });
                if delete && (in_use(src) || other_drive) {
                    return Err(fail(
                        "you can't move a disk with snapshots and delete the source",
                    ));
                }
                if disk == "tpmstate0" && g.running() {
                    in_worker = Some("cannot move TPM state while VM is running".into());
                }
            }
            Kind::Lxc => {
                if g.running() {
                    return Err(fail("cannot move volumes of a running container"));
                }
                if disk.starts_with("unused") {
                    return Err(fail(format!(
                        "cannot move volume '{disk}', only configured volumes can be moved to another storage"
                    )));
                }
                if disk != "rootfs" && !is_mp(&disk) || value.is_none() {
                    return Err(fail(format!("Can't parse {disk}")));
                }
                if delete && source.as_deref().is_some_and(in_use) {
                    return Err(fail(
                        "you can't move a volume with snapshots and delete the source",
                    ));
                }
                if stale {
                    return Err(fail(STALE));
                }
                // pve-container leaves the storage and the mount's type to the worker.
                let target = self.st.volumes.storages.iter().find(|s| s.name == storage);
                in_worker = match (target, &source) {
                    (_, None) => Some(format!(
                        "cannot copy volumes of type {}",
                        if value.as_deref().is_some_and(|v| v.starts_with("/dev/")) {
                            "device"
                        } else {
                            "bind"
                        }
                    )),
                    (None, _) => Some(format!("storage '{storage}' does not exist")),
                    (Some(t), _) if !t.content.iter().any(|c| c == "rootdir") => Some(format!(
                        "content type 'rootdir' is not available or configured on storage '{storage}'"
                    )),
                    _ => None,
                };
            }
        }
        let source = source.unwrap_or_default();
        let (ty, lock) = match kind {
            Kind::Qemu => ("qmmove", None),
            Kind::Lxc => ("move_volume", Some("disk")),
        };
        self.st.counters.count(vmid, "move", user);
        if let Some(e) = in_worker {
            // A container stays locked `disk` only while its worker runs.
            return Ok(self.failing_task(ty, vmid, user, e));
        }
        Ok(self.start_task(
            ty,
            Some(vmid),
            user,
            lock,
            Effect::Move {
                disk,
                source,
                storage,
                delete,
            },
        ))
    }
}

fn is_mp(key: &str) -> bool {
    key.strip_prefix("mp")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The slot's value once its volume was copied to `copy`: the same options, the new volume.
pub(crate) fn moved_value(value: &str, copy: &str) -> String {
    std::iter::once(copy.to_string())
        .chain(
            value
                .split(',')
                .skip(1)
                .filter(|p| !p.starts_with("file=") && !p.starts_with("volume="))
                .map(str::to_string),
        )
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_value_keeps_its_options_and_names_the_copy() {
        assert_eq!(
            moved_value(
                "local-lvm:vm-100-disk-1,discard=on,size=8G",
                "local-zfs:vm-100-disk-0"
            ),
            "local-zfs:vm-100-disk-0,discard=on,size=8G"
        );
        assert!(is_mp("mp0") && is_mp("mp12") && !is_mp("mp") && !is_mp("mpx"));
    }
}

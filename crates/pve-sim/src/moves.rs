//! Moving a disk to another storage as qemu-server (`POST …/qemu/{vmid}/move_disk`, worker
//! `qmmove`) and pve-container (`POST …/lxc/{vmid}/move_volume`, worker `move_volume`) do it:
//! the checks made under the config lock before the worker forks (a 500 with the reason), a
//! copy allocated on the target storage when the task ends, the slot rewritten to name the copy
//! with its options kept, and the source either freed (`delete=1`) or kept as `unusedN`. A
//! container must be stopped and is locked `disk` while its volume moves; a VM moves live.
//! Moving to another guest (`target-vmid`) is not simulated and is refused. It must never free
//! a volume a snapshot still references, nor one it did not copy.

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
        if kind == Kind::Lxc && g.running() {
            return Err(fail("cannot move volumes of a running container"));
        }
        if params.get("digest").is_some_and(|d| *d != Node::digest(g)) {
            return Err(fail(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
        let value = match (kind, g.config.get(&disk)) {
            (Kind::Lxc, _) if disk != "rootfs" && !is_mp(&disk) => {
                return Err(fail(format!("Can't parse {disk}")))
            }
            (Kind::Qemu, None) => return Err(fail(format!("disk '{disk}' does not exist"))),
            (Kind::Lxc, None) => return Err(fail(format!("{disk} does not exist"))),
            (_, Some(v)) => v.clone(),
        };
        if kind == Kind::Qemu && value.split(',').any(|p| p == "media=cdrom") {
            return Err(fail("you can't move a cdrom"));
        }
        let Some(source) = volumes::volid(&value).map(str::to_string) else {
            return Err(fail(match kind {
                Kind::Qemu => format!("disk '{disk}' has no associated volume"),
                Kind::Lxc => "cannot move volumes of type bind or device".to_string(),
            }));
        };
        if source.split(':').next() == Some(storage.as_str()) {
            return Err(fail("you can't move to the same storage with same format"));
        }
        let target = self
            .st
            .volumes
            .storages
            .iter()
            .find(|s| s.name == storage)
            .ok_or_else(|| fail(format!("storage '{storage}' does not exist")))?;
        let content = match kind {
            Kind::Qemu => "images",
            Kind::Lxc => "rootdir",
        };
        if !target.content.iter().any(|c| c == content) {
            return Err(fail(format!(
                "storage '{storage}' does not support content-type '{content}'"
            )));
        }
        let in_snapshot = g.snapshots.values().any(|s| {
            s.config
                .values()
                .any(|v| volumes::volid(v) == Some(source.as_str()))
        });
        if delete && in_snapshot {
            return Err(fail(match kind {
                Kind::Qemu => "you can't move a disk with snapshots and delete the source",
                Kind::Lxc => "you can't move a volume with snapshots and delete the source",
            }));
        }
        let (ty, lock) = match kind {
            Kind::Qemu => ("qmmove", None),
            Kind::Lxc => ("move_volume", Some("disk")),
        };
        self.st.counters.count(vmid, "move", user);
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

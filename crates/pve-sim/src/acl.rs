//! Privileges as a Proxmox node computes them for a privilege-separated API token: ACL entries
//! (a role on a path, propagating or not), walked from `/` to the checked path, where an entry
//! on a more specific path replaces what was inherited (pve-access-control `roles()`), and the
//! built-in roles made from its privilege groups (`create_roles()`). Tokens are never
//! `root@pam`: nothing here grants root-only powers. It must never grant a privilege that no
//! entry on the path's way confers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One privilege group: (category, root, admin, user, audit).
type Group = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

/// Privilege groups as pve-access-control lists them.
const GROUPS: &[Group] = &[
    (
        "VM",
        &[],
        &[
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ],
        &[
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ],
        &["VM.Audit", "VM.GuestAgent.Audit"],
    ),
    (
        "Sys",
        &[
            "Sys.PowerMgmt",
            "Sys.Modify",
            "Sys.Incoming",
            "Sys.AccessNetwork",
        ],
        &["Sys.Console", "Sys.Syslog"],
        &[],
        &["Sys.Audit"],
    ),
    (
        "Datastore",
        &[],
        &["Datastore.Allocate", "Datastore.AllocateTemplate"],
        &["Datastore.AllocateSpace"],
        &["Datastore.Audit"],
    ),
    (
        "SDN",
        &[],
        &["SDN.Allocate", "SDN.Audit"],
        &["SDN.Use"],
        &["SDN.Audit"],
    ),
    (
        "User",
        &["Realm.Allocate"],
        &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        &[],
        &[],
    ),
    (
        "Pool",
        &[],
        &["Pool.Allocate"],
        &["Pool.Audit"],
        &["Pool.Audit"],
    ),
    (
        "Mapping",
        &[],
        &["Mapping.Modify"],
        &["Mapping.Use"],
        &["Mapping.Audit"],
    ),
];

/// The privileges of a built-in role (`Administrator`, `PVEAdmin`, `PVEAuditor`,
/// `PVEVMAdmin`, `PVEVMUser`, `PVEDatastoreUser`, …), or None for an unknown name.
pub fn role(name: &str) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut add = |ps: &[&str]| out.extend(ps.iter().map(|p| p.to_string()));
    match name {
        "NoAccess" => {}
        "Administrator" => {
            for (_, root, admin, user, audit) in GROUPS {
                add(root);
                add(admin);
                add(user);
                add(audit);
            }
            add(&["Permissions.Modify"]);
        }
        "PVEAdmin" => {
            for (_, _, admin, user, audit) in GROUPS {
                add(admin);
                add(user);
                add(audit);
            }
            out.remove("Mapping.Modify");
        }
        "PVEAuditor" => {
            for (_, _, _, _, audit) in GROUPS {
                add(audit);
            }
        }
        "PVETemplateUser" => add(&["VM.Clone", "VM.Audit"]),
        other => {
            let (cat, kind) = other.strip_prefix("PVE").and_then(|r| {
                r.strip_suffix("Admin")
                    .map(|c| (c, "admin"))
                    .or_else(|| r.strip_suffix("User").map(|c| (c, "user")))
            })?;
            let (_, _, admin, user, audit) = GROUPS.iter().find(|g| g.0 == cat)?;
            if kind == "admin" {
                add(admin);
            } else if user.is_empty() {
                return None;
            }
            add(user);
            add(audit);
        }
    }
    Some(out)
}

/// One ACL entry for a token: privileges (a role's, or a list) on a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// ACL path: `/`, `/vms`, `/vms/104`, `/storage/local-lvm`, `/nodes/pve-a`, …
    pub path: String,
    /// The privileges it confers there.
    pub privileges: BTreeSet<String>,
    /// Whether it applies below `path` too (Proxmox's default is yes).
    pub propagate: bool,
}

/// What a token may do: its ACL entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges(pub Vec<Grant>);

impl Privileges {
    /// `Administrator` on `/` (propagating): every privilege a token can hold.
    pub fn all() -> Privileges {
        Privileges::role_on("Administrator", "/").unwrap_or_default()
    }

    /// `PVEAuditor` on `/`: read-only.
    pub fn audit_only() -> Privileges {
        Privileges::role_on("PVEAuditor", "/").unwrap_or_default()
    }

    /// A built-in role on a path, propagating; None for an unknown role.
    pub fn role_on(role_name: &str, path: &str) -> Option<Privileges> {
        Some(Privileges(vec![Grant {
            path: path.into(),
            privileges: role(role_name)?,
            propagate: true,
        }]))
    }

    /// Adds a grant.
    pub fn and(mut self, path: &str, privileges: &[&str]) -> Privileges {
        self.0.push(Grant {
            path: path.into(),
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            propagate: true,
        });
        self
    }

    /// Parses `ROLE@PATH` or `Priv.A+Priv.B@PATH` (a trailing `!` on the path: not propagating).
    pub fn parse_grant(spec: &str) -> Result<Grant, String> {
        let (what, path) = spec
            .split_once('@')
            .ok_or_else(|| format!("{spec:?}: a grant is ROLE@PATH or Priv.A+Priv.B@PATH"))?;
        let (path, propagate) = match path.strip_suffix('!') {
            Some(p) => (p, false),
            None => (path, true),
        };
        if !path.starts_with('/') {
            return Err(format!("{spec:?}: the path must start with /"));
        }
        let privileges = match role(what) {
            Some(r) => r,
            None if what.contains('.') => what.split('+').map(str::to_string).collect(),
            None => return Err(format!("{spec:?}: no role {what:?}")),
        };
        let path = match path.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(Grant {
            path,
            privileges,
            propagate,
        })
    }

    /// The privileges in force at `path`: walk from `/` down; an entry at a level replaces
    /// what was inherited if it is on the final level or propagates.
    pub fn at(&self, path: &str) -> BTreeSet<String> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut current = BTreeSet::new();
        for depth in 0..=parts.len() {
            let here = format!("/{}", parts[..depth].join("/"));
            let last = depth == parts.len();
            let entries: Vec<&Grant> = self
                .0
                .iter()
                .filter(|g| g.path == here && (last || g.propagate))
                .collect();
            if !entries.is_empty() {
                current = entries
                    .iter()
                    .flat_map(|g| g.privileges.iter().cloned())
                    .collect();
            }
        }
        current
    }

    /// Whether `privilege` is in force at `path`.
    pub fn has(&self, path: &str, privilege: &str) -> bool {
        self.at(path).contains(privilege)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_paths_work_as_in_pve_access_control() {
        let vm_admin = role("PVEVMAdmin").unwrap();
        assert!(vm_admin.contains("VM.Allocate") && vm_admin.contains("VM.PowerMgmt"));
        assert!(!vm_admin.contains("Sys.Modify"));
        let auditor = role("PVEAuditor").unwrap();
        assert!(auditor.contains("VM.Audit") && auditor.contains("Sys.Audit"));
        assert!(!auditor.contains("VM.PowerMgmt"));
        assert!(
            role("PVESysUser").is_none(),
            "Sys has no user privileges, so no such role"
        );
        assert!(role("PVEDatastoreUser")
            .unwrap()
            .contains("Datastore.AllocateSpace"));

        // Auditor everywhere, VM user on /vms, nothing on /vms/105 itself.
        let p = Privileges::audit_only()
            .and("/vms", &["VM.Audit", "VM.PowerMgmt"])
            .and("/vms/105", &[]);
        assert!(p.has("/vms/104", "VM.PowerMgmt"));
        assert!(
            !p.has("/vms/105", "VM.Audit"),
            "a more specific entry replaces"
        );
        assert!(p.has("/nodes/pve-a", "Sys.Audit"));
        let g = Privileges::parse_grant("PVEVMAdmin@/vms/104!").unwrap();
        assert!(!g.propagate && g.path == "/vms/104");
        assert!(Privileges::parse_grant("Nope@/").is_err());
        assert_eq!(
            Privileges::parse_grant("VM.Audit+Sys.Audit@/")
                .unwrap()
                .privileges
                .len(),
            2
        );
    }
}

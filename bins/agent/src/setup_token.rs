//! The commands an administrator runs to give the agent its two tokens. Why two: Proxmox
//! grants destroy, rollback and restore-over to any token with `VM.Allocate`, `VM.Snapshot` or
//! `VM.Backup`. The everyday token (observation, power, the config keys the classifier calls
//! benign) has none of them, so even a classifier bug on the everyday path meets a 403 from
//! Proxmox. The admin token is used only to create guests and by destructive executors after
//! the gate's signed path. Neither is ever given to the hub.
//! It must never print a token's secret nor grant the everyday token a destructive privilege.

/// The commands, as text.
pub fn commands(user: &str) -> String {
    format!(
        "# The agent's Proxmox user (no password: it authenticates with API tokens only).
pveum user add {user} --comment 'Steward agent'

# Everyday: observe, power, and benign config keys (NICs, cloud-init network settings). No
# VM.Allocate, VM.Config.Disk, VM.Snapshot, VM.Backup: destroy, disk changes, rollback and
# restore are refused by Proxmox. VM.Config.Cloudinit also covers `sshkeys` and `ciuser`,
# which the agent holds for a signature: drop it to have Proxmox refuse those too (cloud-init
# `ipconfigN`, `nameserver` and `searchdomain` then fail with a 403 on the everyday path).
pveum role add StewardEveryday --privs 'VM.Audit VM.PowerMgmt VM.Config.CPU VM.Config.Memory VM.Config.Options VM.Config.Network VM.Config.Cloudinit SDN.Use Sys.Audit Datastore.Audit'
pveum user token add {user} agent --privsep 1
pveum acl modify / --tokens '{user}!agent' --roles StewardEveryday

# Admin: creates (and destroys of guests the agent made itself), and destructive actions only
# after an operator's signature. Rollback needs VM.Snapshot.Rollback, not VM.Snapshot (which
# would also let it delete snapshots, which no path sends).
pveum role add StewardAdmin --privs 'VM.Audit VM.Allocate VM.PowerMgmt VM.Config.CPU VM.Config.Memory VM.Config.Options VM.Config.Disk VM.Config.Network VM.Config.HWType VM.Snapshot.Rollback VM.Backup Datastore.AllocateSpace Datastore.Audit Sys.Audit SDN.Use'
pveum user token add {user} admin --privsep 1
pveum acl modify / --tokens '{user}!admin' --roles StewardAdmin

# Each `token add` prints the secret once: store them as
#   /etc/steward/token        {user}!agent=SECRET   (chmod 600, owned by the agent's user)
#   /etc/steward/admin-token  {user}!admin=SECRET   (chmod 600)
"
    )
}

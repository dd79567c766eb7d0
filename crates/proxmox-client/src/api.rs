//! The two halves of the node's API seam, for QEMU and LXC alike: [`GuestRead`] for observation
//! and [`GuestWrite`] for the gate's executor alone. Values come back as Proxmox sends them
//! (config values as strings; numbers parsed leniently, since Proxmox sends some as strings).
//! Must never hide a failure as a default, and never put a write method on the read half.

use crate::error::ApiError;
use crate::upid::Upid;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use steward_model::{ConfigChange, GuestKind, Vmid};

/// One guest from the node's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestEntry {
    /// Id.
    pub vmid: Vmid,
    /// Kind.
    pub kind: GuestKind,
    /// `running`, `stopped`, …
    pub status: String,
    /// Name, if any.
    pub name: Option<String>,
    /// `maxmem` in bytes.
    pub maxmem: Option<u64>,
    /// The lock, when locked.
    pub lock: Option<String>,
    /// Whether it is a template.
    pub template: bool,
    /// Its HA service state (`started`, `starting`, `request_stop`, `stopped`, `fence`,
    /// `disabled`, `ignored`, …) when it is an HA resource; only `/cluster/resources` says.
    pub hastate: Option<String>,
}

/// The cluster as one node's agent sees it (`GET /cluster/resources?type=vm` and
/// `GET /cluster/status`; a standalone node is a cluster of one, always quorate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The guests on this node.
    pub here: Vec<GuestEntry>,
    /// Guests on other nodes: VMID → the node holding it.
    pub elsewhere: BTreeMap<Vmid, String>,
    /// Whether this node has quorum (without it every write fails).
    pub quorate: bool,
}

/// A guest's config as `GET …/config` returns it (pending values applied), and its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    /// Keys and values as strings.
    pub values: BTreeMap<String, String>,
    /// The config digest.
    pub digest: String,
}

/// One entry of `GET …/pending`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// Key.
    pub key: String,
    /// Current value.
    pub value: Option<String>,
    /// What a restart will apply.
    pub pending: Option<String>,
    /// A pending deletion.
    pub delete: bool,
}

/// A task's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    /// The task.
    pub upid: Upid,
    /// Still running.
    pub running: bool,
    /// `OK` or the error, once stopped.
    pub exitstatus: Option<String>,
}

/// Whether an exit status counts as success: `OK`, or `WARNINGS: n` (Proxmox counts warnings
/// as success: pve-common `upid_status_is_error`).
pub fn exit_ok(exitstatus: &str) -> bool {
    exitstatus == "OK" || warnings_in(exitstatus).is_some()
}

fn warnings_in(exitstatus: &str) -> Option<u32> {
    exitstatus.strip_prefix("WARNINGS: ")?.trim().parse().ok()
}

impl TaskStatus {
    /// Stopped with `OK` or `WARNINGS: n`.
    pub fn succeeded(&self) -> bool {
        !self.running && self.exitstatus.as_deref().is_some_and(exit_ok)
    }

    /// The `n` of a task that ended `WARNINGS: n` (a success whose log says what went wrong).
    pub fn warnings(&self) -> Option<u32> {
        self.exitstatus.as_deref().and_then(warnings_in)
    }
}

/// One entry of the node's task list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEntry {
    /// The task.
    pub upid: Upid,
    /// Still running (the list says `RUNNING`).
    pub running: bool,
    /// Its exit status once ended (`OK`, `WARNINGS: n`, or the error).
    pub status: Option<String>,
    /// End time, if ended.
    pub endtime: Option<u64>,
}

/// Which tasks the node's archive or active list holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskSource {
    /// Ended tasks (Proxmox's default).
    Archive,
    /// Running tasks.
    Active,
    /// Both.
    #[default]
    All,
}

/// Filters of `GET /nodes/{node}/tasks`, as Proxmox names them. Without `limit` the node
/// returns 50 entries: a caller that must see everything since a time sets `since` and a
/// `limit` of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this guest's tasks.
    pub vmid: Option<Vmid>,
    /// Only task types containing this (`qmdestroy`).
    pub typefilter: Option<String>,
    /// Only tasks of users containing this.
    pub userfilter: Option<String>,
    /// Started at or after (Unix seconds).
    pub since: Option<u64>,
    /// Started at or before (Unix seconds).
    pub until: Option<u64>,
    /// Skip this many.
    pub start: Option<u64>,
    /// At most this many (node default 50).
    pub limit: Option<u64>,
    /// Only failed tasks.
    pub errors: bool,
    /// Archive, active or all (default: all).
    pub source: TaskSource,
}

impl TaskFilter {
    /// The query parameters.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut p = vec![(
            "source".to_string(),
            match self.source {
                TaskSource::Archive => "archive",
                TaskSource::Active => "active",
                TaskSource::All => "all",
            }
            .to_string(),
        )];
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                p.push((k.to_string(), v));
            }
        };
        add("vmid", self.vmid.map(|v| v.to_string()));
        add("typefilter", self.typefilter.clone());
        add("userfilter", self.userfilter.clone());
        add("since", self.since.map(|v| v.to_string()));
        add("until", self.until.map(|v| v.to_string()));
        add("start", self.start.map(|v| v.to_string()));
        add("limit", self.limit.map(|v| v.to_string()));
        add("errors", self.errors.then(|| "1".to_string()));
        p
    }
}

/// Lenient number: a JSON number or a numeric string.
pub fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A config value as the string Proxmox stores.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        _ => None,
    }
}

/// The read half of the node's API: everything observation needs, and nothing that changes the
/// node. Observation, status and recovery are handed this trait and only this trait.
#[async_trait]
pub trait GuestRead: Send + Sync {
    /// Every guest (both kinds) on this node the token may see.
    async fn list_guests(&self) -> Result<Vec<GuestEntry>, ApiError>;
    /// The cluster: this node's guests, the others' VMIDs with their node, and whether this
    /// node has quorum (two requests).
    async fn cluster_view(&self) -> Result<ClusterView, ApiError>;
    /// `GET …/status/current`, raw.
    async fn status(&self, kind: GuestKind, vmid: Vmid) -> Result<Value, ApiError>;
    /// `GET …/config`, with its digest.
    async fn config(&self, kind: GuestKind, vmid: Vmid) -> Result<GuestConfig, ApiError>;
    /// `GET …/pending`.
    async fn pending(&self, kind: GuestKind, vmid: Vmid) -> Result<Vec<PendingEntry>, ApiError>;
    /// What `config` gives (pending values applied, with the digest) and the keys with a
    /// pending change, in one request where the node allows: Proxmox's `GET …/pending`
    /// (`config_with_pending_array`) lists every plain key of the loaded config, `digest`
    /// among them. An answer without a digest falls back to a `config` read as well.
    async fn config_and_pending(
        &self,
        kind: GuestKind,
        vmid: Vmid,
    ) -> Result<(GuestConfig, std::collections::BTreeSet<String>), ApiError> {
        let entries = self.pending(kind, vmid).await?;
        let changing = entries
            .iter()
            .filter(|p| p.pending.is_some() || p.delete)
            .map(|p| p.key.clone())
            .collect();
        match crate::pending::applied(&entries) {
            Some(cfg) => Ok((cfg, changing)),
            None => Ok((self.config(kind, vmid).await?, changing)),
        }
    }
    /// One read of a task's status.
    async fn task_status_once(&self, upid: &Upid) -> Result<TaskStatus, ApiError>;
    /// The names of the guest's snapshots (`GET …/snapshot`, without `current`).
    async fn snapshots(&self, kind: GuestKind, vmid: Vmid) -> Result<Vec<String>, ApiError>;
    /// One snapshot's config (`GET …/snapshot/{name}/config`): the disks it references.
    async fn snapshot_config(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ApiError>;
    /// Every volume the node's storages hold for `vmid` (`GET /nodes/{node}/storage`, then
    /// `…/storage/{storage}/content?vmid=` for each storage holding guest disks), with its size
    /// in bytes: what `destroy-unreferenced-disks` would remove, among others.
    async fn guest_volumes(&self, vmid: Vmid) -> Result<Vec<(String, Option<u64>)>, ApiError>;
    /// The token id this client's calls run as (`user@realm!name`), as the UPIDs of the tasks
    /// it starts name it.
    fn user(&self) -> &str;
    /// The node's tasks matching `filter`, newest first.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskEntry>, ApiError>;
    /// The first `limit` lines of a task's log (`GET …/tasks/{upid}/log`), where a task that
    /// ended `WARNINGS: n` says what the warnings were (`WARN: …` lines).
    async fn task_log(&self, upid: &Upid, limit: u32) -> Result<Vec<String>, ApiError>;

    /// Polls a task until it stops or `deadline` passes (`Timeout`); a task that stops with
    /// anything but `OK` or `WARNINGS: n` is `TaskFailed`. Paced as `pacing.rs` says; this
    /// default learns nothing across calls (a client that keeps a `TaskPacing` does).
    async fn wait_task(&self, upid: &Upid, deadline: Duration) -> Result<TaskStatus, ApiError> {
        crate::pacing::wait(self, &crate::pacing::TaskPacing::default(), upid, deadline).await
    }
}

/// The write half: every call that changes the node. Only the gate's executor holds an
/// implementation (a [`PveWriter`](crate::PveWriter), built with the admin token); nothing else
/// is ever given one, so the only path to these methods runs through the gate.
///
/// It extends [`GuestRead`] because an executor waits for the tasks it starts.
#[async_trait]
pub trait GuestWrite: GuestRead {
    /// Start.
    async fn start(&self, kind: GuestKind, vmid: Vmid) -> Result<Upid, ApiError>;
    /// Stop hard.
    async fn stop(&self, kind: GuestKind, vmid: Vmid) -> Result<Upid, ApiError>;
    /// Clean shutdown, stopping hard after `timeout` if `force_stop`.
    async fn shutdown(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        timeout: u32,
        force_stop: bool,
    ) -> Result<Upid, ApiError>;
    /// Reboot.
    async fn reboot(&self, kind: GuestKind, vmid: Vmid) -> Result<Upid, ApiError>;
    /// Synchronous config write (`PUT`), refused by Proxmox if the digest moved. Deleting an
    /// `unusedN` key removes that volume: this is also how a detached disk is removed.
    async fn set_config(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        change: &ConfigChange,
    ) -> Result<(), ApiError>;
    /// Asynchronous config write (`POST`, QEMU only): a task, or None if it finished at once.
    async fn set_config_async(
        &self,
        vmid: Vmid,
        change: &ConfigChange,
    ) -> Result<Option<Upid>, ApiError>;
    /// Create.
    async fn create(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        config: &BTreeMap<String, String>,
    ) -> Result<Upid, ApiError>;
    /// Destroy.
    async fn destroy(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        purge: bool,
        destroy_unreferenced_disks: bool,
    ) -> Result<Upid, ApiError>;
    /// `PUT …/qemu/{vmid}/unlink`: unlink and delete the disks `idlist` (`scsi1`, `unused0`,
    /// …); `force` deletes them rather than leaving them as `unusedN`.
    async fn unlink_disks(
        &self,
        vmid: Vmid,
        idlist: &[String],
        force: bool,
    ) -> Result<(), ApiError>;
    /// `PUT …/{kind}/{vmid}/resize`: grows `disk` to `size` (absolute, `40G`); Proxmox refuses
    /// to shrink. A task, or None where Proxmox resized synchronously (before PVE 8).
    async fn resize(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        disk: &str,
        size: &str,
    ) -> Result<Option<Upid>, ApiError>;
    /// Moves `disk` to `storage`: QEMU `POST …/move_disk` (task `qmmove`), LXC
    /// `POST …/move_volume` (task `move_volume`). With `delete` Proxmox frees the source volume
    /// after the copy; without, it keeps it as `unusedN`. `digest` makes Proxmox refuse the move
    /// if the config changed since it was read.
    async fn move_disk(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        disk: &str,
        storage: &str,
        delete: bool,
        digest: Option<&str>,
    ) -> Result<Upid, ApiError>;
    /// `POST …/snapshot/{snapname}/rollback`.
    async fn rollback(&self, kind: GuestKind, vmid: Vmid, snapshot: &str)
        -> Result<Upid, ApiError>;
    /// Restores the backup `archive` over the existing guest (`force`): QEMU `archive`, LXC
    /// `ostemplate` with `restore=1`.
    async fn restore_over(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        archive: &str,
    ) -> Result<Upid, ApiError>;
}

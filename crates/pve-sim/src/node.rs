//! The simulated node: guests (config in Proxmox's stored forms, pending changes, snapshots,
//! locks), volumes, tasks, and what every call does to them, with the texts and the moment of
//! failure Proxmox has (some checks answer at once with a 500, others start a task that fails:
//! qemu-server checks a QEMU guest's lock in the worker, pve-container answers at once). Task
//! effects apply when the task ends (checked on every request). Written from Proxmox's sources
//! and `docs/reference/pve-api.md`; it must never accept a stale digest, act on a locked guest,
//! or let a token clear a lock.

use crate::faults::{Dice, Faults};
use crate::forms::{self, Kind};
use crate::task::{Ending, Task};
use crate::upid::TaskId;
use crate::volumes::{self, Volumes};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a task does to the node when it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Nothing (a task that fails in its worker, or one whose work was done at its start).
    Nothing,
    /// Start (applies pending changes).
    Start,
    /// Stop or shutdown.
    Stop,
    /// Reboot (applies pending changes).
    Reboot,
    /// Suspend (QEMU: paused).
    Suspend,
    /// Resume.
    Resume,
    /// A create: from the task's start the guest's config holds only `lock: create`
    /// (`create_and_lock_config`); the worker writes `config` (without the lock) as it ends,
    /// as qemu-server and pve-container do. A failure removes the guest and frees its volumes.
    Create {
        /// The config the worker writes.
        config: BTreeMap<String, String>,
    },
    /// The config write of a `qmconfig` task, done at its start.
    Config,
    /// Destroy the guest and its volumes (`destroy-unreferenced-disks`: also the volumes it
    /// owns that no config references).
    Destroy {
        /// Also unreferenced volumes.
        unreferenced: bool,
    },
    /// Take a snapshot.
    Snapshot {
        /// Name.
        name: String,
        /// Description.
        description: String,
        /// With RAM.
        vmstate: bool,
    },
    /// Delete a snapshot.
    DelSnapshot {
        /// Name.
        name: String,
    },
    /// Roll back to a snapshot.
    Rollback {
        /// Name.
        name: String,
    },
    /// Restore a backup over the guest.
    Restore {
        /// The backup volume.
        archive: String,
    },
    /// Copy a disk to another storage; the slot names the copy, the source is freed or kept as
    /// `unusedN`.
    Move {
        /// The slot.
        disk: String,
        /// The volume it held when the move was asked for.
        source: String,
        /// The target storage.
        storage: String,
        /// Free the source after the copy.
        delete: bool,
    },
    /// Migrate to another node: the guest and its volumes leave when the task ends.
    Migrate {
        /// The target node.
        target: String,
    },
    /// Grow a disk.
    Resize {
        /// The disk key.
        disk: String,
        /// New size, bytes.
        bytes: u64,
    },
}

/// An API error as Proxmox answers it: status, status-line reason, optional `errors`.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The status line reason (and the body's `message`).
    pub reason: String,
    /// Per-parameter errors (400).
    pub errors: Option<Value>,
}

impl Refusal {
    /// A refusal with no per-parameter errors.
    pub fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
            errors: None,
        }
    }

    /// 400 "Parameter verification failed." with `errors`.
    pub fn param_errors(errors: Value) -> Refusal {
        Refusal {
            status: 400,
            reason: "Parameter verification failed.".into(),
            errors: Some(errors),
        }
    }

    /// 400 for one parameter.
    pub fn param(key: &str, msg: impl Into<String>) -> Refusal {
        let mut m = Map::new();
        m.insert(key.into(), Value::String(msg.into()));
        Refusal::param_errors(Value::Object(m))
    }
}

/// A snapshot of a guest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// The config at snapshot time.
    pub config: BTreeMap<String, String>,
    /// Description.
    pub description: String,
    /// Unix seconds.
    pub snaptime: u64,
    /// Parent snapshot.
    pub parent: Option<String>,
    /// With RAM.
    pub vmstate: bool,
}

/// One guest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimGuest {
    /// QEMU or LXC.
    pub kind: Kind,
    /// `running` or `stopped`.
    pub status: String,
    /// A running QEMU guest that is suspended (`qmpstatus: paused`).
    pub paused: bool,
    /// The config in force (stored forms; `description` without trailing newline).
    pub config: BTreeMap<String, String>,
    /// Pending changes: a new value, or None for a pending deletion.
    pub pending: BTreeMap<String, Option<String>>,
    /// The config lock, if any.
    pub lock: Option<String>,
    /// Snapshots by name.
    pub snapshots: BTreeMap<String, Snapshot>,
    /// The snapshot the current state descends from.
    pub parent: Option<String>,
    /// Bumped on every change of the config file (the file view's mtime follows it).
    pub version: u64,
}

impl SimGuest {
    pub(crate) fn new(kind: Kind, config: BTreeMap<String, String>) -> SimGuest {
        SimGuest {
            kind,
            status: "stopped".into(),
            paused: false,
            config,
            pending: BTreeMap::new(),
            lock: None,
            snapshots: BTreeMap::new(),
            parent: None,
            version: 1,
        }
    }

    /// The config with pending values applied (what `GET …/config` shows by default).
    pub fn effective(&self) -> BTreeMap<String, String> {
        let mut c = self.config.clone();
        for (k, v) in &self.pending {
            match v {
                Some(v) => c.insert(k.clone(), v.clone()),
                None => c.remove(k),
            };
        }
        c
    }

    pub(crate) fn is_template(&self) -> bool {
        self.config.get("template").map(String::as_str) == Some("1")
    }

    pub(crate) fn running(&self) -> bool {
        self.status == "running"
    }

    pub(crate) fn touch(&mut self) {
        self.version += 1;
    }
}

/// Mutating calls that reached the node, by guest, call and token (for harnesses).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    /// `(vmid, call, token) → count`, e.g. `(104, "destroy", "steward@pve!admin")`.
    pub calls: BTreeMap<String, u64>,
}

impl Counters {
    pub(crate) fn count(&mut self, vmid: u32, call: &str, user: &str) {
        *self
            .calls
            .entry(format!("{vmid} {call} {user}"))
            .or_default() += 1;
    }

    /// Calls of `call` (`destroy`, `start`, …) for `vmid`, from any token.
    pub fn of(&self, vmid: u32, call: &str) -> u64 {
        let prefix = format!("{vmid} {call} ");
        self.calls
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, c)| *c)
            .sum()
    }

    /// The counts as JSON: `[{vmid, call, token, count}]`.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.calls
                .iter()
                .filter_map(|(k, n)| {
                    let mut it = k.splitn(3, ' ');
                    let (v, c, t) = (it.next()?, it.next()?, it.next()?);
                    Some(json!({"vmid": v.parse::<u32>().ok()?, "call": c, "token": t, "count": n}))
                })
                .collect(),
        )
    }
}

/// Everything the node keeps (persisted as one JSON document when a state directory is set).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// Guests by VMID.
    pub guests: BTreeMap<u32, SimGuest>,
    /// Tasks, oldest first.
    pub tasks: Vec<Task>,
    /// Storages and volumes.
    pub volumes: Volumes,
    /// Calls that changed something.
    pub counters: Counters,
    next_pid: u32,
    /// The next N tasks fail / hang / end with warnings (out-of-band actor).
    pub fail_next: u32,
    /// See `fail_next`.
    pub hang_next: u32,
    /// See `fail_next`.
    pub warn_next: u32,
    /// The next N mutating requests are carried out, but their answer is lost (the connection
    /// is reset after the work): what a client sees when pveproxy or the network fails
    /// between the call and its answer.
    #[serde(default)]
    pub lose_next_answer: u32,
}

/// The node.
#[derive(Debug)]
pub struct Node {
    /// What it keeps.
    pub st: NodeState,
    pub(crate) task_time: Duration,
    pub(crate) faults: Faults,
    pub(crate) dice: Dice,
    /// Bumped on every change (persistence writes when it moved).
    pub generation: u64,
    /// Guests whose migration ended, for the cluster to land on their targets.
    pub(crate) departures: Vec<crate::migrate::Departure>,
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    now_ms() / 1000
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Keys applied at once on a running QEMU guest (qemu-server's "fast plug" options and the
/// default `hotplug` of network, disk and usb); everything else waits in `[pending]`.
pub(crate) fn qemu_hot(key: &str) -> bool {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    matches!(
        key,
        "name"
            | "description"
            | "tags"
            | "onboot"
            | "startup"
            | "protection"
            | "hotplug"
            | "shares"
            | "vmstate"
            | "cpulimit"
            | "cpuunits"
            | "balloon"
            | "lock"
    ) || (base.len() < key.len()
        && matches!(base, "net" | "scsi" | "virtio" | "sata" | "usb" | "unused"))
}

/// Keys pve-container applies at once on a running container.
pub(crate) fn lxc_hot(key: &str) -> bool {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    matches!(
        key,
        "hostname"
            | "description"
            | "tags"
            | "onboot"
            | "startup"
            | "protection"
            | "memory"
            | "swap"
            | "cores"
            | "cpulimit"
            | "cpuunits"
            | "nameserver"
            | "searchdomain"
    ) || (base.len() < key.len() && matches!(base, "net" | "unused"))
}

impl Node {
    /// A node with `n` guests (two thirds QEMU, one third LXC, alternating running/stopped), one
    /// backup each of the first two, and a container template.
    pub fn new(name: &str, n: usize, task_time: Duration, faults: Faults, seed: u64) -> Node {
        Node::numbered(name, 100, n, task_time, faults, seed)
    }

    /// [`Node::new`] with guests numbered from `first` (a cluster's nodes hold distinct VMIDs).
    pub fn numbered(
        name: &str,
        first: u32,
        n: usize,
        task_time: Duration,
        faults: Faults,
        seed: u64,
    ) -> Node {
        let now = now_unix();
        let dice = Dice::new(seed);
        let mut vols = Volumes::new(now);
        let mut guests = BTreeMap::new();
        for i in 0..n {
            let vmid = first.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
            let kind = if i % 3 != 2 { Kind::Qemu } else { Kind::Lxc };
            let mut config = BTreeMap::new();
            config.insert(kind.name_key().into(), format!("guest-{vmid}"));
            config.insert("memory".into(), "2048".into());
            config.insert("cores".into(), "2".into());
            config.insert("tags".into(), "fleet;sim".into());
            let size = if kind == Kind::Qemu { 32 } else { 8 };
            let volid = vols
                .allocate("local-lvm", vmid, size << 30, kind, now)
                .unwrap_or_default();
            if kind == Kind::Qemu {
                config.insert("scsi0".into(), format!("{volid},size={size}G"));
                config.insert("scsihw".into(), "virtio-scsi-single".into());
                config.insert("ostype".into(), "l26".into());
                config.insert(
                    "net0".into(),
                    forms::net_with_mac(kind, "virtio,bridge=vmbr0", &dice),
                );
                config.insert("smbios1".into(), format!("uuid={}", forms::uuid(&dice)));
                config.insert("vmgenid".into(), forms::uuid(&dice));
                config.insert("meta".into(), format!("creation-qemu=9.2.0,ctime={now}"));
            } else {
                config.insert("rootfs".into(), format!("{volid},size={size}G"));
                config.insert("swap".into(), "512".into());
                config.insert("arch".into(), "amd64".into());
                config.insert("ostype".into(), "debian".into());
                config.insert("unprivileged".into(), "1".into());
                config.insert(
                    "net0".into(),
                    forms::net_with_mac(kind, "name=eth0,bridge=vmbr0,ip=dhcp", &dice),
                );
            }
            let mut g = SimGuest::new(kind, config);
            g.status = if i % 2 == 0 { "running" } else { "stopped" }.into();
            if i < 2 {
                vols.add_backup(vmid, kind, g.config.clone(), now - 86_400);
            }
            guests.insert(vmid, g);
        }
        Node {
            st: NodeState {
                name: name.into(),
                guests,
                tasks: Vec::new(),
                volumes: vols,
                counters: Counters::default(),
                next_pid: 0x000A_1B00,
                fail_next: 0,
                hang_next: 0,
                warn_next: 0,
                lose_next_answer: 0,
            },
            task_time,
            faults,
            dice,
            generation: 0,
            departures: Vec::new(),
        }
    }

    /// A node from persisted state.
    pub fn from_state(st: NodeState, task_time: Duration, faults: Faults, seed: u64) -> Node {
        Node {
            st,
            task_time,
            faults,
            dice: Dice::new(seed),
            generation: 0,
            departures: Vec::new(),
        }
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.st.name
    }

    /// The fault settings.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Rolls a per-request fault.
    pub fn roll(&self, p: f64) -> bool {
        self.dice.roll(p)
    }

    pub(crate) fn changed(&mut self) {
        self.generation += 1;
    }

    /// The config digest: SHA-1 on a node (of the file); here 40 hex digits that move with
    /// every change of the config or its pending section.
    pub fn digest(g: &SimGuest) -> String {
        let mut h = Sha256::new();
        for (k, v) in &g.config {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        h.update(b"[pending]");
        for (k, v) in &g.pending {
            h.update(k.as_bytes());
            h.update([1]);
            h.update(v.as_deref().unwrap_or("\u{0}delete").as_bytes());
        }
        if let Some(l) = &g.lock {
            h.update(b"lock");
            h.update(l.as_bytes());
        }
        h.finalize()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    // ---- tasks ----

    /// Ends tasks whose time has come, applying their effects.
    pub fn tick(&mut self) {
        let now = now_ms();
        for i in 0..self.st.tasks.len() {
            let t = &self.st.tasks[i];
            if t.done.is_some() || t.ends_ms.is_none_or(|e| now < e) {
                continue;
            }
            let t = t.clone();
            let ending = match &t.ending {
                Ending::Error(e) => Ending::Error(e.clone()),
                ok => match self.apply(&t) {
                    Ok(()) => ok.clone(),
                    Err(e) => Ending::Error(e),
                },
            };
            if let Ending::Error(_) = &ending {
                self.undo(&t);
            }
            if t.holds_lock {
                if let Some(g) = t.vmid.and_then(|v| self.st.guests.get_mut(&v)) {
                    g.lock = None;
                    g.touch();
                }
            }
            let task = &mut self.st.tasks[i];
            task.log.push(match &ending {
                Ending::Ok => "TASK OK".into(),
                Ending::Warnings(n) => format!("TASK WARNINGS: {n}"),
                Ending::Error(e) => format!("TASK ERROR: {e}"),
            });
            task.done = Some(ending.exitstatus());
            task.ending = ending;
            task.endtime = Some(now / 1000);
            self.changed();
        }
    }

    /// `DELETE …/tasks/{upid}`: the worker is killed. A running task ends `interrupted by
    /// signal` without its effect; a lock it held stays, as a killed worker leaves it.
    pub fn stop_task(&mut self, upid: &str) {
        let now = now_unix();
        if let Some(t) = self
            .st
            .tasks
            .iter_mut()
            .find(|t| t.upid.to_string() == upid && t.done.is_none())
        {
            let e = "interrupted by signal".to_string();
            t.log.push(format!("TASK ERROR: {e}"));
            t.done = Some(e.clone());
            t.ending = Ending::Error(e);
            t.endtime = Some(now);
            self.changed();
        }
    }

    /// "Node restarted": running tasks are lost (they end as `unexpected status`, as Proxmox
    /// marks tasks whose worker died), and their locks stay, as on a node.
    pub fn restart(&mut self) {
        for t in self.st.tasks.iter_mut().filter(|t| t.done.is_none()) {
            t.done = Some("unexpected status".into());
            t.ending = Ending::Error("unexpected status".into());
            t.endtime = Some(now_unix());
        }
        self.changed();
    }

    pub(crate) fn start_task(
        &mut self,
        ty: &str,
        vmid: Option<u32>,
        user: &str,
        lock: Option<&str>,
        effect: Effect,
    ) -> TaskId {
        self.st.next_pid += 1;
        let starttime = u32::try_from(now_unix()).unwrap_or(u32::MAX);
        let upid = TaskId {
            node: self.st.name.clone(),
            pid: self.st.next_pid,
            pstart: 0x0012_D687,
            starttime,
            kind: ty.into(),
            id: vmid.map(|v| v.to_string()).unwrap_or_default(),
            user: user.into(),
        };
        let hang = self.take(|s| &mut s.hang_next) || self.dice.roll(self.faults.task_hang_rate);
        let failing = self.take(|s| &mut s.fail_next) || self.dice.roll(self.faults.task_fail_rate);
        let warn = self.take(|s| &mut s.warn_next);
        if let (Some(l), Some(g)) = (lock, vmid.and_then(|v| self.st.guests.get_mut(&v))) {
            g.lock = Some(l.into());
            g.touch();
        }
        let ending = if failing {
            Ending::Error("command failed (injected)".into())
        } else if warn {
            Ending::Warnings(1)
        } else {
            Ending::Ok
        };
        let mut log = vec![format!(
            "{ty} {}: {upid}",
            vmid.map(|v| v.to_string()).unwrap_or_default()
        )];
        if warn {
            log.push("WARN: injected warning".into());
        }
        let duration = if matches!(effect, Effect::Config) {
            Duration::ZERO
        } else {
            self.task_time
        };
        self.st.tasks.push(Task {
            upid: upid.clone(),
            vmid,
            ends_ms: (!hang)
                .then(|| now_ms() + u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
            ending,
            done: None,
            endtime: None,
            log,
            effect,
            holds_lock: lock.is_some(),
        });
        self.changed();
        upid
    }

    /// A task that fails in its worker with `error` (QEMU reports locks, "already running" and
    /// the like this way: 200 + UPID, then the task fails).
    pub(crate) fn failing_task(
        &mut self,
        ty: &str,
        vmid: u32,
        user: &str,
        error: String,
    ) -> TaskId {
        let upid = self.start_task(ty, Some(vmid), user, None, Effect::Nothing);
        if let Some(t) = self.st.tasks.last_mut() {
            t.ending = Ending::Error(error);
            t.ends_ms = Some(now_ms());
        }
        upid
    }

    /// What a task does when it ends successfully.
    fn apply(&mut self, t: &Task) -> Result<(), String> {
        let Some(vmid) = t.vmid else { return Ok(()) };
        let now = now_unix();
        let st = &mut self.st;
        if let Effect::Destroy { unreferenced } = &t.effect {
            if let Some(g) = st.guests.remove(&vmid) {
                let mut vols: Vec<String> = g
                    .config
                    .iter()
                    .filter(|(k, _)| volumes::is_disk_key(g.kind, k))
                    .filter_map(|(_, v)| volumes::volid(v).map(str::to_string))
                    .collect();
                for s in g.snapshots.values() {
                    vols.extend(
                        s.config
                            .iter()
                            .filter(|(k, _)| volumes::is_disk_key(g.kind, k))
                            .filter_map(|(_, v)| volumes::volid(v).map(str::to_string)),
                    );
                }
                if *unreferenced {
                    vols.extend(st.volumes.owned_by(vmid));
                }
                for v in vols {
                    st.volumes.free(&v);
                }
            }
            return Ok(());
        }
        if let Effect::Migrate { target } = &t.effect {
            return self.depart(vmid, target);
        }
        let st = &mut self.st;
        let Some(g) = st.guests.get_mut(&vmid) else {
            return Err(format!(
                "Configuration file 'nodes/{}/{}/{vmid}.conf' does not exist",
                st.name, "qemu-server"
            ));
        };
        match &t.effect {
            Effect::Create { config } => g.config = config.clone(),
            Effect::Nothing | Effect::Config | Effect::Destroy { .. } | Effect::Migrate { .. } => {}
            Effect::Start | Effect::Reboot => {
                g.config = g.effective();
                g.pending.clear();
                g.status = "running".into();
                g.paused = false;
            }
            Effect::Stop => {
                g.status = "stopped".into();
                g.paused = false;
            }
            Effect::Suspend => g.paused = true,
            Effect::Resume => g.paused = false,
            Effect::Snapshot {
                name,
                description,
                vmstate,
            } => {
                let snap = Snapshot {
                    config: g.config.clone(),
                    description: description.clone(),
                    snaptime: now,
                    parent: g.parent.clone(),
                    vmstate: *vmstate,
                };
                g.snapshots.insert(name.clone(), snap);
                g.parent = Some(name.clone());
            }
            Effect::DelSnapshot { name } => {
                let gone = g
                    .snapshots
                    .remove(name)
                    .ok_or_else(|| format!("snapshot '{name}' does not exist"))?;
                for s in g.snapshots.values_mut() {
                    if s.parent.as_deref() == Some(name) {
                        s.parent = gone.parent.clone();
                    }
                }
                if g.parent.as_deref() == Some(name) {
                    g.parent = gone.parent;
                }
            }
            Effect::Rollback { name } => {
                let snap = g
                    .snapshots
                    .get(name)
                    .ok_or_else(|| format!("snapshot '{name}' does not exist"))?;
                g.config = snap.config.clone();
                g.pending.clear();
                g.status = if snap.vmstate { "running" } else { "stopped" }.into();
                g.paused = false;
                g.parent = Some(name.clone());
            }
            Effect::Restore { archive } => {
                let (kind, backup) = st
                    .volumes
                    .volumes
                    .get(archive)
                    .and_then(|v| v.backup_of.clone())
                    .ok_or_else(|| {
                        format!("unable to restore - backup '{archive}' does not exist")
                    })?;
                let old: Vec<String> = g
                    .config
                    .iter()
                    .filter(|(k, _)| volumes::is_disk_key(g.kind, k))
                    .filter_map(|(_, v)| volumes::volid(v).map(str::to_string))
                    .collect();
                for v in old {
                    st.volumes.free(&v);
                }
                let mut config = BTreeMap::new();
                for (k, v) in backup {
                    if volumes::is_disk_key(kind, &k) && !k.starts_with("unused") {
                        let size = v
                            .split(',')
                            .find_map(|p| p.strip_prefix("size="))
                            .and_then(volumes::parse_size)
                            .unwrap_or(1 << 30);
                        let storage = v.split(':').next().unwrap_or("local-lvm").to_string();
                        let volid = st.volumes.allocate(&storage, vmid, size, kind, now)?;
                        config.insert(k, format!("{volid},size={}", volumes::format_size(size)));
                    } else if !k.starts_with("unused") {
                        config.insert(k, v);
                    }
                }
                g.config = config;
                g.pending.clear();
                g.snapshots.clear();
                g.parent = None;
                g.status = "stopped".into();
            }
            Effect::Move {
                disk,
                source,
                storage,
                delete,
            } => {
                let value = g
                    .config
                    .get(disk)
                    .cloned()
                    .filter(|v| volumes::volid(v) == Some(source.as_str()))
                    .ok_or_else(|| format!("disk '{disk}' no longer holds {source}"))?;
                let size = st.volumes.volumes.get(source).map_or(0, |v| v.size);
                let copy = st.volumes.allocate(storage, vmid, size, g.kind, now)?;
                g.config
                    .insert(disk.clone(), crate::moves::moved_value(&value, &copy));
                if *delete {
                    st.volumes.free(source);
                } else {
                    let slot = Node::free_unused(g);
                    g.config.insert(slot, source.clone());
                }
            }
            Effect::Resize { disk, bytes } => {
                let value = g
                    .config
                    .get(disk)
                    .cloned()
                    .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
                if let Some(volid) = volumes::volid(&value) {
                    if let Some(v) = st.volumes.volumes.get_mut(volid) {
                        v.size = *bytes;
                    }
                }
                let parts: Vec<String> = value
                    .split(',')
                    .filter(|p| !p.starts_with("size="))
                    .map(str::to_string)
                    .chain(std::iter::once(format!(
                        "size={}",
                        volumes::format_size(*bytes)
                    )))
                    .collect();
                g.config.insert(disk.clone(), parts.join(","));
            }
        }
        g.touch();
        Ok(())
    }

    /// What a failed task leaves: a failed create leaves nothing behind.
    fn undo(&mut self, t: &Task) {
        if let (Effect::Create { config }, Some(vmid)) = (&t.effect, t.vmid) {
            if let Some(g) = self.st.guests.remove(&vmid) {
                for (k, v) in config {
                    if let Some(volid) = volumes::is_disk_key(g.kind, k)
                        .then(|| volumes::volid(v))
                        .flatten()
                    {
                        self.st.volumes.free(volid);
                    }
                }
            }
        }
    }

    fn take(&mut self, f: impl Fn(&mut NodeState) -> &mut u32) -> bool {
        let n = f(&mut self.st);
        if *n > 0 {
            *n -= 1;
            true
        } else {
            false
        }
    }
}

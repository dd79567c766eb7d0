//! What each mutating call does to the node, with the checks Proxmox makes at once (a 500 with
//! the reason in the status line) and the ones its worker makes (200 + UPID, then the task
//! fails). qemu-server checks a VM's lock and "already running" in the worker; pve-container
//! answers at once. Privileges are checked before these run (`routes.rs`). It must never touch a
//! locked guest and never apply a write planned against a stale digest.

use crate::forms::{self, Kind};
use crate::node::{now_unix, Effect, Node, Refusal, SimGuest, Snapshot};
use crate::upid::TaskId;
use crate::volumes;
use std::collections::BTreeMap;

fn fail(msg: impl Into<String>) -> Refusal {
    Refusal::new(500, msg)
}

fn flag(params: &BTreeMap<String, String>, k: &str) -> bool {
    params
        .get(k)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn locked(kind: Kind, lock: &str) -> String {
    format!("{} is locked ({lock})", kind.who())
}

/// Parameters of a config call that are not config keys.
pub(crate) const META: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "force",
    "background_delay",
    "skip_cloud_init",
    "import-working-storage",
];

impl Node {
    /// The guest, or Proxmox's 500 for a missing config file.
    pub fn guest(&self, kind: Kind, vmid: u32) -> Result<&SimGuest, Refusal> {
        match self.st.guests.get(&vmid) {
            Some(g) if g.kind == kind => Ok(g),
            _ => Err(fail(format!(
                "Configuration file 'nodes/{}/{}/{vmid}.conf' does not exist",
                self.st.name,
                kind.conf_dir()
            ))),
        }
    }

    fn guest_mut(&mut self, kind: Kind, vmid: u32) -> Result<&mut SimGuest, Refusal> {
        self.guest(kind, vmid)?;
        self.st
            .guests
            .get_mut(&vmid)
            .ok_or_else(|| fail("guest vanished"))
    }

    /// The first free `unusedN` of a guest.
    pub(crate) fn free_unused(g: &SimGuest) -> String {
        (0..)
            .map(|n| format!("unused{n}"))
            .find(|k| !g.config.contains_key(k) && !g.pending.contains_key(k))
            .unwrap_or_else(|| "unused0".into())
    }

    /// A config write (`PUT` when `sync`, else the `POST` of a `qmconfig` task; `unlink`
    /// passes its `idlist` as `delete`). Returns the task for an asynchronous write that did
    /// not finish within `background_delay`.
    pub fn set_config(
        &mut self,
        kind: Kind,
        vmid: u32,
        params: &BTreeMap<String, String>,
        user: &str,
        sync: bool,
    ) -> Result<Option<TaskId>, Refusal> {
        let g = self.guest(kind, vmid)?;
        let split = |k: &str| -> Vec<String> {
            params
                .get(k)
                .map(|s| crate::forms::split_list(s).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let (delete, revert) = (split("delete"), split("revert"));
        let set: BTreeMap<&String, &String> = params
            .iter()
            .filter(|(k, _)| !META.contains(&k.as_str()))
            .collect();
        for k in &delete {
            if set.contains_key(k) {
                return Err(Refusal::param(
                    "delete",
                    format!("you can't use '-{k}' and -delete {k}' at the same time"),
                ));
            }
        }
        if set.is_empty() && delete.is_empty() && revert.is_empty() {
            return Err(fail("no options specified"));
        }
        // Checked when the config is loaded for the write: in the request for PUT, in the
        // worker for POST (qemu-server's `load_and_check_config`).
        let stale = params.get("digest").is_some_and(|d| *d != Node::digest(g));
        let check = if stale {
            Some(match kind {
                Kind::Qemu => "checksum mismatch (file change by other user?)".to_string(),
                Kind::Lxc => {
                    "detected modified configuration - file changed by other user? Try again."
                        .to_string()
                }
            })
        } else {
            g.lock.as_deref().map(|l| locked(kind, l))
        };
        if let Some(e) = check {
            if sync {
                return Err(fail(e));
            }
            return Ok(Some(self.failing_task("qmconfig", vmid, user, e)));
        }
        let running = g.running();
        let hot = |k: &str| match kind {
            Kind::Qemu => crate::node::qemu_hot(k),
            Kind::Lxc => crate::node::lxc_hot(k),
        };
        let now = now_unix();
        let force = flag(params, "force");
        // New disks are allocated before the config is written.
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &set {
            let stored = match k.as_str() {
                "tags" => forms::tags(v),
                "description" => forms::description_stored(v),
                k if k.starts_with("net") => forms::net_with_mac(kind, v, &self.dice),
                k if volumes::is_disk_key(kind, k) => match volumes::new_allocation(v) {
                    Some((storage, gib)) => {
                        let bytes = (gib * (1u64 << 30) as f64) as u64;
                        let volid = self
                            .st
                            .volumes
                            .allocate(storage, vmid, bytes, kind, now)
                            .map_err(fail)?;
                        let opts: Vec<&str> = v
                            .split(',')
                            .skip(1)
                            .filter(|o| !o.starts_with("size="))
                            .collect();
                        let mut s = volid;
                        for o in opts {
                            s.push(',');
                            s.push_str(o);
                        }
                        s.push_str(&format!(",size={}", volumes::format_size(bytes)));
                        s
                    }
                    None => (*v).clone(),
                },
                _ => (*v).clone(),
            };
            values.insert((*k).clone(), stored);
        }
        let g = self.guest_mut(kind, vmid)?;
        let mut freed = Vec::new();
        for k in &revert {
            g.pending.remove(k);
        }
        for (k, v) in values {
            if running && !hot(&k) {
                // A pending value equal to the running one is no change (AbstractConfig's
                // `cleanup_pending`, which update_vm runs after writing pending values).
                if g.config.get(&k) == Some(&v) {
                    g.pending.remove(&k);
                } else {
                    g.pending.insert(k, Some(v));
                }
            } else {
                g.pending.remove(&k);
                g.config.insert(k, v);
            }
        }
        for k in &delete {
            let is_unused = k.starts_with("unused");
            if volumes::is_disk_key(kind, k) && !is_unused {
                // A detached disk becomes unusedN (qemu-server `vmconfig_delete_or_detach_drive`),
                // unless `force` deletes it.
                if let Some(v) = g.config.remove(k) {
                    if let Some(volid) = volumes::volid(&v) {
                        if force {
                            freed.push(volid.to_string());
                        } else {
                            let slot = Node::free_unused(g);
                            g.config.insert(slot, volid.to_string());
                        }
                    }
                }
                g.pending.remove(k);
            } else if is_unused {
                if let Some(v) = g.config.remove(k) {
                    freed.push(v);
                }
            } else if running && !hot(k) && g.config.contains_key(k) {
                g.pending.insert(k.clone(), None);
            } else {
                g.config.remove(k);
                g.pending.remove(k);
            }
        }
        g.touch();
        for v in freed {
            self.st.volumes.free(&v);
        }
        self.st.counters.count(vmid, "config", user);
        self.changed();
        if sync {
            return Ok(None);
        }
        let upid = self.start_task("qmconfig", Some(vmid), user, None, Effect::Config);
        if params.contains_key("background_delay") {
            // Finished within the delay: Proxmox answers null.
            self.tick_now(&upid);
            return Ok(None);
        }
        Ok(Some(upid))
    }

    fn tick_now(&mut self, upid: &TaskId) {
        if let Some(t) = self.st.tasks.iter_mut().find(|t| &t.upid == upid) {
            t.ends_ms = Some(0);
        }
        self.tick();
    }

    /// `POST …/status/{start,stop,shutdown,reboot,suspend,resume}`.
    pub fn power(
        &mut self,
        kind: Kind,
        vmid: u32,
        what: &str,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let g = self.guest(kind, vmid)?;
        let ty = format!("{}{what}", kind.task_prefix());
        let effect = match what {
            "start" => Effect::Start,
            "stop" | "shutdown" => Effect::Stop,
            "reboot" => Effect::Reboot,
            "suspend" => Effect::Suspend,
            _ => Effect::Resume,
        };
        let who = kind.who();
        // Checks answered at once.
        match (kind, what) {
            (Kind::Qemu, "reboot") | (Kind::Qemu, "shutdown") if g.paused => {
                return Err(fail("VM is paused - cannot shutdown"))
            }
            (Kind::Qemu, "reboot" | "suspend" | "resume") if !g.running() => {
                return Err(fail(format!("VM {vmid} not running")))
            }
            (Kind::Lxc, _) => {
                if let Some(l) = &g.lock {
                    return Err(fail(locked(kind, l)));
                }
                if what == "start" && g.running() {
                    return Err(fail(format!("CT {vmid} already running")));
                }
                if what == "start" && g.is_template() {
                    return Err(fail("you can't start a CT if it's a template"));
                }
                if what != "start" && !g.running() {
                    return Err(fail(format!("CT {vmid} not running")));
                }
            }
            _ => {}
        }
        // QEMU: checked in the worker.
        let in_worker = if kind == Kind::Qemu {
            if let Some(l) = &g.lock {
                Some(locked(kind, l))
            } else if what == "start" && g.running() {
                Some(format!("{who} {vmid} already running"))
            } else if what == "start" && g.is_template() {
                Some("you can't start a vm if it's a template".to_string())
            } else {
                None
            }
        } else {
            None
        };
        self.st.counters.count(vmid, what, user);
        if let Some(e) = in_worker {
            return Ok(self.failing_task(&ty, vmid, user, e));
        }
        Ok(self.start_task(&ty, Some(vmid), user, None, effect))
    }

    /// `POST /nodes/{node}/{kind}`: create, or restore (`archive` / LXC `restore=1`) over an
    /// existing guest with `force`.
    pub fn create(
        &mut self,
        kind: Kind,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let vmid: u32 = params
            .get("vmid")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Refusal::param("vmid", "property is missing and it is not optional"))?;
        let archive = match kind {
            Kind::Qemu => params.get("archive").cloned(),
            Kind::Lxc => flag(params, "restore")
                .then(|| params.get("ostemplate").cloned())
                .flatten(),
        };
        let is_restore = archive.is_some();
        let emsg = format!(
            "unable to {} {} {vmid} -",
            if is_restore { "restore" } else { "create" },
            kind.who()
        );
        let prefix = kind.task_prefix();
        if let Some(g) = self.st.guests.get(&vmid) {
            if !(is_restore && flag(params, "force")) {
                return Err(fail(format!(
                    "{emsg} {} {vmid} already exists on node '{}'",
                    kind.who(),
                    self.st.name
                )));
            }
            if g.kind != kind {
                return Err(fail(format!("{emsg} guest {vmid} is of another type")));
            }
            if g.config.get("protection").map(String::as_str) == Some("1") {
                return Err(fail(format!("{emsg} protection mode enabled")));
            }
            if g.running() {
                return Err(fail(format!("{emsg} vm is running")));
            }
            if let Some(l) = &g.lock {
                return Err(fail(locked(kind, l)));
            }
        }
        if let Some(archive) = archive {
            let ok = self
                .st
                .volumes
                .volumes
                .get(&archive)
                .is_some_and(|v| v.backup_of.is_some());
            if !ok {
                return Err(fail(format!("{emsg} volume '{archive}' does not exist")));
            }
            self.st
                .guests
                .entry(vmid)
                .or_insert_with(|| SimGuest::new(kind, BTreeMap::new()));
            self.st.counters.count(vmid, "restore", user);
            let ty = if kind == Kind::Qemu {
                "qmrestore"
            } else {
                "vzrestore"
            };
            return Ok(self.start_task(
                ty,
                Some(vmid),
                user,
                Some("create"),
                Effect::Restore { archive },
            ));
        }
        let now = now_unix();
        let mut config = BTreeMap::new();
        let mut boot = Vec::new();
        let skip = [
            "vmid",
            "node",
            "ostemplate",
            "storage",
            "start",
            "unique",
            "pool",
            "password",
            "ssh-public-keys",
            "force",
            "restore",
        ];
        let mut entries: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kind == Kind::Lxc {
            let tmpl = params.get("ostemplate").cloned().unwrap_or_default();
            if !self.st.volumes.volumes.contains_key(&tmpl) {
                return Err(fail(format!("{emsg} volume '{tmpl}' does not exist")));
            }
            if !params.contains_key("rootfs") {
                entries.push(("rootfs".into(), "local-lvm:4".into()));
            }
            let os = tmpl
                .rsplit('/')
                .next()
                .and_then(|f| f.split('-').next())
                .unwrap_or("unmanaged");
            config.insert("ostype".into(), os.to_string());
            config.insert("arch".into(), "amd64".into());
        }
        for (k, v) in entries {
            let stored = match k.as_str() {
                "tags" => forms::tags(&v),
                "description" => forms::description_stored(&v),
                key if key.starts_with("net") && key[3..].bytes().all(|b| b.is_ascii_digit()) => {
                    if kind == Kind::Qemu {
                        boot.push(key.to_string());
                    }
                    forms::net_with_mac(kind, &v, &self.dice)
                }
                key if volumes::is_disk_key(kind, key) => match volumes::new_allocation(&v) {
                    Some((storage, gib)) => {
                        let bytes = (gib * (1u64 << 30) as f64) as u64;
                        let volid = self
                            .st
                            .volumes
                            .allocate(storage, vmid, bytes, kind, now)
                            .map_err(|e| fail(format!("{emsg} {e}")))?;
                        if kind == Kind::Qemu {
                            boot.insert(
                                boot.iter().take_while(|b| !b.starts_with("net")).count(),
                                key.to_string(),
                            );
                        }
                        let opts: String = v
                            .split(',')
                            .skip(1)
                            .filter(|o| !o.starts_with("size="))
                            .map(|o| format!(",{o}"))
                            .collect();
                        format!("{volid}{opts},size={}", volumes::format_size(bytes))
                    }
                    None => v,
                },
                _ => v,
            };
            config.insert(k, stored);
        }
        if kind == Kind::Qemu {
            config
                .entry("smbios1".into())
                .or_insert_with(|| format!("uuid={}", forms::uuid(&self.dice)));
            config
                .entry("vmgenid".into())
                .or_insert_with(|| forms::uuid(&self.dice));
            config.insert("meta".into(), format!("creation-qemu=9.2.0,ctime={now}"));
            if !boot.is_empty() {
                config
                    .entry("boot".into())
                    .or_insert_with(|| format!("order={}", boot.join(";")));
            }
        }
        self.st
            .guests
            .insert(vmid, SimGuest::new(kind, BTreeMap::new()));
        self.st.counters.count(vmid, "create", user);
        Ok(self.start_task(
            &format!("{prefix}create"),
            Some(vmid),
            user,
            Some("create"),
            Effect::Create { config },
        ))
    }

    /// `DELETE …/{vmid}`.
    pub fn destroy(
        &mut self,
        kind: Kind,
        vmid: u32,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let g = self.guest(kind, vmid)?;
        let who = kind.who();
        if g.config.get("protection").map(String::as_str) == Some("1") {
            return Err(fail(format!(
                "can't remove {who} {vmid} - protection mode enabled"
            )));
        }
        if g.running() {
            return Err(fail(format!("{who} {vmid} is running - destroy failed")));
        }
        let lock = g.lock.clone();
        self.st.counters.count(vmid, "destroy", user);
        let ty = format!("{}destroy", kind.task_prefix());
        if let Some(l) = lock {
            if kind == Kind::Lxc {
                return Err(fail(locked(kind, &l)));
            }
            return Ok(self.failing_task(&ty, vmid, user, locked(kind, &l)));
        }
        let unreferenced = flag(params, "destroy-unreferenced-disks");
        Ok(self.start_task(
            &ty,
            Some(vmid),
            user,
            Some("destroyed"),
            Effect::Destroy { unreferenced },
        ))
    }

    /// `POST …/snapshot`.
    pub fn snapshot(
        &mut self,
        kind: Kind,
        vmid: u32,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let name = params.get("snapname").cloned().unwrap_or_default();
        let g = self.guest(kind, vmid)?;
        if name == "current" || name == "pending" {
            return Err(fail(format!(
                "unable to use snapshot name '{name}' (reserved name)"
            )));
        }
        if g.snapshots.contains_key(&name) {
            return Err(fail(format!("snapshot name '{name}' already used")));
        }
        let lock = g.lock.clone();
        let ty = format!("{}snapshot", kind.task_prefix());
        self.st.counters.count(vmid, "snapshot", user);
        if let Some(l) = lock {
            return self.lock_refusal(kind, vmid, &ty, user, &l);
        }
        let effect = Effect::Snapshot {
            name,
            description: params.get("description").cloned().unwrap_or_default(),
            vmstate: flag(params, "vmstate"),
        };
        Ok(self.start_task(&ty, Some(vmid), user, Some("snapshot"), effect))
    }

    fn lock_refusal(
        &mut self,
        kind: Kind,
        vmid: u32,
        ty: &str,
        user: &str,
        lock: &str,
    ) -> Result<TaskId, Refusal> {
        match kind {
            Kind::Qemu => Ok(self.failing_task(ty, vmid, user, locked(kind, lock))),
            Kind::Lxc => Err(fail(locked(kind, lock))),
        }
    }

    /// `DELETE …/snapshot/{snapname}`.
    pub fn delsnapshot(
        &mut self,
        kind: Kind,
        vmid: u32,
        name: &str,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let effect = Effect::DelSnapshot { name: name.into() };
        self.on_snapshot(
            kind,
            vmid,
            name,
            user,
            "delsnapshot",
            "snapshot-delete",
            effect,
        )
    }

    /// `POST …/snapshot/{snapname}/rollback`.
    pub fn rollback(
        &mut self,
        kind: Kind,
        vmid: u32,
        name: &str,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let effect = Effect::Rollback { name: name.into() };
        self.on_snapshot(kind, vmid, name, user, "rollback", "rollback", effect)
    }

    /// A task on an existing snapshot (`call`: `delsnapshot` or `rollback`), holding `lock`.
    #[allow(clippy::too_many_arguments)]
    fn on_snapshot(
        &mut self,
        kind: Kind,
        vmid: u32,
        name: &str,
        user: &str,
        call: &str,
        lock: &str,
        effect: Effect,
    ) -> Result<TaskId, Refusal> {
        let g = self.guest(kind, vmid)?;
        if !g.snapshots.contains_key(name) {
            return Err(fail(format!("snapshot '{name}' does not exist")));
        }
        let held = g.lock.clone();
        let ty = format!("{}{call}", kind.task_prefix());
        self.st.counters.count(vmid, call, user);
        if let Some(l) = held {
            return self.lock_refusal(kind, vmid, &ty, user, &l);
        }
        Ok(self.start_task(&ty, Some(vmid), user, Some(lock), effect))
    }

    /// `PUT …/resize`: grow only.
    pub fn resize(
        &mut self,
        kind: Kind,
        vmid: u32,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let disk = params.get("disk").cloned().unwrap_or_default();
        let spec = params.get("size").cloned().unwrap_or_default();
        let (grow, amount) = match spec.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, spec.as_str()),
        };
        let bytes = volumes::parse_size(amount).ok_or_else(|| {
            Refusal::param(
                "size",
                format!("value does not match the regex pattern: {spec}"),
            )
        })?;
        let g = self.guest(kind, vmid)?;
        let in_worker = match (
            g.lock.clone(),
            g.config
                .get(&disk)
                .and_then(|v| volumes::volid(v))
                .and_then(|v| self.st.volumes.volumes.get(v)),
        ) {
            (Some(l), _) => Err(locked(kind, &l)),
            (None, None) => Err(format!("disk '{disk}' does not exist")),
            (None, Some(vol)) => {
                let new = if grow { vol.size + bytes } else { bytes };
                if new < vol.size {
                    Err("shrinking disks is not supported".to_string())
                } else {
                    Ok(new)
                }
            }
        };
        self.st.counters.count(vmid, "resize", user);
        match in_worker {
            Err(e) => Ok(self.failing_task("resize", vmid, user, e)),
            Ok(bytes) => Ok(self.start_task(
                "resize",
                Some(vmid),
                user,
                None,
                Effect::Resize { disk, bytes },
            )),
        }
    }

    /// `GET /cluster/nextid`: the lowest free VMID from 100, or whether `vmid` is free.
    pub fn nextid(&self, wanted: Option<u32>) -> Result<u32, Refusal> {
        match wanted {
            Some(v) if self.st.guests.contains_key(&v) => {
                Err(Refusal::param("vmid", format!("VM {v} already exists")))
            }
            Some(v) => Ok(v),
            None => Ok((100..)
                .find(|v| !self.st.guests.contains_key(v))
                .unwrap_or(100)),
        }
    }

    // ---- the out-of-band actor: what a human or another tool does to a node ----

    /// Edits a guest's config as another tool would (the digest moves, the file's mtime too).
    pub fn edit(
        &mut self,
        vmid: u32,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), String> {
        let g = self
            .st
            .guests
            .get_mut(&vmid)
            .ok_or_else(|| format!("no guest {vmid}"))?;
        for (k, v) in set {
            g.config.insert(k.clone(), v.clone());
        }
        for k in delete {
            g.config.remove(k);
        }
        g.touch();
        self.changed();
        Ok(())
    }

    /// Sets or clears a guest's lock (`qm set --lock` / `qm unlock` as root).
    pub fn lock(&mut self, vmid: u32, lock: Option<&str>) {
        if let Some(g) = self.st.guests.get_mut(&vmid) {
            g.lock = lock.map(str::to_string);
            g.touch();
            self.changed();
        }
    }

    /// Adds a guest as another tool would.
    pub fn add_guest(
        &mut self,
        vmid: u32,
        kind: Kind,
        config: BTreeMap<String, String>,
        running: bool,
    ) {
        let mut g = SimGuest::new(kind, config);
        if running {
            g.status = "running".into();
        }
        self.st.guests.insert(vmid, g);
        self.changed();
    }

    /// Leaves what a dead worker leaves: a config holding only `lock: create` (or
    /// `destroyed`), which no token can clear.
    pub fn leftover(&mut self, vmid: u32, kind: Kind, lock: &str) {
        let mut g = SimGuest::new(kind, BTreeMap::new());
        g.lock = Some(lock.into());
        self.st.guests.insert(vmid, g);
        self.changed();
    }

    /// Removes a guest as another tool would (its volumes stay, as orphans).
    pub fn remove_guest(&mut self, vmid: u32) -> bool {
        let gone = self.st.guests.remove(&vmid).is_some();
        self.changed();
        gone
    }

    /// Makes a backup of a guest (as vzdump would), returning its volume id.
    pub fn backup(&mut self, vmid: u32) -> Result<String, String> {
        let g = self
            .st
            .guests
            .get(&vmid)
            .ok_or_else(|| format!("no guest {vmid}"))?;
        let (kind, config) = (g.kind, g.config.clone());
        let id = self.st.volumes.add_backup(vmid, kind, config, now_unix());
        self.changed();
        Ok(id)
    }

    /// Makes a snapshot immediately (as another tool would).
    pub fn add_snapshot(&mut self, vmid: u32, name: &str) -> Result<(), String> {
        let g = self
            .st
            .guests
            .get_mut(&vmid)
            .ok_or_else(|| format!("no guest {vmid}"))?;
        let snap = Snapshot {
            config: g.config.clone(),
            description: String::new(),
            snaptime: now_unix(),
            parent: g.parent.clone(),
            vmstate: false,
        };
        g.snapshots.insert(name.into(), snap);
        g.parent = Some(name.into());
        g.touch();
        self.changed();
        Ok(())
    }
}

//! The simulated node: guests, tasks and locks, as Proxmox keeps them. Task effects apply when
//! the task ends (checked lazily on every request); a locked guest refuses conflicting calls the
//! way Proxmox does. Must never accept a stale digest or act on a locked guest.

use crate::faults::{Dice, Faults};
use crate::upid::TaskId as Upid;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a token may do (Proxmox privilege names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges(pub BTreeSet<String>);

impl Privileges {
    /// Every privilege the simulator checks.
    pub fn all() -> Privileges {
        Privileges(
            [
                "VM.Audit",
                "VM.PowerMgmt",
                "VM.Config.Options",
                "VM.Config.Memory",
                "VM.Config.CPU",
                "VM.Config.Disk",
                "VM.Allocate",
                "Sys.Audit",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
    }

    /// Read-only: `VM.Audit` and `Sys.Audit`.
    pub fn audit_only() -> Privileges {
        Privileges(
            ["VM.Audit", "Sys.Audit"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    }

    /// Whether it holds `p`.
    pub fn has(&self, p: &str) -> bool {
        self.0.contains(p)
    }
}

/// One guest.
#[derive(Clone, Debug)]
pub struct SimGuest {
    /// `qemu` or `lxc`.
    pub kind: &'static str,
    /// `running` or `stopped`.
    pub status: String,
    /// Config as stored (strings), pending values applied.
    pub config: BTreeMap<String, String>,
    /// Keys waiting for a restart: new value, or None for a pending deletion; with the value
    /// that runs now.
    pub pending: BTreeMap<String, (Option<String>, Option<String>)>,
    /// The config lock, if any.
    pub lock: Option<String>,
}

#[derive(Clone, Debug)]
enum Effect {
    Status(&'static str),
    Created,
    Destroyed,
}

#[derive(Clone, Debug)]
struct Task {
    upid: Upid,
    vmid: Option<u32>,
    ends: Option<Instant>,
    outcome: Result<(), String>,
    effect: Effect,
    done: Option<String>,
    endtime: Option<u64>,
    holds_lock: bool,
}

/// An API error as Proxmox answers it: status, status-line reason, optional `errors`.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The status line reason.
    pub reason: String,
    /// Per-parameter errors (400).
    pub errors: Option<Value>,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
        errors: None,
    }
}

/// Keys whose change on a running QEMU guest waits for a restart (no hotplug configured).
const COLD_QEMU: &[&str] = &["memory", "cores", "sockets", "cpu"];

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The node.
#[derive(Debug)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Guests by VMID.
    pub guests: BTreeMap<u32, SimGuest>,
    tasks: Vec<Task>,
    next_pid: u32,
    task_time: Duration,
    faults: Faults,
    dice: Dice,
}

impl Node {
    /// A node with `n` guests (two thirds QEMU, one third LXC, alternating running/stopped).
    pub fn new(name: &str, n: usize, task_time: Duration, faults: Faults, seed: u64) -> Node {
        let mut guests = BTreeMap::new();
        for i in 0..n {
            let vmid = 100 + u32::try_from(i).unwrap_or(u32::MAX - 100);
            let qemu = i % 3 != 2;
            let mut config = BTreeMap::new();
            let name_key = if qemu { "name" } else { "hostname" };
            config.insert(name_key.into(), format!("guest-{vmid}"));
            config.insert("memory".into(), "2048".into());
            config.insert("cores".into(), "2".into());
            config.insert("tags".into(), "fleet;sim".into());
            if qemu {
                config.insert(
                    "scsi0".into(),
                    format!("local-lvm:vm-{vmid}-disk-0,size=32G"),
                );
                config.insert("ostype".into(), "l26".into());
            } else {
                config.insert(
                    "rootfs".into(),
                    format!("local-lvm:subvol-{vmid}-disk-0,size=8G"),
                );
                config.insert("swap".into(), "512".into());
            }
            guests.insert(
                vmid,
                SimGuest {
                    kind: if qemu { "qemu" } else { "lxc" },
                    status: if i % 2 == 0 { "running" } else { "stopped" }.into(),
                    config,
                    pending: BTreeMap::new(),
                    lock: None,
                },
            );
        }
        Node {
            name: name.into(),
            guests,
            tasks: Vec::new(),
            next_pid: 0x000A_1B00,
            task_time,
            faults,
            dice: Dice::new(seed),
        }
    }

    /// The fault settings.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Rolls a per-request fault.
    pub fn roll(&self, p: f64) -> bool {
        self.dice.roll(p)
    }

    /// The digest of a config (the real one is SHA-1 of the file; any change moves it).
    pub fn digest(g: &SimGuest) -> String {
        let mut h = Sha256::new();
        for (k, v) in &g.config {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        h.finalize()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Ends tasks whose time has come, applying their effects.
    pub fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.tasks.len() {
            let t = &self.tasks[i];
            if t.done.is_some() || t.ends.is_none_or(|e| now < e) {
                continue;
            }
            let t = self.tasks[i].clone();
            let status = match &t.outcome {
                Ok(()) => {
                    if let Some(vmid) = t.vmid {
                        match t.effect {
                            Effect::Status(s) => {
                                if let Some(g) = self.guests.get_mut(&vmid) {
                                    g.status = s.into();
                                    // A restart applies what was pending.
                                    g.pending.clear();
                                }
                            }
                            Effect::Destroyed => {
                                self.guests.remove(&vmid);
                            }
                            Effect::Created => {}
                        }
                    }
                    "OK".to_string()
                }
                Err(e) => {
                    if let (Some(vmid), Effect::Created) = (t.vmid, &t.effect) {
                        self.guests.remove(&vmid);
                    }
                    e.clone()
                }
            };
            if t.holds_lock {
                if let Some(g) = t.vmid.and_then(|v| self.guests.get_mut(&v)) {
                    g.lock = None;
                }
            }
            self.tasks[i].done = Some(status);
            self.tasks[i].endtime = Some(now_unix());
        }
    }

    /// "Node restarted": running tasks are lost (they end as `unexpected status`, as Proxmox
    /// marks tasks whose worker died), and their locks stay until cleared by hand, as on a node.
    pub fn restart(&mut self) {
        for t in self.tasks.iter_mut().filter(|t| t.done.is_none()) {
            t.done = Some("unexpected status".into());
            t.endtime = Some(now_unix());
        }
    }

    fn start_task(
        &mut self,
        kind: &str,
        vmid: Option<u32>,
        user: &str,
        effect: Effect,
        lock: Option<&str>,
    ) -> Upid {
        self.next_pid += 1;
        let starttime = u32::try_from(now_unix()).unwrap_or(u32::MAX);
        let upid = Upid {
            node: self.name.clone(),
            pid: self.next_pid,
            pstart: 0x0012_D687,
            starttime,
            kind: kind.into(),
            id: vmid.map(|v| v.to_string()).unwrap_or_default(),
            user: user.into(),
        };
        let hang = self.dice.roll(self.faults.task_hang_rate);
        let fail = self.dice.roll(self.faults.task_fail_rate);
        if let (Some(l), Some(g)) = (lock, vmid.and_then(|v| self.guests.get_mut(&v))) {
            g.lock = Some(l.into());
        }
        self.tasks.push(Task {
            upid: upid.clone(),
            vmid,
            ends: if hang {
                None
            } else {
                Some(Instant::now() + self.task_time)
            },
            outcome: if fail {
                Err("command failed (injected)".into())
            } else {
                Ok(())
            },
            effect,
            done: None,
            endtime: None,
            holds_lock: lock.is_some(),
        });
        upid
    }

    fn guest(&self, kind: &str, vmid: u32) -> Result<&SimGuest, Refusal> {
        match self.guests.get(&vmid) {
            Some(g) if g.kind == kind => Ok(g),
            _ => Err(refuse(
                500,
                format!(
                    "Configuration file 'nodes/{}/{}/{vmid}.conf' does not exist",
                    self.name,
                    if kind == "qemu" { "qemu-server" } else { "lxc" }
                ),
            )),
        }
    }

    fn unlocked(&self, kind: &str, vmid: u32) -> Result<&SimGuest, Refusal> {
        let g = self.guest(kind, vmid)?;
        if let Some(l) = &g.lock {
            let who = if kind == "qemu" { "VM" } else { "CT" };
            return Err(refuse(500, format!("{who} is locked ({l})")));
        }
        Ok(g)
    }

    /// A list entry (`GET /nodes/{node}/{kind}`), in Proxmox's forms: bytes for memory, LXC's
    /// `vmid` as a string.
    pub fn list(&self, kind: &str) -> Value {
        let items: Vec<Value> = self
            .guests
            .iter()
            .filter(|(_, g)| g.kind == kind)
            .map(|(vmid, g)| self.entry(*vmid, g))
            .collect();
        Value::Array(items)
    }

    fn entry(&self, vmid: u32, g: &SimGuest) -> Value {
        let mib: u64 = g
            .config
            .get("memory")
            .and_then(|m| m.split(',').next())
            .and_then(|m| m.trim_start_matches("current=").parse().ok())
            .unwrap_or(512);
        let name = g
            .config
            .get(if g.kind == "qemu" { "name" } else { "hostname" })
            .cloned();
        let running = g.status == "running";
        let mut e = json!({
            "vmid": if g.kind == "lxc" { json!(vmid.to_string()) } else { json!(vmid) },
            "status": g.status,
            "maxmem": mib * 1024 * 1024,
            "mem": if running { mib * 1024 * 1024 / 2 } else { 0 },
            "cpus": g.config.get("cores").and_then(|c| c.parse::<u64>().ok()).unwrap_or(1),
            "maxdisk": 34_359_738_368u64,
            "uptime": if running { 3600 } else { 0 },
            "tags": g.config.get("tags").cloned().unwrap_or_default(),
            "template": if g.config.get("template").map(String::as_str) == Some("1") { 1 } else { 0 },
        });
        if let Some(n) = name {
            e["name"] = json!(n);
        }
        if let Some(l) = &g.lock {
            e["lock"] = json!(l);
        }
        if g.kind == "qemu" {
            e["pid"] = if running {
                json!(4242 + vmid)
            } else {
                Value::Null
            };
            e["qmpstatus"] = json!(g.status);
        } else {
            e["maxswap"] = json!(
                g.config
                    .get("swap")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(512)
                    * 1024
                    * 1024
            );
        }
        e
    }

    /// `GET …/status/current`.
    pub fn status(&self, kind: &str, vmid: u32) -> Result<Value, Refusal> {
        let g = self.guest(kind, vmid)?;
        let mut e = self.entry(vmid, g);
        // Only the LXC *list* carries vmid as a string; status answers a number.
        e["vmid"] = json!(vmid);
        e["ha"] = json!({"managed": 0});
        if kind == "qemu" {
            e["agent"] = json!(0);
        }
        Ok(e)
    }

    /// `GET …/config` (pending applied unless `current`).
    pub fn config(&self, kind: &str, vmid: u32, current: bool) -> Result<Value, Refusal> {
        let g = self.guest(kind, vmid)?;
        let mut m = Map::new();
        let mut view = g.config.clone();
        if current {
            for (k, (_, running)) in &g.pending {
                match running {
                    Some(v) => view.insert(k.clone(), v.clone()),
                    None => view.remove(k),
                };
            }
        }
        for (k, v) in &view {
            // Numbers from the schema's integer keys come back as JSON numbers; property
            // strings (qemu `memory`) and everything else as strings.
            let numeric = [
                "cores",
                "sockets",
                "cpuunits",
                "onboot",
                "swap",
                "template",
                "protection",
            ]
            .contains(&k.as_str())
                || (kind == "lxc" && k == "memory");
            let value = match (numeric, v.parse::<u64>()) {
                (true, Ok(n)) => json!(n),
                _ => json!(v),
            };
            m.insert(k.clone(), value);
        }
        if let Some(l) = &g.lock {
            m.insert("lock".into(), json!(l));
        }
        m.insert("digest".into(), json!(Node::digest(g)));
        Ok(Value::Object(m))
    }

    /// `GET …/pending`.
    pub fn pending(&self, kind: &str, vmid: u32) -> Result<Value, Refusal> {
        let g = self.guest(kind, vmid)?;
        let mut out = Vec::new();
        for (k, v) in &g.config {
            let mut e = json!({"key": k});
            match g.pending.get(k) {
                Some((_, running)) => {
                    if let Some(r) = running {
                        e["value"] = json!(r);
                    }
                    e["pending"] = json!(v);
                }
                None => e["value"] = json!(v),
            }
            out.push(e);
        }
        for (k, (new, running)) in &g.pending {
            if new.is_none() {
                out.push(json!({"key": k, "value": running, "delete": 1}));
            }
        }
        Ok(Value::Array(out))
    }

    /// `PUT/POST …/config`: digest check, lock check, validation, pending for cold keys.
    pub fn set_config(
        &mut self,
        kind: &str,
        vmid: u32,
        params: &BTreeMap<String, String>,
    ) -> Result<(), Refusal> {
        let g = self.unlocked(kind, vmid)?;
        if let Some(d) = params.get("digest") {
            if *d != Node::digest(g) {
                return Err(refuse(
                    500,
                    "detected modified configuration - file changed by other user? Try again.",
                ));
            }
        }
        if let Some(m) = params.get("memory") {
            let mib: Option<u64> = m
                .trim_start_matches("current=")
                .split(',')
                .next()
                .and_then(|x| x.parse().ok());
            if mib.is_none_or(|x| x < 16) {
                return Err(Refusal {
                    status: 400,
                    reason: "Parameter verification failed.".into(),
                    errors: Some(json!({"memory": "value must have a minimum value of 16"})),
                });
            }
        }
        let running = g.status == "running";
        let Some(g) = self.guests.get_mut(&vmid) else {
            return Err(refuse(500, "guest vanished"));
        };
        for (k, v) in params {
            if ["digest", "delete", "skiplock", "revert", "background_delay"].contains(&k.as_str())
            {
                continue;
            }
            let stored = match k.as_str() {
                "tags" => v
                    .split([';', ',', ' '])
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join(";"),
                // Stored as comment lines; each line reads back ended by a newline.
                "description" => v.lines().map(|l| format!("{l}\n")).collect(),
                _ => v.clone(),
            };
            if running && kind == "qemu" && COLD_QEMU.contains(&k.as_str()) {
                let before = g.config.get(k).cloned();
                g.pending.entry(k.clone()).or_insert((None, before)).0 = Some(stored.clone());
            }
            g.config.insert(k.clone(), stored);
        }
        if let Some(del) = params.get("delete") {
            for k in del.split(',').filter(|k| !k.is_empty()) {
                g.config.remove(k);
            }
        }
        Ok(())
    }

    /// `POST …/status/{what}`.
    pub fn power(
        &mut self,
        kind: &str,
        vmid: u32,
        what: &str,
        user: &str,
    ) -> Result<Upid, Refusal> {
        let g = self.unlocked(kind, vmid)?;
        let who = if kind == "qemu" { "VM" } else { "CT" };
        if what == "start" && g.status == "running" {
            return Err(refuse(500, format!("{who} {vmid} already running")));
        }
        if what == "start" && g.config.get("template").map(String::as_str) == Some("1") {
            return Err(refuse(
                500,
                format!(
                    "you can't start a {} if it's a template",
                    if kind == "qemu" { "vm" } else { "CT" }
                ),
            ));
        }
        if what == "reboot" && g.status != "running" {
            return Err(refuse(500, format!("{who} {vmid} not running")));
        }
        let prefix = if kind == "qemu" { "qm" } else { "vz" };
        let effect = match what {
            "start" | "reboot" => Effect::Status("running"),
            _ => Effect::Status("stopped"),
        };
        Ok(self.start_task(&format!("{prefix}{what}"), Some(vmid), user, effect, None))
    }

    /// `POST /nodes/{node}/{kind}` (create).
    pub fn create(
        &mut self,
        kind: &'static str,
        params: &BTreeMap<String, String>,
        user: &str,
    ) -> Result<Upid, Refusal> {
        let vmid: u32 = params
            .get("vmid")
            .and_then(|v| v.parse().ok())
            .filter(|v| (100..=999_999_999).contains(v))
            .ok_or_else(|| Refusal {
                status: 400,
                reason: "Parameter verification failed.".into(),
                errors: Some(
                    json!({"vmid": "invalid format - value does not look like a valid VM ID"}),
                ),
            })?;
        if self.guests.contains_key(&vmid) {
            let who = if kind == "qemu" { "VM" } else { "CT" };
            return Err(refuse(
                500,
                format!("{who} {vmid} already exists on node '{}'", self.name),
            ));
        }
        if kind == "lxc" && !params.contains_key("ostemplate") {
            return Err(Refusal {
                status: 400,
                reason: "Parameter verification failed.".into(),
                errors: Some(json!({"ostemplate": "property is missing and it is not optional"})),
            });
        }
        let config: BTreeMap<String, String> = params
            .iter()
            .filter(|(k, _)| !["vmid", "ostemplate"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.guests.insert(
            vmid,
            SimGuest {
                kind,
                status: "stopped".into(),
                config,
                pending: BTreeMap::new(),
                lock: None,
            },
        );
        let prefix = if kind == "qemu" { "qm" } else { "vz" };
        Ok(self.start_task(
            &format!("{prefix}create"),
            Some(vmid),
            user,
            Effect::Created,
            Some("create"),
        ))
    }

    /// `DELETE …/{vmid}`.
    pub fn destroy(&mut self, kind: &str, vmid: u32, user: &str) -> Result<Upid, Refusal> {
        let g = self.unlocked(kind, vmid)?;
        if g.status == "running" {
            let who = if kind == "qemu" { "VM" } else { "CT" };
            return Err(refuse(
                500,
                format!("{who} {vmid} is running - destroy failed"),
            ));
        }
        if g.config.get("protection").map(String::as_str) == Some("1") {
            return Err(refuse(500, "can't remove VM - protection mode enabled"));
        }
        let prefix = if kind == "qemu" { "qm" } else { "vz" };
        Ok(self.start_task(
            &format!("{prefix}destroy"),
            Some(vmid),
            user,
            Effect::Destroyed,
            Some("destroyed"),
        ))
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    pub fn task_status(&self, upid: &str) -> Result<Value, Refusal> {
        let t = self
            .tasks
            .iter()
            .find(|t| t.upid.to_string() == upid)
            .ok_or_else(|| {
                refuse(
                    500,
                    format!("unable to open file - No such file or directory ({upid})"),
                )
            })?;
        let mut v = json!({
            "upid": upid,
            "node": t.upid.node,
            "pid": t.upid.pid,
            "pstart": t.upid.pstart,
            "starttime": t.upid.starttime,
            "type": t.upid.kind,
            "id": t.upid.id,
            "user": t.upid.user,
            "status": if t.done.is_some() { "stopped" } else { "running" },
        });
        if let Some(d) = &t.done {
            v["exitstatus"] = json!(d);
        }
        Ok(v)
    }

    /// `GET /nodes/{node}/tasks` (newest first, running included with `source=all`).
    pub fn task_list(&self, since: Option<u64>, all: bool) -> Value {
        let items: Vec<Value> = self
            .tasks
            .iter()
            .rev()
            .filter(|t| all || t.done.is_some())
            .filter(|t| since.is_none_or(|s| u64::from(t.upid.starttime) >= s))
            .map(|t| {
                let mut v = json!({
                    "upid": t.upid.to_string(),
                    "type": t.upid.kind,
                    "id": t.upid.id,
                    "user": t.upid.user,
                    "node": t.upid.node,
                    "pid": t.upid.pid,
                    "pstart": t.upid.pstart,
                    "starttime": t.upid.starttime,
                });
                if let Some(d) = &t.done {
                    v["status"] = json!(d);
                }
                if let Some(e) = t.endtime {
                    v["endtime"] = json!(e);
                }
                v
            })
            .collect();
        Value::Array(items)
    }

    /// Test hook: lock a guest as a backup would.
    pub fn lock(&mut self, vmid: u32, reason: &str) {
        if let Some(g) = self.guests.get_mut(&vmid) {
            g.lock = Some(reason.into());
        }
    }
}

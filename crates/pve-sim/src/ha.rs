//! High availability as pve-ha-manager gives it to API clients: HA resources
//! (`/cluster/ha/resources`, `vm:100` / `ct:101`, requested state `started`, `stopped`,
//! `disabled` or `ignored`); a start, stop or shutdown of an HA-managed guest answered with an
//! `hastart`/`hastop` task ("Requesting HA start for VM 100") that only records the request; the
//! cluster resource manager carrying requests out later (a `qmstart`/`qmstop` task by
//! `root@pam` on the guest's node); `hastate` in `/cluster/resources` and `ha` in
//! `status/current`; and fencing: a node that goes down has its HA guests recovered to a
//! surviving node after a delay, started there when they were requested started.
//! It must never start or stop a guest at the moment of the request: only the manager acts, later.

use crate::cluster::Cluster;
use crate::forms::Kind;
use crate::node::{now_ms, Effect, Refusal};
use crate::upid::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One HA resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaResource {
    /// `vm` or `ct`.
    pub kind: String,
    /// The requested state: `started`, `stopped`, `disabled`, `ignored`.
    pub state: String,
    /// When the request was made (Unix ms): the manager acts `crm_delay` after it.
    pub since_ms: u64,
}

/// The requested states the schema allows.
const STATES: &[&str] = &["started", "stopped", "disabled", "ignored"];

/// `vm:100` / `ct:100` / `100` → (type, VMID), as `PVE::HA::Config::parse_sid` reads it.
fn parse_sid(sid: &str) -> Result<(String, u32), Refusal> {
    let (ty, id) = match sid.split_once(':') {
        Some((t, i)) => (t.to_string(), i),
        None => ("vm".to_string(), sid),
    };
    match (ty.as_str(), id.parse::<u32>()) {
        ("vm" | "ct", Ok(v)) => Ok((ty, v)),
        _ => Err(Refusal::new(
            500,
            format!("unable to parse service id '{sid}'"),
        )),
    }
}

impl Cluster {
    /// Whether `vmid` is an HA resource (in any requested state), as `vm_is_ha_managed`.
    pub fn ha_managed(&self, vmid: u32) -> bool {
        self.ha.contains_key(&vmid)
    }

    /// The HA service state `/cluster/resources` shows as `hastate`, as the manager reports
    /// it: `started`/`stopped` once the guest is so, `starting`/`request_stop` meanwhile,
    /// `fence` while its node is down, or the requested `disabled`/`ignored`.
    pub fn hastate(&self, vmid: u32) -> Option<String> {
        let r = self.ha.get(&vmid)?;
        let (node, running) = self.nodes.values().find_map(|n| {
            n.st.guests
                .get(&vmid)
                .map(|g| (n.name().to_string(), g.running()))
        })?;
        Some(
            match (r.state.as_str(), running) {
                _ if self.fenced.contains(&node) => "fence",
                ("started", true) => "started",
                ("started", false) => "starting",
                ("stopped" | "disabled", true) => "request_stop",
                ("stopped", false) => "stopped",
                (other, _) => other,
            }
            .to_string(),
        )
    }

    fn ha_entry(&self, vmid: u32) -> Option<Value> {
        let r = self.ha.get(&vmid)?;
        Some(json!({
            "sid": format!("{}:{vmid}", r.kind), "type": r.kind, "state": r.state,
            "digest": self.ha_digest(), "max_restart": 1, "max_relocate": 1, "failback": 1,
        }))
    }

    fn ha_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (v, r) in &self.ha {
            h.update(format!("{}:{v}={};", r.kind, r.state).as_bytes());
        }
        h.finalize()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `GET /cluster/ha/resources` (`type` filters).
    pub fn ha_list(&self, ty: Option<&str>) -> Value {
        Value::Array(
            self.ha
                .iter()
                .filter(|(_, r)| ty.is_none_or(|t| t == r.kind))
                .filter_map(|(v, _)| self.ha_entry(*v))
                .collect(),
        )
    }

    /// `GET /cluster/ha/resources/{sid}`.
    pub fn ha_read(&self, sid: &str) -> Result<Value, Refusal> {
        let (_, vmid) = parse_sid(sid)?;
        self.ha_entry(vmid)
            .ok_or_else(|| Refusal::new(500, format!("no such resource '{sid}'")))
    }

    /// `POST /cluster/ha/resources` (`sid`, `state` default `started`).
    pub fn ha_create(&mut self, params: &BTreeMap<String, String>) -> Result<Value, Refusal> {
        let sid = params.get("sid").cloned().unwrap_or_default();
        let (ty, vmid) = parse_sid(&sid)?;
        let kind = self
            .nodes
            .values()
            .find_map(|n| n.st.guests.get(&vmid).map(|g| g.kind))
            .ok_or_else(|| Refusal::new(500, format!("VM {vmid} does not exist")))?;
        let want = if kind == Kind::Qemu { "vm" } else { "ct" };
        if ty != want {
            return Err(Refusal::new(500, "types does not match"));
        }
        if self.ha.contains_key(&vmid) {
            return Err(Refusal::new(
                500,
                format!("resource ID '{ty}:{vmid}' already defined"),
            ));
        }
        let state = params
            .get("state")
            .cloned()
            .unwrap_or_else(|| "started".into());
        self.set_ha(vmid, &ty, &state)?;
        Ok(Value::Null)
    }

    /// `PUT /cluster/ha/resources/{sid}` (`state`).
    pub fn ha_update(
        &mut self,
        sid: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Value, Refusal> {
        let (ty, vmid) = parse_sid(sid)?;
        if !self.ha.contains_key(&vmid) {
            return Err(Refusal::new(500, format!("no such resource '{sid}'")));
        }
        if let Some(state) = params.get("state") {
            self.set_ha(vmid, &ty, state)?;
        }
        Ok(Value::Null)
    }

    /// `DELETE /cluster/ha/resources/{sid}`.
    pub fn ha_delete(&mut self, sid: &str) -> Result<Value, Refusal> {
        let (_, vmid) = parse_sid(sid)?;
        if self.ha.remove(&vmid).is_none() {
            return Err(Refusal::new(
                500,
                format!("cannot delete service '{sid}', not HA managed!"),
            ));
        }
        self.touch();
        Ok(Value::Null)
    }

    /// Records a requested state (the manager acts on it later).
    pub fn set_ha(&mut self, vmid: u32, ty: &str, state: &str) -> Result<(), Refusal> {
        // `enabled` is the schema's alias of `started`.
        let state = if state == "enabled" { "started" } else { state };
        if !STATES.contains(&state) {
            return Err(Refusal::param(
                "state",
                format!("value '{state}' does not have a value in the enumeration 'started, stopped, enabled, disabled, ignored'"),
            ));
        }
        self.ha.insert(
            vmid,
            HaResource {
                kind: ty.to_string(),
                state: state.to_string(),
                since_ms: now_ms(),
            },
        );
        self.touch();
        Ok(())
    }

    /// A start, stop or shutdown of an HA-managed guest on `node`: an `hastart`/`hastop` task
    /// that records the request ("Requesting HA start for VM 100") and nothing else.
    pub fn ha_power(
        &mut self,
        node: &str,
        kind: Kind,
        vmid: u32,
        what: &str,
        user: &str,
    ) -> Result<TaskId, Refusal> {
        let (ty, state, task, verb) = match (kind, what) {
            (Kind::Qemu, "start") => ("vm", "started", "hastart", "start"),
            (Kind::Lxc, "start") => ("ct", "started", "hastart", "start"),
            (Kind::Qemu, _) => ("vm", "stopped", "hastop", "stop"),
            (Kind::Lxc, _) => ("ct", "stopped", "hastop", "stop"),
        };
        let unknown = || Refusal::new(595, format!("no such node '{node}'"));
        self.nodes
            .get(node)
            .ok_or_else(unknown)?
            .guest(kind, vmid)?;
        self.set_ha(vmid, ty, state)?;
        let n = self.node_mut(node).ok_or_else(unknown)?;
        n.st.counters.count(vmid, what, user);
        let upid = n.start_task(task, Some(vmid), user, None, Effect::Nothing);
        if let Some(t) = n.st.tasks.last_mut() {
            t.log
                .push(format!("Requesting HA {verb} for {} {vmid}", kind.who()));
        }
        Ok(upid)
    }

    /// The cluster resource manager's round: requests older than the manager's delay are
    /// carried out (a `qmstart`/`qmstop` task by `root@pam` on the guest's node), and the HA
    /// guests of a fenced node are recovered to the first surviving node, then started there
    /// if they were requested started.
    pub(crate) fn crm(&mut self) {
        let now = now_ms();
        let due: Vec<(u32, HaResource)> = self
            .ha
            .iter()
            .filter(|(_, r)| now >= r.since_ms + self.crm_delay_ms)
            .map(|(v, r)| (*v, r.clone()))
            .collect();
        for (vmid, r) in due {
            let Some(node) = self.owner(vmid).map(str::to_string) else {
                continue;
            };
            if self.fenced.contains(&node) {
                if matches!(r.state.as_str(), "disabled" | "ignored") {
                    continue;
                }
                let Some(survivor) = self
                    .order
                    .iter()
                    .find(|n| **n != node && !self.fenced.contains(*n))
                    .cloned()
                else {
                    continue;
                };
                if let Some(n) = self.node_mut(&node) {
                    if let Some(g) = n.st.guests.get_mut(&vmid) {
                        // The fenced node is down: what ran there does not run anymore.
                        g.status = "stopped".into();
                        g.lock = None;
                    }
                    if n.depart(vmid, &survivor).is_err() {
                        continue;
                    }
                    let d = n.departures.pop();
                    if let (Some(d), Some(t)) = (d, self.nodes.get_mut(&survivor)) {
                        t.arrive(d);
                    }
                }
                continue;
            }
            let Some(n) = self.nodes.get_mut(&node) else {
                continue;
            };
            let Some(g) = n.st.guests.get(&vmid) else {
                continue;
            };
            let locked = g.lock.is_some();
            let busy =
                n.st.tasks
                    .iter()
                    .any(|t| t.vmid == Some(vmid) && t.done.is_none());
            if locked || busy {
                continue;
            }
            let (prefix, running) = (g.kind.task_prefix(), g.running());
            match (r.state.as_str(), running) {
                ("started", false) => {
                    n.start_task(
                        &format!("{prefix}start"),
                        Some(vmid),
                        "root@pam",
                        None,
                        Effect::Start,
                    );
                }
                ("stopped" | "disabled", true) => {
                    n.start_task(
                        &format!("{prefix}stop"),
                        Some(vmid),
                        "root@pam",
                        None,
                        Effect::Stop,
                    );
                }
                _ => {}
            }
        }
    }

    /// The node goes down (an out-of-band "fence"): its listener stops answering, its guests
    /// show `unknown`, and the manager recovers its HA guests after its delay.
    pub fn fence(&mut self, node: &str) -> Result<(), String> {
        if !self.nodes.contains_key(node) {
            return Err(format!("no node {node}"));
        }
        self.fenced.insert(node.to_string());
        // Fencing and recovery take longer than a request: twice the manager's delay.
        let later = now_ms() + self.crm_delay_ms;
        let here: Vec<u32> = self.nodes[node].st.guests.keys().copied().collect();
        for v in here {
            if let Some(r) = self.ha.get_mut(&v) {
                r.since_ms = later;
            }
        }
        self.touch();
        Ok(())
    }
}

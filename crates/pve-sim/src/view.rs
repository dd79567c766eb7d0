//! What the node answers to reads, in Proxmox's shapes and units: guest lists (memory in bytes,
//! the LXC list's `vmid` as a string, `lock` only when locked), status, config (MiB, integer
//! keys as numbers, property strings as strings, the description as each kind reads it back,
//! pending values applied unless `current=1`), pending, snapshots, cluster resources and status,
//! node list and status, version. It must never show a value in another unit than Proxmox does.

use crate::forms::{self, Kind};
use crate::node::{now_unix, Node, Refusal, SimGuest};
use serde_json::{json, Map, Value};

/// Config keys the schema types as integers or booleans: sent as JSON numbers.
const NUMERIC: &[&str] = &[
    "cores",
    "sockets",
    "cpuunits",
    "onboot",
    "swap",
    "template",
    "protection",
    "balloon",
    "vcpus",
    "numa",
    "acpi",
    "kvm",
    "tablet",
    "shares",
    "unprivileged",
    "console",
    "tty",
    "cmode",
    "startdate",
];

fn numeric(kind: Kind, k: &str) -> bool {
    NUMERIC.contains(&k) || (kind == Kind::Lxc && k == "memory")
}

fn mib(g: &SimGuest, key: &str, default: u64) -> u64 {
    g.config
        .get(key)
        .and_then(|m| {
            m.split(',').find_map(|p| match p.split_once('=') {
                Some(("current", v)) => Some(v),
                None => Some(p),
                _ => None,
            })
        })
        .and_then(|m| m.parse().ok())
        .unwrap_or(default)
}

fn disk_bytes(node: &Node, g: &SimGuest) -> u64 {
    let key = if g.kind == Kind::Qemu {
        "scsi0"
    } else {
        "rootfs"
    };
    g.config
        .get(key)
        .and_then(|v| crate::volumes::volid(v))
        .and_then(|v| node.st.volumes.volumes.get(v))
        .map_or(0, |v| v.size)
}

impl Node {
    /// A list entry (`GET /nodes/{node}/{kind}`), as qemu-server's and pve-container's
    /// `vmstatus` build it: `name` always (`VM <vmid>` / `CT<vmid>` when the config has none),
    /// the VMID an integer for both kinds (pve-container since 5.0.10), LXC `type` and `swap`;
    /// QEMU's `qmpstatus`, `diskread` and `diskwrite` only with `full` (they come from QMP).
    pub fn entry(&self, vmid: u32, g: &SimGuest, full: bool) -> Value {
        let mem = mib(g, "memory", 512) * 1024 * 1024;
        let running = g.running();
        let mut e = json!({
            "vmid": vmid,
            "status": g.status,
            "maxmem": mem,
            "mem": if running { mem / 2 } else { 0 },
            "cpus": g.config.get("cores").and_then(|c| c.parse::<u64>().ok()).unwrap_or(1),
            "maxdisk": disk_bytes(self, g),
            "disk": 0,
            "uptime": if running { 3600 } else { 0 },
            "netin": 0, "netout": 0,
            "cpu": 0,
        });
        let name = match (g.config.get(g.kind.name_key()), g.kind) {
            (Some(n), _) => n.clone(),
            (None, Kind::Qemu) => format!("VM {vmid}"),
            (None, Kind::Lxc) => format!("CT{vmid}"),
        };
        e["name"] = json!(name);
        if let Some(t) = g.config.get("tags") {
            e["tags"] = json!(t);
        }
        if g.is_template() {
            e["template"] = json!(1);
        }
        if let Some(l) = &g.lock {
            e["lock"] = json!(l);
        }
        match g.kind {
            Kind::Qemu => {
                e["memhost"] = json!(if running { mem / 2 } else { 0 });
                if running {
                    e["pid"] = json!(4242 + vmid);
                }
                if full {
                    e["qmpstatus"] = json!(if g.paused {
                        "paused"
                    } else {
                        g.status.as_str()
                    });
                    e["diskread"] = json!(0);
                    e["diskwrite"] = json!(0);
                }
            }
            Kind::Lxc => {
                e["type"] = json!("lxc");
                e["swap"] = json!(0);
                e["maxswap"] = json!(mib(g, "swap", 512) * 1024 * 1024);
                e["diskread"] = json!(0);
                e["diskwrite"] = json!(0);
            }
        }
        e
    }

    /// `GET /nodes/{node}/{kind}`, the guests `visible` lets the caller see (`full`: with
    /// what QMP adds).
    pub fn list(&self, kind: Kind, visible: &dyn Fn(u32) -> bool, full: bool) -> Value {
        Value::Array(
            self.st
                .guests
                .iter()
                .filter(|(vmid, g)| g.kind == kind && visible(**vmid))
                .map(|(vmid, g)| self.entry(*vmid, g, full))
                .collect(),
        )
    }

    /// `GET …/status/current`.
    pub fn status(&self, kind: Kind, vmid: u32) -> Result<Value, Refusal> {
        let g = self.guest(kind, vmid)?;
        let mut e = self.entry(vmid, g, true);
        e["ha"] = json!({"managed": 0});
        if kind == Kind::Qemu {
            e["agent"] = json!(0);
        }
        Ok(e)
    }

    fn config_value(kind: Kind, k: &str, v: &str) -> Value {
        if k == "description" {
            return json!(forms::description_read(kind, v));
        }
        match (numeric(kind, k), v.parse::<u64>()) {
            (true, Ok(n)) => json!(n),
            _ => json!(v),
        }
    }

    /// `GET …/config` (pending values applied unless `current`).
    pub fn config(&self, kind: Kind, vmid: u32, current: bool) -> Result<Value, Refusal> {
        let g = self.guest(kind, vmid)?;
        let view = if current {
            g.config.clone()
        } else {
            g.effective()
        };
        let mut m = Map::new();
        for (k, v) in &view {
            m.insert(k.clone(), Node::config_value(kind, k, v));
        }
        if let Some(l) = &g.lock {
            m.insert("lock".into(), json!(l));
        }
        if let Some(p) = &g.parent {
            m.insert("parent".into(), json!(p));
        }
        m.insert("digest".into(), json!(Node::digest(g)));
        Ok(Value::Object(m))
    }

    /// `GET …/pending`: every key, with its current value, its pending value, or `delete: 1`.
    /// Like Proxmox's `config_with_pending_array`, it lists every plain key of the loaded
    /// config, so `digest`, `lock` and `parent` are there as values too.
    pub fn pending(&self, kind: Kind, vmid: u32) -> Result<Value, Refusal> {
        let g = self.guest(kind, vmid)?;
        let mut keys: std::collections::BTreeSet<&String> = g.config.keys().collect();
        keys.extend(g.pending.keys());
        let meta = [
            ("digest", Some(Node::digest(g))),
            ("lock", g.lock.clone()),
            ("parent", g.parent.clone()),
        ];
        let meta = meta
            .into_iter()
            .filter_map(|(k, v)| Some(json!({"key": k, "value": v?})));
        let out = keys
            .into_iter()
            .map(|k| {
                let mut e = json!({"key": k});
                // The pending list carries values as strings (its schema types them so), read
                // from the same loaded config as `GET …/config` (an LXC description ends in
                // a newline there too).
                let read = |v: &str| match k.as_str() {
                    "description" => forms::description_read(kind, v),
                    _ => v.to_string(),
                };
                if let Some(v) = g.config.get(k) {
                    e["value"] = json!(read(v));
                }
                match g.pending.get(k) {
                    Some(Some(p)) => e["pending"] = json!(read(p)),
                    Some(None) => e["delete"] = json!(1),
                    None => {}
                }
                e
            })
            .chain(meta)
            .collect();
        Ok(Value::Array(out))
    }

    /// `GET …/snapshot`: the snapshots and `current` ("You are here!").
    pub fn snapshots(&self, kind: Kind, vmid: u32) -> Result<Value, Refusal> {
        let g = self.guest(kind, vmid)?;
        let mut out: Vec<Value> = g
            .snapshots
            .iter()
            .map(|(name, s)| {
                let mut e =
                    json!({"name": name, "description": s.description, "snaptime": s.snaptime});
                if let Some(p) = &s.parent {
                    e["parent"] = json!(p);
                }
                if kind == Kind::Qemu {
                    e["vmstate"] = json!(if s.vmstate { 1 } else { 0 });
                }
                e
            })
            .collect();
        let mut current = json!({"name": "current", "description": "You are here!"});
        if let Some(p) = &g.parent {
            current["parent"] = json!(p);
        }
        out.push(current);
        Ok(Value::Array(out))
    }

    /// `GET /cluster/resources` (`type=vm`: guests only), guests filtered by `visible`.
    pub fn resources(&self, only_vms: bool, visible: &dyn Fn(u32) -> bool) -> Value {
        let mut out: Vec<Value> = self
            .st
            .guests
            .iter()
            .filter(|(v, _)| visible(**v))
            .map(|(vmid, g)| {
                let e = self.entry(*vmid, g, false);
                let mut r = json!({
                    "id": format!("{}/{vmid}", g.kind.as_str()),
                    "type": g.kind.as_str(),
                    "vmid": vmid,
                    "node": self.st.name,
                    "status": g.status,
                    "maxmem": e["maxmem"], "mem": e["mem"], "maxcpu": e["cpus"], "cpu": 0,
                    "maxdisk": e["maxdisk"], "disk": 0, "uptime": e["uptime"],
                    "template": if g.is_template() { 1 } else { 0 },
                    "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
                });
                for k in ["name", "tags", "lock"] {
                    if let Some(v) = e.get(k) {
                        r[k] = v.clone();
                    }
                }
                r
            })
            .collect();
        if !only_vms {
            out.push(json!({"id": format!("node/{}", self.st.name), "type": "node", "node": self.st.name, "status": "online", "maxcpu": 16, "maxmem": 68_719_476_736u64, "mem": 8_589_934_592u64, "cpu": 0.05, "uptime": 86_400, "level": ""}));
            for (name, s) in self.st.volumes.storage_list() {
                out.push(json!({"id": format!("storage/{}/{name}", self.st.name), "type": "storage", "storage": name, "node": self.st.name, "status": "available", "maxdisk": s["total"], "disk": s["used"], "content": s["content"], "plugintype": s["type"], "shared": 0}));
            }
        }
        Value::Array(out)
    }

    /// `GET /cluster/status` of a standalone node (no cluster entry).
    pub fn cluster_status(&self) -> Value {
        json!([{"type": "node", "name": self.st.name, "id": format!("node/{}", self.st.name), "nodeid": 0, "ip": "127.0.0.1", "local": 1, "online": 1, "level": ""}])
    }

    /// `GET /nodes`.
    pub fn nodes(&self, fingerprint: &str) -> Value {
        json!([{"node": self.st.name, "status": "online", "maxcpu": 16, "maxmem": 68_719_476_736u64, "mem": 8_589_934_592u64, "cpu": 0.05, "uptime": 86_400, "level": "", "ssl_fingerprint": fingerprint}])
    }

    /// `GET /nodes/{node}/status`.
    pub fn node_status(&self) -> Value {
        json!({
            "cpu": 0.05,
            "cpuinfo": {"cores": 8, "cpus": 16, "model": "Simulated CPU", "sockets": 1, "mhz": "3000.000", "hvm": "1", "flags": "", "user_hz": 100},
            "memory": {"total": 68_719_476_736u64, "used": 8_589_934_592u64, "free": 60_129_542_144u64, "available": 60_129_542_144u64},
            "swap": {"total": 8_589_934_592u64, "used": 0, "free": 8_589_934_592u64},
            "rootfs": {"total": 107_374_182_400u64, "used": 10_737_418_240u64, "free": 96_636_764_160u64, "avail": 96_636_764_160u64},
            "loadavg": ["0.05", "0.10", "0.15"],
            "uptime": 86_400,
            "idle": 0,
            "wait": 0.0,
            "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z) x86_64",
            "pveversion": "pve-manager/9.1.3/0000000000000000",
            "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2", "machine": "x86_64"},
            "boot-info": {"mode": "efi", "secureboot": 0},
            "ksm": {"shared": 0},
            "time": now_unix(),
        })
    }
}

/// `GET /version`.
pub fn version() -> Value {
    json!({"version": "9.1.3", "release": "9.1", "repoid": "0000000000000000", "console": "xtermjs"})
}

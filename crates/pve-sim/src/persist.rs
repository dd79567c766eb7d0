//! State that outlives the processes around it: the node (a cluster: its nodes) as one JSON document in a state
//! directory (written to a temporary file, synced and renamed over the old one, so a killed
//! simulator leaves the last whole state), and the config-file view — each guest's config as
//! `<dir>/qemu-server/<vmid>.conf` or `<dir>/lxc/<vmid>.conf` in the layout of `/etc/pve`,
//! rewritten only when that guest changed, so its mtime moves exactly when the config does.
//! It must never leave a half-written state file in place of a whole one.

use crate::cluster::Cluster;
use crate::forms::Kind;
use crate::node::{NodeState, SimGuest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A standalone node's state file (a `NodeState`).
const STATE: &str = "state.json";
/// A cluster's state file (a `Saved`).
const CLUSTER: &str = "cluster.json";

/// What a state directory holds: the nodes, the first one first, and which lost quorum.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    /// The nodes in order.
    pub nodes: Vec<NodeState>,
    /// Nodes without quorum.
    #[serde(default)]
    pub no_quorum: Vec<String>,
    /// HA resources.
    #[serde(default)]
    pub ha: BTreeMap<u32, crate::ha::HaResource>,
    /// Nodes that are down.
    #[serde(default)]
    pub fenced: Vec<String>,
}

#[derive(Serialize)]
struct SavedRef<'a> {
    nodes: Vec<&'a NodeState>,
    no_quorum: Vec<&'a String>,
    ha: &'a BTreeMap<u32, crate::ha::HaResource>,
    fenced: Vec<&'a String>,
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads a persisted cluster or node, if the directory holds one.
pub fn load(dir: &Path) -> Result<Option<Saved>, String> {
    let at = |p: &Path, e: serde_json::Error| format!("{}: {e}", p.display());
    let path = dir.join(CLUSTER);
    if let Some(bytes) = read(&path)? {
        return serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| at(&path, e));
    }
    let path = dir.join(STATE);
    match read(&path)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(|st| {
                Some(Saved {
                    nodes: vec![st],
                    no_quorum: Vec::new(),
                    ha: BTreeMap::new(),
                    fenced: Vec::new(),
                })
            })
            .map_err(|e| at(&path, e)),
        None => Ok(None),
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Saves the cluster: a standalone node as its own state file, a cluster as one document.
pub fn save(dir: &Path, cluster: &Cluster) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !cluster.is_cluster() && cluster.ha.is_empty() {
        if let Some(n) = cluster.nodes.values().next() {
            let bytes = serde_json::to_vec(&n.st).map_err(|e| e.to_string())?;
            return write_atomically(&dir.join(STATE), &bytes);
        }
    }
    let saved = SavedRef {
        nodes: cluster
            .order
            .iter()
            .filter_map(|n| cluster.nodes.get(n).map(|n| &n.st))
            .collect(),
        no_quorum: cluster.no_quorum.iter().collect(),
        ha: &cluster.ha,
        fenced: cluster.fenced.iter().collect(),
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| e.to_string())?;
    write_atomically(&dir.join(CLUSTER), &bytes)
}

/// The config file of a guest as a node writes it: description as `#` lines, `key: value`
/// lines, then `[pending]` (with `delete:`) and one section per snapshot.
pub fn conf_text(g: &SimGuest) -> String {
    let mut out = String::new();
    let body = |config: &BTreeMap<String, String>, out: &mut String| {
        if let Some(d) = config.get("description") {
            for line in d.lines() {
                out.push('#');
                out.push_str(line);
                out.push('\n');
            }
        }
        for (k, v) in config.iter().filter(|(k, _)| *k != "description") {
            out.push_str(&format!("{k}: {v}\n"));
        }
    };
    let mut config = g.config.clone();
    if let Some(l) = &g.lock {
        config.insert("lock".into(), l.clone());
    }
    if let Some(p) = &g.parent {
        config.insert("parent".into(), p.clone());
    }
    body(&config, &mut out);
    if !g.pending.is_empty() {
        out.push_str("\n[pending]\n");
        let set: BTreeMap<String, String> = g
            .pending
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        body(&set, &mut out);
        let deleted: Vec<&str> = g
            .pending
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        if !deleted.is_empty() {
            out.push_str(&format!("delete: {}\n", deleted.join(",")));
        }
    }
    for (name, s) in &g.snapshots {
        out.push_str(&format!("\n[{name}]\n"));
        let mut c = s.config.clone();
        c.insert("snaptime".into(), s.snaptime.to_string());
        if let Some(p) = &s.parent {
            c.insert("parent".into(), p.clone());
        }
        body(&c, &mut out);
    }
    out
}

/// The config-file view: keeps `<dir>/{qemu-server,lxc}/<vmid>.conf` in step with the node.
#[derive(Debug)]
pub struct ConfView {
    dir: PathBuf,
    written: BTreeMap<u32, (Kind, u64)>,
}

impl ConfView {
    /// A view rooted at `dir` (created if missing).
    pub fn new(dir: PathBuf) -> ConfView {
        ConfView {
            dir,
            written: BTreeMap::new(),
        }
    }

    fn path(&self, kind: Kind, vmid: u32) -> PathBuf {
        self.dir.join(kind.conf_dir()).join(format!("{vmid}.conf"))
    }

    /// Rewrites the files of guests whose config changed and removes those of guests gone.
    pub fn sync(&mut self, guests: &BTreeMap<u32, SimGuest>) -> Result<(), String> {
        for kind in [Kind::Qemu, Kind::Lxc] {
            let d = self.dir.join(kind.conf_dir());
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        for (vmid, g) in guests {
            if self.written.get(vmid) == Some(&(g.kind, g.version)) {
                continue;
            }
            if let Some((old, _)) = self.written.get(vmid) {
                if *old != g.kind {
                    let _ = std::fs::remove_file(self.path(*old, *vmid));
                }
            }
            write_atomically(&self.path(g.kind, *vmid), conf_text(g).as_bytes())?;
            self.written.insert(*vmid, (g.kind, g.version));
        }
        let gone: Vec<(u32, Kind)> = self
            .written
            .iter()
            .filter(|(v, _)| !guests.contains_key(v))
            .map(|(v, (k, _))| (*v, *k))
            .collect();
        for (vmid, kind) in gone {
            let _ = std::fs::remove_file(self.path(kind, vmid));
            self.written.remove(&vmid);
        }
        Ok(())
    }
}

//! The cluster: nodes that share one configuration namespace, as pmxcfs gives a Proxmox cluster.
//! VMIDs are unique cluster-wide (a create of a VMID another node holds is refused with
//! pve-cluster's `check_vmid_unused` text), `/cluster/resources`, `/cluster/nextid`, `/nodes` and
//! `/cluster/status` answer for every node, and a migration ends with the guest's config and
//! volumes on the target node. Quorum is per node: a node that lost it answers every write with
//! `cluster not ready - no quorum?` while its reads still answer. A single-node "cluster" is a
//! standalone node and answers exactly as one does.
//! It must never let two nodes hold the same VMID, nor a write through a node without quorum.

use crate::node::{Node, Refusal};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// pve-cluster's `check_cfs_quorum` text.
pub const NO_QUORUM: &str = "cluster not ready - no quorum?";

/// The simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Its nodes by name; the first is the one a standalone simulator is.
    pub nodes: BTreeMap<String, Node>,
    /// Node names in the order they were given (the first is the default node).
    pub order: Vec<String>,
    /// Nodes that have lost quorum.
    pub no_quorum: BTreeSet<String>,
    /// Writes refused for want of quorum, by node (for harnesses: "no write was attempted").
    pub refused_no_quorum: BTreeMap<String, u64>,
    /// HA resources by VMID.
    pub ha: BTreeMap<u32, crate::ha::HaResource>,
    /// Nodes that are down (fenced): their listeners do not answer.
    pub fenced: BTreeSet<String>,
    /// How long the HA manager takes to act on a request or recover a fenced node's guests.
    pub crm_delay_ms: u64,
    /// Bumped on cluster-level changes (quorum); nodes count their own.
    generation: u64,
}

impl Cluster {
    /// A cluster of `nodes` (in order; the first is the default node).
    pub fn new(nodes: Vec<Node>) -> Cluster {
        let order = nodes.iter().map(|n| n.name().to_string()).collect();
        Cluster {
            nodes: nodes
                .into_iter()
                .map(|n| (n.name().to_string(), n))
                .collect(),
            order,
            no_quorum: BTreeSet::new(),
            refused_no_quorum: BTreeMap::new(),
            ha: BTreeMap::new(),
            fenced: BTreeSet::new(),
            crm_delay_ms: 400,
            generation: 0,
        }
    }

    /// More than one node: answers carry a cluster entry, configs live below `nodes/<node>/`.
    pub fn is_cluster(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The first node given.
    pub fn first(&self) -> &str {
        self.order.first().map_or("", String::as_str)
    }

    /// The node `name`, if the cluster has it.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes.get_mut(name)
    }

    /// The node holding `vmid`, if any.
    pub fn owner(&self, vmid: u32) -> Option<&str> {
        self.nodes
            .values()
            .find(|n| n.st.guests.contains_key(&vmid))
            .map(Node::name)
    }

    /// Whether `node` has quorum.
    pub fn quorate(&self, node: &str) -> bool {
        !self.no_quorum.contains(node)
    }

    /// Drops (`false`) or restores (`true`) quorum on `node`.
    pub fn set_quorum(&mut self, node: &str, quorate: bool) -> Result<(), String> {
        if !self.nodes.contains_key(node) {
            return Err(format!("no node {node}"));
        }
        if quorate {
            self.no_quorum.remove(node);
        } else {
            self.no_quorum.insert(node.to_string());
        }
        self.generation += 1;
        Ok(())
    }

    /// Refuses (and counts) a write through `node` when it has no quorum.
    pub fn require_quorum(&mut self, node: &str) -> Result<(), Refusal> {
        if self.quorate(node) {
            Ok(())
        } else {
            *self.refused_no_quorum.entry(node.to_string()).or_default() += 1;
            Err(Refusal::new(500, NO_QUORUM))
        }
    }

    /// Marks a cluster-level change (quorum, HA, fencing) for persistence.
    pub(crate) fn touch(&mut self) {
        self.generation += 1;
    }

    /// A number that moves whenever anything in the cluster changed.
    pub fn generation(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| n.generation)
            .fold(self.generation, u64::wrapping_add)
    }

    /// Ends the tasks whose time has come on every node, then lands the guests whose migration
    /// ended on their target nodes.
    pub fn tick(&mut self) {
        let mut arriving = Vec::new();
        for n in self.nodes.values_mut() {
            n.tick();
            arriving.append(&mut n.departures);
        }
        for d in arriving {
            if let Some(target) = self.nodes.get_mut(&d.target) {
                target.arrive(d);
            }
        }
        self.crm();
    }

    /// pve-cluster's `check_vmid_unused`: `VM 100 already exists on node 'pve-b'`.
    pub fn vmid_unused(&self, vmid: u32) -> Result<(), String> {
        for n in self.nodes.values() {
            if let Some(g) = n.st.guests.get(&vmid) {
                return Err(format!(
                    "{} {vmid} already exists on node '{}'",
                    g.kind.who(),
                    n.name()
                ));
            }
        }
        Ok(())
    }

    /// `GET /cluster/nextid`, cluster-wide.
    pub fn nextid(&self, wanted: Option<u32>) -> Result<u32, Refusal> {
        let used = |v: &u32| self.owner(*v).is_some();
        match wanted {
            Some(v) if used(&v) => Err(Refusal::param("vmid", format!("VM {v} already exists"))),
            Some(v) => Ok(v),
            None => Ok((100..).find(|v| !used(v)).unwrap_or(100)),
        }
    }

    /// `GET /cluster/resources`: every node's guests (and, without `type=vm`, nodes and
    /// storages), filtered by `visible`.
    pub fn resources(&self, only_vms: bool, visible: &dyn Fn(u32) -> bool) -> Value {
        let mut out = Vec::new();
        for name in &self.order {
            if let Some(n) = self.nodes.get(name) {
                if let Value::Array(mut a) = n.resources(only_vms, visible) {
                    for e in &mut a {
                        if self.fenced.contains(name) {
                            // A node that is down: its guests' state is not known.
                            e["status"] = json!(if e["type"] == "node" {
                                "offline"
                            } else {
                                "unknown"
                            });
                        }
                        if let Some(h) = e["vmid"]
                            .as_u64()
                            .and_then(|v| u32::try_from(v).ok())
                            .and_then(|v| self.hastate(v))
                        {
                            e["hastate"] = json!(h);
                        }
                    }
                    out.append(&mut a);
                }
            }
        }
        Value::Array(out)
    }

    /// `GET /cluster/status` as `me` answers it: a standalone node has no cluster entry; a
    /// cluster's says whether `me` is quorate, and its node entries which one is local.
    pub fn status(&self, me: &str) -> Value {
        if !self.is_cluster() {
            return self
                .nodes
                .get(me)
                .map_or(Value::Array(Vec::new()), Node::cluster_status);
        }
        let mut out = vec![json!({
            "type": "cluster", "id": "cluster", "name": "steward-sim",
            "nodes": self.nodes.len(), "quorate": u8::from(self.quorate(me)), "version": 3 + self.nodes.len(),
        })];
        for (i, name) in self.order.iter().enumerate() {
            out.push(json!({
                "type": "node", "id": format!("node/{name}"), "name": name, "nodeid": i + 1,
                "ip": "127.0.0.1", "local": u8::from(name == me), "online": u8::from(!self.fenced.contains(name)), "level": "",
            }));
        }
        Value::Array(out)
    }

    /// `GET /nodes`: every node, each with its certificate's fingerprint.
    pub fn node_list(&self, fingerprints: &BTreeMap<String, String>) -> Value {
        Value::Array(
            self.order
                .iter()
                .filter_map(|name| {
                    let n = self.nodes.get(name)?;
                    let fp = fingerprints.get(name).map_or("", String::as_str);
                    match n.nodes(fp) {
                        Value::Array(mut a) => a.pop(),
                        _ => None,
                    }
                })
                .collect(),
        )
    }
}

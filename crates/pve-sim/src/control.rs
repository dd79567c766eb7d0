//! The out-of-band actor: what a human or another tool does to a node behind the agent's back,
//! on a listener of its own (plain HTTP on loopback, off unless asked for) that is clearly not
//! the PVE API. Harnesses use it to edit a config, lock or unlock a guest, create or remove a
//! guest, leave a dead worker's lock, take a backup or a snapshot, fail, hang or warn the next
//! tasks, restart the node, and read the simulator's counters of mutating calls per guest, call
//! and token. Routes (JSON bodies and answers):
//!
//! - `GET /counters` → `[{vmid, call, token, count}]` (a create refused because another node holds
//!   the VMID counts as a create that reached the node)
//! - `GET /guests` → `{vmid: {kind, status, lock, version, config, pending}}`
//! - `GET /volumes` → `{volid: {size, vmid, content}}`, every volume on every storage
//! - `POST /guests` `{vmid, kind, config, running}`; `DELETE /guests/{vmid}`
//! - `POST /guests/{vmid}/config` `{set: {…}, delete: […]}`
//! - `POST /guests/{vmid}/lock` `{lock}`; `DELETE /guests/{vmid}/lock`
//! - `POST /guests/{vmid}/leftover` `{kind, lock}` (a config holding only the lock)
//! - `POST /guests/{vmid}/backup` → `{volid}`; `POST /guests/{vmid}/snapshot` `{name}`
//! - `POST /tasks/fail-next|hang-next|warn-next` `{n}`
//! - `POST /node/restart`
//! - `POST /faults` `{spec}`: the fault rates from now on (`""` for none), as `--faults` takes them
//! - `POST /guests/{vmid}/migrate` `{target, online, restart, with-local-disks}` → `{upid}`: what
//!   `qm migrate` / `pct migrate` in a root shell does (the API's checks, a task by `root@pam`)
//! - `POST /nodes/{node}/quorum` `{quorate}`: the node loses (`false`) or regains quorum
//! - `POST /nodes/{node}/fence`: the node goes down (its listener stops answering); the HA
//!   manager recovers its HA guests to a surviving node after its delay
//! - `POST /guests/{vmid}/ha` `{state}`: make the guest an HA resource with that requested state
//!   (or change it), as `ha-manager add|set` as root does
//!
//! In a cluster a guest's routes act on the node holding it; the others act on the node the
//! body names (`{"node": …}`) or on the first node; `GET /guests`, `/volumes` and `/counters`
//! answer for every node (each guest with its `node`).
//!
//! It must never listen anywhere but where it is told, and never be reachable through the PVE
//! API's port.

use crate::cluster::Cluster;
use crate::forms::Kind;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Handles one control request; returns (status, body).
pub fn handle(cluster: &mut Cluster, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    cluster.tick();
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return (400, json!({"error": format!("body: {e}")})),
        }
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let vmid = |s: &str| s.parse::<u32>().ok();
    let kind = |v: &Value| v.as_str().and_then(Kind::parse);
    let n = body["n"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect()
    };
    // What answers for the whole cluster.
    let whole: Option<Result<Value, String>> = match (method, parts.as_slice()) {
        ("GET", ["counters"]) => Some(Ok(Value::Array(
            cluster
                .nodes
                .values()
                .filter_map(|n| n.st.counters.to_json().as_array().cloned())
                .flatten()
                .collect(),
        ))),
        ("GET", ["volumes"]) => Some(Ok(Value::Object(
            cluster
                .nodes
                .values()
                .flat_map(|n| n.st.volumes.volumes.iter().map(move |(id, v)| (n.name(), id, v)))
                .map(|(node, id, v)| {
                    (
                        id.clone(),
                        json!({"size": v.size, "vmid": v.vmid, "content": v.content, "node": node}),
                    )
                })
                .collect(),
        ))),
        ("GET", ["guests"]) => Some(Ok(Value::Object(
            cluster
                .nodes
                .values()
                .flat_map(|n| n.st.guests.iter().map(move |(v, g)| (n.name(), v, g)))
                .map(|(node, v, g)| {
                    (
                        v.to_string(),
                        json!({"node": node, "kind": g.kind, "status": g.status, "lock": g.lock, "version": g.version, "config": g.config, "pending": g.pending}),
                    )
                })
                .collect(),
        ))),
        ("POST", ["faults"]) => Some(match body["spec"].as_str().map(crate::faults::Faults::parse) {
            Some(Ok(f)) => {
                for n in cluster.nodes.values_mut() {
                    n.faults = f.clone();
                }
                Ok(json!({}))
            }
            Some(Err(e)) => Err(e),
            None => Err("body must be {\"spec\": \"latency=MS,errors=RATE,…\"}".into()),
        }),
        ("POST", ["nodes", name, "fence"]) => Some(cluster.fence(name).map(|()| json!({}))),
        ("POST", ["guests", v, "ha"]) => Some(match (vmid(v), body["state"].as_str()) {
            (Some(v), Some(state)) => match cluster.nodes.values().find_map(|n| n.st.guests.get(&v).map(|g| g.kind)) {
                Some(kind) => cluster
                    .set_ha(v, if kind == Kind::Qemu { "vm" } else { "ct" }, state)
                    .map(|()| json!({}))
                    .map_err(|r| r.reason),
                None => Err(format!("no guest {v}")),
            },
            _ => Err("need a vmid and {\"state\": started|stopped|disabled|ignored}".into()),
        }),
        ("POST", ["nodes", name, "quorum"]) => Some(match body["quorate"].as_bool() {
            Some(q) => cluster.set_quorum(name, q).map(|()| json!({})),
            None => Err("body must be {\"quorate\": true|false}".into()),
        }),
        ("POST", ["guests", v, "migrate"]) => Some(match vmid(v).and_then(|v| {
            let at = cluster.owner(v)?.to_string();
            let kind = cluster.nodes.get(&at)?.st.guests.get(&v)?.kind;
            Some((v, at, kind))
        }) {
            Some((v, at, kind)) => cluster
                .migrate(&at, kind, v, &strings(&body), "root@pam")
                .map(|upid| json!({"upid": upid.to_string()}))
                .map_err(|r| r.reason),
            None => Err(format!("no guest {v}")),
        }),
        _ => None,
    };
    if let Some(result) = whole {
        return match result {
            Ok(v) => (200, v),
            Err(e) => (400, json!({"error": e})),
        };
    }
    // The rest acts on one node: the guest's, the one the body names, or the first.
    let guest_node = match parts.as_slice() {
        ["guests", v, ..] => vmid(v).and_then(|v| cluster.owner(v)).map(str::to_string),
        _ => None,
    };
    let at = guest_node
        .or_else(|| body["node"].as_str().map(str::to_string))
        .unwrap_or_else(|| cluster.first().to_string());
    let Some(node) = cluster.node_mut(&at) else {
        return (400, json!({"error": format!("no node {at}")}));
    };
    let result: Result<Value, String> = match (method, parts.as_slice()) {
        ("POST", ["guests"]) => match (
            body["vmid"].as_u64().and_then(|v| u32::try_from(v).ok()),
            kind(&body["kind"]),
        ) {
            (Some(v), Some(k)) => {
                node.add_guest(
                    v,
                    k,
                    strings(&body["config"]),
                    body["running"].as_bool() == Some(true),
                );
                Ok(json!({"vmid": v}))
            }
            _ => Err("need vmid and kind (qemu or lxc)".into()),
        },
        ("DELETE", ["guests", v]) => match vmid(v) {
            Some(v) if node.remove_guest(v) => Ok(json!({})),
            _ => Err(format!("no guest {v}")),
        },
        ("POST", ["guests", v, "config"]) => {
            let delete: Vec<String> = body["delete"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect();
            vmid(v)
                .ok_or_else(|| format!("bad vmid {v}"))
                .and_then(|v| node.edit(v, &strings(&body["set"]), &delete))
                .map(|()| json!({}))
        }
        ("POST", ["guests", v, "lock"]) => match (vmid(v), body["lock"].as_str()) {
            (Some(v), Some(l)) => {
                node.lock(v, Some(l));
                Ok(json!({}))
            }
            _ => Err("need a vmid and {\"lock\": NAME}".into()),
        },
        ("DELETE", ["guests", v, "lock"]) => {
            vmid(v).ok_or_else(|| format!("bad vmid {v}")).map(|v| {
                node.lock(v, None);
                json!({})
            })
        }
        ("POST", ["guests", v, "leftover"]) => {
            match (vmid(v), kind(&body["kind"]), body["lock"].as_str()) {
                (Some(v), Some(k), Some(l)) => {
                    node.leftover(v, k, l);
                    Ok(json!({}))
                }
                _ => Err("need a vmid, kind and lock".into()),
            }
        }
        ("POST", ["guests", v, "backup"]) => vmid(v)
            .ok_or_else(|| format!("bad vmid {v}"))
            .and_then(|v| node.backup(v))
            .map(|volid| json!({"volid": volid})),
        ("POST", ["guests", v, "snapshot"]) => match (vmid(v), body["name"].as_str()) {
            (Some(v), Some(name)) => node.add_snapshot(v, name).map(|()| json!({})),
            _ => Err("need a vmid and {\"name\": NAME}".into()),
        },
        ("POST", ["tasks", "fail-next"]) => {
            node.st.fail_next = n;
            Ok(json!({}))
        }
        ("POST", ["tasks", "hang-next"]) => {
            node.st.hang_next = n;
            Ok(json!({}))
        }
        ("POST", ["tasks", "warn-next"]) => {
            node.st.warn_next = n;
            Ok(json!({}))
        }
        ("POST", ["requests", "lose-next-answer"]) => {
            node.st.lose_next_answer = n;
            Ok(json!({}))
        }
        ("POST", ["node", "restart"]) => {
            node.restart();
            Ok(json!({}))
        }
        _ => {
            return (
                404,
                json!({"error": format!("no control route {method} {path}")}),
            )
        }
    };
    node.changed();
    match result {
        Ok(v) => (200, v),
        Err(e) => (400, json!({"error": e})),
    }
}

//! Routing `/api2/json/...` as pveproxy does: the token (`PVEAPIToken=…`), the endpoint found in
//! the embedded schema, its parameters checked against it (unknown keys refused, root-only
//! options refused for every token), its declared privilege check evaluated on the token's ACL,
//! and the endpoints whose schema says `user: all` filtered or checked by hand as Proxmox's code
//! does. Answers are `{"data": …}`; errors carry the reason in the status line and in `message`.
//!
//! Routes (below `/api2/json`): `GET /version`, `GET /nodes`, `GET /nodes/{node}/status`,
//! `GET /cluster/resources`, `GET /cluster/status`, `GET /cluster/nextid`,
//! `GET|POST /nodes/{node}/{qemu,lxc}`, `GET|DELETE …/{vmid}`, `GET …/status/current`,
//! `POST …/status/{start,stop,shutdown,reboot,suspend,resume}`, `GET|PUT …/config`,
//! `POST /nodes/{node}/qemu/{vmid}/config`, `GET …/pending`, `GET|POST …/snapshot`,
//! `GET|DELETE …/snapshot/{snapname}`, `GET …/snapshot/{snapname}/config`,
//! `POST …/snapshot/{snapname}/rollback`,
//! `PUT /nodes/{node}/qemu/{vmid}/unlink`, `PUT …/resize`, `POST …/qemu/{vmid}/move_disk`,
//! `POST …/lxc/{vmid}/move_volume`, `POST …/{vmid}/migrate`, `GET /nodes/{node}/storage`,
//! `GET /nodes/{node}/storage/{storage}/content`, `GET /nodes/{node}/tasks`,
//! `GET /nodes/{node}/tasks/{upid}/status`, `GET /nodes/{node}/tasks/{upid}/log`,
//! `GET /access/permissions`. Anything else the schema knows is a 501, as is anything it does
//! not know.
//! In a cluster any node's listener answers for every node (pveproxy proxies a path naming
//! another node); the cluster paths answer for the whole cluster; a write through a node without
//! quorum is refused.
//! It must never answer for an endpoint Proxmox's schema does not have.

use crate::acl::Privileges;
use crate::cluster::Cluster;
use crate::forms::Kind;
use crate::node::Refusal;
use crate::schema::{self, Check};
use crate::token::SimToken;
use crate::volumes;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A routed answer: status, reason, body.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Status-line reason.
    pub reason: String,
    /// JSON body.
    pub body: Value,
}

fn ok(data: Value) -> Answer {
    Answer {
        status: 200,
        reason: "OK".into(),
        body: json!({ "data": data }),
    }
}

/// The answer for a refusal: status line, `{"data": null, "message": …}` (and `errors`).
pub fn err(r: Refusal) -> Answer {
    let mut body = json!({"data": null, "message": format!("{}\n", r.reason)});
    if let Some(e) = r.errors {
        body["errors"] = e;
    }
    Answer {
        status: r.status,
        reason: r.reason,
        body,
    }
}

fn denied(path: &str, privileges: &str) -> Refusal {
    Refusal::new(
        403,
        format!("Permission check failed ({path}, {privileges})"),
    )
}

/// Options only `root@pam` may use; a token never is root@pam.
const ROOT_ONLY: &[&str] = &[
    "skiplock",
    "lock",
    "keepActive",
    "migratedfrom",
    "stateuri",
    "nocheck",
];

/// The handlers' own refusals of root-only options, made after the endpoint's privilege check
/// (a token without the privilege meets the 403 first): a QEMU config write or create naming
/// `lock` dies in qemu-server's `check_vm_modify_config_perm` (a 500, whatever its value); any
/// other root-only option is refused only when it is set to something true, as Perl reads it
/// (`skiplock=0` passes).
fn root_only(template: &str, params: &BTreeMap<String, String>) -> Result<(), Refusal> {
    let qemu_config = matches!(
        template,
        "/nodes/{node}/qemu" | "/nodes/{node}/qemu/{vmid}/config"
    );
    if qemu_config && params.contains_key("lock") {
        return Err(Refusal::new(500, "only root can set 'lock' config"));
    }
    for k in ROOT_ONLY {
        if params.get(*k).is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(Refusal::param(k, "Only root may use this option."));
        }
    }
    Ok(())
}

/// Who is asking: the token's id and its ACL.
struct Caller<'a> {
    user: String,
    privs: &'a Privileges,
}

impl Caller<'_> {
    fn require(&self, path: &str, privileges: &[&str], any: bool) -> Result<(), Refusal> {
        let have = self.privs.at(path);
        let ok = if any {
            privileges.iter().any(|p| have.contains(*p))
        } else {
            privileges.iter().all(|p| have.contains(*p))
        };
        if ok {
            Ok(())
        } else {
            Err(denied(path, &privileges.join("|")))
        }
    }

    fn can_see(&self, vmid: u32) -> bool {
        self.privs.has(&format!("/vms/{vmid}"), "VM.Audit")
    }
}

/// The privileges a config key needs (qemu-server `check_vm_modify_config_perm`,
/// pve-container's equivalent): (path, privilege) pairs.
fn key_privileges(kind: Kind, key: &str, vmid: &str) -> Vec<(String, &'static str)> {
    let vm = format!("/vms/{vmid}");
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    let p = match key {
        "memory" | "balloon" | "shares" | "swap" => "VM.Config.Memory",
        "cores" | "sockets" | "cpulimit" | "cpuunits" | "cpu" | "vcpus" | "numa" | "affinity" => {
            "VM.Config.CPU"
        }
        "hostname" | "nameserver" | "searchdomain" if kind == Kind::Lxc => "VM.Config.Network",
        "ide2" if kind == Kind::Qemu => "VM.Config.CDROM",
        "cicustom" | "cipassword" | "citype" | "ciupgrade" | "ciuser" | "sshkeys"
        | "nameserver" | "searchdomain" => "VM.Config.Cloudinit",
        _ if base == "net" => "VM.Config.Network",
        _ if base == "ipconfig" => "VM.Config.Cloudinit",
        _ if volumes::is_disk_key(kind, key) => "VM.Config.Disk",
        _ if matches!(
            base,
            "hostpci" | "usb" | "serial" | "parallel" | "audio" | "rng" | "virtiofs"
        ) || matches!(
            key,
            "vga"
                | "scsihw"
                | "bios"
                | "machine"
                | "tpmstate0"
                | "efidisk0"
                | "watchdog"
                | "ivshmem"
                | "features"
                | "dev"
        ) =>
        {
            "VM.Config.HWType"
        }
        _ => "VM.Config.Options",
    };
    let mut out = vec![(vm, p)];
    if kind == Kind::Qemu && key == "startup" {
        out.push(("/".into(), "Sys.Modify"));
    }
    out
}

/// Percent-decoded path segments below `/api2/json`.
fn segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("/api2/json")?;
    Some(
        rest.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect(),
    )
}

/// Routes one request. `auth` is the `Authorization` header.
#[allow(clippy::too_many_arguments)]
pub fn route(
    cluster: &mut Cluster,
    me: &str,
    tokens: &[(SimToken, Privileges)],
    fingerprints: &BTreeMap<String, String>,
    method: &str,
    path: &str,
    auth: Option<&str>,
    params: &BTreeMap<String, String>,
) -> Answer {
    let Some((token, privs)) = auth.and_then(|h| tokens.iter().find(|(t, _)| t.presented_by(h)))
    else {
        return err(Refusal::new(401, "authentication failure"));
    };
    let caller = Caller {
        user: token.id().to_string(),
        privs,
    };
    cluster.tick();
    match handle(cluster, me, &caller, fingerprints, method, path, params) {
        Ok(v) => ok(v),
        Err(r) => err(r),
    }
}

fn handle(
    cluster: &mut Cluster,
    me: &str,
    caller: &Caller<'_>,
    fingerprints: &BTreeMap<String, String>,
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, Refusal> {
    let schema = schema::schema().map_err(|e| Refusal::new(500, e))?;
    let segs = segments(path)
        .ok_or_else(|| Refusal::new(501, format!("Method '{method} {path}' not implemented")))?;
    let m = schema.lookup(method, path, &segs)?;
    let mut all = params.clone();
    all.extend(m.vars.clone());
    schema::validate(m.info, &all)?;
    let var = |k: &str| m.vars.get(k).cloned().unwrap_or_default();
    // pveproxy answers for its own node and proxies a path naming another one.
    let at = if m.vars.contains_key("node") {
        var("node")
    } else {
        me.to_string()
    };
    if !cluster.nodes.contains_key(&at) {
        return Err(Refusal::new(
            595,
            format!("no such node '{at}' (connection refused)"),
        ));
    }
    match schema::check_of(m.info) {
        Check::Perm {
            path: p,
            privileges,
            any,
        } => {
            let p = p
                .replace("{vmid}", &var("vmid"))
                .replace("{node}", &var("node"))
                .replace("{storage}", &var("storage"));
            let refs: Vec<&str> = privileges.iter().map(String::as_str).collect();
            caller.require(&p, &refs, any)?;
        }
        Check::Handler => {}
        Check::Unsupported(c) => {
            return Err(Refusal::new(
                403,
                format!("Permission check failed (unsupported check {c})"),
            ))
        }
    }
    root_only(m.template, params)?;
    let kind = Kind::parse(segs.get(2).map_or("", String::as_str));
    let vmid: u32 = var("vmid").parse().unwrap_or(0);
    let user = caller.user.as_str();
    let upid = |u: crate::upid::TaskId| json!(u.to_string());
    let t = m
        .template
        .replace("/qemu", "/{kind}")
        .replace("/lxc", "/{kind}");
    let migrating = t == "/nodes/{node}/{kind}/{vmid}/migrate";
    if method != "GET" && !migrating {
        cluster.require_quorum(&at)?;
    }
    // What the cluster answers as a whole.
    match (method, t.as_str(), kind) {
        ("GET", "/version", _) => return Ok(crate::view::version()),
        ("GET", "/nodes", _) => return Ok(cluster.node_list(fingerprints)),
        ("GET", "/cluster/status", _) => return Ok(cluster.status(me)),
        ("GET", "/cluster/resources", _) => {
            let only_vms = params.get("type").is_some_and(|t| t == "vm");
            return Ok(cluster.resources(only_vms, &|v| caller.can_see(v)));
        }
        ("GET", "/cluster/nextid", _) => {
            return cluster
                .nextid(params.get("vmid").and_then(|v| v.parse().ok()))
                .map(|v| json!(v))
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/migrate", Some(k)) => {
            return cluster.migrate(&at, k, vmid, params, user).map(upid)
        }
        ("GET", "/cluster/tasks", _) => {
            // pve-manager's `Cluster.pm`: every task names user and token apart, and without
            // Sys.Audit on `/` a caller sees the tasks whose (split) user is its own id, so a
            // token sees none of its tasks.
            let all = caller.privs.has("/", "Sys.Audit");
            let mut out: Vec<Value> = Vec::new();
            for n in cluster.nodes.values() {
                let every = BTreeMap::from([
                    ("source".to_string(), "all".to_string()),
                    ("limit".to_string(), usize::MAX.to_string()),
                ]);
                let visible =
                    n.st.tasks
                        .iter()
                        .filter(|t| all || crate::forms::user_of(&t.upid.user) == caller.user);
                if let Value::Array(a) = crate::task::list(visible, &every) {
                    for mut t in a {
                        let user = t["user"].as_str().unwrap_or_default().to_string();
                        crate::task::split_user(&mut t, &user);
                        out.push(t);
                    }
                }
            }
            out.sort_by_key(|t| std::cmp::Reverse(t["starttime"].as_u64().unwrap_or(0)));
            return Ok(Value::Array(out));
        }
        ("GET", "/cluster/ha/resources", _) => {
            return Ok(cluster.ha_list(params.get("type").map(String::as_str)))
        }
        ("POST", "/cluster/ha/resources", _) => return cluster.ha_create(params),
        ("GET", "/cluster/ha/resources/{sid}", _) => return cluster.ha_read(&var("sid")),
        ("PUT", "/cluster/ha/resources/{sid}", _) => return cluster.ha_update(&var("sid"), params),
        ("DELETE", "/cluster/ha/resources/{sid}", _) => return cluster.ha_delete(&var("sid")),
        // qemu-server and pve-container hand a start, stop or shutdown of an HA-managed guest
        // to ha-manager: an `hastart`/`hastop` task that only records the request.
        ("POST", "/nodes/{node}/{kind}/{vmid}/status/start", Some(k))
        | ("POST", "/nodes/{node}/{kind}/{vmid}/status/stop", Some(k))
        | ("POST", "/nodes/{node}/{kind}/{vmid}/status/shutdown", Some(k))
            if cluster.ha_managed(vmid)
                && cluster
                    .nodes
                    .get(&at)
                    .is_some_and(|n| n.st.guests.contains_key(&vmid)) =>
        {
            let what = t.rsplit('/').next().unwrap_or("start").to_string();
            return cluster.ha_power(&at, k, vmid, &what, user).map(upid);
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}/status/current", Some(k)) => {
            let ha = cluster.hastate(vmid);
            let node = cluster
                .node_mut(&at)
                .ok_or_else(|| Refusal::new(595, format!("no such node '{at}'")))?;
            let mut e = node.status(k, vmid)?;
            if let Some(state) = ha {
                e["ha"] = json!({"managed": 1, "state": state});
            }
            return Ok(e);
        }
        ("POST", "/nodes/{node}/{kind}", Some(k)) => {
            // VMIDs are cluster-wide: a VMID another node holds is refused before any check
            // of this node's own (qemu-server and pve-container both ask the cluster first).
            let id: u32 = params.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0);
            if cluster.owner(id).is_some_and(|o| o != at) {
                let restoring = params.contains_key("archive")
                    || params.get("restore").is_some_and(|r| r == "1");
                let why = cluster.vmid_unused(id).err().unwrap_or_default();
                // Counted as a create that reached this node: harnesses prove no agent tries
                // to create a guest another node holds.
                if let Some(n) = cluster.node_mut(&at) {
                    n.st.counters.count(id, "create", user);
                }
                return Err(Refusal::new(
                    500,
                    format!(
                        "unable to {} {} {id} - {why}",
                        if restoring { "restore" } else { "create" },
                        k.who()
                    ),
                ));
            }
        }
        _ => {}
    }
    let node = cluster
        .node_mut(&at)
        .ok_or_else(|| Refusal::new(595, format!("no such node '{at}' (connection refused)")))?;
    match (method, t.as_str(), kind) {
        ("GET", "/nodes/{node}/status", _) => Ok(node.node_status()),
        ("GET", "/nodes/{node}/{kind}", Some(k)) => Ok(node.list(
            k,
            &|v| caller.can_see(v),
            params.get("full").is_some_and(|f| f == "1" || f == "true"),
        )),
        ("POST", "/nodes/{node}/{kind}", Some(k)) => {
            let id = params.get("vmid").cloned().unwrap_or_default();
            let vm = format!("/vms/{id}");
            let restoring =
                params.contains_key("archive") || params.get("restore").is_some_and(|r| r == "1");
            let exists = id
                .parse::<u32>()
                .is_ok_and(|v| node.st.guests.contains_key(&v));
            if restoring && exists {
                caller.require(&vm, &["VM.Backup", "VM.Allocate"], true)?;
            } else {
                caller.require(&vm, &["VM.Allocate"], false)?;
            }
            for (key, value) in params {
                if volumes::is_disk_key(k, key) {
                    if let Some((storage, _)) = volumes::new_allocation(value) {
                        caller.require(
                            &format!("/storage/{storage}"),
                            &["Datastore.AllocateSpace"],
                            false,
                        )?;
                    }
                }
            }
            if k == Kind::Lxc && !restoring && params.get("unprivileged").is_none_or(|u| u != "1") {
                caller.require("/", &["Sys.Modify"], false)?;
            }
            node.create(k, params, user).map(upid)
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}", Some(k)) => {
            caller.require(&format!("/vms/{vmid}"), &["VM.Audit"], false)?;
            node.guest(k, vmid)?;
            Ok(
                json!([{"subdir": "config"}, {"subdir": "pending"}, {"subdir": "status"}, {"subdir": "snapshot"}]),
            )
        }
        ("DELETE", "/nodes/{node}/{kind}/{vmid}", Some(k)) => {
            node.destroy(k, vmid, params, user).map(upid)
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}/status/current", Some(k)) => node.status(k, vmid),
        ("POST", "/nodes/{node}/{kind}/{vmid}/status/start", Some(k)) => {
            node.power(k, vmid, "start", user).map(upid)
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/status/stop", Some(k)) => {
            node.power(k, vmid, "stop", user).map(upid)
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/status/shutdown", Some(k)) => {
            node.power(k, vmid, "shutdown", user).map(upid)
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/status/reboot", Some(k)) => {
            node.power(k, vmid, "reboot", user).map(upid)
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/status/suspend", Some(k)) => {
            node.power(k, vmid, "suspend", user).map(upid)
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/status/resume", Some(k)) => {
            node.power(k, vmid, "resume", user).map(upid)
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}/config", Some(k)) => {
            node.config(k, vmid, params.get("current").is_some_and(|c| c == "1"))
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}/pending", Some(k)) => node.pending(k, vmid),
        ("PUT", "/nodes/{node}/{kind}/{vmid}/config", Some(k))
        | ("POST", "/nodes/{node}/{kind}/{vmid}/config", Some(k)) => {
            config_write_checks(m.info, k, params, caller, &var("vmid"))?;
            let sync = method == "PUT";
            node.set_config(k, vmid, params, user, sync)
                .map(|u| u.map_or(Value::Null, upid))
        }
        ("PUT", "/nodes/{node}/{kind}/{vmid}/unlink", Some(k)) => {
            let mut p = BTreeMap::new();
            p.insert(
                "delete".to_string(),
                params.get("idlist").cloned().unwrap_or_default(),
            );
            if let Some(f) = params.get("force") {
                p.insert("force".to_string(), f.clone());
            }
            node.set_config(k, vmid, &p, user, true)
                .map(|_| Value::Null)
        }
        ("PUT", "/nodes/{node}/{kind}/{vmid}/resize", Some(k)) => {
            node.resize(k, vmid, params, user).map(upid)
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/move_disk", Some(k @ Kind::Qemu))
        | ("POST", "/nodes/{node}/{kind}/{vmid}/move_volume", Some(k @ Kind::Lxc)) => {
            // The schema checks `VM.Config.Disk` on the guest; the code, the target storage.
            let storage = params.get("storage").cloned().unwrap_or_default();
            caller.require(
                &format!("/storage/{storage}"),
                &["Datastore.AllocateSpace"],
                false,
            )?;
            node.move_disk(k, vmid, params, user).map(upid)
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}/snapshot", Some(k)) => node.snapshots(k, vmid),
        ("POST", "/nodes/{node}/{kind}/{vmid}/snapshot", Some(k)) => {
            node.snapshot(k, vmid, params, user).map(upid)
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}/snapshot/{snapname}", Some(k)) => {
            caller.require(&format!("/vms/{vmid}"), &["VM.Audit"], false)?;
            let g = node.guest(k, vmid)?;
            if !g.snapshots.contains_key(&var("snapname")) {
                return Err(Refusal::new(
                    500,
                    format!("snapshot '{}' does not exist", var("snapname")),
                ));
            }
            Ok(json!([{"cmd": "rollback"}, {"cmd": "config"}]))
        }
        ("GET", "/nodes/{node}/{kind}/{vmid}/snapshot/{snapname}/config", Some(k)) => {
            // qemu-server / pve-container `get_snapshot_config`: the snapshot's section as
            // stored, with its own snaptime, description and (QEMU) vmstate.
            let g = node.guest(k, vmid)?;
            let snap = g.snapshots.get(&var("snapname")).ok_or_else(|| {
                Refusal::new(
                    500,
                    format!("snapshot '{}' does not exist", var("snapname")),
                )
            })?;
            let mut out = serde_json::Map::new();
            for (key, v) in &snap.config {
                out.insert(key.clone(), json!(v));
            }
            out.insert("snaptime".into(), json!(snap.snaptime));
            if !snap.description.is_empty() {
                out.insert("description".into(), json!(snap.description));
            }
            if let Some(p) = &snap.parent {
                out.insert("parent".into(), json!(p));
            }
            Ok(Value::Object(out))
        }
        ("DELETE", "/nodes/{node}/{kind}/{vmid}/snapshot/{snapname}", Some(k)) => {
            node.delsnapshot(k, vmid, &var("snapname"), user).map(upid)
        }
        ("POST", "/nodes/{node}/{kind}/{vmid}/snapshot/{snapname}/rollback", Some(k)) => {
            node.rollback(k, vmid, &var("snapname"), user).map(upid)
        }
        ("GET", "/nodes/{node}/storage", _) => {
            // As pve-storage's `Status.pm`: `content` is a list, and a storage supporting any
            // of it is kept; a `storage` not among those is refused before privileges count.
            let wanted: Option<Vec<&str>> = params
                .get("content")
                .map(|c| crate::forms::split_list(c).collect());
            let kept: Vec<(String, Value)> = node
                .st
                .volumes
                .storage_list()
                .into_iter()
                .filter(|(_, v)| {
                    wanted.as_ref().is_none_or(|w| {
                        v["content"]
                            .as_str()
                            .is_some_and(|have| have.split(',').any(|x| w.contains(&x)))
                    })
                })
                .collect();
            if let Some(s) = params.get("storage") {
                if !kept.iter().any(|(name, _)| name == s) {
                    return Err(Refusal::param("storage", "No such storage."));
                }
            }
            Ok(Value::Array(
                kept.into_iter()
                    .filter(|(name, _)| {
                        let p = format!("/storage/{name}");
                        caller.privs.has(&p, "Datastore.Audit")
                            || caller.privs.has(&p, "Datastore.AllocateSpace")
                    })
                    .filter(|(name, _)| params.get("storage").is_none_or(|s| s == name))
                    .map(|(_, v)| v)
                    .collect(),
            ))
        }
        ("GET", "/nodes/{node}/storage/{storage}/content", _) => {
            let storage = var("storage");
            let listed = node
                .st
                .volumes
                .content(
                    &storage,
                    params.get("content").map(String::as_str),
                    params.get("vmid").and_then(|v| v.parse().ok()),
                )
                .ok_or_else(|| Refusal::new(500, format!("storage '{storage}' does not exist")))?;
            // Each volume as pve-storage's `check_volume_access` lets the caller see it.
            let at = format!("/storage/{storage}");
            let may_see = |e: &Value| {
                if caller.privs.has(&at, "Datastore.Allocate") {
                    return true;
                }
                let owner = e["vmid"].as_u64().map(|v| format!("/vms/{v}"));
                match (e["content"].as_str().unwrap_or(""), owner) {
                    ("iso" | "vztmpl" | "import", _) => {
                        caller.privs.has(&at, "Datastore.AllocateSpace")
                            || caller.privs.has(&at, "Datastore.Audit")
                    }
                    ("backup", Some(vm)) => {
                        caller.privs.has(&at, "Datastore.AllocateSpace")
                            && caller.privs.has(&vm, "VM.Backup")
                    }
                    ("images" | "rootdir", Some(vm)) => {
                        caller.privs.has(&at, "Datastore.Audit")
                            && caller.privs.has(&vm, "VM.Config.Disk")
                    }
                    _ => false,
                }
            };
            Ok(Value::Array(
                listed
                    .as_array()
                    .map(|a| a.iter().filter(|e| may_see(e)).cloned().collect())
                    .unwrap_or_default(),
            ))
        }
        ("GET", "/nodes/{node}/tasks", _) => {
            let all = caller
                .privs
                .has(&format!("/nodes/{}", node.name()), "Sys.Audit");
            Ok(crate::task::list(
                node.st
                    .tasks
                    .iter()
                    .filter(|t| all || t.upid.user == caller.user),
                params,
            ))
        }
        ("DELETE", "/nodes/{node}/tasks/{upid}", _) => {
            let id = var("upid");
            let owner = node
                .st
                .tasks
                .iter()
                .find(|t| t.upid.to_string() == id)
                .map(|t| t.upid.user.clone())
                .ok_or_else(|| Refusal::param("upid", "no such task"))?;
            if owner != caller.user {
                caller.require(&format!("/nodes/{}", node.name()), &["Sys.Modify"], false)?;
            }
            node.stop_task(&id);
            Ok(Value::Null)
        }
        ("GET", "/nodes/{node}/tasks/{upid}/status", _)
        | ("GET", "/nodes/{node}/tasks/{upid}/log", _) => {
            let id = var("upid");
            let t = node
                .st
                .tasks
                .iter()
                .find(|t| t.upid.to_string() == id)
                .ok_or_else(|| Refusal::param("upid", "no such task"))?;
            if t.upid.user != caller.user {
                caller.require(&format!("/nodes/{}", node.name()), &["Sys.Audit"], false)?;
            }
            Ok(if m.template.ends_with("/log") {
                crate::task::log(t, params)
            } else {
                t.status_json()
            })
        }
        ("GET", "/access/permissions", _) => {
            let mut out = Map::new();
            let mut paths: Vec<String> = caller.privs.0.iter().map(|g| g.path.clone()).collect();
            if let Some(p) = params.get("path") {
                paths = vec![p.clone()];
            }
            for p in paths {
                let privs: Map<String, Value> = caller
                    .privs
                    .at(&p)
                    .into_iter()
                    .map(|x| (x, json!(1)))
                    .collect();
                out.insert(p, Value::Object(privs));
            }
            Ok(Value::Object(out))
        }
        _ => Err(Refusal::new(
            501,
            format!("Method '{method} {path}' not implemented"),
        )),
    }
}

/// A config write's own checks: `delete`/`revert` name known keys, and every key touched has
/// its privilege.
fn config_write_checks(
    info: &Value,
    kind: Kind,
    params: &BTreeMap<String, String>,
    caller: &Caller<'_>,
    vmid: &str,
) -> Result<(), Refusal> {
    let props = info["parameters"]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let meta = crate::ops::META;
    for list in ["delete", "revert"] {
        for k in params
            .get(list)
            .into_iter()
            .flat_map(|s| crate::forms::split_list(s))
        {
            if meta.contains(&k) || schema::property(&props, k).is_none() {
                return Err(Refusal::param(list, format!("unknown option '{k}'")));
            }
        }
    }
    let touched = params
        .keys()
        .filter(|k| !meta.contains(&k.as_str()))
        .map(String::as_str)
        .chain(
            params
                .get("delete")
                .into_iter()
                .flat_map(|s| crate::forms::split_list(s)),
        );
    for key in touched {
        for (path, p) in key_privileges(kind, key, vmid) {
            caller.require(&path, &[p], false)?;
        }
        if let Some((storage, _)) = params.get(key).and_then(|v| volumes::new_allocation(v)) {
            if volumes::is_disk_key(kind, key) {
                caller.require(
                    &format!("/storage/{storage}"),
                    &["Datastore.AllocateSpace"],
                    false,
                )?;
            }
        }
    }
    Ok(())
}

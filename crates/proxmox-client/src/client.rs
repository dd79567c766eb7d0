//! The two halves of the API over the HTTP transport, for one node: `PveClient` reads,
//! `PveWriter` (built with the admin token, handed to the gate's executor and nothing else)
//! writes. Paths, parameters and answer shapes as Proxmox's API schema gives them
//! (`docs/reference/pve-api.md`). A `PveClient` can never become a writer.

use crate::api::{
    num, text, ClusterView, GuestConfig, GuestEntry, GuestRead, GuestWrite, PendingEntry,
    TaskEntry, TaskFilter, TaskStatus,
};
use crate::error::ApiError;
use crate::http::{Endpoint, Http, RequestHook};
use crate::token::ApiToken;
use crate::upid::Upid;
use async_trait::async_trait;
use hyper::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use steward_model::{ConfigChange, GuestKind, Vmid};

/// The read half of one node's API: implements [`GuestRead`] only.
#[derive(Debug)]
pub struct PveClient {
    http: Http,
    node: String,
    pacing: crate::pacing::TaskPacing,
}

fn bool01(b: bool) -> String {
    if b { "1" } else { "0" }.into()
}

fn upid(v: Value) -> Result<Upid, ApiError> {
    v.as_str()
        .ok_or_else(|| ApiError::Decode(format!("expected a UPID, got {v}")))?
        .parse()
        .map_err(|e: crate::upid::UpidError| ApiError::Decode(e.to_string()))
}

fn change_params(change: &ConfigChange) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = change
        .set
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !change.delete.is_empty() {
        p.push((
            "delete".into(),
            change.delete.iter().cloned().collect::<Vec<_>>().join(","),
        ));
    }
    if let Some(d) = &change.digest {
        p.push(("digest".into(), d.clone()));
    }
    p
}

impl PveClient {
    /// A client for `node` at `endpoint`.
    pub fn new(endpoint: Endpoint, token: ApiToken, node: &str) -> Result<PveClient, String> {
        Ok(PveClient {
            http: Http::new(endpoint, token)?,
            node: node.into(),
            pacing: crate::pacing::TaskPacing::default(),
        })
    }

    /// Reports every request to `hook` (metrics).
    pub fn with_hook(mut self, hook: RequestHook) -> PveClient {
        self.http.set_hook(hook);
        self
    }

    /// HTTP requests sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.http.requests_sent()
    }

    /// A raw `GET` of `path` (below `/api2/json`), returning `data` as sent.
    pub async fn get_raw(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, ApiError> {
        self.http.call(Method::GET, path, params).await
    }

    fn guest_path(&self, kind: GuestKind, vmid: Vmid) -> String {
        format!("/nodes/{}/{}/{}", self.node, kind.as_str(), vmid)
    }

    /// `GET path` with `params`, whose answer must be a list.
    async fn get_list(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Vec<Value>, ApiError> {
        match self.http.call(Method::GET, path, params).await? {
            Value::Array(items) => Ok(items),
            _ => Err(ApiError::Decode(format!("{path}: expected a list"))),
        }
    }

    async fn power(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        what: &str,
        params: Vec<(String, String)>,
    ) -> Result<Upid, ApiError> {
        let path = format!("{}/status/{what}", self.guest_path(kind, vmid));
        upid(self.http.call(Method::POST, &path, &params).await?)
    }
}

/// A guest list entry (a node's list or `/cluster/resources`); `path` names the list in errors.
fn entry_of(path: &str, kind: GuestKind, g: &Value) -> Result<GuestEntry, ApiError> {
    let vmid = g
        .get("vmid")
        .and_then(num)
        .and_then(|n| Vmid::new(n).ok())
        .ok_or_else(|| ApiError::Decode(format!("{path}: entry without a vmid: {g}")))?;
    Ok(GuestEntry {
        vmid,
        kind,
        status: g
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .into(),
        name: g.get("name").and_then(Value::as_str).map(str::to_string),
        maxmem: g.get("maxmem").and_then(num),
        lock: g.get("lock").and_then(Value::as_str).map(str::to_string),
        template: g.get("template").and_then(num) == Some(1),
        hastate: g.get("hastate").and_then(Value::as_str).map(str::to_string),
    })
}

#[async_trait]
impl GuestRead for PveClient {
    async fn list_guests(&self) -> Result<Vec<GuestEntry>, ApiError> {
        let mut out = Vec::new();
        for kind in [GuestKind::Qemu, GuestKind::Lxc] {
            let path = format!("/nodes/{}/{}", self.node, kind.as_str());
            let arr = self.get_list(&path, &[]).await?;
            for g in arr {
                out.push(entry_of(&path, kind, &g)?);
            }
        }
        out.sort_by_key(|g| g.vmid);
        Ok(out)
    }

    async fn cluster_view(&self) -> Result<ClusterView, ApiError> {
        let path = "/cluster/resources";
        let list = self
            .get_list(path, &[("type".to_string(), "vm".to_string())])
            .await?;
        let mut view = ClusterView::default();
        for g in list {
            let kind = match g.get("type").and_then(Value::as_str) {
                Some("qemu") => GuestKind::Qemu,
                Some("lxc") => GuestKind::Lxc,
                _ => continue,
            };
            let entry = entry_of(path, kind, &g)?;
            match g.get("node").and_then(Value::as_str) {
                Some(n) if n == self.node => view.here.push(entry),
                Some(n) => {
                    view.elsewhere.insert(entry.vmid, n.to_string());
                }
                None => {
                    return Err(ApiError::Decode(format!(
                        "{path}: entry without a node: {g}"
                    )))
                }
            }
        }
        view.here.sort_by_key(|g| g.vmid);
        // A standalone node has no `cluster` entry: a cluster of one, quorate.
        view.quorate = self
            .get_list("/cluster/status", &[])
            .await?
            .iter()
            .find(|e| e.get("type").and_then(Value::as_str) == Some("cluster"))
            .is_none_or(|c| c.get("quorate").and_then(num) == Some(1));
        Ok(view)
    }

    async fn status(&self, kind: GuestKind, vmid: Vmid) -> Result<Value, ApiError> {
        let path = format!("{}/status/current", self.guest_path(kind, vmid));
        self.http.call(Method::GET, &path, &[]).await
    }

    async fn config(&self, kind: GuestKind, vmid: Vmid) -> Result<GuestConfig, ApiError> {
        let path = format!("{}/config", self.guest_path(kind, vmid));
        let v = self.http.call(Method::GET, &path, &[]).await?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::Decode(format!("{path}: expected an object")))?;
        let mut values = BTreeMap::new();
        let mut digest = None;
        for (k, val) in obj {
            if k == "digest" {
                digest = val.as_str().map(str::to_string);
            } else if let Some(t) = text(val) {
                values.insert(k.clone(), t);
            }
        }
        Ok(GuestConfig {
            values,
            digest: digest.ok_or_else(|| ApiError::Decode(format!("{path}: no digest")))?,
        })
    }

    async fn pending(&self, kind: GuestKind, vmid: Vmid) -> Result<Vec<PendingEntry>, ApiError> {
        let path = format!("{}/pending", self.guest_path(kind, vmid));
        let arr = self.get_list(&path, &[]).await?;
        Ok(arr
            .iter()
            .filter_map(|e| {
                Some(PendingEntry {
                    key: e.get("key")?.as_str()?.to_string(),
                    value: e.get("value").and_then(text),
                    pending: e.get("pending").and_then(text),
                    delete: e.get("delete").and_then(num).is_some_and(|d| d > 0),
                })
            })
            .collect())
    }

    /// Paced by what the task's type took before (`pacing.rs`).
    async fn wait_task(
        &self,
        upid: &Upid,
        deadline: std::time::Duration,
    ) -> Result<TaskStatus, ApiError> {
        crate::pacing::wait(self, &self.pacing, upid, deadline).await
    }

    async fn task_status_once(&self, u: &Upid) -> Result<TaskStatus, ApiError> {
        let path = format!("/nodes/{}/tasks/{}/status", self.node, u);
        let v = self.http.call(Method::GET, &path, &[]).await?;
        let status = v
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::Decode(format!("{path}: no status")))?;
        Ok(TaskStatus {
            upid: u.clone(),
            running: status == "running",
            exitstatus: v
                .get("exitstatus")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    fn user(&self) -> &str {
        self.http.token_id()
    }

    async fn snapshots(&self, kind: GuestKind, vmid: Vmid) -> Result<Vec<String>, ApiError> {
        let path = format!("{}/snapshot", self.guest_path(kind, vmid));
        let arr = self.get_list(&path, &[]).await?;
        Ok(arr
            .iter()
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .filter(|n| *n != "current")
            .map(str::to_string)
            .collect())
    }

    async fn snapshot_config(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let path = format!("{}/snapshot/{name}/config", self.guest_path(kind, vmid));
        let v = self.http.call(Method::GET, &path, &[]).await?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::Decode(format!("{path}: expected an object")))?;
        Ok(obj
            .iter()
            .filter_map(|(k, val)| text(val).map(|t| (k.clone(), t)))
            .collect())
    }

    async fn guest_volumes(&self, vmid: Vmid) -> Result<Vec<(String, Option<u64>)>, ApiError> {
        let path = format!("/nodes/{}/storage", self.node);
        let storages: Vec<String> = self
            .get_list(&path, &[])
            .await?
            .iter()
            .filter(|s| {
                s.get("content")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.split(',').any(|x| x == "images" || x == "rootdir"))
            })
            .filter_map(|s| s.get("storage").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut out = Vec::new();
        for storage in storages {
            let path = format!("/nodes/{}/storage/{storage}/content", self.node);
            let entries = self
                .get_list(&path, &[("vmid".into(), vmid.to_string())])
                .await?;
            for e in &entries {
                if e.get("content").and_then(Value::as_str) == Some("backup") {
                    continue;
                }
                if let Some(volid) = e.get("volid").and_then(Value::as_str) {
                    out.push((volid.to_string(), e.get("size").and_then(num)));
                }
            }
        }
        Ok(out)
    }

    async fn task_log(&self, u: &Upid, limit: u32) -> Result<Vec<String>, ApiError> {
        let path = format!("/nodes/{}/tasks/{}/log", self.node, u);
        let arr = self
            .get_list(&path, &[("limit".into(), limit.to_string())])
            .await?;
        Ok(arr
            .iter()
            .filter_map(|l| l.get("t").and_then(Value::as_str).map(str::to_string))
            .collect())
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskEntry>, ApiError> {
        let path = format!("/nodes/{}/tasks", self.node);
        let arr = self.get_list(&path, &filter.params()).await?;
        let mut out = Vec::new();
        for t in arr {
            let Some(u) = t.get("upid").and_then(Value::as_str) else {
                continue;
            };
            let upid: Upid = u
                .parse()
                .map_err(|e: crate::upid::UpidError| ApiError::Decode(e.to_string()))?;
            let status = t.get("status").and_then(Value::as_str);
            let running = status.is_none_or(|s| s == "RUNNING");
            out.push(TaskEntry {
                upid,
                running,
                status: status.filter(|_| !running).map(str::to_string),
                endtime: t.get("endtime").and_then(num),
            });
        }
        Ok(out)
    }
}

/// The write half of one node's API: built with the admin token and given to the gate's executor
/// and to nothing else. Deliberately not `Clone`: whoever holds it holds the node's power.
#[derive(Debug)]
pub struct PveWriter {
    read: PveClient,
}

impl PveWriter {
    /// A writer for `node` at `endpoint`, authenticating with `token` (the admin token).
    pub fn new(endpoint: Endpoint, token: ApiToken, node: &str) -> Result<PveWriter, String> {
        Ok(PveWriter {
            read: PveClient::new(endpoint, token, node)?,
        })
    }

    /// Reports every request to `hook` (metrics).
    pub fn with_hook(self, hook: RequestHook) -> PveWriter {
        PveWriter {
            read: self.read.with_hook(hook),
        }
    }

    /// HTTP requests sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.read.requests_sent()
    }

    /// Any call, by method and path (below `/api2/json`), returning `data` as sent: for tests
    /// and tools that exercise the API beyond the typed methods. It widens nothing: the writer
    /// already holds the node's power, and the reader has no such method.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, ApiError> {
        let m = Method::from_bytes(method.as_bytes())
            .map_err(|e| ApiError::Transport(format!("method {method:?}: {e}")))?;
        self.read.http.call(m, path, params).await
    }
}

#[async_trait]
impl GuestRead for PveWriter {
    async fn list_guests(&self) -> Result<Vec<GuestEntry>, ApiError> {
        self.read.list_guests().await
    }

    async fn cluster_view(&self) -> Result<ClusterView, ApiError> {
        self.read.cluster_view().await
    }

    async fn status(&self, kind: GuestKind, vmid: Vmid) -> Result<Value, ApiError> {
        self.read.status(kind, vmid).await
    }

    async fn config(&self, kind: GuestKind, vmid: Vmid) -> Result<GuestConfig, ApiError> {
        self.read.config(kind, vmid).await
    }

    async fn pending(&self, kind: GuestKind, vmid: Vmid) -> Result<Vec<PendingEntry>, ApiError> {
        self.read.pending(kind, vmid).await
    }

    async fn task_status_once(&self, u: &Upid) -> Result<TaskStatus, ApiError> {
        self.read.task_status_once(u).await
    }

    async fn wait_task(
        &self,
        upid: &Upid,
        deadline: std::time::Duration,
    ) -> Result<TaskStatus, ApiError> {
        self.read.wait_task(upid, deadline).await
    }

    async fn task_log(&self, u: &Upid, limit: u32) -> Result<Vec<String>, ApiError> {
        self.read.task_log(u, limit).await
    }

    fn user(&self) -> &str {
        self.read.user()
    }

    async fn snapshots(&self, kind: GuestKind, vmid: Vmid) -> Result<Vec<String>, ApiError> {
        self.read.snapshots(kind, vmid).await
    }

    async fn snapshot_config(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        self.read.snapshot_config(kind, vmid, name).await
    }

    async fn guest_volumes(&self, vmid: Vmid) -> Result<Vec<(String, Option<u64>)>, ApiError> {
        self.read.guest_volumes(vmid).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskEntry>, ApiError> {
        self.read.list_tasks(filter).await
    }
}

#[async_trait]
impl GuestWrite for PveWriter {
    async fn start(&self, kind: GuestKind, vmid: Vmid) -> Result<Upid, ApiError> {
        self.read.power(kind, vmid, "start", vec![]).await
    }

    async fn stop(&self, kind: GuestKind, vmid: Vmid) -> Result<Upid, ApiError> {
        self.read.power(kind, vmid, "stop", vec![]).await
    }

    async fn shutdown(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        timeout: u32,
        force_stop: bool,
    ) -> Result<Upid, ApiError> {
        let params = vec![
            ("timeout".into(), timeout.to_string()),
            ("forceStop".into(), bool01(force_stop)),
        ];
        self.read.power(kind, vmid, "shutdown", params).await
    }

    async fn reboot(&self, kind: GuestKind, vmid: Vmid) -> Result<Upid, ApiError> {
        self.read.power(kind, vmid, "reboot", vec![]).await
    }

    async fn set_config(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        change: &ConfigChange,
    ) -> Result<(), ApiError> {
        let path = format!("{}/config", self.read.guest_path(kind, vmid));
        self.read
            .http
            .call(Method::PUT, &path, &change_params(change))
            .await
            .map(|_| ())
    }

    async fn set_config_async(
        &self,
        vmid: Vmid,
        change: &ConfigChange,
    ) -> Result<Option<Upid>, ApiError> {
        let path = format!("{}/config", self.read.guest_path(GuestKind::Qemu, vmid));
        match self
            .read
            .http
            .call(Method::POST, &path, &change_params(change))
            .await?
        {
            Value::Null => Ok(None),
            v => upid(v).map(Some),
        }
    }

    async fn create(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        config: &BTreeMap<String, String>,
    ) -> Result<Upid, ApiError> {
        let path = format!("/nodes/{}/{}", self.read.node, kind.as_str());
        let mut params: Vec<(String, String)> = vec![("vmid".into(), vmid.to_string())];
        params.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
        upid(self.read.http.call(Method::POST, &path, &params).await?)
    }

    async fn destroy(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        purge: bool,
        destroy_unreferenced_disks: bool,
    ) -> Result<Upid, ApiError> {
        let params = vec![
            ("purge".into(), bool01(purge)),
            (
                "destroy-unreferenced-disks".into(),
                bool01(destroy_unreferenced_disks),
            ),
        ];
        upid(
            self.read
                .http
                .call(Method::DELETE, &self.read.guest_path(kind, vmid), &params)
                .await?,
        )
    }

    async fn unlink_disks(
        &self,
        vmid: Vmid,
        idlist: &[String],
        force: bool,
    ) -> Result<(), ApiError> {
        let path = format!("{}/unlink", self.read.guest_path(GuestKind::Qemu, vmid));
        let params = vec![
            ("idlist".into(), idlist.join(",")),
            ("force".into(), bool01(force)),
        ];
        self.read
            .http
            .call(Method::PUT, &path, &params)
            .await
            .map(|_| ())
    }

    async fn resize(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        disk: &str,
        size: &str,
    ) -> Result<Option<Upid>, ApiError> {
        let path = format!("{}/resize", self.read.guest_path(kind, vmid));
        let params = vec![("disk".into(), disk.into()), ("size".into(), size.into())];
        match self.read.http.call(Method::PUT, &path, &params).await? {
            Value::Null => Ok(None),
            v => upid(v).map(Some),
        }
    }

    async fn move_disk(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        disk: &str,
        storage: &str,
        delete: bool,
        digest: Option<&str>,
    ) -> Result<Upid, ApiError> {
        let (call, key) = match kind {
            GuestKind::Qemu => ("move_disk", "disk"),
            GuestKind::Lxc => ("move_volume", "volume"),
        };
        let path = format!("{}/{call}", self.read.guest_path(kind, vmid));
        let mut params: Vec<(String, String)> = vec![
            (key.into(), disk.into()),
            ("storage".into(), storage.into()),
            ("delete".into(), if delete { "1" } else { "0" }.into()),
        ];
        if let Some(d) = digest {
            params.push(("digest".into(), d.into()));
        }
        upid(self.read.http.call(Method::POST, &path, &params).await?)
    }

    async fn rollback(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        snapshot: &str,
    ) -> Result<Upid, ApiError> {
        let path = format!(
            "{}/snapshot/{snapshot}/rollback",
            self.read.guest_path(kind, vmid)
        );
        upid(self.read.http.call(Method::POST, &path, &[]).await?)
    }

    async fn restore_over(
        &self,
        kind: GuestKind,
        vmid: Vmid,
        archive: &str,
    ) -> Result<Upid, ApiError> {
        let path = format!("/nodes/{}/{}", self.read.node, kind.as_str());
        let mut params: Vec<(String, String)> = vec![("vmid".into(), vmid.to_string())];
        match kind {
            GuestKind::Qemu => params.push(("archive".into(), archive.into())),
            GuestKind::Lxc => {
                params.push(("ostemplate".into(), archive.into()));
                params.push(("restore".into(), "1".into()));
            }
        }
        params.push(("force".into(), "1".into()));
        upid(self.read.http.call(Method::POST, &path, &params).await?)
    }
}

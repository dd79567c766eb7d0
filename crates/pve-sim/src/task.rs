//! Tasks as a Proxmox node keeps them: a UPID, `running` then `stopped` with an exit status
//! (`OK`, `WARNINGS: n` — which Proxmox counts as success, `upid_status_is_error` — or the error
//! text), a log that ends with `TASK OK` / `TASK WARNINGS: n` / `TASK ERROR: …`, and the task
//! list's filters (`vmid`, `typefilter`, `userfilter`, `since`, `until`, `start`, `limit`
//! default 50, `errors`, `source`), newest first, running tasks shown as `RUNNING`. Times are
//! wall-clock milliseconds so that a persisted node keeps its tasks across restarts. It must
//! never report a task ended before its time.

use crate::upid::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How a task ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// `OK`.
    Ok,
    /// `WARNINGS: n` (success).
    Warnings(u32),
    /// An error text.
    Error(String),
}

impl Ending {
    /// The exit status text.
    pub fn exitstatus(&self) -> String {
        match self {
            Ending::Ok => "OK".into(),
            Ending::Warnings(n) => format!("WARNINGS: {n}"),
            Ending::Error(e) => e.clone(),
        }
    }

    /// Proxmox's `upid_status_is_error`: anything but OK and WARNINGS.
    pub fn is_error(&self) -> bool {
        matches!(self, Ending::Error(_))
    }
}

/// One task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub upid: TaskId,
    /// The guest it acts on.
    pub vmid: Option<u32>,
    /// When it ends (Unix ms); None: it hangs.
    pub ends_ms: Option<u64>,
    /// How it will end (decided at start, applied at the end).
    pub ending: Ending,
    /// Once ended: its exit status.
    pub done: Option<String>,
    /// Once ended: Unix seconds.
    pub endtime: Option<u64>,
    /// Log lines.
    pub log: Vec<String>,
    /// What it does to the node when it ends.
    pub effect: crate::node::Effect,
    /// It holds its guest's lock until it ends.
    pub holds_lock: bool,
}

impl Task {
    /// Whether it is still running.
    pub fn running(&self) -> bool {
        self.done.is_none()
    }

    /// `GET …/tasks/{upid}/status`: a token's task names the user and the token apart, as
    /// pve-manager's `Tasks.pm` splits them (`user@realm`, `tokenid`).
    pub fn status_json(&self) -> Value {
        let u = &self.upid;
        let mut v = json!({
            "upid": u.to_string(), "node": u.node, "pid": u.pid, "pstart": u.pstart,
            "starttime": u.starttime, "type": u.kind, "id": u.id,
            "status": if self.running() { "running" } else { "stopped" },
        });
        split_user(&mut v, &u.user);
        if let Some(d) = &self.done {
            v["exitstatus"] = json!(d);
        }
        v
    }

    /// A list entry: a finished task (read back from the node's task index) names the user
    /// and the token apart; a running one (from the active list) keeps `user@realm!token`.
    fn list_json(&self) -> Value {
        let u = &self.upid;
        let mut v = json!({
            "upid": u.to_string(), "node": u.node, "pid": u.pid, "pstart": u.pstart,
            "starttime": u.starttime, "type": u.kind, "id": u.id, "user": u.user,
            "status": self.done.clone().unwrap_or_else(|| "RUNNING".into()),
        });
        if !self.running() {
            split_user(&mut v, &u.user);
        }
        if let Some(e) = self.endtime {
            v["endtime"] = json!(e);
        }
        v
    }

    /// The user the list's filters see: split for a finished task, whole for a running one.
    fn listed_user(&self) -> &str {
        if self.running() {
            &self.upid.user
        } else {
            crate::forms::user_of(&self.upid.user)
        }
    }

    /// Proxmox's `upid_normalize_status_type`: `ok`, `warning`, `error`, or `unknown` (which
    /// a running task, with no status yet, is too).
    fn status_type(&self) -> &'static str {
        match (&self.done, &self.ending) {
            (None, _) => "unknown",
            (Some(d), _) if d == "unexpected status" => "unknown",
            (Some(_), Ending::Ok) => "ok",
            (Some(_), Ending::Warnings(_)) => "warning",
            (Some(_), Ending::Error(_)) => "error",
        }
    }
}

/// `user` of `user@realm!token` as `user@realm` with `tokenid` beside it; a user's own task
/// keeps its `user` alone.
pub(crate) fn split_user(v: &mut Value, user: &str) {
    match user.split_once('!') {
        Some((u, token)) => {
            v["user"] = json!(u);
            v["tokenid"] = json!(token);
        }
        None => v["user"] = json!(user),
    }
}

fn int(params: &BTreeMap<String, String>, k: &str) -> Option<u64> {
    params.get(k).and_then(|v| v.parse().ok())
}

/// `GET /nodes/{node}/tasks` over `tasks` the caller may see.
pub fn list<'a>(tasks: impl Iterator<Item = &'a Task>, params: &BTreeMap<String, String>) -> Value {
    let source = params.get("source").map_or("archive", String::as_str);
    let errors = params
        .get("errors")
        .is_some_and(|e| e == "1" || e == "true");
    let vmid = params.get("vmid");
    let typefilter = params.get("typefilter");
    // Matched as pve-manager does: a case-insensitive substring of the listed user.
    let userfilter = params.get("userfilter").map(|f| f.to_lowercase());
    // `errors` drops only the tasks that ended `OK`, and overrides `statusfilter`.
    let statusfilter: Option<Vec<String>> = if errors {
        Some(["warning", "error", "unknown"].map(String::from).to_vec())
    } else {
        params
            .get("statusfilter")
            .map(|s| crate::forms::split_list(s).map(str::to_lowercase).collect())
    };
    let (since, until) = (int(params, "since"), int(params, "until"));
    let start = int(params, "start").unwrap_or(0) as usize;
    let limit = int(params, "limit").unwrap_or(50) as usize;
    let mut chosen: Vec<&Task> = tasks
        .filter(|t| match source {
            "active" => t.running(),
            "all" => true,
            _ => !t.running(),
        })
        .filter(|t| vmid.is_none_or(|v| t.vmid.map(|x| x.to_string()).as_ref() == Some(v)))
        .filter(|t| typefilter.is_none_or(|f| t.upid.kind == *f))
        .filter(|t| {
            userfilter
                .as_ref()
                .is_none_or(|f| t.listed_user().to_lowercase().contains(f.as_str()))
        })
        .filter(|t| since.is_none_or(|s| u64::from(t.upid.starttime) >= s))
        .filter(|t| until.is_none_or(|s| u64::from(t.upid.starttime) <= s))
        .filter(|t| {
            statusfilter
                .as_ref()
                .is_none_or(|f| f.iter().any(|c| c == t.status_type()))
        })
        .collect();
    chosen.sort_by(|a, b| {
        b.upid
            .starttime
            .cmp(&a.upid.starttime)
            .then(b.upid.pid.cmp(&a.upid.pid))
    });
    Value::Array(
        chosen
            .into_iter()
            .skip(start)
            .take(limit)
            .map(Task::list_json)
            .collect(),
    )
}

/// `GET …/tasks/{upid}/log`: `[{n, t}]` from line `start`, at most `limit` lines.
pub fn log(task: &Task, params: &BTreeMap<String, String>) -> Value {
    let start = int(params, "start").unwrap_or(0) as usize;
    let limit = int(params, "limit").unwrap_or(50) as usize;
    Value::Array(
        task.log
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, t)| json!({"n": i + 1, "t": t}))
            .collect(),
    )
}

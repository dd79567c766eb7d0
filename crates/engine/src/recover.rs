//! Crash recovery, before the first mutation of every start: every op the journal holds in
//! flight gets its real outcome from the node, or is abandoned fail-safe. An op with a UPID is
//! read once (ended: its outcome is recorded; still running: it is waited for in the
//! background, holding its guest). An op that reached `intent` without a UPID (the crash fell
//! between the intent and the POST's answer) is looked for in the node's task list (its task
//! type, its guest, our token's user, started no earlier than the intent); found, it is adopted;
//! not found, abandoned. Nothing is ever dispatched here: a destructive op never runs twice, and
//! a benign one is simply planned again by the next pass. Running it twice is harmless: every
//! step is a journal transition that is legal only once.

use crate::blocking;
use std::sync::Arc;
use std::time::Duration;
use steward_gate::{Failure, FailureKind};
use steward_journal::{Journal, JournalError, OpRecord, OpState};
use steward_model::{Action, GuestKind};
use steward_proxmox_client::{ApiError, GuestRead, TaskEntry, TaskFilter, TaskSource, Upid};

/// What recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Ops whose task had ended: outcome recorded.
    pub settled: usize,
    /// Ops without a UPID whose task was found in the task list.
    pub adopted: usize,
    /// Ops with no trace on the node: abandoned.
    pub abandoned: usize,
    /// Ops whose task still runs: waited for in the background.
    pub waiting: usize,
    /// Ops with no trace on this node whose guest has since left it: ended as moved.
    pub moved: usize,
}

/// A recovery step that could not be done (the journal or the node did not answer): the agent
/// must not start mutating.
#[derive(Debug)]
pub enum RecoverError {
    /// The journal failed.
    Journal(JournalError),
    /// The node failed.
    Api(ApiError),
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Journal(e) => write!(f, "recovery: {e}"),
            RecoverError::Api(e) => write!(f, "recovery: {e}"),
        }
    }
}

impl std::error::Error for RecoverError {}

impl From<JournalError> for RecoverError {
    fn from(e: JournalError) -> Self {
        RecoverError::Journal(e)
    }
}

impl From<ApiError> for RecoverError {
    fn from(e: ApiError) -> Self {
        RecoverError::Api(e)
    }
}

/// The task type an action's POST starts (`None`: a synchronous write, no task).
pub fn task_type(action: &Action) -> Option<String> {
    let p = match action.kind() {
        GuestKind::Qemu => "qm",
        GuestKind::Lxc => "vz",
    };
    let t = match action {
        Action::Create { .. } => "create",
        Action::Start { .. } => "start",
        Action::Stop { .. } => "stop",
        Action::Shutdown { .. } => "shutdown",
        Action::Reboot { .. } => "reboot",
        Action::Destroy { .. } => "destroy",
        Action::SnapshotRollback { .. } => "rollback",
        Action::RestoreOver { .. } => "restore",
        Action::SetConfig { .. } => return None,
        // qemu-server and pve-container both fork a worker named `resize`.
        Action::ResizeDisk { .. } => return Some("resize".into()),
        // qemu-server's worker is `qmmove`; pve-container's is `move_volume`.
        Action::MoveDisk {
            kind: GuestKind::Lxc,
            ..
        } => return Some("move_volume".into()),
        Action::MoveDisk { .. } => "move",
    };
    Some(format!("{p}{t}"))
}

/// The task of type `ty` for `action`'s guest that one of `users` started no earlier than
/// `since` (Unix seconds), the earliest if several: how an op whose POST was answered by no
/// UPID (a crash, or an answer lost on the way) is found on the node.
pub(crate) async fn find_task(
    api: &dyn GuestRead,
    action: &Action,
    ty: &str,
    since: u64,
    users: &[&str],
) -> Result<Option<TaskEntry>, ApiError> {
    let tasks = api
        .list_tasks(&TaskFilter {
            vmid: Some(action.vmid()),
            typefilter: Some(ty.to_string()),
            since: Some(since),
            limit: Some(1000),
            source: TaskSource::All,
            ..TaskFilter::default()
        })
        .await?;
    Ok(tasks
        .into_iter()
        .filter(|t| {
            t.upid.kind == ty
                && users.contains(&t.upid.user.as_str())
                && u64::from(t.upid.starttime) >= since
        })
        .min_by_key(|t| t.upid.starttime))
}

/// One journal transition, off the async workers.
async fn transition(
    journal: &Arc<Journal>,
    id: steward_journal::OpId,
    to: OpState,
) -> Result<(), JournalError> {
    blocking::journal(journal, move |j| j.transition(id, to).map(|_| ())).await
}

/// The task log lines read for a task that ended with warnings.
pub(crate) const TASK_LOG_LINES: u32 = 500;

/// For a task that ended `WARNINGS: n`: its log's `WARN` lines (or, when the log cannot be
/// read, the exit status and why); nothing for any other ending.
pub(crate) async fn warnings(api: &dyn GuestRead, upid: &Upid, exitstatus: &str) -> Vec<String> {
    if !exitstatus.starts_with("WARNINGS") {
        return Vec::new();
    }
    match api.task_log(upid, TASK_LOG_LINES).await {
        Ok(lines) => {
            let warned: Vec<String> = lines
                .into_iter()
                .filter(|l| l.starts_with("WARN"))
                .collect();
            if warned.is_empty() {
                vec![exitstatus.to_string()]
            } else {
                warned
            }
        }
        Err(e) => vec![format!("{exitstatus} (task log not read: {e})")],
    }
}

fn ended(exitstatus: &str) -> OpState {
    if steward_proxmox_client::exit_ok(exitstatus) {
        OpState::Succeeded
    } else {
        let failure: Failure = ApiError::TaskFailed {
            upid: String::new(),
            exitstatus: exitstatus.to_string(),
        }
        .failure();
        OpState::Failed { failure }
    }
}

/// `to`, or, for an op that left no trace here while its guest has since left this node (or
/// is leaving it), the op ended as moved, by the gate's rule (`Whereabouts::moved`), as not
/// found here: nothing on this node says it ran. A task that ended failed keeps its own exit
/// status: the crash may have been long, and a migration after it says nothing about why.
async fn moved_or(api: &dyn GuestRead, action: &Action, to: OpState) -> OpState {
    let OpState::Abandoned { reason } = &to else {
        return to;
    };
    let failure = Failure::new(FailureKind::NotFound, reason.clone());
    match crate::moved::locate(api, action.vmid())
        .await
        .moved(action, &failure)
    {
        Some(node) => OpState::Moved { node, failure },
        None => to,
    }
}

/// Records the outcome of a task that may still run: ended → recorded now; running → a
/// background waiter records it (returned, so the caller can hold the guest).
async fn settle(
    journal: &Arc<Journal>,
    api: &Arc<dyn GuestRead>,
    rec: &OpRecord,
    upid: &Upid,
    deadline: Duration,
) -> Result<Option<tokio::task::JoinHandle<()>>, RecoverError> {
    match api.task_status_once(upid).await {
        Ok(st) if !st.running => {
            let exit = st.exitstatus.as_deref().unwrap_or("unexpected status");
            let warned = warnings(api.as_ref(), upid, exit).await;
            let to = ended(exit);
            let id = rec.id;
            blocking::journal(journal, move |j| {
                j.transition_noting(id, to, warned).map(|_| ())
            })
            .await?;
            Ok(None)
        }
        Ok(_) => {
            let (journal, api, upid, id) = (journal.clone(), api.clone(), upid.clone(), rec.id);
            Ok(Some(tokio::spawn(async move {
                let (to, warned) = match api.wait_task(&upid, deadline).await {
                    Ok(st) => {
                        let exit = st.exitstatus.unwrap_or_default();
                        (
                            OpState::Succeeded,
                            warnings(api.as_ref(), &upid, &exit).await,
                        )
                    }
                    Err(ApiError::TaskFailed { exitstatus, .. }) => {
                        (ended(&exitstatus), Vec::new())
                    }
                    Err(e) => (
                        OpState::Abandoned {
                            reason: format!("recovery could not follow task {upid}: {e}"),
                        },
                        Vec::new(),
                    ),
                };
                if let Err(e) =
                    blocking::journal(&journal, move |j| j.transition_noting(id, to, warned)).await
                {
                    tracing::error!(target: "audit", op = %id, error = %e, "recovered outcome not journaled");
                }
            })))
        }
        // The node has no such task (a 400 for an unknown UPID): nothing can say it ran.
        Err(ApiError::Api { status: 400, .. }) | Err(ApiError::NotFound(_)) => {
            {
                let (id, to) = (
                    rec.id,
                    OpState::Abandoned {
                        reason: format!("task {upid} unknown to the node"),
                    },
                );
                blocking::journal(journal, move |j| j.transition(id, to)).await?;
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Resolves every in-flight op. `users` are our tokens' ids as they appear in UPIDs (the
/// everyday token's and the admin token's: an op ran with one of them).
pub async fn recover(
    journal: &Arc<Journal>,
    api: &Arc<dyn GuestRead>,
    users: &[&str],
    deadline: Duration,
) -> Result<
    (
        Recovery,
        Vec<(steward_model::Vmid, tokio::task::JoinHandle<()>)>,
    ),
    RecoverError,
> {
    let mut out = Recovery::default();
    let mut waiters = Vec::new();
    for rec in blocking::journal(journal, |j| j.in_flight()).await? {
        match rec.state().clone() {
            OpState::Dispatched { upid } => {
                let Ok(u) = upid.parse::<Upid>() else {
                    {
                        let (id, to) = (
                            rec.id,
                            OpState::Abandoned {
                                reason: format!("unreadable UPID {upid}"),
                            },
                        );
                        blocking::journal(journal, move |j| j.transition(id, to)).await?;
                    }
                    out.abandoned += 1;
                    continue;
                };
                match settle(journal, api, &rec, &u, deadline).await? {
                    Some(w) => {
                        waiters.push((rec.guest, w));
                        out.waiting += 1;
                    }
                    None => out.settled += 1,
                }
            }
            OpState::Intent => {
                let since_ms = rec
                    .history
                    .iter()
                    .rev()
                    .find(|t| t.state == OpState::Intent)
                    .map_or(0, |t| t.at_ms);
                let Some(ty) = task_type(&rec.action) else {
                    transition(journal,
                        rec.id,
                        OpState::Abandoned {
                            reason: "a synchronous write whose answer was lost; observation decides what holds".into(),
                        },
                    ).await?;
                    out.abandoned += 1;
                    continue;
                };
                let since = u64::try_from(since_ms / 1000)
                    .unwrap_or(0)
                    .saturating_sub(1);
                match find_task(api.as_ref(), &rec.action, &ty, since, users).await? {
                    Some(t) => {
                        transition(
                            journal,
                            rec.id,
                            OpState::Dispatched {
                                upid: t.upid.to_string(),
                            },
                        )
                        .await?;
                        out.adopted += 1;
                        if let Some(w) = settle(journal, api, &rec, &t.upid, deadline).await? {
                            waiters.push((rec.guest, w));
                            out.waiting += 1;
                        }
                    }
                    None => {
                        let reason = format!(
                            "no {ty} task for guest {} by {} in the node's task list",
                            rec.guest,
                            users.join(" or ")
                        );
                        let to = moved_or(api.as_ref(), &rec.action, OpState::Abandoned { reason })
                            .await;
                        let id = rec.id;
                        if matches!(to, OpState::Moved { .. }) {
                            out.moved += 1;
                        } else {
                            out.abandoned += 1;
                        }
                        blocking::journal(journal, move |j| j.transition(id, to)).await?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok((out, waiters))
}

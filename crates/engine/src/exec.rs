//! The only `Executor`, and so the only holder of the API's write half: what each `Action` is on
//! the node, sent with the token the gate chose (`Authority`): the everyday token for benign
//! actions, so that a classifier mistake meets a 403 from Proxmox, the admin token for creates,
//! provenance destroys and the signed path. Benign: create, start, stop, shutdown (timeout,
//! then stop), reboot, config writes (synchronous `PUT` with the planned digest). Destructive, reached only after the gate's
//! signed path: destroy (stopping a running guest first, `purge`), a config change that deletes
//! or detaches a disk (the `delete`, then the volume it left as `unusedN` is removed, guarded by
//! the digest), snapshot rollback, restore over an existing guest. Each waits for its task;
//! failures are typed. It must never be handed to anything but the gate, and never send
//! `skiplock`.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use steward_gate::binding::{check_claims, claims_slots};
use steward_gate::{Authority, Executor, Failure, FailureKind, Guard, ObservedConfig, Whereabouts};
use steward_metrics::Metrics;
use steward_model::{volume_of, Action, ConfigChange, GuestKind, Vmid};
use steward_proxmox_client::{ApiError, GuestWrite, Upid};

/// Runs actions on the node through the write half of its API, one writer per token.
pub struct NodeExecutor {
    everyday: Box<dyn GuestWrite>,
    admin: Box<dyn GuestWrite>,
    task_deadline: Duration,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for NodeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeExecutor")
            .field("task_deadline", &self.task_deadline)
            .finish_non_exhaustive()
    }
}

fn failure(e: ApiError) -> Failure {
    e.failure()
}

/// What a destroy or a restore over a guest did before its call, when the guest was running.
const STOPPED: &str = "the guest was stopped for it";

/// `f`, with `before` said when a step ran before the failing call.
fn ran(f: Failure, before: Option<&str>) -> Failure {
    match before {
        Some(step) => after(f, step),
        None => f,
    }
}

/// `f`, saying which earlier step of the action had already run: the journal then records
/// that part of it, however the op ends (failed, or moved when the guest left in between).
fn after(mut f: Failure, step: &str) -> Failure {
    f.detail = format!("{} (after {step})", f.detail);
    f
}

/// Whether `action` is a create that Proxmox would let run over a guest already there (a
/// restore with `force`).
fn overwrites(action: &Action) -> bool {
    matches!(action, Action::Create { config, .. } if config.get("force").is_some_and(|f| f != "0"))
}

/// Whether a call got no answer at all (the connection broke or timed out after the request
/// was sent): it may have been carried out.
fn answer_lost(e: &ApiError) -> bool {
    matches!(e, ApiError::Transport(_) | ApiError::Timeout(_))
}

impl NodeExecutor {
    /// An executor over the everyday token's writer and the admin token's, waiting up to
    /// `task_deadline` for each task.
    pub fn new(
        everyday: Box<dyn GuestWrite>,
        admin: Box<dyn GuestWrite>,
        task_deadline: Duration,
    ) -> NodeExecutor {
        NodeExecutor {
            everyday,
            admin,
            task_deadline,
            metrics: None,
        }
    }

    fn writer(&self, authority: Authority) -> &dyn GuestWrite {
        match authority {
            Authority::Everyday => self.everyday.as_ref(),
            Authority::Admin => self.admin.as_ref(),
        }
    }

    /// Records each task's duration (by its UPID's worker type, `qmstart`) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> NodeExecutor {
        self.metrics = Some(metrics);
        self
    }

    /// Waits for `upid`; for a task that ended `WARNINGS: n`, its log's `WARN` lines (or, when
    /// the log cannot be read, the exit status and why).
    async fn finish(&self, node: &dyn GuestWrite, upid: &Upid) -> Result<Vec<String>, Failure> {
        let started = std::time::Instant::now();
        let r = node.wait_task(upid, self.task_deadline).await;
        if let Some(m) = &self.metrics {
            m.task(&upid.kind, started.elapsed());
        }
        let status = r.map_err(failure)?;
        let exit = status.exitstatus.unwrap_or_default();
        Ok(crate::recover::warnings(node, upid, &exit).await)
    }

    /// A running guest is stopped (and the stop awaited) before it is destroyed: Proxmox
    /// refuses to destroy a running guest. Whether it stopped one.
    async fn stop_if_running(
        &self,
        node: &dyn GuestWrite,
        kind: GuestKind,
        vmid: Vmid,
    ) -> Result<bool, Failure> {
        let status = node.status(kind, vmid).await.map_err(failure)?;
        let running = status.get("status").and_then(|s| s.as_str()) == Some("running");
        if running {
            let upid = node.stop(kind, vmid).await.map_err(failure)?;
            let warned = self.finish(node, &upid).await?;
            if !warned.is_empty() {
                let text = steward_authz::escape_controls(&warned.join(" | "));
                tracing::warn!(guest = %vmid, warnings = %text, "the stop before the action ended with warnings");
            }
        }
        Ok(running)
    }

    /// A config write; for each disk it deleted, the volume that became `unusedN` is removed
    /// too, and only if it is the volume the change was signed for.
    async fn set_config(
        &self,
        node: &dyn GuestWrite,
        kind: GuestKind,
        vmid: Vmid,
        change: &ConfigChange,
    ) -> Result<(), Failure> {
        node.set_config(kind, vmid, change).await.map_err(failure)?;
        if change.removes.is_empty() {
            return Ok(());
        }
        let written = |e: ApiError| {
            after(
                failure(e),
                "the change was written: each disk it deletes was detached first",
            )
        };
        let after = node.config(kind, vmid).await.map_err(written)?;
        let mut unused = ConfigChange {
            digest: Some(after.digest.clone()),
            ..ConfigChange::default()
        };
        for volume in change.removes.values() {
            if let Some((slot, _)) = after.values.iter().find(|(k, v)| {
                k.starts_with("unused")
                    && volume_of(kind, k, v).ok().flatten() == Some(volume.as_str())
            }) {
                unused.delete.insert(slot.clone());
            }
        }
        if unused.delete.is_empty() {
            return Ok(());
        }
        node.set_config(kind, vmid, &unused).await.map_err(written)
    }
}

impl NodeExecutor {
    /// Checks `guard` against a fresh read of the guest, just before the call.
    async fn check(
        &self,
        node: &dyn GuestWrite,
        action: &Action,
        guard: &Guard,
    ) -> Result<(), Failure> {
        let (kind, vmid) = (action.kind(), action.vmid());
        // A change that touches a disk says what each slot holds (`removes`, `keeps`, or
        // nothing: an empty slot); that holds at its digest on the signed path and the benign
        // one alike, or nothing is written.
        let slots = if claims_slots(action) {
            let cfg = node.config(kind, vmid).await.map_err(failure)?;
            let observed = ObservedConfig {
                digest: cfg.digest.clone(),
                values: cfg.values.clone(),
            };
            check_claims(action, &observed).map_err(|why| {
                Failure::new(
                    FailureKind::Other,
                    format!("binding_mismatch: {why}: nothing was done"),
                )
            })?;
            Some(cfg)
        } else {
            None
        };
        let expected = match guard {
            Guard::Nothing => return Ok(()),
            // Proxmox refuses a create on a VMID in use before it forks a worker (qemu-server
            // and pve-container check the config file, cluster-wide) unless it is a restore
            // with `force`: only that one needs a look first, and the snapshot that planned a
            // plain create already said the VMID was free.
            Guard::Absent if !overwrites(action) => return Ok(()),
            Guard::Absent => {
                let taken = node
                    .list_guests()
                    .await
                    .map_err(failure)?
                    .iter()
                    .any(|g| g.vmid == vmid);
                if taken {
                    return Err(Failure::new(
                        FailureKind::Other,
                        format!(
                            "VMID {vmid} was taken since the create was planned: nothing was done"
                        ),
                    ));
                }
                return Ok(());
            }
            Guard::Identity(expected) => expected,
        };
        let cfg = match slots {
            Some(cfg) => cfg,
            None => node.config(kind, vmid).await.map_err(failure)?,
        };
        let now = steward_model::guest_identity(kind, &cfg.values);
        if &now != expected {
            return Err(Failure::new(
                FailureKind::NotFound,
                format!(
                    "{kind} {vmid} is not the guest this op was made for (identity {} now, {} then): nothing was done",
                    now.as_deref().unwrap_or("none"),
                    expected.as_deref().unwrap_or("none")
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Executor for NodeExecutor {
    async fn dispatch(
        &self,
        action: &Action,
        guard: &Guard,
        authority: Authority,
    ) -> Result<Option<String>, Failure> {
        let n = self.writer(authority);
        self.check(n, action, guard).await?;
        if let Action::SetConfig { change, .. } = action {
            if let Some(k) = change
                .set
                .keys()
                .chain(change.delete.iter())
                .find(|k| !steward_model::is_config_key(k))
            {
                return Err(Failure::new(
                    FailureKind::Other,
                    format!("{k:?} is not a config key: not sent"),
                ));
            }
        }
        // A second early: a task the node starts for this call has a start time at or after it.
        let sent_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(1);
        // A step of the action that ran before its call (the stop before a destroy), said in
        // any failure of the call.
        let mut before: Option<&str> = None;
        let upid = match action {
            Action::Create { vmid, kind, config } => n.create(*kind, *vmid, config).await,
            Action::Start { vmid, kind } => n.start(*kind, *vmid).await,
            Action::Stop { vmid, kind } => n.stop(*kind, *vmid).await,
            Action::Shutdown {
                vmid,
                kind,
                timeout_secs,
                force_stop,
            } => n.shutdown(*kind, *vmid, *timeout_secs, *force_stop).await,
            Action::Reboot { vmid, kind } => n.reboot(*kind, *vmid).await,
            Action::ResizeDisk {
                vmid,
                kind,
                disk,
                size,
            } => match n.resize(*kind, *vmid, disk, size).await {
                Ok(Some(u)) => Ok(u),
                Ok(None) => return Ok(None),
                Err(e) => Err(e),
            },
            Action::MoveDisk {
                vmid,
                kind,
                disk,
                storage,
                delete,
                digest,
                ..
            } => {
                n.move_disk(*kind, *vmid, disk, storage, *delete, digest.as_deref())
                    .await
            }
            Action::SetConfig { vmid, kind, change } => {
                return self
                    .set_config(n, *kind, *vmid, change)
                    .await
                    .map(|()| None);
            }
            Action::Destroy {
                vmid,
                kind,
                purge,
                destroy_unreferenced_disks,
            } => {
                let stopped = self.stop_if_running(n, *kind, *vmid).await?;
                let said = |f: Failure| if stopped { after(f, STOPPED) } else { f };
                if stopped {
                    before = Some(STOPPED);
                }
                // Stopping took a while: it must still be the same guest.
                self.check(n, action, guard).await.map_err(said)?;
                n.destroy(*kind, *vmid, *purge, *destroy_unreferenced_disks)
                    .await
            }
            Action::SnapshotRollback {
                vmid,
                kind,
                snapshot,
            } => n.rollback(*kind, *vmid, snapshot).await,
            Action::RestoreOver {
                vmid,
                kind,
                archive,
            } => {
                let stopped = self.stop_if_running(n, *kind, *vmid).await?;
                let said = |f: Failure| if stopped { after(f, STOPPED) } else { f };
                if stopped {
                    before = Some(STOPPED);
                }
                self.check(n, action, guard).await.map_err(said)?;
                n.restore_over(*kind, *vmid, archive).await
            }
        };
        match upid {
            Ok(u) => Ok(Some(u.to_string())),
            Err(e) if answer_lost(&e) => {
                // The POST may have been carried out and only its answer lost: look for the
                // task before calling it a failure (a failure would be planned again, and run
                // twice).
                let Some(ty) = crate::recover::task_type(action) else {
                    return Err(ran(failure(e), before));
                };
                let user = n.user().to_string();
                match crate::recover::find_task(n, action, &ty, sent_at, &[user.as_str()]).await {
                    Ok(Some(t)) => {
                        tracing::info!(guest = %action.vmid(), upid = %t.upid, error = %e, "the answer was lost, the task found: following it");
                        Ok(Some(t.upid.to_string()))
                    }
                    _ => Err(ran(failure(e), before)),
                }
            }
            Err(e) => Err(ran(failure(e), before)),
        }
    }

    async fn read_config(&self, kind: GuestKind, vmid: Vmid) -> Result<ObservedConfig, Failure> {
        let cfg = self.admin.config(kind, vmid).await.map_err(failure)?;
        Ok(ObservedConfig {
            digest: cfg.digest,
            values: cfg.values,
        })
    }

    async fn whereabouts(&self, _kind: GuestKind, vmid: Vmid) -> Whereabouts {
        crate::moved::locate(self.admin.as_ref(), vmid).await
    }

    async fn wait(&self, upid: &str, authority: Authority) -> Result<Vec<String>, Failure> {
        let u: Upid = upid
            .parse()
            .map_err(|e: steward_proxmox_client::UpidError| {
                Failure::new(FailureKind::Other, e.to_string())
            })?;
        self.finish(self.writer(authority), &u).await
    }
}

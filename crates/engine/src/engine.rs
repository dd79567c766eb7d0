//! The engine: `new` wires it; `recover` resolves what the journal holds in flight and is the
//! only way to a [`Recovered`] engine, the only kind that can `run` (nothing mutates before
//! recovery). The reconcile loop itself is `event_loop.rs`, the signed-op desk `signed.rs`;
//! this file holds what they share: the gate, the journal handle, the scheduler, the newest
//! snapshot, the status and the metrics. It must never read the API for the loop (the
//! observer does) nor call the journal on an async worker (`blocking.rs` does).

use crate::blocking;
use crate::held::{self, HeldOp};
use crate::observe::{Observer, PassReport, Snapshot};
use crate::recover::{self, RecoverError, Recovery};
use crate::schedule::{Busy, Scheduler};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steward_gate::{Decision, Gate};
use steward_journal::{Journal, OpId};
use steward_metrics::Metrics;
use steward_model::{DesiredState, Vmid};
use steward_proxmox_client::GuestRead;
use steward_view::Status;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch, Notify};

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Time between passes when nothing else wakes the loop (default 30 s).
    pub interval: Duration,
    /// Actions in flight at once, across guests (default 4).
    pub concurrency: usize,
    /// Every managed guest's config is re-read within this (default 5 min).
    pub sweep_period: Duration,
    /// How long one Proxmox task may take.
    pub task_deadline: Duration,
    /// `/etc/pve/nodes/<node>` (or the simulator's view), for config-file mtimes.
    pub conf_dir: Option<PathBuf>,
    /// Our admin token's id as Proxmox writes it in UPIDs (`steward@pve!admin`): recovery
    /// looks for our tasks by it and by `everyday_token_user`.
    pub token_user: String,
    /// Our everyday token's id (`steward@pve!agent`), which benign actions run with; empty
    /// when the same token does everything.
    pub everyday_token_user: String,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            interval: Duration::from_secs(30),
            concurrency: 4,
            sweep_period: Duration::from_secs(300),
            task_deadline: Duration::from_secs(600),
            conf_dir: None,
            token_user: String::new(),
            everyday_token_user: String::new(),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(300),
        }
    }
}

/// Why the loop woke up (logged and counted, never passed to reconcile).
#[derive(Debug)]
pub enum Trigger {
    /// A new desired state from a provider.
    Desired(Arc<DesiredState>),
    /// Someone asked for a pass now.
    ReconcileNow,
}

/// Something outside the loop tells it (the desk, recovery): a guest's slot was released.
#[derive(Debug)]
pub(crate) struct Released {
    pub(crate) vmid: Vmid,
    /// Something may have changed the guest: re-read it.
    pub(crate) ran: bool,
}

/// The reconcile engine.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) api: Arc<dyn GuestRead>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) journal: Arc<Journal>,
    /// Taken by the loop; `observe_once` (the bench, with no loop) uses it too.
    pub(crate) observer: tokio::sync::Mutex<Observer>,
    /// The newest snapshot, published by the loop after each pass.
    pub(crate) snapshot: watch::Sender<Arc<Snapshot>>,
    pub(crate) desired: Mutex<Arc<DesiredState>>,
    pub(crate) sched: Mutex<Scheduler>,
    /// Rung when a slot is released (a desk waits on it for a busy guest).
    pub(crate) freed: Notify,
    pub(crate) released: mpsc::UnboundedSender<Released>,
    pub(crate) released_rx: Mutex<Option<mpsc::UnboundedReceiver<Released>>>,
    status: Mutex<Status>,
    metrics: Arc<Metrics>,
    /// What each held destroy removes beyond its config (snapshot-only and unreferenced
    /// volumes), read by the observer once per op, after a pass (`event_loop.rs`).
    pub(crate) held_extras: Mutex<BTreeMap<OpId, Vec<held::Extra>>>,
    /// When the audit head was last logged (Unix ms; 0: never).
    head_logged_ms: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// An engine that has recovered: the only kind that can [`Recovered::run`].
#[derive(Debug)]
pub struct Recovered {
    engine: Arc<Engine>,
    /// What recovery did.
    pub recovery: Recovery,
}

impl Recovered {
    /// The engine (for the local API and the feed, which run beside the loop).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The reconcile loop, until `shutdown` turns true: then it takes no new action and waits
    /// for those in flight (each records its outcome) up to `drain`.
    pub async fn run(
        self,
        triggers: mpsc::UnboundedReceiver<Trigger>,
        shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) {
        crate::event_loop::run(self.engine, triggers, shutdown, drain).await
    }
}

/// A slot taken on a guest; released (and the loop told) when dropped.
pub(crate) struct SlotGuard<'a> {
    engine: &'a Engine,
    vmid: Vmid,
    pub(crate) ran: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.engine.release(self.vmid, self.ran);
    }
}

pub(crate) fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Engine {
    /// Reads guests' volumes for held destroys' summaries through `volumes`, a reader with the
    /// admin token: Proxmox lists a guest's disk volumes only to a token with `VM.Config.Disk`
    /// on the guest, which the everyday reader lacks, and a summary must not leave out a volume
    /// that `destroy-unreferenced-disks` removes. Without it, the everyday reader is used.
    pub fn with_volume_reader(mut self, volumes: Arc<dyn GuestRead>) -> Engine {
        self.observer.get_mut().set_volume_reader(volumes);
        self
    }

    /// An engine over the read half of the API (observation and recovery), the gate (which
    /// owns the only executor), and the journal.
    pub fn new(
        cfg: EngineConfig,
        api: Arc<dyn GuestRead>,
        gate: Gate,
        journal: Arc<Journal>,
    ) -> Engine {
        let observer = Observer::new(api.clone(), cfg.sweep_period, cfg.conf_dir.clone());
        let (released, released_rx) = mpsc::unbounded_channel();
        Engine {
            sched: Mutex::new(Scheduler::new(cfg.backoff_base, cfg.backoff_cap)),
            cfg,
            api,
            gate: Arc::new(gate),
            journal,
            observer: tokio::sync::Mutex::new(observer),
            snapshot: watch::Sender::new(Arc::new(Snapshot::default())),
            desired: Mutex::new(Arc::new(DesiredState::default())),
            freed: Notify::new(),
            released,
            released_rx: Mutex::new(Some(released_rx)),
            status: Mutex::new(Status::default()),
            metrics: Arc::new(Metrics::new()),
            held_extras: Mutex::new(BTreeMap::new()),
            head_logged_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Records into `metrics` (shared with the client, journal and executor the agent wired)
    /// instead of a registry of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Engine {
        self.metrics = metrics;
        self
    }

    /// The metrics the engine records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Takes `vmid`'s slot for `by`, waiting while something else holds it.
    pub(crate) async fn take(&self, vmid: Vmid, by: Busy) -> SlotGuard<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.sched().try_take(vmid, by) {
                return SlotGuard {
                    engine: self,
                    vmid,
                    ran: false,
                };
            }
            freed.await;
        }
    }

    /// Releases a slot taken outside the loop and tells the loop.
    fn release(&self, vmid: Vmid, ran: bool) {
        self.sched().release(vmid, ran);
        self.freed.notify_waiters();
        let _ = self.released.send(Released { vmid, ran });
    }

    /// Counts a gate decision, and for an action the engine or a job started, how it ended;
    /// notes whether the journal can be written.
    pub(crate) fn record(&self, op_kind: Option<&str>, d: &Decision) {
        match d {
            Decision::Refused {
                reason: steward_gate::GateReason::Journal,
                detail,
                ..
            } => {
                let mut st = self.status();
                if st.journal_error.is_none() {
                    tracing::error!(target: "audit", error = %detail, "journal writes fail: no action starts until they succeed again");
                }
                st.journal_error = Some(detail.clone());
            }
            Decision::Executed { .. }
            | Decision::PendingSignature { .. }
            | Decision::PartlyApproved { .. } => {
                let mut st = self.status();
                if st.journal_error.take().is_some() {
                    tracing::info!(target: "audit", "journal writes succeed again");
                }
            }
            _ => {}
        }
        let label = d.label();
        self.metrics.decision(&label);
        if let Some(kind) = op_kind {
            let outcome = match d {
                Decision::Executed {
                    outcome: steward_gate::Outcome::Failed(f),
                    ..
                } => format!("failed:{}", f.code()),
                Decision::Executed {
                    outcome: steward_gate::Outcome::Moved { .. },
                    ..
                } => "moved".to_string(),
                Decision::Executed { .. } => "succeeded".to_string(),
                _ => label,
            };
            self.metrics.action(kind, &outcome);
        }
    }

    /// Resolves every op the journal holds in flight (see `recover.rs`); the recovered engine
    /// is the only one that runs.
    pub async fn recover(self: &Arc<Self>) -> Result<Recovered, RecoverError> {
        let users: Vec<&str> = [&self.cfg.token_user, &self.cfg.everyday_token_user]
            .into_iter()
            .map(String::as_str)
            .filter(|u| !u.is_empty())
            .collect();
        let (r, waiters) =
            recover::recover(&self.journal, &self.api, &users, self.cfg.task_deadline).await?;
        // Tasks still running are followed in the background; their guests stay busy (their
        // slot is held) until the outcome is recorded.
        // Every task of ours still running on a guest is followed; the guest's slot is held
        // until the last of them is decided.
        let mut by_guest: BTreeMap<Vmid, Vec<_>> = BTreeMap::new();
        for (vmid, w) in waiters {
            by_guest.entry(vmid).or_default().push(w);
        }
        for (vmid, ws) in by_guest {
            let held = self.sched().try_take(vmid, Busy::Recovering);
            let engine = self.clone();
            tokio::spawn(async move {
                for w in ws {
                    let _ = w.await;
                }
                if held {
                    engine.release(vmid, true);
                }
            });
        }
        self.status().recovered = true;
        Ok(Recovered {
            engine: self.clone(),
            recovery: r,
        })
    }

    /// A copy of the status.
    pub fn status_now(&self) -> Status {
        let mut st = self.status().clone();
        st.approval_policy = self.gate.approval_policy().describe();
        st
    }

    /// Records how a call on provider channel `channel` (`desired`, `jobs`, `report`) went.
    pub fn provider_call(&self, channel: &'static str, outcome: Result<(), &str>) {
        let now = now_ms();
        let (failures, last) = {
            let mut st = self.status();
            let h = st.provider.entry(channel.to_string()).or_default();
            match outcome {
                Ok(()) => {
                    h.last_success_ms = Some(now);
                    h.last_error = None;
                    h.consecutive_failures = 0;
                }
                Err(why) => {
                    h.last_error = Some(steward_authz::escape_controls(why));
                    h.consecutive_failures += 1;
                }
            }
            (
                h.consecutive_failures,
                h.last_success_ms.unwrap_or(0) / 1000,
            )
        };
        self.metrics.provider(channel, failures, last);
    }

    /// Replaces the desired state (a provider's last good document). Guests whose spec
    /// changed are planned again at once, parked or not.
    pub fn set_desired(&self, d: Arc<DesiredState>) {
        let old = std::mem::replace(
            &mut *self.desired.lock().unwrap_or_else(|e| e.into_inner()),
            d.clone(),
        );
        let before: BTreeMap<Vmid, &steward_model::GuestSpec> =
            old.guests.iter().map(|g| (g.vmid, g)).collect();
        let mut sched = self.sched();
        sched.set_managed(d.guests.iter().map(|g| g.vmid).collect());
        for g in &d.guests {
            if before.get(&g.vmid) != Some(&g) {
                sched.spec_changed(g.vmid);
            }
        }
    }

    /// How many slots the engine keeps for guests nobody manages (for tests: made-up VMIDs
    /// must leave none).
    #[doc(hidden)]
    pub fn guest_locks_kept(&self) -> usize {
        self.sched().unmanaged_kept()
    }

    /// One journal op by id (the local API's `GET /ops/{id}`).
    pub async fn op(&self, id: OpId) -> Option<steward_journal::OpRecord> {
        blocking::journal(&self.journal, move |j| j.get(id))
            .await
            .ok()
            .flatten()
    }

    /// Logs the audit chain's head (target `audit`) when it moved and an hour has passed since
    /// it was last logged, and at the first pass: the log is one of the places a head is
    /// witnessed, so a later rewrite of the chain on this node is detectable.
    pub(crate) fn witness(&self, head: Option<&steward_view::AuditHead>) {
        use std::sync::atomic::Ordering;
        let Some(h) = head else { return };
        let now = now_ms();
        let last = self.head_logged_ms.load(Ordering::Relaxed);
        if last != 0 && now - last < 3_600_000 {
            return;
        }
        self.head_logged_ms.store(now, Ordering::Relaxed);
        tracing::info!(target: "audit", seq = h.seq, hash = %h.hash, head = %h, "audit chain head");
    }

    /// Up to `limit` audit entries from sequence number `since` on, exactly as the journal
    /// holds them (`steward-agent audit export`).
    pub async fn audit_entries(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<steward_journal::AuditEntry>, steward_journal::JournalError> {
        blocking::journal(&self.journal, move |j| j.audit_entries(since, limit)).await
    }

    /// Held ops with their summaries, from the newest snapshot and what the observer read of
    /// each held destroy's extra volumes (none until the pass after it was held). Reads nothing
    /// from the node.
    pub async fn held(&self) -> Vec<HeldOp> {
        let held = blocking::journal(&self.journal, |j| j.held())
            .await
            .unwrap_or_default();
        let snap = self.snapshot();
        let extras = self
            .held_extras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let policy = self.gate.approval_policy();
        let now = OffsetDateTime::now_utc();
        held.iter()
            .filter_map(|r| {
                let needs = policy.threshold(r.action.op_kind(), steward_authz::Role::Operational);
                let approved = self.gate.approvals_in_force(r, now);
                let extra = extras.get(&r.id).map_or(&[][..], Vec::as_slice);
                held::held_op(r, &snap, needs, &approved, extra)
            })
            .collect()
    }

    /// Observation requests and config reads of one pass without acting (for the bench).
    pub async fn observe_once(&self) -> Option<PassReport> {
        let managed: BTreeSet<Vmid> = self
            .desired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .guests
            .iter()
            .map(|g| g.vmid)
            .collect();
        let mut obs = self.observer.lock().await;
        let (busy, dirty) = {
            let sched = self.sched();
            (sched.busy_guests(), sched.stale_guests())
        };
        let r = obs
            .pass(&managed, &busy, &dirty, self.cfg.interval)
            .await
            .ok()?;
        self.snapshot.send_replace(obs.snapshot().clone());
        Some(r)
    }

    /// The identity of `vmid` as last observed.
    pub async fn observed_identity(&self, vmid: Vmid) -> Option<String> {
        self.snapshot()
            .guests
            .get(&vmid)
            .and_then(|o| o.identity.clone())
    }
}

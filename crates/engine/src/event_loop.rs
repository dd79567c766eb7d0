//! The reconcile loop. [`Looper::next_event`] only turns its sources (the pass timer, a guest
//! coming due, a new desired state, an action that ended, a slot a signed op or a recovered
//! task released, "reconcile now", shutdown) into one closed [`Event`]; [`Looper::handle_event`]
//! decides. A pass observes (constant cost), then plans again only the guests whose snapshot
//! entry or desired spec moved; after every event the guests whose turn it is are handed to the
//! gate, at most `concurrency` at once, each from the newest snapshot.
//!
//! Passes that action ends ask for are coalesced: one runs a moment after the first end that
//! asked (so ends close together share it) and no sooner than a gap after the last pass began
//! (at least 250 ms, and four times what the last pass took, so observing stays a small share
//! of the work at any N). Meanwhile a freed slot goes at once to another guest whose next step
//! the snapshot already answers, so the node stays busy while the ended guest waits for its
//! re-read. Level-triggered: a lost wake-up only delays.
//! It must never act on a guest that something else holds, nor plan a guest from a snapshot
//! taken before its last action ended (a guest is stale until a pass that began after the end
//! read it or found it gone).

use crate::engine::{now_ms, Engine, Released, Trigger};
use crate::held;
use crate::observe::{PassReport, Snapshot};
use crate::policy::{self, ParkReason, Requeue};
use crate::reconcile::{reconcile, Step};
use crate::schedule::{Busy, Planned};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use steward_gate::{Decision, Submission};
use steward_journal::OpState;
use steward_metrics::GuestCounts;
use steward_model::{DesiredState, Vmid};
use steward_view::{Elsewhere, Parked};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long after an action end its pass waits for others ending close by.
const SETTLE: Duration = Duration::from_millis(10);
/// The least time between the starts of two passes that action ends asked for.
const MIN_GAP: Duration = Duration::from_millis(250);

/// Why a pass runs (logged and counted, never passed to reconcile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PassReason {
    /// The interval passed.
    Tick,
    /// A new desired state.
    Desired,
    /// Someone asked.
    ReconcileNow,
    /// An action or a signed op ended: its guest must be re-read.
    Ended,
}

impl PassReason {
    fn label(self) -> &'static str {
        match self {
            PassReason::Tick => "tick",
            PassReason::Desired => "desired",
            PassReason::ReconcileNow => "reconcile_now",
            PassReason::Ended => "action_ended",
        }
    }
}

/// Everything that wakes the loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// A pass is due.
    Pass(PassReason),
    /// A guest's backoff ran out.
    Due,
    /// A new desired state.
    Desired(Arc<DesiredState>),
    /// An action the loop started ended (Err: its task panicked).
    ActionEnded(Vmid, Result<Decision, String>),
    /// A signed op or a recovered task released a guest.
    Released(Released),
    /// Shut down: refuse new work, drain.
    Shutdown,
}

/// The loop's own state.
pub(crate) struct Looper {
    engine: Arc<Engine>,
    triggers: mpsc::UnboundedReceiver<Trigger>,
    triggers_open: bool,
    released: mpsc::UnboundedReceiver<Released>,
    shutdown: watch::Receiver<bool>,
    running: JoinSet<(Vmid, Decision)>,
    tasks: BTreeMap<tokio::task::Id, Vmid>,
    next_tick: Instant,
    asked: Option<(Instant, PassReason)>,
    last_pass: Instant,
    last_pass_took: Duration,
}

/// Runs the loop until shutdown, then drains actions in flight up to `drain`.
pub(crate) async fn run(
    engine: Arc<Engine>,
    triggers: mpsc::UnboundedReceiver<Trigger>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let released = engine
        .released_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(released) = released else {
        tracing::error!("the engine's loop runs once; a second run returns at once");
        return;
    };
    let now = Instant::now();
    let mut l = Looper {
        engine,
        triggers,
        triggers_open: true,
        released,
        shutdown,
        running: JoinSet::new(),
        tasks: BTreeMap::new(),
        next_tick: now,
        asked: None,
        last_pass: now,
        last_pass_took: Duration::ZERO,
    };
    loop {
        match l.next_event().await {
            Event::Shutdown => break,
            e => l.handle_event(e).await,
        }
    }
    let deadline = Instant::now() + drain;
    while !l.running.is_empty() {
        match tokio::time::timeout_at(deadline, l.running.join_next_with_id()).await {
            Err(_) => {
                tracing::warn!(
                    left = l.running.len(),
                    "shutdown: actions still in flight after the drain deadline"
                );
                break;
            }
            // Each guest is let go as its action ends, so a signed op waiting for it is not
            // kept past the drain.
            Ok(done) => {
                let vmid = match done {
                    Some(Ok((id, (vmid, _)))) => l.tasks.remove(&id).or(Some(vmid)),
                    Some(Err(e)) => l.tasks.remove(&e.id()),
                    None => None,
                };
                if let Some(v) = vmid {
                    l.engine.sched().release(v, true);
                    l.engine.freed.notify_waiters();
                }
            }
        }
    }
}

impl Looper {
    /// Asks for a pass at `at` (an earlier ask wins).
    fn ask(&mut self, at: Instant, why: PassReason) {
        match self.asked {
            Some((t, _)) if t <= at => {}
            _ => self.asked = Some((at, why)),
        }
    }

    /// The pass an action end asks for: after the settle time and the gap.
    fn ask_after_end(&mut self) {
        let gap = MIN_GAP.max(self.last_pass_took * 4);
        let at = (Instant::now() + SETTLE).max(self.last_pass + gap);
        self.ask(at, PassReason::Ended);
    }

    async fn next_event(&mut self) -> Event {
        loop {
            let now = Instant::now();
            let (pass_at, reason) = match self.asked {
                Some((t, why)) if t < self.next_tick => (t, why),
                _ => (self.next_tick, PassReason::Tick),
            };
            let room = self.running.len() < self.engine.cfg.concurrency;
            let due = room
                .then(|| self.engine.sched().soonest(now))
                .flatten()
                .filter(|d| *d < pass_at);
            let wake = due.unwrap_or(pass_at);
            tokio::select! {
                biased;
                r = self.shutdown.changed() => {
                    if r.is_err() || *self.shutdown.borrow() {
                        return Event::Shutdown;
                    }
                }
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    return match done {
                        Ok((id, (vmid, d))) => {
                            self.tasks.remove(&id);
                            Event::ActionEnded(vmid, Ok(d))
                        }
                        Err(e) => match self.tasks.remove(&e.id()) {
                            Some(vmid) => Event::ActionEnded(vmid, Err(e.to_string())),
                            None => continue,
                        },
                    };
                }
                Some(r) = self.released.recv() => return Event::Released(r),
                t = self.triggers.recv(), if self.triggers_open => match t {
                    Some(Trigger::Desired(d)) => return Event::Desired(d),
                    Some(Trigger::ReconcileNow) => {
                        // Asked for at once, but never closer than the gap to the last pass:
                        // a busy script must not run passes back to back against pveproxy.
                        let at = Instant::now().max(self.last_pass + MIN_GAP);
                        self.ask(at, PassReason::ReconcileNow);
                    }
                    None => self.triggers_open = false,
                },
                _ = tokio::time::sleep_until(wake) => {
                    return if due.is_some() { Event::Due } else { Event::Pass(reason) };
                }
            }
        }
    }

    async fn handle_event(&mut self, event: Event) {
        match event {
            Event::Pass(why) => self.pass(why).await,
            Event::Due => {}
            Event::Desired(d) => {
                tracing::info!(reason = "desired", guests = d.guests.len(), "pass");
                self.engine.set_desired(d);
                self.ask(Instant::now(), PassReason::Desired);
            }
            Event::ActionEnded(vmid, result) => {
                {
                    let mut sched = self.engine.sched();
                    let requeue = match &result {
                        Ok(d) => policy::requeue(d, &mut sched.slot(vmid).backoff),
                        // A task that panicked must not leave its guest in flight for ever.
                        Err(e) => Requeue::Park(ParkReason::Internal {
                            detail: steward_authz::escape_controls(e),
                        }),
                    };
                    sched.requeue(vmid, requeue);
                    sched.release(vmid, true);
                }
                if let Ok(d) = &result {
                    tracing::debug!(%vmid, decision = %d.label(), "action ended");
                }
                self.engine.freed.notify_waiters();
                self.ask_after_end();
            }
            Event::Released(r) => {
                tracing::debug!(vmid = %r.vmid, ran = r.ran, "a signed op or a recovered task let go of a guest");
                if r.ran {
                    self.ask_after_end();
                }
            }
            Event::Shutdown => return,
        }
        if Instant::now() >= self.next_tick {
            self.pass(PassReason::Tick).await;
        }
        self.dispatch();
    }

    /// Observe, then plan again the guests whose snapshot entry or spec moved.
    async fn pass(&mut self, why: PassReason) {
        let started = Instant::now();
        self.asked = None;
        self.last_pass = started;
        self.next_tick = started + self.engine.cfg.interval;
        self.engine.metrics().pass_reason(why.label());
        let desired = self
            .engine
            .desired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let managed: BTreeSet<Vmid> = desired.guests.iter().map(|g| g.vmid).collect();
        let report = {
            let mut obs = self.engine.observer.lock().await;
            let (busy, dirty) = {
                let sched = self.engine.sched();
                (sched.busy_guests(), sched.stale_guests())
            };
            let r = obs
                .pass(&managed, &busy, &dirty, self.engine.cfg.interval)
                .await;
            if r.is_ok() {
                self.engine.snapshot.send_replace(obs.snapshot().clone());
            }
            r
        };
        let (report, held) = match report {
            Ok(r) => {
                let held = self.after_observation(&r).await;
                self.engine.sched().observed(started, &r.read, &r.listed);
                (Some(r), Some(held))
            }
            Err(e) => {
                tracing::warn!(error = %e, "observation failed; next pass will try again");
                self.engine.status().last_error = Some(e.to_string());
                (None, None)
            }
        };
        self.plan(&desired);
        self.count(&desired, report.as_ref(), held).await;
        self.last_pass_took = started.elapsed();
    }

    /// Housekeeping an observation drives: forget provenance of vanished VMIDs, supersede held
    /// ops whose guest changed (spending their templates' nonces). Returns how many ops are
    /// still held.
    async fn after_observation(&self, report: &PassReport) -> usize {
        let journal = &self.engine.journal;
        for v in &report.vanished {
            let vmid = *v;
            if let Err(e) =
                crate::blocking::journal(journal, move |j| j.forget_provenance(vmid)).await
            {
                tracing::warn!(guest = %v, error = %e, "provenance of a vanished guest not forgotten");
            }
        }
        let snap = self.engine.snapshot();
        let held = crate::blocking::journal(journal, |j| j.held())
            .await
            .unwrap_or_default();
        self.read_extras(&held, &snap).await;
        let mut still = held.len();
        for rec in held {
            let Some(why) = held::superseded(&rec, &snap) else {
                continue;
            };
            let to = OpState::Refused {
                code: steward_gate::GateReason::Superseded,
                detail: why.clone(),
            };
            let id = rec.id;
            // Its template's nonce is spent with it: once retention forgets the op, a
            // withheld signature over the template is still a replay, never a job.
            let spent = held::template_nonce(&rec);
            if crate::blocking::journal(journal, move |j| {
                j.transition(id, to)?;
                if let Some((nonce, keep_until)) = spent {
                    steward_authz::NonceStore::consume(j, &nonce, keep_until)
                        .map_err(|e| steward_journal::JournalError::Storage(e.0))?;
                }
                Ok::<(), steward_journal::JournalError>(())
            })
            .await
            .is_ok()
            {
                still -= 1;
                tracing::info!(target: "audit", op = %rec.id, guest = %rec.guest, why = %why, "held op superseded");
            }
        }
        still
    }

    /// What each held destroy removes beyond its config, read once per op (its guest's config
    /// must have been read first: until then nothing can be told apart).
    async fn read_extras(
        &self,
        held: &[steward_journal::OpRecord],
        snap: &crate::observe::Snapshot,
    ) {
        let wanted: Vec<&steward_journal::OpRecord> = {
            let mut known = self
                .engine
                .held_extras
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            known.retain(|op, _| held.iter().any(|r| r.id == *op));
            held.iter()
                .filter(|r| matches!(r.action, steward_model::Action::Destroy { .. }))
                .filter(|r| !known.contains_key(&r.id))
                .collect()
        };
        for r in wanted {
            let Some(config) = snap.actual(r.guest).map(|a| a.config.clone()) else {
                continue;
            };
            let found = self
                .engine
                .observer
                .lock()
                .await
                .destroy_extras(&r.action, &config)
                .await;
            self.engine
                .held_extras
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(r.id, found);
        }
    }

    /// Plans again every managed guest whose snapshot entry or desired spec moved since its
    /// last plan; a parked guest whose inputs moved is unparked.
    fn plan(&self, desired: &DesiredState) {
        let snap = self.engine.snapshot();
        let specs: BTreeMap<Vmid, &steward_model::GuestSpec> =
            desired.guests.iter().map(|g| (g.vmid, g)).collect();
        let mut sched = self.engine.sched();
        for (vmid, slot) in sched.managed_slots() {
            let Some(spec) = specs.get(&vmid) else {
                continue;
            };
            let observed = observed_version(&snap, vmid);
            if slot
                .planned
                .as_ref()
                .is_some_and(|p| p.observed == observed && p.spec == slot.spec)
            {
                continue;
            }
            if slot.planned.is_some() && slot.parked.is_some() {
                slot.parked = None;
                slot.due = Instant::now();
            }
            let step = reconcile(&snap, vmid, spec);
            if matches!(step, Step::Converged) {
                slot.backoff.reset();
            }
            slot.planned = Some(Planned {
                observed,
                spec: slot.spec,
                step,
            });
        }
    }

    /// Hands the guests whose turn it is to the gate, up to the concurrency limit; nothing
    /// while the node has no quorum (every write would fail: observation goes on, and writes
    /// resume with the first pass that finds quorum back).
    fn dispatch(&mut self) {
        if self.engine.snapshot().no_quorum {
            return;
        }
        let now = Instant::now();
        let ready = self.engine.sched().ready(now);
        for vmid in ready {
            if self.running.len() >= self.engine.cfg.concurrency {
                return;
            }
            let mut sched = self.engine.sched();
            let slot = sched.slot(vmid);
            let Some(step) = slot.planned.as_ref().map(|p| p.step.clone()) else {
                continue;
            };
            let (action, identity) = match step {
                Step::Act { action, identity } => (action, identity),
                Step::Locked { lock, task_running } => {
                    let r = policy::locked(&lock, task_running, &mut slot.backoff);
                    sched.requeue(vmid, r);
                    continue;
                }
                Step::Unsatisfiable { why } => {
                    let detail = steward_authz::escape_controls(&why);
                    tracing::warn!(guest = %vmid, %detail, "the desired state asks what cannot be done: parked");
                    sched.requeue(vmid, Requeue::Park(ParkReason::Unsatisfiable { detail }));
                    continue;
                }
                Step::WaitingForHa { hastate } => {
                    let hastate = steward_authz::escape_controls(&hastate);
                    tracing::debug!(guest = %vmid, %hastate, "power left to ha-manager");
                    continue;
                }
                Step::Converged | Step::Unread | Step::Elsewhere { .. } => continue,
            };
            let action = match crate::identity::with_identity(action) {
                Ok(a) => a,
                Err(why) => {
                    sched.requeue(vmid, Requeue::Park(ParkReason::Internal { detail: why }));
                    continue;
                }
            };
            if !sched.try_take(vmid, Busy::Action) {
                continue;
            }
            drop(sched);
            let sub = Submission {
                identity,
                ..Submission::default()
            };
            let engine = self.engine.clone();
            let handle = self.running.spawn(async move {
                let kind = action.op_kind();
                let d = engine
                    .gate
                    .submit(action, sub, OffsetDateTime::now_utc())
                    .await;
                engine.record(Some(kind), &d);
                (vmid, d)
            });
            self.tasks.insert(handle.id(), vmid);
        }
    }

    /// Status and metrics after a pass.
    /// `held`: the ops still held, when the observation already read them.
    async fn count(
        &self,
        desired: &DesiredState,
        report: Option<&PassReport>,
        held: Option<usize>,
    ) {
        // The held ops themselves (from the journal's held index), one metric series each:
        // where they reach operators when no hub hears reports.
        let listed = crate::blocking::journal(&self.engine.journal, |j| j.held())
            .await
            .ok();
        if let Some(ops) = &listed {
            let series: Vec<(u64, u32, &str)> = ops
                .iter()
                .map(|r| (r.id.0, r.guest.get(), r.action.op_kind()))
                .collect();
            self.engine.metrics().held_ops(&series);
        }
        let held = listed.as_ref().map(Vec::len).or(held).unwrap_or(0);
        let (converged, drifting, elsewhere, parked) = {
            let mut sched = self.engine.sched();
            let (mut c, mut d, mut e) = (0, 0, Vec::new());
            for (vmid, slot) in sched.managed_slots() {
                match slot.planned.as_ref().map(|p| &p.step) {
                    Some(Step::Converged) => c += 1,
                    Some(Step::Elsewhere { node }) => e.push(Elsewhere {
                        vmid: vmid.get(),
                        node: node.clone(),
                    }),
                    Some(s) if s.drifting() => d += 1,
                    _ => {}
                }
            }
            (c, d, e, sched.parked())
        };
        let no_quorum = self.engine.snapshot().no_quorum;
        self.engine.metrics().cluster(!no_quorum, elsewhere.len());
        let mut by_reason: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (_, p) in &parked {
            *by_reason.entry(p.code()).or_default() += 1;
        }
        self.engine.metrics().parked(&by_reason);
        self.engine.metrics().pass(
            GuestCounts {
                managed: desired.guests.len(),
                converged,
                drifting,
                parked: parked.len(),
            },
            held,
            self.running.len(),
        );
        let head = crate::blocking::journal(&self.engine.journal, |j| j.audit_head())
            .await
            .ok()
            .flatten()
            .map(|(seq, hash)| steward_view::AuditHead { seq, hash });
        self.engine.witness(head.as_ref());
        let mut st = self.engine.status();
        if head.is_some() {
            st.audit_head = head;
        }
        st.passes += 1;
        st.last_pass_ms = now_ms();
        st.managed = desired.guests.len();
        st.converged = converged;
        st.drifting = drifting;
        st.in_flight = self.running.len();
        st.held = held;
        st.elsewhere = elsewhere;
        st.no_quorum = no_quorum;
        st.parked = parked
            .into_iter()
            .map(|(v, p)| Parked {
                vmid: v.get(),
                reason: p.code().to_string(),
                why: p.to_string(),
            })
            .collect();
        if let Some(r) = report {
            st.observe_requests += r.requests;
            st.last_error = None;
        }
    }
}

/// What a guest's plan depends on in the snapshot: its version when it is here, a value of
/// the node holding it when it lives elsewhere (a guest that migrates away, or back, is planned
/// again), 0 when the cluster has no such VMID.
fn observed_version(snap: &Snapshot, vmid: Vmid) -> u64 {
    use std::hash::{Hash, Hasher};
    match (snap.guests.get(&vmid), snap.elsewhere.get(&vmid)) {
        (Some(o), _) => o.version,
        (None, Some(node)) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            node.hash(&mut h);
            h.finish() | (1 << 63)
        }
        (None, None) => 0,
    }
}

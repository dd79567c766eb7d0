//! The feed: the loops between a provider and the engine, one per channel so that none waits on
//! another. Every tick one asks the provider for a new desired state, one for signed jobs
//! (each presented to the engine, which takes it through the gate), and one reports the
//! engine's status, its held ops and the jobs' decisions back. How each channel's calls go is
//! the provider's health in the engine's status and metrics. It must never decide anything itself: a job is only ever presented, and a refused
//! document or an unreachable provider leaves the last good desired state in force.

use crate::decision_view::ToView;
use crate::engine::{Engine, Trigger};
use std::sync::Arc;
use std::time::Duration;
use steward_gate::{Decision, Presented};
use steward_providers::{Job, JobResult, Provider, Report, Update};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How often the feed asks and reports, and for which node.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// Between polls.
    pub every: Duration,
    /// At least this often a report goes out even when no job was decided.
    pub report_every: Duration,
    /// This node's name: of a document that places guests on nodes, only the guests placed
    /// here (or nowhere) are taken.
    pub node: String,
    /// Whether to report at all (no, for a hub that is a plain web server).
    pub reports: bool,
}

/// Results kept for a provider that cannot be told (oldest dropped first).
const MAX_UNREPORTED: usize = 1024;

/// The most of a provider's refusal text that reaches the log.
const MAX_LOGGED: usize = 2048;

/// Provider text for the log: control characters escaped (no forged lines), length bounded.
fn loggable(text: &str) -> String {
    let mut out = steward_authz::escape_controls(text);
    if out.len() > MAX_LOGGED {
        let cut = (0..=MAX_LOGGED)
            .rev()
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(0);
        let more = out.len() - cut;
        out.truncate(cut);
        out.push_str(&format!("… ({more} more bytes)"));
    }
    out
}

/// Presents `job` with all its signatures at once: they are counted together against the op's
/// m-of-n policy, and a bad one among them is reported and counts for nothing (it does not
/// stop a good one).
async fn run_job(engine: &Engine, job: &Job) -> Presented {
    if job.signatures.is_empty() {
        return Presented::unsigned(Decision::Refused {
            op: None,
            reason: steward_gate::GateReason::Authz(steward_authz::Reason::MalformedSignature),
            detail: "the job carries no signature".into(),
        });
    }
    let sigs: Vec<Vec<u8>> = job
        .signatures
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    engine.present(job.payload.as_bytes(), &sigs).await
}

/// The provider's three channels, one provider each (the same source, opened three times), so
/// that none waits on another: a hung desired-state poll neither delays a signed job nor the
/// report that tells operators what is held.
pub struct Channels {
    /// Polled for desired state.
    pub desired: Box<dyn Provider>,
    /// Asked for signed jobs.
    pub jobs: Box<dyn Provider>,
    /// Told the status, held ops and job results.
    pub report: Box<dyn Provider>,
}

/// Job results not yet reported, shared by the jobs and report loops.
#[derive(Default)]
struct Unreported {
    results: std::sync::Mutex<Vec<JobResult>>,
    wake: tokio::sync::Notify,
}

impl Unreported {
    fn push(&self, r: JobResult) {
        let mut all = self.results.lock().unwrap_or_else(|e| e.into_inner());
        all.push(r);
        if all.len() > MAX_UNREPORTED {
            let extra = all.len() - MAX_UNREPORTED;
            all.drain(..extra);
        }
    }

    fn snapshot(&self) -> Vec<JobResult> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the first `n` (those a report delivered).
    fn delivered(&self, n: usize) {
        let mut all = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(all.len());
        all.drain(..n);
    }
}

/// Waits for the next tick, or returns true when `shutdown` turned true.
async fn next_tick(tick: &mut tokio::time::Interval, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tick.tick() => *shutdown.borrow(),
        _ = shutdown.changed() => *shutdown.borrow(),
    }
}

fn interval(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Runs until `shutdown` turns true: the three channels as three loops.
pub async fn feed(
    engine: Arc<Engine>,
    channels: Channels,
    triggers: mpsc::UnboundedSender<Trigger>,
    shutdown: watch::Receiver<bool>,
    cfg: FeedConfig,
) {
    let unreported = Arc::new(Unreported::default());
    let _ = tokio::join!(
        desired_loop(
            engine.clone(),
            channels.desired,
            triggers.clone(),
            shutdown.clone(),
            cfg.clone()
        ),
        jobs_loop(
            engine.clone(),
            channels.jobs,
            triggers,
            shutdown.clone(),
            cfg.clone(),
            unreported.clone()
        ),
        report_loop(engine, channels.report, shutdown, cfg, unreported),
    );
}

async fn desired_loop(
    engine: Arc<Engine>,
    mut provider: Box<dyn Provider>,
    triggers: mpsc::UnboundedSender<Trigger>,
    mut shutdown: watch::Receiver<bool>,
    cfg: FeedConfig,
) {
    let source = provider.describe();
    let mut tick = interval(cfg.every);
    let mut last_trouble: Option<String> = None;
    while !next_tick(&mut tick, &mut shutdown).await {
        let polled = tokio::select! {
            u = provider.poll() => u,
            _ = shutdown.changed() => return,
        };
        match polled {
            Update::New(d) => {
                let mine = d.for_node(&cfg.node);
                let elsewhere = d.guests.len() - mine.guests.len();
                let d = Arc::new(mine);
                tracing::info!(%source, generation = d.generation, guests = d.guests.len(), elsewhere, "new desired state");
                last_trouble = None;
                engine.provider_call("desired", Ok(()));
                let _ = triggers.send(Trigger::Desired(d));
            }
            Update::Refused(why) => {
                // The provider answered; what it said is refused (the last good state stays).
                engine.provider_call("desired", Ok(()));
                let why = loggable(&why);
                tracing::warn!(%source, %why, "desired state refused; the last good one stays in force");
            }
            Update::Unavailable(why) => {
                engine.provider_call("desired", Err(&loggable(&why)));
                // Said once per distinct trouble, not every tick.
                if last_trouble.as_deref() != Some(why.as_str()) {
                    let shown = loggable(&why);
                    tracing::warn!(%source, why = %shown, "provider unavailable; the last good desired state stays in force");
                    last_trouble = Some(why);
                }
            }
            Update::Unchanged => engine.provider_call("desired", Ok(())),
        }
    }
}

async fn jobs_loop(
    engine: Arc<Engine>,
    mut provider: Box<dyn Provider>,
    triggers: mpsc::UnboundedSender<Trigger>,
    mut shutdown: watch::Receiver<bool>,
    cfg: FeedConfig,
    unreported: Arc<Unreported>,
) {
    let source = provider.describe();
    let mut tick = interval(cfg.every);
    let mut last_trouble: Option<String> = None;
    while !next_tick(&mut tick, &mut shutdown).await {
        let fetched = tokio::select! {
            j = provider.jobs() => j,
            _ = shutdown.changed() => return,
        };
        match fetched {
            Ok(jobs) => {
                last_trouble = None;
                engine.provider_call("jobs", Ok(()));
                for job in &jobs {
                    // Shutdown stops new presentations; the one in progress finishes.
                    if *shutdown.borrow() {
                        return;
                    }
                    let p = run_job(&engine, job).await;
                    tracing::info!(target: "audit", %source, job = %loggable(&job.id), decision = %p.decision.label(), signatures = job.signatures.len(), "signed job presented");
                    unreported.push(JobResult {
                        job: job.id.clone(),
                        decision: p.view(),
                    });
                }
                if !jobs.is_empty() {
                    unreported.wake.notify_one();
                    let _ = triggers.send(Trigger::ReconcileNow);
                }
            }
            Err(why) => {
                engine.provider_call("jobs", Err(&loggable(&why)));
                if last_trouble.as_deref() != Some(why.as_str()) {
                    let shown = loggable(&why);
                    tracing::warn!(%source, why = %shown, "signed jobs could not be fetched");
                    last_trouble = Some(why);
                }
            }
        }
    }
}

async fn report_loop(
    engine: Arc<Engine>,
    mut provider: Box<dyn Provider>,
    mut shutdown: watch::Receiver<bool>,
    cfg: FeedConfig,
    unreported: Arc<Unreported>,
) {
    let source = provider.describe();
    if !cfg.reports {
        tracing::info!(%source, "reports are off: held ops reach operators through `steward-agent pending` and the steward_held_op metric");
        return;
    }
    let mut tick = interval(cfg.every);
    let mut last_report: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = unreported.wake.notified() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let results = unreported.snapshot();
        let due = last_report.is_none_or(|t| t.elapsed() >= cfg.report_every);
        if results.is_empty() && !due {
            continue;
        }
        let report = Report {
            status: engine.status_now(),
            held: engine.held().await,
            results,
        };
        let sent = tokio::select! {
            r = provider.report(&report) => r,
            _ = shutdown.changed() => return,
        };
        match sent {
            Ok(()) => {
                engine.provider_call("report", Ok(()));
                unreported.delivered(report.results.len());
                last_report = Some(Instant::now());
            }
            Err(why) => {
                let shown = loggable(&why);
                engine.provider_call("report", Err(&shown));
                tracing::warn!(%source, why = %shown, "report not delivered; it is sent again next time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn provider_text_cannot_forge_log_lines_or_flood_them() {
        let forged = "bad key\n2026-11-28T20:00:00Z  INFO audit: op 7 executed\r\x1b[2J";
        let shown = loggable(forged);
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\x1b'));
        assert!(shown.contains("bad key"), "{shown}");
        let long = "é".repeat(5000);
        let shown = loggable(&long);
        assert!(
            shown.len() < 2100 && shown.ends_with("more bytes)"),
            "{}",
            shown.len()
        );
    }
}

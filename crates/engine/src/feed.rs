//! The feed: the loop between a provider and the engine. Every tick it asks the provider for a
//! new desired state and for signed jobs, presents each job to the engine (which takes it
//! through the gate), and reports the engine's status, its held ops and the jobs' decisions
//! back. It must never decide anything itself: a job is only ever presented, and a refused
//! document or an unreachable provider leaves the last good desired state in force.

use crate::decision_view::DecisionView;
use crate::engine::{Engine, Trigger};
use std::sync::Arc;
use std::time::Duration;
use steward_gate::{Decision, Presented};
use steward_providers::{Job, JobResult, Provider, Report, Update};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How often the feed asks and reports.
#[derive(Clone, Copy, Debug)]
pub struct FeedConfig {
    /// Between polls.
    pub every: Duration,
    /// At least this often a report goes out even when no job was decided.
    pub report_every: Duration,
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
    engine.present_all(job.payload.as_bytes(), &sigs).await
}

/// Runs until `shutdown` turns true (checked between ticks and before each job).
pub async fn feed(
    engine: Arc<Engine>,
    mut provider: Box<dyn Provider>,
    triggers: mpsc::UnboundedSender<Trigger>,
    mut shutdown: watch::Receiver<bool>,
    cfg: FeedConfig,
) {
    let source = provider.describe();
    let mut tick = tokio::time::interval(cfg.every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut results: Vec<JobResult> = Vec::new();
    let mut last_report: Option<Instant> = None;
    let mut last_trouble: Option<String> = None;
    let mut last_jobs_trouble: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
        match provider.poll().await {
            Update::New(d) => {
                tracing::info!(%source, generation = d.generation, guests = d.guests.len(), "new desired state");
                last_trouble = None;
                let _ = triggers.send(Trigger::Desired(d));
            }
            Update::Refused(why) => {
                let why = loggable(&why);
                tracing::warn!(%source, %why, "desired state refused; the last good one stays in force");
            }
            Update::Unavailable(why) => {
                // Said once per distinct trouble, not every tick.
                if last_trouble.as_deref() != Some(why.as_str()) {
                    let shown = loggable(&why);
                    tracing::warn!(%source, why = %shown, "provider unavailable; the last good desired state stays in force");
                    last_trouble = Some(why);
                }
            }
            Update::Unchanged => {}
        }
        match provider.jobs().await {
            Ok(jobs) => {
                last_jobs_trouble = None;
                for job in &jobs {
                    // Shutdown stops new presentations; the one in progress finishes.
                    if *shutdown.borrow() {
                        return;
                    }
                    let p = run_job(&engine, job).await;
                    tracing::info!(target: "audit", %source, job = %loggable(&job.id), decision = %p.decision.label(), signatures = job.signatures.len(), "signed job presented");
                    results.push(JobResult {
                        job: job.id.clone(),
                        decision: serde_json::json!(DecisionView::from(&p)),
                    });
                }
                if !jobs.is_empty() {
                    let _ = triggers.send(Trigger::ReconcileNow);
                }
            }
            Err(why) => {
                if last_jobs_trouble.as_deref() != Some(why.as_str()) {
                    let shown = loggable(&why);
                    tracing::warn!(%source, why = %shown, "signed jobs could not be fetched");
                    last_jobs_trouble = Some(why);
                }
            }
        }
        if results.len() > MAX_UNREPORTED {
            let extra = results.len() - MAX_UNREPORTED;
            results.drain(..extra);
        }
        let due = last_report.is_none_or(|t| t.elapsed() >= cfg.report_every);
        if results.is_empty() && !due {
            continue;
        }
        let report = Report {
            status: serde_json::json!(engine.status_now()),
            held: serde_json::json!(engine.held().await),
            results: results.clone(),
        };
        match provider.report(&report).await {
            Ok(()) => {
                results.clear();
                last_report = Some(Instant::now());
            }
            Err(why) => {
                tracing::warn!(%source, %why, "report not delivered; it is sent again next time")
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

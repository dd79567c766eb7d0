//! The daemon, built in a fixed order: configuration (already checked) → provider → journal →
//! trust store (missing or invalid: nothing destructive can ever execute, said loudly) → API
//! clients → gate and engine → recovery of whatever a crash left in flight → local API and
//! metrics → the provider's feed and the reconcile loop until SIGTERM or SIGINT, when new
//! actions stop and those in flight get a bounded time to record their outcome. systemd (`Type=notify`) hears `READY=1` once recovery is done and the local API
//! listens, `STOPPING=1` at the signal, and watchdog pings while the runtime is alive.
//! It must never mutate the node before recovery, nor signal readiness before the local API listens.

use crate::config::Settings;
use crate::systemd;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_control::ApiOptions;
use steward_engine::{Engine, EngineConfig, FeedConfig, NodeExecutor};
use steward_gate::{Gate, GateConfig};
use steward_journal::{BarrierHook, Journal};
use steward_metrics::Metrics;
use steward_proxmox_client::{PveClient, PveWriter, RequestHook};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// How long in-flight actions get to finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(30);

fn trust_store(cfg: &Settings) -> TrustStore {
    match crate::preflight::trust_store(cfg) {
        Ok(store) => {
            tracing::info!(signers = store.entries().len(), path = %cfg.trust_file.display(), "trust store loaded");
            store
        }
        Err(e) => {
            tracing::error!(
                target: "audit",
                error = %e,
                "NO TRUST STORE: the agent runs, but NOTHING DESTRUCTIVE CAN EXECUTE until a valid allowed_signers file is in place"
            );
            // An empty store admits no signer: every destructive action stays held.
            TrustStore::empty("(no trust store)")
        }
    }
}

/// Runs the daemon until a signal; Ok when it stopped cleanly.
pub async fn run(cfg: Settings) -> Result<()> {
    // Signals first: a SIGTERM during start-up still gets the clean path.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let loose = crate::preflight::trusted_files(&cfg);
    if !loose.is_empty() {
        anyhow::bail!("{}", loose.join("; "));
    }
    // One provider per channel (desired state, jobs, reports): none waits on another.
    let channels = steward_engine::Channels {
        desired: crate::providers::from_config(&cfg)?,
        jobs: crate::providers::from_config(&cfg)?,
        report: crate::providers::from_config(&cfg)?,
    };
    tracing::info!(source = %channels.desired.describe(), "desired state source");
    let metrics = Arc::new(Metrics::new());
    let journal = Arc::new(
        Journal::open_or_create(&cfg.journal.dir)
            .with_context(|| format!("journal {}", cfg.journal.dir.display()))?,
    );
    let m = metrics.clone();
    journal.observe_barriers(BarrierHook(Arc::new(move |took, ok| m.barrier(took, ok))));
    let m = metrics.clone();
    let hook = RequestHook(Arc::new(
        move |method: &str, endpoint: &str, outcome: &str, took| {
            m.request(method, endpoint, outcome, took)
        },
    ));
    let verifier = Verifier::new(trust_store(&cfg), VerifyConfig::new(cfg.node.as_str()))?;
    let (everyday, admin) =
        crate::preflight::tokens(&cfg).map_err(|e| anyhow::anyhow!("{}", e.join("; ")))?;
    let token_user = admin.id().to_string();
    let everyday_token_user = everyday.id().to_string();
    let ep = cfg.proxmox.endpoint.clone();
    let reader = PveClient::new(ep.clone(), everyday.clone(), &cfg.node)
        .map_err(anyhow::Error::msg)?
        .with_hook(hook.clone());
    // Reads only: a guest's disk volumes, which Proxmox lists only to a token with
    // VM.Config.Disk on the guest, for what a held destroy would remove.
    let volume_reader = PveClient::new(ep.clone(), admin.clone(), &cfg.node)
        .map_err(anyhow::Error::msg)?
        .with_hook(hook.clone());
    // Two writers, one per token: the gate picks, per action (`Authority`).
    let everyday_writer = PveWriter::new(ep.clone(), everyday, &cfg.node)
        .map_err(anyhow::Error::msg)?
        .with_hook(hook.clone());
    let admin_writer = PveWriter::new(ep, admin, &cfg.node)
        .map_err(anyhow::Error::msg)?
        .with_hook(hook);
    let deadline = cfg.engine.task_deadline;
    let approval = cfg.approval.clone();
    tracing::info!(policy = ?approval.describe(), "approval policy");
    let gate = Gate::new(
        verifier,
        journal.clone(),
        Box::new(
            NodeExecutor::new(Box::new(everyday_writer), Box::new(admin_writer), deadline)
                .with_metrics(metrics.clone()),
        ),
        GateConfig {
            trust_store_path: Some(cfg.trust_file.clone()),
            approval,
        },
    );
    let engine = Arc::new(
        Engine::new(
            EngineConfig {
                interval: cfg.engine.interval,
                concurrency: cfg.engine.concurrency,
                sweep_period: cfg.engine.sweep,
                task_deadline: deadline,
                conf_dir: cfg.engine.conf_dir.clone(),
                token_user,
                everyday_token_user,
                ..EngineConfig::default()
            },
            Arc::new(reader),
            gate,
            journal.clone(),
        )
        .with_volume_reader(Arc::new(volume_reader))
        .with_metrics(metrics.clone()),
    );
    let recovered = engine.recover().await.context("recovery")?;
    tracing::info!(recovery = ?recovered.recovery, "recovered; reconciling");
    let (triggers, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let metrics_server = match cfg.api.metrics {
        Some(addr) => {
            let (bound, task) =
                steward_control::serve_metrics(addr, metrics.clone(), stopped.clone())
                    .await
                    .with_context(|| format!("metrics address {addr}"))?;
            tracing::info!(%bound, "metrics at http://{bound}/metrics");
            Some((bound, task))
        }
        None => None,
    };
    let opts = ApiOptions {
        group: cfg.api.socket_group.clone(),
        node: cfg.node.clone(),
        metrics_url: metrics_server
            .as_ref()
            .map(|(a, _)| format!("http://{a}/metrics")),
    };
    let api = steward_control::serve(
        &cfg.api.socket,
        opts,
        engine.clone(),
        triggers.clone(),
        stopped.clone(),
    )
    .await
    .with_context(|| format!("local API socket {}", cfg.api.socket.display()))?;
    tracing::info!(socket = %cfg.api.socket.display(), "local API listening");
    systemd::ready(&format!(
        "recovered; reconciling; local API on {}",
        cfg.api.socket.display()
    ));
    let watchdog = systemd::watchdog();
    let loop_task = tokio::spawn(recovered.run(rx, stopped.clone(), DRAIN));
    let keep = cfg.journal.retention;
    let retention = tokio::spawn(steward_engine::retention::run(
        journal.clone(),
        keep,
        // Often enough that a short retention is honoured, at most hourly.
        (keep / 4).clamp(Duration::from_secs(15), Duration::from_secs(3600)),
        stopped.clone(),
    ));
    let feed = tokio::spawn(steward_engine::feed(
        engine.clone(),
        channels,
        triggers.clone(),
        stopped.clone(),
        FeedConfig {
            every: cfg.provider.poll,
            report_every: cfg.provider.report_every,
            node: cfg.node.clone(),
            reports: cfg.provider.reports,
        },
    ));
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping: no new actions; waiting for those in flight");
    systemd::stopping();
    let _ = stop.send(true);
    // The feed finishes the presentation in progress (it starts no other), then the loop
    // drains its actions.
    if tokio::time::timeout(DRAIN, feed).await.is_err() {
        tracing::warn!("shutdown: a signed job was still being presented after the drain deadline");
    }
    loop_task.await?;
    let _ = retention.await;
    api.abort();
    if let Some((_, t)) = metrics_server {
        t.abort();
    }
    if let Some(t) = watchdog {
        t.abort();
    }
    let _ = std::fs::remove_file(&cfg.api.socket);
    tracing::info!(status = ?engine.status_now(), "stopped");
    Ok(())
}

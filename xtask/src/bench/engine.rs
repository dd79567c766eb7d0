//! `cargo xtask bench engine`: the engine against the simulator, figures from one run.
//!
//! - Convergence: N = 200 guests needing create + start, task time L = 200 ms, K = 8: wall time
//!   against the ideal, tasks per guest × ⌈N/K⌉ × L (target ≤ 1.15).
//! - Idle cost: API requests of an idle pass at 10, 100 and 1 000 guests, the sweep excluded
//!   (target ≤ 3, independent of N), and the sweep's own rate at the default settings.
//! - Memory: the resident set of this process (the engine, no simulator: that runs as its own
//!   process) with 1 000 guests managed (target ≤ 30 MiB).
//! - Drift detection: time until an out-of-band edit no list field shows is healed, with and
//!   without the config-file mtime hint.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_engine::{EngineConfig, Trigger};
use steward_journal::Journal;
use steward_lab::RigConfig;
use steward_model::DesiredState;
use steward_pve_sim::{Privileges, Sim, SimConfig, SimToken};

/// One token with every privilege plays both of the agent's: the bench measures the engine,
/// not Proxmox's privileges.
const TOKEN: &str = steward_lab::ADMIN;

/// The lab's rig over a journal of its own.
struct Rig {
    rig: steward_lab::Rig,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Rig {
    type Target = steward_lab::Rig;
    fn deref(&self) -> &steward_lab::Rig {
        &self.rig
    }
}

async fn rig(addr: &str, fingerprint: &str, engine: EngineConfig, run: bool) -> Result<Rig> {
    let dir = tempfile::tempdir()?;
    let journal = Arc::new(Journal::create(dir.path().join("journal"))?);
    let rig = steward_lab::rig(
        addr,
        fingerprint,
        journal,
        RigConfig {
            engine,
            everyday: TOKEN,
            run,
            ..RigConfig::default()
        },
    )
    .await?;
    Ok(Rig { rig, _dir: dir })
}

fn doc(guests: Vec<serde_json::Value>) -> Result<Arc<DesiredState>> {
    let d = serde_json::json!({"version": 1, "generation": 1, "guests": guests});
    Ok(Arc::new(
        steward_planner::document::parse_json("bench", &d.to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

async fn sim(guests: usize, task_ms: u64, conf_dir: Option<std::path::PathBuf>) -> Result<Sim> {
    Sim::start(SimConfig {
        guests,
        tokens: vec![(
            SimToken::parse(TOKEN).map_err(anyhow::Error::msg)?,
            Privileges::all(),
        )],
        task_time: Duration::from_millis(task_ms),
        conf_dir,
        ..SimConfig::default()
    })
    .await
    .map_err(anyhow::Error::msg)
}

async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > limit {
            bail!("not reached within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t.elapsed())
}

async fn convergence() -> Result<bool> {
    let (n, k, l) = (200u32, 8usize, Duration::from_millis(200));
    let s = sim(0, l.as_millis() as u64, None).await?;
    let r = rig(
        &s.addr.to_string(),
        &s.fingerprint,
        EngineConfig {
            interval: Duration::from_secs(1),
            concurrency: k,
            token_user: "steward@pve!admin".into(),
            ..EngineConfig::default()
        },
        true,
    )
    .await?;
    let guests = (0..n)
        .map(|i| serde_json::json!({"vmid": 1000 + i, "kind": "qemu", "state": "running", "memory": 512,
                                     "create": {"scsi0": "local-lvm:1", "net0": "virtio,bridge=vmbr0"}}))
        .collect();
    let t0 = Instant::now();
    r.triggers.send(Trigger::Desired(doc(guests)?))?;
    let took = until(Duration::from_secs(300), || {
        r.engine.status_now().converged == n as usize
    })
    .await?;
    let _ = t0;
    let tasks_per_guest = 2.0;
    let ideal = tasks_per_guest * (f64::from(n) / k as f64).ceil() * l.as_secs_f64();
    let ratio = took.as_secs_f64() / ideal;
    println!(
        "convergence: {n} guests (create + start), L = {} ms, K = {k}: {:.2} s, ideal {:.2} s, ratio {:.3} (target <= 1.15)",
        l.as_millis(),
        took.as_secs_f64(),
        ideal,
        ratio
    );
    let _ = r.stop.send(true);
    s.shutdown();
    Ok(ratio <= 1.15)
}

async fn idle_cost() -> Result<bool> {
    let mut ok = true;
    for n in [10usize, 100, 1000] {
        let s = sim(n, 50, None).await?;
        let r = rig(
            &s.addr.to_string(),
            &s.fingerprint,
            EngineConfig {
                interval: Duration::from_secs(30),
                sweep_period: Duration::from_secs(3600),
                ..EngineConfig::default()
            },
            false,
        )
        .await?;
        let specs = s.with_node(|node| {
            node.st
                .guests
                .iter()
                .map(|(v, g)| serde_json::json!({"vmid": v, "kind": g.kind, "state": g.status}))
                .collect::<Vec<_>>()
        });
        r.engine.set_desired(doc(specs)?);
        let first = r.engine.observe_once().await.context("first pass")?;
        let before = r.reader.requests_sent();
        let mut idle = Vec::new();
        for _ in 0..3 {
            let p = r.engine.observe_once().await.context("idle pass")?;
            idle.push(p.requests);
        }
        let sent = (r.reader.requests_sent() - before) as f64 / 3.0;
        // The sweep at the defaults (interval 30 s, all within 300 s): ⌈N·30/300⌉ guests a pass,
        // two requests each.
        let per_pass = ((n as f64) * 30.0 / 300.0).ceil();
        println!(
            "idle cost: {n:>4} guests: first pass {} requests, idle passes {idle:?} requests ({sent:.1} sent on the wire), sweep at defaults {:.2} requests/s",
            first.requests,
            per_pass * 2.0 / 30.0
        );
        ok &= idle.iter().all(|r| *r <= 3);
        s.shutdown();
    }
    Ok(ok)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn memory() -> Result<bool> {
    crate::interop::build_sim()?;
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n"))?;
    let (mut child, addr, fingerprint) = crate::interop::spawn_sim(&tokens, 1000)?;
    let before = rss_kib();
    let r = rig(&addr, &fingerprint, EngineConfig::default(), false).await?;
    let specs = (0..1000u32)
        .map(|i| {
            let kind = if i % 3 != 2 { "qemu" } else { "lxc" };
            let state = if i % 2 == 0 { "running" } else { "stopped" };
            serde_json::json!({"vmid": 100 + i, "kind": kind, "state": state})
        })
        .collect();
    r.engine.set_desired(doc(specs)?);
    for _ in 0..3 {
        r.engine.observe_once().await.context("observe")?;
    }
    let after = rss_kib();
    println!(
        "memory: resident set with 1 000 guests managed and observed: {:.1} MiB ({:.1} MiB before the engine; target <= 30 MiB)",
        after as f64 / 1024.0,
        before as f64 / 1024.0
    );
    let _ = child.0.kill();
    Ok(after <= 30 * 1024)
}

async fn drift(hint: bool) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("etc-pve");
    let s = sim(100, 50, Some(conf.clone())).await?;
    let r = rig(
        &s.addr.to_string(),
        &s.fingerprint,
        EngineConfig {
            interval: Duration::from_millis(500),
            sweep_period: Duration::from_secs(10),
            conf_dir: hint.then_some(conf),
            ..EngineConfig::default()
        },
        true,
    )
    .await?;
    let specs: Vec<serde_json::Value> = s.with_node(|node| {
        node.st
            .guests
            .iter()
            .map(|(v, g)| serde_json::json!({"vmid": v, "kind": g.kind, "state": g.status, "description": "managed"}))
            .collect()
    });
    r.triggers.send(Trigger::Desired(doc(specs)?))?;
    until(Duration::from_secs(60), || {
        r.engine.status_now().converged == 100
    })
    .await?;
    // Let a sweep start, then another tool edits guest 150's description.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.with_node(|n| {
        n.edit(
            150,
            &BTreeMap::from([("description".to_string(), "edited".to_string())]),
            &[],
        )
    })
    .map_err(anyhow::Error::msg)?;
    let healed = until(Duration::from_secs(60), || {
        s.with_node(|n| {
            n.st.guests
                .get(&150)
                .and_then(|g| g.config.get("description").cloned())
        }) == Some("managed".to_string())
    })
    .await?;
    let _ = r.stop.send(true);
    s.shutdown();
    Ok(healed)
}

/// Runs the engine bench; false when a target is missed.
pub fn run() -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Memory first, while this process holds nothing else.
        let mem = memory().await?;
        let converge = convergence().await?;
        let idle = idle_cost().await?;
        let without = drift(false).await?;
        let with = drift(true).await?;
        println!(
            "drift detection (100 guests, pass every 0.5 s, sweep 10 s): healed after {:.2} s without the mtime hint, {:.2} s with it",
            without.as_secs_f64(),
            with.as_secs_f64()
        );
        Ok(converge && idle && mem)
    })
}

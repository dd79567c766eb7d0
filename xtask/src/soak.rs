//! `cargo xtask soak --minutes N`: the agent binary against the simulator binary with faults on
//! for N minutes — added latency, 5xx answers, connection resets, failing and hanging tasks,
//! node restarts, guests locked by another actor, out-of-band config edits — while the desired
//! state keeps changing. The desired state also asks for a destroy that nobody signs. Then the
//! faults stop and the harness measures how long the node takes to converge.
//!
//! Reported: converged (and how long after the faults stopped), destructive calls the simulator
//! saw (must be 0: nothing was signed), the agent's resident memory after the first convergence
//! and at the end, and Proxmox API requests per minute (from the agent's own metrics).

use crate::crash::Rng;
use crate::procs::{
    agent_cli, agent_config, build, control, counter, scrape, start_agent, SimProc,
};
use anyhow::{ensure, Context, Result};
use std::time::{Duration, Instant};

const FAULTS: &str = "latency=15,errors=0.05,resets=0.03,task-fail=0.1,task-hang=0.03";
const MANAGED: [(u32, &str); 6] = [
    (100, "qemu"),
    (101, "qemu"),
    (102, "lxc"),
    (104, "qemu"),
    (106, "qemu"),
    (107, "qemu"),
];

fn desired(generation: u32, rng: &mut Rng) -> String {
    let mut doc = format!("version = 1\ngeneration = {generation}\n");
    for (vmid, kind) in MANAGED {
        let state = if rng.below(2) == 0 {
            "running"
        } else {
            "stopped"
        };
        let memory = [512, 1024, 2048][rng.below(3) as usize];
        doc.push_str(&format!(
            "\n[[guests]]\nvmid = {vmid}\nkind = \"{kind}\"\nstate = \"{state}\"\nmemory = {memory}\n"
        ));
    }
    // Asked for, never signed: it must stay held through every fault.
    doc.push_str("\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\n");
    doc
}

/// A number after `key ` in the status line.
fn field(status: &str, key: &str) -> Option<u64> {
    let mut words = status.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

/// Converged: nothing left to do but the held destroy (drifting counts it), nothing in
/// flight, and no guest parked for any other reason.
fn converged(status: &str) -> bool {
    field(status, "drifting").is_some_and(|d| d <= field(status, "held").unwrap_or(0))
        && status.contains("flight 0")
        && status
            .lines()
            .filter(|l| l.starts_with("parked "))
            .all(|l| l.contains("held for an operator's signature"))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Proxmox API requests the agent made so far, from its `/metrics`.
fn api_requests(status: &str) -> Result<f64> {
    let url = status
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("metrics URL in status")?;
    Ok(scrape(url)?
        .lines()
        .filter(|l| l.starts_with("steward_api_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Runs the soak; true when the node converged and nothing destructive ran.
pub fn run(minutes: f64, seed: u64) -> Result<bool> {
    ensure!(
        build(&["steward-pve-sim", "steward-agent"])?,
        "build failed"
    );
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let sim = SimProc::start(d, 8, 300)?;
    std::fs::write(d.join("allowed_signers"), "")?;
    agent_config(
        d,
        &sim,
        &format!("file = \"{}/desired.toml\"\npoll_secs = 1", d.display()),
        "interval_secs = 2\nsweep_secs = 10\ntask_deadline_secs = 15",
        5,
        "127.0.0.1:0",
    )?;
    // A minute of journal history: over a run of several minutes the journal reaches its
    // steady size, so resident memory must level off with it.
    let cfg = std::fs::read_to_string(d.join("agent.toml"))?;
    std::fs::write(
        d.join("agent.toml"),
        cfg.replace("[journal]\n", "[journal]\nretention_secs = 60\n"),
    )?;
    let mut rng = Rng(seed | 1);
    let mut generation = 1;
    std::fs::write(d.join("desired.toml"), desired(generation, &mut rng))?;
    let agent = start_agent(d, "agent.log")?;
    let pid = agent.0.id();
    // A clean start first: the baseline for memory and request rate.
    let t = Instant::now();
    while !converged(&agent_cli(d, &["status"])) {
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "no first convergence: {}",
            agent_cli(d, &["status"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_start = rss_kib(pid);
    let requests_start = api_requests(&agent_cli(d, &["status"]))?;
    let soak_start = Instant::now();
    control(
        &sim.control,
        "POST",
        "/faults",
        &format!("{{\"spec\": \"{FAULTS}\"}}"),
    )?;
    let end = soak_start + Duration::from_secs_f64(minutes * 60.0);
    let mut locked: Option<(u32, Instant)> = None;
    let mut next_desired = Instant::now();
    let mut next_restart = Instant::now() + Duration::from_secs(20);
    let mut actions = 0u32;
    // Resident memory each minute, to tell growth from a plateau.
    let mut rss_minutes: Vec<u64> = Vec::new();
    let mut next_sample = soak_start + Duration::from_secs(60);
    while Instant::now() < end {
        if Instant::now() >= next_sample {
            rss_minutes.push(rss_kib(pid));
            next_sample += Duration::from_secs(60);
        }
        if Instant::now() >= next_desired {
            generation += 1;
            std::fs::write(d.join("desired.toml"), desired(generation, &mut rng))?;
            next_desired = Instant::now() + Duration::from_secs(8);
        }
        let (vmid, _) = MANAGED[rng.below(MANAGED.len() as u64) as usize];
        match rng.below(4) {
            // Another tool edits a config behind the agent's back.
            0 => {
                let mem = [768, 1536][rng.below(2) as usize];
                let _ = control(
                    &sim.control,
                    "POST",
                    &format!("/guests/{vmid}/config"),
                    &format!("{{\"set\": {{\"memory\": \"{mem}\"}}}}"),
                );
            }
            // Another actor holds a guest for a while (a backup).
            1 if locked.is_none() => {
                let _ = control(
                    &sim.control,
                    "POST",
                    &format!("/guests/{vmid}/lock"),
                    "{\"lock\": \"backup\"}",
                );
                locked = Some((vmid, Instant::now() + Duration::from_secs(4)));
            }
            _ => {}
        }
        if let Some((v, until)) = locked {
            if Instant::now() >= until {
                let _ = control(&sim.control, "DELETE", &format!("/guests/{v}/lock"), "");
                locked = None;
            }
        }
        if Instant::now() >= next_restart {
            let _ = control(&sim.control, "POST", "/node/restart", "");
            next_restart = Instant::now() + Duration::from_secs(20);
        }
        actions += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
    // Faults off; the other actor lets go; a restart ends hung tasks. Then: how long to converge?
    control(&sim.control, "POST", "/faults", "{\"spec\": \"\"}")?;
    if let Some((v, _)) = locked {
        let _ = control(&sim.control, "DELETE", &format!("/guests/{v}/lock"), "");
    }
    let _ = control(&sim.control, "POST", "/node/restart", "");
    let soaked = soak_start.elapsed();
    let calm = Instant::now();
    let limit = Duration::from_secs(120);
    // Only a status from two passes after the calm began counts (an older one may predate it).
    let passes_at_calm = field(&agent_cli(d, &["status"]), "passes").unwrap_or(0);
    let settled = |s: &str| converged(s) && field(s, "passes").unwrap_or(0) >= passes_at_calm + 2;
    let mut status = agent_cli(d, &["status"]);
    while !settled(&status) && calm.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(250));
        status = agent_cli(d, &["status"]);
    }
    let ok_converged = settled(&status);
    let to_converge = calm.elapsed();
    let requests_end = api_requests(&status).unwrap_or(requests_start);
    let rss_end = rss_kib(pid);
    let mut destructive = 0;
    for v in 100..108 {
        for call in ["destroy", "rollback", "restore", "delsnapshot"] {
            destructive += counter(&sim.control, v, call)?;
        }
    }
    drop(agent);
    let per_minute = (requests_end - requests_start) / (soaked + to_converge).as_secs_f64() * 60.0;
    println!(
        "soak: {:.1} min of faults ({FAULTS}; node restarts every 20 s, a guest locked by another actor, {actions} out-of-band steps, desired state changed every 8 s)",
        soaked.as_secs_f64() / 60.0
    );
    println!(
        "converged: {} ({:.1} s after the faults stopped); destructive calls without a signature: {destructive}; resident memory {} KiB after the first convergence, {} KiB at the end; API requests {per_minute:.0}/min",
        if ok_converged { "yes" } else { "NO" },
        to_converge.as_secs_f64(),
        rss_start,
        rss_end
    );
    if !rss_minutes.is_empty() {
        let shown: Vec<String> = rss_minutes.iter().map(u64::to_string).collect();
        println!("resident memory each minute (KiB): {}", shown.join(" "));
    }
    if !ok_converged {
        println!("last status: {status}");
    }
    Ok(ok_converged && destructive == 0)
}

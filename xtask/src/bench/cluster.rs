//! `cargo xtask bench cluster`: one agent per node of a three-node simulated cluster (the
//! release `steward-pve-sim --nodes pve-a,pve-b,pve-c` and three `steward-agent` processes), one
//! document placing N guests on each node (create + start, tasks of L = 200 ms, K = 8 actions at
//! once per agent), against the baseline measured in the same run: one node and one agent with
//! the same N guests. For each it reports converge wall time against the ideal (tasks per guest
//! × ⌈N/K⌉ × L) and, per agent, API requests per guest and list-class requests per idle pass.
//! Targets: every agent's idle pass costs what one node's does (2 list requests: the cluster's
//! guests and its quorum), and the cluster converges within 1.5× the single node's ratio (three
//! agents and a simulator share this machine's cores; on a cluster each node has its own).

use super::agent::{counts, idle, sum};
use crate::procs::{agent_cli, control, node_agent_config, scrape, start_agent, Reaped, SimProc};
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

const K: usize = 8;
const TASK_MS: u64 = 200;
const INTERVAL_SECS: u64 = 5;
const NODES: [&str; 3] = ["pve-a", "pve-b", "pve-c"];

/// N guests on each of `nodes`, placed by the document's `node`.
fn desired(nodes: &[&str], per: usize) -> String {
    let mut doc = String::from("version = 1\ngeneration = 1\n");
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..per {
            doc.push_str(&format!(
                "\n[[guests]]\nvmid = {}\nkind = \"qemu\"\nnode = \"{node}\"\nstate = \"running\"\nmemory = 512\n[guests.create]\nscsi0 = \"local-lvm:1\"\nnet0 = \"virtio,bridge=vmbr0\"\n",
                10_000 + i * per + j
            ));
        }
    }
    doc
}

/// What one run measured.
struct Run {
    wall: f64,
    ideal: f64,
    /// Per agent: node, requests per guest to converge, list requests per idle pass.
    agents: Vec<(String, f64, f64)>,
}

impl Run {
    fn ratio(&self) -> f64 {
        self.wall / self.ideal
    }
}

fn running(control_addr: &str) -> Result<usize> {
    let g = control(control_addr, "GET", "/guests", "")?;
    Ok(g.as_object()
        .map(|m| m.values().filter(|v| v["status"] == "running").count())
        .unwrap_or(0))
}

fn metrics_url(dir: &Path) -> Result<String> {
    agent_cli(dir, &["status"])
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_string)
        .context("metrics URL in status")
}

/// `nodes` simulated (one: a standalone node), an agent on each, `per` guests to create on
/// each, measured.
fn run_on(nodes: &[&str], per: usize) -> Result<Run> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let list = nodes.join(",");
    let more: Vec<&str> = if nodes.len() > 1 {
        vec!["--nodes", &list]
    } else {
        Vec::new()
    };
    let sim = SimProc::start_with(d, 0, TASK_MS, &more)?;
    let addrs: Vec<(String, u16, String)> = if sim.nodes.is_empty() {
        vec![("pve-a".into(), sim.port, sim.fingerprint.clone())]
    } else {
        sim.nodes.clone()
    };
    let doc = desired(nodes, per);
    let mut agents: Vec<(String, std::path::PathBuf, Reaped)> = Vec::new();
    let t0 = Instant::now();
    for (name, port, fp) in &addrs {
        let dir = d.join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("allowed_signers"), "")?;
        std::fs::write(dir.join("desired.toml"), &doc)?;
        node_agent_config(
            &dir,
            (name, *port, fp),
            &format!("file = \"{}/desired.toml\"\npoll_secs = 1", dir.display()),
            &format!("concurrency = {K}\ninterval_secs = {INTERVAL_SECS}"),
            10,
            "127.0.0.1:0",
        )?;
        let agent = start_agent(&dir, "agent.log")?;
        agents.push((name.clone(), dir, agent));
    }
    let ideal = 2.0 * (per.div_ceil(K) as f64) * TASK_MS as f64 / 1000.0;
    let all = per * nodes.len();
    while running(&sim.control)? < all {
        ensure!(
            t0.elapsed() < Duration::from_secs_f64(ideal * 5.0 + 30.0),
            "{all} guests not running after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = t0.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for (name, dir, _) in &agents {
        let t = Instant::now();
        while !agent_cli(dir, &["status"]).contains(&format!("converged {per}")) {
            ensure!(
                t.elapsed() < Duration::from_secs(60),
                "{name}: not converged"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let url = metrics_url(dir)?;
        let (converge, _) = counts(&scrape(&url)?);
        let (idle, passes, _) = idle(&url)?;
        out.push((
            name.clone(),
            sum(&converge) / per as f64,
            idle.get("list").copied().unwrap_or(0.0) / passes,
        ));
    }
    Ok(Run {
        wall,
        ideal,
        agents: out,
    })
}

/// Runs the benchmark with `per` guests on each node; false when a target is missed.
pub fn run(per: usize) -> Result<bool> {
    ensure!(
        crate::procs::build(&["steward-agent", "steward-pve-sim"])?,
        "release build failed"
    );
    println!("bench cluster: {per} guests per node, create + start, K = {K}, L = {TASK_MS} ms");
    let one = run_on(&NODES[..1], per)?;
    let three = run_on(&NODES, per)?;
    for (what, r) in [("one node", &one), ("three nodes", &three)] {
        println!(
            "  {what:<12} converge {:.1} s, ideal {:.1} s, ratio {:.3}",
            r.wall,
            r.ideal,
            r.ratio()
        );
        for (node, per_guest, lists) in &r.agents {
            println!(
                "    agent on {node}: {per_guest:.2} requests per guest, {lists:.2} list requests per idle pass"
            );
        }
    }
    let versus = three.ratio() / one.ratio();
    println!("  three nodes / one node: {versus:.3} (target ≤ 1.5)");
    let single = one.agents.first().map_or(0.0, |a| a.2);
    let mut ok = versus <= 1.5;
    for (node, _, lists) in &three.agents {
        if *lists > single + 0.01 {
            println!("  MISSED: the agent on {node} makes {lists:.2} list requests per idle pass, one node's makes {single:.2}");
            ok = false;
        }
    }
    if versus > 1.5 {
        println!("  MISSED: the cluster converges {versus:.2}× slower than one node");
    }
    Ok(ok)
}

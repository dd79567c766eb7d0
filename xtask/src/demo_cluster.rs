//! `cargo xtask demo cluster`: one agent per node of a Proxmox cluster, and a migration, as a
//! story with real processes — the `steward-pve-sim` binary simulating three nodes and three
//! `steward-agent` daemons, one per node, all given one document — each step narrated and
//! checked (any deviation exits non-zero), every child reaped.
//!
//! 1. the cluster and its agents; one document for the whole cluster;
//! 2. each agent converges the guests on its node, creates the guest placed on its node once,
//!    and shows the others' guests as elsewhere;
//! 3. an administrator migrates 101 from pve-a to pve-c (`qm migrate`): locked `migrate`, then
//!    on pve-c;
//! 4. pve-c's agent takes 101 over (the next change to it is made on pve-c), pve-a's shows it
//!    elsewhere, and nobody created anything;
//! 5. pve-b loses quorum: its agent says so and writes nothing; quorum back, it converges.

use crate::procs::{
    agent_cli, build, control, counter, node_agent_config, start_agent, until, SimProc,
};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NODES: [&str; 3] = ["pve-a", "pve-b", "pve-c"];

fn say(step: &str) {
    println!("\n== {step}");
}

/// The cluster's document: 101 and 103 where they are (no `node`), 900 created on pve-b.
fn document(generation: u32, mem_101: u32, mem_103: u32) -> String {
    format!(
        "# the cluster's guests: a guest without `node` is managed wherever it runs\nversion = 1\ngeneration = {generation}\n\n[[guests]]\nvmid = 101\nkind = \"qemu\"\nstate = \"stopped\"\nmemory = \"{mem_101} GiB\"\n\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"stopped\"\nmemory = \"{mem_103} GiB\"\n\n[[guests]]\nvmid = 900\nkind = \"qemu\"\nnode = \"pve-b\"\nstate = \"running\"\nmemory = 512\ncreate = {{ scsi0 = \"local-lvm:1\" }}\n"
    )
}

/// `vmid`'s node and memory (MiB), from the simulator's view.
fn guest(sim: &SimProc, vmid: u32) -> Result<Option<(String, String)>> {
    let g = control(&sim.control, "GET", "/guests", "")?;
    let e = &g[vmid.to_string()];
    if e.is_null() {
        return Ok(None);
    }
    Ok(Some((
        e["node"].as_str().unwrap_or_default().to_string(),
        e["config"]["memory"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )))
}

fn status(dir: &Path) -> String {
    agent_cli(dir, &["status"])
}

fn show(node: &str, dir: &Path) {
    for l in status(dir)
        .lines()
        .filter(|l| l.starts_with("passes") || l.starts_with("elsewhere") || l.contains("QUORUM"))
    {
        println!("  [{node}] {l}");
    }
}

/// Runs the story; false when a step did not go as told.
pub fn run_story() -> Result<bool> {
    let t0 = Instant::now();
    say("building steward-pve-sim and steward-agent");
    ensure!(
        build(&["steward-pve-sim", "steward-agent"])?,
        "build failed"
    );
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();

    say("1. a three-node cluster, an agent on each node, one document for the cluster");
    let sim = SimProc::start_with(d, 2, 200, &["--nodes", "pve-a,pve-b,pve-c"])?;
    ensure!(sim.nodes.len() == 3, "three nodes, got {:?}", sim.nodes);
    for (name, port, _) in &sim.nodes {
        println!("  {name}: https://localhost:{port}/api2/json");
    }
    let dirs: BTreeMap<&str, PathBuf> = NODES.iter().map(|n| (*n, d.join(n))).collect();
    let publish = |text: String| -> Result<()> {
        for dir in dirs.values() {
            let tmp = dir.join("desired.toml.tmp");
            std::fs::write(&tmp, &text)?;
            std::fs::rename(&tmp, dir.join("desired.toml"))?;
        }
        Ok(())
    };
    let mut agents = BTreeMap::new();
    for (name, port, fp) in &sim.nodes {
        let dir = &dirs[name.as_str()];
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("allowed_signers"), "")?;
        std::fs::write(dir.join("desired.toml"), document(1, 3, 3))?;
        node_agent_config(
            dir,
            (name, *port, fp),
            &format!("file = \"{}/desired.toml\"\npoll_secs = 1", dir.display()),
            "interval_secs = 1",
            10,
            "off",
        )?;
        agents.insert(name.clone(), start_agent(dir, "agent.log")?);
    }
    println!("{}", document(1, 3, 3));

    say("2. each agent converges its own node");
    until(
        "101 and 103 at 3 GiB, 900 on pve-b",
        Duration::from_secs(60),
        || {
            Ok(guest(&sim, 101)? == Some(("pve-a".into(), "3072".into()))
                && guest(&sim, 103)? == Some(("pve-b".into(), "3072".into()))
                && guest(&sim, 900)?.is_some_and(|(n, _)| n == "pve-b"))
        },
    )?;
    ensure!(
        counter(&sim.control, 900, "create")? == 1,
        "900 created more than once"
    );
    until(
        "every agent sees the others' guests",
        Duration::from_secs(20),
        || {
            Ok(
                status(&dirs["pve-c"]).contains("elsewhere 101 on node pve-a")
                    && status(&dirs["pve-a"]).contains("elsewhere 103 on node pve-b"),
            )
        },
    )?;
    for n in NODES {
        show(n, &dirs[n]);
    }
    println!("  101 changed by pve-a's agent, 103 by pve-b's; 900 created once, on pve-b");

    say("3. an administrator migrates 101 to pve-c (qm migrate 101 pve-c)");
    let m = control(
        &sim.control,
        "POST",
        "/guests/101/migrate",
        r#"{"target":"pve-c"}"#,
    )?;
    let upid = m["upid"].as_str().context("a migration task")?;
    println!("  task {upid}");
    let g = control(&sim.control, "GET", "/guests", "")?;
    println!("  101 is locked: {}", g["101"]["lock"]);
    until("101 on pve-c", Duration::from_secs(20), || {
        Ok(guest(&sim, 101)?.is_some_and(|(n, _)| n == "pve-c"))
    })?;
    println!("  101 is on pve-c");

    say("4. pve-c's agent takes 101 over; pve-a's leaves it alone");
    let a_writes = counter(&sim.control, 101, "config")?;
    publish(document(2, 4, 3))?;
    until("101 at 4 GiB", Duration::from_secs(30), || {
        Ok(guest(&sim, 101)? == Some(("pve-c".into(), "4096".into())))
    })?;
    until(
        "pve-a's agent shows 101 on pve-c",
        Duration::from_secs(20),
        || Ok(status(&dirs["pve-a"]).contains("elsewhere 101 on node pve-c")),
    )?;
    ensure!(
        counter(&sim.control, 101, "config")? == a_writes + 1,
        "one config write for 101, by pve-c's agent"
    );
    ensure!(
        counter(&sim.control, 101, "create")? == 0,
        "nobody tried to create 101"
    );
    show("pve-a", &dirs["pve-a"]);
    show("pve-c", &dirs["pve-c"]);
    println!("  one write to 101, on pve-c; no create anywhere");

    say("5. pve-b loses quorum: its agent pauses writes; quorum back, it converges");
    control(
        &sim.control,
        "POST",
        "/nodes/pve-b/quorum",
        r#"{"quorate":false}"#,
    )?;
    until("pve-b's agent sees it", Duration::from_secs(20), || {
        Ok(status(&dirs["pve-b"]).contains("NO QUORUM"))
    })?;
    show("pve-b", &dirs["pve-b"]);
    publish(document(3, 4, 4))?;
    std::thread::sleep(Duration::from_secs(4));
    ensure!(
        guest(&sim, 103)? == Some(("pve-b".into(), "3072".into())),
        "103 changed without quorum"
    );
    println!("  4 s with a change waiting: nothing written to pve-b");
    control(
        &sim.control,
        "POST",
        "/nodes/pve-b/quorum",
        r#"{"quorate":true}"#,
    )?;
    until("103 at 4 GiB", Duration::from_secs(30), || {
        Ok(guest(&sim, 103)? == Some(("pve-b".into(), "4096".into())))
    })?;
    println!("  quorum back: 103 converged, no restart");
    drop(agents);
    println!(
        "\ndemo cluster: every step as told, in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(true)
}

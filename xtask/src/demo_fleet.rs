//! `cargo xtask demo fleet`: the fleet without a Steward server, as a story with real processes
//! — a git repository of desired state, the `steward-fleet` binary rendering it, a real nginx
//! serving the files, the `steward-pve-sim` binary and the `steward-agent` daemon — each step
//! narrated and checked (any deviation exits non-zero), every child reaped.
//!
//! 1. the fleet in git: pve-a's desired state, committed;
//! 2. `steward-fleet render`: checked with the agent's parsers, written as the hub's files;
//! 3. nginx serves them (TLS, a bearer token, `etag on`); the agent, `report = "off"`,
//!    converges from them;
//! 4. unchanged polls are 304s;
//! 5. a change in git, committed and rendered again: only the changed file is rewritten, and
//!    the agent converges to it;
//! 6. a document the agent would refuse is refused by `render`, with its file and line, and
//!    nothing served changes.

use crate::procs::{agent_config, bin, build, control, until, Reaped, SimProc};
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "demo-fleet-token-5f1e3c2a-0000-4000-8000-00000000f1ee";

fn say(step: &str) {
    println!("\n== {step}");
}

/// `command ARGS` in `dir`, echoed; its stdout, and whether it succeeded.
fn run(dir: &Path, command: &Path, args: &[&str]) -> Result<(bool, String)> {
    println!("$ {} {}", command.display(), args.join(" "));
    let out = Command::new(command)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {}", command.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let (ok, text) = run(dir, Path::new("git"), args)?;
    ensure!(ok, "git {}: {text}", args.join(" "));
    Ok(())
}

fn memory(sim: &SimProc, vmid: u32) -> Result<String> {
    let g = control(&sim.control, "GET", "/guests", "")?;
    Ok(g[vmid.to_string()]["config"]["memory"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| g[vmid.to_string()]["config"]["memory"].to_string()))
}

fn document(memory: &str) -> String {
    format!(
        "# pve-a's guests, reviewed as pull requests\nversion = 1\ngeneration = 1\n\n[[guests]]\nvmid = 101\nkind = \"qemu\"\nstate = \"stopped\"\nmemory = \"{memory}\"\n\n[[guests]]\nvmid = 102\nkind = \"lxc\"\nstate = \"running\"\n"
    )
}

/// Runs the story; false when a step did not go as told.
pub fn run_story() -> Result<bool> {
    let t0 = Instant::now();
    say("building steward-pve-sim, steward-agent and steward-fleet");
    ensure!(
        build(&["steward-pve-sim", "steward-agent", "steward-fleet"])?,
        "build failed"
    );
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let fleet = d.join("fleet");
    std::fs::create_dir_all(fleet.join("nodes"))?;
    std::fs::create_dir_all(fleet.join("ops"))?;

    say("1. the fleet in git: pve-a's desired state, committed");
    git(&fleet, &["init", "-q"])?;
    std::fs::write(fleet.join("nodes/pve-a.toml"), document("2 GiB"))?;
    git(&fleet, &["add", "."])?;
    git(
        &fleet,
        &[
            "-c",
            "user.name=ops",
            "-c",
            "user.email=ops@example.org",
            "commit",
            "-qm",
            "pve-a: 101 gets 2 GiB",
        ],
    )?;

    say("2. steward-fleet render: checked with the agent's parsers, written as the hub's files");
    let fleet_bin = bin("steward-fleet");
    let www = d.join("www");
    let www_arg = www.display().to_string();
    let (ok, said) = run(
        &fleet,
        &fleet_bin,
        &["render", "--fleet", ".", "--out", &www_arg],
    )?;
    print!("{said}");
    ensure!(ok, "render failed");

    say("3. nginx serves them; the agent (report = \"off\") converges from them");
    let ndir = d.join("nginx");
    std::fs::create_dir_all(&ndir)?;
    let nginx = steward_testkit::nginx::Nginx::start(
        &ndir,
        &www,
        &steward_testkit::nginx::NginxOptions {
            token: TOKEN.into(),
            client_ca: None,
            workers: 1,
            access_log: true,
        },
    )
    .map_err(anyhow::Error::msg)?;
    println!(
        "nginx on https://localhost:{} serving {}",
        nginx.port,
        www.display()
    );
    let sim = SimProc::start(d, 4, 300)?;
    crate::procs::secret(&d.join("hub-token"), TOKEN)?;
    std::fs::write(d.join("allowed_signers"), "")?;
    agent_config(
        d,
        &sim,
        &format!(
            "hub = \"https://localhost:{}\"\nhub_token_file = \"{}/hub-token\"\nhub_fingerprint = \"{}\"\nreport = \"off\"\npoll_secs = 1",
            nginx.port,
            d.display(),
            steward_proxmox_client::tls::fingerprint_of(&nginx.cert_der)
        ),
        "interval_secs = 2\nsweep_secs = 20",
        30,
        "off",
    )?;
    let log = std::fs::File::create(d.join("agent.log"))?;
    let _agent = Reaped(
        Command::new(bin("steward-agent"))
            .args(["run", "--config"])
            .arg(d.join("agent.toml"))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting steward-agent")?,
    );
    until("101 has 2 GiB", Duration::from_secs(60), || {
        Ok(memory(&sim, 101)? == "2048")
    })?;
    println!("101: memory {} MiB, from nginx's files", memory(&sim, 101)?);

    say("4. unchanged polls are 304s");
    until("a few 304s", Duration::from_secs(20), || {
        Ok(nginx.served("GET", "/v1/nodes/pve-a/desired", 304) >= 3)
    })?;
    println!(
        "nginx answered pve-a's desired state: 200 x{}, 304 x{}; its jobs: 304 x{}",
        nginx.served("GET", "/v1/nodes/pve-a/desired", 200),
        nginx.served("GET", "/v1/nodes/pve-a/desired", 304),
        nginx.served("GET", "/v1/nodes/pve-a/jobs", 304)
    );
    let reports = nginx.served("POST", "/v1/nodes/pve-a/report", 404)
        + nginx.served("POST", "/v1/nodes/pve-a/report", 405);
    ensure!(reports == 0, "report = \"off\": no report was posted");

    say("5. a change in git, committed and rendered again: the agent converges to it");
    std::fs::write(fleet.join("nodes/pve-a.toml"), document("3 GiB"))?;
    git(
        &fleet,
        &[
            "-c",
            "user.name=ops",
            "-c",
            "user.email=ops@example.org",
            "commit",
            "-qam",
            "pve-a: 101 gets 3 GiB",
        ],
    )?;
    let (ok, said) = run(
        &fleet,
        &fleet_bin,
        &["render", "--fleet", ".", "--out", &www_arg],
    )?;
    print!("{said}");
    ensure!(
        ok && said.contains("1 of 2 files changed"),
        "only the desired state changed"
    );
    until("101 has 3 GiB", Duration::from_secs(20), || {
        Ok(memory(&sim, 101)? == "3072")
    })?;
    println!("101: memory {} MiB", memory(&sim, 101)?);

    say("6. a document the agent would refuse: refused by render, with file and line; nothing served changes");
    let served_before = std::fs::read(www.join("v1/nodes/pve-a/desired"))?;
    std::fs::write(
        fleet.join("nodes/pve-a.toml"),
        document("3 GiB").replace("generation = 1", "generation = "),
    )?;
    let (ok, said) = run(
        &fleet,
        &fleet_bin,
        &["render", "--fleet", ".", "--out", &www_arg],
    )?;
    print!("{said}");
    ensure!(
        !ok && said.contains("pve-a.toml:3"),
        "refused with its line"
    );
    ensure!(
        std::fs::read(www.join("v1/nodes/pve-a/desired"))? == served_before,
        "nothing served changed"
    );
    println!(
        "\ndemo fleet: every step as told in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(true)
}

//! `cargo xtask demo`: the whole story on a simulated node, with real processes — the
//! `steward-pve-sim` binary, the `steward-hub-stub` binary, the `steward-agent` daemon and its
//! CLI, and `ssh-keygen` — each step narrated and checked (any deviation exits non-zero). Every
//! child is killed on the way out.
//!
//! 1. converge a handful of guests from the hub's desired state;
//! 2. the hub asks for a destroy: held, with what it would destroy, and reported to the hub;
//! 3. the hub relabels the guest "scratch": still held (labels are not provenance);
//! 4. an operator signs the template with `ssh-keygen -Y sign`, submits: it runs, once;
//! 5. the same signature again, through the hub as a signed job: a replay, nothing runs;
//! 6. the hub gives 900 a data disk, then drops it from an exact disk list: the agent plans the
//!    removal itself, held with the volume named; alice signs; exactly that volume is freed;
//! 7. kill -9 the agent while a task runs, restart it: recovery follows the task, nothing runs
//!    twice;
//! 8. the final status, a few metrics, and the journal's audit chain verified;
//! 9. an auditor's view: `steward-agent audit export`, then `steward-verify audit` offline
//!    against alice's allowed_signers and the head `status` showed: every destruction proven,
//!    with alice's key.

use crate::procs::{
    agent_config, bin, build, control, scrape, secret, trust_alice, HubStubProc, Reaped, SimProc,
};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn say(step: &str) {
    println!("\n== {step}");
}

struct Demo {
    dir: tempfile::TempDir,
    control: String,
    hub: String,
}

impl Demo {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `steward-agent SUBCOMMAND … --socket S`: (exit code, stdout).
    fn cli(&self, args: &[&str]) -> Result<(i32, String)> {
        let out = Command::new(bin("steward-agent"))
            .args(args)
            .arg("--socket")
            .arg(self.path("agent.sock"))
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    fn status(&self) -> Result<String> {
        Ok(self.cli(&["status"])?.1)
    }

    fn until(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut(&Demo) -> Result<bool>,
    ) -> Result<()> {
        let t = Instant::now();
        loop {
            if f(self).unwrap_or(false) {
                return Ok(());
            }
            if t.elapsed() > limit {
                let log = std::fs::read_to_string(self.path("agent.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!(
                    "{what}: not reached within {limit:?}; agent status: {}\nlast agent log lines:\n{}",
                    self.status().unwrap_or_default(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The hub's operators set pve-a's desired state (written here in TOML, served as JSON).
    fn desire(&self, generation: u32, guests: &str) -> Result<()> {
        let doc: Value =
            toml::from_str(&format!("version = 1\ngeneration = {generation}\n{guests}"))?;
        control(&self.hub, "PUT", "/nodes/pve-a/desired", &doc.to_string())?;
        Ok(())
    }

    /// Prints the `/metrics` lines starting with each of `wanted` (each must be there).
    fn metrics(&self, wanted: &[&str]) -> Result<()> {
        let status = self.status()?;
        let url = status
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .context("metrics URL in status")?;
        let metrics = scrape(url)?;
        for want in wanted {
            let line = metrics
                .lines()
                .find(|l| l.starts_with(want))
                .with_context(|| format!("no {want} in /metrics"))?;
            println!("{line}");
        }
        Ok(())
    }

    /// What pve-a reported to the hub last.
    fn last_report(&self) -> Result<Value> {
        let all = control(&self.hub, "GET", "/nodes/pve-a/reports", "")?;
        Ok(all
            .as_array()
            .and_then(|a| a.last().cloned())
            .unwrap_or(Value::Null))
    }

    fn start_agent(&self) -> Result<Reaped> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))?;
        let child = Command::new(bin("steward-agent"))
            .args(["run", "--config"])
            .arg(self.path("agent.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting steward-agent")?;
        let agent = Reaped(child);
        self.until("the agent answers", Duration::from_secs(20), |d| {
            Ok(d.status()?.contains("recovered true"))
        })?;
        Ok(agent)
    }

    /// alice signs the template of the first op `pending` lists (`pending show ID --template`
    /// into `name`, `ssh-keygen -Y sign` into `name.sig`) and submits it, which must execute:
    /// the template, the signature and what `submit` said.
    fn sign_and_submit(
        &self,
        pending: &str,
        kg: &steward_testkit::Keygen,
        alice: &steward_testkit::Key,
        name: &str,
    ) -> Result<(String, Vec<u8>, String)> {
        let id: String = pending
            .strip_prefix("op ")
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let (code, template) = self.cli(&["pending", "show", &id, "--template"])?;
        ensure!(code == 0, "pending show {id} --template");
        let op = self.path(name);
        let sig_path = self.path(&format!("{name}.sig"));
        std::fs::write(&op, &template)?;
        let sig = kg.sign(&alice.private, "op@steward", template.as_bytes())?;
        std::fs::write(&sig_path, &sig)?;
        println!("$ ssh-keygen -Y sign -n op@steward -f alice {name}");
        let (code, said) = self.cli(&[
            "submit",
            &op.display().to_string(),
            &sig_path.display().to_string(),
        ])?;
        print!("$ steward-agent submit {name} {name}.sig\n{said}");
        ensure!(code == 0 && said.contains("executed"), "executed");
        Ok((template, sig, said))
    }

    fn counter(&self, vmid: u32, call: &str) -> Result<u64> {
        crate::procs::counter(&self.control, vmid, call)
    }

    fn guests(&self) -> Result<Value> {
        control(&self.control, "GET", "/guests", "")
    }
}

const GUESTS: &str = r#"
[[guests]]
vmid = 101
kind = "qemu"
state = "stopped"
memory = "3 GiB"
tags = ["web"]

[[guests]]
vmid = 105
kind = "lxc"
state = "stopped"

[[guests]]
vmid = 900
kind = "qemu"
state = "running"
name = "app"
memory = 1024
create = { scsi0 = "local-lvm:8", net0 = "virtio,bridge=vmbr0" }

[[guests]]
vmid = 901
kind = "lxc"
state = "stopped"
memory = 512
create = { ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", rootfs = "local-lvm:4", net0 = "name=eth0,bridge=vmbr0" }
"#;

/// Runs the demo; false when a step did not go as told.
pub fn run() -> Result<bool> {
    let t0 = Instant::now();
    say("building steward-pve-sim, steward-hub-stub, steward-agent and steward-verifier");
    let ok = build(&[
        "steward-pve-sim",
        "steward-agent",
        "steward-hub-stub",
        "steward-verifier",
    ])?;
    ensure!(ok, "build failed");
    let built = Instant::now();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let sim = SimProc::start(d, 6, 1500)?;
    let (port, fingerprint, control_addr) =
        (sim.port, sim.fingerprint.clone(), sim.control.clone());
    println!(
        "simulated node pve-a on https://127.0.0.1:{port} (certificate {}…)",
        &fingerprint[..23]
    );

    // The hub: the stub binary, with the bearer token the agent presents.
    secret(&d.join("hub-token"), "demo-hub-token-4b1e")?;
    let hub = HubStubProc::start(&d.join("hub-token"))?;
    let (hub_url, hub_fp, hub_control) = (
        hub.url.as_str(),
        hub.fingerprint.as_str(),
        hub.control.as_str(),
    );
    println!("hub at {hub_url} (certificate {}…)", &hub_fp[..23]);

    // The operator's key, and the trust store that admits it for op@steward.
    let kg = steward_testkit::Keygen::new()?;
    let alice = kg.key(steward_testkit::KeyType::Ed25519, "alice")?;
    trust_alice(d, &alice.public_line)?;
    agent_config(
        d,
        &sim,
        &format!(
            "hub = \"{hub_url}\"\nhub_token_file = \"{}/hub-token\"\nhub_fingerprint = \"{hub_fp}\"\npoll_secs = 1\nreport_secs = 2",
            d.display()
        ),
        "interval_secs = 2\nsweep_secs = 20",
        30,
        "127.0.0.1:0",
    )?;
    let demo = Demo {
        dir,
        control: control_addr,
        hub: hub_control.to_string(),
    };

    say("1. converge a handful of guests from the hub's desired state");
    demo.desire(1, GUESTS)?;
    let mut agent = demo.start_agent()?;
    demo.until("4 guests converged", Duration::from_secs(60), |d| {
        Ok(d.status()?.contains("converged 4"))
    })?;
    print!("{}", demo.status()?);
    let g = demo.guests()?;
    ensure!(
        g["101"]["config"]["memory"] == "3072",
        "101 memory: {}",
        g["101"]["config"]["memory"]
    );
    ensure!(
        g["900"]["status"] == "running" && g["901"]["kind"] == "lxc",
        "900/901 created: {g}"
    );

    say("2. the hub asks for a destroy of 103: held, with what it would destroy");
    demo.desire(
        2,
        &format!("{GUESTS}\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\n"),
    )?;
    demo.until("103 held", Duration::from_secs(30), |d| {
        Ok(d.cli(&["pending"])?.1.contains("guest.destroy 103"))
    })?;
    let (_, pending) = demo.cli(&["pending"])?;
    print!("{pending}");
    ensure!(
        pending.contains("local-lvm:vm-103-disk-0 (32G)"),
        "the summary names the disk"
    );
    ensure!(demo.counter(103, "destroy")? == 0, "nothing ran unsigned");
    demo.until("the hub hears of it", Duration::from_secs(20), |d| {
        Ok(d.last_report()?["held"]
            .as_array()
            .is_some_and(|h| h.iter().any(|o| o["guest"] == 103)))
    })?;
    println!("reported to the hub: held guest.destroy 103, with its template to sign");

    say("3. the hub relabels 103 \"scratch\": still held (labels are not provenance)");
    demo.desire(
        3,
        &format!("{GUESTS}\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\ntags = [\"scratch\"]\n"),
    )?;
    control(
        &demo.control,
        "POST",
        "/guests/103/config",
        r#"{"set":{"tags":"scratch"}}"#,
    )?;
    std::thread::sleep(Duration::from_secs(4));
    ensure!(
        demo.cli(&["pending"])?.1.contains("guest.destroy 103"),
        "still held"
    );
    ensure!(demo.guests()?.get("103").is_some(), "103 still exists");
    println!("still held; 103 untouched");

    say("4. alice signs the template with ssh-keygen and submits it: it runs, once");
    let (template, sig, said) = demo.sign_and_submit(&pending, &kg, &alice, "op.json")?;
    ensure!(said.contains("signed=true"), "executed, signed");
    ensure!(demo.guests()?.get("103").is_none(), "103 destroyed");
    ensure!(demo.counter(103, "destroy")? == 1, "one destroy");

    say("5. the same signed op again, as a job from the hub: a replay, nothing runs");
    let job = serde_json::json!({
        "id": "job-7",
        "payload": template,
        "signatures": [String::from_utf8_lossy(&sig)],
    });
    control(&demo.hub, "POST", "/nodes/pve-a/jobs", &job.to_string())?;
    demo.until(
        "the hub hears job-7's decision",
        Duration::from_secs(20),
        |d| {
            let all = control(&d.hub, "GET", "/nodes/pve-a/reports", "")?;
            Ok(all.as_array().into_iter().flatten().any(|r| {
                r["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|j| j["job"] == "job-7" && j["decision"]["decision"] == "replay")
            }))
        },
    )?;
    println!("reported to the hub: job-7 → replay");
    ensure!(demo.counter(103, "destroy")? == 1, "still one destroy");
    demo.metrics(&[
        "steward_actions_total{kind=\"guest.destroy\",outcome=\"pending_signature\"}",
        "steward_gate_decisions_total{reason=\"executed\"}",
        "steward_gate_decisions_total{reason=\"replay\"}",
    ])?;

    say("6. the hub gives 900 a data disk, then drops it: held with the volume named; signed; freed");
    let with_disk = |disk: &str| {
        GUESTS.replacen(
            "create = { scsi0 = \"local-lvm:8\", net0 = \"virtio,bridge=vmbr0\" }",
            &format!(
                "create = {{ net0 = \"virtio,bridge=vmbr0\" }}\ndisks = \"exact\"\nscsi0 = {{ storage = \"local-lvm\", size = \"8G\" }}\n{disk}"
            ),
            1,
        )
    };
    demo.desire(
        4,
        &with_disk("scsi1 = { storage = \"local-lvm\", size = \"4G\", discard = true }"),
    )?;
    demo.until("900's data disk added", Duration::from_secs(30), |d| {
        Ok(d.guests()?["900"]["config"]["scsi1"].is_string())
    })?;
    let scsi1 = demo.guests()?["900"]["config"]["scsi1"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let volume = scsi1.split(',').next().unwrap_or_default().to_string();
    println!("900 scsi1: {scsi1}");
    let volumes_before = control(&demo.control, "GET", "/volumes", "")?;
    demo.desire(5, &with_disk(""))?;
    demo.until("the removal held", Duration::from_secs(30), |d| {
        Ok(d.cli(&["pending"])?.1.contains("guest.config 900"))
    })?;
    let (_, pending) = demo.cli(&["pending"])?;
    print!("{pending}");
    ensure!(
        pending.contains(&format!("{volume} (4G)")),
        "the held op names the volume and its size"
    );
    demo.sign_and_submit(&pending, &kg, &alice, "detach.json")?;
    let volumes_after = control(&demo.control, "GET", "/volumes", "")?;
    let gone: Vec<&String> = volumes_before
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter(|v| volumes_after.get(v.as_str()).is_none())
        .collect();
    println!("volumes freed: {gone:?}");
    ensure!(
        gone == vec![&volume],
        "exactly the volume the template named"
    );

    say("7. kill -9 the agent while a task runs; restart: recovery follows it, nothing runs twice");
    demo.desire(
        6,
        &GUESTS.replacen(
            "vmid = 105\nkind = \"lxc\"\nstate = \"stopped\"",
            "vmid = 105\nkind = \"lxc\"\nstate = \"running\"",
            1,
        ),
    )?;
    demo.until(
        "the start of 105 reached the node",
        Duration::from_secs(30),
        |d| Ok(d.counter(105, "start")? == 1),
    )?;
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    println!("agent killed (SIGKILL) with the start of 105 in flight");
    agent = demo.start_agent()?;
    demo.until("105 running", Duration::from_secs(30), |d| {
        Ok(d.guests()?["105"]["status"] == "running")
    })?;
    demo.until("converged", Duration::from_secs(30), |d| {
        Ok(d.status()?.contains("converged 4"))
    })?;
    ensure!(demo.counter(105, "start")? == 1, "the start ran once");
    let mut log = String::new();
    std::fs::File::open(demo.path("agent.log"))?.read_to_string(&mut log)?;
    let recovery = log
        .lines()
        .rev()
        .find(|l| l.contains("recovered; reconciling"))
        .unwrap_or("")
        .to_string();
    println!(
        "after restart: {}; start calls for 105: 1",
        recovery.split("recovery=").nth(1).unwrap_or(&recovery)
    );
    ensure!(
        recovery.contains("waiting: 1")
            || recovery.contains("settled: 1")
            || recovery.contains("adopted: 1"),
        "recovery resolved the start: {recovery}"
    );

    say("8. final status, a few metrics, and the journal's audit chain");
    let status = demo.status()?;
    print!("{status}");
    demo.metrics(&[
        "steward_passes_total ",
        "steward_guests{state=\"converged\"}",
        "steward_api_requests_total{method=\"GET\",endpoint=\"list\",outcome=\"ok\"}",
        "steward_journal_barrier_seconds_count ",
    ])?;
    let counts = control(&demo.hub, "GET", "/counts", "")?;
    println!("hub: {counts}");

    say("9. an auditor's view: the chain exported, checked offline against the witnessed head");
    let head = status
        .lines()
        .find_map(|l| l.strip_prefix("audit head "))
        .and_then(|l| l.split_whitespace().next())
        .context("status shows no audit head")?
        .to_string();
    let (code, export) = demo.cli(&["audit", "export"])?;
    ensure!(code == 0, "audit export exited {code}");
    std::fs::write(demo.path("audit.jsonl"), &export)?;
    let out = Command::new(bin("steward-verify"))
        .args(["audit", "--signers"])
        .arg(demo.path("allowed_signers"))
        .args(["--head", &head])
        .arg(demo.path("audit.jsonl"))
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout);
    print!("{table}");
    ensure!(
        out.status.success(),
        "steward-verify audit found something unproven"
    );
    ensure!(
        table.contains("guest.destroy") && table.contains("signed by alice@example.org"),
        "the destroy is listed with alice's key"
    );
    ensure!(
        counts["desired_not_modified"].as_u64().unwrap_or(0) > 0,
        "unchanged polls are 304s"
    );
    let pid = agent.0.id().to_string();
    ensure!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success(),
        "SIGTERM"
    );
    let t = Instant::now();
    while agent.0.try_wait()?.is_none() {
        ensure!(
            t.elapsed() < Duration::from_secs(40),
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let journal = steward_journal::Journal::open(demo.path("journal"))?;
    let report = journal.verify_audit_chain()?;
    println!("audit chain: {report:?}");
    let ops = journal.all_ops()?;
    println!("journal: {} ops", ops.len());
    drop(sim);
    drop(hub);
    println!(
        "\ndemo: every step as told; {:.1} s after the build ({:.1} s in all)",
        built.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    Ok(true)
}

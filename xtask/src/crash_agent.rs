//! `cargo xtask crash agent --iterations N`: the agent as a process, SIGKILLed at random moments
//! while it works through a scripted mix, against the `steward-pve-sim` binary, which survives
//! every kill and counts each mutating call per guest. Each round the desired state changes
//! power and memory of four guests, asks for a create and for the destroy of the guest created
//! two rounds before; meanwhile an operator signs whatever is held (real `ssh-keygen`) and
//! submits it through the local API. Then SIGKILL, and the next round restarts the agent.
//!
//! At the end the agent is started once more, every held op is signed, and the node must
//! converge. Checked: destroy calls per guest as the simulator counted them (≤ 1, and only for
//! a guest whose destroy a signed op authorized in the journal), acknowledged ops missing from
//! the journal (0), convergence, and the audit chain.

use crate::crash::Rng;
use crate::procs::{agent_config, bin, build, counter, trust_alice, Reaped, SimProc};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use steward_journal::{Journal, OpId};
use steward_model::Action;

struct Run {
    dir: PathBuf,
    kg: steward_testkit::Keygen,
    key: PathBuf,
}

impl Run {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `steward-agent ARGS --socket …`: (exit code, stdout); `None` when it could not run.
    fn cli(&self, args: &[&str]) -> Option<(i32, String)> {
        let out = Command::new(bin("steward-agent"))
            .args(args)
            .arg("--socket")
            .arg(self.path("agent.sock"))
            .stderr(Stdio::null())
            .output()
            .ok()?;
        Some((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    fn status(&self) -> String {
        self.cli(&["status"]).map(|(_, s)| s).unwrap_or_default()
    }

    fn start(&self) -> Result<Reaped> {
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
        Ok(Reaped(child))
    }

    /// Signs and submits every held op once; returns the op ids the agent answered for.
    fn sign_held(&self, until: Instant) -> Vec<u64> {
        let mut acked = Vec::new();
        let Some((0, listed)) = self.cli(&["pending"]) else {
            return acked;
        };
        let ids: Vec<String> = listed
            .lines()
            .filter_map(|l| l.strip_prefix("op "))
            .map(|r| r.chars().take_while(char::is_ascii_digit).collect())
            .collect();
        for id in ids {
            if Instant::now() >= until {
                break;
            }
            let Some((0, template)) = self.cli(&["pending", "show", &id, "--template"]) else {
                continue;
            };
            let (op, sig) = (self.path("op.json"), self.path("op.json.sig"));
            let Ok(signature) = self.kg.sign(&self.key, "op@steward", template.as_bytes()) else {
                continue;
            };
            if std::fs::write(&op, &template).is_err() || std::fs::write(&sig, signature).is_err() {
                continue;
            }
            let op_s = op.display().to_string();
            let sig_s = sig.display().to_string();
            // An answer is an acknowledgement: the op it names must be in the journal.
            if let Some((0 | 1, said)) = self.cli(&["submit", &op_s, &sig_s]) {
                if let Some(n) = said
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("op="))
                    .and_then(|n| n.parse().ok())
                {
                    acked.push(n);
                }
            }
        }
        acked
    }
}

/// The desired state of round `k`.
fn desired(k: u32, rng: &mut Rng) -> String {
    let mut doc = format!("version = 1\ngeneration = {}\n", k + 1);
    for (vmid, kind) in [(100, "qemu"), (101, "qemu"), (102, "lxc"), (104, "qemu")] {
        let state = if rng.below(2) == 0 {
            "running"
        } else {
            "stopped"
        };
        let memory = [512, 1024, 2048, 3072][rng.below(4) as usize];
        doc.push_str(&format!(
            "\n[[guests]]\nvmid = {vmid}\nkind = \"{kind}\"\nstate = \"{state}\"\nmemory = {memory}\n"
        ));
    }
    doc.push_str(&format!(
        "\n[[guests]]\nvmid = {}\nkind = \"qemu\"\nstate = \"running\"\nmemory = 512\ncreate = {{ scsi0 = \"local-lvm:1\" }}\n",
        900 + k
    ));
    if k >= 2 {
        doc.push_str(&format!(
            "\n[[guests]]\nvmid = {}\nkind = \"qemu\"\nstate = \"absent\"\n",
            900 + k - 2
        ));
    }
    doc
}

/// Runs the harness; true when every check held.
pub fn run(iterations: u32, seed: u64) -> Result<bool> {
    ensure!(
        build(&["steward-pve-sim", "steward-agent"])?,
        "build failed"
    );
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let sim = SimProc::start(d, 6, 400)?;
    let kg = steward_testkit::Keygen::new()?;
    let alice = kg.key(steward_testkit::KeyType::Ed25519, "alice")?;
    trust_alice(d, &alice.public_line)?;
    agent_config(
        d,
        &sim,
        &format!("file = \"{}/desired.toml\"\npoll_secs = 1", d.display()),
        "interval_secs = 1\nsweep_secs = 10",
        30,
        "off",
    )?;
    let r = Run {
        dir: d.to_path_buf(),
        kg,
        key: alice.private.clone(),
    };
    let mut rng = Rng(seed | 1);
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let t0 = Instant::now();
    for k in 0..iterations {
        std::fs::write(r.path("desired.toml"), desired(k, &mut rng))?;
        let mut agent = r.start()?;
        // Up to 3 s of work, then SIGKILL at a random moment in it.
        let kill_at = Instant::now() + Duration::from_millis(300 + rng.below(2700));
        while Instant::now() < kill_at {
            acked.extend(r.sign_held(kill_at));
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = agent.0.kill();
        let _ = agent.0.wait();
    }
    // The last start: sign what is held until the node has converged.
    let agent = r.start()?;
    let settle = Instant::now() + Duration::from_secs(90);
    let converged = loop {
        acked.extend(r.sign_held(settle));
        let s = r.status();
        if s.contains("drifting 0") && s.contains("held 0") && s.contains("in flight 0") {
            break true;
        }
        if Instant::now() > settle {
            println!("not converged: {s}");
            break false;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let pid = agent.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let mut agent = agent;
    let _ = agent.0.wait();
    drop(agent);

    let journal = Journal::open(r.path("journal"))?;
    let ops = journal.all_ops()?;
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| journal.get(OpId(*id)).ok().flatten().is_none())
        .collect();
    // Which guests a destroy with a consumed signature (signer and nonce in the journal) names.
    let signed_destroys: BTreeSet<u32> = ops
        .iter()
        .filter(|o| matches!(o.action, Action::Destroy { .. }))
        .filter(|o| o.signer.is_some() && o.nonce.is_some())
        .map(|o| o.guest.get())
        .collect();
    let mut destroy_calls = 0;
    let mut over = Vec::new();
    let mut unsigned = Vec::new();
    for vmid in 900..900 + iterations {
        let n = counter(&sim.control, vmid, "destroy")?;
        destroy_calls += n;
        if n > 1 {
            over.push((vmid, n));
        }
        if n > 0 && !signed_destroys.contains(&vmid) {
            unsigned.push(vmid);
        }
    }
    let audit = journal.verify_audit_chain()?;
    println!(
        "crash agent: {iterations} kills in {:.0} s; acknowledged ops {} (lost {}); destroy calls {destroy_calls} for {} signed destroys (more than one for a guest: {over:?}; without a signed op: {unsigned:?}); converged {}; audit chain {} entries, problems {:?}",
        t0.elapsed().as_secs_f64(),
        acked.len(),
        lost.len(),
        signed_destroys.len(),
        if converged { "yes" } else { "no" },
        audit.entries,
        audit.problems
    );
    Ok(lost.is_empty()
        && over.is_empty()
        && unsigned.is_empty()
        && converged
        && audit.problems.is_empty())
}

//! `cargo xtask crash agent --iterations N`: the agent as a process, SIGKILLed at random moments
//! while it works through a scripted mix, against the `steward-pve-sim` binary, which survives
//! every kill and counts each mutating call per guest. Each round the desired state changes
//! power and memory of four guests, asks for a create and for the destroy of the guest created
//! two rounds before; meanwhile an operator signs whatever is held (real `ssh-keygen`) and
//! submits it through the local API. Then SIGKILL, and the next round restarts the agent.
//! Halfway through, alice's key is rotated out for bob's (a signed `keys.rotate` job, retried
//! with a fresh nonce until the trust store on disk has it: a kill between the nonce and the
//! file loses a rotation, never half-applies one); held ops are signed by both keys at once, so
//! whichever the agent admits counts.
//!
//! At the end the agent is started once more, every held op is signed, and the node must
//! converge. Checked: destroy calls per guest as the simulator counted them (≤ 1, and only for
//! a guest whose destroy a signed op authorized in the journal), acknowledged ops missing from
//! the journal (0), convergence, the audit chain,
//! the rotation on disk once acknowledged, and no op authorized by alice after her retirement
//! was acknowledged.

use crate::crash::Rng;
use crate::procs::{agent_config, bin, build, counter, Reaped, SimProc};
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
    /// Every operator key the harness holds (alice, then bob): each held op is signed by all.
    keys: Vec<PathBuf>,
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
            let op = self.path("op.json");
            if std::fs::write(&op, &template).is_err() {
                continue;
            }
            let mut args = vec!["submit".to_string(), op.display().to_string()];
            for (i, key) in self.keys.iter().enumerate() {
                let sig = self.path(&format!("op.json.{i}.sig"));
                let Ok(signature) = self.kg.sign(key, "op@steward", template.as_bytes()) else {
                    continue;
                };
                if std::fs::write(&sig, signature).is_ok() {
                    args.push(sig.display().to_string());
                }
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // An answer is an acknowledgement: the op it names must be in the journal.
            if let Some((0 | 1, said)) = self.cli(&args) {
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

    /// Signs (alice) and submits a `keys.rotate` job to `text`, fresh nonce; the first word of
    /// the answer (`rotated`, `replay`, `refused:…`), None when the agent did not answer.
    fn rotate(&self, text: &str, alice: &std::path::Path) -> Option<String> {
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let payload = serde_json::json!({
            "v": 1, "op": "keys.rotate", "host": "pve-a",
            "params": {"allowed_signers": text},
            "nonce": steward_testkit::nonce(),
            "not_before": fmt(now - time::Duration::minutes(1)),
            "not_after": fmt(now + time::Duration::minutes(30)),
        })
        .to_string();
        let (op, sig) = (self.path("rotate.json"), self.path("rotate.json.sig"));
        let signature = self.kg.sign(alice, "op@steward", payload.as_bytes()).ok()?;
        std::fs::write(&op, &payload).ok()?;
        std::fs::write(&sig, signature).ok()?;
        let (_, said) = self.cli(&[
            "submit",
            &op.display().to_string(),
            &sig.display().to_string(),
        ])?;
        said.split_whitespace().next().map(str::to_string)
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
    let bob = kg.key(steward_testkit::KeyType::Ed25519, "bob")?;
    let vault = kg.key(steward_testkit::KeyType::Ed25519, "vault")?;
    let vault_line = format!(
        "vault@example.org namespaces=\"recovery@steward\" {}\n",
        vault.public_line
    );
    // Kept aside: the file an auditor is given at the end (the rotation overwrites this one).
    let initial_signers = format!(
        "alice@example.org namespaces=\"op@steward\" {}\n{vault_line}",
        alice.public_line
    );
    std::fs::write(d.join("allowed_signers"), &initial_signers)?;
    let rotated = format!(
        "bob@example.org namespaces=\"op@steward\" {}\n{vault_line}",
        bob.public_line
    );
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
        keys: vec![alice.private.clone(), bob.private.clone()],
    };
    let mut rng = Rng(seed | 1);
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let t0 = Instant::now();
    let rotate_from = iterations / 2;
    let mut rotation_attempts = 0;
    // When the agent answered `rotated` (Unix ms): alice is retired from then on.
    let mut retired_at: Option<i64> = None;
    let on_disk = |d: &std::path::Path| std::fs::read_to_string(d.join("allowed_signers"));
    for k in 0..iterations {
        std::fs::write(r.path("desired.toml"), desired(k, &mut rng))?;
        let mut agent = r.start()?;
        // Up to 3 s of work, then SIGKILL at a random moment in it.
        let kill_at = Instant::now() + Duration::from_millis(300 + rng.below(2700));
        while Instant::now() < kill_at {
            if k >= rotate_from && on_disk(d)? != rotated && r.status().contains("recovered true") {
                rotation_attempts += 1;
                if r.rotate(&rotated, &alice.private).as_deref() == Some("rotated") {
                    retired_at.get_or_insert(now_ms());
                }
            }
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
    // The whole run's chain, exported and checked as an auditor would, with only the
    // allowed_signers file the run began with: every signed destroy proven, none unproven.
    let mut export = String::new();
    let mut next = 0;
    loop {
        let page = journal.audit_entries(next, 5_000)?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in &page {
            export.push_str(&serde_json::to_string(e)?);
            export.push('\n');
        }
        next = last + 1;
    }
    let offline = steward_audit::check(
        &export,
        &[steward_authz::TrustStore::parse(
            "initial allowed_signers",
            initial_signers.as_bytes(),
        )?],
        None,
    );
    let proven_destroys: BTreeSet<u32> = offline
        .rows
        .iter()
        .filter(|x| x.op == "guest.destroy" && x.verdict.is_ok())
        .filter_map(|x| x.guest)
        .collect();
    let unproven: Vec<String> = offline
        .rows
        .iter()
        .filter_map(|x| x.verdict.as_ref().err().cloned())
        .chain(offline.problems.iter().cloned())
        .collect();
    println!(
        "offline audit: {} entries, {} authorizations ({} rotations), signed destroys proven {} of {}, unproven {unproven:?}",
        offline.entries,
        offline.rows.len(),
        offline.rows.iter().filter(|x| x.op == "keys.rotate").count(),
        proven_destroys.len(),
        signed_destroys.len()
    );
    // The rotation, once acknowledged, is on disk; and nothing ran on alice's signature after.
    let rotation_kept = retired_at.is_none() || on_disk(d)? == rotated;
    let by_alice_after: Vec<u64> = ops
        .iter()
        .filter(|o| {
            o.signer
                .as_ref()
                .is_some_and(|s| s.principal.starts_with("alice"))
        })
        .filter(|o| {
            let intent = o
                .history
                .iter()
                .find(|t| t.state == steward_journal::OpState::Intent)
                .map(|t| t.at_ms);
            matches!((intent, retired_at), (Some(i), Some(r)) if i > r)
        })
        .map(|o| o.id.0)
        .collect();
    let by_bob = ops
        .iter()
        .filter(|o| {
            o.signer
                .as_ref()
                .is_some_and(|s| s.principal.starts_with("bob"))
        })
        .count();
    println!(
        "key rotation: alice -> bob from round {rotate_from}, {rotation_attempts} attempt(s), acknowledged {}; on disk after: {}; ops authorized by bob {by_bob}, by alice after her retirement: {by_alice_after:?}",
        if retired_at.is_some() { "yes" } else { "no" },
        if rotation_kept { "yes" } else { "NO" },
    );
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
        && rotation_kept
        && (iterations < 2 || retired_at.is_some())
        && by_alice_after.is_empty()
        && over.is_empty()
        && unsigned.is_empty()
        && converged
        && audit.problems.is_empty()
        && unproven.is_empty()
        && proven_destroys == signed_destroys)
}

fn now_ms() -> i64 {
    let t = time::OffsetDateTime::now_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

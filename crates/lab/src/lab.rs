//! The engine lab: an in-process simulator with the agent's two tokens, a real journal, the
//! rig recovered and running, real `ssh-keygen` keys, and the helpers tests drive it with.
//! Waiting is on the engine's progress (`passes`, `until`), never on a sleep. It must never
//! assert on time: only on what the engine and the simulator counted.

use crate::rig::{rig, sim_tokens, Rig, RigConfig, EVERYDAY};
use crate::{said, LabError, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use steward_engine::{Engine, EngineConfig, Trigger};
use steward_journal::Journal;
use steward_pve_sim::{Sim, SimConfig};
use steward_testkit::{Key, KeyType, Keygen};
use tokio::sync::{mpsc, watch};

/// The LXC template the simulator's storage holds.
pub const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

/// A simulated node with `guests` guests and the agent's two tokens; tasks take 20 ms.
pub async fn sim_with(guests: usize) -> Result<Sim> {
    Sim::start(SimConfig {
        guests,
        tokens: sim_tokens()?,
        task_time: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .map_err(|e| said("simulator")(&e))
}

/// How to set a lab up.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Guests the simulator starts with.
    pub guests: usize,
    /// The engine's sweep period.
    pub sweep: Duration,
    /// Actions in flight at once.
    pub concurrency: usize,
    /// How long each simulated task takes.
    pub task_time: Duration,
    /// The token the reader and everyday writer use (`EVERYDAY` or `ADMIN`).
    pub everyday: &'static str,
    /// The simulated cluster's other nodes (none: a standalone pve-a).
    pub peers: Vec<String>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            guests: 3,
            sweep: Duration::from_secs(60),
            concurrency: 4,
            task_time: Duration::from_millis(20),
            everyday: EVERYDAY,
            peers: Vec::new(),
        }
    }
}

/// A running engine over an in-process simulator.
pub struct Lab {
    /// The simulated node.
    pub sim: Sim,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Its journal.
    pub journal: Arc<Journal>,
    /// Wakes the loop.
    pub triggers: mpsc::UnboundedSender<Trigger>,
    /// Stops the loop.
    pub stop: watch::Sender<bool>,
    /// Mints keys and signs with `ssh-keygen`.
    pub kg: Keygen,
    /// alice, the operator the trust store admits (`op@steward`).
    pub op: Key,
    /// The allowed_signers text.
    pub text: String,
    /// How it was set up.
    pub cfg: LabConfig,
    _dir: tempfile::TempDir,
}

impl Lab {
    /// Starts a simulator, a journal and the engine over them, recovered and running.
    pub async fn start(cfg: LabConfig) -> Result<Lab> {
        let sim = Sim::start(SimConfig {
            guests: cfg.guests,
            peers: cfg.peers.clone(),
            tokens: sim_tokens()?,
            task_time: cfg.task_time,
            ..SimConfig::default()
        })
        .await
        .map_err(|e| said("simulator")(&e))?;
        let dir = tempfile::tempdir().map_err(|e| said("temp dir")(&e))?;
        let kg = Keygen::new().map_err(|e| said("ssh-keygen")(&e))?;
        let op = kg
            .key(KeyType::Ed25519, "alice")
            .map_err(|e| said("ssh-keygen")(&e))?;
        let text = format!(
            "alice@steward.test namespaces=\"op@steward\" {}\n",
            op.public_line
        );
        let journal =
            Arc::new(Journal::create(dir.path().join("journal")).map_err(|e| said("journal")(&e))?);
        let r = start(&sim, &text, journal.clone(), &cfg).await?;
        Ok(Lab {
            sim,
            engine: r.engine,
            journal,
            triggers: r.triggers,
            stop: r.stop,
            kg,
            op,
            text,
            cfg,
            _dir: dir,
        })
    }

    /// Stops the engine and starts another over the same journal and node, as a restart of
    /// the agent would.
    pub async fn restart(&mut self) -> Result<()> {
        let _ = self.stop.send(true);
        let r = start(&self.sim, &self.text, self.journal.clone(), &self.cfg).await?;
        (self.engine, self.triggers, self.stop) = (r.engine, r.triggers, r.stop);
        Ok(())
    }

    /// Another engine over this lab's node and `journal` (a second agent, or one that never
    /// ran), recovered and running.
    pub async fn engine_over(&self, journal: Arc<Journal>) -> Result<Rig> {
        start(&self.sim, &self.text, journal, &self.cfg).await
    }

    /// The agent's executor against this lab's node (as the gate would hold it).
    pub fn executor(&self) -> Result<steward_engine::NodeExecutor> {
        crate::rig::executor(
            &self.sim.addr.to_string(),
            &self.sim.fingerprint,
            self.cfg.everyday,
            Duration::from_secs(10),
        )
    }

    /// Hands the loop a desired-state document (JSON, as a hub serves it).
    pub fn desire(&self, doc: Value) -> Result<()> {
        let d = steward_planner::document::parse_json("lab", &doc.to_string())
            .map_err(|e| said("desired state")(&e))?;
        self.triggers
            .send(Trigger::Desired(Arc::new(d)))
            .map_err(|_| LabError("the engine's loop has stopped".into()))
    }

    /// Waits (30 s at most) until `f` holds; the error names `what` and the engine's status.
    pub async fn wait_for(&self, what: &str, mut f: impl FnMut(&Lab) -> bool) -> Result<()> {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f(self) {
            if tokio::time::Instant::now() >= end {
                return Err(LabError(format!(
                    "timed out waiting for {what}: {:?}",
                    self.engine.status_now()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// [`Lab::wait_for`] for tests: panics, naming `what`, when it does not happen.
    pub async fn until(&self, what: &str, f: impl FnMut(&Lab) -> bool) {
        if let Err(e) = self.wait_for(what, f).await {
            panic!("{e}");
        }
    }

    /// Waits until the engine ran `n` more passes (asking for them), so that an assert that
    /// nothing happened follows the engine's progress, not a sleep.
    pub async fn passes(&self, n: u64) {
        let start = self.engine.status_now().passes;
        self.until(&format!("{n} more passes"), |l| {
            let _ = l.triggers.send(Trigger::ReconcileNow);
            l.engine.status_now().passes >= start + n
        })
        .await;
    }

    /// Mutating calls the simulator counted for `vmid`.
    pub fn writes(&self, vmid: u32) -> u64 {
        self.sim.with_node(|n| {
            n.st.counters
                .calls
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{vmid} ")))
                .map(|(_, c)| *c)
                .sum()
        })
    }

    /// Mutating calls the simulator counted, all guests.
    pub fn all_writes(&self) -> u64 {
        self.sim.with_node(|n| n.st.counters.calls.values().sum())
    }
}

async fn start(sim: &Sim, text: &str, journal: Arc<Journal>, cfg: &LabConfig) -> Result<Rig> {
    rig(
        &sim.addr.to_string(),
        &sim.fingerprint,
        journal,
        RigConfig {
            engine: EngineConfig {
                interval: Duration::from_millis(150),
                concurrency: cfg.concurrency,
                sweep_period: cfg.sweep,
                task_deadline: Duration::from_secs(10),
                backoff_base: Duration::from_millis(50),
                backoff_cap: Duration::from_millis(400),
                ..EngineConfig::default()
            },
            signers: text.to_string(),
            everyday: cfg.everyday,
            run: true,
        },
    )
    .await
}

/// A signed `guest.config` job as a hub would compose it: `params` as given, a fresh nonce and
/// a thirty-minute window.
pub fn config_job(guest: u32, params: Value) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    serde_json::to_vec(&json!({
        "v": 1, "op": "guest.config", "host": "pve-a", "guest": guest, "params": params,
        "nonce": steward_testkit::nonce(),
        "not_before": fmt(now - time::Duration::minutes(1)),
        "not_after": fmt(now + time::Duration::minutes(30)),
    }))
    .unwrap_or_default()
}

/// Calls the simulator counted for `vmid` by token user `user` (`steward@pve!agent`).
pub fn calls_by(l: &Lab, vmid: u32, user: &str) -> u64 {
    l.sim.with_node(|n| {
        n.st.counters
            .calls
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{vmid} ")) && k.ends_with(&format!(" {user}")))
            .map(|(_, c)| *c)
            .sum()
    })
}

//! The engine lab the workspace's engine tests share: a simulator with the agent's two tokens
//! (the everyday one with what `steward-agent setup-token` grants it), a real journal, the gate
//! over both tokens' writers, the engine recovered and running, real `ssh-keygen` keys; and the
//! helpers to drive it. Each test binary uses a part of it.

// Each test binary uses a different part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_engine::{Engine, EngineConfig, NodeExecutor, Trigger};
use steward_gate::{Gate, GateConfig};
use steward_journal::Journal;
use steward_proxmox_client::{tls, ApiToken, Endpoint, PveClient, PveWriter, Trust};
use steward_pve_sim::{Privileges, Sim, SimConfig, SimToken};
use steward_testkit::{Key, KeyType, Keygen};
use tokio::sync::{mpsc, watch};

pub const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";
pub const USER: &str = "steward@pve!admin";
pub const EVERYDAY: &str = "steward@pve!agent=5f1e3c2a-0000-4000-8000-00000000e7e1";
pub const EVERYDAY_USER: &str = "steward@pve!agent";

/// What `steward-agent setup-token` grants the everyday token: observe, power, and the config
/// keys the planner manages (no VM.Allocate, disk, snapshot or backup privileges).
pub fn everyday_privileges() -> Privileges {
    Privileges::role_on("PVEAuditor", "/").unwrap().and(
        "/vms",
        &[
            "VM.Audit",
            "VM.PowerMgmt",
            "VM.Config.Memory",
            "VM.Config.CPU",
            "VM.Config.Options",
        ],
    )
}

/// The agent's executor: the everyday token's writer and the admin token's.
pub fn executor(sim: &Sim) -> NodeExecutor {
    let w = |t: &str| PveWriter::new(endpoint(sim), ApiToken::parse(t).unwrap(), "pve-a").unwrap();
    NodeExecutor::new(
        Box::new(w(EVERYDAY)),
        Box::new(w(ADMIN)),
        Duration::from_secs(10),
    )
}
pub const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

pub struct Lab {
    pub sim: Sim,
    pub engine: Arc<Engine>,
    pub journal: Arc<Journal>,
    pub triggers: mpsc::UnboundedSender<Trigger>,
    pub stop: watch::Sender<bool>,
    pub kg: Keygen,
    pub op: Key,
    pub text: String,
    pub sweep: Duration,
    pub concurrency: usize,
    pub _dir: tempfile::TempDir,
}

pub fn endpoint(s: &Sim) -> Endpoint {
    Endpoint {
        addr: s.addr.to_string(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(tls::parse_fingerprint(&s.fingerprint).unwrap()),
        timeout: Duration::from_secs(5),
        keep_alive: true,
    }
}

/// A simulated node with `guests` guests and the agent's two tokens; tasks take 20 ms.
pub async fn sim_with(guests: usize) -> Sim {
    Sim::start(SimConfig {
        guests,
        tokens: vec![
            (SimToken::parse(EVERYDAY).unwrap(), everyday_privileges()),
            (SimToken::parse(ADMIN).unwrap(), Privileges::all()),
        ],
        task_time: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

pub async fn lab_with(guests: usize, sweep: Duration, concurrency: usize) -> Lab {
    let sim = sim_with(guests).await;
    let dir = tempfile::tempdir().unwrap();
    let kg = Keygen::new().unwrap();
    let op = kg.key(KeyType::Ed25519, "alice").unwrap();
    let text = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\n",
        op.public_line
    );
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    let (engine, triggers, stop) =
        start_engine(&sim, &text, journal.clone(), sweep, concurrency).await;
    Lab {
        sim,
        engine,
        journal,
        triggers,
        stop,
        kg,
        op,
        text,
        sweep,
        concurrency,
        _dir: dir,
    }
}

/// An engine (gate, both tokens' writers, reader) over `journal` against `sim`, recovered and
/// running.
pub async fn start_engine(
    sim: &Sim,
    text: &str,
    journal: Arc<Journal>,
    sweep: Duration,
    concurrency: usize,
) -> (
    Arc<Engine>,
    mpsc::UnboundedSender<Trigger>,
    watch::Sender<bool>,
) {
    let verifier = Verifier::new(
        TrustStore::parse("allowed_signers", text.as_bytes()).unwrap(),
        VerifyConfig::new("pve-a"),
    )
    .unwrap();
    let gate = Gate::new(
        verifier,
        journal.clone(),
        Box::new(executor(sim)),
        GateConfig::default(),
    );
    let reader =
        PveClient::new(endpoint(sim), ApiToken::parse(EVERYDAY).unwrap(), "pve-a").unwrap();
    let cfg = EngineConfig {
        interval: Duration::from_millis(150),
        concurrency,
        sweep_period: sweep,
        task_deadline: Duration::from_secs(10),
        token_user: USER.into(),
        everyday_token_user: EVERYDAY_USER.into(),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(400),
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(cfg, Arc::new(reader), gate, journal));
    let recovered = engine.recover().await.unwrap();
    let (triggers, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(recovered.run(rx, stopped, Duration::from_secs(5)));
    (engine, triggers, stop)
}

impl Lab {
    /// Stops the engine and starts another over the same journal and node, as a restart of
    /// the agent would.
    pub async fn restart(&mut self) {
        let _ = self.stop.send(true);
        let (engine, triggers, stop) = start_engine(
            &self.sim,
            &self.text,
            self.journal.clone(),
            self.sweep,
            self.concurrency,
        )
        .await;
        (self.engine, self.triggers, self.stop) = (engine, triggers, stop);
    }

    pub fn desire(&self, doc: Value) {
        let d = steward_planner::document::parse_json("test", &doc.to_string()).unwrap();
        self.triggers.send(Trigger::Desired(Arc::new(d))).unwrap();
    }

    pub async fn until(&self, what: &str, mut f: impl FnMut(&Lab) -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for {what}: {:?}",
                self.engine.status_now()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
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

    pub fn all_writes(&self) -> u64 {
        self.sim.with_node(|n| n.st.counters.calls.values().sum())
    }
}

/// A signed `guest.config` job as a hub would compose it: `params` as given, a fresh nonce and a
/// thirty-minute window.
pub fn config_job(guest: u32, params: Value) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    serde_json::to_vec(&json!({
        "v": 1, "op": "guest.config", "host": "pve-a", "guest": guest, "params": params,
        "nonce": steward_testkit::nonce(),
        "not_before": fmt(now - time::Duration::minutes(1)),
        "not_after": fmt(now + time::Duration::minutes(30)),
    }))
    .unwrap()
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

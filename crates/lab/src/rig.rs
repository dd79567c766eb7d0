//! The engine as the agent builds it, against a simulator at any address (in-process or its
//! own process): the gate over the everyday and the admin token's writers, a reader, a real
//! journal, recovery, and (when asked) the loop. It must never build the engine another way
//! than `steward-agent run` does.

use crate::{said, Result};
use std::sync::Arc;
use std::time::Duration;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_engine::{Engine, EngineConfig, NodeExecutor, Recovered, Trigger};
use steward_gate::{Gate, GateConfig};
use steward_journal::Journal;
use steward_proxmox_client::{tls, ApiToken, Endpoint, PveClient, PveWriter, Trust};
use steward_pve_sim::{Privileges, SimToken};
use tokio::sync::{mpsc, watch};

/// The admin token (full privileges): creates, provenance destroys and the signed path.
pub const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";
/// The admin token's user, as task UPIDs name it.
pub const USER: &str = "steward@pve!admin";
/// The everyday token: observe, power and the config keys the planner manages.
pub const EVERYDAY: &str = "steward@pve!agent=5f1e3c2a-0000-4000-8000-00000000e7e1";
/// The everyday token's user.
pub const EVERYDAY_USER: &str = "steward@pve!agent";

/// What `steward-agent setup-token` grants the everyday token: observe, power, and the config
/// keys the planner manages (no VM.Allocate, disk, snapshot or backup privileges).
pub fn everyday_privileges() -> Privileges {
    // PVEAuditor is a role the simulator knows; were it not, the token would have fewer
    // privileges, never more, and the tests would say so with a 403.
    Privileges::role_on("PVEAuditor", "/")
        .unwrap_or_default()
        .and(
            "/vms",
            &[
                "VM.Audit",
                "VM.PowerMgmt",
                "VM.Config.Memory",
                "VM.Config.CPU",
                "VM.Config.Options",
                "VM.Config.Network",
                "VM.Config.Cloudinit",
            ],
        )
}

/// The agent's two tokens as the simulator knows them, each with its privileges.
pub fn sim_tokens() -> Result<Vec<(SimToken, Privileges)>> {
    let t = |s: &str| SimToken::parse(s).map_err(|e| said("token")(&e));
    Ok(vec![
        (t(EVERYDAY)?, everyday_privileges()),
        (t(ADMIN)?, Privileges::all()),
    ])
}

/// The simulator at `addr`, trusted by its certificate's `fingerprint`.
pub fn endpoint(addr: &str, fingerprint: &str) -> Result<Endpoint> {
    Ok(Endpoint {
        addr: addr.to_string(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(
            tls::parse_fingerprint(fingerprint).map_err(|e| said("fingerprint")(&e))?,
        ),
        timeout: Duration::from_secs(30),
        keep_alive: true,
    })
}

/// The agent's executor against the simulator at `addr`: the `everyday` token's writer and
/// the admin token's, each task given `deadline`.
pub fn executor(
    addr: &str,
    fingerprint: &str,
    everyday: &str,
    deadline: Duration,
) -> Result<NodeExecutor> {
    let writer = |t: &str| -> Result<PveWriter> {
        let token = ApiToken::parse(t).map_err(|e| said("token")(&e))?;
        PveWriter::new(endpoint(addr, fingerprint)?, token, "pve-a").map_err(|e| said("writer")(&e))
    };
    Ok(NodeExecutor::new(
        Box::new(writer(everyday)?),
        Box::new(writer(ADMIN)?),
        deadline,
    ))
}

/// How to build a rig.
pub struct RigConfig {
    /// The engine's settings (`token_user` and `everyday_token_user` are set from the tokens).
    pub engine: EngineConfig,
    /// The allowed_signers text the gate verifies with (empty: nothing destructive runs).
    pub signers: String,
    /// The token the reader and the everyday writer use (`EVERYDAY`, or `ADMIN` where
    /// privileges are not what is measured).
    pub everyday: &'static str,
    /// Start the loop after recovery.
    pub run: bool,
}

impl Default for RigConfig {
    fn default() -> Self {
        RigConfig {
            engine: EngineConfig::default(),
            signers: String::new(),
            everyday: EVERYDAY,
            run: true,
        }
    }
}

/// A built engine and what drives it.
pub struct Rig {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The reader it observes with (its request counter is the engine's).
    pub reader: Arc<PveClient>,
    /// Wakes the loop (desired state, reconcile-now).
    pub triggers: mpsc::UnboundedSender<Trigger>,
    /// Stops the loop (send `true`).
    pub stop: watch::Sender<bool>,
    /// The recovered engine, when the loop was not started (`run: false`).
    pub recovered: Option<Recovered>,
}

fn user_of(token: &str) -> String {
    token.split_once('=').map_or(token, |(u, _)| u).to_string()
}

/// Builds the engine over `journal` against the simulator at `addr`, recovers it and, when
/// `cfg.run`, starts its loop.
pub async fn rig(
    addr: &str,
    fingerprint: &str,
    journal: Arc<Journal>,
    cfg: RigConfig,
) -> Result<Rig> {
    let verifier = Verifier::new(
        TrustStore::parse("allowed_signers", cfg.signers.as_bytes())
            .map_err(|e| said("allowed_signers")(&e))?,
        VerifyConfig::new("pve-a"),
    )
    .map_err(|e| said("verifier")(&e))?;
    let gate = Gate::new(
        verifier,
        journal.clone(),
        Box::new(executor(
            addr,
            fingerprint,
            cfg.everyday,
            cfg.engine.task_deadline,
        )?),
        GateConfig::default(),
    );
    let token = ApiToken::parse(cfg.everyday).map_err(|e| said("token")(&e))?;
    let reader = Arc::new(
        PveClient::new(endpoint(addr, fingerprint)?, token, "pve-a")
            .map_err(|e| said("reader")(&e))?,
    );
    let engine_cfg = EngineConfig {
        token_user: USER.into(),
        everyday_token_user: if cfg.everyday == ADMIN {
            String::new()
        } else {
            user_of(cfg.everyday)
        },
        ..cfg.engine
    };
    // As the agent: a guest's volumes are read with the admin token (Proxmox shows them only
    // to a token with VM.Config.Disk on the guest).
    let volumes = Arc::new(
        PveClient::new(
            endpoint(addr, fingerprint)?,
            ApiToken::parse(ADMIN).map_err(|e| said("token")(&e))?,
            "pve-a",
        )
        .map_err(|e| said("volume reader")(&e))?,
    );
    let engine = Arc::new(
        Engine::new(engine_cfg, reader.clone(), gate, journal).with_volume_reader(volumes),
    );
    let recovered = engine.recover().await.map_err(|e| said("recovery")(&e))?;
    let (triggers, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let recovered = if cfg.run {
        tokio::spawn(recovered.run(rx, stopped, Duration::from_secs(10)));
        None
    } else {
        Some(recovered)
    };
    Ok(Rig {
        engine,
        reader,
        triggers,
        stop,
        recovered,
    })
}

//! The engine half of the adversarial matrix: the real engine and gate against the in-process
//! simulator over TLS, with real `ssh-keygen` signatures. Cases a gate alone cannot show: a held
//! op superseded when its guest changes under it (gone, or another guest at its VMID), a
//! desired-state delta and a signed job for the same destroy, and a replay across a restart of
//! the whole engine. "got" names what happened and what the simulator counted.

use crate::matrix_gate::GateRow;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_engine::{Engine, EngineConfig, NodeExecutor, Trigger};
use steward_gate::{Decision, Gate, GateConfig};
use steward_journal::{Journal, OpId, OpState};
use steward_proxmox_client::{tls, ApiToken, Endpoint, PveClient, PveWriter, Trust};
use steward_pve_sim::{Privileges, Sim, SimConfig, SimToken};
use steward_testkit::{Key, KeyType, Keygen};
use tokio::sync::{mpsc, watch};

const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";

struct Lab {
    sim: Sim,
    engine: Arc<Engine>,
    journal: Arc<Journal>,
    triggers: mpsc::UnboundedSender<Trigger>,
    stop: watch::Sender<bool>,
    kg: Keygen,
    alice: Key,
    text: String,
}

fn endpoint(s: &Sim) -> Result<Endpoint> {
    Ok(Endpoint {
        addr: s.addr.to_string(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(
            tls::parse_fingerprint(&s.fingerprint).map_err(anyhow::Error::msg)?,
        ),
        timeout: Duration::from_secs(5),
        keep_alive: true,
    })
}

/// An engine over `journal`, against `sim`, running.
async fn engine(
    sim: &Sim,
    text: &str,
    journal: Arc<Journal>,
) -> Result<(
    Arc<Engine>,
    mpsc::UnboundedSender<Trigger>,
    watch::Sender<bool>,
)> {
    let verifier = Verifier::new(
        TrustStore::parse("matrix/engine_signers", text.as_bytes())?,
        VerifyConfig::new("pve-a"),
    )?;
    // One token with every privilege plays both of the agent's tokens here: the matrix is
    // about the gate's decisions, not Proxmox's privileges.
    let writer = || -> Result<PveWriter> {
        PveWriter::new(
            endpoint(sim)?,
            ApiToken::parse(ADMIN).map_err(anyhow::Error::msg)?,
            "pve-a",
        )
        .map_err(anyhow::Error::msg)
    };
    let gate = Gate::new(
        verifier,
        journal.clone(),
        Box::new(NodeExecutor::new(
            Box::new(writer()?),
            Box::new(writer()?),
            Duration::from_secs(10),
        )),
        GateConfig::default(),
    );
    let reader = PveClient::new(
        endpoint(sim)?,
        ApiToken::parse(ADMIN).map_err(anyhow::Error::msg)?,
        "pve-a",
    )
    .map_err(anyhow::Error::msg)?;
    let cfg = EngineConfig {
        interval: Duration::from_millis(150),
        // A long sweep: config changes are seen through the list and the digest, as in the field.
        sweep_period: Duration::from_secs(3600),
        task_deadline: Duration::from_secs(10),
        token_user: "steward@pve!admin".into(),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(400),
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(cfg, Arc::new(reader), gate, journal));
    let recovered = engine.recover().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (triggers, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(recovered.run(rx, stopped, Duration::from_secs(5)));
    Ok((engine, triggers, stop))
}

impl Lab {
    async fn new(dir: &std::path::Path) -> Result<Lab> {
        let sim = Sim::start(SimConfig {
            guests: 6,
            tokens: vec![(
                SimToken::parse(ADMIN).map_err(anyhow::Error::msg)?,
                Privileges::all(),
            )],
            task_time: Duration::from_millis(20),
            ..SimConfig::default()
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let kg = Keygen::new()?;
        let alice = kg.key(KeyType::Ed25519, "alice")?;
        let text = format!(
            "alice@steward.test namespaces=\"op@steward\" {}\n",
            alice.public_line
        );
        let journal = Arc::new(Journal::create(dir.join("journal"))?);
        let (engine, triggers, stop) = engine(&sim, &text, journal.clone()).await?;
        Ok(Lab {
            sim,
            engine,
            journal,
            triggers,
            stop,
            kg,
            alice,
            text,
        })
    }

    fn desire(&self, doc: serde_json::Value) -> Result<()> {
        let d = steward_planner::document::parse_json("matrix", &doc.to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.triggers.send(Trigger::Desired(Arc::new(d)))?;
        Ok(())
    }

    async fn until(&self, what: &str, mut f: impl FnMut(&Lab) -> bool) -> Result<()> {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f(self) {
            anyhow::ensure!(tokio::time::Instant::now() < end, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The held op for `vmid` and the exact bytes to sign, once the engine holds it.
    async fn held(&self, vmid: u32) -> Result<(OpId, Vec<u8>)> {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(h) = self
                .engine
                .held()
                .await
                .into_iter()
                .find(|h| h.guest == vmid)
            {
                return Ok((
                    steward_journal::OpId(h.op),
                    serde_json::to_vec(&h.template)?,
                ));
            }
            anyhow::ensure!(tokio::time::Instant::now() < end, "{vmid} never held");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(self.kg.sign(&self.alice.private, "op@steward", bytes)?)
    }

    fn destroys(&self, vmid: u32) -> u64 {
        self.sim.with_node(|n| n.st.counters.of(vmid, "destroy"))
    }

    fn state(&self, op: OpId) -> String {
        match self
            .journal
            .get(op)
            .ok()
            .flatten()
            .map(|r| r.state().clone())
        {
            Some(OpState::Refused { code, .. }) => format!("refused:{code}"),
            Some(s) => s.name().to_string(),
            None => "gone".into(),
        }
    }
}

/// A signed `guest.config` job as a hub would compose it.
fn config_job(guest: u32, params: serde_json::Value) -> Result<Vec<u8>> {
    use time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    Ok(serde_json::to_vec(&serde_json::json!({
        "v": 1, "op": "guest.config", "host": "pve-a", "guest": guest, "params": params,
        "nonce": steward_testkit::nonce(),
        "not_before": (now - time::Duration::minutes(1)).format(&Rfc3339)?,
        "not_after": (now + time::Duration::minutes(30)).format(&Rfc3339)?,
    }))?)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the engine cases.
pub fn run() -> Result<Vec<GateRow>> {
    crate::matrix_gate::block_on(cases())
}

async fn cases() -> Result<Vec<GateRow>> {
    let dir = tempfile::tempdir()?;
    let l = Lab::new(dir.path()).await.context("engine lab")?;
    let mut rows: Vec<GateRow> = Vec::new();
    use serde_json::json;

    // 101 and 103 absent: both held. Then 101 is replaced by another guest and 103 vanishes.
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "absent"},
        {"vmid": 103, "kind": "qemu", "state": "absent"}
    ]}))?;
    let (op101, t101) = l.held(101).await?;
    let (op103, _) = l.held(103).await?;
    let s101 = l.sign(&t101)?;
    l.sim.with_node(|n| {
        n.remove_guest(101);
        n.add_guest(
            101,
            steward_pve_sim::Kind::Qemu,
            [(
                "vmgenid".to_string(),
                "0badc0de-0000-4000-8000-00000000c057".to_string(),
            )]
            .into(),
            false,
        );
        n.remove_guest(103);
    });
    l.until("both superseded", |l| {
        l.state(op101) == "refused:superseded" && l.state(op103) == "refused:superseded"
    })
    .await?;
    let d = l.engine.present(&t101, &[s101.to_vec()]).await.decision;
    let again = l.engine.present(&t101, &[s101.to_vec()]).await.decision;
    rows.push((
        "engine: a held destroy whose VMID another guest took is superseded; its signature then runs nothing, as a release or as a job".into(),
        "refused:superseded; destroy calls 0".into(),
        format!("{}; destroy calls {}", l.state(op101), l.destroys(101)),
        format!("release: {}, job: {}", d.label(), again.label()),
    ));
    rows.push((
        "engine: a held destroy whose guest vanished is superseded".into(),
        "refused:superseded".into(),
        l.state(op103),
        String::new(),
    ));

    // 104: the desired state asks for the destroy (held), and a signed job for the same destroy
    // arrives: one destroy, and the held delta is not run again.
    l.desire(json!({"version": 1, "generation": 2, "guests": [
        {"vmid": 104, "kind": "qemu", "state": "absent"}
    ]}))?;
    let (op104, t104) = l.held(104).await?;
    let mut job: serde_json::Value = serde_json::from_slice(&t104)?;
    job["nonce"] = json!(steward_testkit::nonce());
    let job = serde_json::to_vec(&job)?;
    let d = l.engine.present(&job, &[l.sign(&job)?]).await.decision;
    l.until("104 gone and the held op settled", |l| {
        !l.sim.with_node(|n| n.st.guests.contains_key(&104))
            && l.state(op104) != "pending_signature"
    })
    .await?;
    let late = l.engine.present(&t104, &[l.sign(&t104)?]).await.decision;
    rows.push((
        "engine: a signed job and a held desired-state delta for the same destroy: it runs once"
            .into(),
        "executed; destroy calls 1".into(),
        format!("{}; destroy calls {}", d.label(), l.destroys(104)),
        format!(
            "held op then {}; its own signature later: {}",
            l.state(op104),
            late.label()
        ),
    ));

    // 100 (security review, finding 1): `unused0` holds a scratch volume; a hub composes a
    // signed disk change whose `removes` names the guest's system disk instead.
    let scratch = l.sim.with_node(|n| {
        let v = n.st.volumes.allocate(
            "local-lvm",
            100,
            4 << 30,
            steward_pve_sim::Kind::Qemu,
            unix_now(),
        );
        if let (Ok(v), Some(g)) = (&v, n.st.guests.get_mut(&100)) {
            g.config.insert("unused0".into(), v.clone());
        }
        v
    });
    let scratch = scratch.map_err(anyhow::Error::msg)?;
    let (digest, identity) = l
        .sim
        .with_node(|n| {
            n.st.guests.get(&100).map(|g| {
                (
                    steward_pve_sim::Node::digest(g),
                    format!(
                        "vmgenid:{}",
                        g.config.get("vmgenid").cloned().unwrap_or_default()
                    ),
                )
            })
        })
        .context("guest 100")?;
    let params = |named: &str| {
        json!({"kind": "qemu", "set": {}, "delete": ["unused0"], "digest": digest,
               "removes": {"unused0": named}, "identity": identity})
    };
    let lie = config_job(100, params("local-lvm:vm-100-disk-0"))?;
    let d = l.engine.present(&lie, &[l.sign(&lie)?]).await.decision;
    let kept = l
        .sim
        .with_node(|n| n.st.volumes.owned_by(100).contains(&scratch));
    rows.push((
        "engine: a signed disk change whose `removes` names another volume than the slot holds (finding 1)".into(),
        "refused:binding_mismatch; volume kept; config calls 0".into(),
        format!(
            "{}; volume {}; config calls {}",
            d.label(),
            if kept { "kept" } else { "destroyed" },
            l.sim.with_node(|n| n.st.counters.of(100, "config"))
        ),
        crate::matrix_gate::detail(&d),
    ));
    let truth = config_job(100, params(&scratch))?;
    let d = l.engine.present(&truth, &[l.sign(&truth)?]).await.decision;
    let left = l.sim.with_node(|n| n.st.volumes.owned_by(100));
    rows.push((
        "engine: the same change naming the volume the slot holds removes exactly that volume"
            .into(),
        "executed; scratch removed, system disk kept".into(),
        format!(
            "{}; scratch {}, system disk {}",
            d.label(),
            if left.contains(&scratch) {
                "kept"
            } else {
                "removed"
            },
            if left.iter().any(|v| v == "local-lvm:vm-100-disk-0") {
                "kept"
            } else {
                "removed"
            }
        ),
        crate::matrix_gate::detail(&d),
    ));

    // 105 (finding 2): an LXC destroy is held and signed, the signature withheld; 105 leaves
    // the node, a new 105 is created with the old MAC on net1, and the signature comes as a job.
    l.desire(json!({"version": 1, "generation": 4, "guests": [
        {"vmid": 105, "kind": "lxc", "state": "absent"}
    ]}))?;
    let (op105, t105) = l.held(105).await?;
    let template: serde_json::Value = serde_json::from_slice(&t105)?;
    let mac = template["params"]["identity"]
        .as_str()
        .and_then(|i| i.strip_prefix("hwaddr:"))
        .context("an LXC identity")?
        .to_string();
    let withheld = l.sign(&t105)?;
    l.sim.with_node(|n| n.remove_guest(105));
    l.until("105's held op superseded", |l| {
        l.state(op105) == "refused:superseded"
    })
    .await?;
    l.desire(json!({"version": 1, "generation": 5, "guests": [
        {"vmid": 105, "kind": "lxc", "state": "stopped",
         "create": {"ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                    "rootfs": "local-lvm:1", "net1": format!("name=eth1,bridge=vmbr0,hwaddr={mac}")}}
    ]}))?;
    l.until("a new 105", |l| {
        l.sim
            .with_node(|n| n.st.guests.get(&105).is_some_and(|g| g.lock.is_none()))
    })
    .await?;
    let forged = l.sim.with_node(|n| {
        n.st.guests
            .get(&105)
            .and_then(|g| g.config.get("net1"))
            .is_some_and(|v| v.to_ascii_uppercase().contains(&mac))
    });
    let d = l.engine.present(&t105, &[withheld.to_vec()]).await.decision;
    rows.push((
        "engine: a superseded template sent later as a job, its VMID recreated with the old MAC on net1 (finding 2)".into(),
        "replay; MAC the agent's; destroy calls 0".into(),
        format!(
            "{}; MAC {}; destroy calls {}",
            d.label(),
            if forged { "the hub's" } else { "the agent's" },
            l.destroys(105)
        ),
        crate::matrix_gate::detail(&d),
    ));

    // 100: signed and run, then the whole engine restarts over the same journal and the
    // signature comes again.
    l.desire(json!({"version": 1, "generation": 3, "guests": [
        {"vmid": 100, "kind": "qemu", "state": "absent"}
    ]}))?;
    let (_, t100) = l.held(100).await?;
    let s100 = l.sign(&t100)?;
    let first = l.engine.present(&t100, &[s100.to_vec()]).await.decision;
    let _ = l.stop.send(true);
    let Lab {
        sim,
        engine: old,
        journal,
        text,
        ..
    } = l;
    drop(old);
    let (fresh, _triggers, stop) = engine(&sim, &text, journal).await?;
    let replay = fresh.present(&t100, &[s100.to_vec()]).await.decision;
    let destroys = sim.with_node(|n| n.st.counters.of(100, "destroy"));
    rows.push((
        "engine: a signature presented again after the engine restarted over its journal is a replay".into(),
        "executed, then replay; destroy calls 1".into(),
        format!(
            "{}, then {}; destroy calls {destroys}",
            first.label(),
            replay.label()
        ),
        match &replay {
            Decision::Replay { first: Some(f) } => format!("first: {} {}", f.id, f.state().name()),
            _ => String::new(),
        },
    ));
    let _ = stop.send(true);
    Ok(rows)
}

//! The engine half of the adversarial matrix: the real engine and gate against the in-process
//! simulator over TLS, with real `ssh-keygen` signatures. Cases a gate alone cannot show: a held
//! op superseded when its guest changes under it (gone, or another guest at its VMID), a
//! desired-state delta and a signed job for the same destroy, and a replay across a restart of
//! the whole engine. "got" names what happened and what the simulator counted.

use crate::matrix_gate::GateRow;
use anyhow::{Context, Result};
use std::time::Duration;
use steward_gate::Decision;
use steward_journal::{OpId, OpState};
use steward_lab::{config_job, LabConfig};

/// The matrix's engine lab: `steward_lab::Lab` with one token playing both of the agent's
/// (the matrix is about the gate's decisions, not Proxmox's privileges), a long sweep (config
/// changes are seen through the list and the digest, as in the field), and what the cases ask
/// of it.
struct Lab(steward_lab::Lab);

impl std::ops::Deref for Lab {
    type Target = steward_lab::Lab;
    fn deref(&self) -> &steward_lab::Lab {
        &self.0
    }
}

impl Lab {
    async fn new() -> Result<Lab> {
        Ok(Lab(steward_lab::Lab::start(LabConfig {
            guests: 6,
            sweep: Duration::from_secs(3600),
            everyday: steward_lab::ADMIN,
            ..LabConfig::default()
        })
        .await?))
    }

    async fn until(&self, what: &str, f: impl FnMut(&steward_lab::Lab) -> bool) -> Result<()> {
        Ok(self.0.wait_for(what, f).await?)
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
        Ok(self.kg.sign(&self.op.private, "op@steward", bytes)?)
    }

    fn destroys(&self, vmid: u32) -> u64 {
        self.sim.with_node(|n| n.st.counters.of(vmid, "destroy"))
    }
}

/// What the journal says of `op`: its state, `refused:<code>`, or `gone`.
fn state(l: &steward_lab::Lab, op: OpId) -> String {
    match l.journal.get(op).ok().flatten().map(|r| r.state().clone()) {
        Some(OpState::Refused { code, .. }) => format!("refused:{code}"),
        Some(s) => s.name().to_string(),
        None => "gone".into(),
    }
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
    let l = Lab::new().await.context("engine lab")?;
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
        state(l, op101) == "refused:superseded" && state(l, op103) == "refused:superseded"
    })
    .await?;
    let d = l.engine.present(&t101, &[s101.to_vec()]).await.decision;
    let again = l.engine.present(&t101, &[s101.to_vec()]).await.decision;
    rows.push((
        "engine: a held destroy whose VMID another guest took is superseded; its signature then runs nothing, as a release or as a job".into(),
        "refused:superseded; destroy calls 0".into(),
        format!("{}; destroy calls {}", state(&l, op101), l.destroys(101)),
        format!("release: {}, job: {}", d.label(), again.label()),
    ));
    rows.push((
        "engine: a held destroy whose guest vanished is superseded".into(),
        "refused:superseded".into(),
        state(&l, op103),
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
            && state(l, op104) != "pending_signature"
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
            state(&l, op104),
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
    let lie = config_job(100, params("local-lvm:vm-100-disk-0"));
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
    let truth = config_job(100, params(&scratch));
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
        state(l, op105) == "refused:superseded"
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
    let mut l = l;
    l.0.restart().await?;
    let replay = l.engine.present(&t100, &[s100.to_vec()]).await.decision;
    let destroys = l.destroys(100);
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
    let _ = l.stop.send(true);
    Ok(rows)
}

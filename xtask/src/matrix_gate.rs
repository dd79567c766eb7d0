//! The gate half of the adversarial matrix: minted with real `ssh-keygen`, run against the real
//! gate over a real (temporary) journal with an executor that only counts. "got" is the gate's
//! decision label (`executed`, `pending_signature`, `refused:<code>`, `replay`, `rotated`).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_gate::{Decision, Gate, GateConfig, Submission};
use steward_journal::Journal;
use steward_lab::FakeExecutor;
use steward_model::{Action, GuestKind, Vmid};
use steward_testkit::{Key, KeyType, Keygen};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

pub(crate) const HOST: &str = "pve-a";

/// One gate case: name, expected label, got label, detail.
pub type GateRow = (String, String, String, String);

struct Lab {
    kg: Keygen,
    op: Key,
    recovery: Key,
    dir: tempfile::TempDir,
    exec: FakeExecutor,
    gate: Arc<Gate>,
    now: OffsetDateTime,
}

fn signers_text(op: &Key, recovery: &Key) -> String {
    format!(
        "alice@steward.test namespaces=\"op@steward\" {}\nvault@steward.test namespaces=\"recovery@steward\" {}\n",
        op.public_line, recovery.public_line
    )
}

fn make_gate(text: &str, journal: &Path, exec: FakeExecutor, path: PathBuf) -> Result<Gate> {
    let store = TrustStore::parse("matrix/gate_signers", text.as_bytes())?;
    let verifier = Verifier::new(store, VerifyConfig::new(HOST))?;
    Ok(Gate::new(
        verifier,
        Arc::new(Journal::open_or_create(journal)?),
        Box::new(exec),
        GateConfig {
            trust_store_path: Some(path),
            ..GateConfig::default()
        },
    ))
}

fn vmid(n: u32) -> Result<Vmid> {
    Ok(Vmid::new(u64::from(n))?)
}

pub(crate) fn destroy(n: u32) -> Result<Action> {
    Ok(Action::Destroy {
        vmid: vmid(n)?,
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: true,
    })
}

/// A destroy of referenced volumes only, as the agent's own compensation and scratch clean-up
/// send it.
fn own_destroy(n: u32) -> Result<Action> {
    Ok(Action::Destroy {
        vmid: vmid(n)?,
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: false,
    })
}

pub(crate) fn held(d: &Decision) -> Result<(steward_journal::OpId, String)> {
    match d {
        Decision::PendingSignature { op, template } => Ok((*op, serde_json::to_string(template)?)),
        other => anyhow::bail!("expected a held op, got {}", other.label()),
    }
}

pub(crate) fn detail(d: &Decision) -> String {
    match d {
        Decision::Refused { detail, .. } => detail.clone(),
        Decision::Executed {
            outcome, signed, ..
        } => format!("{outcome:?}, signed={signed}"),
        Decision::Replay { first } => first.as_ref().map_or("first op compacted".into(), |f| {
            format!("first: {} {}", f.id, f.state().name())
        }),
        Decision::PendingSignature { .. } => "held with a ready-to-sign template".into(),
        Decision::PartlyApproved {
            needs, approvals, ..
        } => format!(
            "approved by {} of {needs}: {}",
            approvals.len(),
            steward_gate::approval::names(approvals)
        ),
        Decision::Rotated { entries } => format!("{entries} entries"),
    }
}

impl Lab {
    fn new() -> Result<Lab> {
        let kg = Keygen::new()?;
        let op = kg.key(KeyType::Ed25519, "alice")?;
        let recovery = kg.key(KeyType::Ed25519, "vault")?;
        let dir = tempfile::tempdir()?;
        let text = signers_text(&op, &recovery);
        let path = dir.path().join("allowed_signers");
        std::fs::write(&path, &text)?;
        let exec = FakeExecutor::default();
        let gate = Arc::new(make_gate(
            &text,
            &dir.path().join("journal"),
            exec.clone(),
            path,
        )?);
        Ok(Lab {
            kg,
            op,
            recovery,
            dir,
            exec,
            gate,
            now: OffsetDateTime::now_utc(),
        })
    }

    fn sign(&self, key: &Key, ns: &str, payload: &str) -> Result<Vec<u8>> {
        Ok(self.kg.sign(&key.private, ns, payload.as_bytes())?)
    }

    /// Holds `destroy(n)` and returns the op and its template.
    async fn hold(&self, n: u32) -> Result<(steward_journal::OpId, String)> {
        held(
            &self
                .gate
                .submit(destroy(n)?, Submission::default(), self.now)
                .await,
        )
    }

    fn rotate_payload(&self, text: &str) -> Result<String> {
        Ok(serde_json::to_string(&serde_json::json!({
            "v": 1, "op": "keys.rotate", "host": HOST, "params": {"allowed_signers": text},
            "nonce": steward_testkit::nonce(),
            "not_before": (self.now - Duration::minutes(1)).format(&Rfc3339)?,
            "not_after": (self.now + Duration::minutes(30)).format(&Rfc3339)?,
        }))?)
    }
}

/// Runs the gate cases.
pub fn run() -> Result<Vec<GateRow>> {
    block_on(cases())
}

/// Runs an async group of cases on a runtime of its own (two workers, as the agent has).
pub(crate) fn block_on(
    cases: impl std::future::Future<Output = Result<Vec<GateRow>>>,
) -> Result<Vec<GateRow>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(cases)
}

async fn cases() -> Result<Vec<GateRow>> {
    let l = Lab::new().context("gate lab")?;
    let mut rows: Vec<GateRow> = Vec::new();
    fn push(rows: &mut Vec<GateRow>, name: &str, expected: &str, d: &Decision) {
        rows.push((name.into(), expected.into(), d.label(), detail(d)));
    }
    macro_rules! row {
        ($name:expr, $expected:expr, $d:expr) => {
            push(&mut rows, $name, $expected, $d)
        };
    }

    // Unsigned destructive: a job, and a desired-state delta (planned from `state = "absent"`).
    let d = l
        .gate
        .submit(destroy(104)?, Submission::default(), l.now)
        .await;
    row!("unsigned destructive job", "pending_signature", &d);
    let doc = r#"{"version":1,"generation":1,"guests":[{"vmid":105,"kind":"qemu","state":"absent","tags":["scratch"]}]}"#;
    let desired =
        steward_planner::document::parse_json("hub", doc).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut actual = steward_planner::ActualState::new();
    actual.insert(
        vmid(105)?,
        steward_planner::ActualGuest {
            vmid: vmid(105)?,
            kind: GuestKind::Qemu,
            status: "running".into(),
            config: [
                ("tags".to_string(), "scratch".to_string()),
                ("scsi0".into(), "local-lvm:vm-105-disk-0".into()),
            ]
            .into(),
            digest: "d".into(),
            pending: Default::default(),
        },
    );
    let plan = steward_planner::plan(&desired, &actual);
    let action = plan
        .actions
        .first()
        .cloned()
        .context("the plan destroys 105")?;
    let d = l.gate.submit(action, Submission::default(), l.now).await;
    row!(
        "unsigned destructive desired-state delta (hub tagged it scratch)",
        "pending_signature",
        &d
    );

    // Signer and signature.
    let (_, t) = l.hold(106).await?;
    let stranger = l.kg.key(KeyType::Ed25519, "mallory")?;
    let d = l
        .gate
        .present(t.as_bytes(), &[l.sign(&stranger, "op@steward", &t)?], l.now)
        .await
        .decision;
    row!("unknown signer", "refused:unknown_signer", &d);
    let good = l.sign(&l.op, "op@steward", &t)?;
    let mut forged = t.clone().into_bytes();
    let at = forged.iter().position(|&b| b == b'6').unwrap_or(0);
    forged[at] = b'7';
    let d = l
        .gate
        .present(&forged, &[good.to_vec()], l.now)
        .await
        .decision;
    row!(
        "forged payload (guest 106 -> 107 after signing)",
        "refused:bad_signature",
        &d
    );
    let later = l.now + Duration::hours(3);
    let d = l
        .gate
        .present(t.as_bytes(), &[good.to_vec()], later)
        .await
        .decision;
    row!("expired", "refused:expired", &d);
    let wrong_host = t.replace("\"host\":\"pve-a\"", "\"host\":\"pve-b\"");
    let d = l
        .gate
        .present(
            wrong_host.as_bytes(),
            &[l.sign(&l.op, "op@steward", &wrong_host)?],
            l.now,
        )
        .await
        .decision;
    row!("wrong host", "refused:target", &d);
    for (name, bad) in [
        ("wrong guest", t.replace("\"guest\":106", "\"guest\":999")),
        ("wrong op", t.replace("guest.destroy", "guest.rollback")),
        (
            "wrong params",
            t.replace("\"purge\":true", "\"purge\":false"),
        ),
    ] {
        let d = l
            .gate
            .present(bad.as_bytes(), &[l.sign(&l.op, "op@steward", &bad)?], l.now)
            .await
            .decision;
        row!(name, "refused:binding_mismatch", &d);
    }
    let (_, t2) = l.hold(107).await?;
    let d = l
        .gate
        .present(
            t2.as_bytes(),
            &[l.sign(&l.recovery, "recovery@steward", &t2)?],
            l.now,
        )
        .await
        .decision;
    row!(
        "recovery key on an ordinary destructive op",
        "refused:role_denied",
        &d
    );

    // The good path, then its replay (same gate), then across a restart of the gate.
    let before = l.exec.count();
    let d = l
        .gate
        .present(t.as_bytes(), &[good.to_vec()], l.now)
        .await
        .decision;
    row!(
        "valid signature, right role, target and fresh nonce",
        "executed",
        &d
    );
    let d = l
        .gate
        .present(t.as_bytes(), &[good.to_vec()], l.now)
        .await
        .decision;
    row!("second presentation", "replay", &d);
    let ran_once = l.exec.count() - before;

    // Provenance: it names the guest (kind and identity), and covers only what the agent made.
    let txn = l.gate.begin_txn().await.map_err(anyhow::Error::msg)?;
    let id900 = "11111111-2222-4333-8444-555555555900";
    let id901 = "11111111-2222-4333-8444-555555555901";
    let seen = |id: &str| Some(format!("vmgenid:{id}"));
    let sub = Submission {
        txn: Some(txn),
        scratch: false,
        identity: seen(id900),
        observed: None,
    };
    let create = Action::Create {
        vmid: vmid(900)?,
        kind: GuestKind::Qemu,
        config: [("vmgenid".to_string(), id900.to_string())].into(),
    };
    l.gate.submit(create, sub.clone(), l.now).await;
    let d = l.gate.submit(own_destroy(900)?, sub, l.now).await;
    row!(
        "same-transaction rollback of the agent's own create",
        "executed",
        &d
    );
    let scratch = Submission {
        txn: None,
        scratch: true,
        identity: seen(id901),
        observed: None,
    };
    let create = Action::Create {
        vmid: vmid(901)?,
        kind: GuestKind::Qemu,
        config: [("vmgenid".to_string(), id901.to_string())].into(),
    };
    l.gate.submit(create, scratch, l.now).await;
    let reused = Submission {
        identity: seen("99999999-2222-4333-8444-555555555901"),
        ..Submission::default()
    };
    let d = l.gate.submit(own_destroy(901)?, reused, l.now).await;
    row!(
        "agent scratch VMID now held by another guest (identity differs)",
        "pending_signature",
        &d
    );
    let d = l
        .gate
        .submit(
            destroy(901)?,
            Submission {
                identity: seen(id901),
                ..Submission::default()
            },
            l.now,
        )
        .await;
    row!(
        "agent scratch guest destroyed with destroy-unreferenced-disks",
        "pending_signature",
        &d
    );
    let d = l
        .gate
        .submit(
            own_destroy(901)?,
            Submission {
                identity: seen(id901),
                ..Submission::default()
            },
            l.now,
        )
        .await;
    row!("agent scratch guest destroyed", "executed", &d);
    let unknown = Action::SetConfig {
        vmid: vmid(104)?,
        kind: GuestKind::Qemu,
        change: steward_model::ConfigChange {
            set: [("hookscript".to_string(), "local:snippets/x.sh".to_string())].into(),
            delete: Default::default(),
            digest: None,
            removes: Default::default(),
            keeps: Default::default(),
        },
    };
    let d = l.gate.submit(unknown, Submission::default(), l.now).await;
    row!("unknown config key (hookscript)", "pending_signature", &d);
    let restore = Action::Create {
        vmid: vmid(104)?,
        kind: GuestKind::Qemu,
        config: [
            (
                "archive".to_string(),
                "local:backup/vzdump-qemu-104.vma.zst".to_string(),
            ),
            ("force".to_string(), "1".to_string()),
        ]
        .into(),
    };
    let d = l.gate.submit(restore, Submission::default(), l.now).await;
    row!(
        "create restoring a backup over an existing guest (archive + force)",
        "pending_signature",
        &d
    );

    // 64 concurrent presentations of one signed op.
    let (_, t3) = l.hold(108).await?;
    let s3 = l.sign(&l.op, "op@steward", &t3)?;
    let before = l.exec.count();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (g, p, s, now) = (l.gate.clone(), t3.clone(), s3.clone(), l.now);
        tasks.push(tokio::spawn(async move {
            g.present(p.as_bytes(), &[s.to_vec()], now).await.decision
        }));
    }
    let mut executed = 0;
    for t in tasks {
        if matches!(t.await?, Decision::Executed { .. }) {
            executed += 1;
        }
    }
    let ran = l.exec.count() - before;
    rows.push((
        "64 concurrent presentations of one signed op".into(),
        "executed x1".into(),
        format!("executed x{executed}"),
        format!("executor ran {ran} time(s)"),
    ));

    // Rotation.
    let op_line = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\n",
        l.op.public_line
    );
    let bob = l.kg.key(KeyType::Ed25519, "bob")?;
    let bob_line = format!(
        "bob@steward.test namespaces=\"op@steward\" {}\n",
        bob.public_line
    );
    let p = l.rotate_payload(&op_line)?;
    let d = l
        .gate
        .present(p.as_bytes(), &[l.sign(&l.op, "op@steward", &p)?], l.now)
        .await
        .decision;
    row!(
        "rotation: operational key removes the recovery key",
        "refused:role_denied",
        &d
    );
    let p = l.rotate_payload(&format!("{op_line}{bob_line}"))?;
    let d = l
        .gate
        .present(
            p.as_bytes(),
            &[l.sign(&l.recovery, "recovery@steward", &p)?],
            l.now,
        )
        .await
        .decision;
    row!(
        "rotation: last recovery key removed",
        "refused:rotation_refused",
        &d
    );

    // Replay across a restart: a new gate over the reopened journal.
    let Lab {
        dir,
        op: opk,
        recovery,
        gate,
        exec,
        ..
    } = l;
    drop(gate);
    let fresh_exec = FakeExecutor::default();
    let reopened = make_gate(
        &signers_text(&opk, &recovery),
        &dir.path().join("journal"),
        fresh_exec.clone(),
        dir.path().join("allowed_signers"),
    )?;
    let d = reopened
        .present(t.as_bytes(), &[good.to_vec()], OffsetDateTime::now_utc())
        .await
        .decision;
    rows.push((
        "replayed nonce across a restart (reopened journal)".into(),
        "replay".into(),
        d.label(),
        format!(
            "{}; executor ran {} time(s) after restart, {ran_once} before",
            detail(&d),
            fresh_exec.count()
        ),
    ));
    drop(exec);
    Ok(rows)
}

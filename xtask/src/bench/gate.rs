//! `cargo xtask bench gate`: gate decisions per second, benign (journaled: planned → intent →
//! dispatched → succeeded, plus the decision's audit entry, each durable) and signed destructive
//! (the full pipeline, binding, durable nonce + intent, execution, terminal record), against the
//! authz-only verification rate of the same signed ops, measured in the same run.

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Instant;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_gate::{Decision, Gate, GateConfig, Submission};
use steward_journal::Journal;
use steward_lab::FakeExecutor;
use steward_model::{Action, GuestKind, Vmid};
use steward_testkit::{KeyType, Keygen};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

pub fn run(signed_ops: usize) -> Result<bool> {
    let kg = Keygen::new()?;
    let key = kg.key(KeyType::Ed25519, "bench")?;
    let text = format!(
        "bench@steward namespaces=\"op@steward\" {}\n",
        key.public_line
    );
    let dir = tempfile::tempdir()?;
    let journal = Arc::new(Journal::create(dir.path().join("journal"))?);
    let verifier = || -> Result<Verifier> {
        Ok(Verifier::new(
            TrustStore::parse("bench", text.as_bytes())?,
            VerifyConfig::new("pve-a"),
        )?)
    };
    let gate = Gate::new(
        verifier()?,
        journal,
        Box::new(FakeExecutor::default()),
        GateConfig::default(),
    );
    let now = OffsetDateTime::now_utc();
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339);

    // Signed destructive ops, each with its own nonce (a nonce runs once), signed by ssh-keygen.
    let mut signed = Vec::with_capacity(signed_ops);
    for i in 0..signed_ops {
        let payload = serde_json::to_vec(&serde_json::json!({
            "v": 1, "op": "guest.destroy", "host": "pve-a", "guest": 1000 + i,
            "params": {"kind": "qemu", "purge": true, "destroy_unreferenced_disks": true},
            "nonce": steward_testkit::nonce(),
            "not_before": fmt(now - Duration::minutes(5))?, "not_after": fmt(now + Duration::minutes(55))?,
        }))?;
        let sig = kg.sign(&key.private, "op@steward", &payload)?;
        signed.push((payload, sig));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // authz only, same bytes (offline: no nonce lookup needed for the rate).
    let v = verifier()?;
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < 1.0 {
        for (p, s) in &signed {
            v.verify_offline(p, s, now)
                .map_err(|r| anyhow::anyhow!("{r}"))?;
            n += 1;
        }
    }
    let authz_rate = f64::from(n) / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for (p, s) in &signed {
        let d = rt.block_on(gate.present(p, &[s.to_vec()], now)).decision;
        anyhow::ensure!(
            matches!(d, Decision::Executed { signed: true, .. }),
            "bench op not executed: {}",
            d.label()
        );
    }
    let signed_rate = signed.len() as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut b = 0u32;
    while t.elapsed().as_secs_f64() < 1.0 {
        let a = Action::Start {
            vmid: Vmid::new(104)?,
            kind: GuestKind::Qemu,
        };
        let d = rt.block_on(gate.submit(a, Submission::default(), now));
        anyhow::ensure!(
            matches!(d, Decision::Executed { .. }),
            "benign not executed"
        );
        b += 1;
    }
    let benign_rate = f64::from(b) / t.elapsed().as_secs_f64();
    let _ = dir.path().to_str().context("temp dir")?;

    println!("gate bench (one caller; every decision durable in the journal)");
    println!("  authz only (verify, same signed ops)            {authz_rate:>8.0}/s");
    println!(
        "  gate, signed destructive (verify..execute)      {signed_rate:>8.0}/s   {:.3}x the authz rate ({} ops)",
        signed_rate / authz_rate,
        signed.len()
    );
    println!(
        "  gate, benign (journal + execute)                {benign_rate:>8.0}/s   {:.3}x the authz rate",
        benign_rate / authz_rate
    );
    Ok(true)
}

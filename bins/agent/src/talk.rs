//! The subcommands that talk to the running agent over its local API (they never open the
//! journal, but `audit export --journal DIR` reads a stopped agent's): status, pending, submit,
//! reconcile, op, audit export. Each reads the answer as its typed view
//! (`steward_control::Client`). Exit codes: 0 done, 1 the gate refused, 2 the agent could not
//! be asked. It must never print text the node, a hub or a signer wrote without escaping it.

use anyhow::{Context, Result};
use std::path::Path;
use steward_authz::escape_controls as esc;
use steward_control::view::Submission;
use steward_control::{Client, ControlError};

/// The agent's refusal or silence, escaped: its text can carry what a caller sent.
fn said(e: ControlError) -> anyhow::Error {
    anyhow::Error::msg(esc(&e.to_string()))
}

/// `op ID`.
pub async fn op(socket: &Path, id: u64) -> Result<bool> {
    let v = Client::new(socket).op(id).await.map_err(said)?;
    // JSON escapes control characters; bidi overrides it leaves as they are.
    for line in serde_json::to_string_pretty(&v)?.lines() {
        println!("{}", esc(line));
    }
    Ok(true)
}

/// `audit export`: the chain from entry `since` on, to stdout, from the running agent or, with
/// `journal`, from a stopped agent's journal directory (opened, read, closed; never written).
pub async fn audit_export(socket: &Path, journal: Option<&Path>, since: u64) -> Result<bool> {
    use std::io::Write;
    let bytes = match journal {
        Some(dir) => {
            let j = steward_journal::Journal::open(dir)
                .with_context(|| format!("opening the journal at {}", dir.display()))?;
            let mut out = Vec::new();
            let mut next = since;
            loop {
                let page = j.audit_entries(next, 5_000)?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    break;
                };
                for e in &page {
                    serde_json::to_writer(&mut out, e)?;
                    out.push(b'\n');
                }
                next = last + 1;
            }
            out
        }
        None => Client::new(socket).audit(since).await.map_err(said)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&bytes)?;
    stdout.flush()?;
    Ok(true)
}

/// Unix milliseconds as RFC 3339.
fn rfc3339_ms(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// `status`.
pub async fn status(socket: &Path) -> Result<bool> {
    let s = Client::new(socket).status().await.map_err(said)?;
    let last = Some(s.last_pass_ms)
        .filter(|ms| *ms > 0)
        .and_then(rfc3339_ms)
        .unwrap_or_else(|| "none yet".into());
    let agent = s.agent.clone().unwrap_or_default();
    println!(
        "node {}  last pass {last}  metrics {}",
        esc(&agent.node),
        agent.metrics.as_deref().unwrap_or("off")
    );
    println!(
        "passes {}  managed {}  converged {}  drifting {}  in flight {}  held {}  recovered {}",
        s.passes, s.managed, s.converged, s.drifting, s.in_flight, s.held, s.recovered
    );
    if let Some(h) = &s.audit_head {
        println!("audit head {h}  (keep it: `steward-verify audit --head {h}` proves the chain up to it)");
    }
    if !s.approval_policy.is_empty() {
        let shown: Vec<String> = s
            .approval_policy
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("signatures needed (distinct keys): {}", shown.join(", "));
    }
    if s.no_quorum {
        println!("NO QUORUM: this node has lost quorum; writes are paused until it is back");
    }
    for e in &s.elsewhere {
        println!(
            "elsewhere {} on node {} (its agent manages it)",
            e.vmid,
            esc(&e.node)
        );
    }
    for p in &s.parked {
        println!("parked {} ({}): {}", p.vmid, esc(&p.reason), esc(&p.why));
    }
    for (channel, h) in &s.provider {
        let last_ok = h
            .last_success_ms
            .and_then(rfc3339_ms)
            .unwrap_or_else(|| "never".into());
        let trouble = h
            .last_error
            .as_deref()
            .map(|e| format!("  last error: {}", esc(e)))
            .unwrap_or_default();
        println!(
            "provider {channel}: last success {last_ok}  failures in a row {}{trouble}",
            h.consecutive_failures
        );
    }
    if let Some(e) = &s.journal_error {
        println!(
            "JOURNAL WRITES FAIL (nothing starts until they succeed): {}",
            esc(e)
        );
    }
    if let Some(e) = &s.last_error {
        println!("last error: {}", esc(e));
    }
    Ok(true)
}

/// `pending` and `pending show ID [--template]`.
pub async fn pending(socket: &Path, show: Option<(u64, bool)>) -> Result<bool> {
    let client = Client::new(socket);
    match show {
        Some((id, true)) => {
            let bytes = client.template(id).await.map_err(said)?;
            use std::io::Write as _;
            std::io::stdout()
                .lock()
                .write_all(&bytes)
                .context("writing the template")?;
        }
        Some((id, false)) => {
            let all = client.pending().await.map_err(said)?;
            let op = all
                .iter()
                .find(|h| h.op == id)
                .with_context(|| format!("no held op {id}"))?;
            // JSON escapes control characters; bidi overrides it leaves as they are.
            for line in serde_json::to_string_pretty(op)?.lines() {
                println!("{}", esc(line));
            }
        }
        None => {
            let all = client.pending().await.map_err(said)?;
            if all.is_empty() {
                println!("nothing held");
            }
            // Summaries carry what the node and the hub can name (guest names, volumes):
            // escaped, so no text can move the cursor or forge another line.
            for h in all {
                println!(
                    "op {}  expires {}\n  {}",
                    h.op,
                    esc(h.expires.as_deref().unwrap_or("-")),
                    esc(&h.summary)
                );
            }
        }
    }
    Ok(true)
}

/// The largest armored signature `submit` reads: an SSHSIG with the largest RSA key and a
/// certificate is a few KiB; eight of them and a payload fit the local API's body limit.
const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

/// `submit op.json SIG...`: true when the gate did not refuse.
pub async fn submit(socket: &Path, op: &Path, sigs: &[std::path::PathBuf]) -> Result<bool> {
    // Regular files only, at most what the verifier would read: a FIFO, a device or a huge
    // file is refused at once.
    let read = |path: &Path, limit: usize, what: &str| {
        steward_providers::read_regular_file(path, limit, what).map_err(anyhow::Error::msg)
    };
    let payload = read(op, steward_authz::MAX_PAYLOAD_BYTES, "signed op payload")?;
    let signatures = sigs
        .iter()
        .map(|sig| read(sig, MAX_SIGNATURE_BYTES, "signature"))
        .collect::<Result<Vec<_>>>()?;
    let d = Client::new(socket)
        .submit(&Submission::new(payload, signatures))
        .await
        .map_err(said)?;
    let mut line = d.decision.clone();
    if let Some(op) = d.op {
        line.push_str(&format!(" op={op}"));
    }
    if let Some(signed) = d.signed {
        line.push_str(&format!(" signed={signed}"));
    }
    for (k, v) in [("outcome", &d.outcome), ("detail", &d.detail)] {
        if let Some(v) = v {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    println!("{}", esc(&line));
    // Each signature's verdict, when there were several or one was not counted.
    if d.signatures.len() > 1 || d.signatures.iter().any(|v| v.verdict != "counted") {
        for (v, path) in d.signatures.iter().zip(sigs) {
            // A certificate's principal and a refusal's detail are signer-supplied text.
            let who = esc(v.principal.as_deref().unwrap_or(""));
            let why = esc(v.detail.as_deref().unwrap_or(""));
            println!("  {}: {} {who}{why}", path.display(), esc(&v.verdict));
        }
    }
    Ok(!d.refused())
}

/// `reconcile`.
pub async fn reconcile(socket: &Path) -> Result<bool> {
    Client::new(socket).reconcile().await.map_err(said)?;
    println!("pass requested");
    Ok(true)
}

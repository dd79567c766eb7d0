//! The subcommands that talk to the running agent over its local API (they never open the
//! journal): status, pending, submit, reconcile. Exit codes: 0 done, 1 the gate refused, 2 the
//! agent could not be asked.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;
use steward_control::Client;

async fn get(client: &Client, path: &str) -> Result<Value> {
    let (status, body) = client.call("GET", path, Vec::new()).await?;
    if status != 200 {
        bail!(
            "{path}: {}",
            steward_authz::escape_controls(&String::from_utf8_lossy(&body))
        );
    }
    Ok(serde_json::from_slice(&body)?)
}

/// `op ID`.
pub async fn op(socket: &Path, id: u64) -> Result<bool> {
    let v = get(&Client::new(socket), &format!("/ops/{id}")).await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
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
    let s = get(&Client::new(socket), "/status").await?;
    let last = s["last_pass_ms"]
        .as_i64()
        .filter(|ms| *ms > 0)
        .and_then(rfc3339_ms)
        .unwrap_or_else(|| "none yet".into());
    println!(
        "node {}  last pass {last}  metrics {}",
        s["agent"]["node"].as_str().unwrap_or("?"),
        s["agent"]["metrics"].as_str().unwrap_or("off")
    );
    println!(
        "passes {}  managed {}  converged {}  drifting {}  in flight {}  held {}  recovered {}",
        s["passes"],
        s["managed"],
        s["converged"],
        s["drifting"],
        s["in_flight"],
        s["held"],
        s["recovered"]
    );
    if let Some(policy) = s["approval_policy"].as_object() {
        let shown: Vec<String> = policy.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("signatures needed (distinct keys): {}", shown.join(", "));
    }
    let esc = steward_authz::escape_controls;
    for p in s["parked"].as_array().into_iter().flatten() {
        println!(
            "parked {} ({}): {}",
            p["vmid"],
            esc(p["reason"].as_str().unwrap_or("unknown")),
            esc(p["why"].as_str().unwrap_or(""))
        );
    }
    for (channel, h) in s["provider"].as_object().into_iter().flatten() {
        let failures = h["consecutive_failures"].as_u64().unwrap_or(0);
        let last_ok = h["last_success_ms"]
            .as_i64()
            .and_then(rfc3339_ms)
            .unwrap_or_else(|| "never".into());
        let trouble = h["last_error"]
            .as_str()
            .map(|e| format!("  last error: {}", esc(e)))
            .unwrap_or_default();
        println!(
            "provider {channel}: last success {last_ok}  failures in a row {failures}{trouble}"
        );
    }
    if let Some(e) = s["journal_error"].as_str() {
        println!(
            "JOURNAL WRITES FAIL (nothing starts until they succeed): {}",
            esc(e)
        );
    }
    if let Some(e) = s["last_error"].as_str() {
        println!("last error: {}", esc(e));
    }
    Ok(true)
}

/// `pending` and `pending show ID [--template]`.
pub async fn pending(socket: &Path, show: Option<(u64, bool)>) -> Result<bool> {
    let client = Client::new(socket);
    match show {
        Some((id, true)) => {
            let (status, body) = client
                .call("GET", &format!("/pending/{id}/template"), Vec::new())
                .await?;
            if status != 200 {
                bail!(
                    "{}",
                    steward_authz::escape_controls(&String::from_utf8_lossy(&body))
                );
            }
            use std::io::Write as _;
            std::io::stdout()
                .lock()
                .write_all(&body)
                .context("writing the template")?;
        }
        Some((id, false)) => {
            let all = get(&client, "/pending").await?;
            let op = all
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["op"].as_u64() == Some(id))
                .with_context(|| format!("no held op {id}"))?;
            // JSON escapes control characters; bidi overrides it leaves as they are.
            for line in serde_json::to_string_pretty(op)?.lines() {
                println!("{}", steward_authz::escape_controls(line));
            }
        }
        None => {
            let all = get(&client, "/pending").await?;
            let list = all.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("nothing held");
            }
            // Summaries carry what the node and the hub can name (guest names, volumes):
            // escaped, so no text can move the cursor or forge another line.
            let esc = steward_authz::escape_controls;
            for h in list {
                println!(
                    "op {}  expires {}\n  {}",
                    h["op"],
                    esc(h["expires"].as_str().unwrap_or("-")),
                    esc(h["summary"].as_str().unwrap_or(""))
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
    let body =
        serde_json::to_vec(&serde_json::json!({"payload": payload, "signatures": signatures}))?;
    let (status, answer) = Client::new(socket).call("POST", "/submit", body).await?;
    if status != 200 {
        bail!(
            "{}",
            steward_authz::escape_controls(&String::from_utf8_lossy(&answer))
        );
    }
    let d: Value = serde_json::from_slice(&answer)?;
    let label = d["decision"].as_str().unwrap_or("?");
    let mut line = label.to_string();
    for k in ["op", "signed", "outcome", "detail"] {
        if !d[k].is_null() {
            line.push_str(&format!(
                " {k}={}",
                d[k].as_str()
                    .map_or_else(|| d[k].to_string(), str::to_string)
            ));
        }
    }
    println!("{}", steward_authz::escape_controls(&line));
    // Each signature's verdict, when there were several or one was not counted.
    let verdicts = d["signatures"].as_array().cloned().unwrap_or_default();
    if verdicts.len() > 1 || verdicts.iter().any(|v| v["verdict"] != "counted") {
        for (v, path) in verdicts.iter().zip(sigs) {
            // A certificate's principal and a refusal's detail are signer-supplied text.
            let who = steward_authz::escape_controls(v["principal"].as_str().unwrap_or(""));
            let why = steward_authz::escape_controls(v["detail"].as_str().unwrap_or(""));
            println!(
                "  {}: {} {who}{why}",
                path.display(),
                v["verdict"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(!label.starts_with("refused"))
}

/// `reconcile`.
pub async fn reconcile(socket: &Path) -> Result<bool> {
    let (status, body) = Client::new(socket)
        .call("POST", "/reconcile", Vec::new())
        .await?;
    if status != 200 {
        bail!(
            "{}",
            steward_authz::escape_controls(&String::from_utf8_lossy(&body))
        );
    }
    println!("pass requested");
    Ok(true)
}

//! `steward-verify audit`: the offline check of an exported audit chain (`steward-agent audit
//! export`), for an auditor who has the export and the operators' allowed_signers file and
//! nothing else. Thin: it reads the files, calls `steward_audit::check`, and prints one line per
//! authorization (time, op, guest, what it destroyed, who signed, verdict) and then the chain's
//! problems. Exit 0 all proven, 1 anything unproven, 2 a usage or file error. It must never
//! print a verdict that differs from the exit code's, nor text from the export unescaped.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use steward_audit::{check, Head, Report};
use steward_authz::{escape_controls as esc, TrustStore};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Check an exported audit chain offline: every link from its anchor, every kept signature
/// through the verification pipeline against the trust store in force at the time, every
/// destructive execution bound to what was signed.
///
/// `steward-agent audit export > audit.jsonl` on the node, then anywhere:
/// `steward-verify audit --signers allowed_signers audit.jsonl [--head SEQ:HASH]`.
/// Give the allowed_signers file that was in force when the chain began (the one installed
/// with the agent); key rotations since are replayed from the chain, each checked against the
/// store before it. `--head` is a head kept earlier (from `steward-agent status`, a hub report
/// or the agent's log): the check fails if the chain no longer holds it. Exit 0: everything
/// proven; 1: anything unproven (the entry is named); 2: a usage or file error.
#[derive(Parser, Debug)]
#[command(name = "steward-verify audit", version)]
pub struct AuditArgs {
    /// OpenSSH allowed_signers file in force when the chain began; again for each file an
    /// administrator installed by hand since, if you trust it (rotations need none).
    #[arg(long, value_name = "FILE", required = true)]
    signers: Vec<PathBuf>,
    /// A head witnessed earlier: `SEQ:HASH` or `HASH`.
    #[arg(long, value_name = "SEQ:HASH")]
    head: Option<Head>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// The export (`-` for standard input).
    export: PathBuf,
}

/// Runs the check; the exit code is the verdict.
pub fn main(args: &AuditArgs) -> Result<ExitCode, String> {
    let read = |p: &PathBuf| -> Result<Vec<u8>, String> {
        if p.as_os_str() == "-" {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
                .map_err(|e| format!("standard input: {e}"))?;
            return Ok(v);
        }
        std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let stores = args
        .signers
        .iter()
        .map(|p| TrustStore::parse(&p.display().to_string(), &read(p)?).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let export = String::from_utf8(read(&args.export)?)
        .map_err(|_| format!("{}: not UTF-8 text", args.export.display()))?;
    let report = check(&export, &stores, args.head.as_ref());
    let text = if args.json {
        json(&report).to_string()
    } else {
        table(&report)
    };
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{text}")
        .map_err(|e| format!("writing the verdict to stdout: {e}"))?;
    Ok(ExitCode::from(if report.proven() { 0 } else { 1 }))
}

fn time_of(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn table(r: &Report) -> String {
    let mut out = Vec::new();
    let unproven = r.rows.iter().filter(|x| x.verdict.is_err()).count();
    out.push(format!(
        "{}: {} entries{}{}, {} authorizations, {} unproven, {} chain problems",
        if r.proven() { "proven" } else { "UNPROVEN" },
        r.entries,
        r.anchor
            .as_ref()
            .map(|(s, prev)| format!(" from entry {s} (after {})", &prev[..prev.len().min(16)]))
            .unwrap_or_default(),
        r.head
            .as_ref()
            .map(|(s, h)| format!(", head {s}:{h}"))
            .unwrap_or_default(),
        r.rows.len(),
        unproven,
        r.problems.len()
    ));
    out.push(format!(
        "{:<6} {:<25} {:<15} {:<6} {:<10} {}",
        "entry", "time", "op", "guest", "verdict", "what / signed by"
    ));
    for row in &r.rows {
        out.push(format!(
            "{:<6} {:<25} {:<15} {:<6} {:<10} {}",
            row.seq,
            time_of(row.at_ms),
            esc(&row.op),
            row.guest.map_or("-".into(), |g| g.to_string()),
            if row.verdict.is_ok() {
                "proven"
            } else {
                "UNPROVEN"
            },
            esc(&row.what)
        ));
        if !row.signers.is_empty() {
            out.push(format!(
                "{:>76}signed by {}",
                "",
                esc(&row.signers.join(", "))
            ));
        }
        if let Err(why) = &row.verdict {
            out.push(format!("{:>76}{}", "", esc(why)));
        }
    }
    for p in &r.problems {
        out.push(format!("chain: {}", esc(p)));
    }
    out.join("\n")
}

fn json(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "result": if r.proven() { "proven" } else { "unproven" },
        "entries": r.entries,
        "anchor": r.anchor.as_ref().map(|(s, h)| serde_json::json!({"seq": s, "prev": h})),
        "head": r.head.as_ref().map(|(s, h)| format!("{s}:{h}")),
        "rows": r.rows.iter().map(|x| serde_json::json!({
            "seq": x.seq,
            "time": time_of(x.at_ms),
            "op": x.op,
            "guest": x.guest,
            "what": x.what,
            "signers": x.signers,
            "verdict": match &x.verdict { Ok(()) => "proven".to_string(), Err(e) => format!("unproven: {e}") },
        })).collect::<Vec<_>>(),
        "problems": r.problems,
    })
}

//! The offline check of an exported chain (`steward-verify audit`): every line an entry whose
//! hash matches its content, in sequence from its anchor (genesis, or the entry a prune left
//! as anchor), each linked to the one before; a witnessed head found in it; every destructive
//! op that entered `intent` carrying a proof whose signatures pass authz's pipeline again,
//! under the trust store in force at that point (the allowed_signers file the auditor gives,
//! advanced by each key rotation in the chain, itself proven against the store before it), and
//! whose binding is exactly the action recorded; no op that the auditor's own classifier
//! (`steward-classifier`, on the action each op's first entry carries) calls destructive run
//! without one, but a compensating destroy of a guest the chain shows the agent created in the
//! same transaction. The `class` the node recorded is trusted only where the export holds no
//! action to classify. An op that entered `intent` counts as having run, whatever it ended as
//! (`failed`, `moved`, `abandoned`): a synchronous write has no `dispatched`, and a multi-step
//! one may end after its first step.
//! It must never report a chain as proven when any of that fails, and names the entry when it
//! does.

use crate::entry::{AuditEntry, GENESIS};
use crate::proof::{Proof, LOADED_EVENT, ROTATION_EVENT};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use steward_authz::{Role, TrustStore, Verifier, VerifyConfig, MAX_SKEW_SECS, MAX_TTL_LIMIT_SECS};
use steward_classifier::binding::binding_of;
use steward_classifier::{classify, Context};
use steward_model::Action;
use time::OffsetDateTime;

/// A head someone kept (from `steward-agent status`, a hub report or the log): the chain must
/// still hold that entry, unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number, when known.
    pub seq: Option<u64>,
    /// Its hash.
    pub hash: String,
}

impl std::str::FromStr for Head {
    type Err = String;

    /// `HASH` or `SEQ:HASH` (64 lower-case hex digits).
    fn from_str(s: &str) -> Result<Head, String> {
        let (seq, hash) = match s.split_once(':') {
            Some((n, h)) => (
                Some(
                    n.parse::<u64>()
                        .map_err(|_| format!("{n:?} is not a sequence number"))?,
                ),
                h,
            ),
            None => (None, s),
        };
        if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "{hash:?} is not a chain hash (64 lower-case hex digits)"
            ));
        }
        Ok(Head {
            seq,
            hash: hash.to_string(),
        })
    }
}

/// One authorization in the chain, as the auditor's table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The entry.
    pub seq: u64,
    /// When it was accepted (Unix ms).
    pub at_ms: i64,
    /// The op kind (`guest.destroy`, `keys.rotate`).
    pub op: String,
    /// The guest.
    pub guest: Option<u32>,
    /// What it destroyed or changed, in words.
    pub what: String,
    /// Who signed: principal and key fingerprint, for every signature that verified.
    pub signers: Vec<String>,
    /// `Ok` proven; `Err` why not.
    pub verdict: Result<(), String>,
}

/// What the check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries read.
    pub entries: u64,
    /// The first entry's sequence number and the hash it links to (genesis or an anchor).
    pub anchor: Option<(u64, String)>,
    /// The last entry's sequence number and hash: the head of this export.
    pub head: Option<(u64, String)>,
    /// Every authorization (signed op, key rotation) and every destructive execution.
    pub rows: Vec<Row>,
    /// Problems with the chain itself (a broken link, a bad hash, a missing head).
    pub problems: Vec<String>,
}

impl Report {
    /// Nothing unproven: the chain is intact and every row is proven.
    pub fn proven(&self) -> bool {
        self.problems.is_empty() && self.rows.iter().all(|r| r.verdict.is_ok())
    }
}

fn state_of(event: &Value) -> Option<&str> {
    event.get("to")?.get("state")?.as_str()
}

/// Checks `export` (the lines `steward-agent audit export` wrote) against `signers`, the
/// allowed_signers files the auditor trusts (the first: the one in force when the chain began;
/// others: files an administrator installed by hand since, which the agent's
/// `trust_store_loaded` entries name by digest), and `head`, a head witnessed earlier.
pub fn check(export: &str, signers: &[TrustStore], head: Option<&Head>) -> Report {
    let mut report = Report::default();
    // Every store an authorization may have been made under: the files given, the stores the
    // chain's proven rotations produced, and the empty store (which admits nobody, so
    // accepting it proves nothing).
    let mut known: BTreeMap<String, TrustStore> = BTreeMap::new();
    let empty = TrustStore::empty("(no trust store)");
    known.insert(empty.digest().to_string(), empty.clone());
    for s in signers {
        known.insert(s.digest().to_string(), s.clone());
    }
    let mut store = signers.first().cloned().unwrap_or(empty);
    let mut last: Option<AuditEntry> = None;
    let mut head_seen = false;
    // Ops by id: the action and transaction their first entry carries.
    let mut ops: BTreeMap<u64, (Action, Option<u64>)> = BTreeMap::new();
    // (transaction, guest) the agent created, as the chain shows it: a compensating destroy of
    // one is benign by provenance.
    let mut created: BTreeSet<(u64, u32)> = BTreeSet::new();
    // Ops that entered intent on the signed path, and of those the proven ones.
    let mut signed_path: BTreeSet<u64> = BTreeSet::new();
    let mut proven: BTreeSet<u64> = BTreeSet::new();
    let mut flagged: BTreeSet<u64> = BTreeSet::new();
    // Ops seen entering `intent`: from there a step may have run on the node, whatever the op
    // ended as (a synchronous write has no `dispatched`; a multi-step one may fail or end
    // moved after its first step).
    let mut entered: BTreeSet<u64> = BTreeSet::new();
    for (i, line) in export.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let entry: AuditEntry = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                report
                    .problems
                    .push(format!("line {n}: not an audit entry ({e})"));
                continue;
            }
        };
        report.entries += 1;
        let at = format!("entry {} (line {n})", entry.seq);
        if !entry.hash_ok() {
            report
                .problems
                .push(format!("{at}: its hash does not match its content"));
        }
        match &last {
            None => {
                if entry.seq == 1 && entry.prev != GENESIS {
                    report
                        .problems
                        .push(format!("{at}: the first entry does not start at genesis"));
                }
                report.anchor = Some((entry.seq, entry.prev.clone()));
            }
            Some(p) => {
                if entry.seq != p.seq + 1 {
                    report.problems.push(format!(
                        "{at}: found where entry {} was expected",
                        p.seq + 1
                    ));
                }
                if entry.prev != p.hash {
                    report.problems.push(format!(
                        "{at}: does not link to the entry before it (entry {})",
                        p.seq
                    ));
                }
            }
        }
        if let Some(h) = head {
            if h.hash == entry.hash && h.seq.is_none_or(|s| s == entry.seq) {
                head_seen = true;
            }
        }
        let event = &entry.event;
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let destructive = event.get("class").and_then(Value::as_str) == Some("destructive");
        let op_id = event.get("op").and_then(Value::as_u64);
        if kind == "transition" {
            if let (Some(id), Some(spec)) = (op_id, event.get("action_spec")) {
                if let Ok(a) = serde_json::from_value::<Action>(spec.clone()) {
                    let txn = event.get("txn").and_then(Value::as_u64);
                    ops.insert(id, (a, txn));
                }
            }
            let state = state_of(event);
            if let (Some("intent"), Some(id)) = (state, op_id) {
                entered.insert(id);
            }
            // A signature kept with the step: judged on the signed path whatever class the
            // node recorded (a signature presented for an op the node thought benign).
            let has_proof = event.get("proof").is_some();
            match state {
                Some("intent") if destructive || has_proof => {
                    let row = op_row(&entry, &store);
                    if let Some(id) = op_id {
                        signed_path.insert(id);
                        if row.verdict.is_ok() {
                            proven.insert(id);
                        }
                    }
                    report.rows.push(row);
                }
                // From `intent` on, a step may have run on the node, whatever the op ends as: a
                // synchronous write has no `dispatched`, and a multi-step op may fail or end
                // moved after its first step. `abandoned` counts only after an `intent` (a held
                // op superseded never ran); the others need no `intent` seen (the lifecycle has
                // none without one, so a chain that skips it is no excuse).
                Some(
                    s @ ("intent" | "dispatched" | "succeeded" | "failed" | "moved" | "abandoned"),
                ) if op_id.is_some_and(|id| s != "abandoned" || entered.contains(&id)) => {
                    let id = op_id.unwrap_or_default();
                    if s == "succeeded" {
                        if let Some((Action::Create { vmid, .. }, Some(t))) = ops.get(&id) {
                            created.insert((*t, vmid.get()));
                        }
                    }
                    // What ran needs a signature by the auditor's own classifier (the action
                    // from the op's first entry), or, where that entry is not in the export,
                    // by the class the node recorded.
                    let needs = match ops.get(&id) {
                        Some((a, _)) => classify(a, &[], Context::default()).is_destructive(),
                        None => destructive,
                    };
                    if needs
                        && !proven.contains(&id)
                        && !signed_path.contains(&id)
                        && flagged.insert(id)
                    {
                        report
                            .rows
                            .push(unsigned_row(&entry, &at, id, s, ops.get(&id), &created));
                    }
                }
                _ => {}
            }
        } else if kind == ROTATION_EVENT {
            let (row, next) = rotation_row(&entry, &store);
            report.rows.push(row);
            if let Some(next) = next {
                known.insert(next.digest().to_string(), next.clone());
                store = next;
            }
        } else if kind == LOADED_EVENT {
            let digest = str_field(event, "trust_store");
            match known.get(&digest) {
                Some(s) => store = s.clone(),
                None => {
                    report.rows.push(Row {
                        seq: entry.seq,
                        at_ms: entry.at_ms,
                        op: "trust store loaded".into(),
                        guest: None,
                        what: format!(
                            "{} ({})",
                            short(&digest),
                            str_field(event, "source")
                        ),
                        signers: Vec::new(),
                        verdict: Err(format!(
                            "{at}: the agent started with a trust store that is neither a file given nor one a rotation in the chain produced (edited by hand? give it with --signers if you trust it)"
                        )),
                    });
                    // Nothing signed under it is proven (no store with that digest is known).
                    store = TrustStore::empty(&digest);
                }
            }
        }
        last = Some(entry);
    }
    if let Some(h) = head {
        if !head_seen {
            report.problems.push(format!(
                "the witnessed head {}{} is not in the chain: it was rewritten or truncated since",
                h.seq.map(|s| format!("{s}:")).unwrap_or_default(),
                h.hash
            ));
        }
    }
    if report.entries == 0 {
        report.problems.push("the export holds no entries".into());
    }
    report.head = last.map(|e| (e.seq, e.hash));
    report
}

/// A destructive op (by the auditor's classification) that ran without a kept signature:
/// proven only as the compensating destroy of a guest the agent created in the same
/// transaction, as the chain shows; unproven otherwise.
fn unsigned_row(
    entry: &AuditEntry,
    at: &str,
    id: u64,
    state: &str,
    op: Option<&(Action, Option<u64>)>,
    created: &BTreeSet<(u64, u32)>,
) -> Row {
    let event = &entry.event;
    let mut row = Row {
        seq: entry.seq,
        at_ms: entry.at_ms,
        op: str_field(event, "action"),
        guest: guest_of(event),
        what: op.map_or_else(|| format!("op {id} {state}"), |(a, _)| destroyed(a)),
        signers: Vec::new(),
        verdict: Err(format!(
            "{at}: a destructive op {state} with no kept signature (op {id})"
        )),
    };
    if let Some((
        Action::Destroy {
            vmid,
            destroy_unreferenced_disks: false,
            ..
        },
        Some(txn),
    )) = op
    {
        if created.contains(&(*txn, vmid.get())) {
            row.what = format!(
                "{} (compensating: the agent created it in transaction {txn})",
                row.what
            );
            row.verdict = Ok(());
        }
    }
    row
}

fn str_field(event: &Value, k: &str) -> String {
    event
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

fn guest_of(event: &Value) -> Option<u32> {
    event
        .get("guest")
        .and_then(Value::as_u64)
        .and_then(|g| u32::try_from(g).ok())
}

/// The signatures of `proof`, each through the pipeline under `store` at `at_ms`: who signed,
/// with their roles, or why one did not pass.
fn verify_all(
    proof: &Proof,
    store: &TrustStore,
    at_ms: i64,
) -> Result<Vec<(String, Role)>, String> {
    if proof.trust_store != store.digest() {
        return Err(format!(
            "signed under trust store {}, but the allowed_signers given and the rotations before it give {}",
            short(&proof.trust_store),
            short(store.digest())
        ));
    }
    if proof.signatures.is_empty() {
        return Err("the proof keeps no signature".into());
    }
    let config = VerifyConfig {
        host: proof.host.clone(),
        skew_secs: MAX_SKEW_SECS,
        max_ttl_secs: MAX_TTL_LIMIT_SECS,
    };
    let verifier = Verifier::new(store.clone(), config).map_err(|e| e.to_string())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .map_err(|e| e.to_string())?;
    let mut signers = Vec::new();
    let mut keys = BTreeSet::new();
    for (i, sig) in proof.signatures.iter().enumerate() {
        let v = verifier
            .verify_offline(proof.payload.as_bytes(), sig.as_bytes(), at)
            .map_err(|r| format!("signature {}: {}: {}", i + 1, r.reason, r.detail))?;
        if !keys.insert(v.key_fingerprint.clone()) {
            return Err(format!("signature {}: the same key twice", i + 1));
        }
        signers.push((
            format!(
                "{} ({})",
                steward_authz::escape_controls(&v.principal),
                v.key_fingerprint
            ),
            v.role,
        ));
    }
    Ok(signers)
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn proof_of(event: &Value) -> Result<Proof, String> {
    let p = event
        .get("proof")
        .ok_or("no kept signature: the entry carries no proof")?;
    serde_json::from_value(p.clone()).map_err(|e| format!("the proof does not read: {e}"))
}

/// A destructive op entering `intent`: proven when its proof verifies and binds the action.
fn op_row(entry: &AuditEntry, store: &TrustStore) -> Row {
    let event = &entry.event;
    let mut row = Row {
        seq: entry.seq,
        at_ms: entry.at_ms,
        op: str_field(event, "action"),
        guest: guest_of(event),
        what: String::new(),
        signers: Vec::new(),
        verdict: Ok(()),
    };
    let at = format!("entry {}", entry.seq);
    let proof = match proof_of(event) {
        Ok(p) => p,
        Err(e) => {
            row.what = "a destructive op ran".into();
            row.verdict = Err(format!("{at}: {e}"));
            return row;
        }
    };
    let Some(action) = &proof.action else {
        row.verdict = Err(format!("{at}: the proof names no action"));
        return row;
    };
    row.what = destroyed(action);
    if action.op_kind() != row.op || Some(action.vmid().get()) != row.guest {
        row.verdict = Err(format!(
            "{at}: the proof's action ({} on {}) is not the op the entry records",
            action.op_kind(),
            action.vmid()
        ));
        return row;
    }
    match verify_all(&proof, store, entry.at_ms) {
        Err(e) => row.verdict = Err(format!("{at}: {e}")),
        Ok(signers) => {
            row.signers = signers.iter().map(|(s, _)| s.clone()).collect();
            if let Some((s, role)) = signers.iter().find(|(_, r)| *r != Role::Operational) {
                row.verdict = Err(format!(
                    "{at}: {s} is a {role} key, which authorizes no guest op"
                ));
                return row;
            }
            row.verdict = bound(&proof, action).map_err(|e| format!("{at}: {e}"));
        }
    }
    row
}

/// Whether the signed payload is exactly the binding of `action` (with the identity kept).
fn bound(proof: &Proof, action: &Action) -> Result<(), String> {
    let signed: Value = serde_json::from_str(&proof.payload)
        .map_err(|e| format!("the signed payload does not read: {e}"))?;
    let b = binding_of(action, proof.identity.as_deref());
    let params = signed.get("params").cloned().unwrap_or(Value::Null);
    if signed.get("op").and_then(Value::as_str) != Some(b.op)
        || signed.get("guest").and_then(Value::as_u64) != Some(u64::from(b.guest.get()))
        || params != Value::Object(b.params.clone())
    {
        return Err(format!(
            "what ran ({} on guest {} with {}) is not what was signed ({})",
            b.op,
            b.guest,
            Value::Object(b.params),
            proof.payload
        ));
    }
    Ok(())
}

/// A key rotation: proven when its proof verifies under the store before it; the new store is
/// the payload's `allowed_signers`, whose digest must be the one the entry records.
fn rotation_row(entry: &AuditEntry, store: &TrustStore) -> (Row, Option<TrustStore>) {
    let at = format!("entry {}", entry.seq);
    let mut row = Row {
        seq: entry.seq,
        at_ms: entry.at_ms,
        op: "keys.rotate".into(),
        guest: None,
        what: "the trust store replaced".into(),
        signers: Vec::new(),
        verdict: Ok(()),
    };
    let proof = match proof_of(&entry.event) {
        Ok(p) => p,
        Err(e) => {
            row.verdict = Err(format!("{at}: {e}"));
            return (row, None);
        }
    };
    match verify_all(&proof, store, entry.at_ms) {
        Err(e) => {
            row.verdict = Err(format!("{at}: {e}"));
            return (row, None);
        }
        Ok(signers) => row.signers = signers.into_iter().map(|(s, _)| s).collect(),
    }
    let text = serde_json::from_str::<Value>(&proof.payload)
        .ok()
        .and_then(|p| {
            (p.get("op").and_then(Value::as_str) == Some("keys.rotate"))
                .then(|| p["params"]["allowed_signers"].as_str().map(str::to_string))
                .flatten()
        });
    let Some(text) = text else {
        row.verdict = Err(format!(
            "{at}: the signed payload is not a keys.rotate with params.allowed_signers"
        ));
        return (row, None);
    };
    match TrustStore::parse("rotated allowed_signers", text.as_bytes()) {
        Err(e) => {
            row.verdict = Err(format!("{at}: the new trust store does not load: {e}"));
            (row, None)
        }
        Ok(next) => {
            let recorded = entry.event.get("new_trust_store").and_then(Value::as_str);
            if recorded != Some(next.digest()) {
                row.verdict = Err(format!(
                    "{at}: the entry records trust store {}, the signed text is {}",
                    recorded.map_or("none", short),
                    short(next.digest())
                ));
                return (row, None);
            }
            row.what = format!(
                "the trust store replaced ({} → {})",
                short(store.digest()),
                short(next.digest())
            );
            (row, Some(next))
        }
    }
}

/// What `action` destroyed or overwrote, in words.
fn destroyed(action: &Action) -> String {
    match action {
        Action::Destroy {
            vmid,
            destroy_unreferenced_disks,
            ..
        } => format!(
            "guest {vmid} and every disk its config named{}",
            if *destroy_unreferenced_disks {
                ", and the volumes it owned that no config referenced"
            } else {
                ""
            }
        ),
        Action::SetConfig { change, .. } if !change.removes.is_empty() => format!(
            "volumes {}",
            change
                .removes
                .values()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Action::SetConfig { change, .. } => format!(
            "config keys {}",
            change
                .set
                .keys()
                .chain(change.delete.iter())
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Action::MoveDisk {
            volume,
            storage,
            delete,
            ..
        } => format!(
            "{volume} (moved to {storage}{})",
            if *delete { ", source deleted" } else { "" }
        ),
        Action::SnapshotRollback { snapshot, .. } => {
            format!("everything written since snapshot {snapshot}")
        }
        Action::RestoreOver { archive, .. } => format!("its disks (restored over from {archive})"),
        other => format!("{} (signed)", other.op_kind()),
    }
}

#[cfg(test)]
mod tests;

//! The hub as files: `steward-fleet render` turns a fleet directory (desired state and signed
//! ops, as an administrator keeps them in git) into the files a stock web server serves as
//! protocol version 1 — `v1/nodes/<node>/desired` and `v1/nodes/<node>/jobs` — so that nginx,
//! an object store or a CDN is the whole hub. Everything is checked with the agent's own parsers
//! first (a document the agent would refuse is refused here, with its file and line; an op
//! payload or a signature that does not parse, with its file), and the output is canonical:
//! the same input gives the same bytes, and a file whose bytes did not change is not rewritten
//! (a server's ETag, often mtime and size, changes only when the content does).
//!
//! Layout read:
//! - `nodes/<node>.toml` or `nodes/<node>.json`: that node's document;
//! - `desired.toml` or `desired.json`: a document for several nodes, every guest naming its
//!   `node` (a node is given by one of the two, never both);
//! - `ops/**/NAME.json` with `NAME.json.sig` (and `NAME.json.<anything>.sig` for more
//!   signers): signed ops, each going to the node its payload's `host` names; its job id is its
//!   path below `ops/`.
//!
//! It must never write anything when any input is refused, and never write outside `out`.

use crate::protocol::{self, JobsAnswer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use steward_planner::document::{parse_json, parse_toml};
use steward_providers::Job;

/// What one node is served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFiles {
    /// `v1/nodes/<node>/desired`: the document, canonical JSON.
    pub desired: Option<Vec<u8>>,
    /// `v1/nodes/<node>/jobs`: [`JobsAnswer`], canonical JSON (an empty list when none).
    pub jobs: Vec<u8>,
}

/// The largest file read from the fleet directory.
const MAX_FILE: u64 = protocol::MAX_ANSWER_BYTES as u64;

fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(format!(
            "{}: not a regular file of at most {MAX_FILE} bytes",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A document's text checked by the agent's parser (errors with file and line), and as a
/// JSON value to split and write back canonically.
fn document(path: &Path) -> Result<Value, String> {
    let text = read(path)?;
    let source = path.display().to_string();
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let parsed = if is_toml {
        parse_toml(&source, &text).map(|_| ())
    } else {
        parse_json(&source, &text).map(|_| ())
    };
    parsed.map_err(|errs| {
        errs.0
            .iter()
            .map(|e| {
                if e.at.starts_with(&source) {
                    format!("{}: {}", e.at, e.message)
                } else {
                    format!("{source}: {}: {}", e.at, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if is_toml {
        toml::from_str(&text).map_err(|e| format!("{source}: {e}"))
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{source}: {e}"))
    }
}

fn is_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The fleet directory's documents, split per node.
fn documents(fleet: &Path, errors: &mut Vec<String>) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    let mut from: BTreeMap<String, PathBuf> = BTreeMap::new();
    let nodes = fleet.join("nodes");
    if nodes.is_dir() {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&nodes) {
            Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                errors.push(format!("{}: {e}", nodes.display()));
                Vec::new()
            }
        };
        files.sort();
        for path in files {
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            if ext != "toml" && ext != "json" {
                continue;
            }
            if !is_node_name(stem) {
                errors.push(format!("{}: {stem:?} is not a node name", path.display()));
                continue;
            }
            match document(&path) {
                Err(e) => errors.push(e),
                Ok(doc) => {
                    let elsewhere = doc["guests"].as_array().into_iter().flatten().find(|g| {
                        g.get("node")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n != stem)
                    });
                    if let Some(g) = elsewhere {
                        errors.push(format!(
                            "{}: guest {} names node {}, but this file is node {stem}'s",
                            path.display(),
                            g["vmid"],
                            g["node"]
                        ));
                    }
                    if let Some(first) = from.insert(stem.to_string(), path.clone()) {
                        errors.push(format!(
                            "{} and {}: node {stem} is given twice",
                            first.display(),
                            path.display()
                        ));
                    }
                    out.insert(stem.to_string(), doc);
                }
            }
        }
    }
    for name in ["desired.toml", "desired.json"] {
        let path = fleet.join(name);
        if !path.exists() {
            continue;
        }
        let doc = match document(&path) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut per: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for g in doc["guests"].as_array().into_iter().flatten() {
            match g.get("node").and_then(Value::as_str) {
                Some(n) => per.entry(n.to_string()).or_default().push(g.clone()),
                None => errors.push(format!(
                    "{}: guest {} names no node (a document for several nodes places every guest)",
                    path.display(),
                    g["vmid"]
                )),
            }
        }
        for (node, guests) in per {
            if let Some(first) = from.get(&node) {
                errors.push(format!(
                    "{} and {}: node {node} is given twice",
                    first.display(),
                    path.display()
                ));
                continue;
            }
            from.insert(node.clone(), path.clone());
            let mut part = doc.clone();
            part["guests"] = Value::Array(guests);
            out.insert(node, part);
        }
    }
    out
}

/// The signature files of op file `op`: `NAME.json.sig` and `NAME.json.<anything>.sig`.
fn signature_files(op: &Path) -> Vec<PathBuf> {
    let Some(name) = op.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Some(dir) = op.parent() else {
        return Vec::new();
    };
    let mut sigs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n == format!("{name}.sig")
                    || (n.starts_with(&format!("{name}.")) && n.ends_with(".sig"))
            })
        })
        .collect();
    sigs.sort();
    sigs
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

/// The signed ops under `fleet/ops`, by node.
fn jobs(fleet: &Path, errors: &mut Vec<String>) -> BTreeMap<String, Vec<Job>> {
    let ops = fleet.join("ops");
    let mut files = Vec::new();
    if ops.is_dir() {
        walk(&ops, &mut files);
    }
    let mut out: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    for path in files {
        let shown = path.display();
        let id = path
            .strip_prefix(&ops)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !protocol::valid_job_id(&id) {
            errors.push(format!(
                "{shown}: its path below ops/ is its job id, which must be 1 to {} visible ASCII characters",
                protocol::MAX_JOB_ID
            ));
            continue;
        }
        let payload = match read(&path) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let op = match steward_authz::OpPayload::parse(
            payload.as_bytes(),
            steward_authz::MAX_TTL_LIMIT_SECS,
        ) {
            Ok(op) => op,
            Err(e) => {
                errors.push(format!("{shown}: {}: {}", e.reason, e.detail));
                continue;
            }
        };
        let sig_files = signature_files(&path);
        if sig_files.is_empty() {
            errors.push(format!(
                "{shown}: no signature beside it ({}.sig, as ssh-keygen -Y sign writes it)",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ));
            continue;
        }
        if sig_files.len() > protocol::MAX_SIGNATURES {
            errors.push(format!(
                "{shown}: {} signatures, at most {} are taken",
                sig_files.len(),
                protocol::MAX_SIGNATURES
            ));
            continue;
        }
        let mut signatures = Vec::new();
        for s in &sig_files {
            match read(s) {
                Err(e) => errors.push(e),
                Ok(text) => match steward_authz::sig::parse(text.as_bytes()) {
                    Ok(_) => signatures.push(text),
                    Err(e) => errors.push(format!("{}: {}: {}", s.display(), e.reason, e.detail)),
                },
            }
        }
        if signatures.len() != sig_files.len() {
            continue;
        }
        if !is_node_name(&op.host) {
            errors.push(format!("{shown}: host {:?} is not a node name", op.host));
            continue;
        }
        out.entry(op.host.clone()).or_default().push(Job {
            id,
            payload,
            signatures,
        });
    }
    out
}

/// Renders `fleet` into the files each node is served; `Err` lists every problem found (file
/// and line where there is one).
pub fn render(fleet: &Path) -> Result<BTreeMap<String, NodeFiles>, Vec<String>> {
    let mut errors = Vec::new();
    let docs = documents(fleet, &mut errors);
    let jobs = jobs(fleet, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out: BTreeMap<String, NodeFiles> = BTreeMap::new();
    for (node, doc) in docs {
        // serde_json writes object keys sorted: the canonical form.
        let mut bytes = serde_json::to_vec(&doc).map_err(|e| vec![e.to_string()])?;
        bytes.push(b'\n');
        out.entry(node).or_default().desired = Some(bytes);
    }
    let nodes: Vec<String> = out.keys().chain(jobs.keys()).cloned().collect();
    for node in nodes {
        let answer = JobsAnswer {
            protocol: protocol::VERSION,
            jobs: jobs.get(&node).cloned().unwrap_or_default(),
        };
        let mut bytes = serde_json::to_vec(&answer).map_err(|e| vec![e.to_string()])?;
        bytes.push(b'\n');
        out.entry(node).or_default().jobs = bytes;
    }
    Ok(out)
}

/// What [`write`] did to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// New or changed: written (atomically: a temporary file renamed over it).
    Changed(PathBuf),
    /// The same bytes were there: left alone (its mtime, and a server's ETag, unchanged).
    Unchanged(PathBuf),
}

/// Writes `rendered` below `out` (`v1/nodes/<node>/desired`, `…/jobs`), only the files whose
/// bytes changed.
pub fn write(out: &Path, rendered: &BTreeMap<String, NodeFiles>) -> Result<Vec<Written>, String> {
    let mut done = Vec::new();
    for (node, files) in rendered {
        let dir = out.join("v1").join("nodes").join(node);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut put = |name: &str, bytes: &[u8]| -> Result<(), String> {
            let path = dir.join(name);
            if std::fs::read(&path).is_ok_and(|old| old == bytes) {
                done.push(Written::Unchanged(path));
                return Ok(());
            }
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            done.push(Written::Changed(path));
            Ok(())
        };
        if let Some(d) = &files.desired {
            put("desired", d)?;
        }
        put("jobs", &files.jobs)?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests;

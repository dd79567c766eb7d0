//! `cargo xtask layers`: the crate layering of docs/ARCHITECTURE.md ("Layers"), checked against
//! `cargo metadata`. The table in the doc is the rule; this reads it, so the doc cannot drift
//! from what is enforced. It fails when a package depends on a workspace crate its row does not
//! allow, when a crate its row forbids appears anywhere in its normal dependency tree, when a
//! library uses anyhow outside its own binary, when a shipped crate depends on test support or
//! turns on the journal's test hooks, when a dependency of `steward-authz` needs a newer Rust
//! than authz promises, or when a workspace package has no row. It checks; it never edits.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// One row of the table.
#[derive(Debug, Default)]
struct Row {
    /// Workspace crates it may depend on; None: any.
    allowed: Option<BTreeSet<String>>,
    /// Crates that must not appear in its normal dependency tree.
    never: BTreeSet<String>,
    /// If set, the only external crates it may depend on directly.
    only_external: Option<BTreeSet<String>>,
}

fn names(cell: &str) -> Option<BTreeSet<String>> {
    let cell = cell.trim();
    if cell == "*" {
        return None;
    }
    Some(
        cell.split(',')
            .map(|n| n.trim().trim_matches('`').to_string())
            .filter(|n| !n.is_empty() && n != "—" && n != "-")
            .collect(),
    )
}

/// Reads the "Layers" table: `| package | may depend on | never | only external |`.
fn read_table(doc: &str) -> Result<BTreeMap<String, Row>> {
    let section = doc
        .split("\n## Layers")
        .nth(1)
        .context("docs/ARCHITECTURE.md has no \"## Layers\" section")?;
    let mut rows = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        let [pkg, allowed, never, only] = cells.as_slice() else {
            bail!("layers table: a row needs four cells: {line}");
        };
        let pkg = pkg.trim().trim_matches('`');
        if pkg == "package" || pkg.starts_with("---") {
            continue;
        }
        rows.insert(
            pkg.to_string(),
            Row {
                allowed: names(allowed),
                never: names(never).unwrap_or_default(),
                only_external: match only.trim() {
                    "" | "—" | "-" | "*" => None,
                    c => names(c),
                },
            },
        );
    }
    if rows.is_empty() {
        bail!("the layers table in docs/ARCHITECTURE.md has no rows");
    }
    Ok(rows)
}

fn metadata(root: &Path) -> Result<Value> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A "major.minor[.patch]" version as comparable numbers.
fn version(v: &str) -> [u64; 3] {
    let mut out = [0; 3];
    for (slot, part) in out.iter_mut().zip(v.split('.')) {
        *slot = part.parse().unwrap_or(0);
    }
    out
}

/// Runs every check; prints each violation; Ok(true) when there are none.
pub fn run() -> Result<bool> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .context("docs/ARCHITECTURE.md")?;
    let table = read_table(&doc)?;
    let meta = metadata(&root)?;
    let packages: Vec<&Value> = meta["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .collect();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .context("workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let by_id: BTreeMap<&str, &Value> = packages.iter().map(|p| (str_of(p, "id"), *p)).collect();
    let workspace: BTreeSet<&str> = members
        .iter()
        .filter_map(|id| by_id.get(id).map(|p| str_of(p, "name")))
        .collect();
    // Normal (non-dev, non-build) edges of the resolved graph.
    let mut normal: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().context("resolve")? {
        let deps = node["deps"].as_array().into_iter().flatten();
        let kids = deps
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| str_of(d, "pkg"))
            .collect();
        normal.insert(str_of(node, "id"), kids);
    }
    let closure = |id: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id.to_string()];
        while let Some(cur) = stack.pop() {
            for k in normal.get(cur.as_str()).into_iter().flatten() {
                if seen.insert(k.to_string()) {
                    stack.push(k.to_string());
                }
            }
        }
        seen
    };

    let mut problems = Vec::new();
    let mut checked = 0;
    for id in &members {
        let Some(p) = by_id.get(id) else { continue };
        let name = str_of(p, "name");
        let Some(row) = table.get(name) else {
            problems.push(format!(
                "{name}: no row in the layers table of docs/ARCHITECTURE.md"
            ));
            continue;
        };
        checked += 1;
        let targets = p["targets"].as_array().into_iter().flatten();
        let kinds: BTreeSet<&str> = targets
            .flat_map(|t| t["kind"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let shipped = !matches!(
            name,
            "xtask" | "steward-tests" | "steward-testkit" | "steward-lab"
        );
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let dname = str_of(dep, "name");
            let normal_dep = dep["kind"].is_null();
            if !normal_dep {
                continue;
            }
            if workspace.contains(dname) {
                if let Some(allowed) = &row.allowed {
                    if !allowed.contains(dname) {
                        problems.push(format!(
                            "{name} depends on {dname}, which its row does not allow"
                        ));
                    }
                }
            } else if let Some(only) = &row.only_external {
                if !only.contains(dname) {
                    problems.push(format!(
                        "{name} depends on {dname}; its row allows only {only:?}"
                    ));
                }
            }
            if shipped && matches!(dname, "steward-testkit" | "steward-lab") {
                problems.push(format!(
                    "{name} is shipped but depends on test support ({dname})"
                ));
            }
            let features: Vec<&str> = dep["features"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if shipped && dname == "steward-journal" && features.contains(&"test-hooks") {
                problems.push(format!(
                    "{name} is shipped but enables steward-journal's test-hooks"
                ));
            }
            if dname == "anyhow" && kinds.contains("lib") {
                // A library may carry anyhow for its own binary target only.
                if !kinds.contains("bin") {
                    problems.push(format!("{name} is a library and depends on anyhow"));
                } else {
                    let src = Path::new(str_of(p, "manifest_path"))
                        .parent()
                        .map(|d| d.join("src"))
                        .unwrap_or_default();
                    for f in rust_files(&src) {
                        let is_bin = f.ends_with("main.rs")
                            || f.components().any(|c| c.as_os_str() == "bin");
                        if !is_bin
                            && std::fs::read_to_string(&f)
                                .unwrap_or_default()
                                .contains("anyhow")
                        {
                            problems.push(format!("{}: library code uses anyhow", f.display()));
                        }
                    }
                }
            }
        }
        let tree = closure(id);
        for dep_id in &tree {
            let dname = by_id.get(dep_id.as_str()).map_or("", |d| str_of(d, "name"));
            if row.never.contains(dname) {
                problems.push(format!(
                    "{name} has {dname} in its dependency tree; its row forbids it"
                ));
            }
        }
        if name == "steward-authz" {
            let msrv = version(str_of(p, "rust_version"));
            for dep_id in &tree {
                let Some(d) = by_id.get(dep_id.as_str()) else {
                    continue;
                };
                let theirs = str_of(d, "rust_version");
                if !theirs.is_empty() && version(theirs) > msrv {
                    problems.push(format!(
                        "steward-authz promises Rust {} but {} {} needs {theirs}",
                        str_of(p, "rust_version"),
                        str_of(d, "name"),
                        str_of(d, "version")
                    ));
                }
            }
        }
    }
    for name in table.keys() {
        if !workspace.contains(name.as_str()) {
            problems.push(format!(
                "the layers table names {name}, which is not a workspace package"
            ));
        }
    }
    for p in &problems {
        println!("layers: {p}");
    }
    println!(
        "layers: {checked} packages checked against docs/ARCHITECTURE.md, {} problems",
        problems.len()
    );
    Ok(problems.is_empty())
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_table_rows() {
        let doc = "x\n## Layers\n\nintro\n\n| package | may depend on | never | only external |\n|---|---|---|---|\n| `a` | `b`, `c` | `tokio` | — |\n| `d` | * | — | `clap` |\n\nafter\n";
        let t = read_table(doc).unwrap();
        assert_eq!(t["a"].allowed.as_ref().unwrap().len(), 2);
        assert!(t["a"].never.contains("tokio"));
        assert!(t["d"].allowed.is_none());
        assert!(t["d"].only_external.as_ref().unwrap().contains("clap"));
    }
}

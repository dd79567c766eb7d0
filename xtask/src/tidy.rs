//! `cargo xtask tidy`: the house rules a tool can check, after rust-analyzer's `tidy.rs`. Over
//! the files git tracks:
//!
//! - every Rust file opens with a `//!` comment saying what it is for;
//! - every library or binary source (`crates/*/src`, `bins/*/src`, tests aside) says in that
//!   comment what it must never do (`never` or `must not`);
//! - no comment or doc promises what the code does not do yet (`once it exists`, `(later)`,
//!   `will be the`, to-do markers);
//! - every `**Invariant:**` in `docs/ARCHITECTURE.md` says what enforces it (`Enforced by:`).
//!
//! It reports every problem with file and line, and must never change a file.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// Phrases that promise instead of describe. Built from pieces so this file passes its own rule.
fn promises() -> Vec<String> {
    vec![
        ["once it ", "exists"].concat(),
        ["(lat", "er)"].concat(),
        ["lat", "er: "].concat(),
        ["will be ", "the "].concat(),
        ["TO", "DO"].concat(),
        ["FIX", "ME"].concat(),
        ["not yet ", "implemented"].concat(),
    ]
}

fn tracked(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("git")
        .arg("ls-files")
        .current_dir(root)
        .output()
        .context("git ls-files")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Whether `path` is a library's or a binary's own source (not a test, an example or xtask).
fn shipped_source(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["crates" | "bins", _, "src", ..])
        && !path.ends_with("/tests.rs")
        && !parts.contains(&"tests")
}

/// The problems in one Rust file's opening comment.
fn opening(path: &str, text: &str) -> Vec<String> {
    let head: Vec<&str> = text
        .lines()
        .take_while(|l| l.starts_with("//!") || l.starts_with("#!"))
        .filter(|l| l.starts_with("//!"))
        .collect();
    if head.is_empty() {
        return vec![format!(
            "{path}:1: no opening `//!` comment saying what the file is for"
        )];
    }
    let said = head.join(" ").to_lowercase();
    if shipped_source(path) && !said.contains("never") && !said.contains("must not") {
        return vec![format!(
            "{path}:1: the opening comment does not say what it must never do"
        )];
    }
    Vec::new()
}

fn promised(path: &str, text: &str, rust: bool) -> Vec<String> {
    let phrases = promises();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !rust || l.trim_start().starts_with("//"))
        .filter_map(|(i, l)| {
            phrases
                .iter()
                .find(|p| l.contains(p.as_str()))
                .map(|p| format!("{path}:{}: promises instead of describing ({p:?})", i + 1))
        })
        .collect()
}

fn invariants(path: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.contains("**Invariant:**") {
            continue;
        }
        let paragraph: String = lines[i..]
            .iter()
            .take_while(|p| !p.trim().is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if !paragraph.contains("Enforced by:") {
            out.push(format!(
                "{path}:{}: an invariant that does not say what enforces it",
                i + 1
            ));
        }
    }
    out
}

/// Runs every rule; true when there is no problem.
pub fn run() -> Result<bool> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    let mut files = 0;
    for path in tracked(&root)? {
        let rust = path.ends_with(".rs");
        let doc = path.ends_with(".md") && path != "CHANGELOG.md";
        if !(rust || doc) || path == "xtask/src/tidy.rs" {
            continue;
        }
        // Reference notes quote other projects; they are not ours to word.
        if path.starts_with("docs/reference/") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&path)) else {
            continue;
        };
        files += 1;
        if rust {
            problems.extend(opening(&path, &text));
        }
        problems.extend(promised(&path, &text, rust));
        if path == "docs/ARCHITECTURE.md" {
            problems.extend(invariants(&path, &text));
        }
    }
    for p in &problems {
        println!("{p}");
    }
    println!("tidy: {files} files checked, {} problems", problems.len());
    Ok(problems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_catches_what_it_is_for() {
        assert_eq!(opening("crates/x/src/a.rs", "use std;\n").len(), 1);
        assert_eq!(
            opening("crates/x/src/a.rs", "//! Does things.\nuse std;\n").len(),
            1
        );
        assert!(opening("crates/x/src/a.rs", "//! Does things. It must never\n").is_empty());
        assert!(opening("crates/x/tests/a.rs", "//! A test.\n").is_empty());
        assert!(opening("crates/x/src/y/tests.rs", "//! Tests.\n").is_empty());
        let promise = ["// works ", "once it ", "exists\n"].concat();
        assert_eq!(promised("a.rs", &promise, true).len(), 1);
        assert!(promised("a.rs", "let later = 1;\n", true).is_empty());
        assert_eq!(
            invariants("A.md", "**Invariant:** x never y.\n\nnext").len(),
            1
        );
        assert!(invariants("A.md", "**Invariant:** x never y.\nEnforced by: a test.\n").is_empty());
    }
}

//! The desired-state document: JSON or TOML, one schema (`version = 1`, `generation`, `guests`).
//! A document that does not parse or validate is rejected whole, with *every* error, each naming
//! the guest and field; the caller keeps its last good state. Must never accept an unknown field
//! or return a partial state.

mod disks;
mod guest;
mod settings;

pub use disks::parse as parse_disk;
pub use settings::parse as parse_setting;
mod strict;
mod units;

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use steward_model::{DesiredState, Vmid};

/// The schema version this build reads.
pub const VERSION: u64 = 1;

/// One thing wrong with a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocError {
    /// Where: `document`, `generation`, `guests[2] (vmid 104).memory`, …
    pub at: String,
    /// What is wrong.
    pub message: String,
}

/// Every error found in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocErrors(pub Vec<DocError>);

impl fmt::Display for DocErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "desired state refused: {n} error{}",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {}: {}", e.at, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for DocErrors {}

/// Errors collected while validating.
#[derive(Default)]
pub(crate) struct Errors(Vec<DocError>);

impl Errors {
    pub(crate) fn add(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.0.push(DocError {
            at: at.into(),
            message: message.into(),
        });
    }
}

/// Parses a JSON document. `source` names it in errors (a path or `hub`).
pub fn parse_json(source: &str, text: &str) -> Result<DesiredState, DocErrors> {
    let at = |e: &serde_json::Error| format!("{source}:{}:{}", e.line(), e.column());
    let value: Value = serde_json::from_str(text).map_err(|e| {
        DocErrors(vec![DocError {
            at: at(&e),
            message: format!("not valid JSON: {e}"),
        }])
    })?;
    // Valid JSON may still say one thing twice, and serde_json would keep the last.
    strict::check(text).map_err(|e| {
        DocErrors(vec![DocError {
            at: at(&e),
            message: e.to_string(),
        }])
    })?;
    from_value(&value)
}

/// Parses a TOML document. `source` names it in errors.
pub fn parse_toml(source: &str, text: &str) -> Result<DesiredState, DocErrors> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("{source}:{line}")
            }
            None => source.to_string(),
        };
        DocErrors(vec![DocError {
            at,
            message: format!("not valid TOML: {}", e.message()),
        }])
    })?;
    let value = toml_to_json(toml::Value::Table(table)).map_err(|m| {
        DocErrors(vec![DocError {
            at: source.to_string(),
            message: m,
        }])
    })?;
    from_value(&value)
}

fn toml_to_json(v: toml::Value) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("number {f} is not finite"))?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => return Err(format!("dates are not part of the schema ({d})")),
        toml::Value::Array(a) => {
            Value::Array(a.into_iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.into_iter()
                .map(|(k, v)| Ok((k, toml_to_json(v)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
    })
}

/// Validates a parsed document tree.
pub fn from_value(v: &Value) -> Result<DesiredState, DocErrors> {
    let mut errs = Errors::default();
    let Some(top) = v.as_object() else {
        return Err(DocErrors(vec![DocError {
            at: "document".into(),
            message: "must be an object/table".into(),
        }]));
    };
    for k in top.keys() {
        if !["version", "generation", "guests"].contains(&k.as_str()) {
            errs.add(
                k.clone(),
                "unknown field (expected version, generation, guests)",
            );
        }
    }
    match top.get("version").map(Value::as_u64) {
        Some(Some(VERSION)) => {}
        Some(Some(n)) => errs.add(
            "version",
            format!("version {n} is not supported (this build reads {VERSION})"),
        ),
        Some(None) => errs.add("version", "must be a whole number"),
        None => errs.add("version", "missing"),
    }
    let generation = match top.get("generation").map(Value::as_u64) {
        Some(Some(n)) => n,
        Some(None) => {
            errs.add("generation", "must be a whole number >= 0");
            0
        }
        None => {
            errs.add("generation", "missing");
            0
        }
    };
    let mut guests = Vec::new();
    match top.get("guests") {
        None => errs.add("guests", "missing (an empty list manages nothing)"),
        Some(Value::Array(list)) => {
            let mut seen: BTreeMap<Vmid, usize> = BTreeMap::new();
            for (i, g) in list.iter().enumerate() {
                if let Some(spec) = guest::parse(i, g, &mut errs) {
                    if let Some(first) = seen.insert(spec.vmid, i) {
                        errs.add(
                            format!("guests[{i}] (vmid {})", spec.vmid),
                            format!("duplicate vmid: guests[{first}] names it too"),
                        );
                    }
                    guests.push(spec);
                }
            }
        }
        Some(_) => errs.add("guests", "must be a list"),
    }
    if !errs.0.is_empty() {
        return Err(DocErrors(errs.0));
    }
    guests.sort_by_key(|g| g.vmid);
    Ok(DesiredState {
        version: 1,
        generation,
        guests,
    })
}

#[cfg(test)]
mod tests;

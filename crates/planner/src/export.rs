//! The desired-state document that describes guests as they are: every managed field the
//! node's config holds, in the document's own forms, so that an administrator adopts a node by
//! exporting it, editing the document and serving it back, and a plan against the export
//! changes nothing. Each field is checked by the document's own parser before it is written; a
//! value the document could not say (a name that is not a DNS name, a disk on a host path, a
//! legacy boot string) is left out and reported. It must never export a secret (`cipassword`)
//! or a MAC, and never a field the document would refuse.

use crate::actual::{ActualGuest, ActualState};
use crate::keys::{self, OptType, Rule};
use crate::normalize::{self, setting};
use serde_json::{json, Map, Number, Value};
use steward_model::{volume_of, volume_size, GuestKind, Vmid};

/// The document for `actual` (every guest, or those in `only`), and what was left out.
pub fn document(actual: &ActualState, only: &[Vmid]) -> (Value, Vec<String>) {
    let mut guests = Vec::new();
    let mut left_out = Vec::new();
    for (vmid, g) in actual {
        if !only.is_empty() && !only.contains(vmid) {
            continue;
        }
        let (v, mut out) = guest(g);
        guests.push(v);
        left_out.append(&mut out);
    }
    (
        json!({"version": crate::document::VERSION, "generation": 1, "guests": guests}),
        left_out,
    )
}

/// One guest as a document entry, and what was left out of it.
pub fn guest(g: &ActualGuest) -> (Value, Vec<String>) {
    let mut m = Map::new();
    m.insert("vmid".into(), json!(g.vmid.get()));
    m.insert("kind".into(), json!(g.kind.as_str()));
    let state = if g.status == "running" {
        "running"
    } else {
        "stopped"
    };
    m.insert("state".into(), json!(state));
    let mut candidates: Vec<(String, Value)> = Vec::new();
    let get = |k: &str| g.config.get(k).map(String::as_str);
    if let Some(n) = get(g.kind.name_key()) {
        candidates.push(("name".into(), json!(n)));
    }
    if get("memory").is_some() {
        if let Some(mib) = normalize::memory_mib(get("memory")) {
            candidates.push(("memory".into(), json!(mib)));
        }
    }
    for (field, key) in [
        ("cores", "cores"),
        ("sockets", "sockets"),
        ("swap", "swap"),
        ("cpuunits", "cpuunits"),
    ] {
        if let Some(n) = get(key).and_then(|v| v.trim().parse::<u64>().ok()) {
            candidates.push((field.into(), json!(n)));
        }
    }
    if let Some(t) = get("tags") {
        let tags = normalize::tag_set(normalize::split_tags(t).iter().map(String::as_str));
        candidates.push(("tags".into(), json!(tags)));
    }
    if let Some(d) = get("description") {
        candidates.push(("description".into(), json!(normalize::description(d))));
    }
    if let Some(b) = get("onboot").and_then(|v| normalize::boolean(Some(v))) {
        candidates.push(("onboot".into(), json!(b)));
    }
    if get("startup").is_some() {
        if let Some(s) = normalize::startup(get("startup")) {
            let mut t = Map::new();
            for (k, v) in [("order", s.order), ("up", s.up), ("down", s.down)] {
                if let Some(v) = v {
                    t.insert(k.into(), json!(v));
                }
            }
            candidates.push(("startup".into(), Value::Object(t)));
        }
    }
    if let Some(c) = get("cpulimit").and_then(|v| normalize::cpulimit_milli(Some(v))) {
        if let Some(n) = Number::from_f64(f64::from(c) / 1000.0) {
            candidates.push(("cpulimit".into(), Value::Number(n)));
        }
    }
    let mut left_out = Vec::new();
    for (key, value) in &g.config {
        let v = if let Some(row) = keys::setting(g.kind, key) {
            setting_value(row.rule, value)
        } else if let Some(slot) = keys::disk_slot(g.kind, key) {
            disk_value(g.kind, slot, key, value)
        } else {
            continue;
        };
        match v {
            Some(v) => candidates.push((key.clone(), v)),
            None => left_out.push(format!(
                "{} {}: {key} left out: {value:?} cannot be said in a document",
                g.kind, g.vmid
            )),
        }
    }
    let base = Value::Object(m.clone());
    for (field, value) in candidates {
        // The document's own parser decides: a field it would refuse is left out.
        let mut probe = base.clone();
        probe[&field] = value.clone();
        let doc = json!({"version": crate::document::VERSION, "generation": 1, "guests": [probe]});
        match crate::document::from_value(&doc) {
            Ok(_) => {
                m.insert(field, value);
            }
            Err(e) => left_out.push(format!(
                "{} {}: {field} left out: {}",
                g.kind,
                g.vmid,
                e.0.first().map_or("refused", |e| e.message.as_str())
            )),
        }
    }
    (Value::Object(m), left_out)
}

/// A stored setting in the document's form.
fn setting_value(rule: Rule, stored: &str) -> Option<Value> {
    match rule {
        Rule::Bool { .. } => Some(json!(setting::normal(rule, Some(stored))? == "1")),
        Rule::Int { .. } => stored.trim().parse::<u64>().ok().map(|n| json!(n)),
        Rule::Enum(_) | Rule::UserName | Rule::Words => {
            Some(json!(setting::normal(rule, Some(stored))?))
        }
        Rule::Features { .. } => {
            let n = setting::normal(rule, Some(stored))?;
            let list: Vec<&str> = if n == "0" {
                vec![]
            } else {
                n.split(',').collect()
            };
            Some(json!(list))
        }
        Rule::SshKeys => {
            let keys = setting::normal(rule, Some(stored))?;
            Some(json!(keys.lines().collect::<Vec<_>>()))
        }
        Rule::BootOrder => {
            let n = setting::normal(rule, Some(stored))?;
            let order = n.strip_prefix("order=")?;
            Some(json!(order
                .split(';')
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()))
        }
        Rule::Options { opts, default, .. } => {
            let mut t = Map::new();
            for (name, raw) in setting::options(stored, default, opts) {
                let Some(o) = opts.iter().find(|o| o.name == name) else {
                    continue; // not managed (a MAC, `type=veth`): stays as the guest has it
                };
                t.insert(name, option_value(o.ty, &raw)?);
            }
            Some(Value::Object(t))
        }
    }
}

/// One option's stored text as a document value (`1` → `true`, `40` → `40`).
fn option_value(ty: OptType, raw: &str) -> Option<Value> {
    let text = setting::option_text(ty, raw)?;
    Some(match ty {
        OptType::Bool { .. } => json!(text == "1"),
        OptType::Int { .. } => json!(text.parse::<u64>().ok()?),
        OptType::Number { .. } => Value::Number(Number::from_f64(text.parse().ok()?)?),
        _ => json!(text),
    })
}

/// A stored disk slot in the document's form.
fn disk_value(kind: GuestKind, slot: &keys::DiskSlot, key: &str, stored: &str) -> Option<Value> {
    if crate::plan::is_cdrom(stored) {
        let iso = volume_of(kind, key, stored).ok()?.unwrap_or("none");
        return Some(json!({"media": "cdrom", "iso": iso}));
    }
    let volume = volume_of(kind, key, stored).ok()??;
    let (storage, _) = volume.split_once(':')?;
    let mut t = Map::new();
    t.insert("storage".into(), json!(storage));
    if slot.sized {
        t.insert("size".into(), json!(volume_size(stored)?));
    }
    for (name, raw) in setting::options(stored, Some(slot.volume_option()), slot.opts) {
        if let Some(o) = slot.opts.iter().find(|o| o.name == name) {
            t.insert(name, option_value(o.ty, &raw)?);
        }
    }
    Some(Value::Object(t))
}

#[cfg(test)]
mod tests;

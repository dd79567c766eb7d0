//! Field normalization: every managed key brought to one canonical form, from the document's side
//! and from Proxmox's stored side, so that comparing them says exactly whether a write is needed.
//! Proxmox's formats and defaults are quoted from `docs/reference/pve-api.md` beside each rule.
//! It must never invent a default the reference does not state: an absent key with no documented
//! default is "absent", not a guess.

use crate::actual::ActualGuest;
use crate::keys;
use std::collections::{BTreeMap, BTreeSet};
use steward_model::{ConfigChange, GuestKind, GuestSpec, Startup};

pub mod setting;

/// `memory`: "qemu `memory`: a property string `[current=]<MiB>` (minimum 16, default 512) …
/// lxc `memory` and `swap`: integer MiB (defaults 512/512)."
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// lxc `swap` default, MiB.
pub const DEFAULT_SWAP_MIB: u64 = 512;

/// Description as compared and written: "reading it back yields the text with each line ended
/// by `\n`, so a written `"web"` reads back as `"web\n"`." CRLF and CR become LF; trailing line
/// ends go.
pub fn description(s: &str) -> String {
    s.replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim_end_matches('\n')
        .to_string()
}

/// Tags as Proxmox may hold or accept them: "stored `;`-separated; the GUI and API also accept
/// `,`, `;` and spaces as separators on input."
pub fn split_tags(s: &str) -> Vec<String> {
    s.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The canonical tag set: lower-cased (a datacenter may lower-case tags on write), sorted
/// (ordering is "config order or alphabetical per datacenter `tag-style`"), deduplicated.
pub fn tag_set<'a>(tags: impl Iterator<Item = &'a str>) -> Vec<String> {
    tags.map(str::to_ascii_lowercase)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `memory` in MiB from a stored value: `"4096"` or `"current=4096"` (QEMU property string),
/// absent → 512.
pub fn memory_mib(stored: Option<&str>) -> Option<u64> {
    let Some(s) = stored else {
        return Some(DEFAULT_MEMORY_MIB);
    };
    s.split(',')
        .find_map(|part| match part.split_once('=') {
            Some(("current", v)) => Some(v),
            None => Some(part),
            Some(_) => None,
        })
        .and_then(|v| v.trim().parse().ok())
}

/// `onboot`: "booleans, returned as 0/1", default 0.
pub fn boolean(stored: Option<&str>) -> Option<bool> {
    match stored {
        None | Some("0") => Some(false),
        Some("1") => Some(true),
        _ => None,
    }
}

/// `startup`: `[[order=]\d+] [,up=\d+] [,down=\d+]`; absent → nothing set.
pub fn startup(stored: Option<&str>) -> Option<Startup> {
    let mut out = Startup::default();
    let Some(s) = stored else {
        return Some(out);
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or(("order", part));
        let n: u32 = v.trim().parse().ok()?;
        match k.trim() {
            "order" => out.order = Some(n),
            "up" => out.up = Some(n),
            "down" => out.down = Some(n),
            _ => return None,
        }
    }
    Some(out)
}

/// `cpulimit` in thousandths, absent → 0 ("default 0").
pub fn cpulimit_milli(stored: Option<&str>) -> Option<u32> {
    let Some(s) = stored else { return Some(0) };
    let f: f64 = s.trim().parse().ok()?;
    (f.is_finite() && f >= 0.0).then(|| (f * 1000.0).round() as u32)
}

/// Thousandths as the decimal Proxmox stores (`1500` → `"1.5"`).
pub fn format_milli(m: u32) -> String {
    let (int, frac) = (m / 1000, m % 1000);
    if frac == 0 {
        int.to_string()
    } else {
        format!("{int}.{}", format!("{frac:03}").trim_end_matches('0'))
    }
}

fn int(stored: Option<&str>, default: Option<u64>) -> Option<u64> {
    match stored {
        None => default,
        Some(s) => s.trim().parse().ok(),
    }
}

/// Every key `managed` may read: the config keys of the one table of managed fields.
const MANAGED_KEYS: [&str; keys::CONFIG_KEY_COUNT] = keys::CONFIG_KEYS;

/// One managed key's verdict: what to write, or that it must go.
enum Want {
    Set(String),
    Delete,
}

/// Called per managed key with the key, whether it is already equal, and how to build the value.
type Visitor<'a> = dyn FnMut(&'static str, bool, &dyn Fn() -> Want) + 'a;

/// Walks the managed keys of `spec`. For each, `visit(key, equal, want)` learns whether the
/// stored value (read through `stored`) already is canonical-equal to what the spec asks, and
/// can build the value to write. The value is built only on demand: the common case on a
/// converged node is "equal", and it must not allocate.
fn managed<'s>(
    spec: &GuestSpec,
    stored: &dyn Fn(&str) -> Option<&'s str>,
    visit: &mut Visitor<'_>,
) {
    if let Some(name) = &spec.name {
        let key = field_key("name", spec.kind);
        visit(key, stored(key) == Some(name.as_str()), &|| {
            Want::Set(name.clone())
        });
    }
    if let Some(m) = spec.memory {
        visit("memory", memory_mib(stored("memory")) == Some(m.0), &|| {
            Want::Set(m.0.to_string())
        });
    }
    if let Some(c) = spec.cores {
        // qemu `cores` default 1; lxc `cores` absent means all host cores (no number).
        let default = (spec.kind == GuestKind::Qemu).then_some(1);
        visit(
            "cores",
            int(stored("cores"), default) == Some(u64::from(c)),
            &|| Want::Set(c.to_string()),
        );
    }
    if let Some(n) = spec.sockets {
        visit(
            "sockets",
            int(stored("sockets"), Some(1)) == Some(u64::from(n)),
            &|| Want::Set(n.to_string()),
        );
    }
    if let Some(n) = spec.swap {
        visit(
            "swap",
            int(stored("swap"), Some(DEFAULT_SWAP_MIB)) == Some(n.0),
            &|| Want::Set(n.0.to_string()),
        );
    }
    if let Some(tags) = &spec.tags {
        let have = stored("tags").unwrap_or("");
        // Fast path: stored exactly as we write it.
        let equal = joined_equal(have, tags, ';') || same_tag_set(have, tags);
        visit("tags", equal, &|| {
            if tags.is_empty() {
                Want::Delete
            } else {
                Want::Set(tags.join(";"))
            }
        });
    }
    if let Some(d) = &spec.description {
        let have = stored("description").unwrap_or("");
        let equal =
            have.strip_suffix('\n').unwrap_or(have) == d.as_str() || description(have) == *d;
        visit("description", equal, &|| {
            if d.is_empty() {
                Want::Delete
            } else {
                Want::Set(d.clone())
            }
        });
    }
    if let Some(b) = spec.onboot {
        visit("onboot", boolean(stored("onboot")) == Some(b), &|| {
            Want::Set(if b { "1" } else { "0" }.into())
        });
    }
    if let Some(st) = spec.startup {
        visit("startup", startup(stored("startup")) == Some(st), &|| {
            if st == Startup::default() {
                Want::Delete
            } else {
                Want::Set(st.to_property_string())
            }
        });
    }
    if let Some(m) = spec.cpulimit_milli {
        visit(
            "cpulimit",
            cpulimit_milli(stored("cpulimit")) == Some(m),
            &|| {
                if m == 0 {
                    Want::Delete
                } else {
                    Want::Set(format_milli(m))
                }
            },
        );
    }
    if let Some(u) = spec.cpuunits {
        visit(
            "cpuunits",
            int(stored("cpuunits"), None) == Some(u64::from(u)),
            &|| Want::Set(u.to_string()),
        );
    }
}

/// The config key of managed field `field` on `kind`, from the one table. Every field visited
/// here has a row, and a field the kind lacks was refused by the document already.
fn field_key(field: &'static str, kind: GuestKind) -> &'static str {
    keys::managed(field)
        .and_then(|m| m.key(kind))
        .unwrap_or(field)
}

/// Whether the stored tag list `have` holds exactly the canonical set `tags` (lower-case, sorted,
/// unique), comparing without allocating.
fn same_tag_set(have: &str, tags: &[String]) -> bool {
    let stored = || have.split([';', ',', ' ']).filter(|t| !t.is_empty());
    stored().all(|t| tags.iter().any(|w| w.eq_ignore_ascii_case(t)))
        && tags
            .iter()
            .all(|w| stored().any(|t| w.eq_ignore_ascii_case(t)))
}

/// Whether `have` is exactly `parts` joined by `sep`, without building the joined string.
fn joined_equal(have: &str, parts: &[String], sep: char) -> bool {
    let mut rest = have;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            match rest.strip_prefix(sep) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        match rest.strip_prefix(p.as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty() && !parts.is_empty()
}

/// The config write that brings `actual` to `spec`, or None when nothing differs. Carries the
/// digest it was planned against.
pub fn config_change(spec: &GuestSpec, actual: &ActualGuest) -> Option<ConfigChange> {
    // One ordered pass over the stored config picks out the managed keys: cheaper than a tree
    // search per key once configs no longer sit in cache (10 000 guests).
    let mut picked: [Option<&str>; MANAGED_KEYS.len()] = [None; MANAGED_KEYS.len()];
    for (k, v) in &actual.config {
        if let Some(i) = MANAGED_KEYS.iter().position(|m| *m == k.as_str()) {
            picked[i] = Some(v.as_str());
        }
    }
    let stored = |k: &str| {
        MANAGED_KEYS
            .iter()
            .position(|m| *m == k)
            .and_then(|i| picked[i])
    };
    let mut change: Option<ConfigChange> = None;
    managed(spec, &stored, &mut |key, equal, want| {
        if equal {
            return;
        }
        let c = change.get_or_insert_with(|| ConfigChange {
            digest: Some(actual.digest.clone()),
            ..ConfigChange::default()
        });
        match want() {
            Want::Set(v) => {
                c.set.insert(key.to_string(), v);
            }
            Want::Delete => {
                if actual.config.contains_key(key) {
                    c.delete.insert(key.to_string());
                }
            }
        }
    });
    settings_into(spec, actual, false, &mut change);
    change.filter(|c| !c.set.is_empty() || !c.delete.is_empty())
}

/// The change of the settings written on their own (`keys::written_alone`), or None when
/// they already are as the document says. It carries no digest.
pub fn alone_change(spec: &GuestSpec, actual: &ActualGuest) -> Option<ConfigChange> {
    let mut change = None;
    settings_into(spec, actual, true, &mut change);
    change
}

/// Adds to `change` each setting of `spec` (those written alone, or all the others) whose
/// stored value differs.
fn settings_into(
    spec: &GuestSpec,
    actual: &ActualGuest,
    alone: bool,
    change: &mut Option<ConfigChange>,
) {
    for (key, want) in &spec.settings {
        // The document refused a setting its kind lacks; nothing unknown is written.
        let Some(row) = keys::setting(spec.kind, key) else {
            continue;
        };
        if keys::written_alone(spec.kind, key) != alone {
            continue;
        }
        let stored = actual.config.get(key).map(String::as_str);
        if setting::equal(row.rule, want, stored) {
            continue;
        }
        let c = change.get_or_insert_with(|| ConfigChange {
            digest: (!alone).then(|| actual.digest.clone()),
            ..ConfigChange::default()
        });
        c.set
            .insert(key.clone(), setting::value(row.rule, want, stored));
        // A container's NIC is its identity: the change says which value (and MAC) it keeps.
        if let (GuestKind::Lxc, true, Some(v)) = (spec.kind, steward_model::is_net_key(key), stored)
        {
            c.keeps.insert(key.clone(), v.to_string());
        }
    }
}

/// The create call's config: every managed value that is not Proxmox's default-by-absence, plus
/// the create-time keys.
pub fn create_config(spec: &GuestSpec) -> BTreeMap<String, String> {
    let mut out = spec.create.clone();
    managed(spec, &|_| None, &mut |key, _, want| {
        if let Want::Set(v) = want() {
            out.insert(key.to_string(), v);
        }
    });
    for (key, want) in &spec.settings {
        if let Some(row) = keys::setting(spec.kind, key) {
            out.insert(key.clone(), setting::value(row.rule, want, None));
        }
    }
    out
}

#[cfg(test)]
mod tests;

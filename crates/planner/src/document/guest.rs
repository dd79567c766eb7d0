//! One guest entry of the document: every field checked, every problem recorded with the guest
//! and field, values normalized into a `GuestSpec`. Must never stop at the first error.

use super::{units, Errors};
use crate::keys;
use serde_json::{Map, Value};
use steward_model::{GuestKind, GuestSpec, GuestState, Startup, Vmid};

/// Proxmox's memory minimum (MiB), both kinds.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Proxmox's `description` limit.
const MAX_DESCRIPTION: usize = 8192;

/// Parses guest `i`; records errors and returns None if any field was wrong.
pub fn parse(i: usize, v: &Value, errs: &mut Errors) -> Option<GuestSpec> {
    let before = errs.0.len();
    let Some(obj) = v.as_object() else {
        errs.add(format!("guests[{i}]"), "must be an object/table");
        return None;
    };
    let vmid = match obj.get("vmid") {
        Some(Value::Number(n)) => match n.as_u64().map(Vmid::new) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                errs.add(format!("guests[{i}].vmid"), e.to_string());
                None
            }
            None => {
                errs.add(format!("guests[{i}].vmid"), format!("{n} is not a VMID"));
                None
            }
        },
        Some(other) => {
            errs.add(
                format!("guests[{i}].vmid"),
                format!("must be a number, got {other}"),
            );
            None
        }
        None => {
            errs.add(format!("guests[{i}].vmid"), "missing");
            None
        }
    };
    let at = |field: &str| match vmid {
        Some(v) => format!("guests[{i}] (vmid {v}).{field}"),
        None => format!("guests[{i}].{field}"),
    };
    for k in obj.keys() {
        if !keys::is_document_field(k) {
            errs.add(at(k), "unknown field");
        }
    }
    let kind = match obj.get("kind").and_then(Value::as_str) {
        Some("qemu") => Some(GuestKind::Qemu),
        Some("lxc") => Some(GuestKind::Lxc),
        Some(other) => {
            errs.add(at("kind"), format!("{other:?} is not qemu or lxc"));
            None
        }
        None => {
            errs.add(at("kind"), "missing (qemu or lxc)");
            None
        }
    };
    let state = match obj.get("state").and_then(Value::as_str) {
        Some("running") => Some(GuestState::Running),
        Some("stopped") => Some(GuestState::Stopped),
        Some("absent") => Some(GuestState::Absent),
        Some(other) => {
            errs.add(
                at("state"),
                format!("{other:?} is not running, stopped or absent"),
            );
            None
        }
        None => {
            errs.add(at("state"), "missing (running, stopped or absent)");
            None
        }
    };
    // Placeholders stand in for fields already reported as wrong; the spec is dropped then.
    let mut spec = GuestSpec::new(
        vmid.unwrap_or(Vmid::new(u64::from(Vmid::MIN)).ok()?),
        kind.unwrap_or(GuestKind::Qemu),
        state.unwrap_or(GuestState::Stopped),
    );

    let only = |field: &str, want: GuestKind, errs: &mut Errors| {
        if obj.contains_key(field) && kind.is_some_and(|k| k != want) {
            errs.add(
                at(field),
                format!(
                    "{field} is a {want} field; this guest is {}",
                    kind.map_or("", GuestKind::as_str)
                ),
            );
        }
    };
    for m in keys::MANAGED {
        match (m.qemu, m.lxc) {
            (Some(_), None) => only(m.field, GuestKind::Qemu, errs),
            (None, Some(_)) => only(m.field, GuestKind::Lxc, errs),
            _ => {}
        }
    }

    if let Some(v) = obj.get("node") {
        match v.as_str() {
            Some(s) if valid_dns_name(s) && !s.contains('.') => spec.node = Some(s.to_string()),
            _ => errs.add(
                at("node"),
                format!("{v} is not a node name (letters, digits, '-')"),
            ),
        }
    }
    if let Some(v) = obj.get("name") {
        match v.as_str() {
            Some(s) if valid_dns_name(s) => spec.name = Some(s.to_string()),
            _ => errs.add(
                at("name"),
                format!("{v} is not a DNS name (letters, digits, '-', '.')"),
            ),
        }
    }
    if let Some(v) = obj.get("memory") {
        match units::parse_mib(v) {
            Ok(m) if m.0 < MIN_MEMORY_MIB => errs.add(
                at("memory"),
                format!("{m} is below Proxmox's minimum of {MIN_MEMORY_MIB} MiB"),
            ),
            Ok(m) => spec.memory = Some(m),
            Err(e) => errs.add(at("memory"), e),
        }
    }
    let cores_max = if kind == Some(GuestKind::Lxc) {
        8192
    } else {
        u64::from(u32::MAX)
    };
    spec.cores = int_field(obj, "cores", 1, cores_max, &at, errs);
    spec.sockets = int_field(obj, "sockets", 1, u64::from(u32::MAX), &at, errs);
    if let Some(v) = obj.get("swap") {
        match units::parse_mib(v) {
            Ok(m) => spec.swap = Some(m),
            Err(e) => errs.add(at("swap"), e),
        }
    }
    if let Some(v) = obj.get("tags") {
        match tags(v) {
            Ok(t) => spec.tags = Some(t),
            Err(e) => errs.add(at("tags"), e),
        }
    }
    if let Some(v) = obj.get("description") {
        match v.as_str() {
            Some(s) if s.chars().count() > MAX_DESCRIPTION => errs.add(
                at("description"),
                format!("longer than {MAX_DESCRIPTION} characters"),
            ),
            Some(s) => spec.description = Some(crate::normalize::description(s)),
            None => errs.add(at("description"), "must be a string"),
        }
    }
    if let Some(v) = obj.get("onboot") {
        match v.as_bool() {
            Some(b) => spec.onboot = Some(b),
            None => errs.add(at("onboot"), "must be true or false"),
        }
    }
    if let Some(v) = obj.get("startup") {
        match startup(v) {
            Ok(s) => spec.startup = Some(s),
            Err(e) => errs.add(at("startup"), e),
        }
    }
    if let Some(v) = obj.get("cpulimit") {
        let max = if kind == Some(GuestKind::Lxc) {
            8192.0
        } else {
            128.0
        };
        match v.as_f64() {
            Some(f) if (0.0..=max).contains(&f) => {
                // Thousandths: what Proxmox can round-trip through its decimal string.
                spec.cpulimit_milli = Some((f * 1000.0).round() as u32);
            }
            _ => errs.add(at("cpulimit"), format!("must be a number from 0 to {max}")),
        }
    }
    let (units_min, units_max) = if kind == Some(GuestKind::Lxc) {
        (0, 500_000)
    } else {
        (1, 262_144)
    };
    spec.cpuunits = int_field(obj, "cpuunits", units_min, units_max, &at, errs);
    if let Some(v) = obj.get("create") {
        match v.as_object() {
            Some(m) => spec.create = create_keys(m, kind, &at, errs),
            None => errs.add(at("create"), "must be an object/table of create-time keys"),
        }
    }
    // Settings and disk slots: each checked against its kind's row, and said once (not also
    // under `create`).
    for (k, v) in obj.iter() {
        let (Some(kind), true) = (kind, keys::is_setting(k) || keys::is_disk_slot(k)) else {
            continue;
        };
        let parsed = if keys::is_setting(k) {
            keys::setting(kind, k)
                .ok_or_else(|| format!("{k} is not a setting of a {kind} guest"))
                .and_then(|row| super::settings::parse(row, k, v))
                .map(|s| {
                    spec.settings.insert(k.clone(), s);
                })
        } else {
            keys::disk_slot(kind, k)
                .ok_or_else(|| format!("{k} is not a disk of a {kind} guest"))
                .and_then(|slot| super::disks::parse(slot, k, v))
                .map(|d| {
                    spec.disks.insert(k.clone(), d);
                })
        };
        if let Err(e) = parsed {
            errs.add(at(k), e);
        }
        if spec.create.contains_key(k) {
            errs.add(
                at(k),
                format!("also given as create.{k}: give it once (here, to manage it)"),
            );
        }
    }
    if let Some(v) = obj.get("disks") {
        match super::disks::mode(v) {
            Ok(exact) => spec.exact_disks = exact,
            Err(e) => errs.add(at("disks"), e),
        }
    }
    (errs.0.len() == before).then_some(spec)
}

fn int_field(
    obj: &Map<String, Value>,
    field: &str,
    min: u64,
    max: u64,
    at: &dyn Fn(&str) -> String,
    errs: &mut Errors,
) -> Option<u32> {
    let v = obj.get(field)?;
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => u32::try_from(n).ok(),
        _ => {
            errs.add(
                at(field),
                format!("{v} is not a whole number from {min} to {max}"),
            );
            None
        }
    }
}

pub(super) fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `pve-tag`: `[a-z0-9_][a-z0-9_\-+.]*`, any case. Returned sorted, lower-cased, deduplicated.
fn tags(v: &Value) -> Result<Vec<String>, String> {
    let list: Vec<String> = match v {
        Value::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("tag {t} is not a string"))
            })
            .collect::<Result<_, _>>()?,
        Value::String(s) => crate::normalize::split_tags(s),
        other => return Err(format!("expected a list of tags, got {other}")),
    };
    for t in &list {
        let mut chars = t.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c)) {
            return Err(format!(
                "{t:?} is not a Proxmox tag ([a-z0-9_][a-z0-9_-+.]*)"
            ));
        }
    }
    Ok(crate::normalize::tag_set(list.iter().map(String::as_str)))
}

fn startup(v: &Value) -> Result<Startup, String> {
    let obj = v
        .as_object()
        .ok_or("expected { order = N, up = S, down = S }")?;
    let mut s = Startup::default();
    for (k, val) in obj {
        let n = val
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{k}: {val} is not a whole number"))?;
        match k.as_str() {
            "order" => s.order = Some(n),
            "up" => s.up = Some(n),
            "down" => s.down = Some(n),
            other => return Err(format!("unknown key {other:?} (order, up, down)")),
        }
    }
    Ok(s)
}

/// Create-time keys: disks, network, template, firmware. Values are Proxmox property strings.
fn create_keys(
    m: &Map<String, Value>,
    kind: Option<GuestKind>,
    at: &dyn Fn(&str) -> String,
    errs: &mut Errors,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in m {
        let field = format!("create.{k}");
        let allowed = match kind {
            Some(GuestKind::Qemu) => qemu_create_key(k),
            Some(GuestKind::Lxc) => lxc_create_key(k),
            None => true,
        };
        if !allowed {
            errs.add(
                at(&field),
                format!(
                    "not a create-time key for {}",
                    kind.map_or("this kind", GuestKind::as_str)
                ),
            );
            continue;
        }
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            other => {
                errs.add(
                    at(&field),
                    format!("must be a string, number or boolean, got {other}"),
                );
                continue;
            }
        };
        out.insert(k.clone(), value);
    }
    out
}

fn indexed(k: &str, prefix: &str, max: u32) -> bool {
    k.strip_prefix(prefix)
        .filter(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && !(n.len() > 1 && n.starts_with('0'))
        })
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n <= max)
}

fn qemu_create_key(k: &str) -> bool {
    indexed(k, "scsi", 30)
        || indexed(k, "virtio", 15)
        || indexed(k, "sata", 5)
        || indexed(k, "ide", 3)
        || indexed(k, "net", 31)
        || [
            "efidisk0",
            "tpmstate0",
            "ostype",
            "scsihw",
            "bios",
            "machine",
            "cpu",
            "agent",
            "boot",
            "numa",
        ]
        .contains(&k)
}

fn lxc_create_key(k: &str) -> bool {
    indexed(k, "mp", 255)
        || indexed(k, "net", 31)
        || [
            "rootfs",
            "ostemplate",
            "ostype",
            "unprivileged",
            "arch",
            "features",
            "nameserver",
            "searchdomain",
        ]
        .contains(&k)
}

//! Normal forms of the settings table's rules (`keys::SETTINGS`): how a stored value reads, when
//! it already is what the document asks, and what to write when it is not. A property string is
//! read as pve-common's `parse_property_string` reads it (a bare part is the default option's
//! value; QEMU's `virtio=<MAC>` is the model with its MAC) and written as `print_property_string`
//! writes it (the default option bare and first, the others sorted). Options the document does
//! not name are written back as the guest has them, so a managed NIC keeps its MAC. It must never
//! write an option the document did not ask for that the guest did not already have.

use crate::keys::{OptType, Rule};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::BTreeMap;
use steward_model::Setting;

/// What `encodeURIComponent` leaves alone, and so what Proxmox's `urlencoded` format accepts
/// unescaped among the characters RFC 3986 calls unreserved.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A boolean as Proxmox reads one (`1`, `on`, `yes`, `true`, and their opposites), as `1`/`0`.
pub fn bool_text(raw: &str) -> Option<&'static str> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some("1"),
        "0" | "off" | "no" | "false" => Some("0"),
        _ => None,
    }
}

/// A decimal number in its shortest form (`12.50` → `12.5`, `3.0` → `3`).
pub fn number_text(raw: &str) -> Option<String> {
    let f: f64 = raw.trim().parse().ok()?;
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    Some(if f.fract() == 0.0 && f < 1e15 {
        format!("{}", f as u64)
    } else {
        format!("{f}")
    })
}

/// One option's value in normal form, or None when it is not a value of its type.
pub fn option_text(ty: OptType, raw: &str) -> Option<String> {
    let raw = raw.trim();
    match ty {
        OptType::Bool { .. } => bool_text(raw).map(str::to_string),
        OptType::Int { min, max } => raw
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(|n| n.to_string()),
        OptType::Number { max } => {
            number_text(raw).filter(|n| n.parse::<f64>().is_ok_and(|f| f <= f64::from(max)))
        }
        OptType::Enum(words) => words.contains(&raw).then(|| raw.to_string()),
        OptType::Bridge => name_like(raw, 15, "-_.").then(|| raw.to_string()),
        OptType::IfName => name_like(raw, 15, "-_.").then(|| raw.to_string()),
        OptType::CpuModel => name_like(raw, 64, "-_.").then(|| raw.to_string()),
        OptType::Ip4Cidr => match raw {
            "dhcp" | "manual" => Some(raw.to_string()),
            _ => cidr::<std::net::Ipv4Addr>(raw, 32),
        },
        OptType::Ip6Cidr => match raw {
            "dhcp" | "auto" | "manual" => Some(raw.to_string()),
            _ => cidr::<std::net::Ipv6Addr>(raw, 128),
        },
        OptType::Ip4 => raw
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|a| a.to_string()),
        OptType::Ip6 => raw
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| a.to_string()),
        OptType::Switch => match raw {
            "on" | "1" | "true" => Some("on".into()),
            "ignore" | "0" | "false" => Some("ignore".into()),
            _ => None,
        },
        OptType::Path => (raw.starts_with('/')
            && raw.len() <= 4096
            && !raw.contains([',', '=', '\n', '\0'])
            && !raw.split('/').any(|c| c == ".." || c == "."))
        .then(|| {
            let t = raw.trim_end_matches('/');
            if t.is_empty() {
                "/".to_string()
            } else {
                t.to_string()
            }
        }),
    }
}

fn name_like(s: &str, max: usize, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

fn cidr<A: std::str::FromStr + std::fmt::Display>(raw: &str, bits: u8) -> Option<String> {
    let (addr, len) = raw.split_once('/')?;
    let addr: A = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= bits)?;
    Some(format!("{addr}/{len}"))
}

/// The options of a stored property string, in the order written: a bare part is the default
/// option's value, and `<model>=<MAC>` (a QEMU NIC) is the model and its `macaddr`.
pub fn options(
    stored: &str,
    default: Option<&'static str>,
    opts: &[crate::keys::Opt],
) -> Vec<(String, String)> {
    let default_words: &[&str] = match default.and_then(|d| opts.iter().find(|o| o.name == d)) {
        Some(o) => match o.ty {
            OptType::Enum(w) => w,
            _ => &[],
        },
        None => &[],
    };
    let mut out = Vec::new();
    for part in stored.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match (part.split_once('='), default) {
            (Some((k, mac)), Some(d)) if default_words.contains(&k) => {
                out.push((d.to_string(), k.to_string()));
                out.push(("macaddr".to_string(), mac.to_string()));
            }
            (Some((k, v)), _) => out.push((k.to_string(), v.to_string())),
            (None, Some(d)) => out.push((d.to_string(), part.to_string())),
            (None, None) => out.push((part.to_string(), String::new())),
        }
    }
    out
}

/// Whether the stored options already hold every option `want` names.
pub(crate) fn options_equal(
    want: &BTreeMap<String, String>,
    stored: Option<&str>,
    default: Option<&'static str>,
    opts: &[crate::keys::Opt],
) -> bool {
    let Some(stored) = stored else {
        return false;
    };
    let have = options(stored, default, opts);
    want.iter().all(|(name, value)| {
        let ty = opts.iter().find(|o| o.name == name).map(|o| o.ty);
        let stored = have.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        match (stored, ty) {
            (Some(v), Some(ty)) => option_text(ty, v).as_deref() == Some(value.as_str()),
            (None, Some(OptType::Bool { default })) => value == if default { "1" } else { "0" },
            _ => false,
        }
    })
}

/// The property string to write: the stored options with `want`'s laid over them, the default
/// option bare and first (with its MAC as `<model>=<MAC>` when there is one), the rest sorted.
pub(crate) fn options_value(
    want: &BTreeMap<String, String>,
    stored: Option<&str>,
    default: Option<&'static str>,
    opts: &[crate::keys::Opt],
) -> String {
    let mut all: BTreeMap<String, String> = stored
        .map(|s| options(s, default, opts))
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (k, v) in want {
        all.insert(k.clone(), v.clone());
    }
    let mut parts = Vec::new();
    if let Some(d) = default {
        if let Some(v) = all.remove(d) {
            match all.remove("macaddr") {
                Some(mac) => parts.push(format!("{v}={mac}")),
                None => parts.push(v),
            }
        }
    }
    parts.extend(
        all.into_iter()
            .map(|(k, v)| if v.is_empty() { k } else { format!("{k}={v}") }),
    );
    parts.join(",")
}

/// A stored value's normal form under a whole-value `rule` (absent: what absence means).
pub fn normal(rule: Rule, stored: Option<&str>) -> Option<String> {
    match rule {
        Rule::Bool { default } => match stored {
            None => Some(if default { "1" } else { "0" }.to_string()),
            Some(s) => bool_text(s).map(str::to_string),
        },
        Rule::Int { .. } => stored?.trim().parse::<u64>().ok().map(|n| n.to_string()),
        Rule::Enum(_) | Rule::UserName => stored.map(|s| s.trim().to_string()),
        Rule::Words => stored.map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")),
        Rule::Features { all, default } => {
            let list: Vec<&str> = match stored.map(str::trim) {
                None | Some("1") => default.to_vec(),
                Some("0") | Some("") => Vec::new(),
                Some(s) => s.split(',').map(str::trim).collect(),
            };
            features(&list, all)
        }
        Rule::SshKeys => {
            let text = percent_decode_str(stored?).decode_utf8().ok()?;
            Some(ssh_keys(text.lines()))
        }
        Rule::BootOrder => {
            let s = stored?;
            let order = s.split(',').find_map(|p| p.trim().strip_prefix("order="))?;
            Some(format!("order={order}"))
        }
        Rule::Options { .. } => None,
    }
}

/// A feature list's normal form: sorted, each once, `0` when empty; None when a feature is not
/// one of `all`.
pub fn features(list: &[&str], all: &[&str]) -> Option<String> {
    let mut set: Vec<&str> = list.iter().copied().filter(|f| !f.is_empty()).collect();
    if set.iter().any(|f| !all.contains(f)) {
        return None;
    }
    set.sort_unstable();
    set.dedup();
    Some(if set.is_empty() {
        "0".to_string()
    } else {
        set.join(",")
    })
}

/// SSH keys' normal form: one key per line, trimmed, blank lines gone, in the order given.
pub fn ssh_keys<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the stored value already is what `want` asks.
pub fn equal(rule: Rule, want: &Setting, stored: Option<&str>) -> bool {
    match (rule, want) {
        (Rule::Options { opts, default, .. }, Setting::Options(w)) => {
            options_equal(w, stored, default, opts)
        }
        (_, Setting::Value(w)) => normal(rule, stored).as_deref() == Some(w.as_str()),
        _ => false,
    }
}

/// The value to write for `want`, given what is stored.
pub fn value(rule: Rule, want: &Setting, stored: Option<&str>) -> String {
    match (rule, want) {
        (Rule::Options { opts, default, .. }, Setting::Options(w)) => {
            options_value(w, stored, default, opts)
        }
        (Rule::SshKeys, Setting::Value(keys)) => {
            // Proxmox wants the keys URL-encoded, newline included.
            utf8_percent_encode(&format!("{keys}\n"), URI_COMPONENT).to_string()
        }
        (_, Setting::Value(w)) => w.clone(),
        (_, Setting::Options(w)) => options_value(w, stored, None, &[]),
    }
}

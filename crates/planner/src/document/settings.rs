//! The document's settings (`keys::SETTINGS`): each value checked against its key's rule and
//! brought to the normal form `normalize::setting` compares. A property string may be given as
//! a table of options or as Proxmox writes it; either way an option the table does not know is
//! an error, and a MAC never comes from a document (Proxmox makes one when a NIC is created,
//! and the agent keeps it). It must never accept a value it could not write back unchanged.

use crate::keys::{Rule, SettingKey};
use crate::normalize::setting::{bool_text, features, option_text, options, ssh_keys};
use serde_json::Value;
use std::collections::BTreeMap;
use steward_model::Setting;

/// Parses the document's value for config key `key` of row `row`.
pub fn parse(row: &SettingKey, key: &str, v: &Value) -> Result<Setting, String> {
    match row.rule {
        Rule::Bool { .. } => {
            let b = match v {
                Value::Bool(b) => Some(*b),
                Value::Number(n) => n.as_u64().filter(|n| *n <= 1).map(|n| n == 1),
                _ => None,
            };
            b.map(|b| Setting::Value(if b { "1" } else { "0" }.into()))
                .ok_or_else(|| format!("{v} is not true or false"))
        }
        Rule::Int { min, max } => v
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .map(|n| Setting::Value(n.to_string()))
            .ok_or_else(|| format!("{v} is not a whole number from {min} to {max}")),
        Rule::Enum(words) => match v.as_str() {
            Some(s) if words.contains(&s) => Ok(Setting::Value(s.to_string())),
            _ => Err(format!("{v} is not one of {}", words.join(", "))),
        },
        Rule::UserName => match v.as_str() {
            Some(s)
                if !s.is_empty()
                    && s.len() <= 32
                    && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && s.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)
                    }) =>
            {
                Ok(Setting::Value(s.to_string()))
            }
            _ => Err(format!(
                "{v} is not a user name (lower-case letters, digits, '_', '.', '-')"
            )),
        },
        Rule::Words => {
            let words = strings(v)?;
            let words: Vec<&str> = words.iter().flat_map(|w| w.split_whitespace()).collect();
            for w in &words {
                // `nameserver` is an address list; `searchdomain` a list of DNS names.
                let ok = if key == "nameserver" {
                    w.parse::<std::net::IpAddr>().is_ok()
                } else {
                    super::guest::valid_dns_name(w)
                };
                if !ok {
                    return Err(format!(
                        "{w:?} is not {}",
                        if key == "nameserver" {
                            "an IP address"
                        } else {
                            "a DNS name"
                        }
                    ));
                }
            }
            if words.is_empty() {
                return Err("empty: leave the key out to leave it alone".into());
            }
            Ok(Setting::Value(words.join(" ")))
        }
        Rule::Features { all, .. } => {
            let list = strings(v)?;
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            features(&refs, all)
                .map(Setting::Value)
                .ok_or_else(|| format!("features are {} (an empty list: none)", all.join(", ")))
        }
        Rule::SshKeys => {
            let list = strings(v)?;
            let lines: Vec<&str> = list.iter().flat_map(|k| k.lines()).collect();
            for l in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
                ssh_key::PublicKey::from_openssh(l)
                    .map_err(|e| format!("{l:.40}… is not an OpenSSH public key: {e}"))?;
            }
            let keys = ssh_keys(lines.into_iter());
            if keys.is_empty() {
                return Err("no keys: leave the key out to leave it alone".into());
            }
            Ok(Setting::Value(keys))
        }
        Rule::BootOrder => {
            let list = strings(v)?;
            if list.is_empty() {
                return Err("give the boot devices in order (e.g. [\"scsi0\", \"net0\"])".into());
            }
            for d in &list {
                let base = d.trim_end_matches(|c: char| c.is_ascii_digit());
                let known = [
                    "scsi", "virtio", "sata", "ide", "net", "efidisk", "hostpci", "usb",
                ];
                if base.len() == d.len() || !known.contains(&base) {
                    return Err(format!("{d:?} is not a boot device (scsi0, net0, …)"));
                }
            }
            Ok(Setting::Value(format!("order={}", list.join(";"))))
        }
        Rule::Options {
            opts,
            default,
            required,
        } => {
            let given: Vec<(String, String)> = match v {
                Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            scalar(v).ok_or_else(|| format!("{k}: {v} is not a value"))?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
                Value::String(s) => options(s, default, opts),
                other => match (default, scalar(other)) {
                    (Some(d), Some(s)) => vec![(d.to_string(), s)],
                    _ => return Err(format!("expected a table of options, got {other}")),
                },
            };
            let mut out = BTreeMap::new();
            for (name, raw) in given {
                if ["macaddr", "hwaddr"].contains(&name.as_str()) {
                    return Err(format!(
                        "{name}: a MAC is never taken from the document (Proxmox makes one when the device is created, and the agent keeps it)"
                    ));
                }
                let Some(o) = opts.iter().find(|o| o.name == name) else {
                    let known: Vec<&str> = opts.iter().map(|o| o.name).collect();
                    return Err(format!(
                        "unknown option {name:?} (known: {})",
                        known.join(", ")
                    ));
                };
                let value = option_text(o.ty, &raw)
                    .ok_or_else(|| format!("{name}: {raw:?} is not a valid value"))?;
                if out.insert(name.clone(), value).is_some() {
                    return Err(format!("{name} is given twice"));
                }
            }
            if let Some(r) = required.iter().find(|r| !out.contains_key(**r)) {
                return Err(format!("{r} is required"));
            }
            Ok(Setting::Options(out))
        }
    }
}

/// A list of strings, or one string.
fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{x} is not a string"))
            })
            .collect(),
        other => Err(format!(
            "expected a string or a list of strings, got {other}"
        )),
    }
}

/// A scalar as the text of a property-string option (`true` → `1`).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => bool_text(if *b { "1" } else { "0" }).map(str::to_string),
        _ => None,
    }
}

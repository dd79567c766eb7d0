//! The Proxmox VE 9.1 API schema, embedded (`data/pve-api-schema.json.gz`), and what the
//! simulator does with it: find the endpoint a request names (path templates such as
//! `/nodes/{node}/qemu/{vmid}/config`), check its parameters as pve-common's JSONSchema does
//! (unknown keys refused when `additionalProperties` is 0, types, enums, bounds, property
//! strings), and read the privilege check the endpoint declares. Proxmox answers from the same
//! schema, so a request the simulator accepts is one a node would parse. It must never accept a
//! parameter the schema does not define for that endpoint.

use crate::node::Refusal;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

const EMBEDDED: &[u8] = include_bytes!("../data/pve-api-schema.json.gz");

/// One endpoint: its path template and, per method, the schema's `info` entry.
#[derive(Debug)]
pub struct Endpoint {
    /// `/nodes/{node}/qemu/{vmid}/config`.
    pub template: String,
    segments: Vec<String>,
    methods: Map<String, Value>,
}

/// The schema, flattened to its endpoints.
#[derive(Debug)]
pub struct Schema {
    endpoints: Vec<Endpoint>,
}

/// A request matched to its endpoint.
#[derive(Debug)]
pub struct Matched<'a> {
    /// The path template.
    pub template: &'a str,
    /// The method's schema entry.
    pub info: &'a Value,
    /// Path variables (`node`, `vmid`, …), percent-decoded.
    pub vars: BTreeMap<String, String>,
}

static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();

/// The embedded schema (parsed once).
pub fn schema() -> Result<&'static Schema, String> {
    SCHEMA
        .get_or_init(|| {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(EMBEDDED)
                .read_to_end(&mut text)
                .map_err(|e| format!("embedded API schema: {e}"))?;
            let root: Value =
                serde_json::from_slice(&text).map_err(|e| format!("embedded API schema: {e}"))?;
            let mut endpoints = Vec::new();
            for top in root.as_array().into_iter().flatten() {
                collect(top, &mut endpoints);
            }
            Ok(Schema { endpoints })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn collect(node: &Value, out: &mut Vec<Endpoint>) {
    if let (Some(path), Some(info)) = (
        node.get("path").and_then(Value::as_str),
        node.get("info").and_then(Value::as_object),
    ) {
        out.push(Endpoint {
            template: path.to_string(),
            segments: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            methods: info.clone(),
        });
    }
    for c in node
        .get("children")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect(c, out);
    }
}

fn not_implemented(method: &str, path: &str) -> Refusal {
    Refusal::new(501, format!("Method '{method} {path}' not implemented"))
}

impl Schema {
    /// The endpoint for `method` on `path` (below `/api2/json`, already percent-decoded into
    /// `segments`). A literal segment wins over a variable, as in Proxmox's router.
    pub fn lookup(
        &self,
        method: &str,
        path: &str,
        segments: &[String],
    ) -> Result<Matched<'_>, Refusal> {
        let mut best: Option<(usize, &Endpoint)> = None;
        for e in &self.endpoints {
            if e.segments.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let fits = e.segments.iter().zip(segments).all(|(t, s)| {
                if t.starts_with('{') {
                    true
                } else if t == s {
                    literal += 1;
                    true
                } else {
                    false
                }
            });
            if fits && best.is_none_or(|(l, _)| literal > l) {
                best = Some((literal, e));
            }
        }
        let (_, e) = best.ok_or_else(|| not_implemented(method, path))?;
        let info = e
            .methods
            .get(method)
            .ok_or_else(|| not_implemented(method, path))?;
        let vars = e
            .segments
            .iter()
            .zip(segments)
            .filter(|(t, _)| t.starts_with('{'))
            .map(|(t, s)| (t.trim_matches(['{', '}']).to_string(), s.clone()))
            .collect();
        Ok(Matched {
            template: &e.template,
            info,
            vars,
        })
    }
}

/// Checks `params` (path variables included) against the method's parameter schema; every
/// problem is reported, keyed by parameter, as a 400 "Parameter verification failed.".
pub fn validate(info: &Value, params: &BTreeMap<String, String>) -> Result<(), Refusal> {
    let p = &info["parameters"];
    let props = p["properties"].as_object().cloned().unwrap_or_default();
    let closed =
        p["additionalProperties"].as_u64() == Some(0) || p["additionalProperties"] == json!(false);
    let mut errors = Map::new();
    for (k, v) in params {
        match property(&props, k) {
            Some(spec) => {
                if let Err(e) = check_value(spec, v) {
                    errors.insert(k.clone(), json!(e));
                }
            }
            None if closed => {
                errors.insert(
                    k.clone(),
                    json!("property is not defined in schema and the schema does not allow additional properties"),
                );
            }
            None => {}
        }
    }
    for (k, spec) in &props {
        let optional = spec["optional"].as_u64() == Some(1) || spec["optional"] == json!(true);
        if !optional && !k.contains("[n]") && !params.contains_key(k) {
            errors.insert(
                k.clone(),
                json!("property is missing and it is not optional"),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Refusal::param_errors(Value::Object(errors)))
    }
}

/// The schema entry for parameter `k`: exact, or an indexed family (`scsi[n]` for `scsi3`).
pub fn property<'a>(props: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    if let Some(p) = props.get(k) {
        return Some(p);
    }
    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
    (base.len() < k.len())
        .then(|| props.get(&format!("{base}[n]")))
        .flatten()
}

fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Checks one value as pve-common's `check_type`/`check_format` would.
fn check_value(spec: &Value, v: &str) -> Result<(), String> {
    match spec["type"].as_str().unwrap_or("string") {
        "integer" => {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{v}'"))?;
            bounds(spec, n as f64)
        }
        "number" => {
            let n: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("type check ('number') failed - got '{v}'"))?;
            bounds(spec, n)
        }
        "boolean" => boolean(v)
            .map(|_| ())
            .ok_or_else(|| format!("type check ('boolean') failed - got '{v}'")),
        _ => {
            if let Some(max) = spec["maxLength"].as_u64() {
                if v.chars().count() as u64 > max {
                    return Err(format!("value may only be {max} characters long"));
                }
            }
            if let Some(options) = spec["enum"].as_array() {
                if !options.iter().any(|o| o.as_str() == Some(v)) {
                    let list: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
                    return Err(format!(
                        "value '{v}' does not have a value in the enumeration '{}'",
                        list.join(", ")
                    ));
                }
            }
            if let Some(fields) = spec["format"].as_object() {
                return property_string(fields, v);
            }
            // pve-common `pve_verify_urlencoded` (`sshkeys`): only what `encodeURIComponent`
            // leaves, and `%` escapes.
            if spec["format"].as_str() == Some("urlencoded")
                && !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-%_.!~*'()".contains(&b))
            {
                return Err(format!("invalid urlencoded string: {v}"));
            }
            Ok(())
        }
    }
}

fn bounds(spec: &Value, n: f64) -> Result<(), String> {
    if let Some(min) = spec["minimum"].as_f64() {
        if n < min {
            return Err(format!(
                "value must have a minimum value of {}",
                spec["minimum"]
            ));
        }
    }
    if let Some(max) = spec["maximum"].as_f64() {
        if n > max {
            return Err(format!(
                "value must have a maximum value of {}",
                spec["maximum"]
            ));
        }
    }
    Ok(())
}

/// A property string (`[current=]4096`, `order=1,up=30`): each `key=value` (or the default key's
/// bare value) checked against its field.
fn property_string(fields: &Map<String, Value>, v: &str) -> Result<(), String> {
    let default_key = fields
        .iter()
        .find(|(_, f)| f["default_key"].as_u64() == Some(1))
        .map(|(k, _)| k.clone());
    for part in v.split(',').filter(|p| !p.is_empty()) {
        let (k, val) = match part.split_once('=') {
            Some((k, val)) => (k.to_string(), val),
            None => match &default_key {
                Some(d) => (d.clone(), part),
                None => return Err(format!("invalid format - missing key in '{part}'")),
            },
        };
        let Some(field) = fields.get(&k) else {
            // Fields the schema leaves to the storage layer (disk options) are accepted.
            continue;
        };
        check_value(field, val).map_err(|e| format!("invalid format - {k}: {e}"))?;
    }
    Ok(())
}

/// The privilege check an endpoint declares, if it is one the simulator evaluates itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// `["perm", path, [privs]]` (all) or with `"any", 1` (any one).
    Perm {
        /// ACL path, with `{vmid}` etc. still in it.
        path: String,
        /// Privileges.
        privileges: Vec<String>,
        /// Any one suffices.
        any: bool,
    },
    /// `user: all`: the handler filters or checks itself.
    Handler,
    /// A form the simulator does not evaluate: refused (fail closed).
    Unsupported(String),
}

/// Reads the endpoint's `permissions`.
pub fn check_of(info: &Value) -> Check {
    let perms = &info["permissions"];
    if let Some(c) = perms["check"].as_array() {
        if c.first().and_then(Value::as_str) == Some("perm") {
            let path = c.get(1).and_then(Value::as_str).unwrap_or("/").to_string();
            let privileges = c
                .get(2)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            let any = c.get(3).and_then(Value::as_str) == Some("any");
            return Check::Perm {
                path,
                privileges,
                any,
            };
        }
        return Check::Unsupported(perms["check"].to_string());
    }
    if perms["user"].as_str() == Some("all") {
        return Check::Handler;
    }
    Check::Unsupported(perms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn requests_find_their_endpoint_and_parameters_are_checked_as_proxmox_does() {
        let s = schema().unwrap();
        let seg = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        let m = s
            .lookup(
                "PUT",
                "/nodes/pve-a/qemu/100/config",
                &seg("/nodes/pve-a/qemu/100/config"),
            )
            .unwrap();
        assert_eq!(m.template, "/nodes/{node}/qemu/{vmid}/config");
        assert_eq!(m.vars["vmid"], "100");
        let mut p = params(&[
            ("memory", "4096"),
            ("scsi1", "local-lvm:4"),
            ("tags", "a;b"),
        ]);
        p.extend(m.vars.clone());
        validate(m.info, &p).unwrap();
        let mut bad = params(&[("memory", "8"), ("bogus", "1"), ("onboot", "maybe")]);
        bad.extend(m.vars.clone());
        let e = validate(m.info, &bad).unwrap_err();
        let errs = e.errors.unwrap();
        assert!(
            errs["memory"]
                .as_str()
                .unwrap()
                .contains("minimum value of 16"),
            "{errs}"
        );
        assert!(errs["bogus"]
            .as_str()
            .unwrap()
            .contains("not defined in schema"));
        assert!(errs["onboot"].as_str().unwrap().contains("boolean"));
        assert_eq!(
            check_of(m.info),
            Check::Perm {
                path: "/vms/{vmid}".into(),
                privileges: vec![
                    "VM.Config.Disk".into(),
                    "VM.Config.CDROM".into(),
                    "VM.Config.CPU".into(),
                    "VM.Config.Memory".into(),
                    "VM.Config.Network".into(),
                    "VM.Config.HWType".into(),
                    "VM.Config.Options".into(),
                    "VM.Config.Cloudinit".into()
                ],
                any: true
            }
        );
        assert_eq!(
            s.lookup("GET", "/nope", &seg("/nope")).unwrap_err().status,
            501
        );
    }
}

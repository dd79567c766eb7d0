//! Routing `/api2/json/...` to the node, with the token and privilege checks Proxmox makes and
//! its answer shapes: `{"data": …}` on success; errors with the reason in the status line.

use crate::node::{Node, Privileges, Refusal};
use crate::token::SimToken;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A routed answer: status, reason, body.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Status-line reason.
    pub reason: String,
    /// JSON body.
    pub body: Value,
}

fn ok(data: Value) -> Answer {
    Answer {
        status: 200,
        reason: "OK".into(),
        body: json!({ "data": data }),
    }
}

fn err(r: Refusal) -> Answer {
    let mut body = json!({"data": null});
    if let Some(e) = r.errors {
        body["errors"] = e;
    }
    Answer {
        status: r.status,
        reason: r.reason,
        body,
    }
}

fn denied(path: &str, privilege: &str) -> Answer {
    err(Refusal {
        status: 403,
        reason: format!("Permission check failed ({path}, {privilege})"),
        errors: None,
    })
}

/// Routes one request. `auth` is the `Authorization` header.
pub fn route(
    node: &mut Node,
    tokens: &[(SimToken, Privileges)],
    method: &str,
    path: &str,
    auth: Option<&str>,
    params: &BTreeMap<String, String>,
) -> Answer {
    let Some((token, privs)) = auth.and_then(|h| tokens.iter().find(|(t, _)| t.presented_by(h)))
    else {
        return err(Refusal {
            status: 401,
            reason: "authentication failure".into(),
            errors: None,
        });
    };
    let user = token.id().to_string();
    node.tick();
    let Some(rest) = path.strip_prefix("/api2/json/nodes/") else {
        return err(Refusal {
            status: 501,
            reason: format!("Method '{method} {path}' not implemented"),
            errors: None,
        });
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.first() != Some(&node.name.as_str()) {
        return err(Refusal {
            status: 596,
            reason: "Connection refused".into(),
            errors: None,
        });
    }
    let need = |p: &str, vmid: Option<&str>| -> Option<Answer> {
        (!privs.has(p)).then(|| {
            denied(
                &vmid.map_or("/nodes".to_string(), |v| format!("/vms/{v}")),
                p,
            )
        })
    };
    let kind = |s: &str| -> Option<&'static str> {
        match s {
            "qemu" => Some("qemu"),
            "lxc" => Some("lxc"),
            _ => None,
        }
    };
    let vmid_of = |s: &str| s.parse::<u32>().ok();
    let result: Result<Value, Refusal> = match (method, &parts[1..]) {
        ("GET", [k]) if kind(k).is_some() => {
            if let Some(a) = need("VM.Audit", None) {
                return a;
            }
            Ok(node.list(k))
        }
        ("POST", [k]) if kind(k).is_some() => {
            if let Some(a) = need("VM.Allocate", params.get("vmid").map(String::as_str)) {
                return a;
            }
            node.create(kind(k).unwrap_or("qemu"), params, &user)
                .map(|u| json!(u.to_string()))
        }
        (_, [k, v, ..]) if kind(k).is_some() && vmid_of(v).is_none() => Err(Refusal {
            status: 400,
            reason: "Parameter verification failed.".into(),
            errors: Some(
                json!({"vmid": "invalid format - value does not look like a valid VM ID"}),
            ),
        }),
        ("DELETE", [k, v]) if kind(k).is_some() => {
            if let Some(a) = need("VM.Allocate", Some(v)) {
                return a;
            }
            node.destroy(k, vmid_of(v).unwrap_or(0), &user)
                .map(|u| json!(u.to_string()))
        }
        ("GET", [k, v, "status", "current"]) if kind(k).is_some() => {
            if let Some(a) = need("VM.Audit", Some(v)) {
                return a;
            }
            node.status(k, vmid_of(v).unwrap_or(0))
        }
        ("POST", [k, v, "status", what])
            if kind(k).is_some() && ["start", "stop", "shutdown", "reboot"].contains(what) =>
        {
            if let Some(a) = need("VM.PowerMgmt", Some(v)) {
                return a;
            }
            node.power(k, vmid_of(v).unwrap_or(0), what, &user)
                .map(|u| json!(u.to_string()))
        }
        ("GET", [k, v, "config"]) if kind(k).is_some() => {
            if let Some(a) = need("VM.Audit", Some(v)) {
                return a;
            }
            node.config(
                k,
                vmid_of(v).unwrap_or(0),
                params.get("current").map(String::as_str) == Some("1"),
            )
        }
        ("GET", [k, v, "pending"]) if kind(k).is_some() => {
            if let Some(a) = need("VM.Audit", Some(v)) {
                return a;
            }
            node.pending(k, vmid_of(v).unwrap_or(0))
        }
        ("PUT", [k, v, "config"]) if kind(k).is_some() => {
            if let Some(a) = need("VM.Config.Options", Some(v)) {
                return a;
            }
            node.set_config(k, vmid_of(v).unwrap_or(0), params)
                .map(|()| Value::Null)
        }
        ("POST", ["qemu", v, "config"]) => {
            if let Some(a) = need("VM.Config.Options", Some(v)) {
                return a;
            }
            let vmid = vmid_of(v).unwrap_or(0);
            node.set_config("qemu", vmid, params).map(|()| Value::Null)
        }
        ("GET", ["tasks", upid, "status"]) => {
            if let Some(a) = need("Sys.Audit", None) {
                return a;
            }
            node.task_status(upid)
        }
        ("GET", ["tasks"]) => {
            if let Some(a) = need("Sys.Audit", None) {
                return a;
            }
            let since = params.get("since").and_then(|s| s.parse().ok());
            Ok(node.task_list(
                since,
                params.get("source").map(String::as_str) == Some("all"),
            ))
        }
        _ => Err(Refusal {
            status: 501,
            reason: format!("Method '{method} {path}' not implemented"),
            errors: None,
        }),
    };
    match result {
        Ok(v) => ok(v),
        Err(r) => err(r),
    }
}

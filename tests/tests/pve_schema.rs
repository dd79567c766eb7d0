//! The simulator cannot drift from Proxmox: for every read endpoint the simulator implements,
//! every field it answers with must exist in the PVE 9.1 API schema (`crates/pve-sim/data/pve-api-schema.json.gz`)
//! with a compatible type. The tolerated deviations are Proxmox's own, read in its sources:
//! fields its handlers send beyond their declared returns (qemu-server's `vmstatus` sets `disk`,
//! pve-container's `type` and `swap`, pve-manager's task list `tokenid`, pve-storage's volume
//! `content`).

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::time::Duration;
use steward_model::{GuestKind, Vmid};
use steward_proxmox_client::{tls, ApiToken, Endpoint, GuestWrite, PveClient, PveWriter, Trust};
use steward_pve_sim::{Faults, Privileges, Sim, SimConfig, SimToken};

const TOKEN: &str = "root@pam!steward=5f1e3c2a-0000-4000-8000-00000000c0de";

fn schema() -> Value {
    let p = steward_testkit::workspace_root().join("crates/pve-sim/data/pve-api-schema.json.gz");
    let file = std::fs::File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_reader(std::io::BufReader::new(flate2::read::GzDecoder::new(file))).unwrap()
}

fn find<'a>(node: &'a Value, path: &str) -> Option<&'a Value> {
    if node.get("path").and_then(Value::as_str) == Some(path) {
        return Some(node);
    }
    node.get("children")?
        .as_array()?
        .iter()
        .find_map(|c| find(c, path))
}

fn returns<'a>(schema: &'a Value, path: &str) -> &'a Value {
    let node = schema
        .as_array()
        .unwrap()
        .iter()
        .find_map(|top| find(top, path))
        .unwrap_or_else(|| panic!("{path} not in the schema"));
    &node["info"]["GET"]["returns"]
}

fn property<'a>(props: &'a Value, key: &str) -> Option<&'a Value> {
    props.get(key).or_else(|| {
        let stem = key.trim_end_matches(|c: char| c.is_ascii_digit());
        (stem != key)
            .then(|| props.get(format!("{stem}[n]")))
            .flatten()
    })
}

fn type_ok(want: &str, got: &Value) -> bool {
    match want {
        "integer" => got.is_u64() || got.is_i64(),
        "number" => got.is_number(),
        "string" => got.is_string(),
        "boolean" => got.is_boolean() || matches!(got.as_u64(), Some(0 | 1)),
        "array" => got.is_array(),
        "object" => got.is_object(),
        _ => true,
    }
}

fn check_object(
    endpoint: &str,
    schema: &Value,
    obj: &Value,
    problems: &mut Vec<String>,
    quirks: &[&str],
) {
    let props = &schema["properties"];
    // `additionalProperties: 1` lets an answer carry fields the schema does not list.
    let open = schema["additionalProperties"].as_u64() == Some(1);
    for (k, val) in obj.as_object().unwrap() {
        if val.is_null() {
            continue;
        }
        let Some(p) = property(props, k) else {
            if !open && !quirks.contains(&k.as_str()) {
                problems.push(format!("{endpoint}: field {k} is not in the schema"));
            }
            continue;
        };
        let want = p.get("type").and_then(Value::as_str).unwrap_or("any");
        if !type_ok(want, val) && !quirks.contains(&k.as_str()) {
            problems.push(format!(
                "{endpoint}: field {k} is {val}, the schema says {want}"
            ));
        }
    }
}

/// A read to check: path, schema path, query, fields whose type may differ or that Proxmox sends
/// beyond what its schema declares (documented quirks: pve-manager's `Tasks.pm` adds `tokenid`
/// to a token's tasks, pve-storage's plugins `content` to each volume, neither declared).
type Case<'a> = (String, &'a str, &'a Vec<(String, String)>, Vec<&'a str>);

#[tokio::test]
async fn simulator_answers_fit_the_schema() {
    let schema = schema();
    let sim = Sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        node: "pve-a".into(),
        guests: 6,
        tokens: vec![(SimToken::parse(TOKEN).unwrap(), Privileges::all())],
        task_time: Duration::from_millis(10),
        faults: Faults::default(),
        seed: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let endpoint = Endpoint {
        addr: sim.addr.to_string(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(tls::parse_fingerprint(&sim.fingerprint).unwrap()),
        timeout: Duration::from_secs(5),
        keep_alive: true,
    };
    let c = PveClient::new(endpoint.clone(), ApiToken::parse(TOKEN).unwrap(), "pve-a").unwrap();
    let w = PveWriter::new(endpoint, ApiToken::parse(TOKEN).unwrap(), "pve-a").unwrap();
    // Make a task, a snapshot and a pending change, so those answers are not empty.
    let upid = w
        .stop(GuestKind::Qemu, Vmid::new(100).unwrap())
        .await
        .unwrap();
    sim.with_node(|n| n.add_snapshot(101, "before").unwrap());
    let mut problems = Vec::new();
    let mut checked = 0;
    let none: Vec<(String, String)> = vec![];
    let all = vec![("source".to_string(), "all".to_string())];
    let vms = vec![("type".to_string(), "vm".to_string())];
    let cases: Vec<Case<'_>> = vec![
        ("/version".into(), "/version", &none, vec![]),
        ("/nodes".into(), "/nodes", &none, vec![]),
        (
            "/nodes/pve-a/status".into(),
            "/nodes/{node}/status",
            &none,
            vec![],
        ),
        (
            "/cluster/resources".into(),
            "/cluster/resources",
            &vms,
            vec![],
        ),
        (
            "/cluster/resources".into(),
            "/cluster/resources",
            &none,
            vec![],
        ),
        ("/cluster/status".into(), "/cluster/status", &none, vec![]),
        ("/cluster/nextid".into(), "/cluster/nextid", &none, vec![]),
        (
            "/nodes/pve-a/qemu".into(),
            "/nodes/{node}/qemu",
            &none,
            vec!["disk"],
        ),
        (
            "/nodes/pve-a/lxc".into(),
            "/nodes/{node}/lxc",
            &none,
            vec!["swap", "type"],
        ),
        (
            "/nodes/pve-a/qemu/100/config".into(),
            "/nodes/{node}/qemu/{vmid}/config",
            &none,
            vec![],
        ),
        (
            "/nodes/pve-a/lxc/102/config".into(),
            "/nodes/{node}/lxc/{vmid}/config",
            &none,
            vec![],
        ),
        (
            "/nodes/pve-a/qemu/100/pending".into(),
            "/nodes/{node}/qemu/{vmid}/pending",
            &none,
            vec![],
        ),
        (
            "/nodes/pve-a/lxc/102/pending".into(),
            "/nodes/{node}/lxc/{vmid}/pending",
            &none,
            vec![],
        ),
        (
            "/nodes/pve-a/qemu/101/status/current".into(),
            "/nodes/{node}/qemu/{vmid}/status/current",
            &none,
            vec!["disk"],
        ),
        (
            "/nodes/pve-a/lxc/102/status/current".into(),
            "/nodes/{node}/lxc/{vmid}/status/current",
            &none,
            vec!["swap", "type"],
        ),
        (
            "/nodes/pve-a/qemu/101/snapshot".into(),
            "/nodes/{node}/qemu/{vmid}/snapshot",
            &none,
            vec![],
        ),
        (
            "/nodes/pve-a/lxc/102/snapshot".into(),
            "/nodes/{node}/lxc/{vmid}/snapshot",
            &none,
            vec![],
        ),
        (
            "/nodes/pve-a/storage".into(),
            "/nodes/{node}/storage",
            &none,
            vec![],
        ),
        (
            "/nodes/pve-a/storage/local-lvm/content".into(),
            "/nodes/{node}/storage/{storage}/content",
            &none,
            vec!["content"],
        ),
        (
            "/nodes/pve-a/storage/local/content".into(),
            "/nodes/{node}/storage/{storage}/content",
            &none,
            vec!["content"],
        ),
        (
            "/nodes/pve-a/tasks".into(),
            "/nodes/{node}/tasks",
            &all,
            vec!["tokenid"],
        ),
        (
            format!("/nodes/pve-a/tasks/{upid}/status"),
            "/nodes/{node}/tasks/{upid}/status",
            &none,
            vec!["tokenid"],
        ),
        (
            format!("/nodes/pve-a/tasks/{upid}/log"),
            "/nodes/{node}/tasks/{upid}/log",
            &none,
            vec![],
        ),
        (
            "/access/permissions".into(),
            "/access/permissions",
            &none,
            vec![],
        ),
    ];
    for (path, schema_path, params, quirks) in cases {
        let got = c
            .get_raw(&path, params)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let r = returns(&schema, schema_path);
        match r.get("type").and_then(Value::as_str) {
            Some("array") => {
                let item_schema = &r["items"];
                let items = got
                    .as_array()
                    .unwrap_or_else(|| panic!("{path}: expected a list"));
                assert!(!items.is_empty(), "{path}: nothing to check");
                for item in items {
                    if item_schema["properties"].is_object() {
                        check_object(&path, item_schema, item, &mut problems, &quirks);
                    }
                    checked += 1;
                }
            }
            Some("object") => {
                assert!(got.is_object(), "{path}: expected an object, got {got}");
                if r["properties"].is_object() {
                    check_object(&path, r, &got, &mut problems, &quirks);
                }
                checked += 1;
            }
            Some(t) => {
                if !type_ok(t, &got) {
                    problems.push(format!("{path}: answer {got}, the schema says {t}"));
                }
                checked += 1;
            }
            None => checked += 1,
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(checked >= 60, "{checked} objects checked");
}

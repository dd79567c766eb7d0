//! The simulator cannot drift from Proxmox: for every endpoint the client uses, every field the
//! simulator answers with must exist in the PVE 9.1 API schema (`tests/data/pve-api-schema.json.gz`)
//! with a compatible type. The one tolerated deviation is documented in the reference: LXC list
//! `vmid` as a string.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::time::Duration;
use steward_model::{GuestKind, Vmid};
use steward_proxmox_client::{tls, ApiToken, Endpoint, GuestWrite, PveClient, PveWriter, Trust};
use steward_pve_sim::{Faults, Privileges, Sim, SimConfig, SimToken};

const TOKEN: &str = "root@pam!steward=5f1e3c2a-0000-4000-8000-00000000c0de";

fn schema() -> Value {
    let p = steward_testkit::workspace_root().join("tests/data/pve-api-schema.json.gz");
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
    props: &Value,
    obj: &Value,
    problems: &mut Vec<String>,
    quirks: &[&str],
) {
    for (k, val) in obj.as_object().unwrap() {
        if val.is_null() {
            continue;
        }
        let Some(p) = property(props, k) else {
            problems.push(format!("{endpoint}: field {k} is not in the schema"));
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
    // Make a task, and a pending change, so those answers are not empty.
    let upid = w
        .stop(GuestKind::Qemu, Vmid::new(100).unwrap())
        .await
        .unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        ("/nodes/pve-a/qemu".into(), "/nodes/{node}/qemu", vec![]),
        ("/nodes/pve-a/lxc".into(), "/nodes/{node}/lxc", vec!["vmid"]),
        (
            "/nodes/pve-a/qemu/100/config".into(),
            "/nodes/{node}/qemu/{vmid}/config",
            vec![],
        ),
        (
            "/nodes/pve-a/lxc/102/config".into(),
            "/nodes/{node}/lxc/{vmid}/config",
            vec![],
        ),
        (
            "/nodes/pve-a/qemu/100/pending".into(),
            "/nodes/{node}/qemu/{vmid}/pending",
            vec![],
        ),
        (
            "/nodes/pve-a/qemu/101/status/current".into(),
            "/nodes/{node}/qemu/{vmid}/status/current",
            vec![],
        ),
        (
            "/nodes/pve-a/lxc/102/status/current".into(),
            "/nodes/{node}/lxc/{vmid}/status/current",
            vec![],
        ),
        ("/nodes/pve-a/tasks".into(), "/nodes/{node}/tasks", vec![]),
        (
            format!("/nodes/pve-a/tasks/{upid}/status"),
            "/nodes/{node}/tasks/{upid}/status",
            vec![],
        ),
    ];
    for (path, schema_path, quirks) in cases {
        let got = c
            .get_raw(&path, &[("source".into(), "all".into())])
            .await
            .unwrap();
        let r = returns(&schema, schema_path);
        match r.get("type").and_then(Value::as_str) {
            Some("array") => {
                let props = &r["items"]["properties"];
                let items = got
                    .as_array()
                    .unwrap_or_else(|| panic!("{path}: expected a list"));
                assert!(!items.is_empty(), "{path}: nothing to check");
                for item in items {
                    check_object(&path, props, item, &mut problems, &quirks);
                    checked += 1;
                }
            }
            _ => {
                check_object(&path, &r["properties"], &got, &mut problems, &quirks);
                checked += 1;
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(checked >= 15, "{checked} objects checked");
}

//! The view shapes pinned byte for byte: one golden file per shape under `golden/`, checked
//! both ways (`steward_testkit::golden`). A hub, a dashboard or a script reads these; a golden
//! that no longer matches is a wire change, allowed only as an addition with a default. New
//! goldens are written only by a person, with `STEWARD_BLESS=1 cargo test -p steward-view`;
//! the test must never bless them itself.

use crate::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;

fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    name: &str,
    value: &T,
) -> Option<String> {
    let dir = steward_testkit::golden::dir(env!("CARGO_MANIFEST_DIR"));
    steward_testkit::golden::check(&dir, name, value)
}

fn plan() -> PlanView {
    PlanView {
        guests: vec![GuestPlan {
            vmid: 104,
            kind: "qemu".into(),
            actions: vec![
                ActionPlan {
                    op: "guest.config".into(),
                    destructive: false,
                    reason: "config change touching only non-data keys".into(),
                    fields: vec![FieldChange {
                        field: "net1".into(),
                        observed: Some("virtio=BC:24:11:2F:00:01,bridge=vmbr0,tag=30".into()),
                        desired: Some("virtio=BC:24:11:2F:00:01,bridge=vmbr0,tag=40".into()),
                    }],
                    removes: vec![],
                },
                ActionPlan {
                    op: "guest.config".into(),
                    destructive: true,
                    reason: "the change removes volumes".into(),
                    fields: vec![FieldChange {
                        field: "scsi1".into(),
                        observed: Some("local-lvm:vm-104-disk-1,size=32G".into()),
                        desired: None,
                    }],
                    removes: vec!["local-lvm:vm-104-disk-1 (32G)".into()],
                },
            ],
            notes: vec!["scsi2 cannot shrink from 64G to 32G: Proxmox cannot shrink a disk (say 64G or more)".into()],
        }],
    }
}

fn status() -> Status {
    Status {
        passes: 42,
        last_pass_ms: 1_764_840_000_000,
        managed: 3,
        converged: 1,
        drifting: 2,
        in_flight: 1,
        held: 1,
        elsewhere: vec![Elsewhere {
            vmid: 107,
            node: "pve-c".into(),
        }],
        no_quorum: false,
        parked: vec![Parked {
            vmid: 105,
            reason: "admin_lock".into(),
            why: "locked by an administrator (backup)".into(),
        }],
        observe_requests: 118,
        last_error: None,
        journal_error: None,
        recovered: true,
        audit_head: Some(crate::AuditHead {
            seq: 37,
            hash: "6cba69df9b2c41f0f5ddbfb4a597b503f8da4be40e210bde51922c9dee4856b0".into(),
        }),
        provider: BTreeMap::from([
            (
                "desired".to_string(),
                ProviderHealth {
                    last_success_ms: Some(1_764_840_000_000),
                    last_error: None,
                    consecutive_failures: 0,
                },
            ),
            (
                "report".to_string(),
                ProviderHealth {
                    last_success_ms: None,
                    last_error: Some("hub answered 503".into()),
                    consecutive_failures: 2,
                },
            ),
        ]),
        approval_policy: BTreeMap::from([
            ("default".to_string(), 1),
            ("guest.destroy".to_string(), 2),
        ]),
        agent: None,
    }
}

fn held() -> HeldOp {
    HeldOp {
        op: 7,
        guest: 104,
        op_kind: "guest.destroy".into(),
        template: serde_json::json!({
            "v": 1, "op": "guest.destroy", "host": "pve-a", "guest": 104,
            "params": {"kind": "qemu", "purge": true},
            "nonce": "3q2+7w==", "not_before": "2026-12-04T08:00:00Z",
            "not_after": "2026-12-04T09:00:00Z",
        }),
        summary: "destroy VM 104 (web-1) and its volumes: local-lvm:vm-104-disk-0 (32G)".into(),
        volumes: vec![("local-lvm:vm-104-disk-0".into(), Some("32G".into()))],
        expires: Some("2026-12-04T09:00:00Z".into()),
        needs: 2,
        approved_by: vec!["alice@steward.test".into()],
    }
}

fn decision() -> DecisionView {
    DecisionView {
        decision: "partly_approved".into(),
        op: Some(7),
        signed: None,
        outcome: None,
        detail: Some("needs 2 signatures, has 1: alice@steward.test".into()),
        signatures: vec![
            SignatureView {
                verdict: "counted".into(),
                principal: Some("alice@steward.test".into()),
                key: Some("SHA256:2m0eV4gUtm1eNnFAYu2a1kh6L0fWoNCKrhU8T7+5mW0".into()),
                detail: None,
            },
            SignatureView {
                verdict: "refused:unknown_signer".into(),
                principal: None,
                key: None,
                detail: Some("no allowed_signers line admits this key".into()),
            },
        ],
    }
}

#[test]
fn every_view_shape_matches_its_golden_file() {
    let mut with_agent = status();
    with_agent.agent = Some(AgentAbout {
        node: "pve-a".into(),
        metrics: Some("http://127.0.0.1:9464/metrics".into()),
    });
    let mut op = serde_json::Map::new();
    op.insert("id".into(), 7.into());
    op.insert("guest".into(), 104.into());
    let problems: Vec<String> = [
        check("status", &status()),
        check("status-local-api", &with_agent),
        check("held", &vec![held()]),
        check("decision", &decision()),
        check("plan", &plan()),
        check(
            "decision-executed",
            &DecisionView {
                decision: "executed".into(),
                op: Some(8),
                signed: Some(true),
                outcome: Some("succeeded".into()),
                ..DecisionView::default()
            },
        ),
        check(
            "health",
            &Health {
                ok: true,
                recovered: true,
            },
        ),
        check(
            "error",
            &ErrorBody {
                error: "no held op 9".into(),
            },
        ),
        check(
            "submission",
            &Submission::new(
                "{\"v\":1}".into(),
                vec!["-----BEGIN SSH SIGNATURE-----".into()],
            ),
        ),
        check(
            "op",
            &OpView {
                state: "succeeded".into(),
                record: op,
            },
        ),
        check(
            "report",
            &ReportBody {
                protocol: REPORT_PROTOCOL,
                node: "pve-a".into(),
                agent_version: "0.1.0".into(),
                status: status(),
                held: vec![held()],
                results: vec![JobResult {
                    job: "job-1".into(),
                    decision: decision(),
                }],
            },
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_older_or_newer_peer_is_still_read() {
    // A field added later is ignored by this reader; a field this reader knows but the writer
    // left out takes its default. Both keep version 1 additive.
    let newer = br#"{"passes":3,"managed":1,"shiny_new_field":{"x":1}}"#;
    let s: Status = serde_json::from_slice(newer).expect("newer status");
    assert_eq!((s.passes, s.managed, s.recovered), (3, 1, false));
    let older = br#"{"decision":"replay","op":4}"#;
    let d: DecisionView = serde_json::from_slice(older).expect("older decision");
    assert_eq!(d.op, Some(4));
    assert!(d.signatures.is_empty() && !d.refused());
}

#[test]
fn a_submission_has_one_shape_of_signatures() {
    let one = Submission {
        payload: "p".into(),
        signature: Some("s".into()),
        signatures: None,
    };
    assert_eq!(one.signature_bytes(), Ok(vec![b"s".to_vec()]));
    let both = Submission {
        signatures: Some(vec!["t".into()]),
        ..one.clone()
    };
    assert_eq!(both.signature_bytes(), Err(SubmissionError::OneOrTheOther));
    let none = Submission::new("p".into(), Vec::new());
    assert_eq!(none.signature_bytes(), Err(SubmissionError::Count(0)));
    let many = Submission::new("p".into(), vec!["s".into(); MAX_SIGNATURES + 1]);
    assert_eq!(
        many.signature_bytes(),
        Err(SubmissionError::Count(MAX_SIGNATURES + 1))
    );
    // A signature that is not a string is not a submission at all.
    assert!(serde_json::from_str::<Submission>(r#"{"payload":"p","signature":7}"#).is_err());
}

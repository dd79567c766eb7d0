//! The journal's on-disk schema v1, pinned byte for byte. Each record kind the journal stores
//! (every `Action`, an op record in every state, every failure kind, provenance, nonce, audit
//! entry and head) has a golden file under `golden/`: the test serializes the value exactly as
//! the journal does and compares bytes, then decodes the stored bytes and compares values. An
//! agent upgraded in the field must read what the old one wrote, so a golden that no longer
//! matches is a schema change: bump `SCHEMA_VERSION`, keep reading v1, and only then write new
//! goldens with `STEWARD_BLESS=1 cargo test -p steward-journal golden`. It must never bless on
//! its own.

use crate::audit::{AuditEntry, GENESIS};
use crate::journal::{AuditHead, NonceRecord, SCHEMA_VERSION};
use crate::record::{
    Approval, Class, OpId, OpRecord, OpState, ProvenanceFact, Signer, Transition, TxnId,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use steward_authz::Role;
use steward_model::{Action, ConfigChange, Failure, FailureKind, GuestKind, Vmid};

/// Checks `value` against `golden/<name>.json` of this crate (`steward_testkit::golden`).
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    name: &str,
    value: &T,
) -> Option<String> {
    let dir = steward_testkit::golden::dir(env!("CARGO_MANIFEST_DIR"));
    steward_testkit::golden::check(&dir, name, value)
}

fn vmid() -> Vmid {
    Vmid::new(104).expect("valid")
}

fn actions() -> Vec<(&'static str, Action)> {
    let (vmid, kind) = (vmid(), GuestKind::Qemu);
    vec![
        (
            "create",
            Action::Create {
                vmid,
                kind,
                config: BTreeMap::from([
                    ("memory".to_string(), "2048".to_string()),
                    ("scsi0".to_string(), "local-lvm:32".to_string()),
                ]),
            },
        ),
        ("start", Action::Start { vmid, kind }),
        (
            "stop",
            Action::Stop {
                vmid,
                kind: GuestKind::Lxc,
            },
        ),
        (
            "shutdown",
            Action::Shutdown {
                vmid,
                kind,
                timeout_secs: 180,
                force_stop: true,
            },
        ),
        ("reboot", Action::Reboot { vmid, kind }),
        (
            "set_config",
            Action::SetConfig {
                vmid,
                kind,
                change: ConfigChange {
                    set: BTreeMap::from([("cores".to_string(), "4".to_string())]),
                    delete: BTreeSet::from(["tags".to_string()]),
                    digest: Some("3f2a9c0d1e".into()),
                    removes: BTreeMap::new(),
                    keeps: BTreeMap::new(),
                },
            },
        ),
        (
            "destroy",
            Action::Destroy {
                vmid,
                kind,
                purge: true,
                destroy_unreferenced_disks: false,
            },
        ),
        (
            "snapshot_rollback",
            Action::SnapshotRollback {
                vmid,
                kind,
                snapshot: "before-upgrade".into(),
            },
        ),
        (
            "restore_over",
            Action::RestoreOver {
                vmid,
                kind,
                archive: "local:backup/vzdump-qemu-104-2026_11_01-00_00_00.vma.zst".into(),
            },
        ),
        (
            "set_config-disk",
            Action::SetConfig {
                vmid,
                kind,
                change: ConfigChange {
                    set: BTreeMap::from([(
                        "scsi1".to_string(),
                        "local-lvm:vm-104-disk-1,discard=on,size=32G".to_string(),
                    )]),
                    delete: BTreeSet::from(["scsi2".to_string()]),
                    digest: Some("3f2a9c0d1e".into()),
                    removes: BTreeMap::from([(
                        "scsi2".to_string(),
                        "local-lvm:vm-104-disk-2".to_string(),
                    )]),
                    keeps: BTreeMap::from([(
                        "scsi1".to_string(),
                        "local-lvm:vm-104-disk-1,size=32G".to_string(),
                    )]),
                },
            },
        ),
        (
            "resize_disk",
            Action::ResizeDisk {
                vmid,
                kind,
                disk: "scsi1".into(),
                size: "40G".into(),
            },
        ),
        (
            "move_disk",
            Action::MoveDisk {
                vmid,
                kind,
                disk: "scsi1".into(),
                volume: "local-lvm:vm-104-disk-1".into(),
                storage: "local-zfs".into(),
                delete: true,
                digest: Some("3f1c0de5d7e04b0a9f2c4e6a8b1d3f5a7c9e0b2d".into()),
            },
        ),
    ]
}

fn failures() -> Vec<(&'static str, Failure)> {
    let f = |kind, detail: &str| Failure::new(kind, detail);
    vec![
        (
            "locked",
            f(
                FailureKind::Locked {
                    lock: "backup".into(),
                },
                "locked: VM is locked (backup)",
            ),
        ),
        (
            "digest_moved",
            f(
                FailureKind::DigestMoved,
                "config changed since it was read: detected modified configuration",
            ),
        ),
        (
            "transient",
            f(
                FailureKind::Transient {
                    cause: "status 503".into(),
                },
                "503 Service Unavailable",
            ),
        ),
        (
            "denied",
            f(
                FailureKind::Denied,
                "permission denied: (/vms/104, VM.Allocate)",
            ),
        ),
        (
            "not_found",
            f(FailureKind::NotFound, "not found: VM 104 does not exist"),
        ),
        (
            "task_failed",
            f(
                FailureKind::TaskFailed {
                    exitstatus: "command 'qm start 104' failed".into(),
                },
                "task failed",
            ),
        ),
        (
            "other",
            f(FailureKind::Other, "400 Parameter verification failed."),
        ),
    ]
}

fn states() -> Vec<OpState> {
    vec![
        OpState::Planned,
        OpState::PendingSignature {
            template: serde_json::json!({"v":1,"op":"guest.destroy","host":"pve-a","guest":104}),
        },
        OpState::Refused {
            code: crate::GateReason::BindingMismatch,
            detail: "signed guest.destroy on 105; held guest.destroy on 104".into(),
        },
        OpState::Intent,
        OpState::Dispatched {
            upid: "UPID:pve-a:000A1B01:0012D687:6745A000:qmdestroy:104:steward@pve!admin:".into(),
        },
        OpState::Succeeded,
        OpState::Failed {
            failure: failures()[0].1.clone(),
        },
        // New in v1 with clusters (additive: every older record reads as before).
        OpState::Moved {
            node: Some("pve-b".into()),
            failure: Failure::new(
                FailureKind::NotFound,
                "500 Configuration file 'nodes/pve-a/qemu-server/104.conf' does not exist",
            ),
        },
        OpState::Abandoned {
            reason: "no task for it in the node's task list".into(),
        },
    ]
}

fn record(state: OpState) -> OpRecord {
    OpRecord {
        id: OpId(7),
        guest: vmid(),
        action: actions()[6].1.clone(),
        class: Class::Destructive,
        txn: Some(TxnId(3)),
        scratch: false,
        identity: None,
        nonce: Some("k3J0c2Jq9yZ2Fh1mQ0xvUA".into()),
        signer: Some(Signer {
            principal: "alice@example.org".into(),
            key_fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
            role: Role::Operational,
        }),
        approvals: Vec::new(),
        warnings: Vec::new(),
        history: vec![
            Transition {
                at_ms: 1_764_000_000_000,
                state: OpState::Planned,
            },
            Transition {
                at_ms: 1_764_000_000_250,
                state,
            },
        ],
    }
}

#[test]
fn schema_v1_records_are_pinned_byte_for_byte_and_read_back() {
    assert_eq!(
        SCHEMA_VERSION, 1,
        "a new schema needs its own goldens and a v1 reader"
    );
    let mut problems = Vec::new();
    for (name, a) in actions() {
        problems.extend(check(&format!("action-{name}"), &a));
    }
    for state in states() {
        problems.extend(check(
            &format!("op-{}", state.name()),
            &record(state.clone()),
        ));
    }
    for (name, f) in failures() {
        problems.extend(check(
            &format!("failed-{name}"),
            &OpState::Failed { failure: f },
        ));
    }
    // An m-of-n op held with one approval of two: the field is new in v1 and absent (not
    // empty) from every record without approvals, so the older goldens above stay as written.
    let mut partly = record(OpState::PendingSignature {
        template: serde_json::json!({"v": 1, "op": "guest.destroy", "guest": 104}),
    });
    partly.nonce = None;
    partly.signer = None;
    partly.approvals = vec![Approval {
        signer: Signer {
            principal: "alice@example.org".into(),
            key_fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
            role: Role::Operational,
        },
        admitted_by: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
        certificate_valid_before: None,
        payload: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        not_after: 1_764_003_600,
        at_ms: 1_764_000_000_500,
        signature: None,
    }];
    problems.extend(check("op-pending_signature-approved_1", &partly));
    // A task that ended `WARNINGS: 1`: its log's warning kept with the op (new in v1, absent
    // from every record without warnings).
    let mut warned = record(OpState::Succeeded);
    warned.warnings = vec!["WARN: volume 'local-lvm:vm-104-disk-1' is busy, retried".into()];
    problems.extend(check("op-succeeded-warnings", &warned));
    problems.extend(check(
        "provenance",
        &ProvenanceFact {
            created_by: OpId(5),
            kind: GuestKind::Qemu,
            identity: Some("vmgenid:c0ffee00-1111-4222-8333-444455556666".into()),
            txn: Some(TxnId(3)),
            scratch: true,
            at_ms: 1_764_000_000_000,
        },
    ));
    problems.extend(check(
        "nonce",
        &NonceRecord {
            op: Some(OpId(7)),
            keep_until: 1_764_003_721,
        },
    ));
    problems.extend(check(
        "nonce-rotation",
        &NonceRecord {
            op: None,
            keep_until: 1_764_003_721,
        },
    ));
    let entry = AuditEntry::new(
        1,
        1_764_000_000_000,
        GENESIS,
        serde_json::json!({"type":"gate_decision","decision":"pending_signature","what":"guest.destroy","guest":104}),
    );
    problems.extend(check(
        "audit-head",
        &AuditHead {
            seq: 1,
            hash: entry.hash.clone(),
        },
    ));
    problems.extend(check("audit-entry", &entry));
    // The export format of a signed op's `intent` step: its proof (what `steward-verify audit`
    // reads) in the transition event, linked after the entry above.
    let proof = steward_audit::Proof {
        payload: r#"{"v":1,"op":"guest.destroy","host":"pve-a","guest":104,"params":{"kind":"qemu","purge":true,"destroy_unreferenced_disks":false,"identity":null},"nonce":"0123456789abcdef0123456789abcdef","not_before":"2025-11-24T16:00:00Z","not_after":"2025-11-24T17:00:00Z"}"#.into(),
        signatures: vec!["-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\n-----END SSH SIGNATURE-----\n".into()],
        trust_store: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        host: "pve-a".into(),
        action: Some(steward_model::Action::Destroy {
            vmid: steward_model::Vmid::new(104).unwrap_or_else(|_| unreachable!()),
            kind: steward_model::GuestKind::Qemu,
            purge: true,
            destroy_unreferenced_disks: false,
        }),
        identity: None,
    };
    let proven = AuditEntry::new(
        2,
        1_764_000_060_000,
        &entry.hash,
        serde_json::json!({"type": "transition", "op": 7, "guest": 104, "action": "guest.destroy",
            "class": "destructive", "from": "pending_signature", "to": {"state": "intent"},
            "nonce": "0123456789abcdef0123456789abcdef", "proof": proof}),
    );
    problems.extend(check("audit-entry-proof", &proven));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_action_variant_and_op_state_has_a_golden() {
    // Exhaustive matches: a new variant fails to compile here until it gets a golden above.
    for (_, a) in actions() {
        match a {
            Action::Create { .. }
            | Action::Start { .. }
            | Action::Stop { .. }
            | Action::Shutdown { .. }
            | Action::Reboot { .. }
            | Action::SetConfig { .. }
            | Action::ResizeDisk { .. }
            | Action::MoveDisk { .. }
            | Action::Destroy { .. }
            | Action::SnapshotRollback { .. }
            | Action::RestoreOver { .. } => {}
        }
    }
    let names: BTreeSet<&str> = actions().iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 12);
    for s in states() {
        match s {
            OpState::Planned
            | OpState::PendingSignature { .. }
            | OpState::Refused { .. }
            | OpState::Intent
            | OpState::Dispatched { .. }
            | OpState::Succeeded
            | OpState::Failed { .. }
            | OpState::Moved { .. }
            | OpState::Abandoned { .. } => {}
        }
    }
    let state_names: BTreeSet<&str> = states().iter().map(OpState::name).collect();
    assert_eq!(state_names.len(), 9);
    let kinds: BTreeSet<&str> = failures().iter().map(|(_, f)| f.code()).collect();
    assert_eq!(kinds.len(), 7);
    for (_, f) in failures() {
        match f.kind {
            FailureKind::Locked { .. }
            | FailureKind::DigestMoved
            | FailureKind::Transient { .. }
            | FailureKind::Denied
            | FailureKind::NotFound
            | FailureKind::TaskFailed { .. }
            | FailureKind::Other => {}
        }
    }
}

//! All retry behaviour in one place: what the engine does next with a guest after a decision
//! (`requeue`) or when its turn comes while someone else holds its Proxmox lock (`locked`), as
//! a `Requeue`; every park carries a closed [`ParkReason`]. Locked: back off and look again (never `skiplock`); a lock no token can
//! clear (a dead worker's `create` or `destroyed`, a backup lock with no backup running):
//! park it and say an administrator is needed. Digest moved: re-read and re-plan now.
//! Transient: jittered backoff. Denied: park. A failure that will come back the same way (not
//! found, a task that failed, anything else): jittered backoff, and after [`PARK_AFTER`] in a
//! row, park with the last failure as the reason, so a desired state that cannot succeed (a
//! template that does not exist) costs a handful of calls, not a loop. Held for a signature:
//! nothing to retry until it is signed or the state changes. A journal write that failed (disk full, EIO): nothing ran;
//! back off and try again, since the disk may recover. It must never turn a failure into a blind retry of the same
//! write.

use serde::Serialize;
use std::time::Duration;
use steward_gate::{Decision, FailureKind, Outcome};

/// When to look at a guest again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// As soon as it is observed again (progress was made, or the config must be re-read now).
    Now,
    /// After this long (backoff).
    After(Duration),
    /// Not until something changes (desired state, the guest on the node, or an operator).
    Park(ParkReason),
}

/// Why a guest is parked: a closed set, shown as its [`ParkReason::code`] in metrics and with
/// its detail in status. A parked guest is looked at again when its desired spec or what is
/// observed of it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ParkReason {
    /// A lock no token can clear (a dead worker's `create`/`destroyed`, or a lock with no task
    /// running behind it): an administrator must run `qm unlock`/`pct unlock`.
    AdminLock {
        /// The lock.
        lock: String,
    },
    /// Proxmox refused the token (403): its privileges must change.
    Denied {
        /// What Proxmox said (escaped).
        detail: String,
    },
    /// Held for an operator's signature (`steward-agent pending`).
    Held,
    /// The gate refused the action (its reason code).
    Refused {
        /// The gate's reason code (`binding_mismatch`, `role_denied`, …).
        code: String,
        /// Why (escaped).
        detail: String,
    },
    /// The same failure came back [`PARK_AFTER`] times in a row and says something the
    /// desired state asks for does not exist (a template, a storage).
    Gone {
        /// What failed last (escaped).
        detail: String,
    },
    /// The same failure came back [`PARK_AFTER`] times in a row.
    Failing {
        /// The failure's code (`task_failed`, `other`, …).
        code: String,
        /// What failed last (escaped).
        detail: String,
    },
    /// The desired state asks what no action can do (a disk shrink, a disk on another
    /// storage): parked until the document or the guest changes.
    Unsatisfiable {
        /// What (escaped).
        detail: String,
    },
    /// Something in the agent itself went wrong while acting on it (a panic, an action the
    /// agent cannot make with the identity it must keep).
    Internal {
        /// What (escaped).
        detail: String,
    },
}

impl ParkReason {
    /// Its label in metrics and the local API.
    pub fn code(&self) -> &'static str {
        match self {
            ParkReason::AdminLock { .. } => "admin_lock",
            ParkReason::Denied { .. } => "denied",
            ParkReason::Held => "held",
            ParkReason::Refused { .. } => "refused",
            ParkReason::Gone { .. } => "gone",
            ParkReason::Failing { .. } => "failing",
            ParkReason::Unsatisfiable { .. } => "unsatisfiable",
            ParkReason::Internal { .. } => "internal",
        }
    }
}

impl std::fmt::Display for ParkReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParkReason::AdminLock { lock } => write!(
                f,
                "locked ({lock}) with no task running for it: an administrator must unlock it (qm unlock / pct unlock)"
            ),
            ParkReason::Denied { detail } => write!(f, "the token was refused: {detail}"),
            ParkReason::Held => f.write_str("held for an operator's signature"),
            ParkReason::Refused { code, detail } => write!(f, "refused ({code}): {detail}"),
            ParkReason::Gone { detail } => write!(
                f,
                "failed {PARK_AFTER} times in a row (not_found: {detail}): parked until its desired state or the guest changes"
            ),
            ParkReason::Failing { code, detail } => write!(
                f,
                "failed {PARK_AFTER} times in a row ({code}: {detail}): parked until its desired state or the guest changes"
            ),
            ParkReason::Unsatisfiable { detail } => write!(
                f,
                "the desired state asks what cannot be done: {detail}"
            ),
            ParkReason::Internal { detail } => write!(f, "internal error while acting on it: {detail}"),
        }
    }
}
/// Failures in a row (of the kinds that come back the same way) after which a guest is parked
/// until its desired spec or its observed state changes. With the default backoff (2 s
/// doubling, each delay drawn from its upper half) that is six attempts within about a minute
/// (the delays between them at most 2, 4, 8, 16 and 32 s).
pub const PARK_AFTER: u32 = 6;

/// Locks that no API token can clear: only `qm unlock` as root can.
pub fn needs_admin(lock: &str) -> bool {
    matches!(lock, "create" | "destroyed")
}

/// The next step for a guest after `decision`; `backoff` is that guest's delay source.
pub fn requeue(decision: &Decision, backoff: &mut crate::backoff::Backoff) -> Requeue {
    fn later(backoff: &mut crate::backoff::Backoff) -> Requeue {
        Requeue::After(backoff.next().unwrap_or(Duration::from_secs(60)))
    }
    fn repeats(f: &steward_gate::Failure, backoff: &mut crate::backoff::Backoff) -> Requeue {
        let delay = backoff.next().unwrap_or(Duration::from_secs(60));
        if backoff.attempts() < PARK_AFTER {
            return Requeue::After(delay);
        }
        let detail = steward_authz::escape_controls(&f.detail);
        Requeue::Park(match f.kind {
            FailureKind::NotFound => ParkReason::Gone { detail },
            _ => ParkReason::Failing {
                code: f.code().to_string(),
                detail,
            },
        })
    }
    match decision {
        Decision::Executed {
            outcome: Outcome::Succeeded,
            ..
        } => {
            backoff.reset();
            Requeue::Now
        }
        // The guest left (or is leaving) this node: look again now, and the next pass finds it
        // elsewhere (or locked by the migration, and waits). Not a failure of ours.
        Decision::Executed {
            outcome: Outcome::Moved { .. },
            ..
        } => {
            backoff.reset();
            Requeue::Now
        }
        Decision::Executed {
            outcome: Outcome::Failed(f),
            ..
        } => match &f.kind {
            FailureKind::Locked { lock } if needs_admin(lock) => {
                Requeue::Park(ParkReason::AdminLock { lock: lock.clone() })
            }
            FailureKind::Locked { .. } | FailureKind::Transient { .. } => later(backoff),
            FailureKind::DigestMoved => Requeue::Now,
            FailureKind::Denied => Requeue::Park(ParkReason::Denied {
                detail: steward_authz::escape_controls(&f.detail),
            }),
            FailureKind::NotFound | FailureKind::TaskFailed { .. } | FailureKind::Other => {
                repeats(f, backoff)
            }
        },
        Decision::PendingSignature { .. } | Decision::PartlyApproved { .. } => {
            Requeue::Park(ParkReason::Held)
        }
        Decision::Refused {
            reason: steward_gate::GateReason::Journal,
            ..
        } => later(backoff),
        Decision::Refused { reason, detail, .. } => Requeue::Park(ParkReason::Refused {
            code: reason.to_string(),
            detail: steward_authz::escape_controls(detail),
        }),
        Decision::Replay { .. } | Decision::Rotated { .. } => Requeue::Now,
    }
}

/// A locked guest the engine did not lock: wait for the task behind the lock (backoff), or,
/// when no token can clear the lock or no task runs behind it, park it for an administrator.
pub(crate) fn locked(
    lock: &str,
    task_running: bool,
    backoff: &mut crate::backoff::Backoff,
) -> Requeue {
    if needs_admin(lock) || !task_running {
        Requeue::Park(ParkReason::AdminLock { lock: lock.into() })
    } else {
        Requeue::After(backoff.next().unwrap_or(Duration::from_secs(60)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use steward_gate::Failure;
    use steward_journal::OpId;

    fn failed(kind: FailureKind) -> Decision {
        Decision::Executed {
            op: OpId(1),
            outcome: Outcome::Failed(Failure::new(kind, "x")),
            signed: false,
        }
    }

    #[test]
    fn each_failure_gets_its_requeue() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let lock = |l: &str| FailureKind::Locked { lock: l.into() };
        assert!(matches!(
            requeue(&failed(lock("backup")), &mut b),
            Requeue::After(_)
        ));
        assert!(matches!(
            requeue(&failed(lock("create")), &mut b),
            Requeue::Park(_)
        ));
        assert!(matches!(
            requeue(&failed(lock("destroyed")), &mut b),
            Requeue::Park(_)
        ));
        assert_eq!(
            requeue(&failed(FailureKind::DigestMoved), &mut b),
            Requeue::Now
        );
        assert!(matches!(
            requeue(
                &failed(FailureKind::Transient {
                    cause: "status 503".into()
                }),
                &mut b
            ),
            Requeue::After(_)
        ));
        assert!(matches!(
            requeue(&failed(FailureKind::Denied), &mut b),
            Requeue::Park(_)
        ));
        assert!(b.attempts() >= 2);
        // Not found (a template that does not exist) backs off, then parks.
        let mut c = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let gone = failed(FailureKind::NotFound);
        for _ in 1..PARK_AFTER {
            assert!(matches!(requeue(&gone, &mut c), Requeue::After(_)));
        }
        assert!(
            matches!(
                requeue(&gone, &mut c),
                Requeue::Park(ParkReason::Gone { .. })
            ),
            "parked after {PARK_AFTER} in a row, naming the failure"
        );
        let ok = Decision::Executed {
            op: OpId(1),
            outcome: Outcome::Succeeded,
            signed: false,
        };
        assert_eq!(requeue(&ok, &mut b), Requeue::Now);
        assert_eq!(b.attempts(), 0, "progress resets the backoff");
        // A journal that cannot be written may recover: back off, never park.
        let disk_full = Decision::Refused {
            op: None,
            reason: steward_gate::GateReason::Journal,
            detail: "No space left on device".into(),
        };
        assert!(matches!(requeue(&disk_full, &mut b), Requeue::After(_)));
        let refused = Decision::Refused {
            op: None,
            reason: steward_gate::GateReason::RoleDenied,
            detail: "x".into(),
        };
        assert!(matches!(requeue(&refused, &mut b), Requeue::Park(_)));
    }

    #[test]
    fn every_park_reason_is_exported_by_the_metrics() {
        let all = [
            ParkReason::AdminLock { lock: "x".into() },
            ParkReason::Denied { detail: "x".into() },
            ParkReason::Held,
            ParkReason::Refused {
                code: "x".into(),
                detail: "x".into(),
            },
            ParkReason::Gone { detail: "x".into() },
            ParkReason::Failing {
                code: "x".into(),
                detail: "x".into(),
            },
            ParkReason::Unsatisfiable { detail: "x".into() },
            ParkReason::Internal { detail: "x".into() },
        ];
        for r in &all {
            // A new variant fails to compile here until it is listed above.
            match r {
                ParkReason::AdminLock { .. }
                | ParkReason::Denied { .. }
                | ParkReason::Held
                | ParkReason::Refused { .. }
                | ParkReason::Gone { .. }
                | ParkReason::Failing { .. }
                | ParkReason::Unsatisfiable { .. }
                | ParkReason::Internal { .. } => {}
            }
            assert!(
                steward_metrics::PARK_REASONS.contains(&r.code()),
                "{} is not exported",
                r.code()
            );
        }
        assert_eq!(all.len(), steward_metrics::PARK_REASONS.len());
    }

    #[test]
    fn a_move_looks_again_now_and_never_counts_towards_parking() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let gone = failed(FailureKind::NotFound);
        for _ in 1..PARK_AFTER {
            assert!(matches!(requeue(&gone, &mut b), Requeue::After(_)));
        }
        let moved = Decision::Executed {
            op: OpId(2),
            outcome: Outcome::Moved {
                node: Some("pve-b".into()),
                failure: Failure::new(FailureKind::NotFound, "x"),
            },
            signed: false,
        };
        assert_eq!(requeue(&moved, &mut b), Requeue::Now);
        assert_eq!(b.attempts(), 0, "a move is not one more failure in a row");
    }
}

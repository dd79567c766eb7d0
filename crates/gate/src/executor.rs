//! The executor seam: what actually talks to Proxmox. The gate wraps every call in the journal
//! (intent before, dispatched with the task's UPID, terminal outcome after). The gate takes its
//! executor by value (`Box<dyn Executor>`) and never hands it out, so an executor is reachable
//! only through the gate; the engine builds it around the API's write half and keeps no copy.

use async_trait::async_trait;
use steward_classifier::binding::ObservedConfig;
use steward_model::{Action, Failure, FailureKind, GuestKind, Vmid};

/// What must still hold on the node when an action is dispatched, checked by the executor
/// against a fresh read just before the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Nothing beyond the action itself (benign actions).
    Nothing,
    /// The guest at the action's VMID must have this identity (`None`: it must have none): a
    /// signature, or a provenance exception, names a guest, and another guest that took the
    /// VMID since must not receive the action.
    Identity(Option<String>),
    /// No guest may hold the VMID (a create): a create that restores with `force` must not
    /// land on a guest that took the VMID since it was held.
    Absent,
}

/// Which of the agent's two Proxmox tokens an action runs with, decided by the gate: the
/// everyday token (no `VM.Allocate`, disk, snapshot or backup privileges) for benign actions,
/// so that a classifier mistake meets a 403 from Proxmox; the admin token only for creates
/// (they need `VM.Allocate`), destroys the agent's own provenance allows, and whatever passed
/// the signed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority {
    /// The everyday token.
    Everyday,
    /// The admin token.
    Admin,
}

/// Where a guest is, asked after one of its ops failed: a failure that a migration or an HA
/// move caused ends the op as moved, not failed (`Outcome::Moved`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whereabouts {
    /// On this node, no migration under way: the failure stands.
    Here,
    /// On this node under `lock: migrate`: a migration is taking it away.
    Migrating,
    /// On another node of the cluster.
    Elsewhere {
        /// The node that holds it now.
        node: String,
    },
    /// Not known: not found anywhere, or the cluster did not answer. The failure stands.
    Unknown,
}

impl Whereabouts {
    /// Whether `failure` of `action` ends the op as moved, and where the guest went (`None`
    /// while the migration runs): only for what a move can cause. The guest gone to another
    /// node: its calls find nothing (`not_found`), its task fails, its lock or its digest
    /// changed first, or the node no longer answers for it. The guest migrating here: its
    /// `lock: migrate` (or the digest that lock changed) refused the call, or its task. Never
    /// for a create (a VMID taken elsewhere was never this node's guest), a refused token, or
    /// the executor's own refusals before any call (`other`: a binding mismatch, a key that is
    /// no config key), which say something about the op, not about where the guest is.
    pub fn moved(&self, action: &Action, failure: &Failure) -> Option<Option<String>> {
        if matches!(action, Action::Create { .. }) {
            return None;
        }
        match (self, &failure.kind) {
            (_, FailureKind::Denied | FailureKind::Other) => None,
            (
                Whereabouts::Elsewhere { node },
                FailureKind::NotFound
                | FailureKind::TaskFailed { .. }
                | FailureKind::Locked { .. }
                | FailureKind::DigestMoved
                | FailureKind::Transient { .. },
            ) => Some(Some(node.clone())),
            (Whereabouts::Migrating, FailureKind::Locked { lock }) if lock == "migrate" => {
                Some(None)
            }
            (Whereabouts::Migrating, FailureKind::DigestMoved | FailureKind::TaskFailed { .. }) => {
                Some(None)
            }
            _ => None,
        }
    }
}

impl Authority {
    /// `everyday` or `admin`, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Authority::Everyday => "everyday",
            Authority::Admin => "admin",
        }
    }
}

/// Runs actions against the node. Failures are typed ([`Failure`]) so that the journal records,
/// and the engine's retry policy matches, what kind of failure it was.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Starts the action with `authority`'s token, once `guard` holds; returns the Proxmox
    /// task's UPID when it runs as a task, `None` when it completed synchronously.
    async fn dispatch(
        &self,
        action: &Action,
        guard: &Guard,
        authority: Authority,
    ) -> Result<Option<String>, Failure>;

    /// Waits for the task `upid` (started with `authority`'s token) to end; `Err` carries its
    /// failure. `Ok` carries the warnings of a task that ended `WARNINGS: n` (a success, as
    /// Proxmox counts it), empty for a clean one.
    async fn wait(&self, upid: &str, authority: Authority) -> Result<Vec<String>, Failure>;

    /// Reads the guest's config now. The gate calls it before it spends a signature over a
    /// change that removes volumes; an executor that cannot read fails closed (the change is
    /// refused).
    async fn read_config(&self, kind: GuestKind, vmid: Vmid) -> Result<ObservedConfig, Failure> {
        Err(Failure::new(
            FailureKind::Other,
            format!("this executor cannot read the config of {kind} {vmid}"),
        ))
    }

    /// Where the guest is now, asked once after an op on it failed. An executor that cannot
    /// tell answers `Unknown`, and the failure stands.
    async fn whereabouts(&self, _kind: GuestKind, _vmid: Vmid) -> Whereabouts {
        Whereabouts::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Action {
        Action::Start {
            vmid: Vmid::new(101).expect("vmid"),
            kind: GuestKind::Qemu,
        }
    }

    fn f(kind: FailureKind) -> Failure {
        Failure::new(kind, "x")
    }

    #[test]
    fn only_what_a_move_causes_ends_an_op_as_moved() {
        let away = Whereabouts::Elsewhere {
            node: "pve-b".into(),
        };
        let locked = |l: &str| FailureKind::Locked { lock: l.into() };
        let task = FailureKind::TaskFailed {
            exitstatus: "x".into(),
        };
        // Gone to another node: what its absence, its lock or its digest caused.
        for k in [
            FailureKind::NotFound,
            task.clone(),
            locked("migrate"),
            FailureKind::DigestMoved,
            FailureKind::Transient {
                cause: "status 500".into(),
            },
        ] {
            assert_eq!(
                away.moved(&start(), &f(k.clone())),
                Some(Some("pve-b".into())),
                "{k:?}"
            );
        }
        // Migrating here: only the lock, the digest it changed, or the task it failed.
        let m = Whereabouts::Migrating;
        assert_eq!(m.moved(&start(), &f(locked("migrate"))), Some(None));
        assert_eq!(m.moved(&start(), &f(FailureKind::DigestMoved)), Some(None));
        assert_eq!(m.moved(&start(), &f(task)), Some(None));
        assert_eq!(m.moved(&start(), &f(locked("backup"))), None);
        assert_eq!(
            m.moved(&start(), &f(FailureKind::NotFound)),
            None,
            "an identity mismatch"
        );
        // Never: a refused token, the executor's own refusal, a create, or a guest here.
        for w in [&away, &m] {
            assert_eq!(w.moved(&start(), &f(FailureKind::Denied)), None);
            assert_eq!(w.moved(&start(), &f(FailureKind::Other)), None);
        }
        let create = Action::Create {
            vmid: Vmid::new(101).expect("vmid"),
            kind: GuestKind::Qemu,
            config: Default::default(),
        };
        assert_eq!(away.moved(&create, &f(FailureKind::Other)), None);
        assert_eq!(away.moved(&create, &f(FailureKind::NotFound)), None);
        for w in [Whereabouts::Here, Whereabouts::Unknown] {
            assert_eq!(w.moved(&start(), &f(FailureKind::NotFound)), None);
            assert_eq!(w.moved(&start(), &f(locked("migrate"))), None);
        }
    }
}

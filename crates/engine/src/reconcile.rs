//! Reconcile one guest: from the newest snapshot and its desired spec, what it needs next. A
//! pure function of the guest's entry in the snapshot (whose version moves whenever anything
//! read here changes, whether a task runs behind its lock included) and its spec, so its
//! answer can be kept until either moves; it returns one [`Step`], which the loop turns into a
//! gate submission or, through `policy`, a requeue.
//! It must never read the API, sleep, or look at why the loop woke up.

use crate::observe::Snapshot;
use steward_model::{Action, GuestSpec, Vmid};

/// What one guest needs now.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// Nothing to do.
    Converged,
    /// Listed, but its config has not been read yet: nothing to decide.
    Unread,
    /// Something to do, but someone else holds the guest's lock in Proxmox.
    Locked {
        /// The lock (`backup`, `create`, …).
        lock: String,
        /// Whether the node runs a task for the guest (a lock with none will not lift).
        task_running: bool,
    },
    /// Nothing can be done, yet the guest is not as desired: the planner's problems (a disk
    /// shrink, a disk on another storage), joined.
    Unsatisfiable {
        /// What, for a human.
        why: String,
    },
    /// The guest's power belongs to ha-manager, which is already taking it where the plan
    /// would, or was told to keep its hands off (`disabled`, `ignored`, `error`): no power
    /// call is made; the guest converges when its observed state does.
    WaitingForHa {
        /// Its HA service state.
        hastate: String,
    },
    /// The guest lives on another node of the cluster: nothing is done to it from here.
    Elsewhere {
        /// The node holding it.
        node: String,
    },
    /// The plan's next action, and the identity of the guest that holds the VMID now.
    Act {
        /// The action.
        action: Action,
        /// `steward_model::guest_identity` as last read.
        identity: Option<String>,
    },
}

impl Step {
    /// Whether the guest's turn means doing something (acting, deciding about a lock, or
    /// parking what cannot be done).
    pub(crate) fn acts(&self) -> bool {
        matches!(
            self,
            Step::Act { .. } | Step::Locked { .. } | Step::Unsatisfiable { .. }
        )
    }

    /// Whether the guest differs from its desired state.
    pub(crate) fn drifting(&self) -> bool {
        self.acts() || matches!(self, Step::WaitingForHa { .. })
    }
}

/// The step `vmid` needs, desired as `spec`, observed in `snap`.
pub(crate) fn reconcile(snap: &Snapshot, vmid: Vmid, spec: &GuestSpec) -> Step {
    let observed = snap.guests.get(&vmid);
    // VMIDs are cluster-wide: a guest another node holds is never created, changed or
    // destroyed from here, whatever its spec says.
    if observed.is_none() {
        if let Some(node) = snap.elsewhere.get(&vmid) {
            return Step::Elsewhere { node: node.clone() };
        }
    }
    if observed.is_some_and(|o| o.actual.is_none()) {
        return Step::Unread;
    }
    let plan = steward_planner::plan_guest(spec, snap.actual(vmid));
    let Some(action) = plan.actions.into_iter().next() else {
        if plan.problems.is_empty() {
            return Step::Converged;
        }
        let why: Vec<String> = plan.problems.into_iter().map(|n| n.message).collect();
        return Step::Unsatisfiable {
            why: why.join("; "),
        };
    };
    if let Some(hastate) = observed.and_then(|o| o.entry.hastate.as_deref()) {
        if !ha_allows(hastate, &action) {
            return Step::WaitingForHa {
                hastate: hastate.to_string(),
            };
        }
    }
    if let Some(lock) = observed.and_then(|o| o.entry.lock.clone()) {
        return Step::Locked {
            lock,
            task_running: snap.busy.contains(&vmid),
        };
    }
    Step::Act {
        action,
        identity: observed.and_then(|o| o.identity.clone()),
    }
}

/// Whether a power action may be sent for an HA resource in `hastate`. Proxmox turns a start,
/// stop or shutdown of an HA resource into a request to ha-manager (`hastart`/`hastop`), so
/// sending one is how the document's `state` reaches HA's requested state (`running` ↔
/// `started`, `stopped` ↔ `stopped`). It is sent only when HA is not already taking the guest
/// there, and never when an administrator set the resource `disabled` or `ignored` (or it is in
/// `error`): a request would silently override them. Other actions are not HA's.
fn ha_allows(hastate: &str, action: &Action) -> bool {
    let held_by_admin = matches!(hastate, "disabled" | "ignored" | "error");
    match action {
        Action::Start { .. } => {
            !held_by_admin
                && !matches!(
                    hastate,
                    "started" | "starting" | "recovery" | "fence" | "migrate" | "relocate"
                )
        }
        Action::Stop { .. } | Action::Shutdown { .. } => {
            !held_by_admin && !matches!(hastate, "stopped" | "request_stop")
        }
        _ => true,
    }
}

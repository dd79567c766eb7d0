//! The diff: desired state and actual state in, an ordered, deterministic plan out. Per guest:
//! create before config before power; guests in VMID order. Guests the document does not name
//! get nothing. It must never judge danger and never act on a guest whose kind differs from the
//! document's (that is a human's call).

use crate::actual::{ActualGuest, ActualState};
use crate::normalize;
use serde::{Deserialize, Serialize};
use steward_model::{Action, ConfigChange, DesiredState, GuestKind, GuestSpec, GuestState, Vmid};

/// How long a planned shutdown waits before stopping hard, seconds.
pub const SHUTDOWN_TIMEOUT_SECS: u32 = 180;

/// Something the plan wants a human to know, that is not an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The guest.
    pub vmid: Vmid,
    /// What.
    pub message: String,
}

/// The ordered actions, and notes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// What not to do, and why; restarts pending.
    pub notes: Vec<Note>,
    /// What the document asks that cannot be done (a disk shrink, a running container's volume
    /// on another storage, a CD-ROM where a disk is): the guest is not as desired, and no action will make it so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Note>,
}

/// Plans `desired` against `actual`: for each guest the document names, in VMID order, exactly
/// what [`plan_guest`] plans for it.
pub fn plan(desired: &DesiredState, actual: &ActualState) -> Plan {
    let mut p = Plan::default();
    let mut specs: Vec<&GuestSpec> = desired.guests.iter().collect();
    specs.sort_by_key(|s| s.vmid);
    // A merge walk over both sorted sides: one pass over the node's guests instead of a tree
    // descent per managed guest.
    let mut node = actual.iter().peekable();
    for spec in specs {
        while node.next_if(|(vmid, _)| **vmid < spec.vmid).is_some() {}
        let found = node
            .next_if(|(vmid, _)| **vmid == spec.vmid)
            .map(|(_, g)| g);
        push_guest(spec, found, &mut p);
    }
    p
}

/// Plans one guest: its desired spec against what the node has for its VMID (`None`: nothing).
/// The engine's scheduler queues guests, not actions, and calls this with the newest snapshot
/// when a guest's turn comes, so that no stale queued action can exist.
pub fn plan_guest(spec: &GuestSpec, actual: Option<&ActualGuest>) -> Plan {
    let mut p = Plan::default();
    push_guest(spec, actual, &mut p);
    p
}

fn note(p: &mut Plan, vmid: Vmid, message: impl Into<String>) {
    p.notes.push(Note {
        vmid,
        message: message.into(),
    });
}

fn push_guest(spec: &GuestSpec, actual: Option<&ActualGuest>, p: &mut Plan) {
    let (vmid, kind) = (spec.vmid, spec.kind);
    let Some(actual) = actual else {
        if spec.state == GuestState::Absent {
            return;
        }
        if kind == GuestKind::Lxc && !spec.create.contains_key("ostemplate") {
            note(
                p,
                vmid,
                "missing, and the document gives no create.ostemplate to create it from",
            );
            return;
        }
        let mut config = normalize::create_config(spec);
        config.extend(disks::create_values(spec));
        p.actions.push(Action::Create { vmid, kind, config });
        if spec.state == GuestState::Running {
            p.actions.push(Action::Start { vmid, kind });
        }
        return;
    };
    if actual.kind != kind {
        note(
            p,
            vmid,
            format!(
                "the document says {kind}, the node has {}: left alone",
                actual.kind
            ),
        );
        return;
    }
    if spec.state == GuestState::Absent {
        // Stopping first is part of executing the destroy, not a separate benign step: an
        // unsigned destroy must not leave the guest stopped while it waits for a signature.
        p.actions.push(Action::Destroy {
            vmid,
            kind,
            purge: true,
            destroy_unreferenced_disks: true,
        });
        return;
    }
    let disks = disks::plan(spec, actual);
    let mut change = normalize::config_change(spec, actual);
    if !disks.set.is_empty() {
        let c = change.get_or_insert_with(|| ConfigChange {
            digest: Some(actual.digest.clone()),
            ..ConfigChange::default()
        });
        c.set.extend(disks.set);
        c.keeps.extend(disks.keeps);
    }
    // The detach waits until nothing else is left to write: it binds the digest, which a
    // write before it would move.
    let benign_writes = change.is_some() || !disks.resizes.is_empty();
    if let Some(change) = change {
        p.actions.push(Action::SetConfig { vmid, kind, change });
    }
    for (disk, size) in disks.resizes {
        p.actions.push(Action::ResizeDisk {
            vmid,
            kind,
            disk,
            size,
        });
    }
    for n in disks.notes {
        p.problems.push(Note { vmid, message: n });
    }
    if !actual.pending.is_empty() {
        let keys: Vec<&str> = actual.pending.iter().map(String::as_str).collect();
        note(
            p,
            vmid,
            format!("restart pending to apply: {}", keys.join(", ")),
        );
    }
    match (spec.state, actual.status.as_str()) {
        (GuestState::Running, "stopped") if actual.is_template() => {
            note(p, vmid, "is a template: templates do not run")
        }
        (GuestState::Running, "stopped") => p.actions.push(Action::Start { vmid, kind }),
        (GuestState::Stopped, "running") => p.actions.push(Action::Shutdown {
            vmid,
            kind,
            timeout_secs: SHUTDOWN_TIMEOUT_SECS,
            force_stop: true,
        }),
        (_, "running" | "stopped") => {}
        (_, other) => note(p, vmid, format!("status {other:?}: no power action")),
    }
    // Then what may wait for a signature, so that it holds up nothing else.
    let alone = normalize::alone_change(spec, actual);
    let waiting = benign_writes || alone.is_some();
    if let Some(change) = alone {
        p.actions.push(Action::SetConfig { vmid, kind, change });
    }
    if waiting {
        return;
    }
    // One write bound to the digest at a time: each moves it, which would supersede the next.
    if !disks.detach.is_empty() {
        p.actions.push(Action::SetConfig {
            vmid,
            kind,
            change: ConfigChange {
                delete: disks.detach.keys().cloned().collect(),
                digest: Some(actual.digest.clone()),
                removes: disks.detach,
                ..ConfigChange::default()
            },
        });
    } else if let Some((disk, (volume, storage))) = disks.moves.into_iter().next() {
        p.actions.push(Action::MoveDisk {
            vmid,
            kind,
            disk,
            volume,
            storage,
            delete: true,
            digest: Some(actual.digest.clone()),
        });
    }
}

mod disks;

pub(crate) use disks::{is_cdrom, size_text};

#[cfg(test)]
mod tests;

//! The scheduler: one slot per guest, the only place a guest's next look is decided and the
//! only lock on a guest. A slot holds when the guest is due, its backoff, why it is parked,
//! whether something is acting on it (an action the loop started, a signed op an operator
//! presented, a task recovery follows) and whether its snapshot entry is stale because of
//! that. The loop and the signed-op desk share it behind one short-held mutex; a desk waiting
//! for a busy guest sleeps on a `Notify` until a slot is released.
//! It must never let two things act on one guest at once, and never keep a slot for a guest
//! nobody manages once nothing holds it (VMIDs named by unverified payloads leave nothing).

use crate::backoff::Backoff;
use crate::policy::{ParkReason, Requeue};
use crate::reconcile::Step;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use steward_model::Vmid;
use tokio::time::Instant;

/// What holds a guest's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Busy {
    /// An action the loop handed to the gate.
    Action,
    /// A signed op an operator presented.
    Signed,
    /// A task of ours that recovery found still running.
    Recovering,
}

/// The last plan of a guest, and what it was made from: it is made again only when the
/// observed guest or its desired spec moved.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    pub(crate) observed: u64,
    pub(crate) spec: u64,
    pub(crate) step: Step,
}

/// One guest's place.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) due: Instant,
    pub(crate) backoff: Backoff,
    pub(crate) parked: Option<ParkReason>,
    pub(crate) busy: Option<Busy>,
    /// Something ran on it then: not planned again until a pass that began later read it (or
    /// found it gone).
    pub(crate) stale: Option<Instant>,
    /// Moves when its desired spec changed.
    pub(crate) spec: u64,
    pub(crate) planned: Option<Planned>,
}

impl Slot {
    /// Idle, not parked, not stale, with something to do: it acts once it is due.
    fn waiting(&self) -> bool {
        self.busy.is_none()
            && self.parked.is_none()
            && self.stale.is_none()
            && self.planned.as_ref().is_some_and(|p| p.step.acts())
    }
}

/// Every guest's slot.
#[derive(Debug)]
pub(crate) struct Scheduler {
    slots: BTreeMap<Vmid, Slot>,
    managed: BTreeSet<Vmid>,
    base: Duration,
    cap: Duration,
}

impl Scheduler {
    /// Slots whose backoff runs from `base` to `cap`.
    pub(crate) fn new(base: Duration, cap: Duration) -> Scheduler {
        Scheduler {
            slots: BTreeMap::new(),
            managed: BTreeSet::new(),
            base,
            cap,
        }
    }

    /// `vmid`'s slot, made when missing.
    pub(crate) fn slot(&mut self, vmid: Vmid) -> &mut Slot {
        let (base, cap) = (self.base, self.cap);
        self.slots.entry(vmid).or_insert_with(|| Slot {
            due: Instant::now(),
            backoff: Backoff::new(base, cap),
            parked: None,
            busy: None,
            stale: None,
            spec: 0,
            planned: None,
        })
    }

    /// The guests the desired state names now; slots of others go once nothing holds them.
    pub(crate) fn set_managed(&mut self, managed: BTreeSet<Vmid>) {
        self.managed = managed;
        let managed = &self.managed;
        self.slots
            .retain(|v, s| managed.contains(v) || s.busy.is_some());
    }

    /// `vmid`'s desired spec changed: plan it again now, parked or not.
    pub(crate) fn spec_changed(&mut self, vmid: Vmid) {
        let s = self.slot(vmid);
        s.spec += 1;
        s.parked = None;
        s.due = Instant::now();
    }

    /// Takes `vmid`'s slot for `by` if nothing holds it.
    pub(crate) fn try_take(&mut self, vmid: Vmid, by: Busy) -> bool {
        let s = self.slot(vmid);
        if s.busy.is_some() {
            return false;
        }
        s.busy = Some(by);
        true
    }

    /// Releases `vmid`'s slot; `ran` says something may have changed the guest, so it waits
    /// for a pass to re-read it before it is planned again.
    pub(crate) fn release(&mut self, vmid: Vmid, ran: bool) {
        let managed = self.managed.contains(&vmid);
        let Some(s) = self.slots.get_mut(&vmid) else {
            return;
        };
        s.busy = None;
        if ran {
            s.stale = Some(Instant::now());
        }
        if !managed {
            self.slots.remove(&vmid);
        }
    }

    /// Applies the policy's answer for `vmid`.
    pub(crate) fn requeue(&mut self, vmid: Vmid, r: Requeue) {
        let s = self.slot(vmid);
        match r {
            Requeue::Now => s.due = Instant::now(),
            Requeue::After(d) => s.due = Instant::now() + d,
            Requeue::Park(why) => s.parked = Some(why),
        }
    }

    /// A pass that began at `began` observed the node: a guest that went stale before it may
    /// be planned again once that pass read its config, or found it gone.
    pub(crate) fn observed(
        &mut self,
        began: Instant,
        read: &BTreeSet<Vmid>,
        listed: &BTreeSet<Vmid>,
    ) {
        for (v, s) in self.slots.iter_mut() {
            let seen = read.contains(v) || !listed.contains(v);
            if seen && s.stale.is_some_and(|at| at <= began) {
                s.stale = None;
            }
        }
    }

    /// Guests to read at the next pass whatever the list says: something ran on them.
    pub(crate) fn stale_guests(&self) -> BTreeSet<Vmid> {
        self.slots
            .iter()
            .filter(|(_, s)| s.stale.is_some())
            .map(|(v, _)| *v)
            .collect()
    }

    /// The managed slots, for reconcile.
    pub(crate) fn managed_slots(&mut self) -> impl Iterator<Item = (Vmid, &mut Slot)> {
        let managed = &self.managed;
        self.slots
            .iter_mut()
            .filter(|(v, _)| managed.contains(v))
            .map(|(v, s)| (*v, s))
    }

    /// Guests whose turn it is: managed, idle, not parked, not stale, due, with an action
    /// planned; in VMID order.
    pub(crate) fn ready(&self, now: Instant) -> Vec<Vmid> {
        self.slots
            .iter()
            .filter(|(v, s)| self.managed.contains(v) && s.waiting() && s.due <= now)
            .map(|(v, _)| *v)
            .collect()
    }

    /// The soonest due time of a guest waiting with something to do.
    pub(crate) fn soonest(&self, now: Instant) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| s.waiting() && s.due > now)
            .map(|s| s.due)
            .min()
    }

    /// Guests something acts on now.
    pub(crate) fn busy_guests(&self) -> BTreeSet<Vmid> {
        self.slots
            .iter()
            .filter(|(_, s)| s.busy.is_some())
            .map(|(v, _)| *v)
            .collect()
    }

    /// Parked guests and why.
    pub(crate) fn parked(&self) -> Vec<(Vmid, ParkReason)> {
        self.slots
            .iter()
            .filter_map(|(v, s)| s.parked.clone().map(|p| (*v, p)))
            .collect()
    }

    /// Slots kept for guests nobody manages (for tests: none once nothing holds them).
    pub(crate) fn unmanaged_kept(&self) -> usize {
        self.slots
            .keys()
            .filter(|v| !self.managed.contains(v))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64) -> Vmid {
        Vmid::new(n).unwrap()
    }

    #[test]
    fn one_holder_per_guest_and_unmanaged_slots_go_when_released() {
        let mut s = Scheduler::new(Duration::from_secs(1), Duration::from_secs(10));
        s.set_managed([v(100)].into());
        assert!(s.try_take(v(100), Busy::Action));
        assert!(!s.try_take(v(100), Busy::Signed), "held by the action");
        assert!(s.try_take(v(999), Busy::Signed), "a guest nobody manages");
        assert_eq!(s.unmanaged_kept(), 1);
        s.release(v(999), true);
        assert_eq!(s.unmanaged_kept(), 0);
        let before = Instant::now();
        s.release(v(100), true);
        assert!(s.slot(v(100)).stale.is_some(), "ran: waits for a pass");
        assert_eq!(s.stale_guests(), [v(100)].into());
        let (read, listed) = ([v(100)].into(), [v(100)].into());
        s.observed(before, &read, &listed);
        assert!(
            s.slot(v(100)).stale.is_some(),
            "a pass that began before the end does not count"
        );
        s.observed(Instant::now(), &BTreeSet::new(), &listed);
        assert!(
            s.slot(v(100)).stale.is_some(),
            "a pass that did not read it does not count"
        );
        s.observed(Instant::now(), &read, &listed);
        assert!(s.slot(v(100)).stale.is_none());
        s.release(v(100), true);
        s.observed(Instant::now(), &BTreeSet::new(), &BTreeSet::new());
        assert!(s.slot(v(100)).stale.is_none(), "found gone: seen");
    }

    #[test]
    fn a_changed_spec_unparks() {
        let mut s = Scheduler::new(Duration::from_secs(1), Duration::from_secs(10));
        s.set_managed([v(100)].into());
        s.requeue(v(100), Requeue::Park(ParkReason::Held));
        assert_eq!(s.parked().len(), 1);
        s.spec_changed(v(100));
        assert!(s.parked().is_empty());
    }
}

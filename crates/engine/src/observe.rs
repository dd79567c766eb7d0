//! Observation at constant cost. `pveproxy` is slow and shared with humans, and Proxmox's list
//! calls carry no config digest, so each pass reads: the two guest lists (always: 2 requests);
//! the config and pending list (2 requests) only of managed guests whose list entry changed,
//! that the engine marked dirty (an action just ran on it, its desired spec changed), whose
//! config file's mtime moved (when the agent can read `/etc/pve`), or whose turn it is in the
//! paced sweep that re-reads every managed guest within `sweep_period`. Only the observer reads
//! the API; reconcile reads the snapshot it writes. It must never write, and it is handed the
//! read half of the API only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use steward_model::{GuestKind, Vmid};
use steward_planner::ActualGuest;
use steward_proxmox_client::{ApiError, GuestEntry, GuestRead};

/// One guest as last observed.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Its list entry (every pass).
    pub entry: GuestEntry,
    /// Its config, digest and pending keys, from the last config read (managed guests only).
    pub actual: Option<ActualGuest>,
    /// Its identity (`steward_model::guest_identity`) from that config.
    pub identity: Option<String>,
    /// When its config was last read.
    pub read_at: Option<std::time::Instant>,
}

/// What the node looked like at the last pass.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every guest on the node the token may see.
    pub guests: BTreeMap<Vmid, Observed>,
}

impl Snapshot {
    /// The planner's view of `vmid`, if its config was read.
    pub fn actual(&self, vmid: Vmid) -> Option<&ActualGuest> {
        self.guests.get(&vmid).and_then(|o| o.actual.as_ref())
    }
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct PassReport {
    /// API requests this pass made.
    pub requests: u64,
    /// Config reads (each is a config and a pending request).
    pub config_reads: u64,
    /// Guests that were observed before and are gone now.
    pub vanished: Vec<Vmid>,
}

/// The observer.
pub struct Observer {
    api: Arc<dyn GuestRead>,
    snapshot: Snapshot,
    dirty: BTreeSet<Vmid>,
    sweep_after: Option<Vmid>,
    sweep_period: Duration,
    conf_dir: Option<PathBuf>,
    mtimes: BTreeMap<Vmid, SystemTime>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("guests", &self.snapshot.guests.len())
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

/// The list fields whose change means the config may have changed.
fn entry_key(e: &GuestEntry) -> (&str, Option<&str>, Option<u64>, Option<&str>, bool) {
    (
        e.status.as_str(),
        e.name.as_deref(),
        e.maxmem,
        e.lock.as_deref(),
        e.template,
    )
}

impl Observer {
    /// An observer over the read half of the API; `conf_dir` is `/etc/pve/nodes/<node>` (or
    /// the simulator's view) when readable.
    pub fn new(
        api: Arc<dyn GuestRead>,
        sweep_period: Duration,
        conf_dir: Option<PathBuf>,
    ) -> Observer {
        Observer {
            api,
            snapshot: Snapshot::default(),
            dirty: BTreeSet::new(),
            sweep_after: None,
            sweep_period,
            conf_dir,
            mtimes: BTreeMap::new(),
        }
    }

    /// The last snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Read `vmid`'s config at the next pass.
    pub fn mark_dirty(&mut self, vmid: Vmid) {
        self.dirty.insert(vmid);
    }

    fn mtime_moved(&mut self, kind: GuestKind, vmid: Vmid) -> bool {
        let Some(dir) = &self.conf_dir else {
            return false;
        };
        let sub = match kind {
            GuestKind::Qemu => "qemu-server",
            GuestKind::Lxc => "lxc",
        };
        let Ok(m) = std::fs::metadata(dir.join(sub).join(format!("{vmid}.conf")))
            .and_then(|m| m.modified())
        else {
            return false;
        };
        self.mtimes.insert(vmid, m) != Some(m)
    }

    /// One pass: the lists, then the configs that need reading. `managed` are the guests the
    /// desired state names; `interval` is the time between passes (it paces the sweep).
    pub async fn pass(
        &mut self,
        managed: &BTreeSet<Vmid>,
        interval: Duration,
    ) -> Result<PassReport, ApiError> {
        let mut report = PassReport::default();
        let list = self.api.list_guests().await?;
        report.requests += 2;
        let listed: BTreeSet<Vmid> = list.iter().map(|e| e.vmid).collect();
        report.vanished = self
            .snapshot
            .guests
            .keys()
            .filter(|v| !listed.contains(v))
            .copied()
            .collect();
        for v in &report.vanished {
            self.snapshot.guests.remove(v);
            self.mtimes.remove(v);
        }
        // The paced sweep: managed guests whose config was last read a sweep period ago or
        // more, at most enough per pass to cover every guest within the period (round robin).
        let now = std::time::Instant::now();
        let due: Vec<Vmid> = managed
            .iter()
            .filter(|v| listed.contains(v))
            .filter(|v| {
                self.snapshot
                    .guests
                    .get(v)
                    .and_then(|o| o.read_at)
                    .is_some_and(|at| now.duration_since(at) >= self.sweep_period)
            })
            .copied()
            .collect();
        let passes = (self.sweep_period.as_secs_f64() / interval.as_secs_f64().max(0.001)).max(1.0);
        let budget = ((managed.len() as f64 / passes).ceil() as usize).max(1);
        let start = self
            .sweep_after
            .and_then(|after| due.iter().position(|v| *v > after))
            .unwrap_or(0);
        let sweep: BTreeSet<Vmid> = due
            .iter()
            .cycle()
            .skip(start)
            .take(budget.min(due.len()))
            .copied()
            .collect();
        if let Some(last) = due
            .iter()
            .cycle()
            .skip(start)
            .take(budget.min(due.len()))
            .last()
        {
            self.sweep_after = Some(*last);
        }
        let mut to_read = Vec::new();
        for entry in list {
            let vmid = entry.vmid;
            let moved = managed.contains(&vmid) && self.mtime_moved(entry.kind, vmid);
            let prev = self.snapshot.guests.get(&vmid);
            let changed = prev.is_none_or(|p| {
                entry_key(&p.entry) != entry_key(&entry) || p.entry.kind != entry.kind
            });
            let need = managed.contains(&vmid)
                && (prev.is_none_or(|p| p.actual.is_none())
                    || changed
                    || moved
                    || self.dirty.contains(&vmid)
                    || sweep.contains(&vmid));
            match self.snapshot.guests.get_mut(&vmid) {
                Some(o) => {
                    if let Some(a) = &mut o.actual {
                        a.status = entry.status.clone();
                    }
                    o.entry = entry.clone();
                }
                None => {
                    self.snapshot.guests.insert(
                        vmid,
                        Observed {
                            entry: entry.clone(),
                            actual: None,
                            identity: None,
                            read_at: None,
                        },
                    );
                }
            }
            if need {
                to_read.push(entry);
            }
        }
        for entry in to_read {
            let (kind, vmid) = (entry.kind, entry.vmid);
            let read = async {
                let cfg = self.api.config(kind, vmid).await?;
                let pending = self.api.pending(kind, vmid).await?;
                Ok::<_, ApiError>((cfg, pending))
            };
            match read.await {
                Ok((cfg, pending)) => {
                    report.requests += 2;
                    report.config_reads += 1;
                    let identity = steward_model::guest_identity(kind, &cfg.values);
                    let actual = ActualGuest {
                        vmid,
                        kind,
                        status: entry.status.clone(),
                        config: cfg.values,
                        digest: cfg.digest,
                        pending: pending
                            .into_iter()
                            .filter(|p| p.pending.is_some() || p.delete)
                            .map(|p| p.key)
                            .collect(),
                    };
                    if let Some(o) = self.snapshot.guests.get_mut(&vmid) {
                        o.actual = Some(actual);
                        o.identity = identity;
                        o.read_at = Some(std::time::Instant::now());
                    }
                    self.dirty.remove(&vmid);
                }
                // Gone between the list and the read: the next pass sees it absent.
                Err(ApiError::NotFound(_)) => {
                    report.requests += 1;
                    self.snapshot.guests.remove(&vmid);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

//! Observation at constant cost. `pveproxy` is slow and shared with humans, and Proxmox's list
//! calls carry no config digest, so each pass reads: the cluster's guests
//! (`/cluster/resources?type=vm`: this node's, and which node holds every other VMID) and its
//! quorum (`/cluster/status`) (always: 2 requests);
//! one guest's config with its pending changes (`GET …/pending`, 1 request) only for managed
//! guests whose list entry changed, that the scheduler says are dirty (something ran on them),
//! whose config file's mtime moved (when the agent can see `/etc/pve`), or whose turn it is in
//! the paced sweep that re-reads every managed guest within `sweep_period`; and the node's
//! running tasks (1 request) only while a managed guest is locked, to tell a lock with a task
//! behind it from one that will not lift. Each pass publishes a new [`Snapshot`] (shared, never
//! mutated once published); each guest in it carries a version that moves whenever something
//! reconcile reads of it may have changed (its list entry, config, digest, pending keys, or
//! whether a task runs behind its lock). A failed pass publishes nothing and uses up no hint.
//! Only the observer reads the API for the engine's loop (and, once per held destroy, the
//! volumes it would remove); reconcile reads the snapshot. It must never write, and it is
//! handed the read half of the API only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub actual: Option<Arc<ActualGuest>>,
    /// Its identity (`steward_model::guest_identity`) from that config.
    pub identity: Option<String>,
    /// When its config was last read.
    pub read_at: Option<std::time::Instant>,
    /// Moves whenever something the planner or the scheduler reads of it changed (its list
    /// entry's status, lock, name, memory, kind; its config, digest or pending keys).
    pub version: u64,
}

/// What the node looked like at the last pass.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every guest on the node the token may see.
    pub guests: BTreeMap<Vmid, Observed>,
    /// Guests with a task running on the node (read only while a managed guest is locked).
    pub busy: BTreeSet<Vmid>,
    /// Guests on other nodes of the cluster: VMID → node. Never acted on from here.
    pub elsewhere: BTreeMap<Vmid, String>,
    /// This node has lost quorum: every write would fail, so none is tried.
    pub no_quorum: bool,
}

impl Snapshot {
    /// The planner's view of `vmid`, if its config was read.
    pub fn actual(&self, vmid: Vmid) -> Option<&ActualGuest> {
        self.guests.get(&vmid).and_then(|o| o.actual.as_deref())
    }
}

/// Versions for observed guests, unique across passes.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, Ordering::Relaxed)
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct PassReport {
    /// API requests this pass made.
    pub requests: u64,
    /// Config reads (each one `GET …/pending`, or with `GET …/config` where the answer
    /// carries no digest).
    pub config_reads: u64,
    /// Guests whose config this pass read.
    pub read: BTreeSet<Vmid>,
    /// Guests the node listed (and did not answer 404 for).
    pub listed: BTreeSet<Vmid>,
    /// Guests that were observed before and are gone now.
    pub vanished: Vec<Vmid>,
}

/// The observer.
pub struct Observer {
    api: Arc<dyn GuestRead>,
    /// Reads a guest's volumes for a held destroy's summary: the admin token's reader, since
    /// Proxmox shows a guest's disk volumes only to a token with `VM.Config.Disk` on it
    /// (pve-storage's `check_volume_access`), which the everyday token must not have.
    volumes: Arc<dyn GuestRead>,
    snapshot: Arc<Snapshot>,
    sweep_after: Option<Vmid>,
    sweep_period: Duration,
    conf_dir: Option<PathBuf>,
    mtimes: BTreeMap<Vmid, SystemTime>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("guests", &self.snapshot.guests.len())
            .finish_non_exhaustive()
    }
}

/// The list fields whose change means the config (or, for `hastate`, what may be done to
/// the guest) may have changed.
type EntryKey<'a> = (
    &'a str,
    Option<&'a str>,
    Option<u64>,
    Option<&'a str>,
    bool,
    Option<&'a str>,
);

fn entry_key(e: &GuestEntry) -> EntryKey<'_> {
    (
        e.status.as_str(),
        e.name.as_deref(),
        e.maxmem,
        e.lock.as_deref(),
        e.template,
        e.hastate.as_deref(),
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
            volumes: api.clone(),
            api,
            snapshot: Arc::new(Snapshot::default()),
            sweep_after: None,
            sweep_period,
            conf_dir,
            mtimes: BTreeMap::new(),
        }
    }

    /// The last snapshot.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// What held destroy `action` removes beyond the config it names (`held::destroy_extras`),
    /// read through the observer's handles: snapshots with its reader, the guest's volumes with
    /// the volume reader.
    pub(crate) async fn destroy_extras(
        &self,
        action: &steward_model::Action,
        config: &BTreeMap<String, String>,
    ) -> Vec<crate::held::Extra> {
        crate::held::destroy_extras(
            self.api.as_ref(),
            self.volumes.as_ref(),
            action,
            Some(config),
        )
        .await
    }

    /// Reads guests' volumes through `volumes` (a reader with the admin token).
    pub(crate) fn set_volume_reader(&mut self, volumes: Arc<dyn GuestRead>) {
        self.volumes = volumes;
    }

    /// The config file's mtime when it moved since the last read of the guest (recorded only
    /// once a read succeeds, so a failed pass or a guest in flight does not use it up).
    fn mtime_moved(&self, kind: GuestKind, vmid: Vmid) -> Option<SystemTime> {
        let dir = self.conf_dir.as_ref()?;
        let sub = match kind {
            GuestKind::Qemu => "qemu-server",
            GuestKind::Lxc => "lxc",
        };
        let m = std::fs::metadata(dir.join(sub).join(format!("{vmid}.conf")))
            .and_then(|m| m.modified())
            .ok()?;
        (self.mtimes.get(&vmid) != Some(&m)).then_some(m)
    }

    /// One pass: the lists, then the configs that need reading, then (while a managed guest
    /// is locked) the running tasks. `managed` are the guests the desired state names,
    /// `in_flight` those something acts on now (not read until it is done), `dirty` those to
    /// read whatever the list says (something ran on them);
    /// `interval` is the time between passes (it paces the sweep). On success the new snapshot
    /// is [`Observer::snapshot`]; on error the last one stays.
    pub async fn pass(
        &mut self,
        managed: &BTreeSet<Vmid>,
        in_flight: &BTreeSet<Vmid>,
        dirty: &BTreeSet<Vmid>,
        interval: Duration,
    ) -> Result<PassReport, ApiError> {
        let mut report = PassReport::default();
        let view = self.api.cluster_view().await?;
        report.requests += 2;
        let list = view.here;
        let mut next = Snapshot {
            guests: BTreeMap::new(),
            busy: BTreeSet::new(),
            elsewhere: view.elsewhere,
            no_quorum: !view.quorate,
        };
        let listed: BTreeSet<Vmid> = list.iter().map(|e| e.vmid).collect();
        report.vanished = self
            .snapshot
            .guests
            .keys()
            .filter(|v| !listed.contains(v))
            .copied()
            .collect();
        for v in &report.vanished {
            self.mtimes.remove(v);
        }
        report.listed = listed.clone();
        let sweep = self.sweep(managed, &listed, interval);
        let mut to_read = Vec::new();
        for entry in list {
            let vmid = entry.vmid;
            let mtime = if managed.contains(&vmid) {
                self.mtime_moved(entry.kind, vmid)
            } else {
                None
            };
            let prev = self.snapshot.guests.get(&vmid);
            let changed = prev.is_none_or(|p| {
                entry_key(&p.entry) != entry_key(&entry) || p.entry.kind != entry.kind
            });
            // A guest something acts on now is read once it is done (it is marked dirty then):
            // a read in the middle would be stale before the plan could use it.
            let need = managed.contains(&vmid)
                && !in_flight.contains(&vmid)
                && (prev.is_none_or(|p| p.actual.is_none())
                    || changed
                    || mtime.is_some()
                    || dirty.contains(&vmid)
                    || sweep.contains(&vmid));
            let observed = match prev {
                Some(p) if !changed => Observed { entry, ..p.clone() },
                Some(p) => Observed {
                    // The list says the status moved: the planner reads it from `actual`.
                    actual: p.actual.as_ref().map(|a| {
                        let mut a = ActualGuest::clone(a);
                        a.status = entry.status.clone();
                        Arc::new(a)
                    }),
                    entry,
                    identity: p.identity.clone(),
                    read_at: p.read_at,
                    version: next_version(),
                },
                None => Observed {
                    entry,
                    actual: None,
                    identity: None,
                    read_at: None,
                    version: next_version(),
                },
            };
            if need {
                to_read.push((observed.entry.kind, vmid, mtime));
            }
            next.guests.insert(vmid, observed);
        }
        let mut mtimes = Vec::new();
        for (kind, vmid, mtime) in to_read {
            match self.api.config_and_pending(kind, vmid).await {
                Ok((cfg, pending)) => {
                    report.requests += 1;
                    report.config_reads += 1;
                    let Some(o) = next.guests.get_mut(&vmid) else {
                        continue;
                    };
                    let same = o.actual.as_ref().is_some_and(|a| {
                        a.digest == cfg.digest && a.pending == pending && a.config == cfg.values
                    });
                    if !same {
                        o.identity = steward_model::guest_identity(kind, &cfg.values);
                        o.actual = Some(Arc::new(ActualGuest {
                            vmid,
                            kind,
                            status: o.entry.status.clone(),
                            config: cfg.values,
                            digest: cfg.digest,
                            pending,
                        }));
                        o.version = next_version();
                    }
                    o.read_at = Some(std::time::Instant::now());
                    report.read.insert(vmid);
                    if let Some(m) = mtime {
                        mtimes.push((vmid, m));
                    }
                }
                // Gone between the list and the read: the next pass sees it absent.
                Err(ApiError::NotFound(_)) => {
                    report.requests += 1;
                    report.listed.remove(&vmid);
                    next.guests.remove(&vmid);
                }
                Err(e) => return Err(e),
            }
        }
        let locked = next
            .guests
            .iter()
            .any(|(v, o)| managed.contains(v) && o.entry.lock.is_some());
        if locked {
            let filter = steward_proxmox_client::TaskFilter {
                source: steward_proxmox_client::TaskSource::Active,
                ..Default::default()
            };
            report.requests += 1;
            next.busy = match self.api.list_tasks(&filter).await {
                Ok(tasks) => tasks
                    .iter()
                    .filter(|t| t.running)
                    .filter_map(|t| t.upid.id.parse::<u64>().ok())
                    .filter_map(|v| Vmid::new(v).ok())
                    .collect(),
                // When the node cannot say, every locked guest counts as busy: waiting is the
                // safe side.
                Err(_) => next
                    .guests
                    .iter()
                    .filter(|(_, o)| o.entry.lock.is_some())
                    .map(|(v, _)| *v)
                    .collect(),
            };
        }
        // Whether a task runs behind a guest's lock is part of what its plan reads.
        for (v, o) in next.guests.iter_mut() {
            if next.busy.contains(v) != self.snapshot.busy.contains(v) {
                o.version = next_version();
            }
        }
        for (v, m) in mtimes {
            self.mtimes.insert(v, m);
        }
        self.snapshot = Arc::new(next);
        Ok(report)
    }

    /// The paced sweep: managed guests whose config was last read a sweep period ago or more,
    /// at most enough per pass to cover every guest within the period (round robin).
    fn sweep(
        &mut self,
        managed: &BTreeSet<Vmid>,
        listed: &BTreeSet<Vmid>,
        interval: Duration,
    ) -> BTreeSet<Vmid> {
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
        let sweep: Vec<Vmid> = due
            .iter()
            .cycle()
            .skip(start)
            .take(budget.min(due.len()))
            .copied()
            .collect();
        if let Some(last) = sweep.last() {
            self.sweep_after = Some(*last);
        }
        sweep.into_iter().collect()
    }
}

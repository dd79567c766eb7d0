//! The durability barrier: the one place that makes journal writes survive power loss.
//!
//! sled's `Db::flush()` writes its buffers out with `sync_file_range`, which neither flushes the
//! device's write cache nor makes metadata durable (measured: 200 insert+flush pairs made 200
//! `sync_file_range` calls and 2 `fsync`s; see docs/reference/sled.md). So after `flush()` we
//! call `fdatasync` on sled's data file ourselves (`File::sync_data` on a read-only handle is
//! fine on Linux). A write counts as durable only once a barrier that *started after it* has
//! finished.
//!
//! Group commit: concurrent writers share barriers. A writer announces itself before it writes
//! ([`Barrier::begin`]) and takes a ticket after; one writer at a time leads a flush covering
//! every ticket issued before it started, and the others wait for a flush that covers theirs.
//! A leader first waits (briefly, bounded) for writers already under way, so that one flush
//! covers them too instead of each paying its own. It must never report a ticket durable on the
//! strength of a flush that started before the ticket was taken.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest a leader waits for writers under way before it flushes anyway.
const GATHER: Duration = Duration::from_micros(1500);

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out (writes that want durability).
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// Flushes led so far (for measuring how well writes group).
    flushes: u64,
    /// A leader is flushing now.
    leading: bool,
    /// Writers between `begin` and `sync`.
    in_progress: u64,
    /// The last flush failed: its error, for every ticket it covered.
    failed_upto: u64,
    last_error: Option<String>,
}

/// Told of every flush + fdatasync as it ends: how long it took and whether it worked. For
/// metrics; it runs on the flushing thread, so it must be quick.
#[derive(Clone)]
pub struct BarrierHook(pub Arc<dyn Fn(Duration, bool) + Send + Sync>);

impl std::fmt::Debug for BarrierHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BarrierHook")
    }
}

/// The fault seam a barrier consults (feature `test-hooks`); shared by every store the journal
/// opens, so that a fault a test injected outlives a reopen. Without the feature it is nothing.
#[cfg(feature = "test-hooks")]
pub type Hooks = Arc<crate::hooks::TestHooks>;
/// The fault seam a barrier consults: nothing without the `test-hooks` feature.
#[cfg(not(feature = "test-hooks"))]
#[derive(Clone, Debug, Default)]
pub struct Hooks(());

/// Shared flush + fdatasync for one sled database.
#[derive(Debug)]
pub struct Barrier {
    db: sled::Db,
    data_file: File,
    state: Mutex<State>,
    cv: Condvar,
    hook: OnceLock<BarrierHook>,
    #[cfg(feature = "test-hooks")]
    hooks: Hooks,
}

impl Barrier {
    /// A barrier for `db`, whose directory is `dir` (sled's data file is `dir/db`).
    pub fn new(db: sled::Db, dir: &Path, hooks: Hooks) -> std::io::Result<Barrier> {
        #[cfg(not(feature = "test-hooks"))]
        let Hooks(()) = hooks;
        let data_file = File::open(dir.join("db"))?;
        Ok(Barrier {
            db,
            data_file,
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            hook: OnceLock::new(),
            #[cfg(feature = "test-hooks")]
            hooks,
        })
    }

    /// Announces a write about to happen; pass the token to [`Barrier::sync`] (dropping it
    /// unused, on an error path, withdraws the announcement).
    pub fn begin(&self) -> WriteToken<'_> {
        if let Ok(mut s) = self.state.lock() {
            s.in_progress += 1;
        }
        WriteToken {
            barrier: self,
            live: true,
        }
    }

    fn withdraw(&self, s: &mut State) {
        s.in_progress = s.in_progress.saturating_sub(1);
        self.cv.notify_all();
    }

    /// Returns once everything written before this call is on stable storage.
    pub fn sync(&self, mut token: WriteToken<'_>) -> Result<(), String> {
        token.live = false;
        let mut s = self
            .state
            .lock()
            .map_err(|_| "barrier lock poisoned".to_string())?;
        self.withdraw(&mut s);
        s.issued += 1;
        let ticket = s.issued;
        loop {
            if s.durable >= ticket {
                return Ok(());
            }
            if s.failed_upto >= ticket {
                return Err(s
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "flush failed".into()));
            }
            if !s.leading {
                s.leading = true;
                let deadline = Instant::now() + GATHER;
                while s.in_progress > 0 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s = self
                        .cv
                        .wait_timeout(s, left)
                        .map_err(|_| "barrier lock poisoned".to_string())?
                        .0;
                }
                let covers = s.issued;
                drop(s);
                let started = Instant::now();
                let result = self.flush_and_sync();
                if let Some(h) = self.hook.get() {
                    (h.0)(started.elapsed(), result.is_ok());
                }
                s = self
                    .state
                    .lock()
                    .map_err(|_| "barrier lock poisoned".to_string())?;
                s.leading = false;
                s.flushes += 1;
                match &result {
                    Ok(()) => s.durable = s.durable.max(covers),
                    Err(e) => {
                        s.failed_upto = s.failed_upto.max(covers);
                        s.last_error = Some(e.clone());
                    }
                }
                self.cv.notify_all();
                return result;
            }
            s = self
                .cv
                .wait(s)
                .map_err(|_| "barrier lock poisoned".to_string())?;
        }
    }

    /// Reports every flush to `hook` (the first hook set stays).
    pub fn set_hook(&self, hook: BarrierHook) {
        let _ = self.hook.set(hook);
    }

    /// (durable writes, flushes) so far: their ratio is the mean group size.
    pub fn counts(&self) -> (u64, u64) {
        self.state
            .lock()
            .map(|s| (s.durable, s.flushes))
            .unwrap_or((0, 0))
    }

    /// The fault seam (feature `test-hooks` only; never in a shipped build).
    #[cfg(feature = "test-hooks")]
    pub fn hooks(&self) -> &crate::hooks::TestHooks {
        &self.hooks
    }

    fn flush_and_sync(&self) -> Result<(), String> {
        #[cfg(feature = "test-hooks")]
        self.hooks.before_barrier()?;
        self.db.flush().map_err(|e| format!("sled flush: {e}"))?;
        self.data_file
            .sync_data()
            .map_err(|e| format!("fdatasync of the journal data file: {e}"))
    }
}

/// A write announced to the barrier (see [`Barrier::begin`]).
#[derive(Debug)]
pub struct WriteToken<'a> {
    barrier: &'a Barrier,
    live: bool,
}

impl Drop for WriteToken<'_> {
    fn drop(&mut self) {
        if self.live {
            if let Ok(mut s) = self.barrier.state.lock() {
                self.barrier.withdraw(&mut s);
            }
        }
    }
}

//! Task polling paced by what each task type took before. A guest task (`qmstart`,
//! `qmcreate`, `vzdestroy`) on one node takes about as long each time, so a wait polls first
//! about when the type's last tasks ended, then a little later in growing steps; most tasks
//! end within one or two polls instead of ten at a fixed 25 ms. A wait for a type not seen yet
//! polls after 250 ms, then at steps from 50 ms growing by half.
//! It must never poll less often than once a second (a type learned slow is still first polled
//! within a second), nor give up before the caller's deadline without a last poll.

use crate::api::{GuestRead, TaskStatus};
use crate::error::ApiError;
use crate::upid::Upid;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Polls `upid` through `read` until it stops or `deadline` passes (`Timeout`), paced by
/// `pacing`; a task that stops with anything but `OK` or `WARNINGS: n` is `TaskFailed`.
pub(crate) async fn wait<R: GuestRead + ?Sized>(
    read: &R,
    pacing: &TaskPacing,
    upid: &Upid,
    deadline: Duration,
) -> Result<TaskStatus, ApiError> {
    let start = tokio::time::Instant::now();
    let mut wait = pacing.wait(&upid.kind);
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(ApiError::Timeout(format!(
                "task {upid} still running after {deadline:?}"
            )));
        }
        // The last sleep is cut to the deadline, and a last poll follows it.
        tokio::time::sleep(wait.next().min(left)).await;
        let s = read.task_status_once(upid).await?;
        if s.running {
            continue;
        }
        pacing.ended(&wait);
        return if s.succeeded() {
            Ok(s)
        } else {
            Err(ApiError::TaskFailed {
                upid: upid.to_string(),
                exitstatus: s.exitstatus.unwrap_or_default(),
            })
        };
    }
}

/// Shortest step between two polls of one task.
const MIN_STEP: Duration = Duration::from_millis(10);
/// The first poll of a task of a type not seen yet: a Proxmox guest task forks a worker and
/// rarely ends sooner; one that does waits this once.
const FIRST_UNKNOWN: Duration = Duration::from_millis(250);
/// Longest step between two polls of one task.
const MAX_STEP: Duration = Duration::from_secs(1);

/// What each task type took, learned from the waits so far (shared by one client's waits).
#[derive(Debug, Default)]
pub(crate) struct TaskPacing {
    expected: Mutex<BTreeMap<String, Duration>>,
}

/// The delays of one wait: `next` before each poll, `ended` once the task stopped.
#[derive(Debug)]
pub(crate) struct Wait {
    kind: String,
    expected: Option<Duration>,
    polls: u32,
    elapsed: Duration,
    step: Duration,
}

impl TaskPacing {
    /// The delays for a wait on a task of type `kind` (a UPID's worker type).
    pub(crate) fn wait(&self, kind: &str) -> Wait {
        let expected = self
            .expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(kind)
            .copied();
        let step = expected.map_or(Duration::from_millis(50), |e| {
            (e / 16).clamp(MIN_STEP, MAX_STEP)
        });
        Wait {
            kind: kind.to_string(),
            expected,
            polls: 0,
            elapsed: Duration::ZERO,
            step,
        }
    }

    /// Learns from a wait whose last poll found the task stopped. Ended at the first poll:
    /// perhaps the expectation was late, so try a thirty-second earlier next time. Later: the
    /// task ended before the last poll (at most one small step before it); expect that poll.
    pub(crate) fn ended(&self, w: &Wait) {
        let learned = match (w.expected, w.polls) {
            (Some(e), 1) => e - e / 32,
            _ => w.elapsed,
        };
        self.expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(w.kind.clone(), learned.min(MAX_STEP * 30));
    }
}

impl Wait {
    /// How long to wait before the next poll.
    pub(crate) fn next(&mut self) -> Duration {
        let d = if self.polls == 0 {
            self.expected.unwrap_or(FIRST_UNKNOWN).min(MAX_STEP)
        } else {
            let d = self.step;
            self.step = self.step.mul_f64(1.5).min(MAX_STEP);
            d
        };
        self.polls += 1;
        self.elapsed += d;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls a wait for a task that takes `took`, as the client's loop does.
    fn polls_for(p: &TaskPacing, took: Duration) -> u32 {
        let mut w = p.wait("qmstart");
        loop {
            w.next();
            if w.elapsed >= took {
                p.ended(&w);
                return w.polls;
            }
        }
    }

    #[test]
    fn a_task_type_that_takes_the_same_time_ends_within_two_polls_on_average() {
        let p = TaskPacing::default();
        let took = Duration::from_millis(200);
        let first = polls_for(&p, took);
        assert_eq!(first, 1, "unknown: first polled at 250 ms");
        let polls: Vec<u32> = (0..100).map(|_| polls_for(&p, took)).collect();
        let mean = f64::from(polls.iter().sum::<u32>()) / polls.len() as f64;
        assert!(mean <= 1.5, "mean {mean} over {polls:?}");
        // And without polling much later than the task ended.
        let mut w = p.wait("qmstart");
        let first = w.next();
        assert!(first <= took.mul_f64(1.07), "first poll at {first:?}");
    }

    #[test]
    fn a_slower_task_is_found_and_polls_never_space_beyond_a_second() {
        let p = TaskPacing::default();
        for _ in 0..5 {
            polls_for(&p, Duration::from_millis(100));
        }
        let mut w = p.wait("qmstart");
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = w.next();
        }
        assert!(last <= MAX_STEP);
        // A type learned slow (30 s) is still polled within a second.
        let slow = TaskPacing::default();
        polls_for(&slow, Duration::from_secs(30));
        let mut w = slow.wait("qmstart");
        assert!(w.next() <= MAX_STEP);
        assert!(w.next() <= MAX_STEP);
        // A task taking ten times longer than learned still ends, and the next one is paced
        // by it.
        assert!(polls_for(&p, Duration::from_secs(1)) > 1);
        assert!(polls_for(&p, Duration::from_secs(1)) <= 2);
    }
}

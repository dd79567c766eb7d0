//! A fault seam for tests, compiled only with the `test-hooks` feature: it slows or fails the
//! durability barrier so that callers can be shown to survive a slow or failing disk (the gate's
//! blocking boundary, the agent's storage-fault handling). No shipped crate enables the feature
//! (`cargo xtask layers` checks it), so release builds carry none of this.
//! A shipped build must never contain it.

use std::sync::Mutex;
use std::time::Duration;

/// What the next barriers should suffer.
#[derive(Debug, Default)]
pub struct TestHooks {
    state: Mutex<HookState>,
}

#[derive(Debug, Default)]
struct HookState {
    delay: Duration,
    fail_next: u32,
}

impl TestHooks {
    /// Every barrier from now on sleeps `delay` before flushing.
    pub fn set_barrier_delay(&self, delay: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.delay = delay;
        }
    }

    /// The next `n` barriers fail as a full disk would (the write is not acknowledged).
    pub fn fail_next_barriers(&self, n: u32) {
        if let Ok(mut s) = self.state.lock() {
            s.fail_next = n;
        }
    }

    pub(crate) fn before_barrier(&self) -> Result<(), String> {
        let (delay, fail) = match self.state.lock() {
            Ok(mut s) => {
                let fail = s.fail_next > 0;
                s.fail_next = s.fail_next.saturating_sub(1);
                (s.delay, fail)
            }
            Err(_) => (Duration::ZERO, false),
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if fail {
            return Err("injected barrier failure: No space left on device (os error 28)".into());
        }
        Ok(())
    }
}

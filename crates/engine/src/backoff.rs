//! Backoff as an iterator of durations: exponential from a base to a cap, with jitter (each
//! delay drawn from its upper half, so many guests failing together do not retry together), and
//! a reset when the guest makes progress. One type for every retry in the engine. It must never
//! yield a delay above its cap.

use std::time::Duration;

/// Exponential backoff with jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// From `base`, doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// Back to the first delay (the guest made progress).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

fn jitter_fraction() -> f64 {
    let mut b = [0u8; 8];
    // Jitter is not security-sensitive; without randomness it degrades to no jitter.
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        let top = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        // Uniform in [top/2, top].
        Some(top.mul_f64(0.5 + 0.5 * jitter_fraction()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d: Vec<Duration> = b.by_ref().take(8).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(2)));
        assert!(d[7] >= Duration::from_secs(1), "{d:?}");
        b.reset();
        assert!(b.next().unwrap() <= Duration::from_millis(100));
    }
}

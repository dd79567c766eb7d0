//! Deterministic fault injection: the same seed gives the same faults in the same order. Rates
//! are per request (latency, 5xx, connection reset) and per task (fail, hang).
//! It must never inject a fault that was not asked for.

use std::sync::Mutex;

/// What to inject.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Added latency per request, milliseconds.
    pub latency_ms: u64,
    /// Share of requests answered `500 Internal Server Error (injected)`.
    pub error_rate: f64,
    /// Share of requests whose connection is reset without an answer.
    pub reset_rate: f64,
    /// Share of tasks that end with an error.
    pub task_fail_rate: f64,
    /// Share of tasks that never end.
    pub task_hang_rate: f64,
}

impl Faults {
    /// Parses `latency=MS,errors=RATE,resets=RATE,task-fail=RATE,task-hang=RATE` (any subset).
    pub fn parse(s: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or(format!("{part:?}: expected key=value"))?;
            let rate = || -> Result<f64, String> {
                let r: f64 = v
                    .parse()
                    .map_err(|_| format!("{k}: {v:?} is not a number"))?;
                if (0.0..=1.0).contains(&r) {
                    Ok(r)
                } else {
                    Err(format!("{k}: {r} is not within 0..1"))
                }
            };
            match k {
                "latency" => {
                    f.latency_ms = v
                        .parse()
                        .map_err(|_| format!("latency: {v:?} is not milliseconds"))?
                }
                "errors" => f.error_rate = rate()?,
                "resets" => f.reset_rate = rate()?,
                "task-fail" => f.task_fail_rate = rate()?,
                "task-hang" => f.task_hang_rate = rate()?,
                other => {
                    return Err(format!(
                        "unknown fault {other:?} (latency, errors, resets, task-fail, task-hang)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// A seeded generator (xorshift64*): determinism for tests, not randomness for secrets.
#[derive(Debug)]
pub struct Dice(Mutex<u64>);

impl Dice {
    /// Seeded.
    pub fn new(seed: u64) -> Dice {
        Dice(Mutex::new(seed | 1))
    }

    fn next(&self) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    pub fn roll(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let x = self.next() >> 11;
        (x as f64 / (1u64 << 53) as f64) < p
    }

    /// `N` pseudo-random bytes (MACs, UUIDs of simulated guests).
    pub fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

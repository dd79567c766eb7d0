//! Interleaved rate measurement: round-robin over the contenders, `rounds` times, each round
//! running one contender for about `round_secs`; the median rate per contender is kept. Must
//! never drop a round silently.

use std::time::{Duration, Instant};

/// How long and how often to measure.
pub struct Opts {
    /// Seconds per round.
    pub round_secs: f64,
    /// Rounds per contender.
    pub rounds: usize,
}

/// Median operations per second of each contender, in the order given.
pub fn rates(opts: &Opts, contenders: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    let budget = Duration::from_secs_f64(opts.round_secs);
    // Warm-up: one short pass each (caches, lazy statics, branch predictors).
    for c in contenders.iter_mut() {
        for _ in 0..10 {
            c();
        }
    }
    for _ in 0..opts.rounds.max(1) {
        for (i, c) in contenders.iter_mut().enumerate() {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < budget {
                for _ in 0..16 {
                    c();
                }
                n += 16;
            }
            samples[i].push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    samples.into_iter().map(median).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

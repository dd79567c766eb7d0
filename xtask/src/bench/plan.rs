//! `cargo xtask bench plan`: planning time for 100, 1 000 and 10 000 guests with 10 % drift,
//! per guest at each size so growth shows, against the baseline of cloning the same actual state
//! (a plain O(n) pass over the same data) measured in the same run. Target: linear, under 5 ms
//! for 10 000 guests.

use super::measure::{rates, Opts};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use steward_model::{DesiredState, GuestKind, GuestSpec, GuestState, MiB, Vmid};
use steward_planner::{plan, ActualGuest, ActualState};

const TARGET_10K_MS: f64 = 5.0;

fn world(n: u32) -> Result<(DesiredState, ActualState)> {
    let mut guests = Vec::new();
    let mut actual = ActualState::new();
    for i in 0..n {
        let vmid = Vmid::new(u64::from(100 + i))?;
        let mut s = GuestSpec::new(vmid, GuestKind::Qemu, GuestState::Running);
        s.name = Some(format!("guest-{i}"));
        s.memory = Some(MiB(2048));
        s.cores = Some(2);
        s.tags = Some(vec!["fleet".into(), format!("t{}", i % 7)]);
        s.description = Some(format!("guest {i}\nmanaged by steward"));
        s.onboot = Some(true);
        let drift = i % 10 == 0;
        let config: BTreeMap<String, String> = [
            ("name", format!("guest-{i}")),
            ("memory", if drift { "1024".into() } else { "2048".into() }),
            ("cores", "2".into()),
            ("tags", format!("t{};fleet", i % 7)),
            ("description", format!("guest {i}\nmanaged by steward\n")),
            ("onboot", "1".into()),
            ("scsi0", "local-lvm:vm-disk-0,size=32G".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        actual.insert(
            vmid,
            ActualGuest {
                vmid,
                kind: GuestKind::Qemu,
                status: "running".into(),
                digest: format!("{i:040x}"),
                config,
                pending: BTreeSet::new(),
            },
        );
        guests.push(s);
    }
    Ok((
        DesiredState {
            version: 1,
            generation: 1,
            guests,
        },
        actual,
    ))
}

pub fn run(opts: &Opts) -> Result<bool> {
    println!(
        "plan bench ({} rounds of {:.2} s, median; 10 % of guests drift)",
        opts.rounds, opts.round_secs
    );
    let mut per_guest_small = None;
    let mut met = true;
    for n in [100u32, 1_000, 10_000] {
        let (desired, actual) = world(n)?;
        let drifted = plan(&desired, &actual).actions.len();
        anyhow::ensure!(
            drifted == (n as usize).div_ceil(10),
            "expected 10 % drift, planned {drifted}"
        );
        let mut planning = || {
            black_box(plan(black_box(&desired), black_box(&actual)));
        };
        let mut cloning = || {
            black_box(black_box(&actual).clone());
        };
        let r = rates(opts, &mut [&mut planning, &mut cloning]);
        let plan_ms = 1000.0 / r[0];
        let clone_ms = 1000.0 / r[1];
        let per_guest_us = plan_ms * 1000.0 / f64::from(n);
        let growth = match per_guest_small {
            None => {
                per_guest_small = Some(per_guest_us);
                1.0
            }
            Some(base) => per_guest_us / base,
        };
        println!(
            "  {n:>6} guests: plan {plan_ms:>8.3} ms ({per_guest_us:.2} µs/guest, {growth:.2}x the 100-guest rate)   clone baseline {clone_ms:>8.3} ms   plan/clone {:.2}x",
            plan_ms / clone_ms
        );
        if n == 10_000 && plan_ms > TARGET_10K_MS {
            met = false;
        }
    }
    println!(
        "  target: 10 000 guests under {TARGET_10K_MS} ms: {}",
        if met { "met" } else { "MISSED" }
    );
    Ok(met)
}

//! `cargo xtask bench pve`: requests per second the client sustains against the simulator on
//! loopback with keep-alive, against the same requests over a fresh TLS connection each (same
//! run, interleaved rounds); and the number of HTTP requests one full read of a 500-guest node
//! costs (lists plus every guest's config).

use anyhow::Result;
use std::time::{Duration, Instant};
use steward_model::Vmid;
use steward_proxmox_client::{tls, ApiToken, Endpoint, GuestRead, PveClient, Trust};
use steward_pve_sim::{Faults, Privileges, Sim, SimConfig, SimToken};

const TOKEN: &str = "root@pam!bench=5f1e3c2a-0000-4000-8000-0000000be7c4";

fn client(sim: &Sim, keep_alive: bool) -> Result<PveClient> {
    let endpoint = Endpoint {
        addr: sim.addr.to_string(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(
            tls::parse_fingerprint(&sim.fingerprint).map_err(anyhow::Error::msg)?,
        ),
        timeout: Duration::from_secs(10),
        keep_alive,
    };
    PveClient::new(
        endpoint,
        ApiToken::parse(TOKEN).map_err(anyhow::Error::msg)?,
        "pve-a",
    )
    .map_err(anyhow::Error::msg)
}

async fn rate(c: &PveClient, secs: f64) -> Result<f64> {
    let vmid = Vmid::new(100)?;
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed().as_secs_f64() < secs {
        c.config(steward_model::GuestKind::Qemu, vmid).await?;
        n += 1;
    }
    Ok(f64::from(n) / t.elapsed().as_secs_f64())
}

pub fn run(round_secs: f64, rounds: usize) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sim = Sim::start(SimConfig {
            listen: "127.0.0.1:0".parse()?,
            node: "pve-a".into(),
            guests: 500,
            tokens: vec![(
                SimToken::parse(TOKEN).map_err(anyhow::Error::msg)?,
                Privileges::all(),
            )],
            task_time: Duration::from_millis(100),
            faults: Faults::default(),
            seed: 1,
            ..SimConfig::default()
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let (keep, fresh) = (client(&sim, true)?, client(&sim, false)?);
        let (mut k, mut f, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            let a = rate(&keep, round_secs).await?;
            let b = rate(&fresh, round_secs).await?;
            k.push(a);
            f.push(b);
            ratios.push(a / b);
        }
        let med = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let reader = client(&sim, true)?;
        let before = reader.requests_sent();
        let guests = reader.list_guests().await?;
        for g in &guests {
            reader.config(g.kind, g.vmid).await?;
        }
        let full = reader.requests_sent() - before;
        println!(
            "pve bench ({} rounds of {round_secs:.2} s, medians; GET …/config on loopback TLS)",
            rounds.max(1)
        );
        println!("  keep-alive                     {:>8.0} req/s", med(k));
        println!("  fresh connection per request   {:>8.0} req/s", med(f));
        println!("  keep-alive / fresh             {:>8.2}x", med(ratios));
        println!(
            "  one full read of a {}-guest node: {full} HTTP requests (2 lists + {} configs)",
            guests.len(),
            guests.len()
        );
        sim.shutdown();
        Ok(true)
    })
}

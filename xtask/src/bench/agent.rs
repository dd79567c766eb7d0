//! `cargo xtask bench agent`: the release agent and simulator as processes, tried as an
//! administrator would: N guests that need create + start, tasks of L = 200 ms, K = 8 actions
//! at once, the file provider. For each N the run reports, from the agent's own `/metrics` and
//! `/proc`:
//!
//! - converge wall time against the ideal, tasks per guest × ⌈N/K⌉ × L (target ≤ 1.15);
//! - API requests per guest to converge, by endpoint class (target ≤ 8);
//! - agent CPU time (user + system) and resident memory after converging (target ≤ 30 MiB);
//! - idle: requests per pass for the lists (target 2) and the paced sweep's requests per second
//!   at the default sweep period (target ≤ 1);
//! - a change that lands in `[pending]` (an API PUT on a running VM): time until the agent
//!   healed it, with the config-directory hint on (target: within one pass).
//!
//! The ideal is the baseline measured in the same run: it is what K slots kept full would
//! take, so the ratio says how much of the time the agent itself added.

use crate::procs::{agent_cli, agent_config, build, control, scrape, start_agent, SimProc, ADMIN};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const K: usize = 8;
const TASK_MS: u64 = 200;
/// Seconds between passes when nothing else wakes the loop (short, so idle passes come fast).
const INTERVAL_SECS: u64 = 5;

fn desired(n: usize, memory: u32) -> String {
    let mut doc = String::from("version = 1\ngeneration = 1\n");
    for i in 0..n {
        doc.push_str(&format!(
            "\n[[guests]]\nvmid = {}\nkind = \"qemu\"\nstate = \"running\"\nmemory = {memory}\n[guests.create]\nscsi0 = \"local-lvm:1\"\nnet0 = \"virtio,bridge=vmbr0\"\n",
            1000 + i
        ));
    }
    doc
}

/// Resident memory by kind (kB): anonymous (heap, stacks) and file-backed (the binary's pages).
fn rss_parts(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

pub(super) fn proc_stat(pid: u32) -> (f64, u64) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // After the command name in parentheses: state is field 3, utime 14, stime 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            // Linux reports in USER_HZ, 100 on every architecture Proxmox runs on.
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    (cpu, rss)
}

/// Requests by endpoint class, and passes, from the metrics text.
pub(super) fn counts(text: &str) -> (BTreeMap<String, f64>, f64) {
    let mut by = BTreeMap::new();
    let mut passes = 0.0;
    for l in text.lines() {
        let Some((name, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        if let Some(labels) = name.strip_prefix("steward_api_requests_total{") {
            if let Some(class) = labels
                .split(',')
                .find_map(|p| p.strip_prefix("endpoint=\""))
                .and_then(|c| c.split('"').next())
            {
                *by.entry(class.to_string()).or_insert(0.0) += v;
            }
        } else if name == "steward_passes_total" {
            passes = v;
        }
    }
    (by, passes)
}

/// Idle cost from the agent's metrics at `url`: after one pass (it re-reads the guests whose
/// last action just ended), two passes with nothing to do; their requests by endpoint class,
/// the passes counted and the seconds they took.
pub(super) fn idle(url: &str) -> Result<(BTreeMap<String, f64>, f64, f64)> {
    let (_, p) = counts(&scrape(url)?);
    let t = Instant::now();
    let (idle_from, passes0) = loop {
        let (r, q) = counts(&scrape(url)?);
        if q >= p + 1.0 {
            break (r, q);
        }
        ensure!(
            t.elapsed() < Duration::from_secs(4 * INTERVAL_SECS),
            "no idle pass"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = Instant::now();
    let passes1 = loop {
        let (_, p) = counts(&scrape(url)?);
        if p >= passes0 + 2.0 {
            break p;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(4 * INTERVAL_SECS),
            "no idle passes"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let secs = t.elapsed().as_secs_f64();
    let (idle_req, _) = counts(&scrape(url)?);
    Ok((minus(&idle_req, &idle_from), passes1 - passes0, secs))
}

pub(super) fn sum(m: &BTreeMap<String, f64>) -> f64 {
    m.values().sum()
}

fn minus(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    a.iter()
        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
        .collect()
}

struct Figures {
    n: usize,
    ratio: f64,
    wall: f64,
    ideal: f64,
    per_guest: f64,
    by_class: BTreeMap<String, f64>,
    cpu: f64,
    rss_mib: f64,
    restarted_mib: f64,
    anon_mib: f64,
    file_mib: f64,
    idle_lists_per_pass: f64,
    sweep_per_sec: f64,
    heal_secs: f64,
}

fn running(control_addr: &str, n: usize) -> Result<bool> {
    let g = control(control_addr, "GET", "/guests", "")?;
    let up = g
        .as_object()
        .map(|m| m.values().filter(|v| v["status"] == "running").count())
        .unwrap_or(0);
    Ok(up >= n)
}

fn one(n: usize) -> Result<Figures> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let conf = d.join("pve-conf");
    let sim = SimProc::start_with(
        d,
        0,
        TASK_MS,
        &["--conf-dir", conf.to_str().context("temp path")?],
    )?;
    std::fs::write(d.join("allowed_signers"), "")?;
    std::fs::write(d.join("desired.toml"), desired(n, 512))?;
    agent_config(
        d,
        &sim,
        &format!("file = \"{}/desired.toml\"\npoll_secs = 1", d.display()),
        &format!(
            "concurrency = {K}\ninterval_secs = {INTERVAL_SECS}\nconf_dir = \"{}\"",
            conf.display()
        ),
        10,
        "127.0.0.1:0",
    )?;
    let t0 = Instant::now();
    let agent = start_agent(d, "agent.log")?;
    let pid = agent.0.id();
    let ideal = 2.0 * (n.div_ceil(K) as f64) * TASK_MS as f64 / 1000.0;
    let step = Duration::from_secs_f64((ideal / 200.0).clamp(0.01, 0.25));
    while !running(&sim.control, n)? {
        ensure!(
            t0.elapsed() < Duration::from_secs_f64(ideal * 5.0 + 30.0),
            "{n} guests not running after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(step);
    }
    let wall = t0.elapsed().as_secs_f64();
    let status = agent_cli(d, &["status"]);
    let url = status
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("metrics URL in status")?
        .to_string();
    // The agent still records the last starts' ends: wait until it says converged.
    let t = Instant::now();
    while !agent_cli(d, &["status"]).contains(&format!("converged {n}")) {
        ensure!(t.elapsed() < Duration::from_secs(30), "agent not converged");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (converge_req, _) = counts(&scrape(&url)?);
    let (cpu, rss) = proc_stat(pid);
    let (anon, file) = rss_parts(pid);
    let (idle, idle_passes, idle_secs) = idle(&url)?;
    let idle_lists_per_pass = idle.get("list").copied().unwrap_or(0.0) / idle_passes;
    // The sweep's rate at the default period, from its budget per pass: what the idle window
    // read beyond the lists, per second of it.
    let sweep_per_sec = idle.get("pending").copied().unwrap_or(0.0) / idle_secs;
    // A change that lands in [pending]: memory on a running VM, through the API as `qm set`.
    let vmid = 1000 + n as u32 / 2;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let heal_started = Instant::now();
    rt.block_on(async {
        let ep = steward_proxmox_client::Endpoint {
            addr: format!("127.0.0.1:{}", sim.port),
            server_name: "localhost".into(),
            trust: steward_proxmox_client::Trust::Fingerprint(
                steward_proxmox_client::tls::parse_fingerprint(&sim.fingerprint)
                    .map_err(anyhow::Error::msg)?,
            ),
            timeout: Duration::from_secs(10),
            keep_alive: false,
        };
        let w = steward_proxmox_client::PveWriter::new(
            ep,
            steward_proxmox_client::ApiToken::parse(ADMIN).map_err(anyhow::Error::msg)?,
            "pve-a",
        )
        .map_err(anyhow::Error::msg)?;
        w.raw(
            "PUT",
            &format!("/nodes/pve-a/qemu/{vmid}/config"),
            &[("memory".into(), "1024".into())],
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(())
    })?;
    let pending = |sim: &SimProc| -> Result<bool> {
        let g = control(&sim.control, "GET", "/guests", "")?;
        Ok(g[vmid.to_string()]["pending"]
            .as_object()
            .is_some_and(|p| !p.is_empty()))
    };
    ensure!(pending(&sim)?, "the PUT did not land in [pending]");
    while pending(&sim)? {
        ensure!(
            heal_started.elapsed() < Duration::from_secs(4 * INTERVAL_SECS),
            "the pending change was not healed within {}s",
            4 * INTERVAL_SECS
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let heal_secs = heal_started.elapsed().as_secs_f64();
    drop(agent);
    // The same node and journal after a restart: what a converged agent holds when its
    // journal's pages were not all just written (the difference is what converging left).
    let again = start_agent(d, "agent-restarted.log")?;
    let t = Instant::now();
    while !agent_cli(d, &["status"]).contains(&format!("converged {n}")) {
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "restarted agent not converged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, restarted_rss) = proc_stat(again.0.id());
    drop(again);
    Ok(Figures {
        n,
        ratio: wall / ideal,
        wall,
        ideal,
        per_guest: sum(&converge_req) / n as f64,
        by_class: converge_req,
        cpu,
        rss_mib: rss as f64 / 1024.0,
        restarted_mib: restarted_rss as f64 / 1024.0,
        anon_mib: anon as f64 / 1024.0,
        file_mib: file as f64 / 1024.0,
        idle_lists_per_pass,
        sweep_per_sec,
        heal_secs,
    })
}

/// Runs the benchmark at each of `sizes`; false when a target is missed.
pub fn run(sizes: &[usize]) -> Result<bool> {
    ensure!(
        build(&["steward-pve-sim", "steward-agent"])?,
        "build failed"
    );
    let mut ok = true;
    println!("agent process against the simulator process: create + start, L = {TASK_MS} ms, K = {K}, interval {INTERVAL_SECS} s, default sweep");
    println!(
        "{:>6} {:>8} {:>8} {:>6} {:>9} {:>7} {:>8} {:>10} {:>9} {:>7}  requests by class",
        "N",
        "wall s",
        "ideal s",
        "ratio",
        "req/guest",
        "cpu s",
        "rss MiB",
        "idle list",
        "sweep/s",
        "heal s"
    );
    for &n in sizes {
        let f = one(n)?;
        println!(
            "       N = {}: resident {:.1} MiB = {:.1} anonymous (heap, stacks) + {:.1} file-backed (the binary's pages); {:.1} MiB once restarted and converged over the same journal",
            f.n, f.rss_mib, f.anon_mib, f.file_mib, f.restarted_mib
        );
        let classes: Vec<String> = f
            .by_class
            .iter()
            .filter(|(_, v)| **v > 0.0)
            .map(|(k, v)| format!("{k} {:.2}", v / f.n as f64))
            .collect();
        println!(
            "{:>6} {:>8.2} {:>8.2} {:>6.3} {:>9.2} {:>7.2} {:>8.1} {:>10.2} {:>9.2} {:>7.2}  {}",
            f.n,
            f.wall,
            f.ideal,
            f.ratio,
            f.per_guest,
            f.cpu,
            f.rss_mib,
            f.idle_lists_per_pass,
            f.sweep_per_sec,
            f.heal_secs,
            classes.join(", ")
        );
        let misses = [
            (f.ratio > 1.15, "converge > 1.15× ideal"),
            (f.per_guest > 8.0, "more than 8 requests per guest"),
            (f.rss_mib > 30.0, "RSS above 30 MiB"),
            (
                f.idle_lists_per_pass > 2.0,
                "more than 2 list requests per idle pass",
            ),
            (f.sweep_per_sec > 1.0, "sweep above 1 request/s"),
            (
                f.heal_secs > INTERVAL_SECS as f64 + 1.0,
                "pending change not healed within one pass",
            ),
        ];
        for (missed, what) in misses {
            if missed {
                println!("  missed at N = {}: {what}", f.n);
                ok = false;
            }
        }
    }
    Ok(ok)
}

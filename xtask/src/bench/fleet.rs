//! `cargo xtask bench fleet`: N simulated agents (the agent's own hub client, `HubProvider`, one
//! identity per node, one process) polling desired state and jobs every P seconds, against a
//! rendered fleet served by one nginx worker and against the `steward-hub-stub` binary, in the
//! same run. For each, in the steady state after every node's first poll: the share of 304s,
//! requests per second sustained against those asked for, the server's CPU per 1 000 polls
//! (from `/proc`), p99 poll latency, the client's CPU per poll; the nginx/stub CPU ratio; and
//! what one server core would carry at a 2 s and a 30 s poll. Every child is reaped.

use super::agent::proc_stat;
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steward_hub::{HubConfig, HubProvider, HubToken};
use steward_providers::{Provider, Update};

const TOKEN: &str = "bench-fleet-token-5f1e3c2a-0000-4000-8000-00000000f1ee";

fn node(i: usize) -> String {
    format!("node-{i:04}")
}

fn document(i: usize) -> String {
    let base = 100 + i * 3;
    format!(
        r#"{{"version": 1, "generation": 1, "guests": [
  {{"vmid": {}, "kind": "qemu", "state": "running", "memory": 2048, "cores": 2}},
  {{"vmid": {}, "kind": "qemu", "state": "stopped", "memory": 1024}},
  {{"vmid": {}, "kind": "lxc", "state": "running", "memory": 512}}]}}"#,
        base,
        base + 1,
        base + 2
    )
}

/// What one server did in the measured window.
struct Figures {
    polls: u64,
    asked: f64,
    window: f64,
    server_cpu: f64,
    client_cpu: f64,
    p99_ms: f64,
    share_304: f64,
}

struct Server {
    url: String,
    fingerprint: String,
    pids: Box<dyn Fn() -> Vec<u32>>,
    /// (304s, all answers) so far.
    answered: Box<dyn Fn() -> (u64, u64)>,
}

fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|p| proc_stat(*p).0).sum()
}

fn self_cpu() -> f64 {
    proc_stat(std::process::id()).0
}

/// N clients polling `server` every `poll` for `warm + window`; figures from the window.
fn drive(server: &Server, nodes: usize, poll: Duration, window: Duration) -> Result<Figures> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let warm = poll * 2;
        let start = Instant::now();
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..nodes {
            let mut hub = HubProvider::new(HubConfig {
                url: server.url.clone(),
                node: node(i),
                token: HubToken::new(TOKEN).map_err(anyhow::Error::msg)?,
                trust: steward_proxmox_client::Trust::Fingerprint(
                    steward_proxmox_client::tls::parse_fingerprint(&server.fingerprint)
                        .map_err(anyhow::Error::msg)?,
                ),
                identity: None,
                timeout: Duration::from_secs(30),
            })
            .map_err(anyhow::Error::msg)?;
            let (measuring, polls, latencies) =
                (measuring.clone(), polls.clone(), latencies.clone());
            let end = warm + window;
            // Spread the nodes over the interval, as agents started at different times are.
            let offset = poll.mul_f64(i as f64 / nodes as f64);
            tasks.spawn(async move {
                tokio::time::sleep(offset).await;
                let mut tick = tokio::time::interval(poll);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while start.elapsed() < end {
                    tick.tick().await;
                    let t = Instant::now();
                    let u = hub.poll().await;
                    let j = hub.jobs().await;
                    let took = t.elapsed().as_secs_f64() * 1000.0;
                    if matches!(u, Update::Unavailable(_)) || j.is_err() {
                        continue;
                    }
                    if measuring.load(Ordering::Relaxed) {
                        polls.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut l) = latencies.lock() {
                            l.push(took);
                        }
                    }
                }
            });
        }
        tokio::time::sleep_until((start + warm).into()).await;
        let (ans0, cpu0, me0) = ((server.answered)(), cpu_of(&(server.pids)()), self_cpu());
        measuring.store(true, Ordering::Relaxed);
        let t = Instant::now();
        tokio::time::sleep(window).await;
        measuring.store(false, Ordering::Relaxed);
        let secs = t.elapsed().as_secs_f64();
        let (ans1, cpu1, me1) = ((server.answered)(), cpu_of(&(server.pids)()), self_cpu());
        while tasks.join_next().await.is_some() {}
        let polls = polls.load(Ordering::Relaxed);
        let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_by(|a, b| a.total_cmp(b));
        let p99 = l
            .get(((l.len() as f64) * 0.99) as usize)
            .or(l.last())
            .copied()
            .unwrap_or(0.0);
        let (n304, all) = (ans1.0 - ans0.0, (ans1.1 - ans0.1).max(1));
        Ok(Figures {
            polls,
            asked: nodes as f64 / poll.as_secs_f64(),
            window: secs,
            server_cpu: cpu1 - cpu0,
            client_cpu: me1 - me0,
            p99_ms: p99,
            share_304: n304 as f64 / all as f64,
        })
    })
}

fn report(name: &str, f: &Figures) -> f64 {
    let rate = f.polls as f64 / f.window;
    let per_1000 = f.server_cpu / f.polls.max(1) as f64 * 1000.0;
    println!(
        "{name:<10} polls/s {rate:>7.1} of {:>6.1} asked ({:>5.1} req/s)   304s {:>6.2} %   server CPU {:>6.3} s per 1 000 polls   p99 {:>6.1} ms   client CPU {:>6.3} ms per poll",
        f.asked,
        rate * 2.0,
        f.share_304 * 100.0,
        per_1000,
        f.p99_ms,
        f.client_cpu / f.polls.max(1) as f64 * 1000.0
    );
    per_1000
}

/// Runs the benchmark: `nodes` agents polling every `poll_secs`, measured for `window_secs`.
pub fn run(nodes: usize, poll_secs: f64, window_secs: f64) -> Result<bool> {
    if !crate::procs::build(&["steward-hub-stub"])? {
        bail!("building steward-hub-stub failed");
    }
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let poll = Duration::from_secs_f64(poll_secs);
    let window = Duration::from_secs_f64(window_secs);

    // The fleet, rendered.
    let fleet = d.join("fleet");
    std::fs::create_dir_all(fleet.join("nodes"))?;
    for i in 0..nodes {
        std::fs::write(fleet.join(format!("nodes/{}.json", node(i))), document(i))?;
    }
    let rendered = steward_hub::fleet::render(&fleet)
        .map_err(|e| anyhow::anyhow!("render: {}", e.join("; ")))?;
    steward_hub::fleet::write(&d.join("www"), &rendered).map_err(anyhow::Error::msg)?;
    println!(
        "{nodes} nodes polling every {poll_secs} s (desired + jobs), measured for {window_secs} s after every node's first poll; fresh TLS connection per request, as the agent makes them"
    );

    // nginx, one worker.
    let ndir = d.join("nginx");
    std::fs::create_dir_all(&ndir)?;
    let nginx = steward_testkit::nginx::Nginx::start(
        &ndir,
        &d.join("www"),
        &steward_testkit::nginx::NginxOptions {
            token: TOKEN.into(),
            client_ca: None,
            workers: 1,
            access_log: true,
        },
    )
    .map_err(anyhow::Error::msg)?;
    let log = ndir.join("access.log");
    let nginx_server = Server {
        url: format!("https://localhost:{}", nginx.port),
        fingerprint: steward_proxmox_client::tls::fingerprint_of(&nginx.cert_der),
        pids: {
            let pids = nginx.pids();
            Box::new(move || pids.clone())
        },
        answered: Box::new(move || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let all = text.lines().filter(|l| l.contains("\"GET /v1/")).count() as u64;
            let n304 = text
                .lines()
                .filter(|l| l.contains("\"GET /v1/") && l.contains("HTTP/1.1\" 304 "))
                .count() as u64;
            (n304, all)
        }),
    };
    let on_nginx = drive(&nginx_server, nodes, poll, window)?;
    drop(nginx);

    // The hub stub binary, loaded with the same documents.
    crate::procs::secret(&d.join("hub-token"), TOKEN)?;
    let stub = crate::procs::HubStubProc::start(&d.join("hub-token"))?;
    let (url, fp, control) = (
        stub.url.as_str(),
        stub.fingerprint.as_str(),
        stub.control.as_str(),
    );
    for i in 0..nodes {
        crate::procs::control(
            control,
            "PUT",
            &format!("/nodes/{}/desired", node(i)),
            &document(i),
        )?;
    }
    let loaded = crate::procs::control(control, "GET", "/counts", "")?;
    if loaded.is_null() {
        bail!("the hub stub's control listener did not answer");
    }
    let control = control.to_string();
    let pid = stub.child.0.id();
    let stub_server = Server {
        url: url.to_string(),
        fingerprint: fp.to_string(),
        pids: Box::new(move || vec![pid]),
        answered: Box::new(move || {
            let c = crate::procs::control(&control, "GET", "/counts", "").unwrap_or_default();
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            (
                n("desired_not_modified") + n("jobs_not_modified"),
                n("desired_full")
                    + n("desired_not_modified")
                    + n("jobs_full")
                    + n("jobs_not_modified"),
            )
        }),
    };
    let on_stub = drive(&stub_server, nodes, poll, window)?;
    drop(stub);

    let nginx_cpu = report("nginx", &on_nginx);
    let stub_cpu = report("hub-stub", &on_stub);
    println!(
        "server CPU per poll, nginx / hub-stub: {:.2}",
        nginx_cpu / stub_cpu.max(f64::MIN_POSITIVE)
    );
    let per_poll = nginx_cpu / 1000.0;
    if per_poll > 0.0 {
        println!(
            "one nginx worker on one core of this machine: {:.0} polls/s, so {:.0} nodes at a 2 s poll and {:.0} at a 30 s poll",
            1.0 / per_poll,
            2.0 / per_poll,
            30.0 / per_poll
        );
    }
    let goal = on_nginx.share_304 >= 0.99;
    println!(
        "304 share at steady state against nginx: {:.2} % (goal ≥ 99 %): {}",
        on_nginx.share_304 * 100.0,
        if goal { "met" } else { "MISSED" }
    );
    Ok(goal)
}

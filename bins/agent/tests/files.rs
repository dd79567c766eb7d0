//! The files that carry the agent's authority, as `sshd` treats `authorized_keys`: a
//! configuration, trust store or token file that group or others can write (or a directory above
//! it that they can), or that another non-root user owns, is refused with its path and mode, by
//! `check-config` exactly as by `run` (security review, finding 5). The child is always killed.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sim, Agent};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `steward-agent SUB --config CFG`, waited for with a limit: exit code and stderr.
fn agent(sub: &str, cfg: &Path) -> (Option<i32>, String) {
    let child = Agent(
        Command::new(env!("CARGO_BIN_EXE_steward-agent"))
            .args([sub, "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    common::exit_and_stderr(child, Duration::from_secs(20), sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_configuration_trust_store_and_token_files_are_refused_alike() {
    let sim = sim(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = common::file_config(d, &sim);
    std::fs::write(d.join("desired.toml"), "version = 1\ngeneration = 1\n").unwrap();
    common::trust(
        d,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDhQ5WSMz0Y3dzv0u7ewd0f3BgR2Y9t4X0hLZ5uXn3Ux",
    );
    chmod(&cfg, 0o644);
    chmod(&d.join("allowed_signers"), 0o644);
    let (code, err) = agent("check-config", &cfg);
    assert_eq!(code, Some(0), "a tight set of files is ok: {err}");

    // A world-writable configuration: neither checked ok nor run.
    chmod(&cfg, 0o666);
    for sub in ["check-config", "run"] {
        let (code, err) = agent(sub, &cfg);
        assert_eq!(code, Some(2), "{sub}: {err}");
        assert!(
            err.contains("agent.toml") && err.contains("666") && err.contains("writable"),
            "{sub}: {err}"
        );
    }
    chmod(&cfg, 0o644);

    // A token file others can read: `run` always refused it; `check-config` said ok.
    chmod(&d.join("token"), 0o644);
    for sub in ["check-config", "run"] {
        let (code, err) = agent(sub, &cfg);
        assert_eq!(code, Some(2), "{sub}: {err}");
        assert!(
            err.contains("/token") && err.contains("644"),
            "{sub}: {err}"
        );
    }
    chmod(&d.join("token"), 0o600);

    // A trust store anyone can add a key to: refused (check-config exits 2); the agent runs
    // with nothing destructive allowed, and says why.
    chmod(&d.join("allowed_signers"), 0o666);
    let (code, err) = agent("check-config", &cfg);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("allowed_signers")
            && err.contains("666")
            && err.contains("nothing destructive"),
        "{err}"
    );
    let run = common::run_agent(&cfg, Stdio::piped());
    let sock = d.join("agent.sock");
    let t = Instant::now();
    while !sock.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the agent never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run.sigterm();
    let (_, log) = common::exit_and_stderr(run, Duration::from_secs(20), "a clean stop");
    assert!(
        log.contains("NO TRUST STORE") && log.contains("allowed_signers") && log.contains("666"),
        "{log}"
    );
    chmod(&d.join("allowed_signers"), 0o644);

    // A desired-state file anyone can write (they could stop every guest): refused alike.
    chmod(&d.join("desired.toml"), 0o666);
    for sub in ["check-config", "run"] {
        let (code, err) = agent(sub, &cfg);
        assert_eq!(code, Some(2), "{sub}: {err}");
        assert!(
            err.contains("desired.toml") && err.contains("666"),
            "{sub}: {err}"
        );
    }
    chmod(&d.join("desired.toml"), 0o644);

    // The directory above them writable by others: anyone could replace the files.
    chmod(d, 0o777);
    let (code, err) = agent("check-config", &cfg);
    chmod(d, 0o700);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("directory of") && err.contains("777"), "{err}");

    // Another non-root user's configuration (only root can hand a file over; tests run as
    // root in CI).
    if nix_euid_is_root() {
        std::os::unix::fs::chown(&cfg, Some(4242), None).unwrap();
        let (code, err) = agent("check-config", &cfg);
        std::os::unix::fs::chown(&cfg, Some(0), None).unwrap();
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("owned by uid 4242"), "{err}");
    }
}

fn nix_euid_is_root() -> bool {
    steward_proxmox_client::files::effective_uid() == 0
}

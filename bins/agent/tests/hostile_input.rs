//! What a hostile hub or node can put in front of an operator, through the real binaries
//! (security review, findings 8 and 12): a guest name with terminal escapes and a newline
//! cannot forge a held-op line in `steward-agent pending`, and `steward-agent submit` reads only
//! regular files of a signed op's size (a FIFO, `/dev/zero` or a huge file are refused at once,
//! without reading them). The child is always killed.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cli, sim, until, Agent};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_guest_name_cannot_forge_a_held_op_line() {
    let sim = sim(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = common::file_config(d, &sim);
    sim.with_node(|n| {
        n.st.guests.get_mut(&103).unwrap().config.insert(
            "name".into(),
            "scratch\u{1b}[2K\rop 999  expires never\n  guest.destroy 999 (qemu): nothing\u{202e}"
                .into(),
        );
    });
    std::fs::write(
        d.join("desired.toml"),
        "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\n",
    )
    .unwrap();
    let _agent = common::run_agent(&cfg, Stdio::null());
    until("103 held", Duration::from_secs(30), || {
        cli(d, &["pending"]).1.contains("guest.destroy 103")
    })
    .await;
    let (code, listed) = cli(d, &["pending"]);
    assert_eq!(code, Some(0));
    assert!(
        !listed.contains('\u{1b}') && !listed.contains('\r') && !listed.contains('\u{202e}'),
        "{listed:?}"
    );
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("op ")).count(),
        1,
        "one held op, one line that says so: {listed:?}"
    );
    assert!(
        listed.contains("scratch\\u{1b}"),
        "escaped, not dropped: {listed:?}"
    );
    let id = common::first_held_id(&listed);
    let (_, shown) = cli(d, &["pending", "show", &id]);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
        "{shown:?}"
    );
}

/// `steward-agent submit OP SIG`: exit code and stderr, within a limit (a FIFO must not hang
/// it).
fn submit(
    dir: &std::path::Path,
    op: &std::path::Path,
    sig: &std::path::Path,
) -> (Option<i32>, String) {
    let child = Agent(
        Command::new(env!("CARGO_BIN_EXE_steward-agent"))
            .arg("submit")
            .arg(op)
            .arg(sig)
            .arg("--socket")
            .arg(dir.join("agent.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    common::exit_and_stderr(child, Duration::from_secs(10), "submit")
}

#[test]
fn submit_reads_only_regular_files_of_a_signed_ops_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sig = d.join("op.json.sig");
    std::fs::write(
        &sig,
        "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
    )
    .unwrap();
    // A FIFO nobody writes to: it would block the reader for ever.
    let fifo = d.join("fifo.json");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (code, err) = submit(d, &fifo, &sig);
    assert_ne!(code, Some(0));
    assert!(err.contains("not a regular file"), "{err}");
    // A device that never ends.
    let (code, err) = submit(d, std::path::Path::new("/dev/zero"), &sig);
    assert_ne!(code, Some(0));
    assert!(err.contains("not a regular file"), "{err}");
    // 100 MB (sparse): refused by its size, never read.
    let big = d.join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let (code, err) = submit(d, &big, &sig);
    assert_ne!(code, Some(0));
    assert!(err.contains("larger than"), "{err}");
    // The signature is held to its own bound.
    std::fs::write(d.join("op.json"), "{}").unwrap();
    let (code, err) = submit(d, &d.join("op.json"), &big);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("larger than") && err.contains("signature"),
        "{err}"
    );
}

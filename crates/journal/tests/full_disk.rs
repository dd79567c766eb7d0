//! The journal on a real filesystem that fills up and comes back (security review, finding 4):
//! a small tmpfs, mounted for the test and always unmounted. While it is full every write is
//! refused with the storage error; once space is back the same `Journal` writes again by itself, and everything it acknowledged
//! before is still there with an intact audit chain. Where the test may not mount (no
//! CAP_SYS_ADMIN, or `STEWARD_TEST_NO_MOUNT` set), a file-size limit (`RLIMIT_FSIZE`) stands in
//! for the full disk, in a child process of this test started with SIGXFSZ ignored.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use steward_journal::{Class, Journal, JournalError, NewOp, OpState};
use steward_model::{Action, GuestKind, Vmid};

/// A tmpfs of `size` at `dir`, unmounted on every way out.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn op(n: u32) -> NewOp {
    NewOp {
        action: Action::SetConfig {
            vmid: Vmid::new(u64::from(100 + n % 800)).unwrap(),
            kind: GuestKind::Qemu,
            change: steward_model::ConfigChange {
                set: [("description".to_string(), "x".repeat(2000))].into(),
                ..Default::default()
            },
        },
        class: Class::Benign,
        txn: None,
        scratch: false,
        identity: None,
    }
}

/// Fills the filesystem under `dir` with one file until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() && f.flush().is_ok() {}
    let _ = f.sync_all();
    path
}

/// Records until the journal refuses (bounded); returns the ids it acknowledged.
fn record_until_refused(j: &Journal, from: u32) -> (Vec<steward_journal::OpId>, JournalError) {
    let mut acked = Vec::new();
    for n in from..from + 20_000 {
        match j.record(op(n), OpState::Planned) {
            Ok(r) => acked.push(r.id),
            Err(e) => return (acked, e),
        }
    }
    panic!("the journal never refused a write on a full filesystem");
}

/// Waits (up to 15 s) until the journal records again.
fn until_it_writes(j: &Journal, n: u32) -> Duration {
    let t = Instant::now();
    loop {
        match j.record(op(n), OpState::Planned) {
            Ok(_) => return t.elapsed(),
            Err(e) => {
                assert!(
                    t.elapsed() < Duration::from_secs(15),
                    "still refused 15 s after the filesystem recovered: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

const TEST: &str = "a_full_filesystem_refuses_writes_and_the_journal_resumes_by_itself";
const CHILD: &str = "STEWARD_FSIZE_CHILD";

#[test]
fn a_full_filesystem_refuses_writes_and_the_journal_resumes_by_itself() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return file_size_limit_instead(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = if std::env::var_os("STEWARD_TEST_NO_MOUNT").is_some() {
        None
    } else {
        Tmpfs::mount(&mnt, "24m")
    };
    let Some(_fs) = mounted else {
        // This test again, in a child that ignores SIGXFSZ (a disposition exec keeps), so that
        // a write past the limit fails with EFBIG instead of killing the process.
        let status = Command::new("bash")
            .arg("-c")
            .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "the file-size-limit run failed");
        return;
    };
    let j = Journal::create(mnt.join("journal")).unwrap();
    let mut acked: Vec<_> = (0..20)
        .map(|n| j.record(op(n), OpState::Planned).unwrap().id)
        .collect();

    // Full: refused, and refused again while it stays full.
    let filler = fill(&mnt);
    let (more, e) = record_until_refused(&j, 100);
    acked.extend(more);
    assert!(matches!(e, JournalError::Storage(_)), "{e}");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(j.record(op(1), OpState::Planned).is_err(), "still full");

    // Space is back: the same journal writes again, and nothing acknowledged was lost.
    std::fs::remove_file(&filler).unwrap();
    let took = until_it_writes(&j, 2);
    eprintln!("writes again {took:?} after space came back");
    for id in &acked {
        assert!(j.get(*id).unwrap().is_some(), "{id} lost");
    }
    let chain = j.verify_audit_chain().unwrap();
    assert!(chain.problems.is_empty(), "{:?}", chain.problems);

    drop(j);
}

/// Where mounting is not allowed (in the child, SIGXFSZ ignored): the journal's data file may
/// grow only a little past its size, as a full disk would refuse (`EFBIG` instead of `ENOSPC`),
/// then the limit is lifted.
fn file_size_limit_instead(dir: &Path) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_FSIZE).unwrap();
    let j = Journal::create(dir.join("journal")).unwrap();
    let acked: Vec<_> = (0..20)
        .map(|n| j.record(op(n), OpState::Planned).unwrap().id)
        .collect();
    let size = std::fs::metadata(dir.join("journal/db")).unwrap().len();
    setrlimit(Resource::RLIMIT_FSIZE, size + 256 * 1024, hard).unwrap();
    let (_, e) = record_until_refused(&j, 100);
    assert!(matches!(e, JournalError::Storage(_)), "{e}");
    setrlimit(Resource::RLIMIT_FSIZE, hard, hard).unwrap();
    until_it_writes(&j, 2);
    for id in &acked {
        assert!(j.get(*id).unwrap().is_some(), "{id} lost");
    }
    assert!(j.verify_audit_chain().unwrap().problems.is_empty());
}

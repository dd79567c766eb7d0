//! `cargo xtask crash journal`: crash safety, proved by killing. A child process (this binary,
//! `crash-child`) performs a random stream of journal transitions and acknowledges each durable
//! one on stdout; the parent SIGKILLs it at a random moment, reopens the journal, and checks that
//! every acknowledged transition is there, no record is torn, the in-flight index matches the
//! records, the audit chain verifies and no consumed nonce is lost. The same journal carries
//! over from iteration to iteration, so each child also starts from a journal a crash left.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use steward_authz::{Nonce, Role};
use steward_journal::{Class, Journal, NewOp, OpId, OpState, Signer};
use steward_model::{Action, Failure, FailureKind, GuestKind, Vmid};

/// A tiny deterministic generator for choosing steps and kill times (not for secrets).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The parent: `iterations` kills; true when nothing was lost.
pub fn run(iterations: u32, seed: u64) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal");
    drop(Journal::create(&path)?);
    let exe = std::env::current_exe()?;
    let mut rng = Rng(seed | 1);
    let (mut acks_total, mut lost, mut torn, mut mismatches, mut audit_bad) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for i in 0..iterations {
        let child_seed = rng.next();
        let mut child = Command::new(&exe)
            .args(["crash-child", "--dir"])
            .arg(&path)
            .args(["--seed", &child_seed.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the crash child")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        // Kill somewhere between 20 ms and 300 ms in: after open, mid-stream.
        std::thread::sleep(Duration::from_millis(20 + rng.below(280)));
        child.kill().context("SIGKILL")?;
        child.wait()?;
        let lines = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        let acks: Vec<Ack> = lines.iter().filter_map(|l| Ack::parse(l)).collect();
        acks_total += acks.len() as u64;

        let j = Journal::open(&path).with_context(|| format!("iteration {i}: reopening"))?;
        let records = match j.all_ops() {
            Ok(r) => r,
            Err(e) => {
                torn += 1;
                eprintln!("iteration {i}: torn record: {e}");
                continue;
            }
        };
        for a in &acks {
            let ok = match a {
                Ack::Step { op, len, state } => records
                    .iter()
                    .find(|r| r.id == *op)
                    .and_then(|r| r.history.get(len - 1))
                    .is_some_and(|t| t.state.name() == state),
                Ack::Nonce { nonce } => {
                    j.nonce_consumed(&Nonce::parse(nonce).map_err(anyhow::Error::msg)?)?
                }
            };
            if !ok {
                lost += 1;
                eprintln!("iteration {i}: acknowledged but missing: {a:?}");
            }
        }
        let index: BTreeSet<OpId> = j.in_flight()?.iter().map(|r| r.id).collect();
        let scan: BTreeSet<OpId> = records
            .iter()
            .filter(|r| r.state().is_in_flight())
            .map(|r| r.id)
            .collect();
        if index != scan {
            mismatches += 1;
            eprintln!("iteration {i}: in-flight index {index:?} != records {scan:?}");
        }
        let report = j.verify_audit_chain()?;
        if !report.intact() {
            audit_bad += 1;
            eprintln!("iteration {i}: audit chain: {:?}", report.problems);
        }
    }
    println!(
        "{iterations} iterations, {lost} lost, {torn} torn, {mismatches} index mismatches, {audit_bad} broken audit chains ({acks_total} acknowledged transitions checked)"
    );
    Ok(lost == 0 && torn == 0 && mismatches == 0 && audit_bad == 0)
}

#[derive(Debug)]
enum Ack {
    Step { op: OpId, len: usize, state: String },
    Nonce { nonce: String },
}

impl Ack {
    fn parse(line: &str) -> Option<Ack> {
        let mut w = line.split_whitespace();
        match w.next()? {
            "ACK" => Some(Ack::Step {
                op: OpId(w.next()?.parse().ok()?),
                len: w.next()?.parse().ok()?,
                state: w.next()?.to_string(),
            }),
            "NONCE" => Some(Ack::Nonce {
                nonce: w.next()?.to_string(),
            }),
            _ => None,
        }
    }
}

/// The child: random durable steps until killed (or 10 s, so it can never run away).
pub fn child(dir: &Path, seed: u64) -> Result<()> {
    let j = Journal::open(dir)?;
    let mut rng = Rng(seed | 1);
    let out = std::io::stdout();
    let mut out = out.lock();
    let start = Instant::now();
    let mut live: Vec<OpId> = j
        .all_ops()?
        .into_iter()
        .filter(|r| !r.state().is_terminal())
        .map(|r| r.id)
        .collect();
    let vmid = Vmid::new(104)?;
    let signer = Signer {
        principal: "crash@steward.test".into(),
        key_fingerprint: "SHA256:crash".into(),
        role: Role::Operational,
    };
    while start.elapsed() < Duration::from_secs(10) {
        let choice = rng.below(10);
        if live.is_empty() || choice < 3 {
            let destructive = rng.below(3) == 0;
            let action = if destructive {
                Action::Destroy {
                    vmid,
                    kind: GuestKind::Qemu,
                    purge: true,
                    destroy_unreferenced_disks: true,
                }
            } else {
                Action::Start {
                    vmid,
                    kind: GuestKind::Qemu,
                }
            };
            let initial = if destructive {
                OpState::PendingSignature {
                    template: serde_json::json!({"op": "guest.destroy"}),
                }
            } else {
                OpState::Planned
            };
            let class = if destructive {
                Class::Destructive
            } else {
                Class::Benign
            };
            let rec = j.record(
                NewOp {
                    action,
                    class,
                    txn: None,
                    scratch: false,
                    identity: None,
                },
                initial,
            )?;
            writeln!(out, "ACK {} 1 {}", rec.id.0, rec.state().name())?;
            live.push(rec.id);
            continue;
        }
        let idx = rng.below(live.len() as u64) as usize;
        let id = live[idx];
        let Some(rec) = j.get(id)? else {
            bail!("live op {id} vanished")
        };
        let next = match (rec.state(), rec.class) {
            (OpState::PendingSignature { .. } | OpState::Planned, Class::Destructive) => {
                let bytes: [u8; 16] = std::array::from_fn(|i| (rng.next() >> (i % 8)) as u8);
                let nonce = Nonce::parse(&b64url(&bytes)).map_err(anyhow::Error::msg)?;
                let keep = 4_000_000_000;
                if j.consume_nonce_into_intent(id, &nonce, keep, signer.clone(), Vec::new())?
                    == steward_authz::Consumed::Fresh
                {
                    writeln!(out, "NONCE {}", nonce.as_str())?;
                    writeln!(out, "ACK {} {} intent", id.0, rec.history.len() + 1)?;
                }
                continue;
            }
            (OpState::Planned, _) => OpState::Intent,
            (OpState::Intent, _) => match rng.below(3) {
                0 => OpState::Succeeded,
                _ => OpState::Dispatched {
                    upid: format!(
                        "UPID:pve-a:{:08X}:00000001:00000001:qmstart:104:root@pam!steward:",
                        rng.below(1 << 30)
                    ),
                },
            },
            (OpState::Dispatched { .. }, _) => match rng.below(3) {
                0 => OpState::Failed {
                    failure: Failure::new(
                        FailureKind::TaskFailed {
                            exitstatus: "command failed".into(),
                        },
                        "task failed",
                    ),
                },
                1 => OpState::Abandoned {
                    reason: "recovery".into(),
                },
                _ => OpState::Succeeded,
            },
            _ => {
                live.swap_remove(idx);
                continue;
            }
        };
        let rec = j.transition(id, next)?;
        writeln!(
            out,
            "ACK {} {} {}",
            id.0,
            rec.history.len(),
            rec.state().name()
        )?;
        if rec.state().is_terminal() {
            live.swap_remove(idx);
        }
    }
    Ok(())
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

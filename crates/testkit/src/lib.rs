//! Test support: mint real OpenSSH keys, certificates and signatures with the system's
//! `ssh-keygen`, in a temporary directory, and ask `ssh-keygen -Y verify` for its verdict. Used by
//! tests, the adversarial matrix and benchmarks. It must never be a dependency of a shipped
//! crate, and never fakes what `ssh-keygen` would produce.

pub mod golden;
pub mod nginx;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What went wrong running `ssh-keygen`.
#[derive(Debug)]
pub struct KeygenError(pub String);

impl fmt::Display for KeygenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeygenError {}

/// Result alias.
pub type Result<T> = std::result::Result<T, KeygenError>;

/// Key types `ssh-keygen` can mint here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// ssh-ed25519
    Ed25519,
    /// ecdsa-sha2-nistp256
    EcdsaP256,
    /// ecdsa-sha2-nistp384
    EcdsaP384,
    /// ecdsa-sha2-nistp521
    EcdsaP521,
    /// RSA with this many bits
    Rsa(u32),
}

impl KeyType {
    fn args(self) -> Vec<String> {
        match self {
            KeyType::Ed25519 => vec!["-t".into(), "ed25519".into()],
            KeyType::EcdsaP256 => vec!["-t".into(), "ecdsa".into(), "-b".into(), "256".into()],
            KeyType::EcdsaP384 => vec!["-t".into(), "ecdsa".into(), "-b".into(), "384".into()],
            KeyType::EcdsaP521 => vec!["-t".into(), "ecdsa".into(), "-b".into(), "521".into()],
            KeyType::Rsa(bits) => vec!["-t".into(), "rsa".into(), "-b".into(), bits.to_string()],
        }
    }

    /// A short label for tables.
    pub fn label(self) -> String {
        match self {
            KeyType::Ed25519 => "ed25519".into(),
            KeyType::EcdsaP256 => "ecdsa-p256".into(),
            KeyType::EcdsaP384 => "ecdsa-p384".into(),
            KeyType::EcdsaP521 => "ecdsa-p521".into(),
            KeyType::Rsa(b) => format!("rsa-{b}"),
        }
    }
}

/// A key pair on disk.
#[derive(Clone, Debug)]
pub struct Key {
    /// Private key file.
    pub private: PathBuf,
    /// Public key file (`private` + `.pub`).
    pub public: PathBuf,
    /// The public key line (`type base64 comment`), trimmed.
    pub public_line: String,
}

impl Key {
    /// `type base64`, without the comment.
    pub fn public_type_and_blob(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A temporary directory to mint keys and signatures in.
#[derive(Debug)]
pub struct Keygen {
    dir: tempfile::TempDir,
    counter: std::sync::atomic::AtomicU32,
}

/// Options for a certificate.
#[derive(Clone, Debug)]
pub struct CertSpec<'a> {
    /// Certificate identity (`-I`).
    pub identity: &'a str,
    /// Principals (`-n`); empty for none.
    pub principals: &'a [&'a str],
    /// Validity (`-V`), e.g. `-5m:+1h` or `20200101:20200102`.
    pub validity: &'a str,
    /// Host certificate (`-h`).
    pub host: bool,
    /// Extra `-O` options, e.g. `critical:force-command=/bin/true`.
    pub options: &'a [&'a str],
}

/// Whether `ssh-keygen` is on the PATH.
pub fn available() -> bool {
    Command::new("ssh-keygen")
        .arg("-?")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<std::process::Output> {
    let shown = format!("{cmd:?}");
    // Times without a zone suffix are local time to ssh-keygen: pin the zone.
    let mut child = cmd
        .env("TZ", "UTC")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            KeygenError(format!(
                "cannot run {shown}: {e} (is openssh-client installed?)"
            ))
        })?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // ssh-keygen may decide (a malformed signature, say) and exit before reading its
        // input: a broken pipe then is its verdict arriving early, not a failure to run it.
        match pipe.write_all(data) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(KeygenError(format!("{shown}: writing stdin: {e}")));
            }
            _ => {}
        }
    }
    child
        .wait_with_output()
        .map_err(|e| KeygenError(format!("{shown}: {e}")))
}

fn ok(out: std::process::Output, what: &str) -> Result<std::process::Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(KeygenError(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Keygen {
    /// A fresh temporary directory.
    pub fn new() -> Result<Keygen> {
        let dir = tempfile::tempdir().map_err(|e| KeygenError(format!("tempdir: {e}")))?;
        Ok(Keygen {
            dir,
            counter: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh path in the directory with the given suffix.
    pub fn path(&self, stem: &str) -> PathBuf {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir.path().join(format!("{n:04}-{stem}"))
    }

    /// Mints a key pair with comment `comment`.
    pub fn key(&self, kind: KeyType, comment: &str) -> Result<Key> {
        let private = self.path(&kind.label());
        let out = run(
            Command::new("ssh-keygen")
                .args(kind.args())
                .args(["-q", "-N", "", "-C", comment, "-f"])
                .arg(&private),
            None,
        )?;
        ok(out, "ssh-keygen key generation")?;
        let public = PathBuf::from(format!("{}.pub", private.display()));
        let public_line = std::fs::read_to_string(&public)
            .map_err(|e| KeygenError(format!("{}: {e}", public.display())))?
            .trim()
            .to_string();
        Ok(Key {
            private,
            public,
            public_line,
        })
    }

    /// Signs `data` with `key` (a private key file, or a `-cert.pub` beside its private key)
    /// in `namespace`; returns the armored signature exactly as ssh-keygen wrote it.
    pub fn sign(&self, key: &Path, namespace: &str, data: &[u8]) -> Result<Vec<u8>> {
        let file = self.path("msg");
        std::fs::write(&file, data).map_err(|e| KeygenError(format!("{}: {e}", file.display())))?;
        let out = run(
            Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", namespace, "-f"])
                .arg(key)
                .arg(&file),
            None,
        )?;
        ok(out, "ssh-keygen -Y sign")?;
        let sig = PathBuf::from(format!("{}.sig", file.display()));
        std::fs::read(&sig).map_err(|e| KeygenError(format!("{}: {e}", sig.display())))
    }

    /// Certifies `subject` with `ca`; returns the certificate's path (`…-cert.pub` beside the
    /// subject's private key, so `sign` can use it).
    pub fn certify(&self, ca: &Key, subject: &Key, spec: &CertSpec<'_>) -> Result<PathBuf> {
        let mut cmd = Command::new("ssh-keygen");
        cmd.arg("-q")
            .arg("-s")
            .arg(&ca.private)
            .args(["-I", spec.identity]);
        if !spec.principals.is_empty() {
            cmd.args(["-n", &spec.principals.join(",")]);
        }
        cmd.args(["-V", spec.validity]);
        if spec.host {
            cmd.arg("-h");
        }
        for o in spec.options {
            cmd.args(["-O", o]);
        }
        cmd.arg(&subject.public);
        ok(run(&mut cmd, None)?, "ssh-keygen -s (certify)")?;
        Ok(PathBuf::from(format!(
            "{}-cert.pub",
            subject.private.display()
        )))
    }

    /// `ssh-keygen -Y verify` with `-Overify-time`; true when it says the signature is good.
    pub fn verify(
        &self,
        allowed_signers: &Path,
        principal: &str,
        namespace: &str,
        sig: &[u8],
        data: &[u8],
        verify_time: &str,
    ) -> Result<bool> {
        let sig_file = self.path("sig");
        std::fs::write(&sig_file, sig)
            .map_err(|e| KeygenError(format!("{}: {e}", sig_file.display())))?;
        let out = run(
            Command::new("ssh-keygen")
                .args(["-Y", "verify", "-f"])
                .arg(allowed_signers)
                .args(["-I", principal, "-n", namespace, "-s"])
                .arg(&sig_file)
                .arg(format!("-Overify-time={verify_time}")),
            Some(data),
        )?;
        Ok(out.status.success())
    }
}

/// The workspace root, from which tests find the data the repository keeps for them
/// (`crates/authz/tests/data/…`, `crates/pve-sim/data/…`). Nothing outside the checkout is
/// read. Found at run time from the running test's `CARGO_MANIFEST_DIR` (cargo and nextest set
/// it), walking up to the `Cargo.toml` that holds `[workspace]`: a path baked in at compile
/// time would point into whichever checkout built this crate first when checkouts share a
/// target directory.
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut dir = start.as_path();
    loop {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if manifest.lines().any(|l| l.trim() == "[workspace]") {
            return dir.to_path_buf();
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => return start,
        }
    }
}

/// OpenSSH's SSHSIG unit-test vectors, kept in the repository (see the README there).
pub fn sshsig_vectors_dir() -> PathBuf {
    workspace_root().join("crates/authz/tests/data/openssh-sshsig")
}

/// A fresh 128-bit nonce, base64url without padding. Unique per call in practice (random-seeded
/// hashing plus a process-wide counter); not a cryptographic generator, which tests do not need.
pub fn nonce() -> String {
    use base64::Engine as _;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An op payload, written the way an operator would write it (compact JSON, fields in the
/// documented order). Fields are raw JSON fragments so tests can make them wrong on purpose.
#[derive(Clone, Debug)]
pub struct OpDoc {
    /// `op`
    pub op: String,
    /// `host`
    pub host: String,
    /// `guest`, or None to leave it out
    pub guest: Option<u32>,
    /// `params` as raw JSON
    pub params: String,
    /// `nonce`
    pub nonce: String,
    /// `not_before`
    pub not_before: String,
    /// `not_after`
    pub not_after: String,
    /// Raw text inserted before the closing brace (e.g. `,"x":1`).
    pub extra: String,
}

impl OpDoc {
    /// `guest.destroy` of `guest` on `host`, window `not_before`..`not_after`, fresh nonce.
    pub fn destroy(host: &str, guest: u32, not_before: &str, not_after: &str) -> OpDoc {
        OpDoc {
            op: "guest.destroy".into(),
            host: host.into(),
            guest: Some(guest),
            params: r#"{"purge":true}"#.into(),
            nonce: nonce(),
            not_before: not_before.into(),
            not_after: not_after.into(),
            extra: String::new(),
        }
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let guest = self
            .guest
            .map(|g| format!(",\"guest\":{g}"))
            .unwrap_or_default();
        format!(
            "{{\"v\":1,\"op\":\"{}\",\"host\":\"{}\"{guest},\"params\":{},\"nonce\":\"{}\",\"not_before\":\"{}\",\"not_after\":\"{}\"{}}}\n",
            self.op, self.host, self.params, self.nonce, self.not_before, self.not_after, self.extra
        )
        .into_bytes()
    }
}

/// An instant as OpenSSH time stamps write it (`YYYYMMDDHHMMSSZ`), for `valid-after`,
/// `valid-before`, `-V` and `-Overify-time`.
pub fn openssh_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The SSHSIG blob inside an armored signature (for tests that tamper with it).
pub fn decode_armor(armored: &[u8]) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(armored).map_err(|e| KeygenError(e.to_string()))?;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| KeygenError(e.to_string()))
}

/// Armors an SSHSIG blob with lines of `width` base64 characters ended by `eol`.
pub fn encode_armor(blob: &[u8], width: usize, eol: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(blob);
    let mut out = format!("-----BEGIN SSH SIGNATURE-----{eol}");
    for chunk in body.as_bytes().chunks(width.max(1)) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str(eol);
    }
    out.push_str("-----END SSH SIGNATURE-----");
    out.push_str(eol);
    out.into_bytes()
}

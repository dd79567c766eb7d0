//! `cargo xtask dist`: the Debian package an administrator installs. It builds the release
//! binaries, generates the man pages and completions from clap (`steward-agent generate`),
//! stages the tree (binaries, hardened systemd unit, example configuration, docs), builds the
//! .deb with `dpkg-deb`, lists its contents, and checks the unit's exposure with
//! `systemd-analyze security --offline=true` (at most [`MAX_EXPOSURE`]). It installs nothing.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest `systemd-analyze security` exposure the unit may have.
const MAX_EXPOSURE: f64 = 2.0;

const PACKAGE: &str = "steward-agent";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn arch() -> Result<String> {
    Ok(run(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string())
}

fn put(root: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, bytes).with_context(|| path.display().to_string())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    // No timestamp in the header (flate2 writes none), so the package is reproducible.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

fn dir_size_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size_kib(&entry.path())? * 1024
        } else {
            meta.len()
        };
    }
    Ok(total.div_ceil(1024))
}

/// The unit's overall exposure as `systemd-analyze security --offline=true` rates it.
pub fn exposure(unit: &Path) -> Result<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .context("systemd-analyze (install the systemd package)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .with_context(|| format!("no exposure level in: {text}"))?;
    let score = line
        .rsplit(':')
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("unreadable exposure line: {line}"))?;
    println!("{}", line.trim());
    Ok(score)
}

/// Builds `target/dist/steward-agent_VERSION_ARCH.deb`; false when the unit is too exposed.
pub fn run_dist() -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "steward-agent",
            "-p",
            "steward-verifier",
        ])
        .current_dir(root()))?;
    let release = target_dir().join("release");
    let dist = target_dir().join("dist");
    let stage = dist.join("root");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let version = env!("CARGO_PKG_VERSION");
    let arch = arch()?;
    let pkg = root().join("bins/agent");
    for bin in ["steward-agent", "steward-verify"] {
        put(
            &stage,
            &format!("usr/bin/{bin}"),
            &std::fs::read(release.join(bin))?,
            0o755,
        )?;
    }
    let unit = std::fs::read(pkg.join("packaging/steward-agent.service"))?;
    put(
        &stage,
        "usr/lib/systemd/system/steward-agent.service",
        &unit,
        0o644,
    )?;
    let doc = format!("usr/share/doc/{PACKAGE}");
    put(
        &stage,
        &format!("{doc}/agent.example.toml"),
        &std::fs::read(pkg.join("agent.example.toml"))?,
        0o644,
    )?;
    put(
        &stage,
        &format!("{doc}/README.md.gz"),
        &gzip(&std::fs::read(root().join("README.md"))?)?,
        0o644,
    )?;
    put(
        &stage,
        &format!("{doc}/copyright"),
        format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: steward\n\nFiles: *\nLicense: {}\n On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n",
            env!("CARGO_PKG_LICENSE")
        )
        .as_bytes(),
        0o644,
    )?;
    // Man pages and completions from the binary's own clap definitions.
    let generated = dist.join("generated");
    if generated.exists() {
        std::fs::remove_dir_all(&generated)?;
    }
    run(Command::new(release.join("steward-agent"))
        .arg("generate")
        .arg(&generated))?;
    for entry in std::fs::read_dir(&generated)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("generated file name")?
            .to_string();
        let bytes = std::fs::read(&path)?;
        let (rel, bytes) = if name.ends_with(".1") {
            (format!("usr/share/man/man1/{name}.gz"), gzip(&bytes)?)
        } else if name == "steward-agent.bash" {
            (
                "usr/share/bash-completion/completions/steward-agent".into(),
                bytes,
            )
        } else if name == "_steward-agent" {
            (format!("usr/share/zsh/vendor-completions/{name}"), bytes)
        } else if name == "steward-agent.fish" {
            (format!("usr/share/fish/vendor_completions.d/{name}"), bytes)
        } else {
            bail!("steward-agent generate wrote an unexpected file: {name}");
        };
        put(&stage, &rel, &bytes, 0o644)?;
    }
    // Maintainer scripts: tell systemd about the unit; never enable or start it (the
    // administrator configures tokens and the trust store first).
    let reload = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n    systemctl daemon-reload >/dev/null || true\nfi\n";
    put(&stage, "DEBIAN/postinst", reload.as_bytes(), 0o755)?;
    put(&stage, "DEBIAN/postrm", reload.as_bytes(), 0o755)?;
    let control = format!(
        "Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Steward developers <steward@localhost>\nInstalled-Size: {size}\nDepends: libc6\nSection: admin\nPriority: optional\nDescription: reconciles a Proxmox VE node's guests; destructive changes need a signature\n steward-agent applies a desired state to this node's VMs and containers through\n the local Proxmox API. Benign changes are applied; anything that destroys or\n overwrites data is held until an operator signs it with ssh-keygen -Y sign.\n Also ships steward-verify, the offline verifier for signed ops.\n",
        size = dir_size_kib(&stage)?
    );
    put(&stage, "DEBIAN/control", control.as_bytes(), 0o644)?;
    let deb = dist.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    println!("built {}", deb.display());
    print!(
        "{}",
        run(Command::new("dpkg-deb").arg("--contents").arg(&deb))?
    );
    let score = exposure(&stage.join("usr/lib/systemd/system/steward-agent.service"))?;
    if score > MAX_EXPOSURE {
        println!("FAIL: exposure {score} is above {MAX_EXPOSURE}");
        return Ok(false);
    }
    println!("unit exposure {score} (at most {MAX_EXPOSURE})");
    Ok(true)
}

//! Files the agent trusts with its authority: its configuration, the trust store that says who
//! may sign destroys, and the API and hub tokens. Whoever can write one of them, or replace a
//! directory on its path, owns the agent. So, as `sshd` does for `authorized_keys`
//! (StrictModes, `auth_secure_path`): the file must be a regular file, and it and every
//! directory from it up to `/` must be owned by root or by the user the agent runs as and not
//! be writable by group or others. A directory with the sticky bit owned by root (`/tmp`) is
//! allowed on the way: nobody but the owner of an entry can rename or remove it there. Secrets
//! must also not be readable by group or others. It must never read or return a file's content
//! in an error.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const STICKY: u32 = 0o1000;

/// What a file holds, for the checks and the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sensitivity {
    /// Configuration or a trust store: anyone may read it, only its owner may write it.
    Public,
    /// A secret (a token): only its owner may read it either.
    Secret,
}

/// Checks `path` and every directory above it (after resolving symlinks) as described in the
/// module's comment, for a process running as user `me`. `Err` names the path, its owner and
/// its mode, and what to run about it.
pub fn check_secure_path(path: &Path, what: Sensitivity, me: u32) -> Result<(), String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    let shown = if real == path {
        path.display().to_string()
    } else {
        format!("{} (→ {})", path.display(), real.display())
    };
    owner_ok(&shown, &meta, me)?;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{shown}: writable by group or others (mode {mode:o}): anyone who can write it controls the agent; chmod go-w it"
        ));
    }
    if what == Sensitivity::Secret && mode & 0o077 != 0 {
        return Err(format!(
            "{shown}: readable by group or others (mode {mode:o}); chmod 600 it"
        ));
    }
    let mut dir: Option<PathBuf> = real.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let meta = std::fs::metadata(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let shown = format!("{} (directory of {})", d.display(), path.display());
        owner_ok(&shown, &meta, me)?;
        let sticky_root = mode & STICKY != 0 && meta.uid() == 0;
        if mode & 0o022 != 0 && !sticky_root {
            return Err(format!(
                "{shown}: writable by group or others (mode {mode:o}): anyone who can write it can replace the file; chmod go-w it"
            ));
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Ok(())
}

fn owner_ok(shown: &str, meta: &std::fs::Metadata, me: u32) -> Result<(), String> {
    let uid = meta.uid();
    if uid == 0 || uid == me {
        return Ok(());
    }
    Err(format!(
        "{shown}: owned by uid {uid}, neither root nor the agent's user (uid {me}); chown it"
    ))
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn loose_files_and_directories_are_refused_with_path_and_mode() {
        let me = effective_uid();
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("etc-steward");
        std::fs::create_dir(&sub).unwrap();
        chmod(&sub, 0o755);
        let file = sub.join("agent.toml");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        assert_eq!(check_secure_path(&file, Sensitivity::Public, me), Ok(()));
        // A secret must be private too.
        let e = check_secure_path(&file, Sensitivity::Secret, me).unwrap_err();
        assert!(
            e.contains("readable by group or others") && e.contains("644"),
            "{e}"
        );
        chmod(&file, 0o600);
        assert_eq!(check_secure_path(&file, Sensitivity::Secret, me), Ok(()));
        chmod(&file, 0o666);
        let e = check_secure_path(&file, Sensitivity::Public, me).unwrap_err();
        assert!(
            e.contains("agent.toml") && e.contains("666") && e.contains("writable"),
            "{e}"
        );
        chmod(&file, 0o644);
        chmod(&sub, 0o777);
        let e = check_secure_path(&file, Sensitivity::Public, me).unwrap_err();
        assert!(e.contains("etc-steward") && e.contains("777"), "{e}");
        // A sticky directory owned by root (as /tmp) is allowed; without the sticky bit it is not.
        chmod(&sub, 0o1777);
        let sticky = check_secure_path(&file, Sensitivity::Public, me);
        if std::fs::metadata(&sub).unwrap().uid() == 0 {
            assert_eq!(sticky, Ok(()));
        } else {
            assert!(sticky.is_err());
        }
        chmod(&sub, 0o755);
        // Another (non-root) user's file. Only root can hand a file to another user; CI and
        // the agent's tests run as root.
        if me == 0 {
            std::os::unix::fs::chown(&file, Some(4242), None).unwrap();
            let e = check_secure_path(&file, Sensitivity::Public, me).unwrap_err();
            assert!(e.contains("owned by uid 4242"), "{e}");
            std::os::unix::fs::chown(&file, Some(0), None).unwrap();
        }
        // Judged for another agent user, root's file is still fine.
        assert_eq!(
            check_secure_path(&file, Sensitivity::Public, me.wrapping_add(4242)).is_ok(),
            std::fs::metadata(&file).unwrap().uid() == 0
        );
        // Not a regular file.
        let e = check_secure_path(&sub, Sensitivity::Public, me).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        // A symlink is judged by what it points to, and says so.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        chmod(&file, 0o666);
        let e = check_secure_path(&link, Sensitivity::Public, me).unwrap_err();
        assert!(e.contains("link.toml") && e.contains("agent.toml"), "{e}");
    }
}

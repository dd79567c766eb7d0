//! The file provider: `poll` re-reads the file when it changed and says what happened. The
//! caller (the agent) hands a new document to the engine and logs a refusal; the provider keeps
//! the last good document either way. It reads only a regular file, and at most
//! [`MAX_DOCUMENT_BYTES`] of it: a FIFO or a device in its place must not hang the poll, nor a
//! huge file exhaust memory.

use crate::provider::{Provider, Update};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use steward_model::DesiredState;
use steward_planner::document::{parse_json, parse_toml};

/// The largest desired-state document read (as large as a hub's answer may be).
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Reads `path` as text if it is a regular file of at most `limit` bytes, never more than
/// `limit` plus one byte whatever it grows to meanwhile (`what` names the file in errors). It
/// opens without blocking and judges the opened handle, so a FIFO or a device in the file's
/// place (even one swapped in after a `stat`) cannot hang the reader, nor a huge file exhaust
/// its memory. For the desired-state file and for what `steward-agent submit` reads.
pub fn read_regular_file(path: &Path, limit: usize, what: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown}: not a regular file (a {what} is read from a file)"
        ));
    }
    let too_big = || format!("{shown}: larger than a {what} may be ({limit} bytes)");
    if meta.len() > limit as u64 {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {e}"))?;
    if bytes.len() > limit {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8 text"))
}

/// A desired-state file on the node.
#[derive(Debug)]
pub struct FileProvider {
    path: PathBuf,
    seen: Option<(SystemTime, u64)>,
    last_good: Option<Arc<DesiredState>>,
}

impl FileProvider {
    /// A provider for `path` (`.json`, or TOML otherwise).
    pub fn new(path: impl Into<PathBuf>) -> FileProvider {
        FileProvider {
            path: path.into(),
            seen: None,
            last_good: None,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last document that passed validation.
    pub fn last_good(&self) -> Option<Arc<DesiredState>> {
        self.last_good.clone()
    }

    /// Re-reads the file if its modification time or size moved since the last poll.
    pub fn poll(&mut self) -> Update {
        let stamp = std::fs::metadata(&self.path)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok();
        if stamp.is_some() && stamp == self.seen {
            return Update::Unchanged;
        }
        self.seen = stamp;
        let source = self.path.display().to_string();
        let text = match read_regular_file(&self.path, MAX_DOCUMENT_BYTES, "desired-state document")
        {
            Ok(t) => t,
            Err(e) => return Update::Refused(e),
        };
        let parsed = if self.path.extension().is_some_and(|e| e == "json") {
            parse_json(&source, &text)
        } else {
            parse_toml(&source, &text)
        };
        match parsed {
            Ok(d) => {
                let d = Arc::new(d);
                self.last_good = Some(d.clone());
                Update::New(d)
            }
            Err(errors) => Update::Refused(errors.to_string()),
        }
    }
}

#[async_trait]
impl Provider for FileProvider {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn poll(&mut self) -> Update {
        FileProvider::poll(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_document_is_refused_with_its_line_and_the_last_good_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.toml");
        std::fs::write(
            &path,
            "version = 1\ngeneration = 1\n[[guests]]\nvmid = 104\nkind = \"qemu\"\nstate = \"running\"\n",
        )
        .unwrap();
        let mut p = FileProvider::new(&path);
        let Update::New(d) = p.poll() else {
            panic!("expected a document");
        };
        assert_eq!(d.guests.len(), 1);
        assert!(matches!(p.poll(), Update::Unchanged));
        // Garbage on line 4: refused, naming file and line; the last good document stays.
        std::fs::write(
            &path,
            "version = 1\ngeneration = 2\n[[guests]]\nvmid = = 104\n",
        )
        .unwrap();
        match p.poll() {
            Update::Refused(why) => assert!(why.contains("desired.toml:4"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.last_good().unwrap().generation, 1);
        // A document with a bad field: refused with guest and field.
        std::fs::write(
            &path,
            "version = 1\ngeneration = 3\n[[guests]]\nvmid = 104\nkind = \"qemu\"\nstate = \"running\"\nmemory = \"lots\"\n",
        )
        .unwrap();
        match p.poll() {
            Update::Refused(why) => assert!(why.contains("memory"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.last_good().unwrap().generation, 1);
    }

    #[test]
    fn a_fifo_device_or_huge_file_in_place_of_the_document_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("desired.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // No writer: a blocking open would hang here for ever.
        match FileProvider::new(&fifo).poll() {
            Update::Refused(why) => assert!(why.contains("not a regular file"), "{why}"),
            other => panic!("{other:?}"),
        }
        match FileProvider::new("/dev/zero").poll() {
            Update::Refused(why) => assert!(why.contains("not a regular file"), "{why}"),
            other => panic!("{other:?}"),
        }
        let big = dir.path().join("big.toml");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_DOCUMENT_BYTES as u64 + 1)
            .unwrap();
        match FileProvider::new(&big).poll() {
            Update::Refused(why) => assert!(why.contains("larger than"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

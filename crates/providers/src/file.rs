//! The file provider: `poll` re-reads the file when it changed and says what happened. The
//! caller (the agent) hands a new document to the engine and logs a refusal; the provider keeps
//! the last good document either way.

use crate::provider::{Provider, Update};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use steward_model::DesiredState;
use steward_planner::document::{parse_json, parse_toml};

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
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => return Update::Refused(format!("{source}: {e}")),
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
}

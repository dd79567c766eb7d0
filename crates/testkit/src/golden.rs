//! Golden files: a wire or storage format pinned byte for byte. The check serializes a value
//! exactly as the product does (compact `serde_json`), compares the bytes with the stored file,
//! then decodes the stored bytes and compares values, so both directions are held. It writes
//! files only when `STEWARD_BLESS=1` is set by a person; it must never bless on its own.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// `golden/` of the crate under test, found at run time (cargo and nextest set
/// `CARGO_MANIFEST_DIR` for the test), so a test binary built in another checkout reads this
/// one's files. `built_in` is the crate's own `env!("CARGO_MANIFEST_DIR")`.
pub fn dir(built_in: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(built_in), PathBuf::from)
        .join("golden")
}

/// Checks `value` against `<dir>/<name>.json`: the same bytes, and the same value read back.
/// None when both hold; otherwise what differs.
pub fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Option<String> {
    let path = dir.join(format!("{name}.json"));
    let bytes = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => return Some(format!("{name}: does not serialize: {e}")),
    };
    if std::env::var_os("STEWARD_BLESS").is_some() {
        let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &bytes));
        return written
            .err()
            .map(|e| format!("{}: cannot bless: {e}", path.display()));
    }
    let stored = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    if stored != bytes {
        return Some(format!(
            "{name}: serialized form changed\n  golden: {}\n  now:    {}",
            String::from_utf8_lossy(&stored),
            String::from_utf8_lossy(&bytes)
        ));
    }
    match serde_json::from_slice::<T>(&stored) {
        Ok(back) if back == *value => None,
        Ok(back) => Some(format!("{name}: read back as {back:?}")),
        Err(e) => Some(format!("{name}: does not decode: {e}")),
    }
}

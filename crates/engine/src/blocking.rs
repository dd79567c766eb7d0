//! The engine's side of the blocking boundary: every journal call (sled, the fdatasync barrier)
//! runs on tokio's blocking pool, never on an async worker, as the gate's do. It must never be
//! bypassed by calling the journal directly from async code.

use std::sync::Arc;
use steward_journal::{Journal, JournalError};

/// Runs `f` on the journal off the async workers.
pub(crate) async fn journal<T, F>(j: &Arc<Journal>, f: F) -> Result<T, JournalError>
where
    F: FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    T: Send + 'static,
{
    let j = j.clone();
    match tokio::task::spawn_blocking(move || f(&j)).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(JournalError::Storage(format!(
            "journal step did not finish: {e}"
        ))),
    }
}

//! Workspace end-to-end tests live in `tests/tests/`: scenarios that cross crates or compare
//! Steward with real external tools (`ssh-keygen`). This library is empty on purpose; it must
//! never grow code that shipped crates could come to depend on.

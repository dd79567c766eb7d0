//! The trust store: an OpenSSH `allowed_signers` file, read to the letter of ssh-keygen(1)
//! "ALLOWED SIGNERS", and the allow-list step of the pipeline (which line admits a key or a
//! certificate, for which namespace, at which time). Deliberate divergence from OpenSSH: a line
//! OpenSSH would skip (unknown option, unquoted or zone-less time, bad key) makes the whole file
//! fail to load, naming the line. It reads only the text it is handed; it must never open a file.

mod options;
mod pattern;
mod store;
mod timestamp;

pub use options::LineOptions;
pub use store::{Admission, LoadError, TrustEntry, TrustStore};

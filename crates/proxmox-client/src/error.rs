//! Typed API errors the engine can act on. Proxmox reports most failures as HTTP 500 with the
//! reason only in the status line; this module turns those lines into variants. An error never
//! carries the token.

use std::fmt;
use steward_model::{Failure, FailureKind};

/// What went wrong talking to Proxmox.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiError {
    /// The guest, task or path does not exist.
    NotFound(String),
    /// The guest is locked (`VM is locked (backup)`): `lock` names the lock.
    Locked {
        /// `backup`, `create`, `migrate`, …
        lock: String,
        /// The full reason.
        message: String,
    },
    /// 401: the token was refused.
    Unauthorized,
    /// 403: the token lacks a privilege.
    PermissionDenied(String),
    /// The config changed since it was read (stale `digest`).
    DigestMismatch(String),
    /// 595 or 596: pveproxy could not reach the node that should answer.
    NodeUnreachable(String),
    /// No answer within the deadline.
    Timeout(String),
    /// Connection, TLS or HTTP failure (including a refused certificate).
    Transport(String),
    /// A task ended with an exit status other than `OK`.
    TaskFailed {
        /// The task.
        upid: String,
        /// Its exit status.
        exitstatus: String,
    },
    /// The answer did not have the expected shape.
    Decode(String),
    /// Any other API error.
    Api {
        /// HTTP status.
        status: u16,
        /// The reason (status line) or message.
        message: String,
        /// Per-parameter errors of a 400.
        errors: Option<serde_json::Value>,
    },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::NotFound(m) => write!(f, "not found: {m}"),
            ApiError::Locked { message, .. } => write!(f, "locked: {message}"),
            ApiError::Unauthorized => f.write_str("authentication failed (401)"),
            ApiError::PermissionDenied(m) => write!(f, "permission denied: {m}"),
            ApiError::DigestMismatch(m) => write!(f, "config changed since it was read: {m}"),
            ApiError::NodeUnreachable(m) => write!(f, "node unreachable: {m}"),
            ApiError::Timeout(m) => write!(f, "timeout: {m}"),
            ApiError::Transport(m) => write!(f, "transport: {m}"),
            ApiError::TaskFailed { upid, exitstatus } => {
                write!(f, "task {upid} failed: {exitstatus}")
            }
            ApiError::Decode(m) => write!(f, "unexpected answer: {m}"),
            ApiError::Api {
                status,
                message,
                errors,
            } => match errors {
                Some(e) => write!(f, "{status} {message}: {e}"),
                None => write!(f, "{status} {message}"),
            },
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The error for an HTTP answer with `status` and status-line `reason`.
    pub fn from_response(status: u16, reason: &str, body: &[u8]) -> ApiError {
        let errors = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("errors").cloned())
            .filter(|e| !e.is_null());
        match status {
            401 => ApiError::Unauthorized,
            403 => ApiError::PermissionDenied(reason.into()),
            404 => ApiError::NotFound(reason.into()),
            // pveproxy could not connect to (595) or talk to (596) the node that should answer.
            595 | 596 => ApiError::NodeUnreachable(reason.into()),
            _ if lock_in(reason).is_some() => ApiError::Locked {
                lock: lock_in(reason).unwrap_or_default(),
                message: reason.into(),
            },
            // QEMU (pve-common `assert_if_modified`, qemu-server): "checksum mismatch (file
            // change by other user?)", spelled "missmatch" before qemu-server 8.2.5; LXC:
            // "detected modified configuration - file changed by other user? Try again."
            _ if reason.contains("detected modified configuration")
                || reason.contains("checksum mismatch")
                || reason.contains("checksum missmatch") =>
            {
                ApiError::DigestMismatch(reason.into())
            }
            _ if reason.contains("does not exist") => ApiError::NotFound(reason.into()),
            _ => ApiError::Api {
                status,
                message: reason.into(),
                errors,
            },
        }
    }

    /// A stable snake_case name for the variant (a metric label; never the message).
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::Locked { .. } => "locked",
            ApiError::Unauthorized => "unauthorized",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::DigestMismatch(_) => "digest_mismatch",
            ApiError::NodeUnreachable(_) => "node_unreachable",
            ApiError::Timeout(_) => "timeout",
            ApiError::Transport(_) => "transport",
            ApiError::TaskFailed { .. } => "task_failed",
            ApiError::Decode(_) => "decode",
            ApiError::Api { status, .. } if *status >= 500 => "server_error",
            ApiError::Api { .. } => "client_error",
        }
    }

    /// Worth retrying for an idempotent read.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport(_) | ApiError::Timeout(_) | ApiError::NodeUnreachable(_) => true,
            ApiError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The executor's typed failure for this error: the one mapping from what Proxmox said to
    /// what the engine's retry policy decides on. A task that failed on a lock (QEMU reports
    /// locks in the task, after a 200) is `Locked` too.
    pub fn failure(&self) -> Failure {
        let detail = self.to_string();
        let kind = match self {
            ApiError::Locked { lock, .. } => FailureKind::Locked { lock: lock.clone() },
            ApiError::DigestMismatch(_) => FailureKind::DigestMoved,
            ApiError::Unauthorized | ApiError::PermissionDenied(_) => FailureKind::Denied,
            ApiError::NotFound(_) => FailureKind::NotFound,
            ApiError::TaskFailed { exitstatus, .. } => match lock_in(exitstatus) {
                Some(lock) => FailureKind::Locked { lock },
                None => FailureKind::TaskFailed {
                    exitstatus: exitstatus.clone(),
                },
            },
            ApiError::NodeUnreachable(_) => FailureKind::Transient {
                cause: "node unreachable".into(),
            },
            ApiError::Timeout(_) => FailureKind::Transient {
                cause: "timeout".into(),
            },
            ApiError::Transport(_) => FailureKind::Transient {
                cause: "transport".into(),
            },
            ApiError::Api { status, .. } if *status >= 500 => FailureKind::Transient {
                cause: format!("status {status}"),
            },
            ApiError::Api { .. } | ApiError::Decode(_) => FailureKind::Other,
        };
        Failure::new(kind, detail)
    }
}

/// The lock named by a `… is locked (NAME)` text, if any.
fn lock_in(text: &str) -> Option<String> {
    text.split_once("is locked (")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(l, _)| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_become_variants() {
        assert_eq!(
            ApiError::from_response(500, "VM is locked (backup)", b"{\"data\":null}"),
            ApiError::Locked {
                lock: "backup".into(),
                message: "VM is locked (backup)".into()
            }
        );
        assert!(
            matches!(ApiError::from_response(500, "CT is locked (create)", b""), ApiError::Locked { lock, .. } if lock == "create")
        );
        assert!(matches!(
            ApiError::from_response(
                500,
                "detected modified configuration - file changed by other user? Try again.",
                b""
            ),
            ApiError::DigestMismatch(_)
        ));
        assert_eq!(
            ApiError::from_response(401, "authentication failure", b""),
            ApiError::Unauthorized
        );
        assert!(matches!(
            ApiError::from_response(403, "Permission check failed (/vms/104, VM.PowerMgmt)", b""),
            ApiError::PermissionDenied(_)
        ));
        assert!(matches!(
            ApiError::from_response(596, "Connection timed out", b""),
            ApiError::NodeUnreachable(_)
        ));
        assert!(matches!(
            ApiError::from_response(595, "Connection refused", b""),
            ApiError::NodeUnreachable(_)
        ));
        for qemu in [
            "checksum mismatch (file change by other user?)",
            "checksum missmatch (file change by other user?)",
        ] {
            assert!(matches!(
                ApiError::from_response(500, qemu, b""),
                ApiError::DigestMismatch(_)
            ));
        }
        assert!(matches!(
            ApiError::from_response(
                500,
                "Configuration file 'nodes/pve-a/qemu-server/999.conf' does not exist",
                b""
            ),
            ApiError::NotFound(_)
        ));
        let e = ApiError::from_response(
            400,
            "Parameter verification failed.",
            br#"{"data":null,"errors":{"memory":"value must have a minimum value of 16"}}"#,
        );
        assert!(e.to_string().contains("minimum value of 16"), "{e}");
        assert!(!e.is_transient());
        assert!(ApiError::from_response(500, "something odd", b"").is_transient());
    }

    #[test]
    fn each_error_maps_to_the_failure_the_retry_policy_needs() {
        let cases: Vec<(ApiError, FailureKind)> = vec![
            (
                ApiError::from_response(500, "VM is locked (backup)", b""),
                FailureKind::Locked {
                    lock: "backup".into(),
                },
            ),
            (
                ApiError::TaskFailed {
                    upid: "UPID:x".into(),
                    exitstatus: "VM is locked (snapshot)".into(),
                },
                FailureKind::Locked {
                    lock: "snapshot".into(),
                },
            ),
            (
                ApiError::TaskFailed {
                    upid: "UPID:x".into(),
                    exitstatus: "command failed".into(),
                },
                FailureKind::TaskFailed {
                    exitstatus: "command failed".into(),
                },
            ),
            (
                ApiError::DigestMismatch("x".into()),
                FailureKind::DigestMoved,
            ),
            (ApiError::Unauthorized, FailureKind::Denied),
            (
                ApiError::PermissionDenied("(/vms/1, VM.Allocate)".into()),
                FailureKind::Denied,
            ),
            (ApiError::NotFound("x".into()), FailureKind::NotFound),
            (
                ApiError::NodeUnreachable("x".into()),
                FailureKind::Transient {
                    cause: "node unreachable".into(),
                },
            ),
            (
                ApiError::from_response(503, "busy", b""),
                FailureKind::Transient {
                    cause: "status 503".into(),
                },
            ),
            (
                ApiError::from_response(400, "Parameter verification failed.", b""),
                FailureKind::Other,
            ),
        ];
        for (e, want) in cases {
            let f = e.failure();
            assert_eq!(f.kind, want, "{e}");
            assert_eq!(f.detail, e.to_string());
        }
    }
}

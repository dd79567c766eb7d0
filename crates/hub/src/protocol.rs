//! The wire shapes of protocol version 1, shared by the agent and the hub stub. Paths are
//! below the hub's base URL; every request carries `Authorization: Bearer TOKEN`.
//! A field must never change meaning within version 1 (additions only).

use serde::{Deserialize, Serialize};
pub use steward_providers::{Job, JobResult};

/// The protocol version this crate speaks (also the path prefix `/v1`).
pub const VERSION: u32 = 1;

/// The largest answer the agent reads (a desired-state document or a jobs list).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The most jobs taken from one answer (the rest come with the next poll), and signatures
/// from one job. Each presentation of a signature costs a verification and, when refused, a
/// durable audit entry: these bound what a hostile hub can make the agent do per poll.
pub const MAX_JOBS: usize = 32;
/// See [`MAX_JOBS`].
pub const MAX_SIGNATURES: usize = 8;

/// The longest job id taken (visible ASCII only); a job with another id is skipped.
pub const MAX_JOB_ID: usize = 128;

/// `GET /v1/nodes/{node}/desired`: the desired-state document (JSON).
pub fn desired_path(node: &str) -> String {
    format!("/v1/nodes/{node}/desired")
}

/// `GET /v1/nodes/{node}/jobs`: [`JobsAnswer`].
pub fn jobs_path(node: &str) -> String {
    format!("/v1/nodes/{node}/jobs")
}

/// `POST /v1/nodes/{node}/report`: [`ReportBody`].
pub fn report_path(node: &str) -> String {
    format!("/v1/nodes/{node}/report")
}

/// The answer to `GET …/jobs`. Unknown fields are ignored (a later minor addition must not
/// stop an older agent); `protocol` must be [`VERSION`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsAnswer {
    /// Must be 1.
    pub protocol: u32,
    /// Signed jobs for this node.
    pub jobs: Vec<Job>,
}

/// Whether `id` is a job id the agent takes: 1..=[`MAX_JOB_ID`] bytes of visible ASCII (so it
/// can be logged and reported without escaping).
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_JOB_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads a `GET …/jobs` answer: JSON of [`JobsAnswer`] at [`VERSION`]. Jobs with an id the
/// agent does not take are dropped and each job keeps at most [`MAX_SIGNATURES`] signatures;
/// `Err` names what is wrong. Untrusted input: it must never panic, whatever the bytes.
pub fn parse_jobs(body: &[u8]) -> Result<Vec<Job>, String> {
    let answer: JobsAnswer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if answer.protocol != VERSION {
        return Err(format!(
            "protocol {} (this agent speaks {VERSION})",
            answer.protocol
        ));
    }
    Ok(answer
        .jobs
        .into_iter()
        .filter(|j| valid_job_id(&j.id))
        .map(|mut j| {
            j.signatures.truncate(MAX_SIGNATURES);
            j
        })
        .collect())
}

/// The body of `POST …/report` (its shape is `steward_view`'s, pinned by its goldens).
pub use steward_view::ReportBody;

//! The local API's own shapes besides status, held ops and decisions: `GET /health`,
//! `POST /submit`'s body, `GET /ops/{id}`, and the error body every refusal of a request
//! carries. It must never accept a submission it cannot say the shape of.

use serde::{Deserialize, Serialize};

/// The most signatures one submission may carry (as many as a hub job may).
pub const MAX_SIGNATURES: usize = 8;

/// `GET /health`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// Always true when the agent answers.
    pub ok: bool,
    /// Whether recovery has run (the engine acts only after it).
    pub recovered: bool,
}

/// The body of any answer that is not a 2xx: what was wrong with the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// Said for a person; may carry text the caller sent (escape it before printing).
    pub error: String,
}

/// The body of `POST /submit`: one payload, and `signature` (one) or `signatures` (several,
/// counted together against the op's m-of-n policy), not both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The op payload, exactly the bytes that were signed.
    pub payload: String,
    /// One armored signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Several armored signatures over the same payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Vec<String>>,
}

/// A submission whose signatures cannot be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmissionError {
    /// Both `signature` and `signatures`, or neither.
    OneOrTheOther,
    /// No signature, or more than [`MAX_SIGNATURES`].
    Count(usize),
}

impl std::fmt::Display for SubmissionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmissionError::OneOrTheOther => f.write_str(
                "give \"signature\" (one) or \"signatures\" (several), not both and not neither",
            ),
            SubmissionError::Count(n) => write!(
                f,
                "{n} signatures: a submission carries 1..={MAX_SIGNATURES}"
            ),
        }
    }
}

impl std::error::Error for SubmissionError {}

impl Submission {
    /// A submission of `payload` with `signatures` (sent as `signatures`).
    pub fn new(payload: String, signatures: Vec<String>) -> Submission {
        Submission {
            payload,
            signature: None,
            signatures: Some(signatures),
        }
    }

    /// The signatures, in order, as bytes; refused when the shape is not one of the two.
    pub fn signature_bytes(&self) -> Result<Vec<Vec<u8>>, SubmissionError> {
        let sigs: Vec<Vec<u8>> = match (&self.signature, &self.signatures) {
            (Some(one), None) => vec![one.as_bytes().to_vec()],
            (None, Some(many)) => many.iter().map(|s| s.as_bytes().to_vec()).collect(),
            _ => return Err(SubmissionError::OneOrTheOther),
        };
        if (1..=MAX_SIGNATURES).contains(&sigs.len()) {
            Ok(sigs)
        } else {
            Err(SubmissionError::Count(sigs.len()))
        }
    }
}

/// `GET /ops/{id}`: one journal op record, in the journal's own pinned form (its golden
/// files), with its state's name beside it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpView {
    /// `intent`, `dispatched`, `succeeded`, `failed`, `pending_signature`, …
    pub state: String,
    /// The record's fields (`id`, `guest`, `action`, `class`, `history`, …).
    #[serde(flatten)]
    pub record: serde_json::Map<String, serde_json::Value>,
}

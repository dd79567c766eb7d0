//! The op payload: the small JSON document an operator signs. Parsed strictly from the exact
//! signed bytes (size cap, duplicate keys at any depth, unknown fields, nonce strength, window
//! shape). It must never re-serialize or normalize what was signed before it is checked.

use crate::reason::{Reason, Rejection};
use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcOffset};

/// The largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The least nonce entropy accepted, in bytes (128 bits).
pub const MIN_NONCE_BYTES: usize = 16;
/// The most nonce bytes accepted (a nonce is an identifier, not a payload).
pub const MAX_NONCE_BYTES: usize = 64;
/// The only payload version this build reads.
pub const PAYLOAD_VERSION: u32 = 1;

/// A signed op's nonce: base64url without padding, at least 128 bits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(String);

impl Nonce {
    /// Validates a nonce string.
    pub fn parse(s: &str) -> Result<Nonce, String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| format!("nonce {s:?} is not base64url without padding"))?;
        if bytes.len() < MIN_NONCE_BYTES {
            return Err(format!(
                "nonce carries {} bits, at least {} required",
                bytes.len() * 8,
                MIN_NONCE_BYTES * 8
            ));
        }
        if bytes.len() > MAX_NONCE_BYTES {
            return Err(format!("nonce longer than {MAX_NONCE_BYTES} bytes"));
        }
        Ok(Nonce(s.to_string()))
    }

    /// The nonce as signed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A strictly parsed op payload (not yet checked for target, time or nonce freshness).
#[derive(Clone, Debug, PartialEq)]
pub struct OpPayload {
    /// The op kind, e.g. `guest.destroy`.
    pub op: String,
    /// The node the op is for.
    pub host: String,
    /// The guest (VMID) the op is for, if any.
    pub guest: Option<u32>,
    /// Op parameters, exactly as signed (the gate binds them to the held action).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The nonce.
    pub nonce: Nonce,
    /// Start of the validity window.
    pub not_before: OffsetDateTime,
    /// End of the validity window.
    pub not_after: OffsetDateTime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    op: String,
    host: String,
    #[serde(default, deserialize_with = "present")]
    guest: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    params: Option<StrictObject>,
    nonce: String,
    not_before: String,
    not_after: String,
}

/// An optional field that, when present, must hold a value: `"guest": null` is not "no guest"
/// but a malformed op (a signer who wrote null meant something; nothing is guessed).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Proxmox VE's VMID range.
const VMID_RANGE: std::ops::RangeInclusive<u32> = 100..=999_999_999;

impl OpPayload {
    /// Parses the exact signed bytes. `max_ttl_secs` bounds `not_after - not_before`.
    pub fn parse(bytes: &[u8], max_ttl_secs: i64) -> Result<OpPayload, Rejection> {
        let bad = |m: String| Rejection::new(Reason::MalformedOp, m);
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(bad(format!(
                "payload is {} bytes, at most {MAX_PAYLOAD_BYTES} allowed",
                bytes.len()
            )));
        }
        // One pass: serde's derive refuses a repeated top-level field; `StrictObject` refuses
        // repeated keys at any depth inside params (serde_json alone keeps the last), so what a
        // human reads in the file is what the gate binds.
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if w.v != PAYLOAD_VERSION {
            return Err(bad(format!(
                "v is {}, this build reads v {PAYLOAD_VERSION}",
                w.v
            )));
        }
        if !valid_op_kind(&w.op) {
            return Err(bad(format!(
                "op {:?} is not a dotted lower-case name like guest.destroy",
                w.op
            )));
        }
        if !valid_host(&w.host) {
            return Err(bad(format!("host {:?} is not a node name", w.host)));
        }
        if let Some(g) = w.guest {
            if !VMID_RANGE.contains(&g) {
                return Err(bad(format!(
                    "guest {g} is outside the VMID range 100..999999999"
                )));
            }
        }
        let nonce = Nonce::parse(&w.nonce).map_err(bad)?;
        let not_before = utc_time("not_before", &w.not_before).map_err(bad)?;
        let not_after = utc_time("not_after", &w.not_after).map_err(bad)?;
        if not_after <= not_before {
            return Err(bad("not_after is not later than not_before".into()));
        }
        // Exact: a 24 h limit admits 24 h, not 24 h and 999 ms.
        let ttl = not_after - not_before;
        if ttl > time::Duration::seconds(max_ttl_secs) {
            return Err(bad(format!(
                "window of {ttl} is longer than the allowed {max_ttl_secs} s"
            )));
        }
        Ok(OpPayload {
            op: w.op,
            host: w.host,
            guest: w.guest,
            params: w.params.map(|p| p.0).unwrap_or_default(),
            nonce,
            not_before,
            not_after,
        })
    }
}

fn utc_time(field: &str, s: &str) -> Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("{field} {s:?} is not an RFC 3339 time: {e}"))?;
    if t.offset() != UtcOffset::UTC {
        return Err(format!("{field} {s:?} is not in UTC (end it with Z)"));
    }
    Ok(t)
}

fn valid_op_kind(op: &str) -> bool {
    op.len() <= 64
        && op.contains('.')
        && op.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_lowercase())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A JSON object whose keys are unique at every depth.
struct StrictObject(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_map(StrictVisitor)?.0 {
            serde_json::Value::Object(m) => Ok(StrictObject(m)),
            _ => Err(de::Error::custom("params must be an object")),
        }
    }
}

/// Any JSON value, refusing duplicate object keys at any depth.
struct StrictValue(serde_json::Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(b.into()))
    }
    fn visit_i64<E>(self, n: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(n.into()))
    }
    fn visit_str<E>(self, s: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(s.into()))
    }
    fn visit_string<E>(self, s: String) -> Result<StrictValue, E> {
        Ok(StrictValue(s.into()))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(serde_json::Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(StrictValue(serde_json::Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(StrictValue(serde_json::Value::Object(out)))
    }
}

#[cfg(test)]
mod tests;

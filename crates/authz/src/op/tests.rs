//! Tests of the op payload's parsing and binding rules.

use super::*;

const NONCE: &str = "k3J0c2Jq9yZ2Fh1mQ0xvUA";

fn doc(extra: &str) -> String {
    format!(
        r#"{{"v":1,"op":"guest.destroy","host":"pve-a","guest":104,"params":{{"purge":true}},"nonce":"{NONCE}","not_before":"2026-11-22T15:00:00Z","not_after":"2026-11-22T15:30:00Z"{extra}}}"#
    )
}

fn reject(bytes: &[u8]) -> Rejection {
    let r = OpPayload::parse(bytes, 86400).expect_err("should be malformed");
    assert_eq!(r.reason, Reason::MalformedOp, "{r}");
    r
}

#[test]
fn the_design_example_parses() {
    let p = OpPayload::parse(doc("").as_bytes(), 86400).unwrap();
    assert_eq!(p.op, "guest.destroy");
    assert_eq!(p.host, "pve-a");
    assert_eq!(p.guest, Some(104));
    assert_eq!(p.params.get("purge"), Some(&serde_json::Value::Bool(true)));
    assert_eq!(p.nonce.as_str(), NONCE);
    assert_eq!((p.not_after - p.not_before).whole_seconds(), 1800);
}

#[test]
fn guest_and_params_are_optional() {
    let s = format!(
        r#"{{"v":1,"op":"keys.rotate","host":"pve-a","nonce":"{NONCE}","not_before":"2026-11-22T15:00:00Z","not_after":"2026-11-22T15:30:00Z"}}"#
    );
    let p = OpPayload::parse(s.as_bytes(), 86400).unwrap();
    assert_eq!(p.guest, None);
    assert!(p.params.is_empty());
}

#[test]
fn unknown_field_is_malformed() {
    let r = reject(doc(r#","extra":1"#).as_bytes());
    assert!(r.detail.contains("extra"), "{r}");
}

#[test]
fn duplicate_keys_at_any_depth_are_malformed() {
    let r = reject(doc(r#","host":"pve-b""#).as_bytes());
    assert!(r.detail.contains("duplicate field `host`"), "{r}");
    let nested = doc("").replace(
        r#""params":{"purge":true}"#,
        r#""params":{"purge":true,"x":[{"a":1,"a":2}]}"#,
    );
    let r = reject(nested.as_bytes());
    assert!(r.detail.contains("duplicate key \"a\""), "{r}");
    let in_params = doc("").replace(r#"{"purge":true}"#, r#"{"purge":true,"purge":false}"#);
    reject(in_params.as_bytes());
}

#[test]
fn oversized_payload_is_malformed() {
    let pad = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_PAYLOAD_BYTES));
    let big = doc("").replace(r#"{"purge":true}"#, &pad);
    let r = reject(big.as_bytes());
    assert!(r.detail.contains("bytes"), "{r}");
}

#[test]
fn nonce_rules() {
    // 15 bytes = 120 bits: too short.
    reject(doc("").replace(NONCE, "AAAAAAAAAAAAAAAAAAAA").as_bytes());
    // padding and the standard alphabet are not base64url-unpadded.
    reject(
        doc("")
            .replace(NONCE, "k3J0c2Jq9yZ2Fh1mQ0xvUA==")
            .as_bytes(),
    );
    reject(doc("").replace(NONCE, "k3J0c2Jq9yZ2Fh1mQ0xv+A").as_bytes());
    assert!(Nonce::parse("k3J0c2Jq9yZ2Fh1mQ0xvUA").is_ok());
}

#[test]
fn window_rules() {
    let long = doc("").replace("2026-11-22T15:30:00Z", "2026-11-23T15:00:01Z");
    let r = reject(long.as_bytes());
    assert!(r.detail.contains("longer"), "{r}");
    assert!(OpPayload::parse(long.as_bytes(), 2 * 86400).is_ok());
    let exactly = doc("").replace("2026-11-22T15:30:00Z", "2026-11-23T15:00:00Z");
    assert!(OpPayload::parse(exactly.as_bytes(), 86400).is_ok());
    reject(doc("").replace("15:30:00Z", "15:00:00Z").as_bytes());
    reject(doc("").replace("15:30:00Z", "14:00:00Z").as_bytes());
    let offset = doc("").replace("15:30:00Z", "16:30:00+01:00");
    let r = reject(offset.as_bytes());
    assert!(r.detail.contains("UTC"), "{r}");
    reject(
        doc("")
            .replace("2026-11-22T15:00:00Z", "yesterday")
            .as_bytes(),
    );
}

#[test]
fn field_shapes() {
    reject(doc("").replace(r#""v":1"#, r#""v":2"#).as_bytes());
    reject(
        doc("")
            .replace(r#""guest":104"#, r#""guest":99"#)
            .as_bytes(),
    );
    reject(
        doc("")
            .replace(r#""guest":104"#, r#""guest":"104""#)
            .as_bytes(),
    );
    reject(doc("").replace("pve-a", "pve a").as_bytes());
    reject(doc("").replace("pve-a", "").as_bytes());
    reject(doc("").replace("guest.destroy", "Guest.Destroy").as_bytes());
    reject(doc("").replace("guest.destroy", "destroy").as_bytes());
    reject(doc("").replace(r#"{"purge":true}"#, "[1]").as_bytes());
    reject(b"not json");
    reject(b"");
}

#[test]
fn an_explicit_null_guest_or_params_is_malformed_not_absent() {
    reject(
        doc("")
            .replace(r#""guest":104"#, r#""guest":null"#)
            .as_bytes(),
    );
    reject(
        doc("")
            .replace(r#""params":{"purge":true}"#, r#""params":null"#)
            .as_bytes(),
    );
}

#[test]
fn the_window_limit_is_exact_to_the_nanosecond() {
    let day = doc("").replace("2026-11-22T15:30:00Z", "2026-11-23T15:00:00Z");
    assert!(
        OpPayload::parse(day.as_bytes(), 86400).is_ok(),
        "exactly 24 h is allowed"
    );
    let over = doc("").replace("2026-11-22T15:30:00Z", "2026-11-23T15:00:00.999Z");
    reject(over.as_bytes());
}

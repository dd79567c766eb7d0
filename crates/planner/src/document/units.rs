//! Memory sizes as people write them: `4096` (MiB), `"4096"`, `"4 GiB"`, `"512MiB"`,
//! `"1.5 GiB"`, `"4294967296 B"`. Binary units only; `GB`/`G` are refused as ambiguous. Bytes
//! round up to the MiB that will be written. Must never round down.

use serde_json::Value;
use steward_model::{ByteSize, MiB};

const UNITS: [(&str, u64); 5] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// A size field: whole numbers are MiB; strings may carry a binary unit.
pub fn parse_mib(v: &Value) -> Result<MiB, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(MiB)
            .ok_or_else(|| format!("{n} is not a whole number of MiB")),
        Value::String(s) => parse_str(s),
        other => Err(format!(
            "expected a number of MiB or a string like \"4 GiB\", got {other}"
        )),
    }
}

fn parse_str(s: &str) -> Result<MiB, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() {
        return Err(format!("{s:?} does not start with a number"));
    }
    let unit_l = unit.to_ascii_lowercase();
    let scale = if unit.is_empty() {
        1 << 20
    } else if let Some((_, m)) = UNITS.iter().find(|(u, _)| *u == unit_l) {
        *m
    } else if ["k", "m", "g", "t", "kb", "mb", "gb", "tb"].contains(&unit_l.as_str()) {
        return Err(format!(
            "unit {unit:?} is ambiguous: write KiB, MiB, GiB or TiB (binary), or B"
        ));
    } else {
        return Err(format!("unknown unit {unit:?} (B, KiB, MiB, GiB, TiB)"));
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || frac.contains('.') || frac.len() > 9 || num.ends_with('.') {
        return Err(format!("{num:?} is not a number"));
    }
    let overflow = || format!("{s:?} is too large");
    let int: u128 = int.parse().map_err(|_| overflow())?;
    let frac_num: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| overflow())?
    };
    let frac_den: u128 = 10u128.pow(u32::try_from(frac.len()).map_err(|_| overflow())?);
    let scale = u128::from(scale);
    // bytes = (int + frac_num/frac_den) * scale, rounded up to whole bytes.
    let bytes = int
        .checked_mul(scale)
        .and_then(|b| b.checked_add((frac_num * scale).div_ceil(frac_den)))
        .ok_or_else(overflow)?;
    let bytes = u64::try_from(bytes).map_err(|_| overflow())?;
    Ok(ByteSize(bytes).to_mib_ceil())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_accepted_form() {
        for (v, mib) in [
            (json!(4096), 4096),
            (json!("4096"), 4096),
            (json!("4 GiB"), 4096),
            (json!("4GiB"), 4096),
            (json!("4gib"), 4096),
            (json!("512MiB"), 512),
            (json!("1.5 GiB"), 1536),
            (json!("4294967296 B"), 4096),
            (json!("1000000000 B"), 954), // 953.67 MiB, rounded up
            (json!("1 KiB"), 1),
            (json!("1 TiB"), 1 << 20),
        ] {
            assert_eq!(parse_mib(&v), Ok(MiB(mib)), "{v}");
        }
    }

    #[test]
    fn refusals_say_why() {
        for (v, why) in [
            (json!("4 GB"), "ambiguous"),
            (json!("4G"), "ambiguous"),
            (json!("4 parsecs"), "unknown unit"),
            (json!("GiB"), "number"),
            (json!("1.2.3 GiB"), "not a number"),
            (json!(-1), "whole number"),
            (json!(1.5), "whole number"),
            (json!(true), "expected"),
            (json!("99999999999999999999999 TiB"), "too large"),
        ] {
            let e = parse_mib(&v).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
    }
}

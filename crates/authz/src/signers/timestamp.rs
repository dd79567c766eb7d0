//! allowed_signers time stamps (`valid-after`/`valid-before`), as OpenSSH's
//! `parse_absolute_time` reads them: `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, optionally
//! followed by `Z` or `UTC` (any case). Without a suffix OpenSSH reads the host's local time zone;
//! Steward refuses that form instead of guessing (a trust window must not move with `TZ`). Must
//! never consult the environment or the clock.

use time::{macros::format_description, PrimitiveDateTime};

/// Parses a time stamp to Unix seconds, or says what is wrong with it.
pub fn parse(s: &str) -> Result<i64, String> {
    let lower = s.to_ascii_lowercase();
    let digits = if let Some(d) = lower.strip_suffix("utc") {
        d
    } else if let Some(d) = lower.strip_suffix('z') {
        d
    } else {
        return Err(format!(
            "time {s:?} has no Z or UTC suffix: OpenSSH would read it in the host's local time \
             zone, Steward requires UTC (write {s}Z)"
        ));
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "time {s:?} is not YYYYMMDD[HHMM[SS]] followed by Z or UTC"
        ));
    }
    let parsed = match digits.len() {
        8 => PrimitiveDateTime::parse(
            &format!("{digits}000000"),
            format_description!("[year][month][day][hour][minute][second]"),
        ),
        12 => PrimitiveDateTime::parse(
            &format!("{digits}00"),
            format_description!("[year][month][day][hour][minute][second]"),
        ),
        14 => PrimitiveDateTime::parse(
            digits,
            format_description!("[year][month][day][hour][minute][second]"),
        ),
        _ => {
            return Err(format!(
                "time {s:?} is not YYYYMMDD[HHMM[SS]] followed by Z or UTC"
            ))
        }
    };
    let t = parsed
        .map(|t| t.assume_utc().unix_timestamp())
        .map_err(|e| format!("time {s:?} is not a valid date and time: {e}"))?;
    // OpenSSH refuses times before the epoch, and reads 0 as "not set".
    if t <= 0 {
        return Err(format!("time {s:?} is not after 1970-01-01T00:00:00Z"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_openssh_form_with_utc_suffix() {
        assert_eq!(parse("20200101Z"), Ok(1_577_836_800));
        assert_eq!(parse("20200101utc"), Ok(1_577_836_800));
        assert_eq!(parse("202001010130Z"), Ok(1_577_836_800 + 5400));
        assert_eq!(parse("20200101013005UTC"), Ok(1_577_836_800 + 5405));
        assert_eq!(parse("20200101013005z"), Ok(1_577_836_800 + 5405));
    }

    #[test]
    fn refuses_local_time_and_other_forms() {
        for bad in [
            "20200101",
            "2020-01-01Z",
            "0x5e0be100",
            "+1d",
            "always",
            "2020010Z",
            "20201301Z",
            "20200230Z",
            "20200101246000Z",
            "Z",
            "",
            "19700101Z",
            "19600101Z",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}

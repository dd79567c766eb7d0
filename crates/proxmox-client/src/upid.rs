//! `Upid`: a Proxmox task id, parsed and printed in its exact format
//! `UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:`. `pstart` may have
//! nine digits on a node up for more than ~497 days (pve-common `PVE::Tools::upid_decode`
//! accepts 8 or 9). A malformed UPID is an error, never a panic; printing a parsed UPID gives
//! back the same string.

use std::fmt;
use std::str::FromStr;

/// A Proxmox VE task id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Upid {
    /// Node that runs the task.
    pub node: String,
    /// Worker process id.
    pub pid: u32,
    /// Worker process start, in clock ticks (up to 9 hex digits).
    pub pstart: u64,
    /// Task start, Unix seconds.
    pub starttime: u32,
    /// Task type (`qmstart`, `vzdestroy`, …).
    pub kind: String,
    /// Task object id (usually the VMID; may be empty).
    pub id: String,
    /// The user or token that started it (`root@pam!steward`).
    pub user: String,
}

/// What is wrong with a UPID string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpidError(pub String);

impl fmt::Display for UpidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed UPID: {}", self.0)
    }
}

impl std::error::Error for UpidError {}

fn upper_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

fn hex8(field: &str, s: &str) -> Result<u32, UpidError> {
    if s.len() != 8 || !upper_hex(s) {
        return Err(UpidError(format!(
            "{field} {s:?} is not 8 upper-case hex digits"
        )));
    }
    u32::from_str_radix(s, 16).map_err(|e| UpidError(format!("{field}: {e}")))
}

fn hex_pstart(s: &str) -> Result<u64, UpidError> {
    if !(8..=9).contains(&s.len()) || !upper_hex(s) {
        return Err(UpidError(format!(
            "pstart {s:?} is not 8 or 9 upper-case hex digits"
        )));
    }
    u64::from_str_radix(s, 16).map_err(|e| UpidError(format!("pstart: {e}")))
}

impl FromStr for Upid {
    type Err = UpidError;

    fn from_str(s: &str) -> Result<Upid, UpidError> {
        let rest = s
            .strip_prefix("UPID:")
            .ok_or_else(|| UpidError("does not start with UPID:".into()))?;
        let rest = rest
            .strip_suffix(':')
            .ok_or_else(|| UpidError("does not end with ':'".into()))?;
        // node, pid, pstart, starttime, type, id, then the user (which holds no ':').
        let parts: Vec<&str> = rest.splitn(7, ':').collect();
        let [node, pid, pstart, starttime, kind, id, user] = parts[..] else {
            return Err(UpidError(format!("{} fields, 7 expected", parts.len())));
        };
        if node.is_empty() || kind.is_empty() || user.is_empty() || user.contains(':') {
            return Err(UpidError(
                "empty node, type or user, or ':' in the user".into(),
            ));
        }
        Ok(Upid {
            node: node.into(),
            pid: hex8("pid", pid)?,
            pstart: hex_pstart(pstart)?,
            starttime: hex8("starttime", starttime)?,
            kind: kind.into(),
            id: id.into(),
            user: user.into(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REF: &str = "UPID:pve-a:000A1B2C:0012D687:6740F3A1:qmstart:104:root@pam!steward:";

    #[test]
    fn the_reference_example() {
        let u: Upid = REF.parse().unwrap();
        assert_eq!(u.node, "pve-a");
        assert_eq!(u.pid, 0x000A_1B2C);
        assert_eq!(u.starttime, 0x6740_F3A1);
        assert_eq!(
            (u.kind.as_str(), u.id.as_str(), u.user.as_str()),
            ("qmstart", "104", "root@pam!steward")
        );
        assert_eq!(u.to_string(), REF);
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            "",
            "UPID:",
            "upid:pve-a:000A1B2C:0012D687:6740F3A1:qmstart:104:root@pam:",
            "UPID:pve-a:000A1B2C:0012D687:6740F3A1:qmstart:104:root@pam",
            "UPID:pve-a:a1b2c3d4:0012D687:6740F3A1:qmstart:104:root@pam:",
            "UPID:pve-a:0A1B2C:0012D687:6740F3A1:qmstart:104:root@pam:",
            "UPID::000A1B2C:0012D687:6740F3A1:qmstart:104:root@pam:",
            "UPID:pve-a:000A1B2C:0012D687:6740F3A1:qmstart:104::",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad:?}");
        }
        // Nine pstart digits (a node up for more than ~497 days) parse and print back.
        let long = "UPID:pve-a:000A1B2C:1012D6870:6740F3A1:qmstart:104:root@pam!steward:";
        let u: Upid = long.parse().unwrap();
        assert_eq!(u.pstart, 0x1_012D_6870);
        assert_eq!(u.to_string(), long);
        assert!(
            "UPID:pve-a:000A1B2C:11012D6870:6740F3A1:qmstart:104:root@pam:"
                .parse::<Upid>()
                .is_err()
        );
        // An empty id is allowed ("may be empty").
        assert!("UPID:pve-a:000A1B2C:0012D687:6740F3A1:vzdump::root@pam:"
            .parse::<Upid>()
            .is_ok());
    }

    proptest! {
        #[test]
        fn print_parse_round_trip(node in "[a-z][a-z0-9-]{0,10}", pid: u32, pstart in 0u64..=0xF_FFFF_FFFF, st: u32,
                                  kind in "[a-z]{2,10}", id in "[0-9]{0,6}", user in "[a-z]{1,6}@(pam|pve)(![a-z]{1,6})?") {
            let u = Upid { node, pid, pstart, starttime: st, kind, id, user };
            prop_assert_eq!(u.to_string().parse::<Upid>().unwrap(), u);
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<Upid>();
        }
    }
}

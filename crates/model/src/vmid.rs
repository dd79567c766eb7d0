//! `Vmid`: a Proxmox guest id, valid by construction (100 ..= 999 999 999, as Proxmox allows).
//! It must never hold an id Proxmox would refuse.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A Proxmox VE guest id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Vmid(u32);

/// A number outside Proxmox's VMID range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmidError(pub u64);

impl fmt::Display for VmidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a VMID ({}..={})",
            self.0,
            Vmid::MIN,
            Vmid::MAX
        )
    }
}

impl std::error::Error for VmidError {}

impl Vmid {
    /// The smallest VMID Proxmox accepts.
    pub const MIN: u32 = 100;
    /// The largest VMID Proxmox accepts.
    pub const MAX: u32 = 999_999_999;

    /// A VMID, if `n` is in range.
    pub fn new(n: u64) -> Result<Vmid, VmidError> {
        match u32::try_from(n) {
            Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(Vmid(v)),
            _ => Err(VmidError(n)),
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Vmid {
    type Error = VmidError;
    fn try_from(n: u32) -> Result<Vmid, VmidError> {
        Vmid::new(u64::from(n))
    }
}

impl From<Vmid> for u32 {
    fn from(v: Vmid) -> u32 {
        v.0
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_proxmoxs() {
        assert!(Vmid::new(99).is_err());
        assert_eq!(Vmid::new(100).map(Vmid::get), Ok(100));
        assert_eq!(Vmid::new(999_999_999).map(Vmid::get), Ok(999_999_999));
        assert!(Vmid::new(1_000_000_000).is_err());
        assert!(Vmid::new(u64::MAX).is_err());
        assert!(serde_json::from_str::<Vmid>("42").is_err());
        assert_eq!(
            serde_json::from_str::<Vmid>("104").map(Vmid::get).ok(),
            Some(104)
        );
    }
}

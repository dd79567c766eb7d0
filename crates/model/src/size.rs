//! Sizes: `MiB` (what Proxmox configs hold) and `ByteSize` (what status answers and humans
//! write), with the one conversion that matters for convergence: bytes round *up* to the MiB that
//! will be written, so a guest gets at least what was asked and the next plan sees no drift.
//! It must never round a size down.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Bytes in one MiB.
pub const MIB: u64 = 1024 * 1024;

/// A size in mebibytes (Proxmox's unit for `memory`, `swap`, `balloon`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MiB(pub u64);

/// A size in bytes (Proxmox's unit for `maxmem`, `mem`, `maxdisk` in lists and status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The smallest whole MiB that holds this many bytes.
    pub fn to_mib_ceil(self) -> MiB {
        MiB(self.0.div_ceil(MIB))
    }
}

impl MiB {
    /// The same size in bytes, saturating.
    pub fn to_bytes(self) -> ByteSize {
        ByteSize(self.0.saturating_mul(MIB))
    }
}

impl fmt::Display for MiB {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MiB", self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rounding_up_to_whole_mib() {
        assert_eq!(ByteSize(0).to_mib_ceil(), MiB(0));
        assert_eq!(ByteSize(1).to_mib_ceil(), MiB(1));
        assert_eq!(ByteSize(MIB).to_mib_ceil(), MiB(1));
        assert_eq!(ByteSize(MIB + 1).to_mib_ceil(), MiB(2));
        assert_eq!(ByteSize(u64::MAX).to_mib_ceil(), MiB(u64::MAX / MIB + 1));
    }

    proptest! {
        #[test]
        fn mib_round_trips_through_bytes(m in 0u64..(1 << 40)) {
            prop_assert_eq!(MiB(m).to_bytes().to_mib_ceil(), MiB(m));
        }

        #[test]
        fn ceil_holds_at_least_the_bytes(b in any::<u64>()) {
            let m = ByteSize(b).to_mib_ceil();
            prop_assert!(u128::from(m.0) * u128::from(MIB) >= u128::from(b));
            prop_assert!(u128::from(m.0) * u128::from(MIB) < u128::from(b) + u128::from(MIB));
        }
    }
}

//! Task ids as a Proxmox node mints them (`PVE::Tools::upid_encode`):
//! `UPID:$node:$pid(%08X):$pstart(%08X):$starttime(%08X):$type:$id:$user:`. The simulator writes
//! them from that format, not through the client's parser, so the client's UPID parsing is
//! tested against the node's form rather than against itself. It never parses a UPID it did not
//! make: task lookups compare the exact string.

use std::fmt;

/// One task's id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskId {
    /// Node name.
    pub node: String,
    /// Worker pid.
    pub pid: u32,
    /// Worker process start, in clock ticks since boot.
    pub pstart: u64,
    /// Task start, Unix seconds.
    pub starttime: u32,
    /// Task type (`qmstart`, `vzdestroy`, …).
    pub kind: String,
    /// The object, usually the VMID; may be empty.
    pub id: String,
    /// Who started it (`user@realm!tokenid` for a token).
    pub user: String,
}

impl fmt::Display for TaskId {
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

    #[test]
    fn formats_as_upid_encode_does() {
        let t = TaskId {
            node: "pve-a".into(),
            pid: 0x1a2b,
            pstart: 0x0012_D687,
            starttime: 0x6745_0000,
            kind: "qmstart".into(),
            id: "104".into(),
            user: "steward@pve!agent".into(),
        };
        assert_eq!(
            t.to_string(),
            "UPID:pve-a:00001A2B:0012D687:67450000:qmstart:104:steward@pve!agent:"
        );
    }
}

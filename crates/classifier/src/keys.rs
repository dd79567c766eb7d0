//! The key tables, per guest kind, built from the Proxmox VE API schema (config `PUT` of
//! `/nodes/{node}/qemu/{vmid}/config` and `/nodes/{node}/lxc/{vmid}/config`, PVE 9.1) and
//! `docs/reference/pve-api.md` ("Data-bearing keys"). A key is benign only if it is listed
//! here with its reason; everything else is destructive. Must never list a key that stores,
//! attaches, replaces or exposes customer data, or that runs code on the host.

use steward_model::GuestKind;

/// QEMU keys that touch no data: (key, why it is benign).
const QEMU_BENIGN: &[(&str, &str)] = &[
    ("name", "display name"),
    ("description", "notes"),
    ("tags", "labels"),
    ("memory", "RAM size; no storage"),
    ("balloon", "RAM ballooning target"),
    ("shares", "memory shares"),
    ("cores", "CPU topology"),
    ("sockets", "CPU topology"),
    ("vcpus", "hot-plugged vCPUs"),
    ("cpu", "CPU model"),
    ("cpulimit", "CPU cap"),
    ("cpuunits", "CPU weight"),
    ("affinity", "host CPU pinning"),
    ("numa", "NUMA topology"),
    ("onboot", "start at boot"),
    ("startup", "boot order and delays"),
    ("boot", "boot device order (does not touch the devices)"),
    ("agent", "guest agent channel"),
    ("ostype", "guest OS hint"),
    ("tablet", "input device"),
    ("keyboard", "keyboard layout"),
    ("vga", "display adapter"),
    ("hotplug", "hot-plug policy"),
    ("localtime", "RTC in local time"),
    ("acpi", "ACPI"),
    ("kvm", "hardware virtualization"),
    ("freeze", "freeze CPU at start"),
    ("reboot", "reboot policy"),
    ("tdf", "time drift fix"),
    ("watchdog", "watchdog device"),
    ("rng0", "entropy source"),
    ("audio0", "audio device"),
    ("spice_enhancements", "display"),
];

/// LXC keys that touch no data.
const LXC_BENIGN: &[(&str, &str)] = &[
    ("hostname", "display name"),
    ("description", "notes"),
    ("tags", "labels"),
    ("memory", "RAM size; no storage"),
    ("swap", "swap size (not a volume)"),
    ("cores", "CPU count"),
    ("cpulimit", "CPU cap"),
    ("cpuunits", "CPU weight"),
    ("onboot", "start at boot"),
    ("startup", "boot order and delays"),
    ("nameserver", "DNS"),
    ("searchdomain", "DNS"),
    ("ostype", "guest OS hint"),
    ("console", "console device"),
    ("tty", "tty count"),
    ("cmode", "console mode"),
    ("timezone", "time zone"),
];

/// Indexed QEMU keys that touch no data (`net0`…).
/// (`hostpci`/`usb` pass host devices through: not listed, so they need a signature.)
/// (`serialN`/`parallelN` can name host devices: not listed either.)
const QEMU_BENIGN_INDEXED: &[&str] = &["net", "ipconfig", "numa"];
/// Indexed LXC keys that touch no data on an existing container: none. (`netN` carries the
/// container's identity, its MAC: benign only when the container is created.)
const LXC_BENIGN_INDEXED: &[&str] = &[];

/// Data-bearing keys: QEMU `scsi[n]`, `virtio[n]`, `sata[n]`, `ide[n]`, `efidisk0`,
/// `tpmstate0`, `unused[n]`, `virtiofs[n]`, `vmstate`; LXC `rootfs`, `mp[n]`, `unused[n]`,
/// `dev[n]` (reference: "Writing or deleting any of them can destroy data").
pub fn is_data_bearing_key(kind: GuestKind, key: &str) -> bool {
    let indexed = |prefix: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match kind {
        GuestKind::Qemu => {
            ["scsi", "virtio", "sata", "ide", "unused", "virtiofs"]
                .iter()
                .any(|p| indexed(p))
                || ["efidisk0", "tpmstate0", "vmstate"].contains(&key)
        }
        GuestKind::Lxc => ["mp", "unused", "dev"].iter().any(|p| indexed(p)) || key == "rootfs",
    }
}

/// Whether `key` is in the known-benign table for `kind`.
pub fn is_benign_key(kind: GuestKind, key: &str) -> bool {
    let (table, indexed) = match kind {
        GuestKind::Qemu => (QEMU_BENIGN, QEMU_BENIGN_INDEXED),
        GuestKind::Lxc => (LXC_BENIGN, LXC_BENIGN_INDEXED),
    };
    table.iter().any(|(k, _)| *k == key)
        || indexed.iter().any(|p| {
            key.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Keys that only shape a new guest at create time and touch no data.
/// `vmgenid` is the identity the agent gives a VM it creates (`steward_model::guest_identity`):
/// a new VM has no generation to preserve, so setting it at create destroys nothing.
const QEMU_CREATE_ONLY: &[&str] = &["scsihw", "bios", "machine", "vmgenid"];

/// Whether `key` is benign in a create call only.
pub fn is_benign_create_key(kind: GuestKind, key: &str) -> bool {
    match kind {
        GuestKind::Qemu => QEMU_CREATE_ONLY.contains(&key),
        GuestKind::Lxc => key == "arch" || steward_model::is_net_key(key),
    }
}

/// Whether a disk value allocates a new, empty volume: its one volume (`steward_model::volume_of`,
/// bare or as `file=`/`volume=`, never both) is `STORAGE:SIZE` with SIZE exactly
/// `\d+(\.\d+)?` (qemu-server's `NEW_DISK_RE`), never a volume id (`STORAGE:vm-104-disk-0`), a
/// path, or a size Proxmox would read another way. A value that names a second volume
/// (`local-lvm:4,file=local-lvm:vm-101-disk-7`) is not a new volume.
pub fn is_new_volume(kind: GuestKind, key: &str, value: &str) -> bool {
    let Ok(Some(volume)) = steward_model::volume_of(kind, key, value) else {
        return false;
    };
    let Some((storage, size)) = volume.split_once(':') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let size_ok = match size.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(size),
    };
    !storage.is_empty()
        && storage
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && size_ok
        && !value.contains("import-from")
}

#[cfg(test)]
mod new_volume_tests {
    use super::is_new_volume;
    use steward_model::GuestKind;

    fn new(v: &str) -> bool {
        is_new_volume(GuestKind::Qemu, "scsi1", v)
    }

    #[test]
    fn only_proxmox_allocation_syntax_is_a_new_volume() {
        for ok in [
            "local-lvm:32",
            "local-lvm:0.5",
            "local-lvm:4,ssd=1",
            "ceph_pool.1:10",
            "file=local-lvm:4,ssd=1",
        ] {
            assert!(new(ok), "{ok}");
        }
        for bad in [
            "local-lvm:1.2.3",
            "local-lvm:.5",
            "local-lvm:5.",
            "local-lvm:",
            "local-lvm:vm-104-disk-0",
            "/dev/sdb",
            ":32",
            "local-lvm:32,import-from=local:iso/x.img",
            // A second volume behind the allocation: Proxmox's parser would refuse it, and the
            // classifier must never call it new.
            "local-lvm:4,file=local-lvm:vm-101-disk-7",
            "file=local-lvm:4,file=local-lvm:vm-101-disk-7",
            "size=4G",
        ] {
            assert!(!new(bad), "{bad}");
        }
        assert!(is_new_volume(
            GuestKind::Lxc,
            "rootfs",
            "volume=local-lvm:8"
        ));
        assert!(!is_new_volume(
            GuestKind::Lxc,
            "mp0",
            "local-lvm:8,volume=local-lvm:vm-102-disk-1,mp=/data"
        ));
    }
}

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
    ("nameserver", "cloud-init DNS servers"),
    ("searchdomain", "cloud-init DNS search domains"),
    ("citype", "cloud-init data format"),
    ("ciupgrade", "cloud-init package upgrade on first boot"),
    // Not `ciuser`, `sshkeys`, `cipassword` or `cicustom`: on an existing guest they say who
    // may log in (cloud-init applies them at the next boot), which opens the guest's data to
    // whoever holds the key. They need a signature, except in a create (a new guest holds no
    // data yet).
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
/// `ciuser` and `sshkeys` say who may log in to a guest that holds no data yet. `boot` on an
/// existing guest can put media or a network it boots from ahead of its disk, which can then
/// overwrite them: benign only before there is anything to overwrite.
const QEMU_CREATE_ONLY: &[&str] = &[
    "scsihw", "bios", "machine", "vmgenid", "ciuser", "sshkeys", "boot",
];

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

/// Disk options that may be set or changed without a signature: none of them stores, attaches,
/// replaces or exposes data. (`cache=unsafe` can lose writes on a host crash; a mount point's
/// `mp` on a volume that holds data moves that data under another path: neither is benign.)
const BENIGN_DISK_OPTIONS: &[&str] = &[
    "discard",
    "ssd",
    "iothread",
    "cache",
    "backup",
    "replicate",
    "aio",
    "efitype",
    "pre-enrolled-keys",
    "version",
    "ro",
    "acl",
    "quota",
];

/// The options of a disk value (`name` → value), without the volume (bare, `file=` or
/// `volume=`); None when a part has space around it (a key Proxmox would not read as written).
fn disk_options(value: &str) -> Option<std::collections::BTreeMap<&str, &str>> {
    let mut out = std::collections::BTreeMap::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        if part.trim() != part {
            return None;
        }
        if let Some((k, v)) = part.split_once('=') {
            if !["file", "volume"].contains(&k) {
                out.insert(k, v);
            }
        }
    }
    Some(out)
}

/// Whether `value` for data-bearing `key` is an empty CD-ROM drive (`none,media=cdrom`).
fn is_empty_cdrom(kind: GuestKind, key: &str, value: &str) -> bool {
    kind == GuestKind::Qemu
        && value.split(',').any(|p| p == "media=cdrom")
        && steward_model::volume_of(kind, key, value) == Ok(None)
}

/// Whether `value` for data-bearing `key` is a CD-ROM drive with an ISO image in it (benign in
/// a create only: on an existing guest, media it may boot from can overwrite its disks).
pub fn is_iso_cdrom(kind: GuestKind, key: &str, value: &str) -> bool {
    kind == GuestKind::Qemu
        && value.split(',').any(|p| p == "media=cdrom")
        && match steward_model::volume_of(kind, key, value) {
            Ok(Some(v)) => v
                .split_once(":iso/")
                .is_some_and(|(s, f)| !s.is_empty() && !f.is_empty() && !f.contains('/')),
            _ => false,
        }
}

/// Why writing `value` to data-bearing `key` in `change` destroys nothing, or None. Three
/// cases, each a claim bound to the change's digest that the executor checks against the
/// config read at that digest before the write (`steward_gate::binding::check_slots`):
/// - a new, empty volume (`STORAGE:SIZE` with known-benign options, and `mp` for a new mount
///   point) in a slot the change says is empty (in neither `removes` nor `keeps`);
/// - an empty CD-ROM drive (`none,media=cdrom`, ejecting an ISO);
/// - the same volume the slot holds (`keeps` carries the slot's value now), where every option
///   that differs from that value is known-benign (never `mp`, `size`, or `cache=unsafe`).
pub fn disk_write_benign(
    kind: GuestKind,
    key: &str,
    value: &str,
    change: &steward_model::ConfigChange,
) -> Option<String> {
    if change.digest.is_none() || change.removes.contains_key(key) {
        return None;
    }
    let new = disk_options(value)?;
    let unsafe_cache =
        |o: &std::collections::BTreeMap<&str, &str>| o.get("cache") == Some(&"unsafe");
    match change.keeps.get(key) {
        Some(held) => {
            let old = disk_options(held)?;
            let same_volume = steward_model::volume_of(kind, key, value).ok()?
                == steward_model::volume_of(kind, key, held).ok()?;
            let changed = old
                .keys()
                .chain(new.keys())
                .filter(|k| old.get(*k) != new.get(*k));
            let benign = changed
                .into_iter()
                .all(|k| BENIGN_DISK_OPTIONS.contains(k) && *k != "media");
            let adds_unsafe_cache = unsafe_cache(&new) && !unsafe_cache(&old);
            (same_volume && benign && !adds_unsafe_cache)
                .then(|| format!("{key}: new options on the volume it keeps"))
        }
        None if is_new_volume(kind, key, value) => {
            let ok = new.iter().all(|(k, v)| {
                BENIGN_DISK_OPTIONS.contains(k)
                    || (*k == "mp" && kind == GuestKind::Lxc)
                    || (*k == "media" && *v == "disk")
            }) && !unsafe_cache(&new);
            ok.then(|| format!("{key}: a new, empty volume in an empty slot"))
        }
        None if is_empty_cdrom(kind, key, value) => Some(format!("{key}: an empty CD-ROM drive")),
        None => None,
    }
}

/// The `hwaddr=` of an LXC NIC value, if it has exactly one.
pub fn lxc_hwaddr(value: &str) -> Option<String> {
    let mut found = value
        .split(',')
        .filter_map(|p| p.strip_prefix("hwaddr="))
        .map(|m| m.to_ascii_uppercase());
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Whether writing `value` to a container's NIC `key` keeps its identity: the change carries a
/// digest and either keeps the slot's value now (`keeps`) with the same MAC in what it writes,
/// or says the slot is empty and writes no MAC (Proxmox makes a new one for a new NIC). The
/// executor checks either claim at the digest (`steward_gate::binding::check_slots`).
pub fn lxc_nic_write_benign(key: &str, value: &str, change: &steward_model::ConfigChange) -> bool {
    if change.digest.is_none() || value.split(',').any(|p| p.trim() != p) {
        return false;
    }
    match change.keeps.get(key) {
        Some(kept) => lxc_hwaddr(kept).is_some_and(|m| lxc_hwaddr(value) == Some(m)),
        None => !value.contains("hwaddr"),
    }
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

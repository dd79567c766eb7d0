//! The one table of managed fields: each field of the desired-state document beside the Proxmox
//! config key it manages on a QEMU guest and on an LXC container (`None`: the field does not
//! exist for that kind). The document's validation, the kind checks and normalization all read
//! this table, so a field cannot be accepted by one and forgotten by another. Adding a row is
//! the whole of teaching the planner a key's *name*; `normalize` then needs its rule.
//! A key must never be managed without a row here.

use steward_model::GuestKind;

/// One managed field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedField {
    /// The document field (`memory`, `name`, …).
    pub field: &'static str,
    /// The QEMU config key, if QEMU has it.
    pub qemu: Option<&'static str>,
    /// The LXC config key, if LXC has it.
    pub lxc: Option<&'static str>,
}

impl ManagedField {
    /// The config key on a guest of `kind`, if the field exists for that kind.
    pub fn key(&self, kind: GuestKind) -> Option<&'static str> {
        match kind {
            GuestKind::Qemu => self.qemu,
            GuestKind::Lxc => self.lxc,
        }
    }
}

const fn both(field: &'static str) -> ManagedField {
    ManagedField {
        field,
        qemu: Some(field),
        lxc: Some(field),
    }
}

/// Every managed field, in the order normalization visits them.
pub const MANAGED: &[ManagedField] = &[
    ManagedField {
        field: "name",
        qemu: Some("name"),
        lxc: Some("hostname"),
    },
    both("memory"),
    both("cores"),
    ManagedField {
        field: "sockets",
        qemu: Some("sockets"),
        lxc: None,
    },
    ManagedField {
        field: "swap",
        qemu: None,
        lxc: Some("swap"),
    },
    both("tags"),
    both("description"),
    both("onboot"),
    both("startup"),
    both("cpulimit"),
    both("cpuunits"),
];

/// Document fields that are not managed config keys.
pub const STRUCTURAL: &[&str] = &["vmid", "kind", "state", "create", "disks", "node"];

/// The managed field named `field`.
pub fn managed(field: &str) -> Option<&'static ManagedField> {
    MANAGED.iter().find(|m| m.field == field)
}

/// Whether `field` is a field of the document (structural, managed or a setting).
pub fn is_document_field(field: &str) -> bool {
    STRUCTURAL.contains(&field)
        || managed(field).is_some()
        || is_setting(field)
        || is_disk_slot(field)
}

/// The number of distinct config keys across both kinds.
pub const CONFIG_KEY_COUNT: usize = 12;

/// Every distinct config key any managed field maps to, in table order.
pub const CONFIG_KEYS: [&str; CONFIG_KEY_COUNT] = config_keys();

const fn config_keys() -> [&'static str; CONFIG_KEY_COUNT] {
    let mut out = [""; CONFIG_KEY_COUNT];
    let mut n = 0;
    let mut i = 0;
    while i < MANAGED.len() {
        let pair = [MANAGED[i].qemu, MANAGED[i].lxc];
        let mut j = 0;
        while j < 2 {
            if let Some(k) = pair[j] {
                let mut seen = false;
                let mut x = 0;
                while x < n {
                    if const_eq(out[x], k) {
                        seen = true;
                    }
                    x += 1;
                }
                if !seen {
                    // Fails to compile if CONFIG_KEY_COUNT is too small.
                    out[n] = k;
                    n += 1;
                }
            }
            j += 1;
        }
        i += 1;
    }
    assert!(
        n == CONFIG_KEY_COUNT,
        "CONFIG_KEY_COUNT must equal the distinct keys"
    );
    out
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// How one option of a property string is written in a document and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptType {
    /// `true`/`false` (or 1/0), stored `1`/`0`; absent reads as `default`.
    Bool {
        /// What an absent option means.
        default: bool,
    },
    /// A whole number in `min..=max`.
    Int {
        /// Smallest.
        min: u64,
        /// Largest.
        max: u64,
    },
    /// A decimal number from 0 to `max` (`rate`, MB/s).
    Number {
        /// Largest.
        max: u32,
    },
    /// One of these words.
    Enum(&'static [&'static str]),
    /// A network bridge name (`vmbr0`, `vmbr0v20`).
    Bridge,
    /// An interface name inside a container (`eth0`).
    IfName,
    /// A CPU model name (`host`, `x86-64-v2-AES`, `custom-mine`).
    CpuModel,
    /// IPv4: `dhcp`, `manual` or an address with prefix (`10.0.0.5/24`).
    Ip4Cidr,
    /// IPv6: `dhcp`, `auto`, `manual` or an address with prefix.
    Ip6Cidr,
    /// An IPv4 address.
    Ip4,
    /// An IPv6 address.
    Ip6,
    /// `on` or `ignore` (a disk's `discard`); `true`/`false` in a document.
    Switch,
    /// An absolute path inside the guest (an LXC mount point's `mp`).
    Path,
}

/// One option of a property string the document may manage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt {
    /// The option's name in Proxmox's property string and in the document.
    pub name: &'static str,
    /// Its type.
    pub ty: OptType,
}

const fn opt(name: &'static str, ty: OptType) -> Opt {
    Opt { name, ty }
}

const BOOL: OptType = OptType::Bool { default: false };

/// How a managed setting's value is read, compared and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `0`/`1`; absent reads as `default`.
    Bool {
        /// What an absent key means.
        default: bool,
    },
    /// A whole number in `min..=max`; absent is no number.
    Int {
        /// Smallest.
        min: u64,
        /// Largest.
        max: u64,
    },
    /// One of these words.
    Enum(&'static [&'static str]),
    /// A user name (`ciuser`).
    UserName,
    /// Words separated by spaces, order kept (`nameserver`, `searchdomain`).
    Words,
    /// A comma list read as a set (`hotplug`): `1` is `default`, `0` is none.
    Features {
        /// Every feature.
        all: &'static [&'static str],
        /// What `1` and an absent key mean.
        default: &'static [&'static str],
    },
    /// OpenSSH public keys, one per line, stored URL-encoded.
    SshKeys,
    /// Boot devices in order, stored `order=scsi0;net0`.
    BootOrder,
    /// A property string of which the document manages the options it names; `default` is the
    /// option that may be written bare (`virtio`, `host`, `1`), `required` what a new value
    /// needs.
    Options {
        /// The options a document may set.
        opts: &'static [Opt],
        /// The option written without `key=`.
        default: Option<&'static str>,
        /// Options a document must give.
        required: &'static [&'static str],
    },
}

/// A managed config key beyond the fixed fields: one row per key (or indexed family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingKey {
    /// The Proxmox key, or the family's prefix (`net`, `ipconfig`).
    pub key: &'static str,
    /// For a family, the largest index (`net0`…`net31`).
    pub max_index: Option<u32>,
    /// The kind it exists for.
    pub kind: GuestKind,
    /// How it is compared.
    pub rule: Rule,
}

const QEMU_NET: &[Opt] = &[
    opt(
        "model",
        OptType::Enum(&[
            "e1000",
            "e1000-82540em",
            "e1000-82544gc",
            "e1000-82545em",
            "e1000e",
            "i82551",
            "i82557b",
            "i82559er",
            "ne2k_isa",
            "ne2k_pci",
            "pcnet",
            "rtl8139",
            "virtio",
            "vmxnet3",
        ]),
    ),
    opt("bridge", OptType::Bridge),
    opt("tag", OptType::Int { min: 1, max: 4094 }),
    opt("firewall", BOOL),
    opt("rate", OptType::Number { max: 100_000 }),
    opt("mtu", OptType::Int { min: 1, max: 65520 }),
    opt("queues", OptType::Int { min: 0, max: 64 }),
    opt("link_down", BOOL),
];

const LXC_NET: &[Opt] = &[
    opt("name", OptType::IfName),
    opt("bridge", OptType::Bridge),
    opt("tag", OptType::Int { min: 1, max: 4094 }),
    opt("firewall", BOOL),
    opt("rate", OptType::Number { max: 100_000 }),
    opt(
        "mtu",
        OptType::Int {
            min: 64,
            max: 65535,
        },
    ),
    opt("link_down", BOOL),
    opt("ip", OptType::Ip4Cidr),
    opt("gw", OptType::Ip4),
    opt("ip6", OptType::Ip6Cidr),
    opt("gw6", OptType::Ip6),
];

const IPCONFIG: &[Opt] = &[
    opt("ip", OptType::Ip4Cidr),
    opt("gw", OptType::Ip4),
    opt("ip6", OptType::Ip6Cidr),
    opt("gw6", OptType::Ip6),
];

const AGENT: &[Opt] = &[
    opt("enabled", BOOL),
    opt("fstrim_cloned_disks", BOOL),
    opt("freeze-fs", OptType::Bool { default: true }),
    opt("type", OptType::Enum(&["virtio", "isa"])),
];

const CPU: &[Opt] = &[opt("cputype", OptType::CpuModel)];

const fn qemu(key: &'static str, rule: Rule) -> SettingKey {
    SettingKey {
        key,
        max_index: None,
        kind: GuestKind::Qemu,
        rule,
    }
}

/// Every managed setting, by kind. (Passwords are never among them: `cipassword` does not
/// travel in desired state.)
pub const SETTINGS: &[SettingKey] = &[
    qemu(
        "cpu",
        Rule::Options {
            opts: CPU,
            default: Some("cputype"),
            required: &["cputype"],
        },
    ),
    qemu("numa", Rule::Bool { default: false }),
    qemu(
        "balloon",
        Rule::Int {
            min: 0,
            max: 4_194_304,
        },
    ),
    qemu(
        "agent",
        Rule::Options {
            opts: AGENT,
            default: Some("enabled"),
            required: &["enabled"],
        },
    ),
    qemu("boot", Rule::BootOrder),
    qemu(
        "hotplug",
        Rule::Features {
            all: &["cloudinit", "cpu", "disk", "memory", "network", "usb"],
            default: &["disk", "network", "usb"],
        },
    ),
    qemu("ciuser", Rule::UserName),
    qemu("sshkeys", Rule::SshKeys),
    qemu("nameserver", Rule::Words),
    qemu("searchdomain", Rule::Words),
    qemu(
        "citype",
        Rule::Enum(&["configdrive2", "nocloud", "opennebula"]),
    ),
    qemu("ciupgrade", Rule::Bool { default: true }),
    SettingKey {
        key: "ipconfig",
        max_index: Some(31),
        kind: GuestKind::Qemu,
        rule: Rule::Options {
            opts: IPCONFIG,
            default: None,
            required: &[],
        },
    },
    SettingKey {
        key: "net",
        max_index: Some(31),
        kind: GuestKind::Qemu,
        rule: Rule::Options {
            opts: QEMU_NET,
            default: Some("model"),
            required: &["model"],
        },
    },
    SettingKey {
        key: "nameserver",
        max_index: None,
        kind: GuestKind::Lxc,
        rule: Rule::Words,
    },
    SettingKey {
        key: "searchdomain",
        max_index: None,
        kind: GuestKind::Lxc,
        rule: Rule::Words,
    },
    SettingKey {
        key: "net",
        max_index: Some(31),
        kind: GuestKind::Lxc,
        rule: Rule::Options {
            opts: LXC_NET,
            default: None,
            required: &["name"],
        },
    },
];

const QEMU_DISK_COMMON: [Opt; 5] = [
    opt("discard", OptType::Switch),
    opt(
        "cache",
        OptType::Enum(&["none", "writethrough", "writeback", "unsafe", "directsync"]),
    ),
    opt("backup", OptType::Bool { default: true }),
    opt("replicate", OptType::Bool { default: true }),
    opt("aio", OptType::Enum(&["native", "threads", "io_uring"])),
];

const SCSI: &[Opt] = &[
    QEMU_DISK_COMMON[0],
    QEMU_DISK_COMMON[1],
    QEMU_DISK_COMMON[2],
    QEMU_DISK_COMMON[3],
    QEMU_DISK_COMMON[4],
    opt("ssd", BOOL),
    opt("iothread", BOOL),
];
const VIRTIO: &[Opt] = &[
    QEMU_DISK_COMMON[0],
    QEMU_DISK_COMMON[1],
    QEMU_DISK_COMMON[2],
    QEMU_DISK_COMMON[3],
    QEMU_DISK_COMMON[4],
    opt("iothread", BOOL),
];
const SATA_IDE: &[Opt] = &[
    QEMU_DISK_COMMON[0],
    QEMU_DISK_COMMON[1],
    QEMU_DISK_COMMON[2],
    QEMU_DISK_COMMON[3],
    QEMU_DISK_COMMON[4],
    opt("ssd", BOOL),
];
const EFIDISK: &[Opt] = &[
    opt("efitype", OptType::Enum(&["2m", "4m"])),
    opt("pre-enrolled-keys", BOOL),
];
const TPMSTATE: &[Opt] = &[opt("version", OptType::Enum(&["v1.2", "v2.0"]))];
const ROOTFS: &[Opt] = &[
    opt("acl", BOOL),
    opt("quota", BOOL),
    opt("replicate", OptType::Bool { default: true }),
];
const MOUNT_POINT: &[Opt] = &[
    opt("mp", OptType::Path),
    opt("backup", BOOL),
    opt("ro", BOOL),
    opt("acl", BOOL),
    opt("quota", BOOL),
    opt("replicate", OptType::Bool { default: true }),
];

/// A disk slot (or family) the document may manage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSlot {
    /// The config key, or the family's prefix (`scsi`, `mp`).
    pub key: &'static str,
    /// For a family, the largest index.
    pub max_index: Option<u32>,
    /// The kind it exists for.
    pub kind: GuestKind,
    /// The options a document may set.
    pub opts: &'static [Opt],
    /// Options a document must give for a disk here.
    pub required: &'static [&'static str],
    /// Whether the slot may be a CD-ROM drive.
    pub cdrom: bool,
    /// Whether the document gives its size (`efidisk0` and `tpmstate0` have Proxmox's).
    pub sized: bool,
}

impl DiskSlot {
    /// Whether config key `key` is this slot.
    pub fn matches(&self, key: &str) -> bool {
        SettingKey {
            key: self.key,
            max_index: self.max_index,
            kind: self.kind,
            rule: Rule::Words,
        }
        .matches(key)
    }

    /// The property-string option that holds the volume (`file`, `volume`).
    pub fn volume_option(&self) -> &'static str {
        match self.kind {
            GuestKind::Qemu => "file",
            GuestKind::Lxc => "volume",
        }
    }
}

const fn disk(
    key: &'static str,
    max_index: Option<u32>,
    kind: GuestKind,
    opts: &'static [Opt],
    cdrom: bool,
    sized: bool,
) -> DiskSlot {
    DiskSlot {
        key,
        max_index,
        kind,
        opts,
        required: &[],
        cdrom,
        sized,
    }
}

/// Every disk slot a document may manage. (`unusedN`, `vmstate`, `virtiofsN` and LXC `devN`
/// are not: they are never a document's to write.)
pub const DISKS: &[DiskSlot] = &[
    disk("scsi", Some(30), GuestKind::Qemu, SCSI, true, true),
    disk("virtio", Some(15), GuestKind::Qemu, VIRTIO, false, true),
    disk("sata", Some(5), GuestKind::Qemu, SATA_IDE, true, true),
    disk("ide", Some(3), GuestKind::Qemu, SATA_IDE, true, true),
    disk("efidisk0", None, GuestKind::Qemu, EFIDISK, false, false),
    disk("tpmstate0", None, GuestKind::Qemu, TPMSTATE, false, false),
    disk("rootfs", None, GuestKind::Lxc, ROOTFS, false, true),
    DiskSlot {
        key: "mp",
        max_index: Some(255),
        kind: GuestKind::Lxc,
        opts: MOUNT_POINT,
        required: &["mp"],
        cdrom: false,
        sized: true,
    },
];

/// The disk slot for config key `key` on `kind`, if a document may manage it.
pub fn disk_slot(kind: GuestKind, key: &str) -> Option<&'static DiskSlot> {
    DISKS.iter().find(|d| d.kind == kind && d.matches(key))
}

/// Whether `key` names a disk slot on any kind.
pub fn is_disk_slot(key: &str) -> bool {
    DISKS.iter().any(|d| d.matches(key))
}

/// Settings written in a change of their own, after everything else the guest needs: the keys
/// that say who may log in (`sshkeys`, `ciuser`). A change that waits for an operator then
/// holds nothing else up; it carries no digest (its values are whole and written as such), so
/// it can follow the guest's other writes in the same pass.
pub fn written_alone(_kind: GuestKind, key: &str) -> bool {
    matches!(key, "sshkeys" | "ciuser")
}

/// The row for config key `key` on `kind` (`net3` finds the `net` family), if it is managed.
pub fn setting(kind: GuestKind, key: &str) -> Option<&'static SettingKey> {
    SETTINGS.iter().find(|s| s.kind == kind && s.matches(key))
}

/// Whether `key` names a setting on any kind (the document checks the kind itself, to say so).
pub fn is_setting(key: &str) -> bool {
    SETTINGS.iter().any(|s| s.matches(key))
}

impl SettingKey {
    /// Whether config key `key` is this row (`net7` for the `net` family up to its index).
    pub fn matches(&self, key: &str) -> bool {
        match self.max_index {
            None => key == self.key,
            Some(max) => key.strip_prefix(self.key).is_some_and(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && !(n.len() > 1 && n.starts_with('0'))
                    && n.parse::<u32>().is_ok_and(|i| i <= max)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_agrees_with_the_models_name_key_and_lists_each_key_once() {
        for kind in [GuestKind::Qemu, GuestKind::Lxc] {
            assert_eq!(
                managed("name").and_then(|m| m.key(kind)),
                Some(kind.name_key())
            );
        }
        let mut keys = CONFIG_KEYS.to_vec();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), CONFIG_KEY_COUNT);
        assert!(CONFIG_KEYS.contains(&"hostname") && CONFIG_KEYS.contains(&"swap"));
        assert!(is_document_field("create") && is_document_field("cpuunits"));
        assert!(!is_document_field("hostname"), "the document says name");
    }
}

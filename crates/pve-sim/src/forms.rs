//! What Proxmox makes of what it is sent: tags de-duplicated, lower-cased and sorted
//! (`get_unique_tags` with the default `tag-style`), descriptions read back without (QEMU) or
//! with (LXC) a newline after each line, MAC addresses in Proxmox's `BC:24:11` range, UUIDs
//! for `smbios1` and `vmgenid`. Written from qemu-server and pve-container, never from the
//! client. It must never keep a request's form where Proxmox stores another.

use crate::faults::Dice;

/// pve-common's `split_list`: a list parameter's items, separated by commas, semicolons or
/// white space, empty ones dropped.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split([',', ';', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
}

/// The user of a token id (`user@realm` of `user@realm!token`), or the id itself.
pub fn user_of(id: &str) -> &str {
    id.split_once('!').map_or(id, |(user, _)| user)
}

/// A guest kind as the API path names it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `qemu`
    Qemu,
    /// `lxc`
    Lxc,
}

impl Kind {
    /// From an API path segment.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "qemu" => Some(Kind::Qemu),
            "lxc" => Some(Kind::Lxc),
            _ => None,
        }
    }

    /// `qemu` / `lxc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Qemu => "qemu",
            Kind::Lxc => "lxc",
        }
    }

    /// `VM` / `CT`, as error texts say.
    pub fn who(self) -> &'static str {
        match self {
            Kind::Qemu => "VM",
            Kind::Lxc => "CT",
        }
    }

    /// Task type prefix: `qm` / `vz`.
    pub fn task_prefix(self) -> &'static str {
        match self {
            Kind::Qemu => "qm",
            Kind::Lxc => "vz",
        }
    }

    /// The directory of its config files below `/etc/pve/nodes/<node>/`.
    pub fn conf_dir(self) -> &'static str {
        match self {
            Kind::Qemu => "qemu-server",
            Kind::Lxc => "lxc",
        }
    }

    /// The config key holding its name.
    pub fn name_key(self) -> &'static str {
        match self {
            Kind::Qemu => "name",
            Kind::Lxc => "hostname",
        }
    }
}

/// Tags as stored after a write: split on `;`, `,` and spaces, lower-cased, de-duplicated,
/// sorted, joined by `;`.
pub fn tags(input: &str) -> String {
    let set: std::collections::BTreeSet<String> = input
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    set.into_iter().collect::<Vec<_>>().join(";")
}

/// A description as stored (the config file's comment lines): line ends normalized, no
/// trailing newline.
pub fn description_stored(input: &str) -> String {
    input
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim_end_matches('\n')
        .to_string()
}

/// A stored description as `GET …/config` returns it: QEMU as stored, LXC with every line
/// ended by `\n`.
pub fn description_read(kind: Kind, stored: &str) -> String {
    match kind {
        Kind::Qemu => stored.to_string(),
        Kind::Lxc => stored.lines().map(|l| format!("{l}\n")).collect(),
    }
}

/// A MAC address in Proxmox's range (`BC:24:11` is Proxmox Server Solutions' OUI).
pub fn mac(dice: &Dice) -> String {
    let b = dice.bytes::<3>();
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

/// A random (version 4) UUID.
pub fn uuid(dice: &Dice) -> String {
    let mut b = dice.bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Adds a MAC to a `netN` value that has none: QEMU `virtio,bridge=vmbr0` becomes
/// `virtio=BC:24:11:…,bridge=vmbr0`; LXC `name=eth0,bridge=vmbr0` gains `hwaddr=…`.
pub fn net_with_mac(kind: Kind, value: &str, dice: &Dice) -> String {
    let parts: Vec<&str> = value.split(',').collect();
    match kind {
        Kind::Qemu => {
            let models = ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"];
            let mut out: Vec<String> = Vec::new();
            for p in parts {
                if models.contains(&p) {
                    out.push(format!("{p}={}", mac(dice)));
                } else if let Some(m) = p.strip_prefix("model=") {
                    out.push(format!("{m}={}", mac(dice)));
                } else {
                    out.push(p.to_string());
                }
            }
            out.join(",")
        }
        Kind::Lxc => {
            if parts.iter().any(|p| p.starts_with("hwaddr=")) {
                value.to_string()
            } else {
                let mut out: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
                out.insert(1.min(out.len()), format!("hwaddr={}", mac(dice)));
                out.join(",")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms_are_proxmox_forms() {
        assert_eq!(tags("Web prod,web;DB"), "db;prod;web");
        assert_eq!(description_stored("a\r\nb\n\n"), "a\nb");
        assert_eq!(description_read(Kind::Qemu, "a\nb"), "a\nb");
        assert_eq!(description_read(Kind::Lxc, "a\nb"), "a\nb\n");
        let d = Dice::new(3);
        let n = net_with_mac(Kind::Qemu, "virtio,bridge=vmbr0", &d);
        assert!(
            n.starts_with("virtio=BC:24:11:") && n.ends_with(",bridge=vmbr0"),
            "{n}"
        );
        let l = net_with_mac(Kind::Lxc, "name=eth0,bridge=vmbr0", &d);
        assert!(l.starts_with("name=eth0,hwaddr=BC:24:11:"), "{l}");
        let u = uuid(&d);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}

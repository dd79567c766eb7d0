//! Which guest holds a VMID now. A VMID is reused after a destroy, so a fact the agent recorded
//! about "guest 104" must name the guest, not the number: an identity Proxmox keeps per guest
//! and that a new guest cannot inherit. QEMU: `vmgenid`, a UUID Proxmox generates at create (or
//! the agent sets, when it creates), else the `smbios1` UUID Proxmox also generates; LXC: the
//! MAC (`hwaddr`) of its first network device, generated in Proxmox's range (the agent sets
//! `net0`'s when it creates). A guest without any has no identity, and a fact about it proves
//! nothing. It must never derive an identity from anything a hub can set on an existing guest
//! unsigned (names, tags, descriptions; the classifier holds `vmgenid`, `smbios1` and LXC
//! `netN` for a signature).

use crate::GuestKind;
use std::collections::BTreeMap;

/// The identity of a guest of `kind` with `config`, if it has one (`vmgenid:<uuid>`,
/// `hwaddr:<MAC>`).
pub fn guest_identity(kind: GuestKind, config: &BTreeMap<String, String>) -> Option<String> {
    match kind {
        GuestKind::Qemu => {
            let uuid = |v: &str| {
                let v = v.trim().to_ascii_lowercase();
                (v.len() == 36
                    && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                    && v != "00000000-0000-0000-0000-000000000000")
                    .then_some(v)
            };
            if let Some(v) = config.get("vmgenid").and_then(|v| uuid(v)) {
                return Some(format!("vmgenid:{v}"));
            }
            config
                .get("smbios1")?
                .split(',')
                .find_map(|p| p.strip_prefix("uuid="))
                .and_then(uuid)
                .map(|v| format!("smbios1:{v}"))
        }
        GuestKind::Lxc => (0..32).find_map(|i| {
            config
                .get(&format!("net{i}"))?
                .split(',')
                .find_map(|p| p.strip_prefix("hwaddr="))
                .map(|m| m.trim().to_ascii_uppercase())
                .filter(|m| m.len() == 17)
                .map(|m| format!("hwaddr:{m}"))
        }),
    }
}

/// Whether `key` is a network device (`net0` … `netN`): on an LXC guest its `hwaddr` is
/// identity.
pub fn is_net_key(key: &str) -> bool {
    key.strip_prefix("net")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `config` without the identity values the agent chooses at create (QEMU `vmgenid`, the
/// `hwaddr=` of every LXC network device): two creates that differ only in those are the same
/// create asked for twice.
pub fn without_chosen_identity(
    kind: GuestKind,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    config
        .iter()
        .filter(|(k, _)| !(kind == GuestKind::Qemu && k.as_str() == "vmgenid"))
        .map(|(k, v)| {
            if kind == GuestKind::Lxc && is_net_key(k) {
                let kept: Vec<&str> = v
                    .split(',')
                    .filter(|p| !p.trim_start().starts_with("hwaddr="))
                    .collect();
                (k.clone(), kept.join(","))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn identities_come_from_per_guest_values_only() {
        let q = cfg(&[
            ("vmgenid", "C0FFEE00-1111-4222-8333-444455556666"),
            ("name", "x"),
        ]);
        assert_eq!(
            guest_identity(GuestKind::Qemu, &q).as_deref(),
            Some("vmgenid:c0ffee00-1111-4222-8333-444455556666")
        );
        assert_eq!(
            guest_identity(GuestKind::Qemu, &cfg(&[("vmgenid", "1")])),
            None
        );
        assert_eq!(
            guest_identity(GuestKind::Qemu, &cfg(&[("name", "x")])),
            None
        );
        let c = cfg(&[("net0", "name=eth0,hwaddr=bc:24:11:aa:bb:cc,bridge=vmbr0")]);
        assert_eq!(
            guest_identity(GuestKind::Lxc, &c).as_deref(),
            Some("hwaddr:BC:24:11:AA:BB:CC")
        );
        assert_eq!(
            guest_identity(GuestKind::Lxc, &cfg(&[("net0", "name=eth0")])),
            None
        );
        let old = cfg(&[(
            "smbios1",
            "uuid=C0FFEE00-1111-4222-8333-444455556667,manufacturer=x",
        )]);
        assert_eq!(
            guest_identity(GuestKind::Qemu, &old).as_deref(),
            Some("smbios1:c0ffee00-1111-4222-8333-444455556667")
        );
        let second = cfg(&[("net1", "name=eth1,hwaddr=BC:24:11:00:00:09")]);
        assert_eq!(
            guest_identity(GuestKind::Lxc, &second).as_deref(),
            Some("hwaddr:BC:24:11:00:00:09")
        );
    }
}

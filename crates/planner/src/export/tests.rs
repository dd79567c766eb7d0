//! The export says the node as it is: a plan against it changes nothing, and what the document
//! cannot say is left out and named.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

fn guest(vmid: u32, kind: GuestKind, status: &str, config: &[(&str, &str)]) -> ActualGuest {
    let config: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ActualGuest {
        vmid: Vmid::new(u64::from(vmid)).unwrap(),
        kind,
        status: status.into(),
        digest: crate::pve_model::digest(&config),
        config,
        pending: BTreeSet::new(),
    }
}

#[test]
fn a_plan_against_the_export_changes_nothing() {
    let node: ActualState = [
        guest(
            100,
            GuestKind::Qemu,
            "running",
            &[
                ("name", "web-1"),
                ("memory", "current=4096"),
                ("cores", "2"),
                ("sockets", "1"),
                ("tags", "Prod;web"),
                ("description", "front end"),
                ("onboot", "1"),
                ("startup", "order=2,up=30"),
                ("cpulimit", "1.5"),
                ("scsi0", "local-lvm:vm-100-disk-0,discard=on,iothread=1,size=32G,ssd=1"),
                ("ide2", "local:iso/debian-12.iso,media=cdrom"),
                ("efidisk0", "local-lvm:vm-100-disk-1,efitype=4m,size=4M"),
                ("net0", "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,tag=20"),
                ("ipconfig0", "ip=10.0.0.5/24,gw=10.0.0.1"),
                ("sshkeys", "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIE%2FGvKoOYmZu%2FrKcSWBRnRLFmqT%2BtikdAhQJqslQMY%2F%2F%20alice%40example%0A"),
                ("cipassword", "$5$secret"),
                ("agent", "1,fstrim_cloned_disks=1"),
                ("boot", "order=scsi0;net0"),
                ("hotplug", "network,disk,usb"),
                ("numa", "0"),
                ("cpu", "cputype=host,flags=+aes"),
                ("smbios1", "uuid=c0ffee00-1111-4222-8333-444455556666"),
            ],
        ),
        guest(
            102,
            GuestKind::Lxc,
            "stopped",
            &[
                ("hostname", "ct-2"),
                ("memory", "512"),
                ("swap", "256"),
                ("rootfs", "local-lvm:vm-102-disk-0,size=8G"),
                ("mp0", "local-lvm:vm-102-disk-1,mp=/srv/data,backup=1,size=16G"),
                ("mp1", "/srv/host,mp=/mnt/host"),
                ("net0", "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth"),
                ("description", "a\nb\n"),
            ],
        ),
        guest(
            103,
            GuestKind::Qemu,
            "stopped",
            &[("name", "not a dns name"), ("boot", "cdn")],
        ),
    ]
    .into_iter()
    .map(|g| (g.vmid, g))
    .collect();
    let (doc, left_out) = document(&node, &[]);
    let text = doc.to_string();
    assert!(!text.contains("secret"), "no password: {text}");
    assert!(!text.contains("BC:24:11"), "no MAC: {text}");
    let d = crate::document::from_value(&doc).unwrap();
    let p = crate::plan(&d, &node);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    // The bind mount, the name that is not a DNS name and the legacy boot string are named.
    for what in ["lxc 102: mp1", "qemu 103: name", "qemu 103: boot"] {
        assert!(
            left_out.iter().any(|l| l.starts_with(what)),
            "{what} in {left_out:?}"
        );
    }
    let g100 = &doc["guests"][0];
    assert_eq!(g100["scsi0"]["size"], "32G");
    assert_eq!(g100["net0"]["tag"], 20);
    assert_eq!(g100["boot"], json!(["scsi0", "net0"]));
    // Only the guests asked for.
    let (one, _) = document(&node, &[Vmid::new(102).unwrap()]);
    assert_eq!(one["guests"].as_array().unwrap().len(), 1);
}

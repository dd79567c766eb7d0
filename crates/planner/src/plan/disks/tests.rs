//! Disk plans: add, grow, shrink refused, options on a kept volume, CD-ROM media, exact mode's
//! held detach, and what the classifier makes of each.

use crate::actual::ActualGuest;
use crate::{keys, plan_guest};
use serde_json::json;
use std::collections::BTreeMap;
use steward_classifier::{classify, Context};
use steward_model::{Action, GuestKind, GuestSpec, GuestState, Vmid};

fn spec(kind: GuestKind, disks: &[(&str, serde_json::Value)]) -> GuestSpec {
    let mut s = GuestSpec::new(Vmid::new(101).unwrap(), kind, GuestState::Stopped);
    for (k, v) in disks {
        let slot = keys::disk_slot(kind, k).unwrap();
        s.disks.insert(
            k.to_string(),
            crate::document::parse_disk(slot, k, v).unwrap(),
        );
    }
    s
}

fn actual(kind: GuestKind, pairs: &[(&str, &str)]) -> ActualGuest {
    let config: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ActualGuest {
        vmid: Vmid::new(101).unwrap(),
        kind,
        status: "stopped".into(),
        digest: crate::pve_model::digest(&config),
        config,
        pending: Default::default(),
    }
}

fn benign(a: &Action) -> bool {
    !classify(a, &[], Context::default()).is_destructive()
}

const SCSI0: (&str, &str) = ("scsi0", "local-lvm:vm-101-disk-0,size=32G");

#[test]
fn a_missing_disk_is_added_as_a_new_volume_and_that_is_benign() {
    let s = spec(
        GuestKind::Qemu,
        &[(
            "scsi1",
            json!({"storage": "local-lvm", "size": "8G", "discard": true, "ssd": true}),
        )],
    );
    let a = actual(GuestKind::Qemu, &[SCSI0]);
    let p = plan_guest(&s, Some(&a));
    let [Action::SetConfig { change, .. }] = p.actions.as_slice() else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(change.set["scsi1"], "local-lvm:8,discard=on,ssd=1");
    assert!(change.keeps.is_empty() && change.removes.is_empty());
    assert_eq!(change.digest.as_deref(), Some(a.digest.as_str()));
    assert!(benign(&p.actions[0]), "{:?}", p.actions[0]);
    // Without a digest nothing binds the slot's emptiness: not benign.
    let mut undigested = p.actions[0].clone();
    if let Action::SetConfig { change, .. } = &mut undigested {
        change.digest = None;
    }
    assert!(!benign(&undigested));
}

#[test]
fn a_larger_size_grows_by_an_absolute_resize_and_a_smaller_one_is_refused_by_name() {
    let grow = spec(
        GuestKind::Qemu,
        &[("scsi0", json!({"storage": "local-lvm", "size": "40G"}))],
    );
    let a = actual(GuestKind::Qemu, &[SCSI0]);
    let p = plan_guest(&grow, Some(&a));
    assert_eq!(
        p.actions,
        vec![Action::ResizeDisk {
            vmid: Vmid::new(101).unwrap(),
            kind: GuestKind::Qemu,
            disk: "scsi0".into(),
            size: "40G".into(),
        }]
    );
    assert!(benign(&p.actions[0]));
    let shrink = spec(GuestKind::Qemu, &[("scsi0", json!({"size": "16 GiB"}))]);
    let p = plan_guest(&shrink, Some(&a));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.problems.len(), 1);
    assert!(
        p.problems[0]
            .message
            .contains("scsi0 cannot shrink from 32G to 16G"),
        "{}",
        p.problems[0].message
    );
}

#[test]
fn new_options_keep_the_volume_and_say_so() {
    let s = spec(
        GuestKind::Qemu,
        &[("scsi0", json!({"iothread": true, "backup": false}))],
    );
    let a = actual(GuestKind::Qemu, &[SCSI0]);
    let p = plan_guest(&s, Some(&a));
    let [Action::SetConfig { change, .. }] = p.actions.as_slice() else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(
        change.set["scsi0"],
        "local-lvm:vm-101-disk-0,backup=0,iothread=1,size=32G"
    );
    assert_eq!(change.keeps["scsi0"], "local-lvm:vm-101-disk-0,size=32G");
    assert!(benign(&p.actions[0]));
    // A claim to keep a volume the value does not name is not benign.
    let mut lie = p.actions[0].clone();
    if let Action::SetConfig { change, .. } = &mut lie {
        change
            .set
            .insert("scsi0".into(), "local-lvm:vm-999-disk-0,iothread=1".into());
    }
    assert!(!benign(&lie));
    // `cache=unsafe` can lose writes: held.
    let unsafe_cache = spec(GuestKind::Qemu, &[("scsi0", json!({"cache": "unsafe"}))]);
    let p = plan_guest(&unsafe_cache, Some(&a));
    assert!(!benign(&p.actions[0]));
}

#[test]
fn a_cdrom_gets_its_iso_and_a_disk_is_never_swapped_for_one() {
    let s = spec(
        GuestKind::Qemu,
        &[(
            "ide2",
            json!({"media": "cdrom", "iso": "local:iso/debian-12.iso"}),
        )],
    );
    let a = actual(GuestKind::Qemu, &[SCSI0, ("ide2", "none,media=cdrom")]);
    let p = plan_guest(&s, Some(&a));
    let [Action::SetConfig { change, .. }] = p.actions.as_slice() else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(change.set["ide2"], "local:iso/debian-12.iso,media=cdrom");
    // Media a guest may boot from can overwrite its disks: held on an existing guest...
    assert!(!benign(&p.actions[0]));
    // ...benign in a create, and ejecting is benign.
    let fresh = plan_guest(&s, None);
    assert!(
        matches!(&fresh.actions[0], Action::Create { config, .. } if config["ide2"] == "local:iso/debian-12.iso,media=cdrom")
    );
    assert!(benign(&fresh.actions[0]), "{:?}", fresh.actions);
    let eject = spec(
        GuestKind::Qemu,
        &[("ide2", json!({"media": "cdrom", "iso": "none"}))],
    );
    let loaded = actual(
        GuestKind::Qemu,
        &[("ide2", "local:iso/old.iso,media=cdrom")],
    );
    let p = plan_guest(&eject, Some(&loaded));
    assert!(benign(&p.actions[0]), "{:?}", p.actions);
    // A CD-ROM drive holding a cloud-init volume is left alone.
    let ci = actual(
        GuestKind::Qemu,
        &[("ide2", "local-lvm:vm-101-cloudinit,media=cdrom")],
    );
    let p = plan_guest(&eject, Some(&ci));
    assert!(p.actions.is_empty() && p.problems[0].message.contains("not an ISO"));
    let held_disk = actual(
        GuestKind::Qemu,
        &[("ide2", "local-lvm:vm-101-disk-3,size=4G")],
    );
    let p = plan_guest(&s, Some(&held_disk));
    assert!(p.actions.is_empty());
    assert!(p.problems[0].message.contains("holds a disk"));
}

#[test]
fn exact_mode_detaches_what_the_document_omits_last_and_held() {
    let mut s = spec(
        GuestKind::Qemu,
        &[("scsi0", json!({"storage": "local-lvm", "size": "32G"}))],
    );
    s.exact_disks = true;
    let a = actual(
        GuestKind::Qemu,
        &[
            SCSI0,
            ("scsi1", "local-lvm:vm-101-disk-1,size=8G"),
            ("ide2", "none,media=cdrom"),
            ("unused0", "local-lvm:vm-101-disk-9"),
        ],
    );
    let p = plan_guest(&s, Some(&a));
    let [Action::SetConfig { change, .. }] = p.actions.as_slice() else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(change.delete.iter().collect::<Vec<_>>(), vec!["scsi1"]);
    assert_eq!(change.removes["scsi1"], "local-lvm:vm-101-disk-1");
    assert_eq!(change.digest.as_deref(), Some(a.digest.as_str()));
    assert!(!benign(&p.actions[0]), "a detach waits for a signature");
    // While something benign is still to write, the detach waits (it binds the digest).
    s.memory = Some(steward_model::MiB(4096));
    let p = plan_guest(&s, Some(&a));
    assert_eq!(p.actions.len(), 1);
    assert!(benign(&p.actions[0]), "{:?}", p.actions);
    // Without `exact`, the extra disk is left alone.
    s.exact_disks = false;
    s.memory = None;
    assert!(plan_guest(&s, Some(&a)).actions.is_empty());
}

#[test]
fn an_lxc_mount_point_is_added_and_grown_and_its_rootfs_never_detached() {
    let mut s = spec(
        GuestKind::Lxc,
        &[
            ("rootfs", json!({"storage": "local-lvm", "size": "16G"})),
            (
                "mp0",
                json!({"storage": "local-lvm", "size": "8G", "mp": "/srv/data", "backup": true}),
            ),
        ],
    );
    s.exact_disks = true;
    let a = actual(
        GuestKind::Lxc,
        &[("rootfs", "local-lvm:vm-101-disk-0,size=8G")],
    );
    let p = plan_guest(&s, Some(&a));
    assert_eq!(p.actions.len(), 2, "{:?}", p.actions);
    let Action::SetConfig { change, .. } = &p.actions[0] else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(change.set["mp0"], "local-lvm:8,backup=1,mp=/srv/data");
    assert!(benign(&p.actions[0]));
    assert!(
        matches!(&p.actions[1], Action::ResizeDisk { disk, size, .. } if disk == "rootfs" && size == "16G")
    );
}

#[test]
fn a_mount_point_moved_on_a_volume_with_data_waits_for_a_signature() {
    let s = spec(
        GuestKind::Lxc,
        &[("mp0", json!({"mp": "/var/www/html", "backup": true}))],
    );
    let a = actual(
        GuestKind::Lxc,
        &[("mp0", "local-lvm:vm-101-disk-1,mp=/var/lib/mysql,size=8G")],
    );
    let p = plan_guest(&s, Some(&a));
    assert!(!benign(&p.actions[0]), "{:?}", p.actions);
    // Only backup: benign.
    let s = spec(
        GuestKind::Lxc,
        &[("mp0", json!({"mp": "/var/lib/mysql", "backup": true}))],
    );
    let p = plan_guest(&s, Some(&a));
    assert!(benign(&p.actions[0]), "{:?}", p.actions);
}

#[test]
fn an_alias_or_spaced_second_volume_is_never_benign() {
    let mut change = steward_model::ConfigChange {
        digest: Some("d".into()),
        ..Default::default()
    };
    for v in [
        "local-lvm:4,volume=local-lvm:vm-200-disk-0",
        "local-lvm:4, file=local-lvm:vm-200-disk-0",
        "local-lvm:4,import-from=local:iso/x.img",
    ] {
        change.set.insert("scsi1".into(), v.into());
        let a = Action::SetConfig {
            vmid: Vmid::new(101).unwrap(),
            kind: GuestKind::Qemu,
            change: change.clone(),
        };
        assert!(!benign(&a), "{v}");
    }
    // Kept volume, a second volume smuggled in by alias: not benign.
    change.set.insert(
        "scsi0".into(),
        "local-lvm:vm-100-disk-0,volume=local-lvm:vm-200-disk-0,discard=on".into(),
    );
    change.set.remove("scsi1");
    change
        .keeps
        .insert("scsi0".into(), "local-lvm:vm-100-disk-0,size=32G".into());
    let a = Action::SetConfig {
        vmid: Vmid::new(101).unwrap(),
        kind: GuestKind::Qemu,
        change,
    };
    assert!(!benign(&a));
}

#[test]
fn documents_refuse_volumes_host_paths_and_unknown_options() {
    let slot = keys::disk_slot(GuestKind::Lxc, "mp0").unwrap();
    let e = crate::document::parse_disk(slot, "mp0", &json!({"storage": "/srv", "mp": "/x"}))
        .unwrap_err();
    assert!(e.contains("bind mounts are refused"), "{e}");
    let q = keys::disk_slot(GuestKind::Qemu, "scsi1").unwrap();
    let e = crate::document::parse_disk(q, "scsi1", &json!({"file": "local-lvm:vm-9-disk-0"}))
        .unwrap_err();
    assert!(e.contains("never names a volume"), "{e}");
    let e = crate::document::parse_disk(q, "scsi1", &json!({"storage": "local-lvm", "size": 32}))
        .unwrap_err();
    assert!(e.contains("with its unit"), "{e}");
    let e =
        crate::document::parse_disk(q, "scsi1", &json!({"storage": "local-lvm", "serial": "x"}))
            .unwrap_err();
    assert!(e.contains("unknown option \"serial\""), "{e}");
    let v = keys::disk_slot(GuestKind::Qemu, "virtio0").unwrap();
    assert!(
        crate::document::parse_disk(v, "virtio0", &json!({"media": "cdrom", "iso": "none"}))
            .is_err()
    );
}

#[test]
fn another_storage_moves_the_disk_last_alone_and_held_naming_its_source() {
    let s = spec(
        GuestKind::Qemu,
        &[(
            "scsi0",
            json!({"storage": "local-zfs", "size": "40G", "discard": true}),
        )],
    );
    let a = actual(GuestKind::Qemu, &[SCSI0]);
    let p = plan_guest(&s, Some(&a));
    // Only the move: the grow and the option follow on the disk's new storage.
    let [mv @ Action::MoveDisk {
        disk,
        volume,
        storage,
        delete,
        digest,
        ..
    }] = p.actions.as_slice()
    else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(
        (disk.as_str(), volume.as_str(), storage.as_str(), *delete),
        ("scsi0", "local-lvm:vm-101-disk-0", "local-zfs", true)
    );
    assert_eq!(digest.as_deref(), Some(a.digest.as_str()));
    assert!(!benign(mv));
    assert!(p.problems.is_empty());

    // Something else to write first: the move waits for it.
    let mut more = s.clone();
    more.disks.insert(
        "scsi1".into(),
        crate::document::parse_disk(
            keys::disk_slot(GuestKind::Qemu, "scsi1").unwrap(),
            "scsi1",
            &json!({"storage": "local-lvm", "size": "8G"}),
        )
        .unwrap(),
    );
    let p = plan_guest(&more, Some(&a));
    assert!(
        matches!(p.actions.as_slice(), [Action::SetConfig { .. }]),
        "{:?}",
        p.actions
    );

    // Once moved, the rest follows: the option (keeping the new volume) and the grow.
    let moved = actual(
        GuestKind::Qemu,
        &[("scsi0", "local-zfs:vm-101-disk-0,size=32G")],
    );
    let p = plan_guest(&s, Some(&moved));
    assert!(
        matches!(
            p.actions.as_slice(),
            [Action::SetConfig { .. }, Action::ResizeDisk { .. }]
        ),
        "{:?}",
        p.actions
    );
}

#[test]
fn a_running_containers_volume_moves_only_once_it_is_stopped() {
    let s = spec(
        GuestKind::Lxc,
        &[("mp0", json!({"storage": "local-zfs", "mp": "/srv"}))],
    );
    let mut a = actual(
        GuestKind::Lxc,
        &[
            ("rootfs", "local-lvm:vm-101-disk-0,size=4G"),
            ("mp0", "local-lvm:vm-101-disk-1,mp=/srv,size=8G"),
        ],
    );
    a.status = "running".into();
    let p = plan_guest(&s, Some(&a));
    assert!(
        !p.actions
            .iter()
            .any(|x| matches!(x, Action::MoveDisk { .. })),
        "{:?}",
        p.actions
    );
    assert!(
        p.problems
            .iter()
            .any(|n| n.message.contains("mp0") && n.message.contains("stopped")),
        "{:?}",
        p.problems
    );
    a.status = "stopped".into();
    let p = plan_guest(&s, Some(&a));
    assert!(
        matches!(p.actions.as_slice(), [Action::MoveDisk { disk, .. }] if disk == "mp0"),
        "{:?}",
        p.actions
    );
}

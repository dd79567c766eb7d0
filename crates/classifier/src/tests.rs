//! The classifier's cases, as data: each action and the verdict it must get.

use super::*;
use proptest::prelude::*;
use steward_model::Vmid;

fn v() -> Vmid {
    Vmid::new(104).unwrap()
}

fn set(kind: GuestKind, pairs: &[(&str, &str)], delete: &[&str]) -> Action {
    Action::SetConfig {
        vmid: v(),
        kind,
        change: ConfigChange {
            set: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
            digest: None,
            removes: Default::default(),
            keeps: Default::default(),
        },
    }
}

/// A destroy as the agent's own compensation sends it: referenced volumes only.
fn destroy() -> Action {
    Action::Destroy {
        vmid: v(),
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: false,
    }
}

#[test]
fn power_and_create_are_benign() {
    let k = GuestKind::Qemu;
    for a in [
        Action::Start { vmid: v(), kind: k },
        Action::Stop { vmid: v(), kind: k },
        Action::Shutdown {
            vmid: v(),
            kind: k,
            timeout_secs: 60,
            force_stop: true,
        },
        Action::Reboot { vmid: v(), kind: k },
        Action::Create {
            vmid: v(),
            kind: k,
            config: Default::default(),
        },
    ] {
        assert!(
            !classify(&a, &[], Context::default()).is_destructive(),
            "{a:?}"
        );
    }
}

#[test]
fn data_keys_protection_and_unknown_keys_are_destructive() {
    let q = GuestKind::Qemu;
    let l = GuestKind::Lxc;
    let cases = [
        set(q, &[("scsi0", "local-lvm:32")], &[]),
        set(q, &[("memory", "4096"), ("virtio1", "local:10")], &[]),
        set(q, &[], &["efidisk0"]),
        set(q, &[], &["unused0"]),
        set(q, &[("tpmstate0", "x")], &[]),
        set(q, &[("protection", "0")], &[]),
        set(q, &[], &["protection"]),
        set(q, &[("hookscript", "local:snippets/x.sh")], &[]),
        set(q, &[("template", "1")], &[]),
        set(q, &[("hostpci0", "0000:01:00.0")], &[]),
        set(q, &[("brand-new-key", "1")], &[]),
        set(l, &[("rootfs", "local-lvm:8")], &[]),
        set(l, &[], &["mp0"]),
        set(l, &[("dev0", "/dev/sdb")], &[]),
        set(l, &[("sockets", "2")], &[]),
        Action::SnapshotRollback {
            vmid: v(),
            kind: q,
            snapshot: "before".into(),
        },
        Action::RestoreOver {
            vmid: v(),
            kind: q,
            archive: "local:backup/x.vma.zst".into(),
        },
        destroy(),
    ];
    for a in cases {
        let verdict = classify(&a, &[], Context::default());
        assert!(verdict.is_destructive(), "{a:?}: {verdict:?}");
    }
}

#[test]
fn non_data_config_is_benign() {
    let q = GuestKind::Qemu;
    for a in [
        set(
            q,
            &[
                ("memory", "4096"),
                ("cores", "4"),
                ("name", "web"),
                ("tags", "a;b"),
            ],
            &[],
        ),
        set(
            q,
            &[("protection", "1"), ("net0", "virtio,bridge=vmbr0")],
            &["description", "tags"],
        ),
        set(
            GuestKind::Lxc,
            &[("swap", "512"), ("hostname", "ct")],
            &["nameserver"],
        ),
    ] {
        let verdict = classify(&a, &[], Context::default());
        assert!(!verdict.is_destructive(), "{a:?}: {verdict:?}");
    }
}

#[test]
fn provenance_exceptions_come_only_from_the_journal() {
    // Created by the agent in this transaction: compensating rollback.
    let mine = [Provenance {
        created_in_txn: Some(7),
        scratch: false,
    }];
    assert!(!classify(&destroy(), &mine, Context { txn: Some(7) }).is_destructive());
    // Another transaction: no exception.
    assert!(classify(&destroy(), &mine, Context { txn: Some(8) }).is_destructive());
    assert!(classify(&destroy(), &mine, Context { txn: None }).is_destructive());
    // Agent scratch.
    let scratch = [Provenance {
        created_in_txn: None,
        scratch: true,
    }];
    assert!(!classify(&destroy(), &scratch, Context::default()).is_destructive());
    // No facts (a hub's "scratch" tag never becomes one): destructive.
    assert!(classify(&destroy(), &[], Context::default()).is_destructive());
}

#[test]
fn removing_volumes_or_rewriting_an_lxc_identity_is_destructive() {
    let mut change = ConfigChange {
        set: [("cores".to_string(), "2".to_string())].into(),
        ..ConfigChange::default()
    };
    change
        .removes
        .insert("unused0".into(), "local-lvm:vm-104-disk-1".into());
    let a = Action::SetConfig {
        vmid: v(),
        kind: GuestKind::Qemu,
        change,
    };
    assert!(classify(&a, &[], Context::default()).is_destructive());
    let mac = set(
        GuestKind::Lxc,
        &[("net0", "name=eth0,hwaddr=BC:24:11:00:00:02,bridge=vmbr0")],
        &[],
    );
    assert!(classify(&mac, &[], Context::default()).is_destructive());
    // Without a MAC, Proxmox makes up a new one: the identity changes all the same.
    let plain = set(GuestKind::Lxc, &[("net0", "name=eth0,bridge=vmbr0")], &[]);
    assert!(classify(&plain, &[], Context::default()).is_destructive());
    let gone = set(GuestKind::Lxc, &[], &["net1"]);
    assert!(classify(&gone, &[], Context::default()).is_destructive());
    // A QEMU NIC is not an identity.
    let qemu = set(GuestKind::Qemu, &[("net0", "virtio,bridge=vmbr0")], &[]);
    assert!(!classify(&qemu, &[], Context::default()).is_destructive());
}

/// A container's NIC may move to another bridge or VLAN unsigned only with the claims the
/// executor checks at the digest: the value it keeps and the same MAC written back, or an
/// empty slot and no MAC at all.
#[test]
fn an_lxc_nic_keeps_its_identity_or_waits_for_a_signature() {
    let with = |value: &str, kept: Option<&str>, digest: bool| {
        let mut change = ConfigChange {
            set: [("net0".to_string(), value.to_string())].into(),
            digest: digest.then(|| "d".to_string()),
            ..ConfigChange::default()
        };
        if let Some(k) = kept {
            change.keeps.insert("net0".into(), k.into());
        }
        let a = Action::SetConfig {
            vmid: v(),
            kind: GuestKind::Lxc,
            change,
        };
        !classify(&a, &[], Context::default()).is_destructive()
    };
    let held = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:02,ip=dhcp,type=veth";
    let moved = "bridge=vmbr1,hwaddr=BC:24:11:00:00:02,ip=dhcp,name=eth0,tag=30,type=veth";
    assert!(with(moved, Some(held), true), "same MAC, kept value");
    assert!(!with(moved, Some(held), false), "no digest: no claim binds");
    assert!(
        !with(&moved.replace(":02", ":09"), Some(held), true),
        "another MAC"
    );
    assert!(
        !with("bridge=vmbr1,name=eth0", Some(held), true),
        "no MAC: Proxmox would make a new one"
    );
    assert!(with("name=eth1,bridge=vmbr1", None, true), "a new NIC");
    assert!(
        !with(
            "name=eth1,bridge=vmbr1,hwaddr=BC:24:11:00:00:02",
            None,
            true
        ),
        "a new NIC never brings a MAC"
    );
    assert!(
        !with(
            "name=eth0,hwaddr=BC:24:11:00:00:02,hwaddr=BC:24:11:00:00:09",
            Some(held),
            true
        ),
        "two MACs"
    );
}

#[test]
fn provenance_never_covers_unreferenced_disks() {
    let sweeping = Action::Destroy {
        vmid: v(),
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: true,
    };
    let mine = [Provenance {
        created_in_txn: Some(7),
        scratch: true,
    }];
    assert!(classify(&sweeping, &mine, Context { txn: Some(7) }).is_destructive());
    assert!(classify(&sweeping, &mine, Context::default()).is_destructive());
}

proptest! {
    #[test]
    fn any_key_outside_the_benign_table_is_destructive(key in "[a-z_]{1,12}[0-9]{0,2}", kind in prop::sample::select(vec![GuestKind::Qemu, GuestKind::Lxc])) {
        let a = set(kind, &[(key.as_str(), "x")], &[]);
        let verdict = classify(&a, &[], Context::default());
        prop_assert_eq!(!verdict.is_destructive(), is_benign_key(kind, &key) && !is_data_bearing_key(kind, &key) && key != "protection");
    }

    #[test]
    fn no_key_is_both_benign_and_data_bearing(key in "[a-z]{1,10}[0-9]{0,2}") {
        for kind in [GuestKind::Qemu, GuestKind::Lxc] {
            prop_assert!(!(is_benign_key(kind, &key) && is_data_bearing_key(kind, &key)), "{key}");
        }
    }
}

#[test]
fn creates_that_restore_import_or_attach_are_destructive() {
    let create = |kind: GuestKind, pairs: &[(&str, &str)]| Action::Create {
        vmid: v(),
        kind,
        config: pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    };
    for a in [
        create(
            GuestKind::Qemu,
            &[
                ("archive", "local:backup/vzdump-qemu-104.vma.zst"),
                ("force", "1"),
            ],
        ),
        create(GuestKind::Qemu, &[("scsi0", "local-lvm:vm-104-disk-0")]),
        create(
            GuestKind::Qemu,
            &[(
                "scsi0",
                "local-lvm:0,import-from=local:104/vm-104-disk-0.raw",
            )],
        ),
        create(GuestKind::Qemu, &[("hookscript", "local:snippets/x.sh")]),
        create(GuestKind::Qemu, &[("serial0", "/dev/ttyS0")]),
        create(
            GuestKind::Lxc,
            &[
                ("ostemplate", "local:backup/vzdump-lxc-104.tar.zst"),
                ("restore", "1"),
            ],
        ),
        create(
            GuestKind::Lxc,
            &[("ostemplate", "local:backup/vzdump-lxc-104.tar.zst")],
        ),
        create(GuestKind::Lxc, &[("mp0", "/srv/data,mp=/data")]),
        create(GuestKind::Lxc, &[("dev0", "/dev/sdb")]),
    ] {
        assert!(
            classify(&a, &[], Context::default()).is_destructive(),
            "{a:?}"
        );
    }
}

#[test]
fn a_move_that_deletes_its_source_is_destructive_and_one_that_keeps_it_is_not() {
    let mv = |delete| Action::MoveDisk {
        vmid: v(),
        kind: GuestKind::Qemu,
        disk: "scsi1".into(),
        volume: "local-lvm:vm-104-disk-1".into(),
        storage: "local-zfs".into(),
        delete,
        digest: Some("d".into()),
    };
    let held = classify(&mv(true), &[], Context::default());
    assert!(held.is_destructive());
    assert!(
        held.reason().contains("local-lvm:vm-104-disk-1"),
        "{held:?}"
    );
    // Even a guest the agent created as scratch: provenance is for destroys.
    let scratch = Provenance {
        created_in_txn: None,
        scratch: true,
    };
    assert!(classify(&mv(true), &[scratch], Context::default()).is_destructive());
    assert!(!classify(&mv(false), &[], Context::default()).is_destructive());
}

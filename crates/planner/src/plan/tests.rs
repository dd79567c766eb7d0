//! Tests of planning: each desired/actual pair and the actions it must give.

use super::*;
use crate::pve_model::{PveModel, TagStyle};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use steward_model::{MiB, Startup};

fn vmid(n: u32) -> Vmid {
    Vmid::new(u64::from(n)).unwrap()
}

fn actual(n: u32, kind: GuestKind, status: &str, config: &[(&str, &str)]) -> ActualGuest {
    let config: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ActualGuest {
        vmid: vmid(n),
        kind,
        status: status.into(),
        digest: crate::pve_model::digest(&config),
        config,
        pending: BTreeSet::new(),
    }
}

fn desired(guests: Vec<GuestSpec>) -> DesiredState {
    DesiredState {
        version: 1,
        generation: 1,
        guests,
    }
}

fn state(gs: Vec<ActualGuest>) -> ActualState {
    gs.into_iter().map(|g| (g.vmid, g)).collect()
}

#[test]
fn create_then_start_in_that_order() {
    let mut s = GuestSpec::new(vmid(104), GuestKind::Qemu, GuestState::Running);
    s.memory = Some(MiB(2048));
    s.create.insert("scsi0".into(), "local-lvm:32".into());
    let p = plan(&desired(vec![s]), &ActualState::new());
    assert_eq!(p.actions.len(), 2);
    match &p.actions[0] {
        Action::Create { config, .. } => {
            assert_eq!(config.get("memory").map(String::as_str), Some("2048"));
            assert_eq!(
                config.get("scsi0").map(String::as_str),
                Some("local-lvm:32")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(p.actions[1], Action::Start { .. }));
}

#[test]
fn config_then_power_and_the_digest_planned_against() {
    let mut s = GuestSpec::new(vmid(104), GuestKind::Qemu, GuestState::Running);
    s.memory = Some(MiB(4096));
    let a = actual(104, GuestKind::Qemu, "stopped", &[("memory", "2048")]);
    let digest = a.digest.clone();
    let p = plan(&desired(vec![s]), &state(vec![a]));
    match &p.actions[..] {
        [Action::SetConfig { change, .. }, Action::Start { .. }] => {
            assert_eq!(change.set.get("memory").map(String::as_str), Some("4096"));
            assert_eq!(change.digest.as_deref(), Some(digest.as_str()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn equal_in_canonical_form_means_no_action() {
    let mut s = GuestSpec::new(vmid(104), GuestKind::Qemu, GuestState::Running);
    s.memory = Some(MiB(512));
    s.cores = Some(1);
    s.sockets = Some(1);
    s.tags = Some(vec!["prod".into(), "web".into()]);
    s.description = Some("web server".into());
    s.onboot = Some(false);
    s.startup = Some(Startup {
        order: Some(2),
        up: None,
        down: None,
    });
    s.cpulimit_milli = Some(1500);
    // Memory, cores, sockets and onboot absent (Proxmox defaults), tags in another order and
    // case, the description with its stored trailing newline, startup without `order=`.
    let a = actual(
        104,
        GuestKind::Qemu,
        "running",
        &[
            ("tags", "Web;prod"),
            ("description", "web server\n"),
            ("startup", "2"),
            ("cpulimit", "1.50"),
        ],
    );
    let p = plan(&desired(vec![s]), &state(vec![a]));
    assert_eq!(p, Plan::default());
}

#[test]
fn pending_values_count_as_applied_and_are_noted() {
    let mut s = GuestSpec::new(vmid(104), GuestKind::Qemu, GuestState::Running);
    s.memory = Some(MiB(8192));
    // GET config shows pending values applied; `pending` lists the key.
    let mut a = actual(104, GuestKind::Qemu, "running", &[("memory", "8192")]);
    a.pending.insert("memory".into());
    let p = plan(&desired(vec![s]), &state(vec![a]));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.notes.len(), 1);
    assert!(p.notes[0].message.contains("restart pending"));
}

#[test]
fn unmanaged_guests_are_left_alone() {
    let s = GuestSpec::new(vmid(104), GuestKind::Qemu, GuestState::Running);
    let p = plan(
        &desired(vec![s]),
        &state(vec![
            actual(104, GuestKind::Qemu, "running", &[]),
            actual(105, GuestKind::Qemu, "running", &[("memory", "1")]),
            actual(200, GuestKind::Lxc, "stopped", &[]),
        ]),
    );
    assert_eq!(p, Plan::default());
}

#[test]
fn absent_asks_for_destroy_and_nothing_else() {
    let s = GuestSpec::new(vmid(104), GuestKind::Qemu, GuestState::Absent);
    let p = plan(
        &desired(vec![s.clone()]),
        &state(vec![actual(104, GuestKind::Qemu, "running", &[])]),
    );
    assert!(
        matches!(&p.actions[..], [Action::Destroy { purge: true, .. }]),
        "{p:?}"
    );
    assert_eq!(
        plan(&desired(vec![s]), &ActualState::new()),
        Plan::default()
    );
}

#[test]
fn kind_mismatch_and_templates_are_noted_not_acted_on() {
    let s = GuestSpec::new(vmid(104), GuestKind::Lxc, GuestState::Running);
    let p = plan(
        &desired(vec![s]),
        &state(vec![actual(104, GuestKind::Qemu, "stopped", &[])]),
    );
    assert!(p.actions.is_empty());
    assert!(p.notes[0].message.contains("left alone"));
    let s = GuestSpec::new(vmid(104), GuestKind::Qemu, GuestState::Running);
    let p = plan(
        &desired(vec![s]),
        &state(vec![actual(
            104,
            GuestKind::Qemu,
            "stopped",
            &[("template", "1")],
        )]),
    );
    assert!(p.actions.is_empty());
    assert!(p.notes[0].message.contains("template"));
}

#[test]
fn lxc_without_a_template_is_not_created() {
    let s = GuestSpec::new(vmid(300), GuestKind::Lxc, GuestState::Running);
    let p = plan(&desired(vec![s]), &ActualState::new());
    assert!(p.actions.is_empty());
    assert!(p.notes[0].message.contains("ostemplate"));
}

// ---- convergence, against the reference model of Proxmox's storage ----

fn spec_strategy(n: u32) -> impl Strategy<Value = GuestSpec> {
    (
        (
            prop::sample::select(vec![GuestKind::Qemu, GuestKind::Lxc]),
            prop::sample::select(vec![
                GuestState::Running,
                GuestState::Stopped,
                GuestState::Absent,
            ]),
            prop::option::of("[a-z][a-z0-9-]{0,10}"),
            prop::option::of(16u64..65536),
            prop::option::of(1u32..16),
            prop::option::of(1u32..4),
            prop::option::of(0u64..4096),
        ),
        prop::option::of(prop::collection::vec(
            "[a-zA-Z0-9_][a-zA-Z0-9_+.-]{0,6}",
            0..4,
        )),
        prop::option::of("[ -~]{0,20}(\r?\n[ -~]{0,10}){0,2}"),
        prop::option::of(any::<bool>()),
        prop::option::of((
            prop::option::of(0u32..10),
            prop::option::of(0u32..100),
            prop::option::of(0u32..100),
        )),
        prop::option::of(0u32..128_000),
        prop::option::of(1u32..10_000),
        prop::collection::btree_set(0..DOC_SETTINGS.len(), 0..8),
    )
        .prop_map(
            move |(
                (kind, st, name, mem, cores, sockets, swap),
                tags,
                desc,
                onboot,
                startup,
                cpulimit,
                units,
                settings,
            )| {
                let mut s = GuestSpec::new(vmid(n), kind, st);
                s.name = name;
                s.memory = mem.map(MiB);
                s.cores = cores;
                s.sockets = if kind == GuestKind::Qemu {
                    sockets
                } else {
                    None
                };
                s.swap = if kind == GuestKind::Lxc {
                    swap.map(MiB)
                } else {
                    None
                };
                s.tags = tags.map(|t| crate::normalize::tag_set(t.iter().map(String::as_str)));
                s.description = desc.map(|d: String| crate::normalize::description(&d));
                s.onboot = onboot;
                s.startup = startup.map(|(order, up, down)| Startup { order, up, down });
                s.cpulimit_milli = cpulimit;
                s.cpuunits = units;
                // Through the document's own parser: what a document can say, in its normal form.
                for i in settings {
                    let (k, key, json) = DOC_SETTINGS[i];
                    if k != kind {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_str(json).expect("json");
                    if let Some(slot) = crate::keys::disk_slot(kind, key) {
                        let d = crate::document::parse_disk(slot, key, &v).expect("valid");
                        s.disks.insert(key.to_string(), d);
                        continue;
                    }
                    let row = crate::keys::setting(kind, key).expect("a row");
                    let set = crate::document::parse_setting(row, key, &v).expect("valid");
                    s.settings.insert(key.to_string(), set);
                }
                if kind == GuestKind::Lxc {
                    s.create
                        .insert("ostemplate".into(), "local:vztmpl/debian-12.tar.zst".into());
                    if !s.disks.contains_key("rootfs") {
                        s.create.insert("rootfs".into(), "local-lvm:8".into());
                    }
                }
                s
            },
        )
}

const Q: GuestKind = GuestKind::Qemu;
const L: GuestKind = GuestKind::Lxc;

/// What a document may say of each setting (kind, key, JSON value), every rule and family.
const DOC_SETTINGS: &[(GuestKind, &str, &str)] = &[
    (Q, "cpu", r#""host""#),
    (Q, "cpu", r#"{"cputype":"x86-64-v2-AES"}"#),
    (Q, "numa", "true"),
    (Q, "numa", "false"),
    (Q, "balloon", "0"),
    (Q, "balloon", "1024"),
    (Q, "agent", "true"),
    (Q, "agent", r#"{"enabled":true,"fstrim_cloned_disks":true}"#),
    (Q, "agent", r#"{"enabled":false,"type":"isa"}"#),
    (Q, "boot", r#"["scsi0","net0"]"#),
    (Q, "boot", r#"["net0"]"#),
    (Q, "hotplug", r#"["network","disk"]"#),
    (Q, "hotplug", "[]"),
    (Q, "hotplug", r#"["usb","disk","network"]"#),
    (Q, "ciuser", r#""debian""#),
    (
        Q,
        "sshkeys",
        r#"["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE/GvKoOYmZu/rKcSWBRnRLFmqT+tikdAhQJqslQMY// alice@example"]"#,
    ),
    (Q, "nameserver", r#""1.1.1.1 9.9.9.9""#),
    (Q, "searchdomain", r#"["example.com"]"#),
    (Q, "citype", r#""nocloud""#),
    (Q, "ciupgrade", "false"),
    (Q, "ciupgrade", "true"),
    (Q, "ipconfig0", r#"{"ip":"dhcp"}"#),
    (Q, "ipconfig0", r#"{"ip":"10.0.0.5/24","gw":"10.0.0.1"}"#),
    (Q, "net0", r#"{"model":"virtio","bridge":"vmbr0"}"#),
    (Q, "net0", r#""virtio,bridge=vmbr1,tag=20,firewall=1""#),
    (
        Q,
        "net1",
        r#"{"model":"e1000","bridge":"vmbr0","link_down":true,"rate":12.50}"#,
    ),
    (L, "nameserver", r#"["10.0.0.53"]"#),
    (L, "searchdomain", r#""lan example.org""#),
    (L, "net0", r#"{"name":"eth0","bridge":"vmbr0","ip":"dhcp"}"#),
    (
        L,
        "net0",
        r#"{"name":"eth0","bridge":"vmbr1","tag":30,"firewall":true}"#,
    ),
    (
        Q,
        "scsi0",
        r#"{"storage":"local-lvm","size":"40G","iothread":true}"#,
    ),
    (
        Q,
        "scsi1",
        r#"{"storage":"local-lvm","size":"4 GiB","discard":true,"ssd":true}"#,
    ),
    (
        Q,
        "virtio2",
        r#"{"storage":"local-lvm","size":"512M","cache":"writeback","backup":false}"#,
    ),
    (
        Q,
        "ide2",
        r#"{"media":"cdrom","iso":"local:iso/debian-12.iso"}"#,
    ),
    (Q, "ide2", r#"{"media":"cdrom","iso":"none"}"#),
    (Q, "efidisk0", r#"{"storage":"local-lvm","efitype":"4m"}"#),
    (
        Q,
        "tpmstate0",
        r#"{"storage":"local-lvm","version":"v2.0"}"#,
    ),
    (
        Q,
        "sata1",
        r#"{"storage":"local-lvm","size":"2G","ssd":true,"aio":"io_uring"}"#,
    ),
    (L, "rootfs", r#"{"storage":"local-lvm","size":"16G"}"#),
    (
        L,
        "mp0",
        r#"{"storage":"local-lvm","size":"8G","mp":"/data","backup":true}"#,
    ),
];

/// Settings as a node may hold them (kind, key, stored value), in the awkward forms.
const STORED_SETTINGS: &[(GuestKind, &str, &str)] = &[
    (Q, "cpu", "cputype=host,flags=+aes"),
    (Q, "cpu", "kvm64"),
    (Q, "numa", "1"),
    (Q, "balloon", "2048"),
    (Q, "agent", "1"),
    (Q, "agent", "enabled=1,fstrim_cloned_disks=1"),
    (Q, "boot", "order=scsi0;ide2;net0"),
    (Q, "hotplug", "network,disk,usb"),
    (Q, "hotplug", "1"),
    (Q, "hotplug", "0"),
    (Q, "ciuser", "root"),
    (Q, "sshkeys", "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIE%2FGvKoOYmZu%2FrKcSWBRnRLFmqT%2BtikdAhQJqslQMY%2F%2F%20alice%40example%0A"),
    (Q, "nameserver", "1.1.1.1  9.9.9.9"),
    (Q, "ciupgrade", "0"),
    (Q, "ipconfig0", "ip=dhcp"),
    (Q, "net0", "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1"),
    (Q, "net1", "e1000=BC:24:11:AA:BB:CD,bridge=vmbr0,link_down=1,rate=12.5"),
    (L, "nameserver", "10.0.0.53"),
    (L, "net0", "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth"),
    (Q, "scsi0", "local-lvm:vm-100-disk-0,iothread=1,size=32G"),
    (Q, "scsi1", "file=local-lvm:vm-100-disk-1,size=4G,ssd=1"),
    (Q, "ide2", "none,media=cdrom"),
    (Q, "ide2", "local:iso/debian-11.iso,media=cdrom"),
    (L, "rootfs", "local-lvm:vm-102-disk-0,size=8G"),
    (L, "mp0", "volume=local-lvm:vm-102-disk-1,mp=/data/,size=8G"),
];

#[test]
fn every_disk_slot_is_exercised_by_the_proptest_tables() {
    for slot in crate::keys::DISKS {
        assert!(
            DOC_SETTINGS
                .iter()
                .any(|(k, key, _)| *k == slot.kind && slot.matches(key)),
            "{:?} {} has no document value in the proptest",
            slot.kind,
            slot.key
        );
    }
}

#[test]
fn every_setting_row_is_exercised_by_the_proptest_tables() {
    for row in crate::keys::SETTINGS {
        assert!(
            DOC_SETTINGS
                .iter()
                .any(|(k, key, _)| *k == row.kind && row.matches(key)),
            "{:?} {} has no document value in the proptest",
            row.kind,
            row.key
        );
    }
}

/// An actual guest in one of the awkward forms Proxmox may hand back.
fn actual_strategy(n: u32) -> impl Strategy<Value = Option<ActualGuest>> {
    prop::option::of((
        prop::sample::select(vec![GuestKind::Qemu, GuestKind::Lxc]),
        prop::sample::select(vec!["running", "stopped"]),
        prop::option::of(prop::sample::select(vec!["2048", "current=1024", "512"])),
        prop::option::of(prop::sample::select(vec!["Web;prod", "a,b c", ""])),
        prop::option::of(prop::sample::select(vec!["hello\n", "x\r\ny\n", ""])),
        prop::option::of(prop::sample::select(vec!["0", "1"])),
        prop::option::of(prop::sample::select(vec!["order=1,up=30", "3", "down=5"])),
        prop::option::of(prop::sample::select(vec!["1.50", "2", "0"])),
        prop::collection::btree_set(prop::sample::select(vec!["memory", "cores"]), 0..2),
        prop::collection::btree_set(0..STORED_SETTINGS.len(), 0..8),
    ))
    .prop_map(move |o| {
        o.map(
            |(kind, status, mem, tags, desc, onboot, startup, cpulimit, pending, settings)| {
                let mut config = BTreeMap::new();
                for (k, v) in [
                    ("memory", mem),
                    ("tags", tags),
                    ("description", desc),
                    ("onboot", onboot),
                    ("startup", startup),
                    ("cpulimit", cpulimit),
                ] {
                    if let Some(v) = v {
                        config.insert(k.to_string(), v.to_string());
                    }
                }
                for i in settings {
                    let (k, key, v) = STORED_SETTINGS[i];
                    if k == kind {
                        config.insert(key.to_string(), v.to_string());
                    }
                }
                config.insert("unmanaged-key".into(), "keep me".into());
                ActualGuest {
                    vmid: vmid(n),
                    kind,
                    status: status.into(),
                    digest: crate::pve_model::digest(&config),
                    config,
                    pending: pending.into_iter().map(str::to_string).collect(),
                }
            },
        )
    })
}

fn world() -> impl Strategy<Value = (DesiredState, PveModel)> {
    let managed = prop::collection::btree_set(100u32..120, 0..6);
    let present = prop::collection::btree_set(100u32..130, 0..8);
    (managed, present, any::<bool>(), any::<bool>())
        .prop_flat_map(|(managed, present, lowercase, sorted)| {
            let specs: Vec<_> = managed.iter().map(|&n| spec_strategy(n)).collect();
            let actuals: Vec<_> = present.iter().map(|&n| actual_strategy(n)).collect();
            (specs, actuals, Just(TagStyle { lowercase, sorted }))
        })
        .prop_map(|(guests, actuals, tags)| {
            let guests_state = actuals.into_iter().flatten().map(|g| (g.vmid, g)).collect();
            (
                desired(guests),
                PveModel {
                    guests: guests_state,
                    tags,
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_pass_converges(w in world()) {
        let (d, mut node) = w;
        let first = plan(&d, &node.guests);
        for a in &first.actions {
            node.apply(a).map_err(|e| TestCaseError::fail(format!("{a:?}: {e}")))?;
        }
        let second = plan(&d, &node.guests);
        prop_assert!(second.actions.is_empty(), "second plan: {:?}\nfirst: {:?}", second.actions, first.actions);
    }

    #[test]
    fn the_node_plan_is_the_guest_plans_in_vmid_order(w in world()) {
        let (d, node) = w;
        let whole = plan(&d, &node.guests);
        let mut specs: Vec<&GuestSpec> = d.guests.iter().collect();
        specs.sort_by_key(|s| s.vmid);
        let mut joined = Plan::default();
        for s in specs {
            let one = plan_guest(s, node.guests.get(&s.vmid));
            joined.actions.extend(one.actions);
            joined.notes.extend(one.notes);
            joined.problems.extend(one.problems);
        }
        prop_assert_eq!(whole, joined);
    }

    #[test]
    fn guest_by_guest_from_the_newest_state_converges_in_one_turn_each(w in world()) {
        let (d, mut node) = w;
        for s in &d.guests {
            let first = plan_guest(s, node.guests.get(&s.vmid));
            for a in &first.actions {
                node.apply(a).map_err(|e| TestCaseError::fail(format!("{a:?}: {e}")))?;
            }
            let again = plan_guest(s, node.guests.get(&s.vmid));
            prop_assert!(again.actions.is_empty(), "{:?} after {:?}", again.actions, first.actions);
        }
        prop_assert!(plan(&d, &node.guests).actions.is_empty());
    }

    #[test]
    fn planning_is_deterministic_and_touches_only_managed_guests(w in world()) {
        let (d, node) = w;
        let a = plan(&d, &node.guests);
        let b = plan(&d, &node.guests);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        let managed: BTreeSet<Vmid> = d.guests.iter().map(|g| g.vmid).collect();
        for act in &a.actions {
            prop_assert!(managed.contains(&act.vmid()), "{:?}", act);
        }
    }
}

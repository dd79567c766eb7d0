//! The guest's hardware in the desired state, against the simulator over real TLS: NICs,
//! cloud-init and CPU settings converge from a document, heal after another tool's edit and
//! then draw no writes; a NIC keeps its MAC; what would open a guest's data (cloud-init
//! `sshkeys`) is held for an operator's signature, signed with `ssh-keygen` from the held op's
//! template, and runs once.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use steward_gate::{Decision, Outcome};
use steward_lab::*;

fn config(l: &Lab, vmid: u32, key: &str) -> Option<String> {
    l.sim
        .with_node(|n| n.st.guests[&vmid].effective().get(key).cloned())
}

/// alice signs `template` with `ssh-keygen` and presents it: it must run and succeed. The
/// signed bytes and the signature, to present again.
async fn sign_and_run(l: &Lab, template: &Value) -> (Vec<u8>, Vec<u8>) {
    let bytes = serde_json::to_vec(template).unwrap();
    let sig =
        l.kg.sign(&l.op.private, "op@steward", &bytes)
            .unwrap()
            .to_vec();
    let d = l
        .engine
        .present(&bytes, std::slice::from_ref(&sig))
        .await
        .decision;
    assert!(
        matches!(
            d,
            Decision::Executed {
                outcome: Outcome::Succeeded,
                ..
            }
        ),
        "{d:?}"
    );
    (bytes, sig)
}

fn mac(net: &str) -> String {
    net.split(',')
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(_, m)| m.to_string())
        .unwrap_or_default()
}

fn doc(generation: u64, extra: Value) -> Value {
    let mut g = json!({
        "vmid": 101, "kind": "qemu", "state": "stopped",
        "net0": {"model": "virtio", "bridge": "vmbr1", "tag": 20},
        "net1": {"model": "virtio", "bridge": "vmbr0", "tag": 30, "firewall": true},
        "ipconfig0": {"ip": "10.0.0.5/24", "gw": "10.0.0.1"},
        "ipconfig1": {"ip": "dhcp"},
        "nameserver": ["10.0.0.53", "9.9.9.9"],
        "searchdomain": "lan.example",
        "citype": "nocloud",
        "ciupgrade": false,
        "cpu": "host",
        "numa": true,
        "balloon": 1024,
        "agent": {"enabled": true, "fstrim_cloned_disks": true},
        "hotplug": ["disk", "network", "usb", "cpu"]
    });
    if let (Some(g), Some(extra)) = (g.as_object_mut(), extra.as_object()) {
        g.extend(extra.clone());
    }
    json!({"version": 1, "generation": generation, "guests": [g,
        {"vmid": 100, "kind": "qemu", "state": "running", "cpu": "host", "numa": true},
        {"vmid": 102, "kind": "lxc", "state": "running", "nameserver": "10.0.0.53",
         "net0": {"name": "eth0", "bridge": "vmbr1", "tag": 30, "firewall": true}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nics_cloud_init_and_cpu_converge_heal_and_stay_converged() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_millis(900),
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let mac_before = mac(&config(&l, 101, "net0").unwrap());
    assert_eq!(mac_before.len(), 17, "the simulator gave net0 a MAC");
    let hwaddr = |net: &str| {
        net.split(',')
            .find_map(|p| p.strip_prefix("hwaddr="))
            .map(str::to_string)
    };
    let ct_mac = hwaddr(&config(&l, 102, "net0").unwrap());
    assert!(ct_mac.is_some());
    l.desire(doc(1, json!({}))).unwrap();
    l.until("converged", |l| l.engine.status_now().converged == 3)
        .await;
    // The container moved to another bridge and VLAN unsigned, its MAC (its identity) kept.
    let ct = config(&l, 102, "net0").unwrap();
    assert!(ct.contains("bridge=vmbr1") && ct.contains("tag=30"), "{ct}");
    assert_eq!(hwaddr(&ct), ct_mac, "{ct}");
    assert_eq!(l.engine.status_now().held, 0);

    let net0 = config(&l, 101, "net0").unwrap();
    assert_eq!(mac(&net0), mac_before, "net0 keeps its MAC: {net0}");
    assert!(
        net0.contains("bridge=vmbr1") && net0.contains("tag=20"),
        "{net0}"
    );
    let net1 = config(&l, 101, "net1").unwrap();
    assert!(
        net1.starts_with("virtio=") && net1.contains("firewall=1"),
        "{net1}"
    );
    for (key, want) in [
        ("ipconfig0", "gw=10.0.0.1,ip=10.0.0.5/24"),
        ("ipconfig1", "ip=dhcp"),
        ("nameserver", "10.0.0.53 9.9.9.9"),
        ("searchdomain", "lan.example"),
        ("citype", "nocloud"),
        ("ciupgrade", "0"),
        ("cpu", "host"),
        ("numa", "1"),
        ("balloon", "1024"),
        ("agent", "1,fstrim_cloned_disks=1"),
        ("hotplug", "cpu,disk,network,usb"),
    ] {
        assert_eq!(config(&l, 101, key).as_deref(), Some(want), "{key}");
    }
    // A running VM takes `cpu` and `numa` at its next start: pending, and said so.
    let pending: Vec<String> = l
        .sim
        .with_node(|n| n.st.guests[&100].pending.keys().cloned().collect());
    assert_eq!(pending, vec!["cpu".to_string(), "numa".to_string()]);

    // Another tool moves net1 to another VLAN and turns NUMA off: healed by the sweep.
    l.sim.with_node(|n| {
        let net1 = n.st.guests[&101].config["net1"].replace("tag=30", "tag=31");
        n.edit(
            101,
            &[
                ("net1".to_string(), net1),
                ("numa".to_string(), "0".to_string()),
            ]
            .into(),
            &[],
        )
        .unwrap()
    });
    l.until("healed", |l| {
        config(l, 101, "net1").is_some_and(|v| v.contains("tag=30"))
            && config(l, 101, "numa").as_deref() == Some("1")
    })
    .await;
    assert_eq!(mac(&config(&l, 101, "net0").unwrap()), mac_before);

    // No perpetual diff: passes that read every guest write nothing.
    let before = l.all_writes();
    l.passes(3).await;
    l.sim.with_node(|n| {
        // The sweep reads configs: make sure one ran since the heal.
        assert!(n.st.counters.calls.values().sum::<u64>() >= before);
    });
    assert_eq!(l.all_writes(), before, "a converged node gets no writes");
    let _ = l.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_ssh_keys_on_an_existing_guest_wait_for_a_signature_and_run_once() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let key = l.op.public_line.trim().to_string();
    l.desire(doc(
        1,
        json!({"sshkeys": [key.clone()], "ciuser": "debian"}),
    ))
    .unwrap();
    l.until("held", |l| l.engine.status_now().held == 1).await;
    // Everything else converged; the keys and the user wait.
    l.until("the rest converged", |l| {
        config(l, 101, "numa").as_deref() == Some("1")
    })
    .await;
    assert_eq!(config(&l, 101, "sshkeys"), None);
    assert_eq!(config(&l, 101, "ciuser"), None);
    let h = l.engine.held().await.remove(0);
    assert_eq!(h.template["op"], "guest.config", "{}", h.template);
    let set = &h.template["params"]["set"];
    assert_eq!(set["ciuser"], "debian", "{}", h.template);
    assert!(set["sshkeys"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519%20"));

    let (bytes, sig) = sign_and_run(&l, &h.template).await;
    assert_eq!(config(&l, 101, "ciuser").as_deref(), Some("debian"));
    let writes = l.writes(101);
    // The same signature again is a replay: nothing runs.
    let again = l
        .engine
        .present(&bytes, std::slice::from_ref(&sig))
        .await
        .decision;
    assert!(!matches!(again, Decision::Executed { .. }), "{again:?}");
    l.passes(2).await;
    assert_eq!(l.writes(101), writes, "converged: nothing more is written");
    assert_eq!(l.engine.status_now().held, 0);
    let _ = l.stop.send(true);
}

fn volumes(l: &Lab) -> Vec<String> {
    l.sim
        .with_node(|n| n.st.volumes.volumes.keys().cloned().collect())
}

/// What an administrator does with Ansible's `proxmox_disk` and `proxmox_nic`, through the
/// document: add a data disk, grow it, add a NIC on another VLAN, change cloud-init, then remove
/// the disk, which waits for a signature over the held op's template and frees exactly the
/// volume it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_and_nic_road_through_the_document_with_a_signed_removal() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_millis(900),
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let guest = |generation: u64, extra: Value| {
        let mut g = json!({"vmid": 101, "kind": "qemu", "state": "stopped", "disks": "exact",
            "scsi0": {"storage": "local-lvm", "size": "32G"}});
        if let (Some(g), Some(extra)) = (g.as_object_mut(), extra.as_object()) {
            g.extend(extra.clone());
        }
        json!({"version": 1, "generation": generation, "guests": [g]})
    };
    let data = json!({"storage": "local-lvm", "size": "8G", "discard": true, "ssd": true});
    let before = volumes(&l);

    // 1. A data disk.
    l.desire(guest(1, json!({"scsi1": data}))).unwrap();
    l.until("scsi1 added", |l| config(l, 101, "scsi1").is_some())
        .await;
    let scsi1 = config(&l, 101, "scsi1").unwrap();
    let volume = scsi1.split(',').next().unwrap().to_string();
    assert!(volume.starts_with("local-lvm:vm-101-disk-"), "{scsi1}");
    assert!(
        scsi1.contains("discard=on") && scsi1.contains("size=8G"),
        "{scsi1}"
    );
    assert_eq!(volumes(&l).len(), before.len() + 1);

    // 2. Grown: the same volume, larger.
    let bigger = json!({"storage": "local-lvm", "size": "16G", "discard": true, "ssd": true});
    l.desire(guest(2, json!({"scsi1": bigger}))).unwrap();
    l.until("scsi1 grown", |l| {
        config(l, 101, "scsi1").is_some_and(|v| v.contains("size=16G"))
    })
    .await;
    assert!(config(&l, 101, "scsi1").unwrap().starts_with(&volume));
    assert_eq!(
        l.sim.with_node(|n| n.st.counters.of(101, "resize")),
        1,
        "one resize"
    );

    // 3. A NIC on another VLAN, and cloud-init for it.
    let nic = json!({"scsi1": bigger, "net1": {"model": "virtio", "bridge": "vmbr0", "tag": 40},
        "ipconfig1": {"ip": "192.0.2.10/24", "gw": "192.0.2.1"}});
    l.desire(guest(3, nic.clone())).unwrap();
    l.until("NIC and cloud-init", |l| {
        config(l, 101, "net1").is_some_and(|v| v.contains("tag=40"))
            && config(l, 101, "ipconfig1").is_some()
    })
    .await;
    assert_eq!(
        l.engine.status_now().held,
        0,
        "nothing so far needed a signature"
    );

    // 4. The disk leaves the document: held, naming the volume and its size.
    let mut without = nic.clone();
    without.as_object_mut().unwrap().remove("scsi1");
    l.desire(guest(4, without)).unwrap();
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let h = l.engine.held().await.remove(0);
    assert!(
        h.summary.contains(&format!("{volume} (16G)")),
        "{}",
        h.summary
    );
    assert_eq!(h.template["params"]["removes"]["scsi1"], volume.as_str());
    assert!(h.template["params"]["digest"].is_string());
    assert!(
        config(&l, 101, "scsi1").is_some(),
        "nothing removed unsigned"
    );

    let (bytes, sig) = sign_and_run(&l, &h.template).await;
    let after = volumes(&l);
    assert_eq!(after.len(), before.len(), "exactly one volume freed");
    assert!(!after.contains(&volume), "the one the template named");
    assert!(before.iter().all(|v| after.contains(v)), "and no other");
    assert_eq!(config(&l, 101, "scsi1"), None);
    let unused = l.sim.with_node(|n| {
        n.st.guests[&101]
            .config
            .keys()
            .any(|k| k.starts_with("unused"))
    });
    assert!(!unused, "no unusedN left behind");

    // Once: the signature again runs nothing, and the node stays converged.
    let again = l
        .engine
        .present(&bytes, std::slice::from_ref(&sig))
        .await
        .decision;
    assert!(!matches!(again, Decision::Executed { .. }), "{again:?}");
    let writes = l.writes(101);
    l.passes(3).await;
    assert_eq!(l.writes(101), writes);
    assert_eq!(l.engine.status_now().held, 0);
    let _ = l.stop.send(true);
}

/// A smaller size than the disk has cannot be done: the guest is parked with the disk named
/// (status and metrics say so), nothing is written, and a document that asks for more grows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shrink_is_refused_by_name_and_a_grow_sends_the_absolute_size() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_millis(900),
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let doc = |generation: u64, size: &str| {
        json!({"version": 1, "generation": generation, "guests": [
            {"vmid": 101, "kind": "qemu", "state": "stopped",
             "scsi0": {"storage": "local-lvm", "size": size}}]})
    };
    let writes = l.writes(101);
    l.desire(doc(1, "16G")).unwrap();
    l.until("parked", |l| {
        l.engine
            .status_now()
            .parked
            .iter()
            .any(|p| p.vmid == 101 && p.reason == "unsatisfiable")
    })
    .await;
    let why = l.engine.status_now().parked[0].why.clone();
    assert!(why.contains("scsi0 cannot shrink from 32G to 16G"), "{why}");
    l.passes(2).await;
    assert_eq!(l.writes(101), writes, "nothing written for a shrink");
    assert_eq!(l.engine.status_now().converged, 0);

    l.desire(doc(2, "40 GiB")).unwrap();
    l.until("grown", |l| {
        config(l, 101, "scsi0").is_some_and(|v| v.contains("size=40G"))
    })
    .await;
    l.until("converged", |l| l.engine.status_now().converged == 1)
        .await;
    assert!(l.engine.status_now().parked.is_empty());
    assert_eq!(l.sim.with_node(|n| n.st.counters.of(101, "resize")), 1);
    let _ = l.stop.send(true);
}

/// A disk on another storage than the document says is moved there, its source deleted after
/// the copy: held until signed, the template naming the source volume and its size at the
/// config digest; a template edited to name another guest's volume is refused; once signed the
/// slot names a copy on the new storage with its options, and exactly the source volume is
/// freed. A running container's volume waits until the document stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_moves_to_another_storage_once_signed_and_frees_only_its_source() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_millis(900),
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let doc = |generation: u64, ct_state: &str| {
        json!({"version": 1, "generation": generation, "guests": [
            {"vmid": 101, "kind": "qemu", "state": "stopped",
             "scsi0": {"storage": "local-zfs", "size": "32G"}},
            {"vmid": 102, "kind": "lxc", "state": ct_state,
             "rootfs": {"storage": "local-zfs"}}]})
    };
    let source = config(&l, 101, "scsi0").unwrap();
    let source_volume = source.split(',').next().unwrap().to_string();
    let other = config(&l, 100, "scsi0").unwrap();
    let other_volume = other.split(',').next().unwrap().to_string();
    let ct_volume = config(&l, 102, "rootfs")
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let before = volumes(&l);

    l.desire(doc(1, "running")).unwrap();
    l.until("held, and the container parked", |l| {
        let s = l.engine.status_now();
        s.held == 1
            && s.parked
                .iter()
                .any(|p| p.vmid == 102 && p.reason == "unsatisfiable")
    })
    .await;
    let why = l
        .engine
        .status_now()
        .parked
        .into_iter()
        .find(|p| p.vmid == 102)
        .unwrap()
        .why;
    assert!(why.contains("rootfs") && why.contains("stopped"), "{why}");
    let h = l.engine.held().await.remove(0);
    assert_eq!(h.template["op"], "guest.move");
    assert_eq!(h.template["params"]["volume"], source_volume.as_str());
    assert_eq!(h.template["params"]["storage"], "local-zfs");
    assert_eq!(h.template["params"]["delete"], true);
    assert!(h.template["params"]["digest"].is_string());
    assert!(
        h.summary.contains(&format!("{source_volume} (32G)")),
        "{}",
        h.summary
    );
    assert_eq!(l.sim.with_node(|n| n.st.counters.of(101, "move")), 0);

    // The template, edited to name another guest's volume and signed: refused, nothing moves.
    let mut forged = h.template.clone();
    forged["params"]["volume"] = json!(other_volume);
    let bytes = serde_json::to_vec(&forged).unwrap();
    let sig =
        l.kg.sign(&l.op.private, "op@steward", &bytes)
            .unwrap()
            .to_vec();
    let d = l
        .engine
        .present(&bytes, std::slice::from_ref(&sig))
        .await
        .decision;
    assert!(
        matches!(&d, Decision::Refused { reason, .. } if reason.code() == "binding_mismatch"),
        "{d:?}"
    );
    assert_eq!(l.sim.with_node(|n| n.st.counters.of(101, "move")), 0);
    assert_eq!(volumes(&l), before);

    sign_and_run(&l, &h.template).await;
    let moved = config(&l, 101, "scsi0").unwrap();
    assert!(moved.starts_with("local-zfs:vm-101-disk-"), "{moved}");
    let opts = |v: &str| v.split(',').skip(1).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(opts(&moved), opts(&source), "the slot's options are kept");
    let after = volumes(&l);
    assert_eq!(after.len(), before.len(), "a copy made, one volume freed");
    assert!(!after.contains(&source_volume), "the source is freed");
    assert!(after.contains(&other_volume), "and nothing else");
    assert!(!l.sim.with_node(|n| n.st.guests[&101]
        .config
        .keys()
        .any(|k| k.starts_with("unused"))));
    assert_eq!(l.sim.with_node(|n| n.st.counters.of(101, "move")), 1);

    // The container: stopped by the document, then its volume's move is held too.
    l.desire(doc(2, "stopped")).unwrap();
    l.until("the container's move held", |l| {
        l.engine.status_now().held == 1
    })
    .await;
    let h = l.engine.held().await.remove(0);
    assert_eq!(h.guest, 102);
    assert_eq!(h.template["params"]["disk"], "rootfs");
    assert_eq!(h.template["params"]["volume"], ct_volume.as_str());
    let identity = l.sim.with_node(|n| {
        steward_model::guest_identity(steward_model::GuestKind::Lxc, &n.st.guests[&102].config)
    });
    sign_and_run(&l, &h.template).await;
    assert!(config(&l, 102, "rootfs")
        .unwrap()
        .starts_with("local-zfs:vm-102-disk-"));
    assert!(!volumes(&l).contains(&ct_volume));
    assert_eq!(
        l.sim.with_node(|n| steward_model::guest_identity(
            steward_model::GuestKind::Lxc,
            &n.st.guests[&102].config
        )),
        identity
    );

    // Converged: no more writes, nothing held.
    l.until("converged", |l| l.engine.status_now().converged == 2)
        .await;
    let writes = (l.writes(101), l.writes(102));
    l.passes(3).await;
    assert_eq!((l.writes(101), l.writes(102)), writes);
    assert_eq!(l.engine.status_now().held, 0);
    let _ = l.stop.send(true);
}

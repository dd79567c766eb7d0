//! Tests of the desired-state document: parsing, validation and where errors point.

use super::*;
use steward_model::{GuestKind, GuestState, MiB, Startup};

const TOML: &str = r#"
version = 1
generation = 7

[[guests]]
vmid = 104
kind = "qemu"
state = "running"
name = "web"
memory = "4 GiB"
cores = 2
sockets = 1
tags = ["Prod", "web", "prod"]
description = "web server\r\n"
onboot = true
startup = { order = 2, up = 30 }
cpulimit = 1.5
cpuunits = 100
create = { scsi0 = "local-lvm:32", net0 = "virtio,bridge=vmbr0" }

[[guests]]
vmid = 200
kind = "lxc"
state = "stopped"
memory = 512
swap = "256MiB"
create = { ostemplate = "local:vztmpl/debian-12.tar.zst", rootfs = "local-lvm:8" }

[[guests]]
vmid = 150
kind = "qemu"
state = "absent"
"#;

const JSON: &str = r#"{"version":1,"generation":7,"guests":[
 {"vmid":200,"kind":"lxc","state":"stopped","memory":"512 MiB","swap":256,
  "create":{"ostemplate":"local:vztmpl/debian-12.tar.zst","rootfs":"local-lvm:8"}},
 {"vmid":150,"kind":"qemu","state":"absent"},
 {"vmid":104,"kind":"qemu","state":"running","name":"web","memory":4096,"cores":2,"sockets":1,
  "tags":"web;prod","description":"web server","onboot":true,"startup":{"up":30,"order":2},
  "cpulimit":1.5,"cpuunits":100,"create":{"net0":"virtio,bridge=vmbr0","scsi0":"local-lvm:32"}}]}"#;

#[test]
fn json_and_toml_are_one_schema() {
    let t = parse_toml("desired.toml", TOML).unwrap();
    let j = parse_json("desired.json", JSON).unwrap();
    assert_eq!(t, j);
    assert_eq!(t.generation, 7);
    let vmids: Vec<u32> = t.guests.iter().map(|g| g.vmid.get()).collect();
    assert_eq!(vmids, vec![104, 150, 200], "sorted by vmid");
    let web = &t.guests[0];
    assert_eq!(web.kind, GuestKind::Qemu);
    assert_eq!(web.memory, Some(MiB(4096)));
    assert_eq!(
        web.tags.as_deref(),
        Some(&["prod".to_string(), "web".to_string()][..])
    );
    assert_eq!(web.description.as_deref(), Some("web server"));
    assert_eq!(
        web.startup,
        Some(Startup {
            order: Some(2),
            up: Some(30),
            down: None
        })
    );
    assert_eq!(web.cpulimit_milli, Some(1500));
    assert_eq!(t.guests[1].state, GuestState::Absent);
    assert_eq!(t.guests[2].swap, Some(MiB(256)));
}

#[test]
fn every_error_is_reported_with_guest_and_field() {
    let doc = r#"{"version":1,"generation":3,"colour":"red","guests":[
      {"vmid":104,"kind":"qemu","state":"running","memory":8,"cores":0,"swap":512,"tags":["ok","bad tag"]},
      {"vmid":104,"kind":"lxc","state":"stopped","sockets":2,"cpulimit":9000,"create":{"scsi0":"x"}},
      {"vmid":42,"kind":"vm","state":"on","nmae":"typo"}
    ]}"#;
    let errs = parse_json("hub", doc).unwrap_err().0;
    let has = |at: &str, msg: &str| errs.iter().any(|e| e.at == at && e.message.contains(msg));
    let checks = [
        ("colour", "unknown field"),
        (
            "guests[0] (vmid 104).memory",
            "below Proxmox's minimum of 16 MiB",
        ),
        ("guests[0] (vmid 104).cores", "from 1"),
        ("guests[0] (vmid 104).swap", "lxc field; this guest is qemu"),
        ("guests[0] (vmid 104).tags", "bad tag"),
        (
            "guests[1] (vmid 104).sockets",
            "qemu field; this guest is lxc",
        ),
        ("guests[1] (vmid 104).cpulimit", "0 to 8192"),
        (
            "guests[1] (vmid 104).create.scsi0",
            "not a create-time key for lxc",
        ),
        ("guests[2].vmid", "not a VMID"),
        ("guests[2].kind", "not qemu or lxc"),
        ("guests[2].state", "not running, stopped or absent"),
        ("guests[2].nmae", "unknown field"),
    ];
    for (at, msg) in checks {
        assert!(has(at, msg), "missing {at}: {msg}\nall: {errs:#?}");
    }
    assert_eq!(errs.len(), checks.len(), "{errs:#?}");
}

#[test]
fn duplicate_vmids_are_an_error() {
    let doc = r#"{"version":1,"generation":1,"guests":[
      {"vmid":104,"kind":"qemu","state":"running"},{"vmid":104,"kind":"qemu","state":"stopped"}]}"#;
    let errs = parse_json("hub", doc).unwrap_err();
    assert!(
        errs.to_string()
            .contains("guests[1] (vmid 104): duplicate vmid: guests[0] names it too"),
        "{errs}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let e = parse_toml("desired.toml", "version = 1\ngeneration = \n").unwrap_err();
    assert!(e.0[0].at.starts_with("desired.toml:2"), "{e}");
    let e = parse_json("desired.json", "{\n\"version\": 1,\n}").unwrap_err();
    assert!(e.0[0].at.starts_with("desired.json:3"), "{e}");
}

#[test]
fn version_generation_and_guests_are_required() {
    let errs = parse_json("hub", "{}").unwrap_err().0;
    let ats: Vec<&str> = errs.iter().map(|e| e.at.as_str()).collect();
    assert_eq!(ats, vec!["version", "generation", "guests"]);
    let e = parse_json("hub", r#"{"version":2,"generation":1,"guests":[]}"#).unwrap_err();
    assert!(e.to_string().contains("version 2 is not supported"));
    let ok = parse_json("hub", r#"{"version":1,"generation":0,"guests":[]}"#).unwrap();
    assert!(ok.guests.is_empty());
}

#[test]
fn a_key_written_twice_is_refused_in_either_syntax_with_its_line() {
    // Security review, finding 13: the last of two keys used to win.
    let json = "{\"version\": 1, \"generation\": 1, \"guests\": [\n  {\"vmid\": 101, \"kind\": \"qemu\", \"memory\": 512,\n   \"memory\": 65536}]}";
    let e = parse_json("desired.json", json).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(e.0[0].at.starts_with("desired.json:3:"), "{e}");
    assert!(e.0[0].message.contains("guests[0].memory"), "{e}");
    let toml = "version = 1\ngeneration = 1\n[[guests]]\nvmid = 101\nkind = \"qemu\"\nmemory = 512\nmemory = 65536\n";
    let e = parse_toml("desired.toml", toml).unwrap_err();
    assert!(e.0[0].at.starts_with("desired.toml:7"), "{e}");
    assert!(e.0[0].message.contains("duplicate"), "{e}");
}

#[test]
fn settings_are_checked_option_by_option_and_name_where() {
    let doc = r#"
version = 1
generation = 1

[[guests]]
vmid = 104
kind = "qemu"
state = "running"
net0 = { model = "virtio", bridge = "vmbr0", macaddr = "BC:24:11:00:00:09" }
net1 = { model = "virtio", colour = "blue" }
ipconfig0 = { ip = "10.0.0.300/24" }
hotplug = ["disk", "teleport"]
swap = 512
create = { net2 = "virtio,bridge=vmbr0" }
net2 = { model = "e1000" }

[[guests]]
vmid = 105
kind = "lxc"
state = "stopped"
ciuser = "debian"
net0 = { bridge = "vmbr0" }
"#;
    let errs = parse_toml("d.toml", doc).unwrap_err();
    let find = |at: &str| {
        errs.0
            .iter()
            .find(|e| e.at == at)
            .map(|e| e.message.clone())
            .unwrap_or_else(|| panic!("no error at {at}: {errs}"))
    };
    assert!(find("guests[0] (vmid 104).net0").contains("MAC is never taken"));
    assert!(find("guests[0] (vmid 104).net1").contains("unknown option \"colour\""));
    assert!(find("guests[0] (vmid 104).ipconfig0").contains("ip"));
    assert!(find("guests[0] (vmid 104).hotplug").contains("features are"));
    assert!(find("guests[0] (vmid 104).net2").contains("also given as create.net2"));
    assert!(find("guests[1] (vmid 105).ciuser").contains("not a setting of a lxc guest"));
    assert!(find("guests[1] (vmid 105).net0").contains("name is required"));
}

#[test]
fn settings_read_into_their_normal_form() {
    let doc = r#"{"version":1,"generation":1,"guests":[{"vmid":104,"kind":"qemu","state":"stopped",
      "cpu":"host","numa":true,"boot":["scsi0","net0"],"agent":{"enabled":1,"fstrim_cloned_disks":true},
      "net0":"virtio,bridge=vmbr0,tag=20","ipconfig0":{"ip":"dhcp"},"citype":"nocloud"}]}"#;
    let d = parse_json("d.json", doc).unwrap();
    let s = &d.guests[0].settings;
    use steward_model::Setting;
    assert_eq!(s["numa"], Setting::Value("1".into()));
    assert_eq!(s["boot"], Setting::Value("order=scsi0;net0".into()));
    let Setting::Options(net) = &s["net0"] else {
        panic!("options")
    };
    assert_eq!(net["model"], "virtio");
    assert_eq!(net["tag"], "20");
    let Setting::Options(agent) = &s["agent"] else {
        panic!("options")
    };
    assert_eq!(agent["enabled"], "1");
    assert_eq!(agent["fstrim_cloned_disks"], "1");
}

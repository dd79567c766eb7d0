//! One table per normalization rule, with the Proxmox format quoted from the reference.

use super::*;

#[test]
fn memory_qemu_property_string() {
    // "qemu `memory`: a property string `[current=]<MiB>` (minimum 16, default 512); the API
    // returns e.g. `"4096"`."
    for (stored, mib) in [
        (Some("4096"), Some(4096)),
        (Some("current=4096"), Some(4096)),
        (Some("current=2048,foo=1"), Some(2048)),
        (None, Some(512)),
        (Some("lots"), None),
    ] {
        assert_eq!(memory_mib(stored), mib, "{stored:?}");
    }
}

#[test]
fn description_line_ends() {
    // "a written `"web"` reads back as `"web\n"`. Normalize line endings before comparing."
    for (input, want) in [
        ("web", "web"),
        ("web\n", "web"),
        ("a\r\nb\r\n", "a\nb"),
        ("a\rb", "a\nb"),
        ("", ""),
        ("\n\n", ""),
    ] {
        assert_eq!(description(input), want, "{input:?}");
    }
}

#[test]
fn tags_separators_case_and_order() {
    // "`tags`: `pve-tag-list`, stored `;`-separated; the GUI and API also accept `,`, `;` and
    // spaces as separators on input. Tags are lower-cased only if the datacenter is set to;
    // ordering is "config order" or alphabetical."
    assert_eq!(split_tags("a;b,c d;;"), vec!["a", "b", "c", "d"]);
    let canon = |s: &str| tag_set(split_tags(s).iter().map(String::as_str));
    assert_eq!(canon("web;Prod"), canon("prod,web"));
    assert_eq!(canon("b a a"), vec!["a", "b"]);
    assert!(canon("").is_empty());
}

#[test]
fn booleans_are_zero_one_with_default_zero() {
    // "`onboot`, `protection`, `template`: booleans, returned as 0/1."
    assert_eq!(boolean(None), Some(false));
    assert_eq!(boolean(Some("0")), Some(false));
    assert_eq!(boolean(Some("1")), Some(true));
    assert_eq!(boolean(Some("yes")), None);
}

#[test]
fn startup_order_forms() {
    // schema: `[[order=]\d+] [,up=\d+] [,down=\d+]`
    let s = |o, u, d| {
        Some(Startup {
            order: o,
            up: u,
            down: d,
        })
    };
    assert_eq!(startup(Some("order=1,up=30")), s(Some(1), Some(30), None));
    assert_eq!(startup(Some("2,down=10")), s(Some(2), None, Some(10)));
    assert_eq!(startup(Some("up=5, order=3")), s(Some(3), Some(5), None));
    assert_eq!(startup(None), s(None, None, None));
    assert_eq!(startup(Some("order=x")), None);
    assert_eq!(
        Startup {
            order: Some(1),
            up: Some(30),
            down: None
        }
        .to_property_string(),
        "order=1,up=30"
    );
}

#[test]
fn cpulimit_decimal_round_trip() {
    // schema: cpulimit `<number> (0 - 128)`, default 0.
    for m in [0, 1, 500, 1000, 1500, 1250, 128_000] {
        assert_eq!(cpulimit_milli(Some(&format_milli(m))), Some(m), "{m}");
    }
    assert_eq!(format_milli(1500), "1.5");
    assert_eq!(format_milli(2000), "2");
    assert_eq!(cpulimit_milli(None), Some(0));
    assert_eq!(cpulimit_milli(Some("1.50")), Some(1500));
}

mod settings {
    use crate::actual::ActualGuest;
    use crate::keys;
    use serde_json::json;
    use steward_model::{GuestKind, GuestSpec, GuestState, Vmid};

    fn spec(kind: GuestKind, pairs: &[(&str, serde_json::Value)]) -> GuestSpec {
        let mut s = GuestSpec::new(Vmid::new(104).unwrap(), kind, GuestState::Stopped);
        for (k, v) in pairs {
            let row = keys::setting(kind, k).unwrap();
            let set = crate::document::parse_setting(row, k, v).unwrap();
            s.settings.insert(k.to_string(), set);
        }
        s
    }

    fn actual(kind: GuestKind, pairs: &[(&str, &str)]) -> ActualGuest {
        ActualGuest {
            vmid: Vmid::new(104).unwrap(),
            kind,
            status: "stopped".into(),
            config: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            digest: "d1".into(),
            pending: Default::default(),
        }
    }

    #[test]
    fn a_nic_change_keeps_its_mac_and_the_options_the_document_does_not_name() {
        let s = spec(
            GuestKind::Qemu,
            &[(
                "net0",
                json!({"model": "virtio", "bridge": "vmbr1", "tag": 20}),
            )],
        );
        let a = actual(
            GuestKind::Qemu,
            &[("net0", "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1")],
        );
        let c = super::super::config_change(&s, &a).unwrap();
        assert_eq!(
            c.set["net0"],
            "virtio=BC:24:11:AA:BB:CC,bridge=vmbr1,firewall=1,tag=20"
        );
        assert_eq!(c.digest.as_deref(), Some("d1"));
        // What Proxmox then holds is converged.
        let done = actual(GuestKind::Qemu, &[("net0", c.set["net0"].as_str())]);
        assert!(super::super::config_change(&s, &done).is_none());
    }

    #[test]
    fn stored_forms_that_mean_the_same_are_equal() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE/GvKoOYmZu/rKcSWBRnRLFmqT+tikdAhQJqslQMY// alice@example";
        let s = spec(
            GuestKind::Qemu,
            &[
                ("hotplug", json!(["usb", "network", "disk"])),
                ("agent", json!(true)),
                ("cpu", json!("host")),
                ("sshkeys", json!([key])),
                ("nameserver", json!("1.1.1.1 9.9.9.9")),
                ("numa", json!(false)),
                ("ciupgrade", json!(true)),
            ],
        );
        let a = actual(
            GuestKind::Qemu,
            &[
                ("hotplug", "1"),
                ("agent", "enabled=1,type=virtio"),
                ("cpu", "cputype=host,flags=+aes"),
                (
                    "sshkeys",
                    "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIE%2FGvKoOYmZu%2FrKcSWBRnRLFmqT%2BtikdAhQJqslQMY%2F%2F%20alice%40example%0A",
                ),
                ("nameserver", "1.1.1.1   9.9.9.9"),
            ],
        );
        assert_eq!(super::super::config_change(&s, &a), None);
        // And the written forms are what Proxmox accepts.
        let fresh = super::super::create_config(&s);
        assert_eq!(fresh["hotplug"], "disk,network,usb");
        assert_eq!(fresh["agent"], "1");
        assert_eq!(fresh["cpu"], "host");
        assert!(
            fresh["sshkeys"].ends_with("alice%40example%0A"),
            "{}",
            fresh["sshkeys"]
        );
        assert!(fresh["sshkeys"]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
    }

    #[test]
    fn an_lxc_nic_keeps_its_hwaddr() {
        let s = spec(
            GuestKind::Lxc,
            &[(
                "net0",
                json!({"name": "eth0", "bridge": "vmbr0", "tag": 30}),
            )],
        );
        let a = actual(
            GuestKind::Lxc,
            &[(
                "net0",
                "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth",
            )],
        );
        // A container's NIC is its identity: the change keeps the value it holds, MAC and all.
        assert_eq!(super::super::alone_change(&s, &a), None);
        let c = super::super::config_change(&s, &a).unwrap();
        assert_eq!(c.keeps["net0"], a.config["net0"]);
        assert_eq!(
            c.set["net0"],
            "bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,name=eth0,tag=30,type=veth"
        );
    }
}

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

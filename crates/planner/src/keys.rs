//! The one table of managed fields: each field of the desired-state document beside the Proxmox
//! config key it manages on a QEMU guest and on an LXC container (`None`: the field does not
//! exist for that kind). The document's validation, the kind checks and normalization all read
//! this table, so a field cannot be accepted by one and forgotten by another. Adding a row is
//! the whole of teaching the planner a key's *name*; `normalize` then needs its rule.
//! A key must never be managed without a row here.

use steward_model::GuestKind;

/// One managed field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedField {
    /// The document field (`memory`, `name`, …).
    pub field: &'static str,
    /// The QEMU config key, if QEMU has it.
    pub qemu: Option<&'static str>,
    /// The LXC config key, if LXC has it.
    pub lxc: Option<&'static str>,
}

impl ManagedField {
    /// The config key on a guest of `kind`, if the field exists for that kind.
    pub fn key(&self, kind: GuestKind) -> Option<&'static str> {
        match kind {
            GuestKind::Qemu => self.qemu,
            GuestKind::Lxc => self.lxc,
        }
    }
}

const fn both(field: &'static str) -> ManagedField {
    ManagedField {
        field,
        qemu: Some(field),
        lxc: Some(field),
    }
}

/// Every managed field, in the order normalization visits them.
pub const MANAGED: &[ManagedField] = &[
    ManagedField {
        field: "name",
        qemu: Some("name"),
        lxc: Some("hostname"),
    },
    both("memory"),
    both("cores"),
    ManagedField {
        field: "sockets",
        qemu: Some("sockets"),
        lxc: None,
    },
    ManagedField {
        field: "swap",
        qemu: None,
        lxc: Some("swap"),
    },
    both("tags"),
    both("description"),
    both("onboot"),
    both("startup"),
    both("cpulimit"),
    both("cpuunits"),
];

/// Document fields that are not managed config keys.
pub const STRUCTURAL: &[&str] = &["vmid", "kind", "state", "create"];

/// The managed field named `field`.
pub fn managed(field: &str) -> Option<&'static ManagedField> {
    MANAGED.iter().find(|m| m.field == field)
}

/// Whether `field` is a field of the document (structural or managed).
pub fn is_document_field(field: &str) -> bool {
    STRUCTURAL.contains(&field) || managed(field).is_some()
}

/// The number of distinct config keys across both kinds.
pub const CONFIG_KEY_COUNT: usize = 12;

/// Every distinct config key any managed field maps to, in table order.
pub const CONFIG_KEYS: [&str; CONFIG_KEY_COUNT] = config_keys();

const fn config_keys() -> [&'static str; CONFIG_KEY_COUNT] {
    let mut out = [""; CONFIG_KEY_COUNT];
    let mut n = 0;
    let mut i = 0;
    while i < MANAGED.len() {
        let pair = [MANAGED[i].qemu, MANAGED[i].lxc];
        let mut j = 0;
        while j < 2 {
            if let Some(k) = pair[j] {
                let mut seen = false;
                let mut x = 0;
                while x < n {
                    if const_eq(out[x], k) {
                        seen = true;
                    }
                    x += 1;
                }
                if !seen {
                    // Fails to compile if CONFIG_KEY_COUNT is too small.
                    out[n] = k;
                    n += 1;
                }
            }
            j += 1;
        }
        i += 1;
    }
    assert!(
        n == CONFIG_KEY_COUNT,
        "CONFIG_KEY_COUNT must equal the distinct keys"
    );
    out
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_agrees_with_the_models_name_key_and_lists_each_key_once() {
        for kind in [GuestKind::Qemu, GuestKind::Lxc] {
            assert_eq!(
                managed("name").and_then(|m| m.key(kind)),
                Some(kind.name_key())
            );
        }
        let mut keys = CONFIG_KEYS.to_vec();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), CONFIG_KEY_COUNT);
        assert!(CONFIG_KEYS.contains(&"hostname") && CONFIG_KEYS.contains(&"swap"));
        assert!(is_document_field("create") && is_document_field("cpuunits"));
        assert!(!is_document_field("hostname"), "the document says name");
    }
}

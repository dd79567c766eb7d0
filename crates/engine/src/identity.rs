//! The identity the agent gives every guest it creates (`steward_model::guest_identity`): the
//! values a signature or a provenance fact names a guest by, chosen here from the system's
//! randomness and never taken from the hub. It must never derive an identity from anything
//! predictable or from the desired state.

use steward_model::{Action, GuestKind};

/// A fresh UUID for a QEMU guest the agent creates (its `vmgenid`, the guest's identity). No
/// randomness, no create: a predictable identity would let another guest pass for this one.
fn random_uuid() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for an identity: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A MAC in Proxmox's range for an LXC guest the agent creates (24 random bits: the range's).
fn random_mac() -> Result<String, String> {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for an identity: {e}"))?;
    Ok(format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2]))
}

/// The agent gives every guest it creates an identity of its own choosing: QEMU `vmgenid`,
/// LXC the `hwaddr` of *every* network device (`steward_model::guest_identity` takes the first
/// device that has one, so a hub that could pick any of them could give a new container an old
/// one's identity). What the hub sent for those is replaced.
pub(crate) fn with_identity(action: Action) -> Result<Action, String> {
    let Action::Create { vmid, kind, config } = action else {
        return Ok(action);
    };
    let mut config = steward_model::without_chosen_identity(kind, &config);
    match kind {
        GuestKind::Qemu => {
            config.insert("vmgenid".into(), random_uuid()?);
        }
        GuestKind::Lxc => {
            for (_, net) in config
                .iter_mut()
                .filter(|(k, _)| steward_model::is_net_key(k))
            {
                let mac = format!("hwaddr={}", random_mac()?);
                *net = if net.is_empty() {
                    mac
                } else {
                    format!("{net},{mac}")
                };
            }
        }
    }
    Ok(Action::Create { vmid, kind, config })
}

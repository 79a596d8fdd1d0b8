//! What a host's tenant links should be: one bridge per network with its segment device (a
//! VXLAN device flooding to the other hosts, or a VLAN sub-interface of an uplink), and the VM
//! ports enslaved to those bridges. Serializable so the fleet record can carry it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Yun's bridges start with this.
pub const BRIDGE_PREFIX: &str = "yb";
/// Yun's VXLAN devices start with this (then the VNI in hex).
pub const VXLAN_PREFIX: &str = "yx";
/// Yun's VLAN sub-interfaces start with this.
pub const VLAN_PREFIX: &str = "yv";
/// VM ports (taps made by libvirt, veths in tests) start with this.
pub const PORT_PREFIX: &str = yun_firewall::PORT_PREFIX;
/// Device names Yun creates and may therefore delete; everything else is left alone.
pub const OWNED_PREFIXES: [&str; 3] = [BRIDGE_PREFIX, VXLAN_PREFIX, VLAN_PREFIX];
/// The IANA VXLAN port (the kernel's own default is the legacy 8472, so it is always set).
pub const VXLAN_PORT: u16 = 4789;
pub const VNI_MAX: u32 = 0x00ff_ffff;
pub const VLAN_ID_MAX: u16 = 4094;
pub const MTU_MIN: u32 = 576;
pub const MTU_MAX: u32 = 9000;
/// Linux interface names are at most 15 bytes (IFNAMSIZ less the NUL).
const IFNAME_MAX: usize = 15;

/// Every tenant link this host should have.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostNetworks {
    #[serde(default)]
    pub networks: Vec<NetworkLink>,
    #[serde(default)]
    pub ports: Vec<PortLink>,
}

/// One tenant network on this host: a bridge and the segment device that extends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkLink {
    /// The bridge's name: `yb…`, at most 15 bytes.
    pub bridge: String,
    /// MTU of the bridge, its segment device and its ports (guest-visible).
    pub mtu: u32,
    pub segment: SegmentLink,
}

/// How a network leaves the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SegmentLink {
    /// VXLAN with head-end replication: one all-zero FDB entry per peer, no multicast,
    /// no learning of remote endpoints.
    Vxlan {
        vni: u32,
        /// This host's underlay address (source of the encapsulated packets).
        local: Ipv4Addr,
        /// Underlay device to bind to; `None` lets routing choose.
        #[serde(default)]
        dev: Option<String>,
        #[serde(default = "vxlan_port")]
        port: u16,
        /// Underlay addresses of the other hosts on this network.
        #[serde(default)]
        peers: BTreeSet<Ipv4Addr>,
    },
    /// An 802.1Q sub-interface of a physical uplink.
    Vlan { id: u16, uplink: String },
}

fn vxlan_port() -> u16 {
    VXLAN_PORT
}

/// A VM port to enslave to its network's bridge (the network's MTU applies to it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortLink {
    /// `yt…`, made by libvirt (or a test); Yun never creates or deletes it.
    pub ifname: String,
    pub bridge: String,
}

impl SegmentLink {
    /// The segment device's name, derived from what identifies it so two hosts (and two
    /// runs) agree: `yx<vni hex>` or `yv<id>.<8 hex of sha256(uplink)>`.
    pub fn device_name(&self) -> String {
        match self {
            SegmentLink::Vxlan { vni, .. } => format!("{VXLAN_PREFIX}{vni:x}"),
            SegmentLink::Vlan { id, uplink } => {
                let digest = hex::encode(Sha256::digest(uplink.as_bytes()));
                format!("{VLAN_PREFIX}{id}.{}", &digest[..8])
            }
        }
    }
}

/// Input refused by [`validate`]; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WantError {
    #[error("{field}: {name:?} is not a valid interface name ({why})")]
    BadName {
        field: String,
        name: String,
        why: &'static str,
    },
    #[error("{field}: {value} is outside {min}..={max}")]
    OutOfRange {
        field: String,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("{field}: {value} appears twice")]
    Duplicate { field: String, value: String },
    #[error("{field}: {value} is not allowed ({why})")]
    Refused {
        field: String,
        value: String,
        why: &'static str,
    },
    #[error("{field}: no network has bridge {bridge:?}")]
    UnknownBridge { field: String, bridge: String },
}

/// Linux's own rule (`dev_valid_name`): 1..=15 bytes, not `.`/`..`, no `/`, `:` or space.
fn check_ifname(field: &str, name: &str, prefix: Option<&str>) -> Result<(), WantError> {
    let bad = |why| WantError::BadName {
        field: field.to_owned(),
        name: name.to_owned(),
        why,
    };
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(bad("1 to 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("reserved"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(bad("no '/', ':' or whitespace"));
    }
    if let Some(p) = prefix
        && !name.starts_with(p)
    {
        return Err(bad(match p {
            BRIDGE_PREFIX => "bridges start with \"yb\"",
            _ => "ports start with \"yt\"",
        }));
    }
    Ok(())
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), WantError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(WantError::OutOfRange {
            field: field.to_owned(),
            value,
            min,
            max,
        })
    }
}

fn check_unique(
    seen: &mut BTreeSet<String>,
    field: String,
    value: String,
) -> Result<(), WantError> {
    if seen.insert(value.clone()) {
        Ok(())
    } else {
        Err(WantError::Duplicate { field, value })
    }
}

fn check_segment(field: &str, seg: &SegmentLink) -> Result<(), WantError> {
    match seg {
        SegmentLink::Vxlan {
            vni,
            local,
            dev,
            port,
            peers,
        } => {
            check_range(&format!("{field}.vni"), (*vni).into(), 1, VNI_MAX.into())?;
            check_range(&format!("{field}.port"), (*port).into(), 1, u16::MAX.into())?;
            if local.is_unspecified() || local.is_multicast() || local.is_broadcast() {
                return Err(WantError::Refused {
                    field: format!("{field}.local"),
                    value: local.to_string(),
                    why: "a unicast underlay address",
                });
            }
            if let Some(d) = dev {
                check_ifname(&format!("{field}.dev"), d, None)?;
            }
            for p in peers {
                if p == local || p.is_unspecified() || p.is_multicast() || p.is_broadcast() {
                    return Err(WantError::Refused {
                        field: format!("{field}.peers"),
                        value: p.to_string(),
                        why: "peers are other hosts' unicast underlay addresses",
                    });
                }
            }
            Ok(())
        }
        SegmentLink::Vlan { id, uplink } => {
            check_range(&format!("{field}.id"), (*id).into(), 1, VLAN_ID_MAX.into())?;
            check_ifname(&format!("{field}.uplink"), uplink, None)?;
            if OWNED_PREFIXES.iter().any(|p| uplink.starts_with(p)) || uplink.starts_with("yt") {
                return Err(WantError::Refused {
                    field: format!("{field}.uplink"),
                    value: uplink.clone(),
                    why: "an uplink is a host device, not one of Yun's",
                });
            }
            Ok(())
        }
    }
}

/// Checks everything [`super::plan`] relies on; the network MTU of each bridge on success.
pub fn validate(want: &HostNetworks) -> Result<BTreeMap<String, u32>, WantError> {
    let mut bridges = BTreeMap::new();
    let mut devices = BTreeSet::new();
    for (i, n) in want.networks.iter().enumerate() {
        let field = format!("networks[{i}]");
        check_ifname(&format!("{field}.bridge"), &n.bridge, Some(BRIDGE_PREFIX))?;
        check_range(
            &format!("{field}.mtu"),
            n.mtu.into(),
            MTU_MIN.into(),
            MTU_MAX.into(),
        )?;
        check_segment(&format!("{field}.segment"), &n.segment)?;
        if bridges.insert(n.bridge.clone(), n.mtu).is_some() {
            return Err(WantError::Duplicate {
                field: format!("{field}.bridge"),
                value: n.bridge.clone(),
            });
        }
        // Same VNI (or VLAN id on the same uplink) twice would be one device for two bridges.
        check_unique(
            &mut devices,
            format!("{field}.segment"),
            n.segment.device_name(),
        )?;
    }
    let mut ports = BTreeSet::new();
    for (i, p) in want.ports.iter().enumerate() {
        let field = format!("ports[{i}]");
        check_ifname(&format!("{field}.ifname"), &p.ifname, Some(PORT_PREFIX))?;
        check_unique(&mut ports, format!("{field}.ifname"), p.ifname.clone())?;
        if !bridges.contains_key(&p.bridge) {
            return Err(WantError::UnknownBridge {
                field: format!("{field}.bridge"),
                bridge: p.bridge.clone(),
            });
        }
    }
    Ok(bridges)
}

/// True for names Yun created (and so may delete when no longer wanted).
pub fn is_owned(name: &str) -> bool {
    OWNED_PREFIXES.iter().any(|p| name.starts_with(p))
}

//! The pure half of the links driver: what the kernel has ([`Observed`]) and what is wanted
//! ([`HostNetworks`]) in, the ordered operations that make the first match the second out.
//! No I/O here, so every decision is unit-tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::LinksError;
use super::want::{HostNetworks, PORT_PREFIX, SegmentLink, is_owned, validate};

/// A link as the kernel reports it (indices already resolved to names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedLink {
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub up: bool,
    /// The bridge (or other controller) it is enslaved to.
    pub master: Option<String>,
}

/// The parts of a link's type-specific settings the driver compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Vxlan {
        vni: Option<u32>,
        local: Option<Ipv4Addr>,
        /// A default remote/group: Yun never sets one (flooding is by FDB entries).
        group: Option<Ipv4Addr>,
        dev: Option<String>,
        port: Option<u16>,
        learning: bool,
    },
    Vlan {
        id: Option<u16>,
        uplink: Option<String>,
    },
    /// Any other kind (`veth`, `tun`, …) or none reported.
    Other(String),
}

/// Everything the plan looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: BTreeMap<String, ObservedLink>,
    /// Per VXLAN device: the destinations of its all-zero-MAC (flood) FDB entries.
    pub flood: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// `net.bridge.bridge-nf-call-iptables` in this namespace; `None` when the sysctl is
    /// missing (no br_netfilter).
    pub bridge_nf_call_iptables: Option<bool>,
}

/// One change to the kernel, in the order [`plan`] emits them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum LinkOp {
    /// `net.bridge.bridge-nf-call-iptables = 1` so bridged IPv4 reaches the firewall.
    EnableBridgeNetfilter,
    /// A Yun device no longer wanted, or one whose settings cannot be changed in place.
    Delete {
        name: String,
    },
    /// Created up, with `mtu`.
    CreateBridge {
        name: String,
        mtu: u32,
    },
    /// Created with learning off, enslaved to `bridge`, up.
    CreateVxlan {
        name: String,
        vni: u32,
        local: Ipv4Addr,
        dev: Option<String>,
        port: u16,
        mtu: u32,
        bridge: String,
    },
    /// Created on `uplink`, enslaved to `bridge`, up.
    CreateVlan {
        name: String,
        uplink: String,
        id: u16,
        mtu: u32,
        bridge: String,
    },
    SetMtu {
        name: String,
        mtu: u32,
    },
    SetMaster {
        name: String,
        bridge: String,
    },
    SetUp {
        name: String,
    },
    /// `bridge fdb append 00:00:00:00:00:00 dev <name> dst <peer>`.
    AddFlood {
        name: String,
        peer: Ipv4Addr,
    },
    /// `bridge fdb del 00:00:00:00:00:00 dev <name> dst <peer>`.
    DelFlood {
        name: String,
        peer: Ipv4Addr,
    },
}

impl fmt::Display for LinkOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkOp::EnableBridgeNetfilter => write!(f, "set bridge-nf-call-iptables=1"),
            LinkOp::Delete { name } => write!(f, "delete {name}"),
            LinkOp::CreateBridge { name, mtu } => write!(f, "create bridge {name} mtu {mtu}"),
            LinkOp::CreateVxlan {
                name, vni, bridge, ..
            } => write!(f, "create vxlan {name} vni {vni} on {bridge}"),
            LinkOp::CreateVlan {
                name,
                uplink,
                id,
                bridge,
                ..
            } => write!(f, "create vlan {name} {uplink}.{id} on {bridge}"),
            LinkOp::SetMtu { name, mtu } => write!(f, "set {name} mtu {mtu}"),
            LinkOp::SetMaster { name, bridge } => write!(f, "set {name} master {bridge}"),
            LinkOp::SetUp { name } => write!(f, "set {name} up"),
            LinkOp::AddFlood { name, peer } => write!(f, "fdb append {name} dst {peer}"),
            LinkOp::DelFlood { name, peer } => write!(f, "fdb del {name} dst {peer}"),
        }
    }
}

/// The operations, and the wanted ports that do not exist (yet): libvirt creates taps when
/// a guest starts, so a missing port is reported, not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<LinkOp>,
    pub missing_ports: Vec<String>,
}

/// Does the existing segment device already have exactly the wanted identity?
fn segment_matches(seg: &SegmentLink, kind: &LinkKind) -> bool {
    match (seg, kind) {
        (
            SegmentLink::Vxlan {
                vni,
                local,
                dev,
                port,
                ..
            },
            LinkKind::Vxlan {
                vni: v,
                local: l,
                group,
                dev: d,
                port: p,
                learning,
            },
        ) => {
            *v == Some(*vni)
                && *l == Some(*local)
                && group.is_none()
                && d == dev
                && *p == Some(*port)
                && !learning
        }
        (SegmentLink::Vlan { id, uplink }, LinkKind::Vlan { id: i, uplink: u }) => {
            *i == Some(*id) && u.as_deref() == Some(uplink.as_str())
        }
        _ => false,
    }
}

/// Ops for a device that exists and is kept: MTU first (so enslaving never drags the
/// bridge's MTU), then master, then up.
fn fix_existing(
    ops: &mut Vec<LinkOp>,
    seen: &ObservedLink,
    mtu: u32,
    bridge: Option<&str>,
    fresh_bridges: &BTreeSet<String>,
) {
    let name = &seen.name;
    if seen.mtu != mtu {
        ops.push(LinkOp::SetMtu {
            name: name.clone(),
            mtu,
        });
    }
    if let Some(b) = bridge {
        // A bridge created in this plan has no ports yet, whatever the old one had.
        let attached = seen.master.as_deref() == Some(b) && !fresh_bridges.contains(b);
        if !attached {
            ops.push(LinkOp::SetMaster {
                name: name.clone(),
                bridge: b.to_owned(),
            });
        }
    }
    if !seen.up {
        ops.push(LinkOp::SetUp { name: name.clone() });
    }
}

fn create_segment(name: String, seg: &SegmentLink, mtu: u32, bridge: &str) -> LinkOp {
    match seg {
        SegmentLink::Vxlan {
            vni,
            local,
            dev,
            port,
            ..
        } => LinkOp::CreateVxlan {
            name,
            vni: *vni,
            local: *local,
            dev: dev.clone(),
            port: *port,
            mtu,
            bridge: bridge.to_owned(),
        },
        SegmentLink::Vlan { id, uplink } => LinkOp::CreateVlan {
            name,
            uplink: uplink.clone(),
            id: *id,
            mtu,
            bridge: bridge.to_owned(),
        },
    }
}

/// The ordered operations that turn `seen` into `want`. Refuses (changing nothing) invalid
/// input and segments whose underlay device or uplink does not exist.
pub fn plan(want: &HostNetworks, seen: &Observed) -> Result<Plan, LinksError> {
    let mtus = validate(want)?;
    for (i, n) in want.networks.iter().enumerate() {
        let (field, host_dev) = match &n.segment {
            SegmentLink::Vxlan { dev, .. } => ("dev", dev.as_deref()),
            SegmentLink::Vlan { uplink, .. } => ("uplink", Some(uplink.as_str())),
        };
        if let Some(d) = host_dev
            && !seen.links.contains_key(d)
        {
            return Err(LinksError::DeviceMissing {
                field: format!("networks[{i}].segment.{field}"),
                name: d.to_owned(),
            });
        }
    }
    let mut ops = Vec::new();
    if !want.networks.is_empty() {
        match seen.bridge_nf_call_iptables {
            None => return Err(LinksError::NoBridgeNetfilter),
            Some(false) => ops.push(LinkOp::EnableBridgeNetfilter),
            Some(true) => {}
        }
    }

    // 1. Deletions: Yun devices nobody wants, and wanted names held by the wrong thing.
    let mut wanted: BTreeMap<String, bool> = BTreeMap::new(); // name → matches as is
    for n in &want.networks {
        let ok = seen
            .links
            .get(&n.bridge)
            .is_some_and(|l| l.kind == LinkKind::Bridge);
        wanted.insert(n.bridge.clone(), ok);
        let dev = n.segment.device_name();
        let ok = seen
            .links
            .get(&dev)
            .is_some_and(|l| segment_matches(&n.segment, &l.kind));
        wanted.insert(dev, ok);
    }
    let mut fresh = BTreeSet::new(); // devices (re)created below
    for name in seen.links.keys().filter(|n| is_owned(n)) {
        match wanted.get(name) {
            Some(true) => {}
            Some(false) | None => ops.push(LinkOp::Delete { name: name.clone() }),
        }
    }
    for (name, ok) in &wanted {
        if !ok {
            fresh.insert(name.clone());
        }
    }

    // 2. Bridges.
    for n in &want.networks {
        match seen
            .links
            .get(&n.bridge)
            .filter(|_| !fresh.contains(&n.bridge))
        {
            Some(l) => fix_existing(&mut ops, l, n.mtu, None, &fresh),
            None => ops.push(LinkOp::CreateBridge {
                name: n.bridge.clone(),
                mtu: n.mtu,
            }),
        }
    }

    // 3. Segment devices and their flood entries.
    for n in &want.networks {
        let dev = n.segment.device_name();
        match seen.links.get(&dev).filter(|_| !fresh.contains(&dev)) {
            Some(l) => fix_existing(&mut ops, l, n.mtu, Some(&n.bridge), &fresh),
            None => ops.push(create_segment(dev.clone(), &n.segment, n.mtu, &n.bridge)),
        }
        if let SegmentLink::Vxlan { peers, .. } = &n.segment {
            let empty = BTreeSet::new();
            let have = match seen.flood.get(&dev) {
                Some(h) if !fresh.contains(&dev) => h,
                _ => &empty,
            };
            for peer in have.difference(peers) {
                ops.push(LinkOp::DelFlood {
                    name: dev.clone(),
                    peer: *peer,
                });
            }
            for peer in peers.difference(have) {
                ops.push(LinkOp::AddFlood {
                    name: dev.clone(),
                    peer: *peer,
                });
            }
        }
    }

    // 4. VM ports: never created or deleted here, only sized, attached and brought up.
    let mut missing_ports = Vec::new();
    for p in &want.ports {
        debug_assert!(p.ifname.starts_with(PORT_PREFIX));
        let mtu = mtus.get(&p.bridge).copied().unwrap_or_default();
        match seen.links.get(&p.ifname) {
            Some(l) => fix_existing(&mut ops, l, mtu, Some(&p.bridge), &fresh),
            None => missing_ports.push(p.ifname.clone()),
        }
    }
    Ok(Plan { ops, missing_ports })
}

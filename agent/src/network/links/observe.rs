//! Netlink dump messages → [`super::Observed`]: links with their controller, underlay and uplink
//! indices resolved to names, and the flood (all-zero MAC) FDB entries of VXLAN devices.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVlan, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};

use super::plan::{LinkKind, ObservedLink};

/// The MAC of a flood entry: "every unknown destination goes to this remote too".
pub const FLOOD_MAC: [u8; 6] = [0; 6];

/// A link before indices are resolved.
struct RawLink {
    index: u32,
    name: String,
    mtu: u32,
    up: bool,
    master: Option<u32>,
    /// `IFLA_LINK`: a VLAN's uplink.
    lower: Option<u32>,
    kind: RawKind,
}

enum RawKind {
    Bridge,
    Vxlan {
        vni: Option<u32>,
        local: Option<Ipv4Addr>,
        group: Option<Ipv4Addr>,
        dev: Option<u32>,
        port: Option<u16>,
        learning: bool,
    },
    Vlan {
        id: Option<u16>,
    },
    Other(String),
}

fn parse_kind(infos: &[LinkInfo]) -> RawKind {
    let kind = infos.iter().find_map(|i| match i {
        LinkInfo::Kind(k) => Some(k),
        _ => None,
    });
    let data = infos.iter().find_map(|i| match i {
        LinkInfo::Data(d) => Some(d),
        _ => None,
    });
    match (kind, data) {
        (Some(InfoKind::Bridge), _) => RawKind::Bridge,
        (Some(InfoKind::Vxlan), data) => {
            let attrs = match data {
                Some(InfoData::Vxlan(a)) => a.as_slice(),
                _ => &[],
            };
            let (mut vni, mut local, mut group, mut dev, mut port) = (None, None, None, None, None);
            // The kernel's default; reported explicitly by every kernel Yun runs on.
            let mut learning = true;
            for a in attrs {
                match a {
                    InfoVxlan::Id(v) => vni = Some(*v),
                    InfoVxlan::Local(v) => local = Some(*v),
                    InfoVxlan::Group(v) if !v.is_unspecified() => group = Some(*v),
                    InfoVxlan::Link(v) if *v != 0 => dev = Some(*v),
                    InfoVxlan::Port(v) => port = Some(*v),
                    InfoVxlan::Learning(v) => learning = *v,
                    _ => {}
                }
            }
            RawKind::Vxlan {
                vni,
                local,
                group,
                dev,
                port,
                learning,
            }
        }
        (Some(InfoKind::Vlan), data) => {
            let id = match data {
                Some(InfoData::Vlan(a)) => a.iter().find_map(|v| match v {
                    InfoVlan::Id(id) => Some(*id),
                    _ => None,
                }),
                _ => None,
            };
            RawKind::Vlan { id }
        }
        (Some(other), _) => RawKind::Other(other.to_string()),
        (None, _) => RawKind::Other(String::new()),
    }
}

fn parse_link(msg: &LinkMessage) -> Option<RawLink> {
    let mut link = RawLink {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        lower: None,
        kind: RawKind::Other(String::new()),
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Controller(c) if *c != 0 => link.master = Some(*c),
            LinkAttribute::Link(l) if *l != 0 => link.lower = Some(*l),
            LinkAttribute::LinkInfo(infos) => link.kind = parse_kind(infos),
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

/// Builds the observed links from a link dump.
pub fn links(msgs: &[LinkMessage]) -> BTreeMap<String, ObservedLink> {
    let raw: Vec<RawLink> = msgs.iter().filter_map(parse_link).collect();
    let names: BTreeMap<u32, String> = raw.iter().map(|l| (l.index, l.name.clone())).collect();
    // An index not in this namespace's dump (a VLAN's uplink moved away) reads as unknown.
    let name_of = |i: Option<u32>| i.map(|i| names.get(&i).cloned().unwrap_or_default());
    raw.into_iter()
        .map(|l| {
            let kind = match l.kind {
                RawKind::Bridge => LinkKind::Bridge,
                RawKind::Vxlan {
                    vni,
                    local,
                    group,
                    dev,
                    port,
                    learning,
                } => LinkKind::Vxlan {
                    vni,
                    local,
                    group,
                    dev: name_of(dev),
                    port,
                    learning,
                },
                RawKind::Vlan { id } => LinkKind::Vlan {
                    id,
                    uplink: name_of(l.lower),
                },
                RawKind::Other(k) => LinkKind::Other(k),
            };
            let link = ObservedLink {
                name: l.name.clone(),
                kind,
                mtu: l.mtu,
                up: l.up,
                master: name_of(l.master),
            };
            (l.name, link)
        })
        .collect()
}

/// The flood destinations per VXLAN device from a bridge-family neighbour (FDB) dump;
/// `vxlans` maps the VXLAN devices' indices to their names.
pub fn flood(
    msgs: &[NeighbourMessage],
    vxlans: &BTreeMap<u32, String>,
) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let mut out: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for m in msgs {
        if m.header.family != AddressFamily::Bridge {
            continue;
        }
        let Some(name) = vxlans.get(&m.header.ifindex) else {
            continue;
        };
        let mut zero_mac = false;
        let mut dst = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(mac) => zero_mac = mac == &FLOOD_MAC,
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => dst = Some(*ip),
                // Bridge-family messages carry the remote untyped: 4 bytes for IPv4.
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(b.as_slice()) {
                        dst = Some(Ipv4Addr::from(octets));
                    }
                }
                _ => {}
            }
        }
        if let (true, Some(ip)) = (zero_mac, dst) {
            out.entry(name.clone()).or_default().insert(ip);
        }
    }
    out
}

/// Index → name of the VXLAN devices in a link dump.
pub fn vxlan_indices(msgs: &[LinkMessage]) -> BTreeMap<u32, String> {
    msgs.iter()
        .filter_map(parse_link)
        .filter(|l| matches!(l.kind, RawKind::Vxlan { .. }))
        .map(|l| (l.index, l.name))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn link_msg(index: u32, name: &str, attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.attributes = vec![LinkAttribute::IfName(name.into()), LinkAttribute::Mtu(1450)];
        m.attributes.extend(attrs);
        m
    }

    fn dump() -> Vec<LinkMessage> {
        vec![
            link_msg(2, "wire0", vec![]),
            link_msg(
                3,
                "yb64",
                vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                    InfoKind::Bridge,
                )])],
            ),
            link_msg(
                4,
                "yx64",
                vec![
                    LinkAttribute::Controller(3),
                    LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::Vxlan),
                        LinkInfo::Data(InfoData::Vxlan(vec![
                            InfoVxlan::Id(100),
                            InfoVxlan::Local(Ipv4Addr::new(10, 0, 0, 1)),
                            InfoVxlan::Group(Ipv4Addr::UNSPECIFIED),
                            InfoVxlan::Link(2),
                            InfoVxlan::Port(4789),
                            InfoVxlan::Learning(false),
                        ])),
                    ]),
                ],
            ),
        ]
    }

    #[test]
    fn indices_resolve_to_names() {
        let links = links(&dump());
        assert_eq!(links["yb64"].kind, LinkKind::Bridge);
        let vx = &links["yx64"];
        assert_eq!(vx.master.as_deref(), Some("yb64"));
        assert_eq!(
            vx.kind,
            LinkKind::Vxlan {
                vni: Some(100),
                local: Some(Ipv4Addr::new(10, 0, 0, 1)),
                group: None,
                dev: Some("wire0".into()),
                port: Some(4789),
                learning: false,
            }
        );
        assert!(vx.up && vx.mtu == 1450);
        assert_eq!(links["wire0"].kind, LinkKind::Other(String::new()));
    }

    #[test]
    fn flood_entries_are_the_zero_mac_remotes_of_vxlan_devices() {
        let entry = |ifindex, mac: [u8; 6], dst: Option<NeighbourAddress>| {
            let mut m = NeighbourMessage::default();
            m.header.family = AddressFamily::Bridge;
            m.header.ifindex = ifindex;
            m.attributes = vec![NeighbourAttribute::LinkLayerAddress(mac.to_vec())];
            m.attributes
                .extend(dst.map(NeighbourAttribute::Destination));
            m
        };
        let msgs = vec![
            // As the kernel's bridge-family dump reports them: the remote as raw bytes.
            entry(
                4,
                FLOOD_MAC,
                Some(NeighbourAddress::Other(vec![10, 0, 0, 2])),
            ),
            entry(
                4,
                FLOOD_MAC,
                Some(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 3))),
            ),
            // A learned guest MAC on the bridge port, a unicast entry, another device.
            entry(4, [0x52, 0x54, 0, 0, 0, 1], None),
            entry(
                4,
                [0x52, 0x54, 0, 0, 0, 2],
                Some(NeighbourAddress::Other(vec![10, 0, 0, 9])),
            ),
            entry(
                2,
                FLOOD_MAC,
                Some(NeighbourAddress::Other(vec![10, 0, 0, 8])),
            ),
        ];
        let vxlans = vxlan_indices(&dump());
        assert_eq!(vxlans, BTreeMap::from([(4, "yx64".to_string())]));
        let flood = flood(&msgs, &vxlans);
        assert_eq!(
            flood,
            BTreeMap::from([(
                "yx64".to_string(),
                BTreeSet::from([Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)])
            )])
        );
    }
}

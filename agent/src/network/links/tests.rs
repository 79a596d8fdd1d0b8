//! The pure part: validation, device names and the plan, without a kernel.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::*;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 9, 0, last)
}

fn vxlan(bridge: &str, vni: u32, peers: &[u8]) -> NetworkLink {
    NetworkLink {
        bridge: bridge.into(),
        mtu: 1450,
        segment: SegmentLink::Vxlan {
            vni,
            local: ip(1),
            dev: Some("eth0".into()),
            port: VXLAN_PORT,
            peers: peers.iter().map(|p| ip(*p)).collect(),
        },
    }
}

fn port(ifname: &str, bridge: &str) -> PortLink {
    PortLink {
        ifname: ifname.into(),
        bridge: bridge.into(),
    }
}

fn link(name: &str, kind: LinkKind, mtu: u32, master: Option<&str>) -> ObservedLink {
    ObservedLink {
        name: name.into(),
        kind,
        mtu,
        up: true,
        master: master.map(Into::into),
    }
}

fn other(name: &str) -> ObservedLink {
    link(name, LinkKind::Other("veth".into()), 1500, None)
}

/// The kernel state a correct apply of `want` leaves (for the networks built by `vxlan`).
fn converged(want: &HostNetworks) -> Observed {
    let mut seen = Observed {
        bridge_nf_call_iptables: Some(true),
        ..Observed::default()
    };
    seen.links.insert("eth0".into(), other("eth0"));
    for n in &want.networks {
        let dev = n.segment.device_name();
        seen.links.insert(
            n.bridge.clone(),
            link(&n.bridge, LinkKind::Bridge, n.mtu, None),
        );
        let (kind, peers) = match &n.segment {
            SegmentLink::Vxlan {
                vni,
                local,
                dev,
                port,
                peers,
            } => (
                LinkKind::Vxlan {
                    vni: Some(*vni),
                    local: Some(*local),
                    group: None,
                    dev: dev.clone(),
                    port: Some(*port),
                    learning: false,
                },
                peers.clone(),
            ),
            SegmentLink::Vlan { id, uplink } => (
                LinkKind::Vlan {
                    id: Some(*id),
                    uplink: Some(uplink.clone()),
                },
                BTreeSet::new(),
            ),
        };
        seen.links
            .insert(dev.clone(), link(&dev, kind, n.mtu, Some(&n.bridge)));
        if !peers.is_empty() {
            seen.flood.insert(dev, peers);
        }
    }
    for p in &want.ports {
        seen.links.insert(
            p.ifname.clone(),
            link(
                &p.ifname,
                LinkKind::Other("tun".into()),
                1450,
                Some(&p.bridge),
            ),
        );
    }
    seen
}

fn two_networks() -> HostNetworks {
    HostNetworks {
        networks: vec![vxlan("yb64", 100, &[2, 3]), vxlan("ybc8", 200, &[2])],
        ports: vec![port("yt1", "yb64"), port("yt2", "ybc8")],
    }
}

#[test]
fn device_names_are_deterministic_and_fit() {
    assert_eq!(vxlan("yb1", 100, &[]).segment.device_name(), "yx64");
    assert_eq!(vxlan("yb1", VNI_MAX, &[]).segment.device_name(), "yxffffff");
    let v = SegmentLink::Vlan {
        id: 4094,
        uplink: "enp1s0f0np0".into(),
    };
    let name = v.device_name();
    assert!(name.starts_with("yv4094.") && name.len() <= 15, "{name}");
    assert_eq!(name, v.device_name());
    let other_uplink = SegmentLink::Vlan {
        id: 4094,
        uplink: "enp1s0f1np1".into(),
    };
    assert_ne!(name, other_uplink.device_name());
}

/// Makes a valid input invalid in one field.
type Breakage = Box<dyn Fn(&mut HostNetworks)>;

#[test]
fn validation_names_the_field() {
    let mut w = two_networks();
    w.networks[1].segment = SegmentLink::Vxlan {
        vni: 0,
        local: ip(1),
        dev: None,
        port: VXLAN_PORT,
        peers: BTreeSet::new(),
    };
    let e = validate(&w).unwrap_err();
    assert!(
        matches!(&e, WantError::OutOfRange { field, .. } if field == "networks[1].segment.vni"),
        "{e}"
    );

    let cases: Vec<(Breakage, &str)> = vec![
        (Box::new(|w| w.networks[0].mtu = 575), "networks[0].mtu"),
        (Box::new(|w| w.networks[0].mtu = 9001), "networks[0].mtu"),
        (
            Box::new(|w| w.networks[0].bridge = "br0".into()),
            "networks[0].bridge",
        ),
        (
            Box::new(|w| w.networks[0].bridge = "yb0123456789abcd".into()),
            "networks[0].bridge",
        ),
        (
            Box::new(|w| w.networks[1].bridge = "yb64".into()),
            "networks[1].bridge",
        ),
        (
            Box::new(|w| w.networks[1] = vxlan("yb2", 100, &[])),
            "networks[1].segment",
        ),
        (
            Box::new(|w| w.networks[0] = vxlan("yb64", VNI_MAX + 1, &[])),
            "networks[0].segment.vni",
        ),
        (
            Box::new(|w| w.networks[0] = vxlan("yb64", 100, &[1])),
            "networks[0].segment.peers",
        ),
        (
            Box::new(|w| {
                w.networks[0].segment = SegmentLink::Vlan {
                    id: 4095,
                    uplink: "eth1".into(),
                }
            }),
            "networks[0].segment.id",
        ),
        (
            Box::new(|w| {
                w.networks[0].segment = SegmentLink::Vlan {
                    id: 0,
                    uplink: "eth1".into(),
                }
            }),
            "networks[0].segment.id",
        ),
        (
            Box::new(|w| {
                w.networks[0].segment = SegmentLink::Vlan {
                    id: 5,
                    uplink: "eth 1".into(),
                }
            }),
            "networks[0].segment.uplink",
        ),
        (
            Box::new(|w| {
                w.networks[0].segment = SegmentLink::Vlan {
                    id: 5,
                    uplink: "ybother".into(),
                }
            }),
            "networks[0].segment.uplink",
        ),
        (
            Box::new(|w| w.ports[0].ifname = "vnet0".into()),
            "ports[0].ifname",
        ),
        (
            Box::new(|w| w.ports[1].ifname = "yt1".into()),
            "ports[1].ifname",
        ),
        (
            Box::new(|w| w.ports[0].bridge = "yb99".into()),
            "ports[0].bridge",
        ),
    ];
    for (break_it, field) in cases {
        let mut w = two_networks();
        break_it(&mut w);
        let e = validate(&w).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{field}:")),
            "{field}: {e}"
        );
        // The plan refuses before emitting anything.
        assert!(matches!(
            plan(&w, &converged(&two_networks())),
            Err(LinksError::Invalid(_))
        ));
    }
    assert!(validate(&two_networks()).is_ok());
}

#[test]
fn fresh_host_gets_everything_in_order() {
    let want = two_networks();
    let mut seen = Observed {
        bridge_nf_call_iptables: Some(false),
        ..Observed::default()
    };
    seen.links.insert("eth0".into(), other("eth0"));
    let mut yt1 = other("yt1");
    yt1.up = false;
    seen.links.insert("yt1".into(), yt1);
    let p = plan(&want, &seen).unwrap();
    let create_vx = |name: &str, vni, peers: &[u8], bridge: &str| {
        let mut v = vec![LinkOp::CreateVxlan {
            name: name.into(),
            vni,
            local: ip(1),
            dev: Some("eth0".into()),
            port: 4789,
            mtu: 1450,
            bridge: bridge.into(),
        }];
        for peer in peers {
            v.push(LinkOp::AddFlood {
                name: name.into(),
                peer: ip(*peer),
            });
        }
        v
    };
    let mut expected = vec![
        LinkOp::EnableBridgeNetfilter,
        LinkOp::CreateBridge {
            name: "yb64".into(),
            mtu: 1450,
        },
        LinkOp::CreateBridge {
            name: "ybc8".into(),
            mtu: 1450,
        },
    ];
    expected.extend(create_vx("yx64", 100, &[2, 3], "yb64"));
    expected.extend(create_vx("yxc8", 200, &[2], "ybc8"));
    expected.extend([
        LinkOp::SetMtu {
            name: "yt1".into(),
            mtu: 1450,
        },
        LinkOp::SetMaster {
            name: "yt1".into(),
            bridge: "yb64".into(),
        },
        LinkOp::SetUp { name: "yt1".into() },
    ]);
    assert_eq!(p.ops, expected);
    assert_eq!(p.missing_ports, vec!["yt2".to_string()]);
}

#[test]
fn converged_host_needs_nothing() {
    let want = two_networks();
    let p = plan(&want, &converged(&want)).unwrap();
    assert_eq!(p, Plan::default());
}

#[test]
fn peers_are_added_and_removed_one_by_one() {
    let want = two_networks();
    let seen = converged(&want);
    let mut changed = want.clone();
    changed.networks[0] = vxlan("yb64", 100, &[3, 4]);
    let p = plan(&changed, &seen).unwrap();
    assert_eq!(
        p.ops,
        vec![
            LinkOp::DelFlood {
                name: "yx64".into(),
                peer: ip(2)
            },
            LinkOp::AddFlood {
                name: "yx64".into(),
                peer: ip(4)
            },
        ]
    );
}

#[test]
fn unwanted_yun_devices_go_and_others_stay() {
    let want = two_networks();
    let mut seen = converged(&want);
    seen.links
        .insert("ybold".into(), link("ybold", LinkKind::Bridge, 1500, None));
    seen.links
        .insert("yv7.deadbeef".into(), other("yv7.deadbeef"));
    seen.links
        .insert("br0".into(), link("br0", LinkKind::Bridge, 1500, None));
    seen.links.insert("yt9".into(), other("yt9"));
    let mut fewer = want.clone();
    fewer.networks.pop();
    fewer.ports.pop();
    let p = plan(&fewer, &seen).unwrap();
    let deleted: BTreeSet<_> = p
        .ops
        .iter()
        .map(|op| match op {
            LinkOp::Delete { name } => name.as_str(),
            other => panic!("only deletions expected, got {other}"),
        })
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from(["ybold", "ybc8", "yxc8", "yv7.deadbeef"])
    );
    // Nothing wanted at all: every Yun device goes, and br_netfilter is not required.
    let mut no_nf = seen.clone();
    no_nf.bridge_nf_call_iptables = None;
    let p = plan(&HostNetworks::default(), &no_nf).unwrap();
    assert_eq!(p.ops.len(), 6, "{:?}", p.ops);
}

#[test]
fn mismatched_segment_is_recreated_with_its_flood_and_ports() {
    let want = two_networks();
    let mut seen = converged(&want);
    // Someone turned learning on (or an older agent made it): not changeable in place.
    if let Some(l) = seen.links.get_mut("yx64")
        && let LinkKind::Vxlan { learning, .. } = &mut l.kind
    {
        *learning = true;
    }
    let p = plan(&want, &seen).unwrap();
    assert_eq!(
        p.ops[0],
        LinkOp::Delete {
            name: "yx64".into()
        }
    );
    assert!(matches!(&p.ops[1], LinkOp::CreateVxlan { name, .. } if name == "yx64"));
    // Its flood entries went with it, so both come back.
    assert_eq!(p.ops.len(), 4, "{:?}", p.ops);

    // A wanted bridge name held by something that is not a bridge.
    let mut seen = converged(&want);
    seen.links.insert("yb64".into(), other("yb64"));
    let p = plan(&want, &seen).unwrap();
    assert_eq!(
        p.ops[..2],
        [
            LinkOp::Delete {
                name: "yb64".into()
            },
            LinkOp::CreateBridge {
                name: "yb64".into(),
                mtu: 1450
            }
        ]
    );
    // Its old members (the VXLAN device and the port) are re-attached to the new bridge.
    assert!(p.ops.contains(&LinkOp::SetMaster {
        name: "yx64".into(),
        bridge: "yb64".into()
    }));
    assert!(p.ops.contains(&LinkOp::SetMaster {
        name: "yt1".into(),
        bridge: "yb64".into()
    }));
}

#[test]
fn mtu_and_state_drift_is_fixed_in_place() {
    let mut want = two_networks();
    let mut seen = converged(&want);
    want.networks[0].mtu = 1400;
    seen.links.get_mut("yt2").unwrap().master = Some("yb64".into());
    seen.links.get_mut("ybc8").unwrap().up = false;
    let p = plan(&want, &seen).unwrap();
    let set_mtu = |n: &str| LinkOp::SetMtu {
        name: n.into(),
        mtu: 1400,
    };
    assert_eq!(
        p.ops,
        vec![
            set_mtu("yb64"),
            LinkOp::SetUp {
                name: "ybc8".into()
            },
            set_mtu("yx64"),
            set_mtu("yt1"),
            LinkOp::SetMaster {
                name: "yt2".into(),
                bridge: "ybc8".into()
            },
        ]
    );
}

#[test]
fn missing_underlay_or_br_netfilter_is_refused() {
    let want = two_networks();
    let mut seen = converged(&want);
    seen.links.remove("eth0");
    let e = plan(&want, &seen).unwrap_err();
    assert!(
        matches!(&e, LinksError::DeviceMissing { field, .. } if field == "networks[0].segment.dev"),
        "{e}"
    );
    let mut seen = converged(&want);
    seen.bridge_nf_call_iptables = None;
    assert!(matches!(
        plan(&want, &seen),
        Err(LinksError::NoBridgeNetfilter)
    ));
}

#[test]
fn vlan_segment_plans_create_and_converges() {
    let want = HostNetworks {
        networks: vec![NetworkLink {
            bridge: "yb5".into(),
            mtu: 1500,
            segment: SegmentLink::Vlan {
                id: 5,
                uplink: "eth0".into(),
            },
        }],
        ports: vec![],
    };
    let mut seen = converged(&HostNetworks::default());
    let p = plan(&want, &seen).unwrap();
    let dev = want.networks[0].segment.device_name();
    assert_eq!(
        p.ops[1],
        LinkOp::CreateVlan {
            name: dev.clone(),
            uplink: "eth0".into(),
            id: 5,
            mtu: 1500,
            bridge: "yb5".into()
        }
    );
    assert_eq!(
        plan(&want, &converged(&want)).unwrap(),
        Plan::default(),
        "converged"
    );
    // The same VLAN id on another uplink is another device: the old one goes.
    seen = converged(&want);
    seen.links.insert("eth1".into(), other("eth1"));
    let mut moved = want.clone();
    moved.networks[0].segment = SegmentLink::Vlan {
        id: 5,
        uplink: "eth1".into(),
    };
    let p = plan(&moved, &seen).unwrap();
    assert_eq!(p.ops[0], LinkOp::Delete { name: dev });
    assert!(matches!(&p.ops[1], LinkOp::CreateVlan { uplink, .. } if uplink == "eth1"));
}

#[test]
fn desired_state_round_trips_through_json() {
    let want = two_networks();
    let json = serde_json::to_string(&want).unwrap();
    assert!(json.contains(r#""kind":"vxlan""#), "{json}");
    assert_eq!(serde_json::from_str::<HostNetworks>(&json).unwrap(), want);
    // Defaults: port 4789, no dev, no peers.
    let minimal: NetworkLink = serde_json::from_str(
        r#"{"bridge":"yb1","mtu":1450,"segment":{"kind":"vxlan","vni":1,"local":"10.0.0.1"}}"#,
    )
    .unwrap();
    assert_eq!(
        minimal.segment,
        SegmentLink::Vxlan {
            vni: 1,
            local: "10.0.0.1".parse().unwrap(),
            dev: None,
            port: 4789,
            peers: BTreeSet::new()
        }
    );
}

use super::*;
use yun_fleet::SCHEMA_VERSION;
use yun_fleet::fixtures::vm_desired;
use yun_fleet::network::{Proto, Remote, Rule};

fn vm(uid: &str, nics: Vec<NicRecord>, groups: &[&str]) -> VmDesired {
    VmDesired {
        hostname: "h".into(),
        nics,
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        ..vm_desired(uid, "t", &format!("vm-{uid}"))
    }
}

fn nic(ifname: &str, mac: &str, ip: [u8; 4]) -> NicRecord {
    NicRecord {
        network: "t/net".into(),
        ifname: ifname.into(),
        bridge: "yb00000001".into(),
        mac: mac.into(),
        ip: Ipv4Addr::from(ip),
        prefix: 24,
        gateway: None,
        mtu: 1450,
    }
}

fn web_rules() -> HostGroups {
    HostGroups {
        v: SCHEMA_VERSION,
        groups: BTreeMap::from([(
            "t/web".to_string(),
            GroupRules {
                ingress: vec![Rule {
                    proto: Proto::Tcp,
                    ports: vec![(443, 443)],
                    remote: Remote::Group("t/lb".into()),
                }],
                egress: vec![],
            },
        )]),
    }
}

#[test]
fn records_assemble_a_firewall_that_compiles() {
    let mut s = HostNetState::default();
    assert!(s.is_empty());
    assert!(s.set_vm(&vm(
        "u1",
        vec![nic("yt00000001", "52:54:00:00:00:01", [10, 0, 0, 5])],
        &["t/web"]
    )));
    assert!(s.set_groups(Some(web_rules())));
    // The lb group has no shard yet: it is known, with no members.
    let fw = s.firewall().unwrap();
    assert_eq!(fw.members.get("t/lb"), Some(&BTreeSet::new()));
    yun_firewall::compile(&fw).unwrap();

    let a = Ipv4Addr::new(10, 0, 1, 1);
    let b = Ipv4Addr::new(10, 0, 1, 2);
    assert!(s.set_member_shard("t/lb", 3, Some([a].into())));
    assert!(s.set_member_shard("t/lb", 9, Some([b].into())));
    assert!(
        !s.set_member_shard("t/lb", 9, Some([b].into())),
        "same shard again: no change"
    );
    let fw = s.firewall().unwrap();
    assert_eq!(fw.members["t/lb"], BTreeSet::from([a, b]));
    assert_eq!(fw.ports.len(), 1);
    assert_eq!(fw.ports[0].groups, BTreeSet::from(["t/web".to_string()]));

    assert!(s.set_member_shard("t/lb", 3, None));
    assert_eq!(s.firewall().unwrap().members["t/lb"], BTreeSet::from([b]));
    assert!(s.remove_vm("u1"));
    assert!(s.firewall().unwrap().ports.is_empty());
}

#[test]
fn a_vm_without_nics_is_not_tracked() {
    let mut s = HostNetState::default();
    assert!(!s.set_vm(&vm("u1", vec![], &["t/web"])));
    assert!(s.is_empty());
    let with = vm(
        "u1",
        vec![nic("yt00000001", "52:54:00:00:00:01", [10, 0, 0, 5])],
        &[],
    );
    assert!(s.set_vm(&with));
    assert!(!s.set_vm(&with), "unchanged record: no change");
    assert!(s.set_vm(&vm("u1", vec![], &[])), "NICs removed");
    assert!(s.is_empty());
}

#[test]
fn a_bad_mac_refuses_the_whole_firewall_naming_the_vm() {
    let mut s = HostNetState::default();
    s.set_vm(&vm(
        "u1",
        vec![nic("yt00000001", "52:54:00:00:00:01", [10, 0, 0, 5])],
        &[],
    ));
    s.set_vm(&vm(
        "u2",
        vec![nic("yt00000002", "not-a-mac", [10, 0, 0, 6])],
        &[],
    ));
    let err = s.firewall().unwrap_err();
    assert_eq!(
        err,
        HostStateError::BadMac {
            vm: "t/vm-u2 (u2)".into(),
            index: 0,
            mac: "not-a-mac".into()
        }
    );
}

#[test]
fn links_follow_networks_and_nics() {
    let mut s = HostNetState::default();
    let peers = BTreeSet::from([Ipv4Addr::new(192, 0, 2, 2)]);
    // The record lists this host (192.0.2.1) too; it is not its own peer.
    let mut all_hosts = peers.clone();
    all_hosts.insert(Ipv4Addr::new(192, 0, 2, 1));
    s.set_networks(Some(HostNetworks {
        v: SCHEMA_VERSION,
        networks: vec![NetworkRecord {
            id: "t/net".into(),
            bridge: "yb00000001".into(),
            mtu: 1450,
            segment: SegmentRecord::Vxlan {
                vni: 100,
                peers: all_hosts,
            },
        }],
    }));
    s.set_vm(&vm(
        "u1",
        vec![nic("yt00000001", "52:54:00:00:00:01", [10, 0, 0, 5])],
        &[],
    ));
    assert_eq!(
        s.links(&LinkSettings::default()),
        Err(HostStateError::NoTunnelAddress {
            network: "t/net".into()
        })
    );
    let settings = LinkSettings {
        tunnel_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
        ..LinkSettings::default()
    };
    let want = s.links(&settings).unwrap();
    assert_eq!(want.networks.len(), 1);
    assert_eq!(
        want.networks[0].segment,
        SegmentLink::Vxlan {
            vni: 100,
            local: Ipv4Addr::new(192, 0, 2, 1),
            dev: None,
            port: links::VXLAN_PORT,
            peers
        }
    );
    assert_eq!(
        want.ports,
        vec![PortLink {
            ifname: "yt00000001".into(),
            bridge: "yb00000001".into()
        }]
    );
    links::validate(&want).unwrap();
}

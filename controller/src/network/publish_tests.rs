use super::*;
use yun_fleet::fixtures::vm_desired;
use yun_fleet::network::{Proto, Remote, Rule};
use yun_fleet::{HostInfo, NicRecord};
use yun_fleet_etcd::Stored;

fn info(host: &str, tunnel: [u8; 4]) -> HostInfo {
    HostInfo {
        v: SCHEMA_VERSION,
        name: host.into(),
        cpus: 8,
        memory_mib: 8192,
        disk_gib: 100,
        labels: BTreeMap::new(),
        agent_version: "test".into(),
        virt_type: "qemu".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        tunnel_ip: Some(Ipv4Addr::from(tunnel)),
        seal_key: None,
        metrics_address: None,
    }
}

fn vm(uid: &str, network: &str, ip: [u8; 4], groups: &[&str]) -> VmDesired {
    VmDesired {
        nics: vec![NicRecord {
            network: network.into(),
            ifname: format!("yt{uid}"),
            bridge: format!("yb{}", network.replace('/', "")),
            mac: "52:54:00:00:00:01".into(),
            ip: Ipv4Addr::from(ip),
            prefix: 24,
            gateway: None,
            mtu: 1450,
        }],
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        ..vm_desired(uid, "t", uid)
    }
}

fn host(name: &str, tunnel: [u8; 4], vms: Vec<VmDesired>) -> (String, HostView) {
    let mut view = HostView {
        info: Some(info(name, tunnel)),
        ..HostView::default()
    };
    for v in vms {
        view.desired.insert(
            v.uid.clone(),
            Stored {
                value: v,
                mod_revision: 1,
            },
        );
    }
    (name.to_owned(), view)
}

fn catalog() -> Catalog {
    let net = |vni| NetworkDef {
        bridge: "yb".into(),
        mtu: 1450,
        segment: Segment::Vxlan(vni),
    };
    Catalog {
        networks: BTreeMap::from([("t/a".into(), net(100)), ("t/b".into(), net(200))]),
        groups: BTreeMap::from([
            ("t/web".into(), GroupRules::default()),
            (
                "t/db".into(),
                GroupRules {
                    ingress: vec![Rule {
                        proto: Proto::Tcp,
                        ports: vec![(5432, 5432)],
                        remote: Remote::Group("t/web".into()),
                    }],
                    egress: vec![],
                },
            ),
        ]),
    }
}

/// What the bus holds after `writes` are carried out.
fn apply(hosts: &mut BTreeMap<String, HostView>, writes: &[HostWrites]) {
    for w in writes {
        let view = hosts.get_mut(&w.host).unwrap();
        if let Some(n) = &w.networks {
            view.net.networks = Some(n.clone());
        }
        if let Some(g) = &w.groups {
            view.net.groups = Some(g.clone());
        }
        for (g, (_, new)) in &w.members {
            view.net
                .members
                .insert(g.clone(), yun_fleet::network::shard_members(new));
        }
        for g in &w.drop_members {
            view.net.members.remove(g);
        }
    }
}

#[test]
fn hosts_get_their_networks_rules_and_only_the_members_their_rules_name() {
    let mut hosts = BTreeMap::from([
        host(
            "h1",
            [192, 0, 2, 1],
            vec![vm("web1", "t/a", [10, 0, 0, 5], &["t/web"])],
        ),
        host(
            "h2",
            [192, 0, 2, 2],
            vec![vm("db1", "t/a", [10, 0, 0, 6], &["t/db"])],
        ),
    ]);
    let writes = plan(&hosts, &catalog());
    assert_eq!(writes.len(), 2);
    let (h1, h2) = (&writes[0], &writes[1]);
    let nets = h1.networks.as_ref().unwrap();
    assert_eq!(
        nets.networks[0].segment,
        SegmentRecord::Vxlan {
            vni: 100,
            peers: [Ipv4Addr::new(192, 0, 2, 2)].into()
        },
        "peers are the other hosts on the network, never the host itself"
    );
    assert_eq!(
        h1.groups
            .as_ref()
            .unwrap()
            .groups
            .keys()
            .collect::<Vec<_>>(),
        ["t/web"]
    );
    assert!(h1.members.is_empty(), "t/web's rules name no group");
    assert_eq!(
        h2.members["t/web"],
        (BTreeSet::new(), [Ipv4Addr::new(10, 0, 0, 5)].into())
    );

    apply(&mut hosts, &writes);
    assert!(
        plan(&hosts, &catalog()).is_empty(),
        "a converged fleet needs no writes"
    );
}

#[test]
fn a_vm_joining_a_group_updates_only_hosts_whose_rules_name_it() {
    let mut hosts = BTreeMap::from([
        host(
            "h1",
            [192, 0, 2, 1],
            vec![vm("web1", "t/a", [10, 0, 0, 5], &["t/web"])],
        ),
        host(
            "h2",
            [192, 0, 2, 2],
            vec![vm("db1", "t/a", [10, 0, 0, 6], &["t/db"])],
        ),
        host("h3", [192, 0, 2, 3], vec![]),
        host(
            "h4",
            [192, 0, 2, 4],
            vec![vm("other", "t/b", [10, 1, 0, 9], &["t/web"])],
        ),
    ]);
    let first = plan(&hosts, &catalog());
    apply(&mut hosts, &first);
    assert!(plan(&hosts, &catalog()).is_empty());

    // web2 starts on h3, on network t/b (so no VXLAN peer set on t/a changes).
    hosts.get_mut("h3").unwrap().desired.insert(
        "web2".into(),
        Stored {
            value: vm("web2", "t/b", [10, 1, 0, 7], &["t/web"]),
            mod_revision: 2,
        },
    );
    let writes = plan(&hosts, &catalog());
    let touched: Vec<&str> = writes.iter().map(|w| w.host.as_str()).collect();
    assert_eq!(touched, ["h2", "h3", "h4"], "{writes:#?}");
    let h2 = &writes[0];
    assert!(h2.networks.is_none() && h2.groups.is_none());
    let (old, new) = &h2.members["t/web"];
    assert_eq!(
        new.difference(old).copied().collect::<Vec<_>>(),
        [Ipv4Addr::new(10, 1, 0, 7)]
    );
    // h4 shares network t/b with h3: its peers change, nothing else.
    let h4 = &writes[2];
    assert!(h4.networks.is_some() && h4.groups.is_none() && h4.members.is_empty());

    // db1 leaves: h2 no longer names t/web, so its member shards are dropped.
    apply(&mut hosts, &writes);
    hosts.get_mut("h2").unwrap().desired.clear();
    let writes = plan(&hosts, &catalog());
    let h2 = writes.iter().find(|w| w.host == "h2").unwrap();
    assert_eq!(h2.drop_members, BTreeSet::from(["t/web".to_string()]));
}

#[test]
fn a_group_without_rules_is_published_empty_so_its_ports_take_no_traffic() {
    let hosts = BTreeMap::from([host(
        "h1",
        [192, 0, 2, 1],
        vec![vm("x", "t/a", [10, 0, 0, 5], &["t/missing"])],
    )]);
    let writes = plan(&hosts, &catalog());
    assert_eq!(
        writes[0].groups.as_ref().unwrap().groups["t/missing"],
        GroupRules::default()
    );
}

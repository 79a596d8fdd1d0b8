//! The compiler without a kernel: sizes, stable structure, deltas, refusals.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use yun_firewall::*;

fn port(i: u32, groups: &[&str]) -> Port {
    Port {
        ifname: format!("yt{i:08x}"),
        bridge: "ybweb".into(),
        mac: Mac([0x52, 0x54, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        ip: Ipv4Addr::from(0x0a00_0000 + i + 10),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn tcp(ports: &[(u16, u16)], remote: Remote) -> Rule {
    Rule {
        proto: Proto::Tcp,
        ports: ports.to_vec(),
        remote,
    }
}

/// 300 ports in group t/web; web has 10 ingress rules, one of them from group t/lb (20 members).
fn web_host(ports: u32) -> HostFirewall {
    let mut ingress: Vec<Rule> = (0..9)
        .map(|i| {
            tcp(
                &[(8000 + i, 8000 + i)],
                Remote::Cidr {
                    addr: Ipv4Addr::new(192, 168, i as u8, 0),
                    prefix: 24,
                },
            )
        })
        .collect();
    ingress.push(tcp(&[(443, 443)], Remote::Group("t/lb".into())));
    let lb: BTreeSet<Ipv4Addr> = (0..20).map(|i| Ipv4Addr::new(10, 9, 0, i + 1)).collect();
    HostFirewall {
        ports: (0..ports).map(|i| port(i, &["t/web"])).collect(),
        groups: BTreeMap::from([(
            "t/web".to_string(),
            GroupRules {
                ingress,
                egress: vec![],
            },
        )]),
        members: BTreeMap::from([("t/lb".to_string(), lb)]),
    }
}

#[test]
fn ten_rules_times_300_ports_grow_as_rules_plus_members() {
    let rs = compile(&web_host(300)).unwrap();
    let size = rs.size();
    // One binding per port, 20 lb members, 10 group rules, fixed plumbing.
    assert!(size.total() <= 400, "{size:?}");
    assert!(size.total() >= 300 + 20 + 10, "{size:?}");
    // Doubling the ports adds one element per port, not one per rule per port.
    let big = compile(&web_host(600)).unwrap().size();
    assert_eq!(big.total() - size.total(), 300);
    assert_eq!(big.rules, size.rules);
}

#[test]
fn a_membership_change_is_an_element_delta() {
    let mut fw = web_host(50);
    let old = compile(&fw).unwrap();
    fw.members
        .get_mut("t/lb")
        .unwrap()
        .insert(Ipv4Addr::new(10, 9, 1, 1));
    fw.members
        .get_mut("t/lb")
        .unwrap()
        .remove(&Ipv4Addr::new(10, 9, 0, 1));
    let new = compile(&fw).unwrap();
    let delta = element_delta(&old, &new).expect("same structure");
    assert_eq!((delta.added, delta.deleted), (1, 1));
    let json = serde_json::to_string(&delta.batch).unwrap();
    assert!(
        !json.contains("\"table\":{"),
        "a delta must not touch tables: {json}"
    );
    assert!(
        !json.contains("\"rule\""),
        "a delta must not touch rules: {json}"
    );
    // Unchanged input: an empty delta.
    assert!(
        element_delta(&new, &compile(&fw).unwrap())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_membership_fast_path_equals_a_recompile() {
    let mut fw = web_host(50);
    // A group with members that no rule here names: tracked, but it renders nothing.
    fw.members.insert("t/other".into(), BTreeSet::new());
    let mut rs = compile(&fw).unwrap();
    let mut applied = fw.clone();
    let mut next = fw.clone();
    let lb = next.members.get_mut("t/lb").unwrap();
    lb.remove(&Ipv4Addr::new(10, 9, 0, 3));
    lb.remove(&Ipv4Addr::new(10, 9, 0, 20));
    lb.insert(Ipv4Addr::new(10, 9, 1, 1));
    next.members
        .get_mut("t/other")
        .unwrap()
        .insert(Ipv4Addr::new(10, 7, 0, 1));

    let changes = member_changes(&applied, &next).expect("only members changed");
    assert_eq!(changes.len(), 2);
    let delta = apply_member_changes(&mut rs, &mut applied, &changes);
    assert_eq!((delta.added, delta.deleted), (1, 2));
    assert_eq!(applied, next, "the stored input follows the changes");
    assert_eq!(
        rs,
        compile(&next).unwrap(),
        "the ruleset equals a recompile"
    );
    let slow = element_delta(&compile(&fw).unwrap(), &rs).unwrap();
    assert_eq!(
        serde_json::to_value(&slow.batch).unwrap(),
        serde_json::to_value(&delta.batch).unwrap(),
        "the same nft transaction as the full diff"
    );

    // Anything but members changed: no fast path.
    let mut rule_change = next.clone();
    rule_change.groups.get_mut("t/web").unwrap().ingress.pop();
    assert!(member_changes(&next, &rule_change).is_none());
    let mut port_change = next.clone();
    port_change.ports.pop();
    assert!(member_changes(&next, &port_change).is_none());
    let mut new_group = next.clone();
    new_group.members.insert("t/new".into(), BTreeSet::new());
    assert!(member_changes(&next, &new_group).is_none());
    assert_eq!(member_changes(&next, &next.clone()), Some(vec![]));
}

#[test]
fn a_new_port_in_an_existing_profile_is_one_binding() {
    let mut fw = web_host(5);
    let old = compile(&fw).unwrap();
    fw.ports.push(port(99, &["t/web"]));
    let delta = element_delta(&old, &compile(&fw).unwrap()).unwrap();
    assert_eq!((delta.added, delta.deleted), (1, 0));
}

#[test]
fn a_rule_change_needs_a_full_replace() {
    let mut fw = web_host(5);
    let old = compile(&fw).unwrap();
    fw.groups.get_mut("t/web").unwrap().ingress.pop();
    let new = compile(&fw).unwrap();
    assert!(element_delta(&old, &new).is_none());
    let json = serde_json::to_value(full_replace(&new)).unwrap();
    let cmds = json["nftables"].as_array().unwrap();
    // add, delete, add for each of the two tables come first: the replace is atomic.
    let firsts: Vec<String> = cmds[..6]
        .iter()
        .map(|c| c.as_object().unwrap().keys().next().unwrap().clone())
        .collect();
    assert_eq!(firsts, ["add", "delete", "add", "add", "delete", "add"]);
}

#[test]
fn compiling_is_deterministic() {
    let a = serde_json::to_string(&full_replace(&compile(&web_host(30)).unwrap())).unwrap();
    let mut fw = web_host(30);
    fw.ports.reverse();
    let b = serde_json::to_string(&full_replace(&compile(&fw).unwrap())).unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_input_is_refused_naming_what_is_wrong() {
    let mut fw = web_host(2);
    fw.ports[1].groups.insert("t/missing".into());
    assert_eq!(
        compile(&fw).unwrap_err(),
        ModelError::UnknownGroup {
            ifname: fw.ports[1].ifname.clone(),
            group: "t/missing".into()
        }
    );

    let mut fw = web_host(2);
    fw.members.clear();
    let err = compile(&fw).unwrap_err().to_string();
    assert!(err.contains("t/lb") && err.contains("ingress[9]"), "{err}");

    let mut fw = web_host(2);
    fw.ports[0].ifname = "eth0".into();
    assert!(matches!(compile(&fw), Err(ModelError::BadIfname { .. })));

    let mut fw = web_host(2);
    fw.groups.get_mut("t/web").unwrap().egress.push(Rule {
        proto: Proto::Icmp,
        ports: vec![(1, 2)],
        remote: Remote::Any,
    });
    let err = compile(&fw).unwrap_err().to_string();
    assert!(
        err.contains("egress[0]") && err.contains("tcp or udp"),
        "{err}"
    );

    let mut fw = web_host(2);
    fw.groups.get_mut("t/web").unwrap().egress.push(tcp(
        &[(10, 20)],
        Remote::Cidr {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix: 8,
        },
    ));
    assert!(compile(&fw).unwrap_err().to_string().contains("host bits"));

    let mut fw = web_host(2);
    fw.ports.push(fw.ports[0].clone());
    assert!(matches!(
        compile(&fw),
        Err(ModelError::DuplicatePort { .. })
    ));
}

#[test]
fn ports_without_groups_get_the_default_policy() {
    let fw = HostFirewall {
        ports: vec![port(1, &[])],
        ..HostFirewall::default()
    };
    let rs = compile(&fw).unwrap();
    let json = serde_json::to_string(&full_replace(&rs)).unwrap();
    assert!(json.contains("default policy (no security group): all egress"));
    assert!(json.contains("default policy (no security group): no ingress but replies"));
}

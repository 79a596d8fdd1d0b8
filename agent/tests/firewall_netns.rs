//! The host firewall on a real kernel: guests are network namespaces bridged in a "host"
//! namespace the test creates; real packets (ICMP echo, TCP handshakes) show what passes.

#![allow(clippy::unwrap_used)]

mod netlab;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use netlab::{Guest, Lab, bridge_netfilter_available};
use yun_agent::network::nft::{Applied, HostFirewallDriver, NftCommand, NftFirewall};
use yun_firewall::*;

fn mac(last: u8) -> Mac {
    Mac([0x52, 0x54, 0x00, 0x59, 0x00, last])
}

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, 0, host)
}

fn rule(proto: Proto, ports: &[(u16, u16)], remote: Remote) -> Rule {
    Rule {
        proto,
        ports: ports.to_vec(),
        remote,
    }
}

fn any() -> Rule {
    rule(Proto::Any, &[], Remote::Any)
}

fn port_of(g: &Guest, bridge: &str, groups: &[&str]) -> Port {
    Port {
        ifname: g.port.clone(),
        bridge: bridge.into(),
        mac: g.mac,
        ip: g.ip,
        groups: groups.iter().map(|s| s.to_string()).collect(),
    }
}

macro_rules! require_br_netfilter {
    () => {
        if !bridge_netfilter_available() {
            yun_testkit::skip_for_kernel(
                module_path!(),
                yun_testkit::KernelFeature::BrNetfilter,
                "bridged IPv4 cannot be filtered with conntrack",
            );
            return;
        }
    };
}

/// Members of each group, from the ports that use it.
fn members_from(ports: &[Port], groups: &[&str]) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    groups
        .iter()
        .map(|g| {
            let m = ports
                .iter()
                .filter(|p| p.groups.contains(*g))
                .map(|p| p.ip)
                .collect();
            ((*g).to_owned(), m)
        })
        .collect()
}

#[test]
fn security_groups_allow_deny_and_pass_replies() {
    require_br_netfilter!();
    let mut lab = Lab::new();
    lab.bridge("ybt0");
    let a = lab.guest("a", "ybt0", "yta", mac(1), ip(50, 1));
    let b = lab.guest("b", "ybt0", "ytb", mac(2), ip(50, 2));
    let c = lab.guest("c", "ybt0", "ytc", mac(3), ip(50, 3));
    let _db = b.listen(5432);
    let _ssh = b.listen(22);
    // Control: with no firewall everything talks (so the drops below are the firewall's).
    assert!(a.ping(b.ip) && b.ping(a.ip) && c.ping(b.ip));
    assert!(a.connect(b.ip, 22));

    let ports = vec![
        port_of(&a, "ybt0", &["t/web"]),
        port_of(&b, "ybt0", &["t/db"]),
        port_of(&c, "ybt0", &[]),
    ];
    let fw = HostFirewall {
        members: members_from(&ports, &["t/web"]),
        ports,
        groups: BTreeMap::from([
            (
                "t/web".into(),
                GroupRules {
                    ingress: vec![],
                    egress: vec![any()],
                },
            ),
            (
                "t/db".into(),
                GroupRules {
                    ingress: vec![
                        rule(Proto::Tcp, &[(5432, 5432)], Remote::Group("t/web".into())),
                        rule(Proto::Icmp, &[], Remote::Group("t/web".into())),
                    ],
                    egress: vec![],
                },
            ),
        ]),
    };
    let mut nft = NftFirewall::new(NftCommand::in_netns(&lab.host));
    assert_eq!(nft.apply(&fw).unwrap(), Applied::Replaced);

    // Allowed: web → db:5432 and ICMP; db has no egress rule, so the replies pass by state.
    assert!(a.connect(b.ip, 5432), "web → db:5432 is allowed");
    assert!(a.ping(b.ip), "ICMP from web is allowed");
    // Denied: other ports, other sources, the reverse direction.
    assert!(!a.connect(b.ip, 22), "db allows only 5432 from web");
    assert!(
        !b.ping(a.ip),
        "web has no ingress rule and db no egress rule"
    );
    assert!(!c.connect(b.ip, 5432), "c is not in web");
    assert!(!c.ping(b.ip), "c is not in web");
    // A port without groups: all egress (c → a is then dropped by a's ingress), no ingress.
    assert!(!a.ping(c.ip), "default policy: no ingress");
    // Applying the same input again changes nothing.
    assert_eq!(nft.apply(&fw).unwrap(), Applied::Unchanged);
}

#[test]
fn spoofed_sources_are_dropped() {
    require_br_netfilter!();
    let mut lab = Lab::new();
    lab.bridge("ybt0");
    let a = lab.guest("a", "ybt0", "yta", mac(1), ip(51, 1));
    let b = lab.guest("b", "ybt0", "ytb", mac(2), ip(51, 2));
    let c = lab.guest("c", "ybt0", "ytc", mac(3), ip(51, 3));
    let ports = vec![
        port_of(&a, "ybt0", &["t/open"]),
        port_of(&b, "ybt0", &["t/open"]),
        port_of(&c, "ybt0", &["t/open"]),
    ];
    let fw = HostFirewall {
        ports,
        groups: BTreeMap::from([(
            "t/open".into(),
            GroupRules {
                ingress: vec![any()],
                egress: vec![any()],
            },
        )]),
        members: BTreeMap::new(),
    };
    let mut nft = NftFirewall::new(NftCommand::in_netns(&lab.host));
    nft.apply(&fw).unwrap();
    assert!(a.ping(b.ip), "bound addresses talk");

    a.readdress(ip(51, 9), a.mac);
    assert!(!a.ping(b.ip), "a foreign IPv4 source is dropped");
    a.readdress(a.ip, mac(9));
    assert!(!a.ping(b.ip), "a foreign MAC source is dropped");
    b.readdress(ip(51, 20), mac(20));
    a.readdress(b.ip, b.mac);
    assert!(!a.ping(c.ip), "another port's MAC and IP are dropped");
    a.readdress(a.ip, a.mac);
    assert!(a.ping(c.ip), "back on its own binding, a talks again");
}

#[test]
fn membership_change_is_a_delta_and_drift_is_repaired() {
    require_br_netfilter!();
    let mut lab = Lab::new();
    lab.bridge("ybt0");
    let a = lab.guest("a", "ybt0", "yta", mac(1), ip(52, 1));
    let b = lab.guest("b", "ybt0", "ytb", mac(2), ip(52, 2));
    let c = lab.guest("c", "ybt0", "ytc", mac(3), ip(52, 3));
    let d = lab.guest("d", "ybt0", "ytd", mac(4), ip(52, 4));
    let _db = b.listen(5432);
    let groups = BTreeMap::from([
        (
            "t/web".into(),
            GroupRules {
                ingress: vec![],
                egress: vec![any()],
            },
        ),
        (
            "t/batch".into(),
            GroupRules {
                ingress: vec![],
                egress: vec![any()],
            },
        ),
        (
            "t/db".into(),
            GroupRules {
                ingress: vec![rule(
                    Proto::Tcp,
                    &[(5432, 5432)],
                    Remote::Group("t/web".into()),
                )],
                egress: vec![],
            },
        ),
    ]);
    let mut ports = vec![
        port_of(&a, "ybt0", &["t/web"]),
        port_of(&b, "ybt0", &["t/db"]),
        port_of(&c, "ybt0", &["t/batch"]),
        port_of(&d, "ybt0", &["t/batch"]),
    ];
    let mut fw = HostFirewall {
        members: members_from(&ports, &["t/web"]),
        ports: ports.clone(),
        groups,
    };
    let cmd = NftCommand::in_netns(&lab.host);
    let mut nft = NftFirewall::new(cmd.clone());
    nft.apply(&fw).unwrap();
    assert!(a.connect(b.ip, 5432));
    assert!(!c.connect(b.ip, 5432), "c is in batch, not web");
    let handles_before = handles(&lab.host);

    // c joins web: its binding's profile changes and web's member set gains c.
    ports[2].groups = ["t/web".to_string()].into();
    fw.members = members_from(&ports, &["t/web"]);
    fw.ports = ports.clone();
    assert_eq!(
        nft.apply(&fw).unwrap(),
        Applied::Delta {
            added: 2,
            deleted: 1
        }
    );
    assert_eq!(
        handles(&lab.host),
        handles_before,
        "a delta must not rebuild tables, chains or rules"
    );
    assert!(c.connect(b.ip, 5432), "c's new membership is enforced");
    assert_eq!(
        nft.repair_drift().unwrap(),
        None,
        "no drift right after an apply"
    );

    // Drift 1: someone deletes c from web's member set.
    let set = yun_firewall::names::group_name("m", "t/web");
    lab.host_run(&[
        "nft",
        "delete",
        "element",
        "inet",
        "yun",
        &set,
        "{",
        &c.ip.to_string(),
        "}",
    ]);
    assert!(!c.connect(b.ip, 5432));
    let what = nft.repair_drift().unwrap().expect("element drift found");
    assert!(what.contains(&set), "{what}");
    assert!(c.connect(b.ip, 5432), "repaired");

    // Drift 2: someone flushes the anti-spoofing chain.
    lab.host_run(&["nft", "flush", "chain", "bridge", "yun", "guard"]);
    assert!(nft.repair_drift().unwrap().is_some());
    // Drift 3: someone deletes Yun's inet table.
    lab.host_run(&["nft", "delete", "table", "inet", "yun"]);
    assert!(nft.repair_drift().unwrap().is_some());
    assert_eq!(nft.repairs(), 3);
    assert!(
        c.connect(b.ip, 5432) && !d.connect(b.ip, 5432),
        "policy holds after repairs"
    );
}

/// Handles of Yun's tables, chains and rules: they change when anything is rebuilt.
fn handles(ns: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for family in ["bridge", "inet"] {
        let o = netlab::sh(&[
            "ip", "netns", "exec", ns, "nft", "-j", "list", "table", family, "yun",
        ]);
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for obj in v["nftables"].as_array().unwrap() {
            for (kind, body) in obj.as_object().unwrap() {
                if matches!(kind.as_str(), "table" | "chain" | "rule" | "set" | "map") {
                    let name = format!("{kind} {} {}", body["chain"], body["name"]);
                    out.push((name, body["handle"].as_u64().unwrap_or_default()));
                }
            }
        }
    }
    out
}

#[test]
fn cross_tenant_traffic_is_blocked_even_when_the_host_routes() {
    require_br_netfilter!();
    let mut lab = Lab::new();
    lab.bridge("ybx");
    lab.bridge("yby");
    let x1 = lab.guest("x1", "ybx", "ytx1", mac(1), ip(60, 1));
    let x2 = lab.guest("x2", "ybx", "ytx2", mac(2), ip(60, 2));
    let y1 = lab.guest("y1", "yby", "yty1", mac(3), ip(61, 1));
    // Make the host a router between the two tenant networks.
    lab.host_run(&["ip", "addr", "add", "10.60.0.254/24", "dev", "ybx"]);
    lab.host_run(&["ip", "addr", "add", "10.61.0.254/24", "dev", "yby"]);
    lab.host_run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (g, gw) in [
        (&x1, "10.60.0.254"),
        (&x2, "10.60.0.254"),
        (&y1, "10.61.0.254"),
    ] {
        assert!(
            g.run(&["ip", "route", "add", "default", "via", gw])
                .status
                .success()
        );
    }
    assert!(
        x1.ping(y1.ip),
        "control: the host routes between the networks"
    );

    // Each tenant allows everything, from anywhere.
    let open = GroupRules {
        ingress: vec![any()],
        egress: vec![any()],
    };
    let fw = HostFirewall {
        ports: vec![
            port_of(&x1, "ybx", &["x/all"]),
            port_of(&x2, "ybx", &["x/all"]),
            port_of(&y1, "yby", &["y/all"]),
        ],
        groups: BTreeMap::from([("x/all".into(), open.clone()), ("y/all".into(), open)]),
        members: BTreeMap::new(),
    };
    let mut nft = NftFirewall::new(NftCommand::in_netns(&lab.host));
    nft.apply(&fw).unwrap();
    assert!(x1.ping(x2.ip), "same network, allowed by the rules");
    assert!(
        !x1.ping(y1.ip),
        "tenant x cannot reach tenant y through the host"
    );
    assert!(!y1.ping(x1.ip), "nor the other way");
}

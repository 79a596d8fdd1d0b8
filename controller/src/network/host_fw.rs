//! What one host's firewall is compiled from, and which hosts a membership change must reach.
//!
//! A host gets the rules of only the groups its ports use, and the member addresses of only the
//! groups those rules name as remote: its ruleset grows with what runs there, not with the
//! fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use yun_firewall::{GroupRules, HostFirewall, Port, Remote};

use super::group_id;
use super::nics::NicAssignment;

/// A VM's assigned NICs and the security groups (names in its namespace) that filter them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmNics {
    pub namespace: String,
    pub security_groups: Vec<String>,
    pub nics: Vec<NicAssignment>,
}

impl VmNics {
    /// The VM's group ids (`namespace/name`).
    pub fn group_ids(&self) -> BTreeSet<String> {
        self.security_groups
            .iter()
            .map(|g| group_id(&self.namespace, g))
            .collect()
    }
}

/// Members of every group, fleet-wide: group id → the addresses of the NICs of its member VMs.
pub fn group_members<'a>(
    vms: impl IntoIterator<Item = &'a VmNics>,
) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let mut members: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for vm in vms {
        for group in vm.group_ids() {
            members
                .entry(group)
                .or_default()
                .extend(vm.nics.iter().map(|n| n.ip));
        }
    }
    members
}

/// Group ids a group's rules name as remote.
fn remote_groups(rules: &GroupRules) -> impl Iterator<Item = &String> {
    rules
        .ingress
        .iter()
        .chain(&rules.egress)
        .filter_map(|r| match &r.remote {
            Remote::Group(g) => Some(g),
            _ => None,
        })
}

/// The firewall input of a host running `vms`, from the resolved rules of every group and the
/// fleet-wide members of every group.
///
/// A group a VM names that has no rules here (it does not exist, or its rules could not be
/// resolved) filters as a group with no rules: the VM's ports fail closed instead of falling
/// back to the no-group default policy. A remote group without members gets an empty set: its
/// rules match no one.
pub fn host_firewall<'a>(
    vms: impl IntoIterator<Item = &'a VmNics>,
    groups: &BTreeMap<String, GroupRules>,
    members: &BTreeMap<String, BTreeSet<Ipv4Addr>>,
) -> HostFirewall {
    let mut fw = HostFirewall::default();
    for vm in vms {
        let ids = vm.group_ids();
        for nic in &vm.nics {
            fw.ports.push(Port {
                ifname: nic.ifname.clone(),
                bridge: nic.bridge.clone(),
                mac: nic.mac,
                ip: nic.ip,
                groups: ids.clone(),
            });
        }
        if !vm.nics.is_empty() {
            for id in ids {
                let rules = groups.get(&id).cloned().unwrap_or_default();
                fw.groups.insert(id, rules);
            }
        }
    }
    for rules in fw.groups.values() {
        for remote in remote_groups(rules) {
            if !fw.members.contains_key(remote) {
                let set = members.get(remote).cloned().unwrap_or_default();
                fw.members.insert(remote.clone(), set);
            }
        }
    }
    fw
}

/// Which hosts must recompile when a group's membership changes: the hosts with a port whose
/// groups name that group as remote. Built once from the fleet; a query walks only the groups
/// that reference the changed one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropagationIndex {
    /// Remote group → the groups whose rules name it.
    referenced_by: BTreeMap<String, BTreeSet<String>>,
    /// Group → the hosts with a port in it.
    hosts_using: BTreeMap<String, BTreeSet<String>>,
}

impl PropagationIndex {
    /// The index for `groups` (resolved rules by id) and `placed` (host name, VM on it).
    pub fn new<'a>(
        groups: &BTreeMap<String, GroupRules>,
        placed: impl IntoIterator<Item = (&'a str, &'a VmNics)>,
    ) -> Self {
        let mut index = PropagationIndex::default();
        for (id, rules) in groups {
            for remote in remote_groups(rules) {
                index
                    .referenced_by
                    .entry(remote.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }
        for (host, vm) in placed {
            if vm.nics.is_empty() {
                continue;
            }
            for id in vm.group_ids() {
                index
                    .hosts_using
                    .entry(id)
                    .or_default()
                    .insert(host.to_owned());
            }
        }
        index
    }

    /// Hosts to update when the members of `group` change.
    pub fn hosts_to_update(&self, group: &str) -> BTreeSet<String> {
        let Some(referencing) = self.referenced_by.get(group) else {
            return BTreeSet::new();
        };
        referencing
            .iter()
            .filter_map(|g| self.hosts_using.get(g))
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::nics::{bridge_name, generated_mac, port_ifname};
    use yun_firewall::{Proto, Rule};

    fn vm(ns: &str, uid: &str, groups: &[&str], ips: &[[u8; 4]]) -> VmNics {
        VmNics {
            namespace: ns.into(),
            security_groups: groups.iter().map(|g| g.to_string()).collect(),
            nics: ips
                .iter()
                .enumerate()
                .map(|(i, ip)| NicAssignment {
                    network: format!("net{i}"),
                    ifname: port_ifname(uid, i),
                    bridge: bridge_name(ns, &format!("net{i}")),
                    mac: generated_mac(uid, i, 0),
                    ip: Ipv4Addr::from(*ip),
                    prefix: 24,
                    gateway: None,
                    mtu: 1500,
                })
                .collect(),
        }
    }

    fn tcp_from(port: u16, remote: Remote) -> Rule {
        Rule {
            proto: Proto::Tcp,
            ports: vec![(port, port)],
            remote,
        }
    }

    fn from_group(port: u16, g: &str) -> GroupRules {
        GroupRules {
            ingress: vec![tcp_from(port, Remote::Group(g.into()))],
            egress: vec![],
        }
    }

    /// t/web: 80 from anywhere, 22 from t/admin; t/db: 5432 from t/web; t/admin: no rules;
    /// t/unused: 1 from t/elsewhere.
    fn groups() -> BTreeMap<String, GroupRules> {
        let mut web = from_group(22, "t/admin");
        web.ingress.push(tcp_from(80, Remote::Any));
        [
            ("t/web", web),
            ("t/db", from_group(5432, "t/web")),
            ("t/admin", GroupRules::default()),
            ("t/unused", from_group(1, "t/elsewhere")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn members_are_every_nic_address_of_every_member_vm() {
        let vms = [
            vm("t", "a", &["web", "admin"], &[[10, 0, 0, 2], [10, 1, 0, 2]]),
            vm("t", "b", &["web"], &[[10, 0, 0, 3]]),
            vm("u", "c", &["web"], &[[10, 0, 0, 4]]),
        ];
        let m = group_members(&vms);
        let ips = |g: &str| m[g].iter().map(|ip| ip.to_string()).collect::<Vec<_>>();
        assert_eq!(ips("t/web"), ["10.0.0.2", "10.0.0.3", "10.1.0.2"]);
        assert_eq!(ips("t/admin"), ["10.0.0.2", "10.1.0.2"]);
        assert_eq!(ips("u/web"), ["10.0.0.4"]);
    }

    #[test]
    fn a_host_gets_only_its_groups_and_the_members_their_rules_name() {
        let fleet = [
            vm("t", "web1", &["web"], &[[10, 0, 0, 2]]),
            vm("t", "db1", &["db"], &[[10, 0, 0, 3]]),
            vm("t", "adm", &["admin"], &[[10, 0, 0, 9]]),
            vm("t", "lone", &[], &[[10, 0, 0, 7]]),
        ];
        let members = group_members(&fleet);
        // This host runs web1, db1 and lone.
        let fw = host_firewall([&fleet[0], &fleet[1], &fleet[3]], &groups(), &members);
        assert_eq!(fw.ports.len(), 3);
        assert_eq!(
            fw.groups.keys().collect::<Vec<_>>(),
            ["t/db", "t/web"],
            "only the groups its ports use"
        );
        assert_eq!(
            fw.members.keys().collect::<Vec<_>>(),
            ["t/admin", "t/web"],
            "only the groups those rules name"
        );
        assert_eq!(fw.members["t/admin"], [Ipv4Addr::new(10, 0, 0, 9)].into());
        assert!(fw.ports[2].groups.is_empty());
        yun_firewall::compile(&fw).unwrap();
    }

    #[test]
    fn missing_groups_and_memberless_remotes_still_compile() {
        let mut groups = groups();
        groups.insert("t/ghost-ref".into(), from_group(443, "t/nobody"));
        let fleet = [vm(
            "t",
            "x",
            &["ghost-ref", "does-not-exist"],
            &[[10, 0, 0, 5]],
        )];
        let fw = host_firewall(&fleet, &groups, &group_members(&fleet));
        assert!(fw.members["t/nobody"].is_empty());
        assert_eq!(fw.groups["t/does-not-exist"], GroupRules::default());
        yun_firewall::compile(&fw).unwrap();
        // A host without VMs has an empty firewall input.
        assert_eq!(
            host_firewall([], &groups, &BTreeMap::new()),
            HostFirewall::default()
        );
    }

    #[test]
    fn a_membership_change_reaches_exactly_the_referencing_hosts() {
        let fleet = [
            ("h1", vm("t", "web1", &["web"], &[[10, 0, 0, 2]])),
            ("h2", vm("t", "db1", &["db"], &[[10, 0, 0, 3]])),
            ("h3", vm("t", "adm", &["admin"], &[[10, 0, 0, 9]])),
            ("h4", vm("t", "lone", &[], &[[10, 0, 0, 7]])),
            ("h5", vm("t", "web2", &["web", "db"], &[[10, 0, 0, 4]])),
            // In t/db, but without a NIC: no port, nothing to update.
            ("h6", vm("t", "db-nonic", &["db"], &[])),
        ];
        let index = PropagationIndex::new(&groups(), fleet.iter().map(|(h, v)| (*h, v)));
        let hosts = |g: &str| index.hosts_to_update(g).into_iter().collect::<Vec<_>>();
        // t/web names t/admin: hosts with a t/web port.
        assert_eq!(hosts("t/admin"), ["h1", "h5"]);
        // t/db names t/web: hosts with a t/db port.
        assert_eq!(hosts("t/web"), ["h2", "h5"]);
        // No rule names t/db; t/unused names t/elsewhere but no port uses t/unused.
        assert!(hosts("t/db").is_empty());
        assert!(hosts("t/elsewhere").is_empty());
        assert!(hosts("u/admin").is_empty());
        // The answer agrees with recomputing every host's firewall input.
        let members = group_members(fleet.iter().map(|(_, v)| v));
        for g in ["t/admin", "t/web", "t/db"] {
            let mut changed = members.clone();
            changed
                .entry(g.to_owned())
                .or_default()
                .insert(Ipv4Addr::new(10, 9, 9, 9));
            let differing: Vec<&str> = ["h1", "h2", "h3", "h4", "h5", "h6"]
                .into_iter()
                .filter(|h| {
                    let on = || fleet.iter().filter(|(x, _)| x == h).map(|(_, v)| v);
                    host_firewall(on(), &groups(), &members)
                        != host_firewall(on(), &groups(), &changed)
                })
                .collect();
            assert_eq!(differing, hosts(g), "{g}");
        }
    }
}

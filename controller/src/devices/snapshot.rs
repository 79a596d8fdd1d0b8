//! What the device view serves, compiled once per reconcile pass: the issued devices, and the
//! security groups of each namespace one of them may see — their rules as the controller
//! resolved them for the hosts' firewalls, and their members as the fleet holds them (the
//! interface addresses of the placed VMs that name the group, what the hosts' member sets are
//! built from).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use yun_crds::DeviceView;
use yun_fleet_etcd::HostView;

use super::{DeviceEntry, Directory, GroupView};
use crate::network::groups::{GroupError, ResolvedGroup};

/// Every security group's resolution by group id (`namespace/name`), as a pass published it.
pub type Resolved = BTreeMap<String, Result<ResolvedGroup, GroupError>>;

/// Member addresses by group id, from the VMs placed on the fleet.
pub fn members(hosts: &BTreeMap<String, HostView>) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let mut out: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for vm in hosts.values().flat_map(|h| h.desired.values()) {
        for group in &vm.value.security_groups {
            out.entry(group.clone())
                .or_default()
                .extend(vm.value.nics.iter().map(|n| n.ip));
        }
    }
    out
}

/// The security groups of `namespace`, by name.
pub fn namespace_groups(
    namespace: &str,
    groups: Option<&Resolved>,
    members: &BTreeMap<String, BTreeSet<Ipv4Addr>>,
) -> Vec<GroupView> {
    let Some(groups) = groups else {
        return Vec::new();
    };
    groups
        .iter()
        .filter_map(|(id, resolved)| {
            let (ns, name) = id.split_once('/')?;
            (ns == namespace).then_some((id, name, resolved))
        })
        .map(|(id, name, resolved)| {
            let members = members.get(id).into_iter().flatten().copied().collect();
            match resolved {
                Ok(r) => GroupView {
                    name: name.to_owned(),
                    ingress: r.rules.ingress.clone(),
                    egress: r.rules.egress.clone(),
                    members,
                    unresolved: r.unresolved.iter().map(ToString::to_string).collect(),
                    error: None,
                },
                Err(e) => GroupView {
                    name: name.to_owned(),
                    ingress: Vec::new(),
                    egress: Vec::new(),
                    members,
                    unresolved: Vec::new(),
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

/// The directory after a pass: `entries` are the issued devices.
pub fn directory(
    entries: Vec<DeviceEntry>,
    groups: Option<&Resolved>,
    hosts: Option<&BTreeMap<String, HostView>>,
) -> Directory {
    let members = hosts.map(members).unwrap_or_default();
    let namespaces: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.views.contains(&DeviceView::SecurityGroups))
        .map(|e| e.namespace.as_str())
        .collect();
    let security_groups = namespaces
        .into_iter()
        .map(|ns| (ns.to_owned(), namespace_groups(ns, groups, &members)))
        .collect();
    Directory {
        ready: true,
        devices: entries
            .into_iter()
            .map(|e| (e.user_id.clone(), e))
            .collect(),
        security_groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::groups::resolve_all;

    fn group(ns: &str, name: &str, yaml: &str) -> yun_crds::SecurityGroup {
        let mut g = yun_crds::SecurityGroup::new(name, serde_yaml::from_str(yaml).unwrap());
        g.metadata.namespace = Some(ns.into());
        g
    }

    fn device(ns: &str, user: &str, views: Vec<DeviceView>) -> DeviceEntry {
        DeviceEntry {
            namespace: ns.into(),
            name: "ids".into(),
            user_id: user.into(),
            project_id: format!("p-{ns}"),
            credential_id: format!("c-{user}"),
            views,
        }
    }

    #[test]
    fn only_the_namespaces_of_devices_with_the_view_are_compiled() {
        let resolved = resolve_all(&[
            group(
                "team-a",
                "web",
                "ingress: [{protocol: tcp, ports: [{port: 443}]}]",
            ),
            group("team-a", "db", "ingress: [{remote: {securityGroup: web}}]"),
            group("team-b", "secret", "ingress: [{protocol: tcp}]"),
        ]);
        let dir = directory(
            vec![
                device("team-a", "u1", vec![DeviceView::SecurityGroups]),
                device("team-b", "u2", vec![]),
            ],
            Some(&resolved),
            None,
        );
        assert!(dir.ready);
        assert_eq!(dir.devices.len(), 2);
        assert_eq!(
            dir.security_groups.keys().collect::<Vec<_>>(),
            vec!["team-a"]
        );
        let names: Vec<&str> = dir.security_groups["team-a"]
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(names, vec!["db", "web"]);
        let web = &dir.security_groups["team-a"][1];
        assert_eq!(web.ingress.len(), 1);
        assert_eq!(web.ingress[0].ports, vec![(443, 443)]);
    }
}

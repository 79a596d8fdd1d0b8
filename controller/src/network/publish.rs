//! Which tenant-network records each host should hold, from the VMs placed on the fleet, and
//! the writes that bring the bus there. Pure: the fleet view goes in, per-host writes come out.
//!
//! A host's records follow what runs on it: the networks its VMs are attached to (with the
//! tunnel addresses of the other hosts on each VXLAN network), the rules of the groups its
//! VMs are in, and the members of the groups those rules name. Writes are computed against
//! what the host already holds, so a VM joining a group produces a member-shard write on only
//! the hosts whose rules name that group, and nothing anywhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use yun_fleet::network::{GroupRules, SegmentRecord};
use yun_fleet::{HostGroups, HostNetworks, NetworkRecord, SCHEMA_VERSION, VmDesired};
use yun_fleet_etcd::HostView;

/// A usable network as hosts see it (no peers: those come from placement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    pub bridge: String,
    pub mtu: u32,
    pub segment: Segment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Vlan(u16),
    Vxlan(u32),
}

/// Networks (by `namespace/name`) and resolved group rules (by group id) the fleet uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub networks: BTreeMap<String, NetworkDef>,
    pub groups: BTreeMap<String, GroupRules>,
}

/// The writes one host needs. Empty fields: nothing to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostWrites {
    pub host: String,
    pub networks: Option<HostNetworks>,
    pub groups: Option<HostGroups>,
    /// Group id → (members the host holds, members it should hold).
    pub members: BTreeMap<String, (BTreeSet<Ipv4Addr>, BTreeSet<Ipv4Addr>)>,
    /// Groups no rule on the host names any more: their shards go.
    pub drop_members: BTreeSet<String>,
}

impl HostWrites {
    pub fn is_empty(&self) -> bool {
        self.networks.is_none()
            && self.groups.is_none()
            && self.members.is_empty()
            && self.drop_members.is_empty()
    }
}

fn vms(view: &HostView) -> impl Iterator<Item = &VmDesired> {
    view.desired.values().map(|s| &s.value)
}

/// Per-host writes for the whole fleet, hosts in name order; hosts already right are left out.
pub fn plan(hosts: &BTreeMap<String, HostView>, catalog: &Catalog) -> Vec<HostWrites> {
    // Fleet-wide: members of each group, and the tunnel addresses of the hosts on each network.
    let mut members: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mut on_network: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for view in hosts.values() {
        let tunnel = view.info.as_ref().and_then(|i| i.tunnel_ip);
        for vm in vms(view) {
            for g in &vm.security_groups {
                members
                    .entry(g.as_str())
                    .or_default()
                    .extend(vm.nics.iter().map(|n| n.ip));
            }
            for nic in &vm.nics {
                let set = on_network.entry(nic.network.as_str()).or_default();
                set.extend(tunnel);
            }
        }
    }
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for (host, view) in hosts {
        let mut w = HostWrites {
            host: host.clone(),
            ..HostWrites::default()
        };
        let tunnel = view.info.as_ref().and_then(|i| i.tunnel_ip);
        let used_networks: BTreeSet<&str> = vms(view)
            .flat_map(|vm| &vm.nics)
            .map(|n| n.network.as_str())
            .collect();
        let networks: Vec<NetworkRecord> = used_networks
            .iter()
            .filter_map(|id| {
                let def = catalog.networks.get(*id)?;
                let segment = match def.segment {
                    Segment::Vlan(id) => SegmentRecord::Vlan { id },
                    Segment::Vxlan(vni) => SegmentRecord::Vxlan {
                        vni,
                        peers: on_network
                            .get(id)
                            .unwrap_or(&empty)
                            .iter()
                            .copied()
                            .filter(|p| Some(*p) != tunnel)
                            .collect(),
                    },
                };
                Some(NetworkRecord {
                    id: (*id).to_owned(),
                    bridge: def.bridge.clone(),
                    mtu: def.mtu,
                    segment,
                })
            })
            .collect();
        let held_networks = view
            .net
            .networks
            .as_ref()
            .map(|n| n.networks.as_slice())
            .unwrap_or_default();
        if held_networks != networks.as_slice() {
            w.networks = Some(HostNetworks {
                v: SCHEMA_VERSION,
                networks,
            });
        }

        let used_groups: BTreeSet<&str> = vms(view)
            .filter(|vm| !vm.nics.is_empty())
            .flat_map(|vm| &vm.security_groups)
            .map(String::as_str)
            .collect();
        // A group without resolved rules filters with none: its ports take no traffic.
        let groups: BTreeMap<String, GroupRules> = used_groups
            .iter()
            .map(|g| {
                (
                    (*g).to_owned(),
                    catalog.groups.get(*g).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let held_groups = view.net.groups.as_ref().map(|g| &g.groups);
        if held_groups.unwrap_or(&BTreeMap::new()) != &groups {
            w.groups = Some(HostGroups {
                v: SCHEMA_VERSION,
                groups: groups.clone(),
            });
        }

        let referenced: BTreeSet<&str> = groups
            .values()
            .flat_map(GroupRules::remote_groups)
            .collect();
        for g in &referenced {
            let want = members.get(g).unwrap_or(&empty);
            let held = view.net.group_members(g);
            if &held != want {
                w.members.insert((*g).to_owned(), (held, want.clone()));
            }
        }
        w.drop_members = view
            .net
            .members
            .keys()
            .filter(|g| !referenced.contains(g.as_str()))
            .cloned()
            .collect();
        if !w.is_empty() {
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;

//! What this host's tenant networking should be, assembled from its fleet-bus records: the
//! NICs and security groups of its VMs, the networks it carries, the rules of the groups its
//! ports use and the members of the groups those rules name. Pure: the records go in, the
//! firewall input and the wanted links come out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use yun_firewall::{HostFirewall, Mac, Port};
use yun_fleet::network::{GroupRules, SegmentRecord};
use yun_fleet::{HostGroups, HostNetworks, NetworkRecord, NicRecord, VmDesired};
use yun_fleet_etcd::HostNetView;

use super::links::{self, NetworkLink, PortLink, SegmentLink};

/// Host settings the links need (agent config `[network]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSettings {
    /// This host's VXLAN tunnel endpoint.
    pub tunnel_ip: Option<Ipv4Addr>,
    /// Underlay device VXLAN binds to (`None`: routing decides).
    pub tunnel_dev: Option<String>,
    /// The trunk VLAN sub-interfaces are made on.
    pub vlan_uplink: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostStateError {
    #[error("VM {vm}: nics[{index}].mac {mac:?} is not a MAC address")]
    BadMac {
        vm: String,
        index: usize,
        mac: String,
    },
    #[error("network {network}: VXLAN needs this host's tunnel address ([network] tunnel_address)")]
    NoTunnelAddress { network: String },
    #[error("network {network}: VLAN needs an uplink ([network] vlan_uplink)")]
    NoVlanUplink { network: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct VmNet {
    name: String,
    nics: Vec<NicRecord>,
    groups: BTreeSet<String>,
}

/// Stores `next` in `held` when they differ (no copy either way); `true` when it did.
fn replace_if_different<T: PartialEq>(held: &mut T, next: T) -> bool {
    if *held == next {
        return false;
    }
    *held = next;
    true
}

/// The host's networking records as last seen on the bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetState {
    vms: BTreeMap<String, VmNet>,
    networks: Vec<NetworkRecord>,
    groups: BTreeMap<String, GroupRules>,
    members: BTreeMap<String, BTreeMap<u32, BTreeSet<Ipv4Addr>>>,
}

impl HostNetState {
    /// Replaces the network records with a relisted view (the VMs come through `set_vm`).
    pub fn reset_records(&mut self, view: HostNetView) -> bool {
        let members_changed = replace_if_different(&mut self.members, view.members);
        // Both setters run: `|` does not short-circuit.
        self.set_networks(view.networks) | self.set_groups(view.groups) | members_changed
    }

    /// A VM's desired record; `true` when its networking changed.
    pub fn set_vm(&mut self, vm: &VmDesired) -> bool {
        let next = VmNet {
            name: format!("{}/{}", vm.namespace, vm.name),
            nics: vm.nics.clone(),
            groups: vm.security_groups.iter().cloned().collect(),
        };
        if next.nics.is_empty() {
            return self.vms.remove(&vm.uid).is_some();
        }
        match self.vms.get_mut(&vm.uid) {
            Some(held) => replace_if_different(held, next),
            None => {
                self.vms.insert(vm.uid.clone(), next);
                true
            }
        }
    }

    pub fn remove_vm(&mut self, uid: &str) -> bool {
        self.vms.remove(uid).is_some()
    }

    pub fn set_networks(&mut self, nets: Option<HostNetworks>) -> bool {
        replace_if_different(
            &mut self.networks,
            nets.map(|n| n.networks).unwrap_or_default(),
        )
    }

    pub fn set_groups(&mut self, groups: Option<HostGroups>) -> bool {
        replace_if_different(
            &mut self.groups,
            groups.map(|g| g.groups).unwrap_or_default(),
        )
    }

    /// One member shard (`None`: deleted).
    pub fn set_member_shard(
        &mut self,
        group: &str,
        shard: u32,
        members: Option<BTreeSet<Ipv4Addr>>,
    ) -> bool {
        let shards = self.members.entry(group.to_owned()).or_default();
        let changed = match (members, shards.get_mut(&shard)) {
            (Some(m), Some(held)) => replace_if_different(held, m),
            (Some(m), None) => {
                shards.insert(shard, m);
                true
            }
            (None, _) => shards.remove(&shard).is_some(),
        };
        if shards.is_empty() {
            self.members.remove(group);
        }
        changed
    }

    /// Nothing to enforce: no tenant NIC, network or group on this host. The agent leaves the
    /// kernel alone then (it never creates Yun's tables on a host without tenant networking).
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty() && self.networks.is_empty() && self.groups.is_empty()
    }

    /// The firewall input. Groups a rule names as its remote but with no member shard on the
    /// bus have no members (nothing from them is allowed).
    pub fn firewall(&self) -> Result<HostFirewall, HostStateError> {
        let mut ports = Vec::new();
        for (uid, vm) in &self.vms {
            for (index, nic) in vm.nics.iter().enumerate() {
                let mac: Mac = nic.mac.parse().map_err(|_| HostStateError::BadMac {
                    vm: format!("{} ({uid})", vm.name),
                    index,
                    mac: nic.mac.clone(),
                })?;
                ports.push(Port {
                    ifname: nic.ifname.clone(),
                    bridge: nic.bridge.clone(),
                    mac,
                    ip: nic.ip,
                    groups: vm.groups.clone(),
                });
            }
        }
        ports.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        let mut members: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for g in self.groups.values().flat_map(GroupRules::remote_groups) {
            members.entry(g.to_owned()).or_default();
        }
        for (group, shards) in &self.members {
            members
                .entry(group.clone())
                .or_default()
                .extend(shards.values().flatten().copied());
        }
        Ok(HostFirewall {
            ports,
            groups: self.groups.clone(),
            members,
        })
    }

    /// The links this host should have.
    pub fn links(&self, s: &LinkSettings) -> Result<links::HostNetworks, HostStateError> {
        let mut networks = Vec::with_capacity(self.networks.len());
        for n in &self.networks {
            let segment = match &n.segment {
                SegmentRecord::Vxlan { vni, peers } => {
                    let local = s.tunnel_ip.ok_or_else(|| HostStateError::NoTunnelAddress {
                        network: n.id.clone(),
                    })?;
                    SegmentLink::Vxlan {
                        vni: *vni,
                        local,
                        dev: s.tunnel_dev.clone(),
                        port: links::VXLAN_PORT,
                        // The record may list every host on the network, this one included.
                        peers: peers.iter().copied().filter(|p| *p != local).collect(),
                    }
                }
                SegmentRecord::Vlan { id } => SegmentLink::Vlan {
                    id: *id,
                    uplink: s
                        .vlan_uplink
                        .clone()
                        .ok_or_else(|| HostStateError::NoVlanUplink {
                            network: n.id.clone(),
                        })?,
                },
            };
            networks.push(NetworkLink {
                bridge: n.bridge.clone(),
                mtu: n.mtu,
                segment,
            });
        }
        let ports = self
            .vms
            .values()
            .flat_map(|vm| &vm.nics)
            .map(|nic| PortLink {
                ifname: nic.ifname.clone(),
                bridge: nic.bridge.clone(),
            })
            .collect();
        Ok(links::HostNetworks { networks, ports })
    }
}

#[cfg(test)]
#[path = "host_state_tests.rs"]
mod tests;

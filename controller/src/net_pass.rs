//! Tenant networking, shared by both desired-state sources: one pass assigns every VM's NICs
//! (addresses from each Network's pool, sticky across passes) and, once the VMs are placed,
//! brings every host's network records in line with what runs on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use yun_crds::{Network, NetworkSpec, Segment as CrdSegment, VirtualMachineSpec};
use yun_firewall::Mac;
use yun_fleet::NicRecord;
use yun_fleet_etcd::{BusError, FleetBus, HostView};

use crate::network::groups::{GroupError, ResolvedGroup, resolve_all};
use crate::network::ipam::{Allocator, FixedIp, IpamError, POOL_EXHAUSTED, Pool};
use crate::network::nics::assign_nic;
use crate::network::publish::{Catalog, HostWrites, NetworkDef, Segment};
use crate::network::tenancy::{Verdict, network_id, verdicts};
use crate::network::{ObjectId, group_id};
use crate::vm_logic::Unscheduled;

/// One usable network: its spec, address pool and who holds which address.
///
/// One allocator serves the whole pass (in Kubernetes mode the pass runs every 2 s over every
/// VM): an allocator per NIC would rebuild the held set for each one, quadratic in the VMs.
#[derive(Debug)]
struct PoolState {
    spec: NetworkSpec,
    /// Holds every address in `held` and every address handed out in this pass.
    alloc: Allocator<Pool>,
    /// Address → uid of the VM holding it.
    held: BTreeMap<Ipv4Addr, String>,
    /// Uid → the addresses it was recorded holding (some may since be held by another).
    by_holder: BTreeMap<String, Vec<Ipv4Addr>>,
    macs: BTreeMap<Mac, String>,
}

impl PoolState {
    fn hold(&mut self, ip: Ipv4Addr, uid: &str) {
        self.alloc.hold(ip);
        self.held.insert(ip, uid.to_owned());
        self.by_holder.entry(uid.to_owned()).or_default().push(ip);
    }

    /// The addresses `uid` holds now: free to it, taken for everyone else.
    fn held_by(&self, uid: &str) -> Vec<Ipv4Addr> {
        self.by_holder
            .get(uid)
            .into_iter()
            .flatten()
            .copied()
            .filter(|ip| self.held.get(ip).is_some_and(|h| h == uid))
            .collect()
    }

    /// Hands out `fixed`, or the lowest free address, treating `uid`'s own addresses as free.
    fn allocate_for(
        &mut self,
        uid: &str,
        fixed: Option<FixedIp<'_>>,
    ) -> Result<Ipv4Addr, IpamError> {
        let own = self.held_by(uid);
        for ip in &own {
            self.alloc.release(*ip);
        }
        let result = self.alloc.allocate(fixed);
        for ip in &own {
            self.alloc.hold(*ip);
        }
        result
    }
}

/// NIC assignment for one pass (bootstrap or Kubernetes mode).
#[derive(Debug, Default)]
pub struct NetPass {
    pub catalog: Catalog,
    pools: BTreeMap<String, PoolState>,
    /// Networks (`ns/name`) refused by the tenancy checks, with why.
    refused: BTreeMap<String, String>,
    /// Networks (`ns/name`) being deleted: they keep serving the VMs that hold addresses on
    /// them, and hand out no new ones.
    closing: BTreeSet<String>,
    /// Each VM's NICs as the fleet holds them (uid → records), for stickiness.
    placed: BTreeMap<String, Vec<NicRecord>>,
    /// Group id → addresses of its members (placed, or assigned in this pass).
    members: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// The tenancy verdict on every network, as this pass acted on it.
    pub verdicts: BTreeMap<ObjectId, Verdict>,
    /// Every security group's resolution (by group id), as this pass published it.
    pub resolved: BTreeMap<String, Result<ResolvedGroup, GroupError>>,
}

impl NetPass {
    pub fn new(
        networks: &[Network],
        groups: &[yun_crds::SecurityGroup],
        hosts: &BTreeMap<String, HostView>,
    ) -> NetPass {
        let mut pass = NetPass {
            verdicts: verdicts(networks),
            resolved: resolve_all(groups),
            ..NetPass::default()
        };
        for n in networks {
            let id = network_id(n);
            let key = id.to_string();
            if n.metadata.deletion_timestamp.is_some() {
                pass.closing.insert(key.clone());
            }
            if let Some(Err(refusal)) = pass.verdicts.get(&id) {
                pass.refused.insert(key, refusal.to_string());
                continue;
            }
            let def = match (n.spec.segment(), n.spec.effective_mtu()) {
                (Ok(seg), Ok(mtu)) => NetworkDef {
                    bridge: crate::network::nics::bridge_name(&id.namespace, &id.name),
                    mtu,
                    segment: match seg {
                        CrdSegment::Vlan(v) => Segment::Vlan(v),
                        CrdSegment::Vxlan(v) => Segment::Vxlan(v),
                    },
                },
                _ => continue,
            };
            match Pool::new(key.clone(), &n.spec) {
                Ok(pool) => {
                    pass.catalog.networks.insert(key.clone(), def);
                    pass.pools.insert(
                        key,
                        PoolState {
                            spec: n.spec.clone(),
                            alloc: Allocator::new(pool, []),
                            held: BTreeMap::new(),
                            by_holder: BTreeMap::new(),
                            macs: BTreeMap::new(),
                        },
                    );
                }
                Err(e) => {
                    pass.refused.insert(key, e.to_string());
                }
            }
        }
        for (id, resolved) in &pass.resolved {
            if let Ok(r) = resolved {
                pass.catalog.groups.insert(id.clone(), r.rules.clone());
            }
        }
        for view in hosts.values() {
            for vm in view.desired.values().map(|s| &s.value) {
                for nic in &vm.nics {
                    if let Some(p) = pass.pools.get_mut(&nic.network) {
                        p.hold(nic.ip, &vm.uid);
                        if let Ok(mac) = nic.mac.parse() {
                            p.macs.insert(mac, vm.uid.clone());
                        }
                    }
                }
                if !vm.nics.is_empty() {
                    pass.placed.insert(vm.uid.clone(), vm.nics.clone());
                }
                for g in &vm.security_groups {
                    pass.members
                        .entry(g.clone())
                        .or_default()
                        .extend(vm.nics.iter().map(|n| n.ip));
                }
            }
        }
        pass
    }

    /// Addresses held on a network (`namespace/name`), for its status.
    pub fn held_addresses(&self, network: &str) -> BTreeSet<Ipv4Addr> {
        self.pools
            .get(network)
            .map(|p| p.held.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Addresses of a group's members (for its status).
    pub fn group_member_count(&self, group: &str) -> u32 {
        self.members
            .get(group)
            .map_or(0, |m| u32::try_from(m.len()).unwrap_or(u32::MAX))
    }

    /// The VM's NICs and group ids; an address it already holds (placed, or from its last
    /// status) is kept. Nothing is held for a VM that cannot get all of its NICs.
    pub fn assign(
        &mut self,
        namespace: &str,
        uid: &str,
        spec: &VirtualMachineSpec,
        previous: &[(String, Ipv4Addr)],
    ) -> Result<(Vec<NicRecord>, Vec<String>), Unscheduled> {
        let mut fresh = Vec::new();
        let out = match self.assign_nics(namespace, uid, spec, previous, &mut fresh) {
            Ok(out) => out,
            Err(why) => {
                // Give back what the NICs before the failing one took.
                for (network, ip) in fresh {
                    if let Some(p) = self.pools.get_mut(&network) {
                        p.alloc.release(ip);
                    }
                }
                return Err(why);
            }
        };
        let groups: Vec<String> = spec
            .security_groups
            .iter()
            .map(|g| group_id(namespace, g))
            .collect();
        // Hold the addresses only once every NIC was assigned.
        for g in &groups {
            self.members
                .entry(g.clone())
                .or_default()
                .extend(out.iter().map(|n| n.ip));
        }
        for nic in &out {
            if let Some(p) = self.pools.get_mut(&nic.network) {
                p.hold(nic.ip, uid);
                if let Ok(mac) = nic.mac.parse() {
                    p.macs.insert(mac, uid.to_owned());
                }
            }
        }
        Ok((out, groups))
    }

    /// Each NIC of the VM in turn; `fresh` collects the addresses taken from the allocators
    /// that the VM did not hold before (released again if a later NIC fails).
    fn assign_nics(
        &mut self,
        namespace: &str,
        uid: &str,
        spec: &VirtualMachineSpec,
        previous: &[(String, Ipv4Addr)],
        fresh: &mut Vec<(String, Ipv4Addr)>,
    ) -> Result<Vec<NicRecord>, Unscheduled> {
        let mut out = Vec::with_capacity(spec.networks.len());
        for (index, att) in spec.networks.iter().enumerate() {
            let id = format!("{namespace}/{}", att.network);
            let not_ready = |message: String| Unscheduled {
                reason: "NetworkNotReady",
                message,
            };
            let Some(p) = self.pools.get_mut(&id) else {
                return Err(not_ready(match self.refused.get(&id) {
                    Some(why) => format!("spec.networks[{index}]: Network {id} is refused: {why}"),
                    None => format!("spec.networks[{index}]: Network {id} does not exist"),
                }));
            };
            let own = |holder: Option<&String>| holder.is_none_or(|h| h == uid);
            let sticky = self
                .placed
                .get(uid)
                .and_then(|nics| nics.get(index))
                .filter(|n| n.network == id)
                .map(|n| n.ip)
                .or_else(|| {
                    previous
                        .get(index)
                        .filter(|(n, _)| *n == id)
                        .map(|(_, ip)| *ip)
                })
                .filter(|ip| own(p.held.get(ip)) && p.alloc.pool().is_assignable(*ip));
            if sticky.is_none() && self.closing.contains(&id) {
                return Err(not_ready(format!(
                    "spec.networks[{index}]: Network {id} is being deleted"
                )));
            }
            let field = format!("spec.networks[{index}].ip");
            let sticky_text = sticky.map(|ip| ip.to_string());
            let fixed = att.ip.as_deref().or(sticky_text.as_deref());
            let ip = p
                .allocate_for(uid, fixed.map(|ip| FixedIp { field: &field, ip }))
                .map_err(|e| Unscheduled {
                    reason: if matches!(e, IpamError::Exhausted { .. }) {
                        POOL_EXHAUSTED
                    } else {
                        "InvalidAddress"
                    },
                    message: e.to_string(),
                })?;
            if p.held.get(&ip).is_none_or(|h| h != uid) {
                fresh.push((id.clone(), ip));
            }
            let taken_mac = |m: &Mac| p.macs.get(m).is_some_and(|h| h != uid);
            let nic =
                assign_nic(namespace, uid, index, att, &p.spec, ip, taken_mac).map_err(|e| {
                    Unscheduled {
                        reason: "InvalidAddress",
                        message: e.to_string(),
                    }
                })?;
            out.push(nic.record(namespace));
        }
        Ok(out)
    }
}

/// Carries out per-host network writes. Returns how many hosts were written.
pub async fn execute(bus: &FleetBus, writes: &[HostWrites]) -> Result<usize, BusError> {
    for w in writes {
        // Rules and members before the networks, so a port never meets a bridge whose
        // firewall does not know it yet.
        if let Some(g) = &w.groups {
            bus.put_host_groups(&w.host, g).await?;
        }
        for (group, (old, new)) in &w.members {
            bus.sync_group_members(&w.host, group, old, new).await?;
        }
        for group in &w.drop_members {
            bus.delete_group_members(&w.host, group).await?;
        }
        if let Some(n) = &w.networks {
            bus.put_host_networks(&w.host, n).await?;
        }
    }
    Ok(writes.len())
}

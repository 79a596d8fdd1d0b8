//! The network pass of both modes, the pure part: one [`NetSnapshot`] per pass, computed from
//! the Networks, SecurityGroups and VirtualMachines (the Kubernetes caches, or the bootstrap
//! store's objects) and the fleet's desired records. VM reconciles read their NICs from the
//! latest snapshot, Network and SecurityGroup statuses read their inputs and users from it.
//! Addresses go to VMs that held addresses first, then to the oldest, in both modes.
//!
//! Why one serial pass instead of allocating inside each VM reconcile: VM reconciles run
//! concurrently, and two of them picking the lowest free address at once would hand out the same
//! one. A single pass over every VM cannot.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError, RwLock};

use kube::ResourceExt;
use yun_crds::{Network, SecurityGroup, VirtualMachine};
use yun_fleet_etcd::HostView;

use crate::net_pass::NetPass;
use crate::network::group_id;
use crate::vm_logic::Unscheduled;
use crate::vm_reconcile::AssignedNics;

/// `NetworkNotReady` reason shared with the NIC assignment.
pub const NETWORK_NOT_READY: &str = "NetworkNotReady";

/// A VM's NICs as one pass assigned them, for the spec generation the pass saw.
#[derive(Debug, Clone)]
struct Assigned {
    generation: Option<i64>,
    result: Result<AssignedNics, Unscheduled>,
}

/// A VM waiting for its NICs, with the addresses it held before (empty: a fresh VM).
struct Todo<'a> {
    vm: &'a VirtualMachine,
    previous: Vec<(String, Ipv4Addr)>,
}

impl Todo<'_> {
    /// VMs that held addresses go first, then the oldest.
    fn order_key(&self) -> (bool, Option<jiff::Timestamp>, &str, Option<&str>) {
        (
            self.previous.is_empty(),
            self.vm.metadata.creation_timestamp.as_ref().map(|t| t.0),
            ns_of(&self.vm.metadata),
            self.vm.metadata.name.as_deref(),
        )
    }
}

/// What one network pass decided.
#[derive(Debug, Default)]
pub struct NetSnapshot {
    /// Pools, verdicts, group resolutions and the catalog the pass published.
    pub pass: NetPass,
    /// VM uid → its NICs.
    assignments: BTreeMap<String, Assigned>,
    /// Network or group id (`ns/name`) → names of the VMs that name it (deleting ones too).
    users: BTreeMap<String, BTreeSet<String>>,
    /// Network or group id → the `metadata.generation` the pass saw.
    generations: BTreeMap<String, Option<i64>>,
    /// The fleet as this pass read it (empty while there is no tenant networking): the device
    /// view takes its group members from here rather than reading the fleet again.
    pub hosts: BTreeMap<String, HostView>,
}

fn ns_of(meta: &kube::api::ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .unwrap_or(yun_crds::DEFAULT_NAMESPACE)
}

impl NetSnapshot {
    /// One pass. `hosts` is the fleet as etcd holds it (placed VMs keep their addresses);
    /// `last` is the previous snapshot (a VM assigned but not yet placed keeps its addresses).
    pub fn compute<N, G, V>(
        networks: &[N],
        groups: &[G],
        vms: &[V],
        hosts: &BTreeMap<String, HostView>,
        last: Option<&NetSnapshot>,
    ) -> NetSnapshot
    where
        N: Borrow<Network>,
        G: Borrow<SecurityGroup>,
        V: Borrow<VirtualMachine>,
    {
        let networks: Vec<&Network> = networks.iter().map(Borrow::borrow).collect();
        let groups: Vec<&SecurityGroup> = groups.iter().map(Borrow::borrow).collect();
        let vms: Vec<&VirtualMachine> = vms.iter().map(Borrow::borrow).collect();
        let owned_networks: Vec<Network> = networks.iter().map(|n| (*n).clone()).collect();
        let owned_groups: Vec<SecurityGroup> = groups.iter().map(|g| (*g).clone()).collect();
        let mut snap = NetSnapshot {
            pass: NetPass::new(&owned_networks, &owned_groups, hosts),
            ..NetSnapshot::default()
        };
        for n in &networks {
            let id = group_id(ns_of(&n.metadata), &n.name_any());
            snap.generations.insert(id, n.metadata.generation);
        }
        for g in &groups {
            let id = group_id(ns_of(&g.metadata), &g.name_any());
            snap.generations.insert(id, g.metadata.generation);
        }
        for vm in &vms {
            let ns = ns_of(&vm.metadata);
            let names = vm
                .spec
                .networks
                .iter()
                .map(|a| &a.network)
                .chain(&vm.spec.security_groups);
            for name in names {
                snap.users
                    .entry(group_id(ns, name))
                    .or_default()
                    .insert(vm.name_any());
            }
        }

        // Who may assign: live VMs with networks and a valid spec. VMs that held addresses
        // before go first, so a new VM never takes an address promised to an unplaced one.
        let mut todo: Vec<Todo<'_>> = vms
            .iter()
            .filter(|vm| {
                vm.metadata.deletion_timestamp.is_none()
                    && !vm.spec.networks.is_empty()
                    && vm.spec.validate().is_ok()
                    && vm.metadata.uid.is_some()
            })
            .map(|vm| Todo {
                vm,
                previous: previous_addresses(vm, last),
            })
            .collect();
        todo.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        for Todo { vm, previous } in todo {
            let Some(uid) = vm.metadata.uid.clone() else {
                continue;
            };
            let result = snap
                .pass
                .assign(ns_of(&vm.metadata), &uid, &vm.spec, &previous);
            snap.assignments.insert(
                uid,
                Assigned {
                    generation: vm.metadata.generation,
                    result,
                },
            );
        }
        snap
    }

    /// The NICs of VM `uid` at `generation`; `NetworkNotReady` until a pass has seen that
    /// generation of the VM.
    pub fn assignment(
        &self,
        uid: &str,
        generation: Option<i64>,
    ) -> Result<AssignedNics, Unscheduled> {
        match self.assignments.get(uid) {
            Some(a) if a.generation == generation => a.result.clone(),
            _ => Err(waiting()),
        }
    }

    /// Names of the VMs that name network or group `id` (`ns/name`).
    pub fn users(&self, id: &str) -> Vec<String> {
        self.users
            .get(id)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether this snapshot saw `generation` of network or group `id`.
    pub fn saw(&self, id: &str, generation: Option<i64>) -> bool {
        self.generations.get(id) == Some(&generation)
    }
}

fn waiting() -> Unscheduled {
    Unscheduled {
        reason: NETWORK_NOT_READY,
        message: "waiting for the controller's network pass to assign addresses".into(),
    }
}

/// The addresses VM `vm` had: from the last pass, else from its status.
fn previous_addresses(vm: &VirtualMachine, last: Option<&NetSnapshot>) -> Vec<(String, Ipv4Addr)> {
    let ns = ns_of(&vm.metadata);
    if let Some(Ok((nics, _))) = vm
        .metadata
        .uid
        .as_deref()
        .and_then(|uid| last?.assignments.get(uid))
        .map(|a| &a.result)
    {
        return nics.iter().map(|n| (n.network.clone(), n.ip)).collect();
    }
    vm.status
        .iter()
        .flat_map(|s| &s.interfaces)
        .filter_map(|i| Some((group_id(ns, &i.network), i.ip.parse().ok()?)))
        .collect()
}

/// The latest snapshot, shared by the network pass (writer) and the reconcilers (readers).
#[derive(Debug, Clone, Default)]
pub struct NetHandle(Arc<RwLock<Option<Arc<NetSnapshot>>>>);

impl NetHandle {
    /// The latest snapshot; `None` before the first pass.
    pub fn current(&self) -> Option<Arc<NetSnapshot>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The NICs of VM `uid` at `generation` from the latest snapshot.
    pub fn assignment(
        &self,
        uid: &str,
        generation: Option<i64>,
    ) -> Result<AssignedNics, Unscheduled> {
        match self.current() {
            Some(snap) => snap.assignment(uid, generation),
            None => Err(waiting()),
        }
    }

    pub fn set(&self, snap: NetSnapshot) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(snap));
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;

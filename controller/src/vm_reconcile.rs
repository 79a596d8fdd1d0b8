//! One reconcile step for a VirtualMachine, independent of where the object came from
//! (Kubernetes or the manifests directory). The caller persists the returned status (written
//! once per step) and handles its finalizer / tombstone when the outcome is `Removed`.

use crate::fleet_ops::{Fleet, FleetError, PlaceResult, RemoveProgress, request_for};
use crate::sched_map::scheduling_of;
use crate::vm_logic::{
    Unscheduled, VmIdentity, deleting_status, desired_record, placed_status, unscheduled_status,
};
use std::collections::BTreeMap;
use std::time::Duration;
use yun_crds::VmInterfaceStatus;
use yun_crds::{VirtualMachineSpec, VirtualMachineStatus, VmImageSpec};
use yun_fleet::{NicRecord, VmPhase};

/// A VM object as both sources present it.
#[derive(Debug, Clone)]
pub struct VmInput<'a> {
    pub id: VmIdentity,
    /// `None` when the object is gone (bootstrap tombstone): only removal is possible.
    pub spec: Option<&'a VirtualMachineSpec>,
    /// Deletion requested (deletionTimestamp set / manifest removed).
    pub deleting: bool,
    pub prior: Option<&'a VirtualMachineStatus>,
}

/// A VM's NICs and its security group ids (`namespace/name`).
pub type AssignedNics = (Vec<NicRecord>, Vec<String>);

/// What the rest of the world looks like to this step.
#[derive(Debug, Clone, Default)]
pub struct World<'a> {
    /// VmImages of the VM's namespace, by name.
    pub images: BTreeMap<String, &'a VmImageSpec>,
    /// The VM's NICs and security group ids as the network pass assigned them; both sources
    /// set it for every VM with `spec.networks` (`None` otherwise).
    pub network: Option<Result<AssignedNics, Unscheduled>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VmOutcome {
    Status {
        status: VirtualMachineStatus,
        requeue: Duration,
    },
    /// Domain, files and resources are gone: drop the finalizer / tombstone.
    Removed,
}

/// How soon to look again when nothing external wakes us.
fn requeue_for(phase: Option<VmPhase>) -> Duration {
    match phase {
        Some(VmPhase::Running | VmPhase::Stopped) => Duration::from_secs(60),
        Some(VmPhase::Failed) => Duration::from_secs(10),
        _ => Duration::from_secs(2),
    }
}

pub async fn reconcile_vm(
    fleet: &Fleet,
    input: VmInput<'_>,
    world: &World<'_>,
    now: &str,
) -> Result<VmOutcome, FleetError> {
    let id = &input.id;
    let spec = match input.spec {
        Some(spec) if !input.deleting => spec,
        _ => return remove(fleet, &input, now).await,
    };
    let Some(image) = world.images.get(&spec.image) else {
        let why = Unscheduled {
            reason: "ImageNotFound",
            message: format!("VmImage {}/{} does not exist", id.namespace, spec.image),
        };
        return Ok(VmOutcome::Status {
            status: unscheduled_status(input.prior, id, &why, now),
            requeue: Duration::from_secs(10),
        });
    };
    if !spec.volumes.is_empty() {
        // Attaching volumes is not wired to the hosts yet: refuse rather than start the VM
        // without the disks it asked for.
        let why = Unscheduled {
            reason: "VolumeNotReady",
            message: "spec.volumes: attaching volumes is not available in this release yet".into(),
        };
        return Ok(VmOutcome::Status {
            status: unscheduled_status(input.prior, id, &why, now),
            requeue: Duration::from_secs(30),
        });
    }
    let mut desired = desired_record(id, spec, &spec.image, image);
    if !spec.networks.is_empty() {
        let assigned = world.network.clone().unwrap_or_else(|| {
            Err(Unscheduled {
                reason: "NetworkNotReady",
                message: "no network assignment was made for this VM".into(),
            })
        });
        match assigned {
            Ok((nics, groups)) => {
                desired.nics = nics;
                desired.security_groups = groups;
            }
            Err(why) => {
                return Ok(VmOutcome::Status {
                    status: unscheduled_status(input.prior, id, &why, now),
                    requeue: Duration::from_secs(10),
                });
            }
        }
    }
    let (scheduling, policy) = scheduling_of(&id.namespace, spec);
    let mut request = request_for(&desired, &spec.node_selector, scheduling);
    request.policy = policy;
    let host = match fleet.place(&desired, request).await? {
        PlaceResult::Placed { host } => host,
        PlaceResult::NoFit(nofit) => {
            let why = Unscheduled {
                reason: "Unschedulable",
                message: nofit.to_string(),
            };
            return Ok(VmOutcome::Status {
                status: unscheduled_status(input.prior, id, &why, now),
                requeue: Duration::from_secs(10),
            });
        }
    };
    fleet.sync_desired(&host, &desired).await?;
    let state = fleet.state_on(&host, &id.uid).await?;
    let requeue = requeue_for(state.observed.as_ref().map(|o| o.phase));
    let mut status = placed_status(input.prior, id, &state, now);
    status.interfaces = desired
        .nics
        .iter()
        .map(|n| VmInterfaceStatus {
            network: n
                .network
                .split_once('/')
                .map_or(n.network.as_str(), |(_, name)| name)
                .to_owned(),
            ip: n.ip.to_string(),
            mac: n.mac.clone(),
        })
        .collect();
    Ok(VmOutcome::Status { status, requeue })
}

/// Withdraws the VM from its host and releases its resources once the agent confirms.
async fn remove(fleet: &Fleet, input: &VmInput<'_>, now: &str) -> Result<VmOutcome, FleetError> {
    let id = &input.id;
    Ok(match fleet.remove(&id.uid).await? {
        RemoveProgress::Done => VmOutcome::Removed,
        RemoveProgress::Waiting { host } => VmOutcome::Status {
            status: deleting_status(input.prior, &host, now, id.generation),
            requeue: Duration::from_secs(1),
        },
    })
}

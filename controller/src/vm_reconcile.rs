//! One reconcile step for a VirtualMachine, independent of where the object came from
//! (Kubernetes or the manifests directory). The caller persists the returned status (written
//! once per step) and handles its finalizer / tombstone when the outcome is `Removed`.

use crate::fleet_index::HOST_NAME_LABEL;
use crate::fleet_ops::{Fleet, FleetError, PlaceResult, RemoveProgress, request_for};
use crate::identity::TenantVerdict;
use crate::identity::step::{IDENTITY_READY, identity_step, revoke_all};
use crate::sched_map::scheduling_of;
use crate::vm_logic::{
    Unscheduled, VmIdentity, deleting_status, desired_record, placed_status, unscheduled_status,
};
use crate::volume::{self, resolve::VolumeObject};
use std::collections::BTreeMap;
use std::time::Duration;
use yun_crds::VmInterfaceStatus;
use yun_crds::{Condition, ConditionStatus, set_condition};
use yun_crds::{VirtualMachineSpec, VirtualMachineStatus, VmImageSpec};
use yun_fleet::{NicRecord, VmPhase};
use yun_fleet_etcd::ClaimWrite;

/// Condition type on a VM with volumes.
pub const VOLUMES_READY: &str = "VolumesReady";
/// `VmDesired.hold` of a VM placed before its volumes are granted.
pub const HOLD_FOR_VOLUMES: &str = "waiting for the controller to grant its volumes";

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
    /// Volumes of the VM's namespace, by name.
    pub volumes: BTreeMap<String, VolumeObject<'a>>,
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
    let wanted = match volume::resolve::resolve(&id.namespace, spec, &world.volumes) {
        Ok(w) => w,
        Err(why) => return unresolved_volumes(fleet, &input, why, now).await,
    };
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
    if let Some(why) = tenant_refusal(fleet, &id.uid, &id.namespace).await? {
        return Ok(VmOutcome::Status {
            status: unscheduled_status(input.prior, id, &why, now),
            requeue: Duration::from_secs(10),
        });
    }
    let (scheduling, policy) = scheduling_of(&id.namespace, spec);
    let mut request = request_for(&desired, &spec.node_selector, scheduling);
    request.policy = policy;
    if !wanted.is_empty() {
        match volume::attach::local_home(&fleet.bus, &wanted).await? {
            Ok(Some(home)) => {
                request.selector.insert(HOST_NAME_LABEL.into(), home);
            }
            Ok(None) => {}
            Err(why) => {
                return Ok(VmOutcome::Status {
                    status: unscheduled_status(input.prior, id, &why, now),
                    requeue: Duration::from_secs(10),
                });
            }
        }
        // A first placement publishes the VM held back: it starts once its volumes are
        // granted, with them attached from the start.
        desired.hold = Some(HOLD_FOR_VOLUMES.into());
    }
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
    let state = fleet.state_on(&host, &id.uid).await?;
    // Read once: the identity step keeps the record's credential, the sync compares with it.
    let current = fleet.desired_on(&host, &id.uid).await?;
    let identity = identity_step(
        fleet,
        id,
        spec,
        &host,
        state.observed.as_ref(),
        current.as_ref().and_then(|d| d.identity.clone()),
    )
    .await?;
    desired.identity = identity.record.clone();
    let waiting = if wanted.is_empty() {
        desired.hold = identity.hold.clone();
        fleet
            .sync_desired(&host, &desired, current.as_ref())
            .await?;
        Vec::new()
    } else {
        let vm = format!("{}/{}", id.namespace, id.name);
        let plan = volume::attach::plan(
            &fleet.bus,
            &id.uid,
            &vm,
            &host,
            state.host_alive,
            &wanted,
            now,
        )
        .await?;
        let started = state.observed.as_ref().is_some_and(|o| {
            matches!(
                o.phase,
                VmPhase::Starting | VmPhase::Running | VmPhase::Stopping
            )
        });
        desired.volumes = plan.granted;
        desired.hold = (!plan.waiting.is_empty() && !started)
            .then(|| format!("waiting for volumes: {}", plan.waiting.join("; ")))
            .or_else(|| identity.hold.clone());
        if plan.grants.is_empty() {
            fleet
                .sync_desired(&host, &desired, current.as_ref())
                .await?;
        } else if fleet
            .bus
            .grant_volume_claims(&host, &desired, &plan.grants)
            .await?
            == ClaimWrite::Conflict
        {
            return Err(FleetError::Contended {
                uid: id.uid.clone(),
                why: "a volume claim changed while it was granted".into(),
            });
        } else {
            tracing::info!(vm = %vm, host = %host, volumes = plan.grants.len(), "volume claims granted");
            for g in &plan.grants {
                let details = [
                    ("vm", vm.as_str().into()),
                    ("host", host.as_str().into()),
                    ("uid", g.volume_uid.as_str().into()),
                ];
                fleet
                    .audit
                    .record(
                        "volume.grant",
                        format!("Volume {}", g.claim.volume),
                        yun_audit::Outcome::Ok,
                        &details,
                    )
                    .await;
            }
        }
        plan.waiting
    };
    let requeue = if waiting.is_empty() {
        requeue_for(state.observed.as_ref().map(|o| o.phase))
    } else {
        Duration::from_secs(5)
    };
    let mut status = placed_status(input.prior, id, &state, now);
    if wanted.is_empty() {
        // A VM that no longer lists volumes must not keep a stale `VolumesReady=False`.
        status.conditions.retain(|c| c.type_ != VOLUMES_READY);
    } else {
        let in_use = (!waiting.is_empty()).then(|| Unscheduled {
            reason: "VolumeInUse",
            message: waiting.join("; "),
        });
        volumes_condition(&mut status, id, in_use, now);
    }
    match identity.condition {
        None => status.conditions.retain(|c| c.type_ != IDENTITY_READY),
        Some((ok, reason, message)) => {
            let c = Condition::new(IDENTITY_READY, ok, reason, message)
                .with_observed_generation(i64::try_from(id.generation).ok());
            set_condition(&mut status.conditions, c, now);
        }
    }
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

/// Condition `VolumesReady` of a VM with volumes: `Granted` when its host may attach all of
/// them, else False with why (which also becomes the VM's message when it has none).
fn volumes_condition(
    status: &mut VirtualMachineStatus,
    id: &VmIdentity,
    not_ready: Option<Unscheduled>,
    now: &str,
) {
    let (ok, reason, message) = match &not_ready {
        None => (
            ConditionStatus::True,
            "Granted",
            "the host may attach every volume".to_owned(),
        ),
        Some(why) => (ConditionStatus::False, why.reason, why.message.clone()),
    };
    let c = Condition::new(VOLUMES_READY, ok, reason, message)
        .with_observed_generation(i64::try_from(id.generation).ok());
    set_condition(&mut status.conditions, c, now);
    if let Some(why) = not_ready
        && status.message.is_none()
    {
        status.message = Some(why.message);
    }
}

/// A VM whose `spec.volumes` cannot be resolved (a Volume missing, being deleted, not ready).
/// Not placed yet: Pending, `Scheduled=False`. Already placed: it stays where it is on its last
/// desired record (the volumes it was granted stay attached: nothing is detached because of
/// an object that went missing), and `VolumesReady=False` says why.
async fn unresolved_volumes(
    fleet: &Fleet,
    input: &VmInput<'_>,
    why: Unscheduled,
    now: &str,
) -> Result<VmOutcome, FleetError> {
    let id = &input.id;
    let requeue = Duration::from_secs(10);
    let Some(placed) = fleet.bus.placement(&id.uid).await? else {
        return Ok(VmOutcome::Status {
            status: unscheduled_status(input.prior, id, &why, now),
            requeue,
        });
    };
    let state = fleet.state_on(&placed.value.host, &id.uid).await?;
    let mut status = placed_status(input.prior, id, &state, now);
    volumes_condition(&mut status, id, Some(why), now);
    Ok(VmOutcome::Status { status, requeue })
}

/// Why nothing may be placed for this VM's tenant, checked only while it is not placed yet
/// (a placed VM keeps running if its project is disabled later: fail static).
async fn tenant_refusal(
    fleet: &Fleet,
    uid: &str,
    namespace: &str,
) -> Result<Option<Unscheduled>, FleetError> {
    if !fleet.identity.is_enabled() || fleet.placed_host(uid).await?.is_some() {
        return Ok(None);
    }
    Ok(match fleet.identity.tenant(namespace).await {
        Some(TenantVerdict::Refused(why)) => Some(why),
        _ => None,
    })
}

/// Withdraws the VM from its host and releases its resources once the agent confirms.
async fn remove(fleet: &Fleet, input: &VmInput<'_>, now: &str) -> Result<VmOutcome, FleetError> {
    let id = &input.id;
    let object = crate::audit::vm_object(&id.namespace, &id.name);
    // Revoked first: the guest loses its credential even if its host never confirms.
    revoke_all(fleet, id).await?;
    Ok(match fleet.remove(&id.uid, &object).await? {
        RemoveProgress::Done => VmOutcome::Removed,
        RemoveProgress::Waiting { host } => VmOutcome::Status {
            status: deleting_status(input.prior, &host, now, id.generation),
            requeue: Duration::from_secs(1),
        },
    })
}

//! One reconcile of a VirtualMachine object: the finalizer, validation, the source-agnostic
//! step, one status write (server-side apply) and the Events of what changed.
//!
//! Finalizer protocol (kube-runtime's `finalizer` helper removes the finalizer as soon as the
//! cleanup branch returns `Ok`): cleanup returns `Ok` only once the step reports the VM
//! `Removed`; while the host is still tearing it down the branch returns
//! [`KubeSourceError::CleanupPending`], which keeps the finalizer and which [`reconcile`] turns
//! into a plain requeue.

use super::context::{Ctx, FINALIZER, now_rfc3339};
use super::error::KubeSourceError;
use super::events;
use super::finalized::{reconcile_finalized, retry_with_backoff};
use super::status_write::write_status as apply_status;
use super::volume_world::VmVolumeObjects;
use crate::fleet_ops::FleetError;
use crate::vm_logic::{READY, Unscheduled, VmIdentity, unscheduled_status};
use crate::vm_reconcile::{VmInput, VmOutcome, World, reconcile_vm};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::{Api, ResourceExt};
use std::sync::Arc;
use yun_crds::{
    Condition, ConditionStatus, ValidationErrors, VirtualMachine, VirtualMachineStatus,
    set_condition,
};

/// Label of this kind in the reconcile metrics.
pub const KIND: &str = "VirtualMachine";

fn namespace_of(vm: &VirtualMachine) -> String {
    vm.namespace()
        .unwrap_or_else(|| yun_crds::DEFAULT_NAMESPACE.to_owned())
}

fn identity(vm: &VirtualMachine) -> Result<VmIdentity, KubeSourceError> {
    let namespace = namespace_of(vm);
    let name = vm.name_any();
    let Some(uid) = vm.uid() else {
        return Err(KubeSourceError::MissingUid {
            kind: KIND,
            namespace,
            name,
        });
    };
    // The API server starts generations at 1 and only increments them.
    let generation = vm
        .metadata
        .generation
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(0);
    Ok(VmIdentity {
        namespace,
        name,
        uid,
        generation,
    })
}

fn fleet_error(id: &VmIdentity) -> impl FnOnce(FleetError) -> KubeSourceError + '_ {
    move |source| KubeSourceError::Fleet {
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        source,
    }
}

/// Reconciles one VirtualMachine. Registered with the `Controller`; tests call it directly.
pub async fn reconcile(vm: Arc<VirtualMachine>, ctx: Arc<Ctx>) -> Result<Action, KubeSourceError> {
    let api: Api<VirtualMachine> = Api::namespaced(ctx.client.clone(), &namespace_of(&vm));
    reconcile_finalized(&ctx, &api, FINALIZER, KIND, vm, |event| async {
        match event {
            FinalizerEvent::Apply(vm) => apply(&api, &vm, &ctx).await,
            FinalizerEvent::Cleanup(vm) => cleanup(&api, &vm, &ctx).await,
        }
    })
    .await
}

/// Retries a failed reconcile with a per-object exponential backoff (5 s doubling to 5 min).
pub fn error_policy(vm: Arc<VirtualMachine>, error: &KubeSourceError, ctx: Arc<Ctx>) -> Action {
    retry_with_backoff(&*vm, error, &ctx)
}

/// The VM exists and carries the finalizer: validate, run the step, write status.
async fn apply(
    api: &Api<VirtualMachine>,
    vm: &VirtualMachine,
    ctx: &Ctx,
) -> Result<Action, KubeSourceError> {
    let id = identity(vm)?;
    let now = now_rfc3339();
    let prior = vm.status.as_ref();
    if let Err(errors) = vm.validate() {
        // Nothing reaches the fleet bus; a VM placed before its spec turned invalid keeps
        // running its last valid spec.
        let placed = ctx
            .fleet
            .bus
            .placement(&id.uid)
            .await
            .map_err(|e| fleet_error(&id)(e.into()))?;
        let status = invalid_status(prior, &id, &errors, placed.map(|p| p.value.host), &now);
        write_status(api, vm, &status).await?;
        events::publish(ctx, vm, &events::transitions(prior, &status)).await;
        return Ok(Action::await_change());
    }
    let images = ctx.images_in(&id.namespace);
    if let Some(image) = images.iter().find(|i| i.name_any() == vm.spec.image)
        && let Err(errors) = image.validate()
    {
        let why = Unscheduled {
            reason: "InvalidImage",
            message: format!(
                "VmImage {}/{} is invalid: {errors}",
                id.namespace, vm.spec.image
            ),
        };
        let status = unscheduled_status(prior, &id, &why, &now);
        write_status(api, vm, &status).await?;
        events::publish(ctx, vm, &events::transitions(prior, &status)).await;
        return Ok(Action::await_change());
    }
    let volumes = VmVolumeObjects::load(ctx, &id.namespace, &vm.spec).await;
    ctx.fleet.set_intents(&ctx.host_intents());
    let world = World {
        images: images.iter().map(|i| (i.name_any(), &i.spec)).collect(),
        network: (!vm.spec.networks.is_empty())
            .then(|| ctx.nets.assignment(&id.uid, vm.metadata.generation)),
        volumes: volumes.world(),
    };
    let input = VmInput {
        id: id.clone(),
        spec: Some(&vm.spec),
        deleting: false,
        prior,
    };
    match reconcile_vm(&ctx.fleet, input, &world, &now)
        .await
        .map_err(fleet_error(&id))?
    {
        VmOutcome::Status { status, requeue } => {
            write_status(api, vm, &status).await?;
            events::publish(ctx, vm, &events::transitions(prior, &status)).await;
            Ok(Action::requeue(requeue))
        }
        VmOutcome::Removed => {
            tracing::warn!(vm = %format!("{}/{}", id.namespace, id.name), "step reported Removed for a VM that is not being deleted");
            Ok(Action::await_change())
        }
    }
}

/// The VM is being deleted and still carries the finalizer: drive the removal.
async fn cleanup(
    api: &Api<VirtualMachine>,
    vm: &VirtualMachine,
    ctx: &Ctx,
) -> Result<Action, KubeSourceError> {
    let id = identity(vm)?;
    let now = now_rfc3339();
    let prior = vm.status.as_ref();
    // No validation here: a VM with an invalid spec must still be deletable.
    let input = VmInput {
        id: id.clone(),
        spec: Some(&vm.spec),
        deleting: true,
        prior,
    };
    match reconcile_vm(&ctx.fleet, input, &World::default(), &now)
        .await
        .map_err(fleet_error(&id))?
    {
        VmOutcome::Removed => {
            events::publish(ctx, vm, &[events::deleted()]).await;
            Ok(Action::await_change())
        }
        VmOutcome::Status { status, requeue } => {
            write_status(api, vm, &status).await?;
            events::publish(ctx, vm, &events::transitions(prior, &status)).await;
            Err(KubeSourceError::CleanupPending { requeue })
        }
    }
}

/// Status of a VM whose spec fails validation. Not placed: `Pending` with `Scheduled=False,
/// reason=InvalidSpec`. Already placed: the last status stays, `Ready=False, reason=InvalidSpec`.
fn invalid_status(
    prior: Option<&VirtualMachineStatus>,
    id: &VmIdentity,
    errors: &ValidationErrors,
    placed_on: Option<String>,
    now: &str,
) -> VirtualMachineStatus {
    let Some(host) = placed_on else {
        return unscheduled_status(
            prior,
            id,
            &Unscheduled {
                reason: "InvalidSpec",
                message: errors.to_string(),
            },
            now,
        );
    };
    let mut st = prior.cloned().unwrap_or_default();
    let message =
        format!("spec is invalid, host {host} keeps running the last valid spec: {errors}");
    st.message = Some(message.clone());
    st.observed_generation = i64::try_from(id.generation).ok();
    let ready = Condition::new(READY, ConditionStatus::False, "InvalidSpec", message)
        .with_observed_generation(i64::try_from(id.generation).ok());
    set_condition(&mut st.conditions, ready, now);
    st
}

/// Writes `status` with server-side apply, unless the object already has exactly it.
async fn write_status(
    api: &Api<VirtualMachine>,
    vm: &VirtualMachine,
    status: &VirtualMachineStatus,
) -> Result<(), KubeSourceError> {
    apply_status(api, vm, vm.status.as_ref(), status).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_crds::{VirtualMachineSpec, VmPhase, find_condition};

    fn id() -> VmIdentity {
        VmIdentity {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            generation: 3,
        }
    }

    fn errors() -> ValidationErrors {
        let spec: VirtualMachineSpec =
            serde_json::from_value(serde_json::json!({"image": "i", "cpu": 0, "memoryMiB": 64}))
                .unwrap();
        spec.validate().unwrap_err()
    }

    #[test]
    fn invalid_unplaced_vm_is_pending_naming_the_field() {
        let st = invalid_status(None, &id(), &errors(), None, "t");
        assert_eq!(st.phase, Some(VmPhase::Pending));
        let c = find_condition(&st.conditions, crate::vm_logic::SCHEDULED).unwrap();
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, "InvalidSpec")
        );
        assert!(c.message.starts_with("spec.cpu:"), "{}", c.message);
    }

    #[test]
    fn invalid_placed_vm_keeps_its_phase_and_host() {
        let prior = VirtualMachineStatus {
            phase: Some(VmPhase::Running),
            host: Some("h1".into()),
            ..Default::default()
        };
        let st = invalid_status(Some(&prior), &id(), &errors(), Some("h1".into()), "t");
        assert_eq!(
            (st.phase, st.host.as_deref()),
            (Some(VmPhase::Running), Some("h1"))
        );
        let ready = find_condition(&st.conditions, READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "InvalidSpec")
        );
        assert!(ready.message.contains("spec.cpu"), "{}", ready.message);
        assert_eq!(st.observed_generation, Some(3));
    }

    #[test]
    fn identity_requires_a_uid() {
        let spec: VirtualMachineSpec =
            serde_json::from_value(serde_json::json!({"image": "i", "cpu": 1, "memoryMiB": 64}))
                .unwrap();
        let mut vm = VirtualMachine::new("web", spec);
        assert!(matches!(
            identity(&vm),
            Err(KubeSourceError::MissingUid { .. })
        ));
        vm.metadata.uid = Some("u1".into());
        vm.metadata.generation = Some(2);
        let id = identity(&vm).unwrap();
        assert_eq!(
            (id.namespace.as_str(), id.uid.as_str(), id.generation),
            ("default", "u1", 2)
        );
    }
}

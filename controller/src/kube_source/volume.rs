//! Reconcile of Volume objects in Kubernetes mode: the shared Volume step (release the holders
//! whose hosts confirmed the detach, compute the bounded status), written by server-side apply,
//! with Events; and the `yun.dev/in-use` finalizer, which holds a deletion while any VM holds
//! the volume (its host may still be writing to it). The claim on the fleet bus is keyed by the
//! object's uid, so a Volume deleted and re-created under the same name is a new volume.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::{Api, ResourceExt};
use yun_crds::{Condition, ConditionStatus, Volume, find_condition, set_condition};

use super::context::{Ctx, IN_USE_FINALIZER, now_rfc3339};
use super::error::KubeSourceError;
use super::events;
use super::finalized::{reconcile_finalized, retry_with_backoff};
use super::net_objects::{DELETION_BLOCKED, IN_USE};
use super::status_write::write_status;
use super::volume_events::volume_transitions;
use crate::volume::lifecycle::Deadlines;
use crate::volume::reconcile::{VolumeStep, forget_volume, reconcile_volume};

/// Label of this kind in the reconcile metrics and errors.
pub const VOLUME_KIND: &str = "Volume";
/// A blocked deletion looks again this often.
const BLOCKED_REQUEUE: Duration = Duration::from_secs(5);

fn namespace_of(v: &Volume) -> String {
    v.namespace()
        .unwrap_or_else(|| yun_crds::DEFAULT_NAMESPACE.to_owned())
}

fn uid_of(v: &Volume) -> Result<String, KubeSourceError> {
    v.uid().ok_or_else(|| KubeSourceError::MissingUid {
        kind: VOLUME_KIND,
        namespace: namespace_of(v),
        name: v.name_any(),
    })
}

fn bus_error(v: &Volume) -> impl FnOnce(yun_fleet_etcd::BusError) -> KubeSourceError + '_ {
    move |source| KubeSourceError::Bus {
        kind: VOLUME_KIND,
        namespace: namespace_of(v),
        name: v.name_any(),
        source: Box::new(source),
    }
}

/// Reconciles one Volume. Registered with its `Controller`; tests call it directly.
pub async fn reconcile_volume_object(
    volume: Arc<Volume>,
    ctx: Arc<Ctx>,
) -> Result<Action, KubeSourceError> {
    let api: Api<Volume> = Api::namespaced(ctx.client.clone(), &namespace_of(&volume));
    reconcile_finalized(
        &ctx,
        &api,
        IN_USE_FINALIZER,
        VOLUME_KIND,
        volume,
        |event| async {
            match event {
                FinalizerEvent::Apply(v) => apply(&api, &v, &ctx).await,
                FinalizerEvent::Cleanup(v) => cleanup(&api, &v, &ctx).await,
            }
        },
    )
    .await
}

/// Retries a failed reconcile with the shared per-object backoff.
pub fn volume_error_policy(volume: Arc<Volume>, error: &KubeSourceError, ctx: Arc<Ctx>) -> Action {
    retry_with_backoff(&*volume, error, &ctx)
}

async fn step(v: &Volume, ctx: &Ctx) -> Result<VolumeStep, KubeSourceError> {
    let uid = uid_of(v)?;
    reconcile_volume(
        &ctx.fleet.bus,
        &uid,
        v.status.as_ref(),
        v.metadata.generation,
        &Deadlines::default(),
    )
    .await
    .map_err(bus_error(v))
}

async fn apply(api: &Api<Volume>, v: &Volume, ctx: &Ctx) -> Result<Action, KubeSourceError> {
    let step = step(v, ctx).await?;
    let mut status = step.status;
    status.conditions.retain(|c| c.type_ != DELETION_BLOCKED);
    if let Err(errors) = v.spec.validate() {
        // The CRD schema normally refuses this; a stale schema may not have.
        status.message = Some(format!("spec is invalid, no VM can attach it: {errors}"));
    }
    write_status(api, v, v.status.as_ref(), &status).await?;
    events::publish(
        ctx,
        v,
        &volume_transitions(v.status.as_ref(), &status, &step.released),
    )
    .await;
    Ok(Action::requeue(step.requeue))
}

/// The Volume is being deleted: its claim goes once no VM holds it; until then the status says
/// who holds it. VMs that name it are refused new attachments (`VolumeDeleting`).
async fn cleanup(api: &Api<Volume>, v: &Volume, ctx: &Ctx) -> Result<Action, KubeSourceError> {
    let uid = uid_of(v)?;
    // The step releases the holders whose hosts confirmed; only a volume nobody holds any
    // more is worth the claim's removal (one pass over the claim while the deletion waits).
    let step = step(v, ctx).await?;
    if step.holders.is_empty()
        && forget_volume(&ctx.fleet.bus, &uid)
            .await
            .map_err(bus_error(v))?
    {
        tracing::info!(volume = %format!("{}/{}", namespace_of(v), v.name_any()), "volume released; deletion proceeds");
        return Ok(Action::await_change());
    }
    let mut status = step.status;
    let condition = blocked_condition(&step.holders);
    let newly = find_condition(&status.conditions, DELETION_BLOCKED)
        .is_none_or(|c| c.message != condition.message);
    let note = condition.message.clone();
    set_condition(
        &mut status.conditions,
        condition.with_observed_generation(v.metadata.generation),
        &now_rfc3339(),
    );
    write_status(api, v, v.status.as_ref(), &status).await?;
    let mut transitions = volume_transitions(v.status.as_ref(), &status, &step.released);
    if newly {
        transitions.push(events::transition(
            EventType::Warning,
            DELETION_BLOCKED,
            "Delete",
            note,
        ));
    }
    events::publish(ctx, v, &transitions).await;
    Err(KubeSourceError::CleanupPending {
        requeue: if step.released.is_empty() {
            BLOCKED_REQUEUE
        } else {
            step.requeue
        },
    })
}

/// `DeletionBlocked=True, reason=InUse`, naming the holders.
pub fn blocked_condition(holders: &[String]) -> Condition {
    let who = if holders.is_empty() {
        "a holder that is releasing it".to_owned()
    } else {
        holders.join(", ")
    };
    Condition::new(
        DELETION_BLOCKED,
        ConditionStatus::True,
        IN_USE,
        format!(
            "the Volume is deleted once no VM holds it (remove it from the VM's spec.volumes or delete the VM); held by {who}"
        ),
    )
}

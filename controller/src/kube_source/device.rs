//! Reconcile of DeviceIdentity objects in Kubernetes mode: the shared device step
//! ([`crate::devices::reconcile`]) with the credential delivered as a Secret owned by the
//! object, the status written by server-side apply, and the finalizer
//! `yun.dev/device-credential`, which holds a deletion until the device's Keystone users (and
//! with them its credentials and tokens) are gone.
//!
//! The object's uid names its Keystone users (`yun-device-<uid>`), so a DeviceIdentity deleted
//! and re-created under the same name is a new device with new credentials.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::{Api, ResourceExt};
use yun_crds::condition::READY;
use yun_crds::{Condition, ConditionStatus, DeviceIdentity, DeviceIdentityStatus, set_condition};

use super::context::{Ctx, now_rfc3339};
use super::error::KubeSourceError;
use super::finalized::{reconcile_finalized, retry_with_backoff};
use super::status_write::write_status;
use crate::devices::DEVICE_KIND;
use crate::devices::delivery::{Delivery, DeviceRef};
use crate::devices::reconcile::{DeviceStep, REVOKE_FAILED, reconcile_device, revoke_everything};
use crate::identity::plan::normalized_roles;

pub use crate::object::DEVICE_FINALIZER;
/// A device is looked at again at least this often: its project may be disabled, its Secret
/// deleted.
pub const DEVICE_RESYNC: Duration = Duration::from_secs(60);
/// A failed revocation on deletion is retried this often.
const REVOKE_RETRY: Duration = Duration::from_secs(10);

fn device_ref(d: &DeviceIdentity) -> Result<DeviceRef, KubeSourceError> {
    let namespace = d
        .namespace()
        .unwrap_or_else(|| yun_crds::DEFAULT_NAMESPACE.to_owned());
    let uid = d.uid().ok_or_else(|| KubeSourceError::MissingUid {
        kind: DEVICE_KIND,
        namespace: namespace.clone(),
        name: d.name_any(),
    })?;
    Ok(DeviceRef {
        namespace,
        name: d.name_any(),
        uid,
    })
}

/// Reconciles one DeviceIdentity. Registered with its `Controller`; tests call it directly.
pub async fn reconcile_device_object(
    device: Arc<DeviceIdentity>,
    ctx: Arc<Ctx>,
) -> Result<Action, KubeSourceError> {
    let target = device_ref(&device)?;
    let api: Api<DeviceIdentity> = Api::namespaced(ctx.client.clone(), &target.namespace);
    reconcile_finalized(
        &ctx,
        &api,
        DEVICE_FINALIZER,
        DEVICE_KIND,
        device,
        |event| async {
            match event {
                FinalizerEvent::Apply(d) => apply(&api, &d, &target, &ctx).await,
                FinalizerEvent::Cleanup(d) => cleanup(&api, &d, &target, &ctx).await,
            }
        },
    )
    .await
}

/// Retries a failed reconcile with the shared per-object backoff.
pub fn device_error_policy(
    device: Arc<DeviceIdentity>,
    error: &KubeSourceError,
    ctx: Arc<Ctx>,
) -> Action {
    retry_with_backoff(&*device, error, &ctx)
}

async fn apply(
    api: &Api<DeviceIdentity>,
    d: &DeviceIdentity,
    target: &DeviceRef,
    ctx: &Ctx,
) -> Result<Action, KubeSourceError> {
    let roles = normalized_roles(&d.spec.roles);
    let delivery = Delivery::Secrets(ctx.client.clone());
    let step = DeviceStep {
        device: target,
        roles: &roles,
        generation: d.metadata.generation,
        delivery: &delivery,
        config: &ctx.devices.config,
    };
    let now = Timestamp::now();
    let prior = d.status.clone().unwrap_or_default();
    let status = reconcile_device(&ctx.fleet, &step, prior, now)
        .await
        .map_err(|source| KubeSourceError::Delivery {
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            source: Box::new(source),
        })?;
    write_status(api, d, d.status.as_ref(), &status).await?;
    Ok(Action::requeue(next_look(
        &status,
        &ctx.devices.config,
        now,
    )))
}

/// When the device needs looking at next: its rotated-out credential's end, its rotation, or
/// the resync, whichever comes first.
fn next_look(
    status: &DeviceIdentityStatus,
    config: &crate::devices::DeviceConfig,
    now: Timestamp,
) -> Duration {
    // A time already past is due now.
    let until = |at: Option<Timestamp>| {
        at.map(|at| Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
    };
    let retiring = until(
        status
            .retiring
            .as_ref()
            .and_then(|r| r.until.parse::<Timestamp>().ok()),
    );
    let rotation = config.rotation.and_then(|period| {
        let issued = status.issued_at.as_deref()?.parse::<Timestamp>().ok()?;
        until(
            issued
                .checked_add(jiff::SignedDuration::try_from(period).ok()?)
                .ok(),
        )
    });
    [retiring, rotation]
        .into_iter()
        .flatten()
        // One second late, so the step sees the time as passed.
        .map(|d| d + Duration::from_secs(1))
        .fold(DEVICE_RESYNC, Duration::min)
}

/// Revokes every credential of the device; the finalizer stays (with `Ready=False
/// RevokeFailed` saying why) until that worked.
async fn cleanup(
    api: &Api<DeviceIdentity>,
    d: &DeviceIdentity,
    target: &DeviceRef,
    ctx: &Ctx,
) -> Result<Action, KubeSourceError> {
    let delivery = Delivery::Secrets(ctx.client.clone());
    let step = DeviceStep {
        device: target,
        roles: &[],
        generation: d.metadata.generation,
        delivery: &delivery,
        config: &ctx.devices.config,
    };
    let mut status = d.status.clone().unwrap_or_default();
    let result = if !ctx.fleet.identity.is_enabled() && status.credential_id.is_none() {
        // Nothing was ever issued without Keystone.
        Ok(())
    } else {
        revoke_everything(&ctx.fleet, &step, &mut status).await
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(e) => {
            let c = Condition::new(READY, ConditionStatus::False, REVOKE_FAILED, e)
                .with_observed_generation(d.metadata.generation);
            set_condition(&mut status.conditions, c, &now_rfc3339());
            write_status(api, d, d.status.as_ref(), &status).await?;
            Err(KubeSourceError::CleanupPending {
                requeue: REVOKE_RETRY,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::DeviceConfig;

    #[test]
    fn the_next_look_is_the_earliest_of_overlap_end_rotation_and_resync() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut config = DeviceConfig::new("/x".into());
        config.rotation = Some(Duration::from_secs(3600));
        let mut status = DeviceIdentityStatus {
            issued_at: Some("2026-01-01T00:00:00Z".into()),
            ..DeviceIdentityStatus::default()
        };
        assert_eq!(next_look(&status, &config, now), DEVICE_RESYNC);
        config.rotation = Some(Duration::from_secs(30));
        assert_eq!(next_look(&status, &config, now), Duration::from_secs(31));
        status.retiring = Some(yun_crds::RetiringDeviceCredential {
            rotation: 0,
            credential_id: "c".into(),
            user_id: "u".into(),
            until: "2026-01-01T00:00:10Z".into(),
        });
        assert_eq!(next_look(&status, &config, now), Duration::from_secs(11));
        config.rotation = None;
        status.retiring = None;
        assert_eq!(next_look(&status, &config, now), DEVICE_RESYNC);
    }
}

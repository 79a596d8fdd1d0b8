//! One device's credential brought in line with its spec, in either mode: admit (roles the
//! controller allows, an enabled project), keep the credential while it is current, issue a
//! new one when it is not, rotate it on schedule, and revoke what must go. The status comes
//! back computed; the caller writes it (a bootstrap record, or the object's status).
//!
//! A credential is current while the status names it, its roles and project are unchanged, the
//! delivered copy (file or Secret) still holds it, and it is younger than the rotation period.
//! A scheduled rotation issues the next one under a new Keystone user, delivers it, and keeps
//! the old one valid for `--device-rotation-overlap` so the device can switch without an
//! outage; every other replacement revokes the old credential at once (its roles changed, or
//! its copy is gone).

use std::time::Duration;

use jiff::Timestamp;
use yun_audit::Outcome;
use yun_crds::condition::READY;
use yun_crds::{
    Condition, ConditionStatus, DeviceIdentityStatus, DeviceView, RetiringDeviceCredential,
    set_condition,
};
use yun_identity::Project;

use super::delivery::{Delivery, DeliveryError, DeviceRef};
use super::{DEVICE_KIND, DeviceConfig, DeviceEntry};
use crate::fleet_ops::Fleet;
use crate::identity::TenantVerdict;
use crate::identity::device::DeviceIdentityError;

/// `Ready=False` reasons besides the tenant's (`ProjectNotFound`, `ProjectDisabled`,
/// `KeystoneUnavailable`).
pub const IDENTITY_DISABLED: &str = "IdentityDisabled";
pub const ROLE_NOT_ALLOWED: &str = "RoleNotAllowed";
pub const ISSUE_FAILED: &str = "IssueFailed";
pub const REVOKE_FAILED: &str = "RevokeFailed";
/// `Ready=True` reason.
pub const ISSUED: &str = "Issued";

/// `DeviceIdentity namespace/name`, the object of audit records.
pub fn device_object(namespace: &str, name: &str) -> String {
    format!("{DEVICE_KIND} {namespace}/{name}")
}

/// Why a device gets no credential now.
struct Refusal {
    reason: &'static str,
    message: String,
    /// Whether a credential it holds is revoked (the device may no longer have one), or kept
    /// (the controller cannot tell, e.g. Keystone is unreachable).
    revoke: bool,
}

/// One device's pass.
#[derive(Debug, Clone)]
pub struct DeviceStep<'a> {
    pub device: &'a DeviceRef,
    /// Sorted, deduplicated.
    pub roles: &'a [String],
    /// The generation the status describes.
    pub generation: Option<i64>,
    pub delivery: &'a Delivery,
    pub config: &'a DeviceConfig,
}

/// The device's status after this pass. An error only when the controller cannot tell
/// whether the delivered credential is current (the API server is unreachable): nothing was
/// changed then.
pub async fn reconcile_device(
    fleet: &Fleet,
    step: &DeviceStep<'_>,
    mut status: DeviceIdentityStatus,
    now: Timestamp,
) -> Result<DeviceIdentityStatus, DeliveryError> {
    let generation = step.generation;
    status.observed_generation = generation;
    let at = now.to_string();
    let ready = |status: &mut DeviceIdentityStatus, ok: bool, reason: &str, message: String| {
        let c = Condition::new(READY, ConditionStatus::from(ok), reason, message)
            .with_observed_generation(generation);
        set_condition(&mut status.conditions, c, &at);
    };
    let project = match admit(fleet, step.config, &step.device.namespace, step.roles).await {
        Ok(project) => project,
        Err(refusal) => {
            let mut message = refusal.message;
            if refusal.revoke
                && let Err(e) = revoke_everything(fleet, step, &mut status).await
            {
                message = format!("{message}; revoking its credential: {e}");
            }
            ready(&mut status, false, refusal.reason, message);
            return Ok(status);
        }
    };
    if let Err(e) = retire_when_due(fleet, step, &mut status, now).await {
        tracing::warn!(device = %object(step), error = %e, "retiring a rotated-out device credential failed; retrying");
    }
    let due = rotation_due(&status, now, step.config.rotation);
    let current = match status.credential_id.as_deref() {
        Some(id)
            if status.roles == step.roles && status.project_id.as_deref() == Some(&project.id) =>
        {
            step.delivery.holds(step.device, id).await?
        }
        _ => false,
    };
    // A rotation waits while the previous one's overlap runs (that credential is still out).
    let rotating = current && due && status.retiring.is_none();
    if (!current || rotating)
        && let Err(e) = issue(fleet, step, &project, &mut status, rotating, now).await
    {
        ready(&mut status, false, ISSUE_FAILED, e);
        return Ok(status);
    }
    let mut message = format!(
        "application credential {} on project {} ({}), issued {}; {}",
        status.credential_id.as_deref().unwrap_or_default(),
        project.name,
        project.id,
        status.issued_at.as_deref().unwrap_or_default(),
        step.delivery.describe(step.device),
    );
    if let Some(r) = &status.retiring {
        message.push_str(&format!(
            "; the previous credential {} stays valid until {}",
            r.credential_id, r.until
        ));
    }
    ready(&mut status, true, ISSUED, message);
    Ok(status)
}

fn object(step: &DeviceStep<'_>) -> String {
    device_object(&step.device.namespace, &step.device.name)
}

/// Whether the current credential is older than the rotation period (`None`: never).
fn rotation_due(status: &DeviceIdentityStatus, now: Timestamp, period: Option<Duration>) -> bool {
    let (Some(period), Some(issued)) = (period, status.issued_at.as_deref()) else {
        return false;
    };
    let Ok(issued) = issued.parse::<Timestamp>() else {
        // An unreadable time is treated as old: rotating is the safe side.
        return true;
    };
    let Ok(period) = jiff::SignedDuration::try_from(period) else {
        return false;
    };
    issued.checked_add(period).is_ok_and(|due| due <= now)
}

/// Whether `roles` may be given to a device, and the tenant's project.
async fn admit(
    fleet: &Fleet,
    config: &DeviceConfig,
    namespace: &str,
    roles: &[String],
) -> Result<Project, Refusal> {
    let disabled = || Refusal {
        reason: IDENTITY_DISABLED,
        message: DeviceIdentityError::Disabled.to_string(),
        revoke: false,
    };
    if !fleet.identity.is_enabled() {
        return Err(disabled());
    }
    let allowed = |r: &String| {
        !r.eq_ignore_ascii_case("admin") && config.allowed_roles.iter().any(|a| a == r)
    };
    if let Some((i, role)) = roles.iter().enumerate().find(|(_, r)| !allowed(r)) {
        return Err(Refusal {
            reason: ROLE_NOT_ALLOWED,
            message: format!(
                "spec.roles: role {role:?} (sorted index {i}) may not be given to a device (allowed: {})",
                config.allowed_roles.join(", ")
            ),
            revoke: true,
        });
    }
    match fleet.identity.tenant(namespace).await {
        Some(TenantVerdict::Allowed { project }) => Ok(project),
        Some(TenantVerdict::Refused(why)) => Err(Refusal {
            revoke: why.reason != crate::identity::tenants::KEYSTONE_UNAVAILABLE,
            reason: why.reason,
            message: why.message,
        }),
        None => Err(disabled()),
    }
}

/// Issues a credential and delivers it. `rotating`: a scheduled rotation, which moves to the
/// next rotation's user and keeps the current credential valid for the overlap; otherwise the
/// current user is replaced (its credential revoked with it).
async fn issue(
    fleet: &Fleet,
    step: &DeviceStep<'_>,
    project: &Project,
    status: &mut DeviceIdentityStatus,
    rotating: bool,
    now: Timestamp,
) -> Result<(), String> {
    let object = object(step);
    let uid = step.device.uid.as_str();
    let rotation = if rotating {
        status.rotation + 1
    } else {
        status.rotation
    };
    let action = if rotating {
        "device.rotate"
    } else {
        "device.issue"
    };
    let details = |credential: &str| {
        [
            ("uid", uid.into()),
            ("credential", credential.into()),
            ("project", project.id.as_str().into()),
            ("rotation", rotation.to_string().into()),
        ]
    };
    let issued = match fleet
        .identity
        .issue_device(uid, rotation, project, step.roles)
        .await
    {
        Ok(issued) => issued,
        Err(e) => {
            let outcome = Outcome::Error {
                message: e.to_string(),
            };
            fleet
                .audit
                .record(action, object, outcome, &details(""))
                .await;
            if !rotating {
                // Issuing deleted the user of this rotation first: whatever it held is gone.
                clear_credential(status);
            }
            return Err(e.to_string());
        }
    };
    if let Err(e) = step.delivery.write(step.device, &issued).await {
        // A credential nobody can be given must not stay valid.
        let undone = fleet.identity.revoke_device(uid, rotation).await;
        let message = match undone {
            Ok(_) => e.to_string(),
            Err(r) => format!("{e}; revoking the undelivered credential: {r}"),
        };
        let outcome = Outcome::Error {
            message: message.clone(),
        };
        fleet
            .audit
            .record(action, object, outcome, &details(&issued.credential_id))
            .await;
        if !rotating {
            clear_credential(status);
        }
        return Err(message);
    }
    if !rotating && let Some(old) = status.credential_id.as_deref() {
        // Issuing deleted the old user of this rotation, and its credential with it.
        fleet
            .audit
            .record("device.revoke", object.clone(), Outcome::Ok, &details(old))
            .await;
        tracing::info!(device = %object, credential = %old, "device credential replaced");
    }
    if rotating && let (Some(id), Some(user)) = (&status.credential_id, &status.user_id) {
        let until = step
            .config
            .rotation_overlap
            .try_into()
            .ok()
            .and_then(|d: jiff::SignedDuration| now.checked_add(d).ok())
            .unwrap_or(now);
        status.retiring = Some(RetiringDeviceCredential {
            rotation: status.rotation,
            credential_id: id.clone(),
            user_id: user.clone(),
            until: until.to_string(),
        });
    }
    fleet
        .audit
        .record(
            action,
            object.clone(),
            Outcome::Ok,
            &details(&issued.credential_id),
        )
        .await;
    tracing::info!(device = %object, credential = %issued.credential_id, project = %project.id, rotation, "device credential issued");
    status.rotation = rotation;
    status.credential_id = Some(issued.credential_id);
    status.issued_at = Some(now.to_string());
    status.user_id = Some(issued.user_id);
    status.project_id = Some(issued.project_id);
    status.roles = step.roles.to_vec();
    Ok(())
}

fn clear_credential(status: &mut DeviceIdentityStatus) {
    status.credential_id = None;
    status.issued_at = None;
    status.user_id = None;
    status.project_id = None;
    status.roles = Vec::new();
}

/// Revokes the rotated-out credential once its overlap has passed.
async fn retire_when_due(
    fleet: &Fleet,
    step: &DeviceStep<'_>,
    status: &mut DeviceIdentityStatus,
    now: Timestamp,
) -> Result<(), String> {
    let Some(retiring) = &status.retiring else {
        return Ok(());
    };
    let due = retiring
        .until
        .parse::<Timestamp>()
        .map_or(true, |until| until <= now);
    if !due {
        return Ok(());
    }
    revoke_rotation(fleet, step, retiring.rotation, &retiring.credential_id).await?;
    status.retiring = None;
    Ok(())
}

/// Revokes every credential the device holds (current and retiring) and withdraws the
/// delivered copy; the status forgets them as they go.
pub async fn revoke_everything(
    fleet: &Fleet,
    step: &DeviceStep<'_>,
    status: &mut DeviceIdentityStatus,
) -> Result<(), String> {
    if let Some(r) = status.retiring.clone() {
        revoke_rotation(fleet, step, r.rotation, &r.credential_id).await?;
        status.retiring = None;
    }
    if let Some(id) = status.credential_id.clone() {
        revoke_rotation(fleet, step, status.rotation, &id).await?;
    } else if fleet.identity.is_enabled() {
        // An issue that never reached the status leaves a user of the current rotation.
        fleet
            .identity
            .revoke_device(&step.device.uid, status.rotation)
            .await
            .map_err(|e| e.to_string())?;
    }
    step.delivery
        .remove(step.device)
        .await
        .map_err(|e| e.to_string())?;
    clear_credential(status);
    Ok(())
}

/// Deletes the Keystone user of `rotation` (its credential and tokens with it), recorded as
/// `device.revoke`.
async fn revoke_rotation(
    fleet: &Fleet,
    step: &DeviceStep<'_>,
    rotation: u64,
    credential: &str,
) -> Result<(), String> {
    if !fleet.identity.is_enabled() {
        return Err(DeviceIdentityError::Disabled.to_string());
    }
    let object = object(step);
    let details = [
        ("uid", step.device.uid.as_str().into()),
        ("credential", credential.into()),
        ("rotation", rotation.to_string().into()),
    ];
    let result = fleet
        .identity
        .revoke_device(&step.device.uid, rotation)
        .await
        .map_err(|e| e.to_string());
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(message) => Outcome::Error {
            message: message.clone(),
        },
    };
    fleet
        .audit
        .record("device.revoke", object.clone(), outcome, &details)
        .await;
    if result.is_ok() {
        tracing::info!(device = %object, credential, rotation, "device credential revoked");
    }
    result.map(|_| ())
}

/// The view's entries for a device whose credential is issued: the current credential's, and
/// the retiring one's while it is still valid.
pub fn entries_of(
    device: &DeviceRef,
    views: &[DeviceView],
    status: &DeviceIdentityStatus,
) -> Vec<DeviceEntry> {
    let ready = yun_crds::find_condition(&status.conditions, READY).is_some_and(|c| c.is_true());
    let (Some(user_id), Some(project_id), Some(credential_id), true) = (
        status.user_id.clone(),
        status.project_id.clone(),
        status.credential_id.clone(),
        ready,
    ) else {
        return Vec::new();
    };
    let entry = |user_id: String, credential_id: String| DeviceEntry {
        namespace: device.namespace.clone(),
        name: device.name.clone(),
        user_id,
        project_id: project_id.clone(),
        credential_id,
        views: views.to_vec(),
    };
    let mut out = vec![entry(user_id, credential_id)];
    if let Some(r) = &status.retiring {
        out.push(entry(r.user_id.clone(), r.credential_id.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(at: &str) -> DeviceIdentityStatus {
        DeviceIdentityStatus {
            issued_at: Some(at.into()),
            ..DeviceIdentityStatus::default()
        }
    }

    #[test]
    fn rotation_is_due_once_the_period_has_passed() {
        let now: Timestamp = "2026-01-31T00:00:00Z".parse().unwrap();
        let day = Duration::from_secs(86_400);
        assert!(!rotation_due(
            &issued("2026-01-02T00:00:00Z"),
            now,
            Some(30 * day)
        ));
        assert!(rotation_due(
            &issued("2026-01-01T00:00:00Z"),
            now,
            Some(30 * day)
        ));
        assert!(!rotation_due(&issued("2000-01-01T00:00:00Z"), now, None));
        assert!(rotation_due(&issued("garbage"), now, Some(day)));
        assert!(!rotation_due(
            &DeviceIdentityStatus::default(),
            now,
            Some(day)
        ));
    }
}

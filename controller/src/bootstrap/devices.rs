//! DeviceIdentity in bootstrap mode: each pass brings every device's Keystone credential and
//! credentials file in line with its manifest, keeps its status in a bootstrap status record
//! (`/yun/v1/status/DeviceIdentity/<ns>/<name>`: the credential's id, never its secret), and
//! revokes the credentials of devices whose manifests are gone.
//!
//! The record is written before anything is created in Keystone, so its uid (and with it the
//! user name `yun-device-<uid>`) survives a controller restart at any point; an issue that
//! did not finish leaves a user of that name, which the next issue deletes first.
//!
//! A device keeps its credential while the record names it, the roles are unchanged, the
//! project is the same and the credentials file still holds it; otherwise it gets a new one
//! (the old user is deleted with its credential and tokens).

use yun_audit::Outcome;
use yun_crds::condition::READY;
use yun_crds::{
    Condition, ConditionStatus, DeviceIdentity, DeviceIdentityStatus, DeviceView, set_condition,
};
use yun_fleet::{BootstrapStatus, SCHEMA_VERSION};
use yun_fleet_etcd::BusError;
use yun_identity::Project;

use super::spec_hash;
use super::status_records::held_statuses;
use crate::devices::file::{self, credentials_path};
use crate::devices::snapshot::{Resolved, directory};
use crate::devices::{DEVICE_KIND, DeviceConfig, DeviceEntry, Devices};
use crate::fleet_ops::Fleet;
use crate::identity::TenantVerdict;
use crate::identity::plan::normalized_roles;

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

/// One pass over every DeviceIdentity manifest and record; then the view's directory is
/// replaced. `groups` is the pass's security-group resolution (`None`: no tenant networking).
pub async fn pass(
    fleet: &Fleet,
    devices: &Devices,
    manifests: &[DeviceIdentity],
    groups: Option<&Resolved>,
    now: &str,
) -> Result<(), BusError> {
    let bus = &fleet.bus;
    let mut held = held_statuses(bus, DEVICE_KIND).await?;
    let mut entries = Vec::new();
    for device in manifests {
        let ns = device.metadata.namespace.clone().unwrap_or_default();
        let name = device.metadata.name.clone().unwrap_or_default();
        let mut written = held.remove(&(ns.clone(), name.clone()));
        let mut rec = match &written {
            Some(rec) => rec.clone(),
            None => {
                let rec = new_record(&ns, &name);
                bus.put_bootstrap_status(&rec).await?;
                written = Some(rec.clone());
                rec
            }
        };
        let roles = normalized_roles(&device.spec.roles);
        let hash = spec_hash(&roles);
        let roles_changed = hash != rec.spec_hash;
        if roles_changed {
            rec.generation += 1;
            rec.spec_hash = hash;
        }
        rec.deleting = false;
        let prior: DeviceIdentityStatus =
            serde_json::from_value(rec.status.clone()).unwrap_or_default();
        let status =
            reconcile_device(fleet, devices, &rec, &roles, roles_changed, prior, now).await;
        if let Some(entry) = entry_of(&ns, &name, &device.spec.view, &status) {
            entries.push(entry);
        }
        rec.status = serde_json::to_value(&status).unwrap_or_default();
        if written.as_ref() != Some(&rec) {
            bus.put_bootstrap_status(&rec).await?;
        }
    }
    for ((ns, name), rec) in held {
        remove_device(fleet, devices, rec, &ns, &name, now).await?;
    }
    let hosts = if entries.iter().any(|e| !e.views.is_empty()) {
        Some(bus.fleet_view().await?.0)
    } else {
        None
    };
    devices
        .directory
        .replace(directory(entries, groups, hosts.as_ref()));
    Ok(())
}

fn new_record(namespace: &str, name: &str) -> BootstrapStatus {
    BootstrapStatus {
        v: SCHEMA_VERSION,
        kind: DEVICE_KIND.into(),
        namespace: namespace.into(),
        name: name.into(),
        uid: uuid::Uuid::new_v4().to_string(),
        generation: 0,
        spec_hash: String::new(),
        deleting: false,
        status: serde_json::Value::Null,
    }
}

/// The view's entry for a device whose credential is issued.
fn entry_of(
    namespace: &str,
    name: &str,
    views: &[DeviceView],
    status: &DeviceIdentityStatus,
) -> Option<DeviceEntry> {
    let ready = yun_crds::find_condition(&status.conditions, READY).is_some_and(|c| c.is_true());
    Some(DeviceEntry {
        namespace: namespace.into(),
        name: name.into(),
        user_id: status.user_id.clone().filter(|_| ready)?,
        project_id: status.project_id.clone()?,
        credential_id: status.credential_id.clone()?,
        views: views.to_vec(),
    })
}

/// Whether `roles` may be given to a device, and the tenant's project.
async fn admit(
    fleet: &Fleet,
    config: &DeviceConfig,
    namespace: &str,
    roles: &[String],
) -> Result<Project, Refusal> {
    if !fleet.identity.is_enabled() {
        return Err(Refusal {
            reason: IDENTITY_DISABLED,
            message: crate::identity::device::DeviceIdentityError::Disabled.to_string(),
            revoke: false,
        });
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
        None => Err(Refusal {
            reason: IDENTITY_DISABLED,
            message: crate::identity::device::DeviceIdentityError::Disabled.to_string(),
            revoke: false,
        }),
    }
}

async fn reconcile_device(
    fleet: &Fleet,
    devices: &Devices,
    rec: &BootstrapStatus,
    roles: &[String],
    roles_changed: bool,
    mut status: DeviceIdentityStatus,
    now: &str,
) -> DeviceIdentityStatus {
    let (ns, name) = (rec.namespace.as_str(), rec.name.as_str());
    let generation = i64::try_from(rec.generation).ok();
    status.observed_generation = generation;
    let ready = |status: &mut DeviceIdentityStatus, ok: bool, reason: &str, message: String| {
        let c = Condition::new(READY, ConditionStatus::from(ok), reason, message)
            .with_observed_generation(generation);
        set_condition(&mut status.conditions, c, now);
    };
    let project = match admit(fleet, &devices.config, ns, roles).await {
        Ok(project) => project,
        Err(refusal) => {
            let mut message = refusal.message;
            if refusal.revoke && status.credential_id.is_some() {
                match revoke(fleet, devices, ns, name, &rec.uid, &status).await {
                    Ok(()) => clear_credential(&mut status),
                    Err(e) => message = format!("{message}; revoking its credential: {e}"),
                }
            }
            ready(&mut status, false, refusal.reason, message);
            return status;
        }
    };
    let path = credentials_path(&devices.config.dir, ns, name);
    let current = status.credential_id.as_deref().filter(|id| {
        !roles_changed
            && status.project_id.as_deref() == Some(project.id.as_str())
            && file::holds(&path, id)
    });
    if current.is_none() {
        match issue(fleet, devices, rec, &project, roles, &status).await {
            Ok(issued) => status = issued,
            Err(e) => {
                clear_credential(&mut status);
                ready(&mut status, false, ISSUE_FAILED, e);
                return status;
            }
        }
    }
    let message = format!(
        "application credential {} on project {} ({}), issued {}; credentials file {}",
        status.credential_id.as_deref().unwrap_or_default(),
        project.name,
        project.id,
        status.issued_at.as_deref().unwrap_or_default(),
        path.display()
    );
    ready(&mut status, true, ISSUED, message);
    status
}

fn clear_credential(status: &mut DeviceIdentityStatus) {
    status.credential_id = None;
    status.issued_at = None;
    status.user_id = None;
    status.project_id = None;
}

/// Issues a new credential (replacing any) and writes the credentials file; the status with
/// the new credential's ids, or why not.
async fn issue(
    fleet: &Fleet,
    devices: &Devices,
    rec: &BootstrapStatus,
    project: &Project,
    roles: &[String],
    prior: &DeviceIdentityStatus,
) -> Result<DeviceIdentityStatus, String> {
    let (ns, name, uid) = (rec.namespace.as_str(), rec.name.as_str(), rec.uid.as_str());
    let object = device_object(ns, name);
    let details = |credential: &str| {
        [
            ("uid", uid.into()),
            ("credential", credential.into()),
            ("project", project.id.as_str().into()),
        ]
    };
    let previous = prior.credential_id.as_deref();
    let issued = match fleet
        .identity
        .issue_device(uid, project, roles, previous)
        .await
    {
        Ok(issued) => issued,
        Err(e) => {
            let outcome = Outcome::Error {
                message: e.to_string(),
            };
            fleet
                .audit
                .record("device.issue", object, outcome, &details(""))
                .await;
            return Err(e.to_string());
        }
    };
    if let Some(old) = &prior.credential_id {
        // Issuing deleted the old user, and its credential with it.
        let outcome = Outcome::Ok;
        fleet
            .audit
            .record("device.revoke", object.clone(), outcome, &details(old))
            .await;
        tracing::info!(device = %object, credential = %old, "device credential replaced");
    }
    if let Err(e) = file::write(&devices.config.dir, ns, name, &issued) {
        // A credential nobody can be given must not stay valid.
        let undone = fleet
            .identity
            .revoke_device(uid, Some(&issued.credential_id))
            .await;
        let message = match undone {
            Ok(_) => e.to_string(),
            Err(r) => format!("{e}; revoking the undelivered credential: {r}"),
        };
        let outcome = Outcome::Error {
            message: message.clone(),
        };
        fleet
            .audit
            .record(
                "device.issue",
                object,
                outcome,
                &details(&issued.credential_id),
            )
            .await;
        return Err(message);
    }
    fleet
        .audit
        .record(
            "device.issue",
            object.clone(),
            Outcome::Ok,
            &details(&issued.credential_id),
        )
        .await;
    tracing::info!(device = %object, credential = %issued.credential_id, project = %project.id, "device credential issued");
    Ok(DeviceIdentityStatus {
        credential_id: Some(issued.credential_id),
        issued_at: Some(jiff::Timestamp::now().to_string()),
        user_id: Some(issued.user_id),
        project_id: Some(issued.project_id),
        ..prior.clone()
    })
}

/// Deletes device `uid`'s Keystone user (credential and tokens with it) and its credentials
/// file.
async fn revoke(
    fleet: &Fleet,
    devices: &Devices,
    ns: &str,
    name: &str,
    uid: &str,
    status: &DeviceIdentityStatus,
) -> Result<(), String> {
    let object = device_object(ns, name);
    let credential = status.credential_id.as_deref().unwrap_or_default();
    let details = [("uid", uid.into()), ("credential", credential.into())];
    let result = match fleet
        .identity
        .revoke_device(uid, status.credential_id.as_deref())
        .await
    {
        Ok(_) => file::remove(&devices.config.dir, ns, name).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let outcome = match &result {
        Ok(()) => Outcome::Ok,
        Err(message) => Outcome::Error {
            message: message.clone(),
        },
    };
    fleet
        .audit
        .record("device.revoke", object.clone(), outcome, &details)
        .await;
    if result.is_ok() {
        tracing::info!(device = %object, credential, "device credential revoked");
    }
    result
}

/// A record whose manifest is gone: revoke, then drop the record; on failure the record stays
/// (marked deleting, with why) and the next pass tries again.
async fn remove_device(
    fleet: &Fleet,
    devices: &Devices,
    mut rec: BootstrapStatus,
    ns: &str,
    name: &str,
    now: &str,
) -> Result<(), BusError> {
    let mut status: DeviceIdentityStatus =
        serde_json::from_value(rec.status.clone()).unwrap_or_default();
    let result = if !fleet.identity.is_enabled() && status.credential_id.is_some() {
        Err(crate::identity::device::DeviceIdentityError::Disabled.to_string())
    } else {
        revoke(fleet, devices, ns, name, &rec.uid, &status).await
    };
    match result {
        Ok(()) => {
            fleet
                .bus
                .delete_bootstrap_status(DEVICE_KIND, ns, name)
                .await
        }
        Err(e) => {
            let before = rec.clone();
            let c = Condition::new(READY, ConditionStatus::False, REVOKE_FAILED, e);
            set_condition(&mut status.conditions, c, now);
            rec.deleting = true;
            rec.status = serde_json::to_value(&status).unwrap_or_default();
            if rec != before {
                fleet.bus.put_bootstrap_status(&rec).await?;
            }
            Ok(())
        }
    }
}

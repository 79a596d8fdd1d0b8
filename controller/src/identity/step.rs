//! The identity part of one VirtualMachine reconcile, once the VM has a host: decide with
//! [`plan`](super::plan), act on Keystone, and say what to publish and what to report.

use jiff::Timestamp;
use yun_audit::Outcome;
use yun_crds::{ConditionStatus, VirtualMachineSpec};
use yun_fleet::{VmIdentityRecord, VmObserved};

use super::VmIdentityError;
use super::issue::IssueRequest;
use super::plan::{IdentityPlan, normalized_roles, plan};
use super::tenants::TenantVerdict;
use crate::fleet_ops::{Fleet, FleetError};
use crate::vm_logic::VmIdentity;

/// Condition type on a VM that asks for an identity.
pub const IDENTITY_READY: &str = "IdentityReady";
/// `VmDesired.hold` while a VM waits for its first credential.
pub const HOLD_FOR_IDENTITY: &str = "waiting for its Keystone identity";

/// What the identity step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityOutcome {
    /// `VmDesired.identity` to publish.
    pub record: Option<VmIdentityRecord>,
    /// `IdentityReady` (None: the VM asks for no identity; the condition is removed).
    pub condition: Option<(ConditionStatus, &'static str, String)>,
    /// Set when the VM must not start yet (it has no credential at all).
    pub hold: Option<String>,
}

fn failed(
    reason: &'static str,
    message: String,
    current: Option<VmIdentityRecord>,
) -> IdentityOutcome {
    let hold = current
        .is_none()
        .then(|| format!("{HOLD_FOR_IDENTITY}: {message}"));
    IdentityOutcome {
        record: current,
        condition: Some((ConditionStatus::False, reason, message)),
        hold,
    }
}

impl IdentityOutcome {
    /// No identity: nothing to publish, no condition, no hold.
    fn none() -> IdentityOutcome {
        IdentityOutcome {
            record: None,
            condition: None,
            hold: None,
        }
    }
}

/// Runs the identity step for a VM placed on `host`, whose desired record on the fleet bus
/// now carries `current`.
pub async fn identity_step(
    fleet: &Fleet,
    id: &VmIdentity,
    spec: &VirtualMachineSpec,
    host: &str,
    observed: Option<&VmObserved>,
    current: Option<VmIdentityRecord>,
) -> Result<IdentityOutcome, FleetError> {
    let roles = spec.identity.as_ref().map(|i| normalized_roles(&i.roles));
    let identity = &fleet.identity;
    if !identity.is_enabled() {
        return Ok(match roles {
            None => IdentityOutcome::none(),
            Some(_) => failed(
                "IdentityDisabled",
                "the controller has no Keystone credentials (--keystone-credentials), so it cannot give this VM an identity".into(),
                None,
            ),
        });
    }
    let delivered = observed.and_then(|o| o.identity_generation);
    let step = plan(
        roles.as_deref(),
        current.as_ref(),
        delivered,
        Timestamp::now(),
        identity.rotation(),
    );
    let (generation, retiring) = match step {
        IdentityPlan::Nothing => return Ok(IdentityOutcome::none()),
        IdentityPlan::Keep => return Ok(settled(current)),
        IdentityPlan::Retire { generation } => {
            return Ok(match revoke_audited(fleet, id, generation).await {
                Ok(_) => settled(current.map(|c| VmIdentityRecord {
                    retiring: None,
                    ..c
                })),
                Err(e) => retry_later(current, "RevokeFailed", &e),
            });
        }
        IdentityPlan::Drop { generations } => {
            for g in generations {
                if let Err(e) = revoke_audited(fleet, id, g).await {
                    return Ok(retry_later(current, "RevokeFailed", &e));
                }
            }
            return Ok(IdentityOutcome::none());
        }
        IdentityPlan::Issue { generation } => (generation, None),
        IdentityPlan::Rotate {
            generation,
            retiring,
        } => (generation, Some(retiring)),
    };
    let roles = roles.unwrap_or_default();
    issue(fleet, id, host, roles, generation, retiring, current).await
}

async fn issue(
    fleet: &Fleet,
    id: &VmIdentity,
    host: &str,
    roles: Vec<String>,
    generation: u64,
    retiring: Option<u64>,
    current: Option<VmIdentityRecord>,
) -> Result<IdentityOutcome, FleetError> {
    let project = match fleet.identity.tenant(&id.namespace).await {
        Some(TenantVerdict::Allowed { project }) => project,
        Some(TenantVerdict::Refused(why)) => return Ok(failed(why.reason, why.message, current)),
        None => return Ok(failed("IdentityDisabled", "no Keystone".into(), current)),
    };
    let seal_key = fleet.bus.host_info(host).await?.and_then(|h| h.seal_key);
    let req = IssueRequest {
        uid: &id.uid,
        generation,
        project: &project,
        roles: &roles,
        host,
        seal_key: seal_key.as_deref(),
        retiring,
    };
    let object = crate::audit::vm_object(&id.namespace, &id.name);
    let action = if retiring.is_some() {
        "identity.rotate"
    } else {
        "identity.issue"
    };
    match fleet.identity.issue(&req).await {
        Ok(record) => {
            tracing::info!(vm = %format!("{}/{}", id.namespace, id.name), host, generation, credential = %record.credential_id, "VM identity issued");
            audit(fleet, action, &object, &id.uid, generation, None).await;
            Ok(settled(Some(record)))
        }
        Err(e) => {
            audit(fleet, action, &object, &id.uid, generation, Some(&e)).await;
            let reason = match e {
                VmIdentityError::NoSealKey { .. } => "NoSealKey",
                VmIdentityError::RoleNotAllowed { .. } => "RoleNotAllowed",
                _ => "IssueFailed",
            };
            Ok(failed(reason, e.to_string(), current))
        }
    }
}

/// The record stays; the condition says whether the guest has it.
fn settled(record: Option<VmIdentityRecord>) -> IdentityOutcome {
    let condition = record.as_ref().map(|r| {
        (
            ConditionStatus::True,
            "Issued",
            format!(
                "application credential {} (generation {}) on project {}, issued {}",
                r.credential_id, r.generation, r.project_id, r.issued_at
            ),
        )
    });
    IdentityOutcome {
        record,
        condition,
        hold: None,
    }
}

fn retry_later(
    current: Option<VmIdentityRecord>,
    reason: &'static str,
    e: &VmIdentityError,
) -> IdentityOutcome {
    let mut out = settled(current);
    out.condition = Some((ConditionStatus::False, reason, e.to_string()));
    out
}

async fn audit(
    fleet: &Fleet,
    action: &str,
    object: &str,
    uid: &str,
    generation: u64,
    error: Option<&VmIdentityError>,
) {
    let generation = generation.to_string();
    let details = [
        ("uid", uid.into()),
        ("generation", generation.as_str().into()),
    ];
    let outcome = match error {
        None => Outcome::Ok,
        Some(e) => Outcome::Error {
            message: e.to_string(),
        },
    };
    fleet
        .audit
        .record(action, object.to_owned(), outcome, &details)
        .await;
}

/// Revokes every credential VM `uid` may hold, before its desired record is withdrawn (the
/// record names the generations). Also the generation after the recorded one, or the first
/// when there is no record: an issue whose record never reached the bus leaves that user.
pub async fn revoke_all(fleet: &Fleet, id: &VmIdentity) -> Result<(), FleetError> {
    if !fleet.identity.is_enabled() {
        return Ok(());
    }
    let Some(placed) = fleet.bus.placement(&id.uid).await? else {
        return Ok(());
    };
    let record = fleet
        .bus
        .desired(&placed.value.host, &id.uid)
        .await?
        .and_then(|d| d.identity);
    let generations: Vec<u64> = match &record {
        None => vec![1],
        Some(r) => [Some(r.generation), r.retiring, Some(r.generation + 1)]
            .into_iter()
            .flatten()
            .collect(),
    };
    for g in generations {
        revoke_audited(fleet, id, g)
            .await
            .map_err(|e| FleetError::Identity {
                uid: id.uid.clone(),
                why: e.to_string(),
            })?;
    }
    Ok(())
}

/// Revokes generation `generation` of the VM's identity and records it: `identity.revoke`
/// when a credential was revoked, with the error when Keystone failed, nothing when there was
/// none left to revoke.
async fn revoke_audited(
    fleet: &Fleet,
    id: &VmIdentity,
    generation: u64,
) -> Result<bool, VmIdentityError> {
    let object = crate::audit::vm_object(&id.namespace, &id.name);
    let revoked = fleet.identity.revoke(&id.uid, generation).await;
    match &revoked {
        Ok(false) => {}
        Ok(true) => {
            tracing::info!(vm = %object, generation, "VM identity revoked");
            audit(fleet, "identity.revoke", &object, &id.uid, generation, None).await;
        }
        Err(e) => {
            audit(
                fleet,
                "identity.revoke",
                &object,
                &id.uid,
                generation,
                Some(e),
            )
            .await
        }
    }
    revoked
}

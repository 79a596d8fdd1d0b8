//! DeviceIdentity in bootstrap mode: each pass brings every device's Keystone credential and
//! credentials file in line with its manifest ([`crate::devices::reconcile`]), keeps its status
//! in a bootstrap status record (`/yun/v1/status/DeviceIdentity/<ns>/<name>`: the credential's
//! id, never its secret), and revokes the credentials of devices whose manifests are gone.
//!
//! The record is written before anything is created in Keystone, so its uid (and with it the
//! user name `yun-device-<uid>`) survives a controller restart at any point; an issue that
//! did not finish leaves a user of that name, which the next issue deletes first.

use yun_crds::condition::READY;
use yun_crds::{Condition, ConditionStatus, DeviceIdentity, DeviceIdentityStatus, set_condition};
use yun_fleet::BootstrapStatus;
use yun_fleet_etcd::BusError;

use super::spec_hash;
use super::status_records::{fresh_record, held_statuses};
use crate::devices::delivery::{Delivery, DeviceRef};
use crate::devices::reconcile::{
    DeviceStep, REVOKE_FAILED, entries_of, reconcile_device, revoke_everything,
};
use crate::devices::snapshot::{Resolved, directory};
use crate::devices::{DEVICE_KIND, Devices};
use crate::fleet_ops::Fleet;
use crate::identity::plan::normalized_roles;

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
    let delivery = Delivery::Files(devices.config.dir.clone());
    let at = now.parse().unwrap_or_else(|_| jiff::Timestamp::now());
    let mut held = held_statuses(bus, DEVICE_KIND).await?;
    let mut entries = Vec::new();
    for device in manifests {
        let ns = device.metadata.namespace.clone().unwrap_or_default();
        let name = device.metadata.name.clone().unwrap_or_default();
        let mut written = held.remove(&(ns.clone(), name.clone()));
        let mut rec = match &written {
            Some(rec) => rec.clone(),
            None => {
                let rec = fresh_record(DEVICE_KIND, &ns, &name);
                bus.put_bootstrap_status(&rec).await?;
                written = Some(rec.clone());
                rec
            }
        };
        let roles = normalized_roles(&device.spec.roles);
        let hash = spec_hash(&roles);
        if hash != rec.spec_hash {
            rec.generation += 1;
            rec.spec_hash = hash;
        }
        rec.deleting = false;
        let prior: DeviceIdentityStatus =
            serde_json::from_value(rec.status.clone()).unwrap_or_default();
        let target = device_ref(&rec);
        let step = DeviceStep {
            device: &target,
            roles: &roles,
            generation: i64::try_from(rec.generation).ok(),
            delivery: &delivery,
            config: &devices.config,
        };
        // Files never leave the controller unable to tell what they hold.
        let status = match reconcile_device(fleet, &step, prior.clone(), at).await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(device = %format!("{ns}/{name}"), error = %e, "device pass failed; retrying");
                prior
            }
        };
        entries.extend(entries_of(&target, &device.spec.view, &status));
        rec.status = serde_json::to_value(&status).unwrap_or_default();
        if written.as_ref() != Some(&rec) {
            bus.put_bootstrap_status(&rec).await?;
        }
    }
    for ((ns, name), rec) in held {
        remove_device(fleet, devices, &delivery, rec, &ns, &name, now).await?;
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

fn device_ref(rec: &BootstrapStatus) -> DeviceRef {
    DeviceRef {
        namespace: rec.namespace.clone(),
        name: rec.name.clone(),
        uid: rec.uid.clone(),
    }
}

/// A record whose manifest is gone: revoke, then drop the record; on failure the record stays
/// (marked deleting, with why) and the next pass tries again.
async fn remove_device(
    fleet: &Fleet,
    devices: &Devices,
    delivery: &Delivery,
    mut rec: BootstrapStatus,
    ns: &str,
    name: &str,
    now: &str,
) -> Result<(), BusError> {
    let mut status: DeviceIdentityStatus =
        serde_json::from_value(rec.status.clone()).unwrap_or_default();
    let target = device_ref(&rec);
    let step = DeviceStep {
        device: &target,
        roles: &[],
        generation: i64::try_from(rec.generation).ok(),
        delivery,
        config: &devices.config,
    };
    let result = if !fleet.identity.is_enabled() && status.credential_id.is_some() {
        Err(crate::identity::device::DeviceIdentityError::Disabled.to_string())
    } else if !fleet.identity.is_enabled() {
        // Nothing was ever issued without Keystone: only the file, if any, goes.
        delivery.remove(&target).await.map_err(|e| e.to_string())
    } else {
        revoke_everything(fleet, &step, &mut status).await
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

//! DeviceIdentity in bootstrap mode: each pass brings every device's Keystone credential and
//! credentials file in line with its object ([`crate::devices::reconcile`]) and keeps its status
//! (the credential's id, never its secret) in the store; a deleting device's credentials are
//! revoked before its finalizer is released.
//!
//! The object's uid (and with it the user name `yun-device-<uid>`) is the store's, minted when
//! the object was created, before anything exists in Keystone: an issue that did not finish
//! leaves a user of that name, which the next issue deletes first.

use yun_crds::condition::READY;
use yun_crds::{Condition, ConditionStatus, DeviceIdentity, DeviceIdentityStatus, set_condition};
use yun_store::EtcdStore;

use super::BootstrapError;
use super::objects::{self, generation_of, is_deleting, ns_name, uid_of};
use crate::devices::Devices;
use crate::devices::delivery::{Delivery, DeviceRef};
use crate::devices::reconcile::{
    DeviceStep, REVOKE_FAILED, entries_of, reconcile_device, revoke_everything,
};
use crate::devices::snapshot::{Resolved, directory};
use crate::fleet_ops::Fleet;
use crate::identity::plan::normalized_roles;
use crate::object::DEVICE_FINALIZER;

/// One pass over every DeviceIdentity; then the view's directory is replaced. `groups` is the
/// pass's security-group resolution (`None`: no tenant networking).
pub async fn pass(
    fleet: &Fleet,
    store: &EtcdStore,
    devices: &Devices,
    all: &[DeviceIdentity],
    groups: Option<&Resolved>,
    now: &str,
) -> Result<(), BootstrapError> {
    let delivery = Delivery::Files(devices.config.dir.clone());
    let at = now.parse().unwrap_or_else(|_| jiff::Timestamp::now());
    let mut entries = Vec::new();
    for device in all {
        if is_deleting(device) {
            remove_device(fleet, store, devices, &delivery, device, now).await?;
            continue;
        }
        let device = objects::hold(store, device, DEVICE_FINALIZER).await?;
        let (ns, name) = ns_name(&device);
        let roles = normalized_roles(&device.spec.roles);
        let prior: DeviceIdentityStatus = device.status.clone().unwrap_or_default();
        let target = device_ref(&device);
        let step = DeviceStep {
            device: &target,
            roles: &roles,
            generation: Some(generation_of(&device)),
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
        let mut next = device.clone();
        next.status = Some(status);
        objects::write_status(store, &next).await?;
    }
    let hosts = if entries.iter().any(|e| !e.views.is_empty()) {
        Some(fleet.bus.fleet_view().await?.0)
    } else {
        None
    };
    devices
        .directory
        .replace(directory(entries, groups, hosts.as_ref()));
    Ok(())
}

fn device_ref(device: &DeviceIdentity) -> DeviceRef {
    let (namespace, name) = ns_name(device);
    DeviceRef {
        namespace,
        name,
        uid: uid_of(device),
    }
}

/// A deleting device: revoke, then release the finalizer; on failure it stays (with why) and
/// the next pass tries again.
async fn remove_device(
    fleet: &Fleet,
    store: &EtcdStore,
    devices: &Devices,
    delivery: &Delivery,
    device: &DeviceIdentity,
    now: &str,
) -> Result<(), BootstrapError> {
    let mut status: DeviceIdentityStatus = device.status.clone().unwrap_or_default();
    let target = device_ref(device);
    let step = DeviceStep {
        device: &target,
        roles: &[],
        generation: Some(generation_of(device)),
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
        Ok(()) => Ok(objects::release(store, device, DEVICE_FINALIZER).await?),
        Err(e) => {
            let c = Condition::new(READY, ConditionStatus::False, REVOKE_FAILED, e);
            set_condition(&mut status.conditions, c, now);
            let mut next = device.clone();
            next.status = Some(status);
            objects::write_status(store, &next).await?;
            Ok(())
        }
    }
}

//! Bootstrap-mode status of Networks (Ready, AddressesAvailable, address counts) and
//! SecurityGroups (RulesResolved, member count), kept on the fleet bus like VM status.

use std::collections::BTreeMap;

use yun_crds::{Network, NetworkStatus, SecurityGroup, SecurityGroupStatus};
use yun_fleet::{BootstrapStatus, SCHEMA_VERSION};
use yun_fleet_etcd::{BusError, FleetBus};

use super::networking::NetPass;
use crate::network::groups::resolve_all;
use crate::network::status::{network_conditions, network_status, security_group_status};
use crate::network::tenancy::{network_id, verdicts};

pub const NETWORK_KIND: &str = "Network";
pub const SECURITY_GROUP_KIND: &str = "SecurityGroup";

fn ns_name(meta: &kube::api::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Writes what changed and removes the status of objects whose manifests are gone.
async fn sync_kind(
    bus: &FleetBus,
    kind: &str,
    want: BTreeMap<(String, String), serde_json::Value>,
) -> Result<(), BusError> {
    let mut held: BTreeMap<(String, String), BootstrapStatus> = bus
        .list_bootstrap_status(Some(kind))
        .await?
        .into_iter()
        .map(|r| ((r.namespace.clone(), r.name.clone()), r))
        .collect();
    for ((ns, name), status) in want {
        let before = held.remove(&(ns.clone(), name.clone()));
        let rec = BootstrapStatus {
            v: SCHEMA_VERSION,
            kind: kind.into(),
            namespace: ns,
            name,
            uid: before
                .as_ref()
                .map(|r| r.uid.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            generation: 1,
            spec_hash: String::new(),
            deleting: false,
            status,
        };
        if before.as_ref() != Some(&rec) {
            bus.put_bootstrap_status(&rec).await?;
        }
    }
    for (ns, name) in held.into_keys() {
        bus.delete_bootstrap_status(kind, &ns, &name).await?;
    }
    Ok(())
}

fn previous<T: serde::de::DeserializeOwned + Default>(
    held: &BTreeMap<(String, String), BootstrapStatus>,
    key: &(String, String),
) -> T {
    held.get(key)
        .and_then(|r| serde_json::from_value(r.status.clone()).ok())
        .unwrap_or_default()
}

/// Status of every Network and SecurityGroup after a pass that assigned `pass`'s addresses.
pub async fn write_statuses(
    bus: &FleetBus,
    networks: &[Network],
    groups: &[SecurityGroup],
    pass: &NetPass,
    now: &str,
) -> Result<(), BusError> {
    let held_nets: BTreeMap<(String, String), BootstrapStatus> = bus
        .list_bootstrap_status(Some(NETWORK_KIND))
        .await?
        .into_iter()
        .map(|r| ((r.namespace.clone(), r.name.clone()), r))
        .collect();
    let verdicts = verdicts(networks);
    let mut want = BTreeMap::new();
    for n in networks {
        let key = ns_name(&n.metadata);
        let id = network_id(n);
        let verdict = verdicts.get(&id).cloned().unwrap_or(Ok(()));
        let allocated = pass.held_addresses(&id.to_string());
        let observed = network_conditions(&id.to_string(), &n.spec, &allocated, &verdict);
        let prev: NetworkStatus = previous(&held_nets, &key);
        let status = network_status(&prev, observed, None, now);
        want.insert(key, serde_json::to_value(&status).unwrap_or_default());
    }
    sync_kind(bus, NETWORK_KIND, want).await?;

    let held_groups: BTreeMap<(String, String), BootstrapStatus> = bus
        .list_bootstrap_status(Some(SECURITY_GROUP_KIND))
        .await?
        .into_iter()
        .map(|r| ((r.namespace.clone(), r.name.clone()), r))
        .collect();
    let resolved = resolve_all(groups);
    let mut want = BTreeMap::new();
    for g in groups {
        let key = ns_name(&g.metadata);
        let id = format!("{}/{}", key.0, key.1);
        let Some(resolution) = resolved.get(&id) else {
            continue;
        };
        let prev: SecurityGroupStatus = previous(&held_groups, &key);
        let members = pass.group_member_count(&id);
        let status = security_group_status(&prev, resolution, members, None, now);
        want.insert(key, serde_json::to_value(&status).unwrap_or_default());
    }
    sync_kind(bus, SECURITY_GROUP_KIND, want).await
}

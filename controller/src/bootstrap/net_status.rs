//! Bootstrap-mode status of Networks (Ready, AddressesAvailable, address counts) and
//! SecurityGroups (RulesResolved, member count), kept on the fleet bus like VM status.

use std::collections::BTreeMap;

use yun_crds::{Network, NetworkStatus, SecurityGroup, SecurityGroupStatus};
use yun_fleet_etcd::{BusError, FleetBus};

use super::status_records::{WantedStatus, held_statuses, previous, sync_statuses};
use crate::net_pass::NetPass;
use crate::network::status::{network_conditions, network_status, security_group_status};
use crate::network::tenancy::network_id;

pub const NETWORK_KIND: &str = "Network";
pub const SECURITY_GROUP_KIND: &str = "SecurityGroup";

fn ns_name(meta: &kube::api::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn wanted(status: impl serde::Serialize) -> WantedStatus {
    WantedStatus {
        spec_hash: String::new(),
        status: serde_json::to_value(status).unwrap_or_default(),
    }
}

/// Status of every Network and SecurityGroup after a pass that assigned `pass`'s addresses
/// (its tenancy verdicts and group resolutions are the ones the pass acted on).
pub async fn write_statuses(
    bus: &FleetBus,
    networks: &[Network],
    groups: &[SecurityGroup],
    pass: &NetPass,
    now: &str,
) -> Result<(), BusError> {
    let held = held_statuses(bus, NETWORK_KIND).await?;
    let mut want = BTreeMap::new();
    for n in networks {
        let key = ns_name(&n.metadata);
        let id = network_id(n);
        let verdict = pass.verdicts.get(&id).cloned().unwrap_or(Ok(()));
        let allocated = pass.held_addresses(&id.to_string());
        let observed = network_conditions(&id.to_string(), &n.spec, &allocated, &verdict);
        let prev: NetworkStatus = previous(&held, &key).unwrap_or_default();
        want.insert(key, wanted(network_status(&prev, observed, None, now)));
    }
    sync_statuses(bus, NETWORK_KIND, held, want).await?;

    let held = held_statuses(bus, SECURITY_GROUP_KIND).await?;
    let mut want = BTreeMap::new();
    for g in groups {
        let key = ns_name(&g.metadata);
        let id = format!("{}/{}", key.0, key.1);
        let Some(resolution) = pass.resolved.get(&id) else {
            continue;
        };
        let prev: SecurityGroupStatus = previous(&held, &key).unwrap_or_default();
        let members = pass.group_member_count(&id);
        let status = security_group_status(&prev, resolution, members, None, now);
        want.insert(key, wanted(status));
    }
    sync_statuses(bus, SECURITY_GROUP_KIND, held, want).await
}

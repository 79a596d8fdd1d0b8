//! Bootstrap-mode status of Networks (Ready, AddressesAvailable, address counts) and
//! SecurityGroups (RulesResolved, member count), written to the store like VM status.

use yun_crds::{Network, SecurityGroup};
use yun_store::{EtcdStore, StoreError};

use super::objects::{ns_name, write_status};
use crate::net_pass::NetPass;
use crate::network::status::{network_conditions, network_status, security_group_status};
use crate::network::tenancy::network_id;

pub const NETWORK_KIND: &str = "Network";
pub const SECURITY_GROUP_KIND: &str = "SecurityGroup";

/// Status of every Network and SecurityGroup after a pass that assigned `pass`'s addresses
/// (its tenancy verdicts and group resolutions are the ones the pass acted on).
pub async fn write_statuses(
    store: &EtcdStore,
    networks: &[Network],
    groups: &[SecurityGroup],
    pass: &NetPass,
    now: &str,
) -> Result<(), StoreError> {
    for n in networks {
        let id = network_id(n);
        let verdict = pass.verdicts.get(&id).cloned().unwrap_or(Ok(()));
        let allocated = pass.held_addresses(&id.to_string());
        let observed = network_conditions(&id.to_string(), &n.spec, &allocated, &verdict);
        let prev = n.status.clone().unwrap_or_default();
        let mut next = n.clone();
        next.status = Some(network_status(&prev, observed, None, now));
        write_status(store, &next).await?;
    }
    for g in groups {
        let (ns, name) = ns_name(g);
        let id = format!("{ns}/{name}");
        let Some(resolution) = pass.resolved.get(&id) else {
            continue;
        };
        let prev = g.status.clone().unwrap_or_default();
        let members = pass.group_member_count(&id);
        let mut next = g.clone();
        next.status = Some(security_group_status(&prev, resolution, members, None, now));
        write_status(store, &next).await?;
    }
    Ok(())
}

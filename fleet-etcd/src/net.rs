//! Tenant-network records on the fleet bus: a host's networks, the rules of the security
//! groups its ports use, and the sharded members of the groups those rules name. The
//! controller writes them; each agent reads only its own host's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use etcd_client::{DeleteOptions, Txn, TxnOp};
use yun_fleet::network::changed_shards;
use yun_fleet::{HostGroups, HostNetworks, MemberShard, SCHEMA_VERSION, keys};

use crate::bus::{FleetBus, put_op};
use crate::error::BusError;

/// The networking part of one host's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetView {
    pub networks: Option<HostNetworks>,
    pub groups: Option<HostGroups>,
    /// Group id (`namespace/name`) → shard → members.
    pub members: BTreeMap<String, BTreeMap<u32, BTreeSet<Ipv4Addr>>>,
}

impl HostNetView {
    /// The members of one group, all shards merged.
    pub fn group_members(&self, group: &str) -> BTreeSet<Ipv4Addr> {
        self.members
            .get(group)
            .into_iter()
            .flat_map(BTreeMap::values)
            .flatten()
            .copied()
            .collect()
    }
}

impl FleetBus {
    pub async fn put_host_networks(&self, host: &str, nets: &HostNetworks) -> Result<(), BusError> {
        self.put(&keys::host_networks(host)?, nets, None)
            .await
            .map(|_| ())
    }

    pub async fn put_host_groups(&self, host: &str, groups: &HostGroups) -> Result<(), BusError> {
        self.put(&keys::host_fw_groups(host)?, groups, None)
            .await
            .map(|_| ())
    }

    /// Moves one group's members on one host from `old` (what was last written) to `new`,
    /// rewriting only the shards the change touches, in one transaction. Returns the number of
    /// shard keys written or deleted (0 = nothing changed, nothing sent).
    pub async fn sync_group_members(
        &self,
        host: &str,
        group: &str,
        old: &BTreeSet<Ipv4Addr>,
        new: &BTreeSet<Ipv4Addr>,
    ) -> Result<usize, BusError> {
        let changed = changed_shards(old, new);
        if changed.is_empty() {
            return Ok(0);
        }
        let mut ops = Vec::with_capacity(changed.len());
        for (shard, members) in changed {
            let key = keys::host_fw_member_shard(host, group, shard)?;
            if members.is_empty() {
                ops.push(TxnOp::delete(key.as_str(), None));
            } else {
                let record = MemberShard {
                    v: SCHEMA_VERSION,
                    members,
                };
                ops.push(put_op(&key, &record)?);
            }
        }
        let n = ops.len();
        let prefix = keys::host_fw_members_prefix(host, group)?;
        self.client()
            .txn(Txn::new().and_then(ops))
            .await
            .map_err(BusError::etcd("sync group members", prefix))?;
        Ok(n)
    }

    /// Removes every member shard of one group on one host (no rule there names it any more).
    pub async fn delete_group_members(&self, host: &str, group: &str) -> Result<(), BusError> {
        let prefix = keys::host_fw_members_prefix(host, group)?;
        self.client()
            .delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
            .await
            .map_err(BusError::etcd("delete group members", prefix.as_str()))?;
        Ok(())
    }
}

//! Tenant networking on the fleet bus: which networks a host carries, the NICs of its VMs,
//! the rules of the security groups its ports use, and the members of the groups those rules
//! name. Every record lives under the host's own prefix (an agent reads nothing else), and
//! group members are sharded so that one VM joining or leaving a group rewrites one small
//! shard on only the hosts whose rules name that group.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::records::{SCHEMA_VERSION, Versioned};

fn v1() -> u32 {
    SCHEMA_VERSION
}

/// Member shards per group and host: a change rewrites 1/64 of a group's members (about 1,600
/// addresses, ~25 KiB, for a group of 100,000) instead of the whole list, which would also
/// exceed etcd's request size limit.
pub const MEMBER_SHARDS: u32 = 64;

/// The shard an address's membership record lives in (stable across builds).
pub fn member_shard(ip: Ipv4Addr) -> u32 {
    // FNV-1a over the four octets: spreads sequential allocations evenly.
    let mut h: u32 = 0x811c_9dc5;
    for b in ip.octets() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % MEMBER_SHARDS
}

/// How a network reaches other hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SegmentRecord {
    /// 802.1Q on the host's configured uplink.
    Vlan { id: u16 },
    /// VXLAN over the hosts' tunnel addresses; `peers` are the other hosts carrying this
    /// network (static flood entries, no multicast).
    Vxlan { vni: u32, peers: BTreeSet<Ipv4Addr> },
}

/// One tenant network present on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// `namespace/name` of the Network.
    pub id: String,
    pub bridge: String,
    pub mtu: u32,
    pub segment: SegmentRecord,
}

/// `/yun/v1/hosts/<host>/net`: the networks a host's VMs are attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNetworks {
    #[serde(default = "v1")]
    pub v: u32,
    #[serde(default)]
    pub networks: Vec<NetworkRecord>,
}

/// One VM NIC as the controller assigned it (carried in `VmDesired.nics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRecord {
    /// `namespace/name` of the Network.
    pub network: String,
    /// The host-side port (tap): `yt` + 13 hex digits of a hash of (VM uid, NIC index).
    pub ifname: String,
    pub bridge: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
}

/// Layer-4 protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// The far end of a rule: the source of ingress traffic, the destination of egress traffic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Remote {
    Any,
    Cidr {
        addr: Ipv4Addr,
        prefix: u8,
    },
    /// A group id, `namespace/name`.
    Group(String),
}

/// One allow rule. Everything not allowed is dropped; replies to allowed flows pass.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub proto: Proto,
    /// Inclusive destination port ranges; empty = every port. Only for tcp and udp.
    #[serde(default)]
    pub ports: Vec<(u16, u16)>,
    pub remote: Remote,
}

/// A security group's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRules {
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
}

impl GroupRules {
    /// Group ids its rules (either direction) name as their remote, in rule order; a group
    /// named twice appears twice.
    pub fn remote_groups(&self) -> impl Iterator<Item = &str> {
        self.ingress
            .iter()
            .chain(&self.egress)
            .filter_map(|r| match &r.remote {
                Remote::Group(g) => Some(g.as_str()),
                _ => None,
            })
    }
}

/// `/yun/v1/hosts/<host>/fw/groups`: the rules of every security group a port on the host
/// uses, keyed by group id (`namespace/name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostGroups {
    #[serde(default = "v1")]
    pub v: u32,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupRules>,
}

/// `/yun/v1/hosts/<host>/fw/members/<namespace>/<group>/<shard>`: the members of one group
/// whose address falls in `shard` ([`member_shard`]), sorted. Present for every group a rule
/// on the host names as its remote (an empty shard may be absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberShard {
    #[serde(default = "v1")]
    pub v: u32,
    #[serde(default)]
    pub members: BTreeSet<Ipv4Addr>,
}

impl Versioned for HostNetworks {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for HostGroups {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for MemberShard {
    fn version(&self) -> u32 {
        self.v
    }
}

/// Splits a group's members into their shards (absent shards are empty).
pub fn shard_members(members: &BTreeSet<Ipv4Addr>) -> BTreeMap<u32, BTreeSet<Ipv4Addr>> {
    let mut out: BTreeMap<u32, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for ip in members {
        out.entry(member_shard(*ip)).or_default().insert(*ip);
    }
    out
}

/// The shards a change of members from `old` to `new` touches, each with its new content
/// (empty = delete the shard's key). Untouched shards are not listed: a join or leave
/// rewrites one shard.
pub fn changed_shards(
    old: &BTreeSet<Ipv4Addr>,
    new: &BTreeSet<Ipv4Addr>,
) -> BTreeMap<u32, BTreeSet<Ipv4Addr>> {
    let mut touched: BTreeMap<u32, BTreeSet<Ipv4Addr>> = old
        .symmetric_difference(new)
        .map(|ip| (member_shard(*ip), BTreeSet::new()))
        .collect();
    if touched.is_empty() {
        return touched;
    }
    for ip in new {
        if let Some(shard) = touched.get_mut(&member_shard(*ip)) {
            shard.insert(*ip);
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_even() {
        assert_eq!(
            member_shard(Ipv4Addr::new(10, 0, 0, 1)),
            member_shard(Ipv4Addr::new(10, 0, 0, 1))
        );
        let members: BTreeSet<Ipv4Addr> = (0..100_000u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
            .collect();
        let shards = shard_members(&members);
        assert_eq!(shards.len(), MEMBER_SHARDS as usize);
        let biggest = shards.values().map(BTreeSet::len).max().unwrap_or(0);
        // Even within 25% of 100,000 / 64.
        assert!(biggest < 100_000 / 64 * 5 / 4, "biggest shard {biggest}");
        let total: usize = shards.values().map(BTreeSet::len).sum();
        assert_eq!(total, members.len());
    }

    #[test]
    fn a_full_shard_of_a_100k_group_fits_etcd_request_limits() {
        let members: BTreeSet<Ipv4Addr> = (0..100_000u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
            .collect();
        let shards = shard_members(&members);
        let worst = shards
            .values()
            .map(|m| {
                serde_json::to_vec(&MemberShard {
                    v: 1,
                    members: m.clone(),
                })
                .map(|b| b.len())
                .unwrap_or(usize::MAX)
            })
            .max()
            .unwrap_or(0);
        assert!(worst < 64 * 1024, "{worst} bytes");
    }

    #[test]
    fn a_join_touches_one_shard_with_its_full_new_content() {
        let old: BTreeSet<Ipv4Addr> = (0..1000u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
            .collect();
        let mut new = old.clone();
        let joined = Ipv4Addr::new(10, 9, 9, 9);
        new.insert(joined);
        let changed = changed_shards(&old, &new);
        assert_eq!(changed.len(), 1);
        let (shard, content) = changed.iter().next().unwrap();
        assert_eq!(*shard, member_shard(joined));
        assert_eq!(content, &shard_members(&new)[shard]);
        assert!(changed_shards(&new, &new).is_empty());
        // The last member of a shard leaving: the shard is listed empty (delete its key).
        let lone: BTreeSet<Ipv4Addr> = [joined].into();
        assert_eq!(
            changed_shards(&lone, &BTreeSet::new()),
            BTreeMap::from([(member_shard(joined), BTreeSet::new())])
        );
    }

    #[test]
    fn rules_keep_their_wire_form() {
        let r = Rule {
            proto: Proto::Tcp,
            ports: vec![(80, 80), (8000, 8100)],
            remote: Remote::Group("t/web".into()),
        };
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"proto":"tcp","ports":[[80,80],[8000,8100]],"remote":{"group":"t/web"}}"#
        );
        let cidr = serde_json::to_string(&Remote::Cidr {
            addr: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 8,
        })
        .unwrap_or_default();
        assert_eq!(cidr, r#"{"cidr":{"addr":"10.0.0.0","prefix":8}}"#);
    }
}

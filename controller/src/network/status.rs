//! `Network` and `SecurityGroup` status from the pure checks: the conditions and counts, merged
//! into the previous status so unchanged conditions keep their transition time.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use yun_crds::condition::{ADDRESSES_AVAILABLE, READY, RULES_RESOLVED};
use yun_crds::{
    Condition, ConditionStatus, NetworkSpec, NetworkStatus, SecurityGroupStatus, set_condition,
};

use super::groups::{GroupError, ResolvedGroup};
use super::ipam::{POOL_EXHAUSTED, Pool, PoolStats};
use super::tenancy::{INVALID_SPEC, Verdict};

/// `Network` `Ready=True`: no conflict with an older network; VMs may attach.
pub const ACCEPTED: &str = "Accepted";
/// `AddressesAvailable=True`.
pub const ADDRESSES_FREE: &str = "AddressesFree";
/// `RulesResolved=True`.
pub const RESOLVED: &str = "Resolved";
/// `RulesResolved=False`: a rule names a group that does not exist.
pub const UNKNOWN_REMOTE_GROUP: &str = "UnknownRemoteGroup";
/// `RulesResolved=False`: a rule cannot be used as written.
pub const INVALID_RULE: &str = "InvalidRule";

/// What the controller observed about a Network, before merging into its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConditions {
    pub ready: Condition,
    pub addresses_available: Condition,
    /// `None` when the spec is unusable.
    pub stats: Option<PoolStats>,
}

/// The conditions of Network `network` (`namespace/name`) with `spec`, the addresses its
/// interfaces hold, and its tenancy verdict.
pub fn network_conditions(
    network: &str,
    spec: &NetworkSpec,
    allocated: &BTreeSet<Ipv4Addr>,
    verdict: &Verdict,
) -> NetworkConditions {
    let ready = match verdict {
        Ok(()) => Condition::new(
            READY,
            ConditionStatus::True,
            ACCEPTED,
            "no conflict with an older network; VMs may attach",
        ),
        Err(refusal) => Condition::new(
            READY,
            ConditionStatus::False,
            refusal.reason(),
            format!("refused: {refusal}"),
        ),
    };
    let (addresses_available, stats) = match Pool::new(network, spec) {
        Err(e) => (
            Condition::new(
                ADDRESSES_AVAILABLE,
                ConditionStatus::Unknown,
                INVALID_SPEC,
                e.to_string(),
            ),
            None,
        ),
        Ok(pool) => {
            let stats = pool.stats(allocated);
            let condition = if stats.available > 0 {
                Condition::new(
                    ADDRESSES_AVAILABLE,
                    ConditionStatus::True,
                    ADDRESSES_FREE,
                    format!(
                        "{} of {} assignable addresses of {} free; {} allocated",
                        stats.available,
                        pool.capacity(),
                        pool.cidr(),
                        stats.allocated
                    ),
                )
            } else {
                Condition::new(
                    ADDRESSES_AVAILABLE,
                    ConditionStatus::False,
                    POOL_EXHAUSTED,
                    format!(
                        "every assignable address of {} is handed out ({} allocated); new attachments without a fixed ip wait",
                        pool.cidr(),
                        stats.allocated
                    ),
                )
            };
            (condition, Some(stats))
        }
    };
    NetworkConditions {
        ready,
        addresses_available,
        stats,
    }
}

/// `previous` updated with `observed` for `generation` at `now` (RFC 3339).
pub fn network_status(
    previous: &NetworkStatus,
    observed: NetworkConditions,
    generation: Option<i64>,
    now: &str,
) -> NetworkStatus {
    let mut status = previous.clone();
    for c in [observed.ready, observed.addresses_available] {
        set_condition(
            &mut status.conditions,
            c.with_observed_generation(generation),
            now,
        );
    }
    status.allocated = observed.stats.map(|s| s.allocated);
    status.available = observed.stats.map(|s| s.available);
    status.observed_generation = generation;
    status
}

/// The `RulesResolved` condition of a group from its resolution.
pub fn rules_resolved_condition(resolution: &Result<ResolvedGroup, GroupError>) -> Condition {
    match resolution {
        Err(e) => Condition::new(
            RULES_RESOLVED,
            ConditionStatus::False,
            INVALID_RULE,
            format!("{e}; the group's rules are not applied"),
        ),
        Ok(r) if r.unresolved.is_empty() => Condition::new(
            RULES_RESOLVED,
            ConditionStatus::True,
            RESOLVED,
            "every remote security group exists",
        ),
        Ok(r) => Condition::new(
            RULES_RESOLVED,
            ConditionStatus::False,
            UNKNOWN_REMOTE_GROUP,
            r.unresolved
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// `previous` updated with the group's resolution and member count.
pub fn security_group_status(
    previous: &SecurityGroupStatus,
    resolution: &Result<ResolvedGroup, GroupError>,
    members: u32,
    generation: Option<i64>,
    now: &str,
) -> SecurityGroupStatus {
    let mut status = previous.clone();
    set_condition(
        &mut status.conditions,
        rules_resolved_condition(resolution).with_observed_generation(generation),
        now,
    );
    status.members = Some(members);
    status.observed_generation = generation;
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ObjectId;
    use crate::network::tenancy::{Refusal, TenancyError};
    use yun_crds::{SecurityGroupSpec, Vlan, find_condition};

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-01T00:05:00Z";

    fn spec(cidr: &str) -> NetworkSpec {
        NetworkSpec {
            vlan: Some(Vlan { id: 3 }),
            vxlan: None,
            cidr: cidr.into(),
            gateway: None,
            mtu: None,
            reserved: vec![],
        }
    }

    fn ips(list: &[[u8; 4]]) -> BTreeSet<Ipv4Addr> {
        list.iter().map(|ip| Ipv4Addr::from(*ip)).collect()
    }

    #[test]
    fn an_accepted_network_with_free_addresses() {
        let c = network_conditions("t/n", &spec("10.0.0.0/29"), &ips(&[[10, 0, 0, 2]]), &Ok(()));
        assert_eq!(
            (c.ready.status, c.ready.reason.as_str()),
            (ConditionStatus::True, ACCEPTED)
        );
        let a = &c.addresses_available;
        assert_eq!(
            (a.status, a.reason.as_str()),
            (ConditionStatus::True, ADDRESSES_FREE)
        );
        assert_eq!(
            a.message,
            "4 of 5 assignable addresses of 10.0.0.0/29 free; 1 allocated"
        );
        assert_eq!(
            c.stats,
            Some(PoolStats {
                allocated: 1,
                available: 4
            })
        );
    }

    #[test]
    fn a_full_pool_is_exhausted_and_a_refused_network_says_why() {
        let refusal = Refusal(vec![TenancyError::VlanInUse {
            id: 3,
            other: ObjectId::new("a", "x"),
        }]);
        let c = network_conditions(
            "t/n",
            &spec("10.0.0.0/30"),
            &ips(&[[10, 0, 0, 2]]),
            &Err(refusal),
        );
        assert_eq!(c.ready.status, ConditionStatus::False);
        assert_eq!(c.ready.reason, "SegmentInUse");
        assert_eq!(
            c.ready.message,
            "refused: spec.vlan.id 3 is already used by network a/x, which is older and keeps it"
        );
        let a = &c.addresses_available;
        assert_eq!(
            (a.status, a.reason.as_str()),
            (ConditionStatus::False, POOL_EXHAUSTED)
        );
        assert_eq!(c.stats.map(|s| s.available), Some(0));
    }

    #[test]
    fn an_unusable_spec_leaves_addresses_unknown() {
        let c = network_conditions("t/n", &spec("10.0.0.1/24"), &BTreeSet::new(), &Ok(()));
        assert_eq!(c.addresses_available.status, ConditionStatus::Unknown);
        assert!(
            c.addresses_available
                .message
                .starts_with("network t/n: spec.cidr")
        );
        assert_eq!(c.stats, None);
    }

    #[test]
    fn merging_keeps_transition_times_of_unchanged_conditions() {
        let free = network_conditions("t/n", &spec("10.0.0.0/30"), &BTreeSet::new(), &Ok(()));
        let s1 = network_status(&NetworkStatus::default(), free, Some(1), T1);
        assert_eq!(
            (s1.allocated, s1.available, s1.observed_generation),
            (Some(0), Some(1), Some(1))
        );
        let full = network_conditions("t/n", &spec("10.0.0.0/30"), &ips(&[[10, 0, 0, 2]]), &Ok(()));
        let s2 = network_status(&s1, full, Some(1), T2);
        let ready = find_condition(&s2.conditions, READY).unwrap();
        let addr = find_condition(&s2.conditions, ADDRESSES_AVAILABLE).unwrap();
        assert_eq!(ready.last_transition_time, T1);
        assert_eq!(addr.last_transition_time, T2);
        assert_eq!(addr.observed_generation, Some(1));
        assert_eq!(s2.conditions.len(), 2);
    }

    #[test]
    fn rules_resolved_names_the_missing_group() {
        let ok = Ok(ResolvedGroup::default());
        assert_eq!(rules_resolved_condition(&ok).status, ConditionStatus::True);
        let spec = SecurityGroupSpec {
            ingress: vec![yun_crds::SgRule {
                remote: Some(yun_crds::Remote {
                    cidr: None,
                    security_group: Some("db".into()),
                }),
                ..Default::default()
            }],
            egress: vec![],
        };
        let r = crate::network::groups::resolve_group("t", &spec, &BTreeSet::new());
        let c = rules_resolved_condition(&r);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, UNKNOWN_REMOTE_GROUP)
        );
        assert!(
            c.message
                .starts_with("spec.ingress[0].remote.securityGroup: security group \"db\""),
            "{}",
            c.message
        );
        let s = security_group_status(&SecurityGroupStatus::default(), &r, 2, Some(4), T1);
        assert_eq!((s.members, s.observed_generation), (Some(2), Some(4)));
        assert_eq!(s.conditions.len(), 1);
        let bad = Err(GroupError::BadRemote {
            field: "spec.egress[0].remote".into(),
        });
        assert_eq!(rules_resolved_condition(&bad).reason, INVALID_RULE);
    }
}

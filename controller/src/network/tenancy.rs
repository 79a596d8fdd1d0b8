//! Which Networks may be used. Within one tenant (namespace) no two networks' CIDRs overlap, as
//! a VM's routing would be ambiguous; within the fleet no two networks share a VLAN id or a VNI,
//! as they would be one L2 segment and tenants would see each other's traffic.
//!
//! On a conflict the older network (by creation time, then namespace and name) keeps working and
//! the newer one is refused. A network is judged against every older one, refused or not, so
//! deleting a network can only unblock others and never turns a working network into a refused
//! one.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use thiserror::Error;
use yun_crds::ipv4;
use yun_crds::{DEFAULT_NAMESPACE, Network, NetworkError, Segment};

use super::ObjectId;

/// `Ready=False` reasons.
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const CIDR_OVERLAP: &str = "CidrOverlap";
pub const SEGMENT_IN_USE: &str = "SegmentInUse";

/// One reason a network is refused; each names the older network it conflicts with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TenancyError {
    #[error("the spec is unusable: {0}")]
    InvalidSpec(NetworkError),
    #[error(
        "spec.cidr {cidr} overlaps {other_cidr} of network {other} in the same namespace, which is older and keeps it"
    )]
    CidrOverlap {
        cidr: String,
        other: ObjectId,
        other_cidr: String,
    },
    #[error("spec.vlan.id {id} is already used by network {other}, which is older and keeps it")]
    VlanInUse { id: u16, other: ObjectId },
    #[error("spec.vxlan.vni {vni} is already used by network {other}, which is older and keeps it")]
    VniInUse { vni: u32, other: ObjectId },
}

impl TenancyError {
    /// The `Ready=False` reason for this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            TenancyError::InvalidSpec(_) => INVALID_SPEC,
            TenancyError::CidrOverlap { .. } => CIDR_OVERLAP,
            TenancyError::VlanInUse { .. } | TenancyError::VniInUse { .. } => SEGMENT_IN_USE,
        }
    }
}

/// Every reason a network is refused (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub Vec<TenancyError>);

impl Refusal {
    /// The `Ready=False` reason: that of the first conflict found.
    pub fn reason(&self) -> &'static str {
        self.0.first().map_or(INVALID_SPEC, TenancyError::reason)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Whether a network may be used.
pub type Verdict = Result<(), Refusal>;

/// A network as the checks see it.
struct Candidate {
    id: ObjectId,
    created: Option<Time>,
    segment: Segment,
    base: u32,
    prefix: u8,
}

impl Candidate {
    /// Oldest first; a network without a creation time (not stored yet) after every stored one.
    fn age_key(&self) -> (bool, Option<&Time>, &ObjectId) {
        (self.created.is_none(), self.created.as_ref(), &self.id)
    }

    fn cidr(&self) -> String {
        format!("{}/{}", std::net::Ipv4Addr::from(self.base), self.prefix)
    }

    fn overlaps(&self, other: &Candidate) -> bool {
        // Two blocks overlap exactly when they agree on the shorter prefix.
        let shorter = self.prefix.min(other.prefix);
        let a = ipv4::network_address(self.base.into(), shorter);
        let b = ipv4::network_address(other.base.into(), shorter);
        a == b
    }
}

/// The id of a network; a missing namespace is the default one.
pub fn network_id(network: &Network) -> ObjectId {
    ObjectId::new(
        network
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE),
        network.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The verdict on every network of the fleet (all namespaces).
pub fn verdicts(networks: &[Network]) -> BTreeMap<ObjectId, Verdict> {
    let mut out = BTreeMap::new();
    let mut candidates = Vec::new();
    for n in networks {
        let id = network_id(n);
        let parsed = n
            .segment()
            .and_then(|segment| n.parsed_cidr().map(|cidr| (segment, cidr)));
        match parsed {
            Ok((segment, (base, prefix))) => candidates.push(Candidate {
                id,
                created: n.metadata.creation_timestamp.clone(),
                segment,
                base: u32::from(base),
                prefix,
            }),
            Err(e) => {
                out.insert(id, Err(Refusal(vec![TenancyError::InvalidSpec(e)])));
            }
        }
    }
    candidates.sort_by(|a, b| a.age_key().cmp(&b.age_key()));

    let mut segment_owner: HashMap<Segment, &ObjectId> = HashMap::new();
    let mut by_namespace: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in &candidates {
        let mut errors = Vec::new();
        match segment_owner.entry(c.segment) {
            Entry::Vacant(v) => {
                v.insert(&c.id);
            }
            Entry::Occupied(o) => errors.push(match c.segment {
                Segment::Vlan(id) => TenancyError::VlanInUse {
                    id,
                    other: (*o.get()).clone(),
                },
                Segment::Vxlan(vni) => TenancyError::VniInUse {
                    vni,
                    other: (*o.get()).clone(),
                },
            }),
        }
        // A tenant has few networks; comparing with each older one is cheap.
        let older = by_namespace.entry(&c.id.namespace).or_default();
        for o in older.iter().filter(|o| o.overlaps(c)) {
            errors.push(TenancyError::CidrOverlap {
                cidr: c.cidr(),
                other: o.id.clone(),
                other_cidr: o.cidr(),
            });
        }
        older.push(c);
        let verdict = if errors.is_empty() {
            Ok(())
        } else {
            Err(Refusal(errors))
        };
        out.insert(c.id.clone(), verdict);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use yun_crds::{NetworkSpec, Vlan, Vxlan};

    fn net(ns: &str, name: &str, created_s: Option<i64>, cidr: &str, seg: Segment) -> Network {
        let (vlan, vxlan) = match seg {
            Segment::Vlan(id) => (Some(Vlan { id }), None),
            Segment::Vxlan(vni) => (None, Some(Vxlan { vni })),
        };
        let mut n = Network::new(
            name,
            NetworkSpec {
                vlan,
                vxlan,
                cidr: cidr.into(),
                gateway: None,
                mtu: None,
                reserved: vec![],
            },
        );
        n.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            creation_timestamp: created_s.map(|s| {
                Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap())
            }),
            ..ObjectMeta::default()
        };
        n
    }

    fn id(ns: &str, name: &str) -> ObjectId {
        ObjectId::new(ns, name)
    }

    fn message(v: &BTreeMap<ObjectId, Verdict>, ns: &str, name: &str) -> String {
        match &v[&id(ns, name)] {
            Ok(()) => String::new(),
            Err(r) => r.to_string(),
        }
    }

    #[test]
    fn the_older_of_two_overlapping_networks_keeps_working_either_way_round() {
        // The newer one is the wider block...
        let v = verdicts(&[
            net("t", "wide", Some(20), "10.0.0.0/16", Segment::Vxlan(2)),
            net("t", "narrow", Some(10), "10.0.5.0/24", Segment::Vxlan(1)),
        ]);
        assert_eq!(v[&id("t", "narrow")], Ok(()));
        assert_eq!(
            message(&v, "t", "wide"),
            "spec.cidr 10.0.0.0/16 overlaps 10.0.5.0/24 of network t/narrow in the same namespace, which is older and keeps it"
        );
        assert_eq!(
            v[&id("t", "wide")].as_ref().unwrap_err().reason(),
            CIDR_OVERLAP
        );
        // ...and the other way round.
        let v = verdicts(&[
            net("t", "narrow", Some(20), "10.0.5.0/24", Segment::Vxlan(1)),
            net("t", "wide", Some(10), "10.0.0.0/16", Segment::Vxlan(2)),
        ]);
        assert_eq!(v[&id("t", "wide")], Ok(()));
        assert_eq!(
            message(&v, "t", "narrow"),
            "spec.cidr 10.0.5.0/24 overlaps 10.0.0.0/16 of network t/wide in the same namespace, which is older and keeps it"
        );
    }

    #[test]
    fn tenants_may_reuse_addresses_and_adjacent_blocks_do_not_overlap() {
        let v = verdicts(&[
            net("a", "n", Some(1), "10.0.0.0/24", Segment::Vxlan(1)),
            net("b", "n", Some(2), "10.0.0.0/24", Segment::Vxlan(2)),
            net("a", "m", Some(3), "10.0.1.0/24", Segment::Vxlan(3)),
        ]);
        assert!(v.values().all(Result::is_ok), "{v:?}");
    }

    #[test]
    fn a_newer_network_is_refused_by_every_older_one_even_a_refused_one() {
        // c overlaps b only; b is itself refused by a. c stays refused so that deleting a
        // never makes c (which may have VMs) lose to b.
        let v = verdicts(&[
            net("t", "c", Some(3), "10.1.0.0/24", Segment::Vlan(3)),
            net("t", "a", Some(1), "10.0.0.0/24", Segment::Vlan(1)),
            net("t", "b", Some(2), "10.0.0.0/15", Segment::Vlan(2)),
        ]);
        assert_eq!(v[&id("t", "a")], Ok(()));
        assert!(message(&v, "t", "b").contains("network t/a"));
        assert_eq!(
            message(&v, "t", "c"),
            "spec.cidr 10.1.0.0/24 overlaps 10.0.0.0/15 of network t/b in the same namespace, which is older and keeps it"
        );
    }

    #[test]
    fn vlan_ids_and_vnis_are_unique_across_the_fleet() {
        let v = verdicts(&[
            net("a", "x", Some(1), "10.0.0.0/24", Segment::Vlan(100)),
            net("b", "y", Some(2), "10.9.0.0/24", Segment::Vlan(100)),
            net("b", "z", Some(3), "10.8.0.0/24", Segment::Vxlan(100)),
            net("c", "w", Some(4), "10.7.0.0/24", Segment::Vxlan(100)),
        ]);
        assert_eq!(v[&id("a", "x")], Ok(()));
        assert_eq!(
            message(&v, "b", "y"),
            "spec.vlan.id 100 is already used by network a/x, which is older and keeps it"
        );
        // A VLAN id and a VNI of the same number are different segments.
        assert_eq!(v[&id("b", "z")], Ok(()));
        assert_eq!(
            message(&v, "c", "w"),
            "spec.vxlan.vni 100 is already used by network b/z, which is older and keeps it"
        );
        assert_eq!(
            v[&id("c", "w")].as_ref().unwrap_err().reason(),
            SEGMENT_IN_USE
        );
    }

    #[test]
    fn ties_break_by_name_and_unstored_networks_are_newest() {
        let v = verdicts(&[
            net("t", "b", Some(5), "10.0.0.0/24", Segment::Vlan(1)),
            net("t", "a", Some(5), "10.0.0.0/25", Segment::Vlan(2)),
            net("t", "0-unstored", None, "10.0.0.0/26", Segment::Vlan(3)),
        ]);
        assert_eq!(v[&id("t", "a")], Ok(()));
        assert!(message(&v, "t", "b").contains("network t/a"));
        let c = message(&v, "t", "0-unstored");
        assert!(c.contains("t/a") && c.contains("t/b"), "{c}");
    }

    #[test]
    fn an_unusable_spec_is_refused_and_blocks_no_one() {
        let v = verdicts(&[
            net("t", "bad", Some(1), "10.0.0.1/24", Segment::Vlan(1)),
            net("t", "good", Some(2), "10.0.0.0/24", Segment::Vlan(1)),
        ]);
        assert_eq!(v[&id("t", "good")], Ok(()));
        let bad = v[&id("t", "bad")].as_ref().unwrap_err();
        assert_eq!(bad.reason(), INVALID_SPEC);
        assert!(bad.to_string().contains("spec.cidr"), "{bad}");
    }
}

//! `VirtualMachine.spec.scheduling`: QoS class, affinity and anti-affinity groups, spreading over
//! failure domains, and the placement policy. Groups are namespace-scoped: the controller
//! prefixes them with the VM's namespace, so equal names in two namespaces are two groups.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{Checker, DNS1123_LABEL_MAX, DNS1123_LABEL_PATTERN, is_dns1123_label};

/// Bounds of `spec.scheduling.spread.maxSkew`.
pub const MAX_SKEW_MIN: u32 = 1;
pub const MAX_SKEW_MAX: u32 = 100;
/// `spec.scheduling.spread.maxSkew` when not given.
pub const MAX_SKEW_DEFAULT: u32 = 1;

/// Prefix of the host labels naming a host's failure domains (see [`Topology::label`]).
pub const TOPOLOGY_LABEL_PREFIX: &str = "topology.yun.dev/";
/// Host label naming the host's zone.
pub const ZONE_LABEL: &str = "topology.yun.dev/zone";
/// Host label naming the host's rack.
pub const RACK_LABEL: &str = "topology.yun.dev/rack";
/// Host label naming the host's power domain.
pub const POWER_LABEL: &str = "topology.yun.dev/power";

/// CEL rule on `spec.scheduling`: a VM cannot both share a host with its group and never share one.
pub const AFFINITY_GROUPS_DIFFER_RULE: &str = "!has(self.affinityGroup) || !has(self.antiAffinityGroup) || self.affinityGroup != self.antiAffinityGroup";
const AFFINITY_GROUPS_DIFFER_MESSAGE: &str = "must not name the same group as affinityGroup";

fn default_max_skew() -> u32 {
    MAX_SKEW_DEFAULT
}

/// Where and how the controller may place a VM. Every field is optional; an omitted
/// `scheduling` is the same as `{}`: `Burstable`, no groups, no spreading, the controller's
/// default policy.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[x_kube(
    validation = kube::core::Rule::new(AFFINITY_GROUPS_DIFFER_RULE).message(AFFINITY_GROUPS_DIFFER_MESSAGE).field_path(".antiAffinityGroup")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmScheduling {
    /// `Burstable` (default) or `Guaranteed`.
    #[serde(default)]
    pub qos_class: QosClass,
    /// VMs of one affinity group (in one namespace) are placed on the same host.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(min = 1, max = DNS1123_LABEL_MAX), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub affinity_group: Option<String>,
    /// VMs of one anti-affinity group (in one namespace) never share a host.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(min = 1, max = DNS1123_LABEL_MAX), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub anti_affinity_group: Option<String>,
    /// Spread the members of a group over failure domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SpreadConstraint")]
    pub spread: Option<SpreadConstraint>,
    /// `BinPack` or `Spread`: overrides the controller's default placement policy for this VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PlacementPolicy")]
    pub policy: Option<PlacementPolicy>,
}

// Variant meanings are documented on the enums: per-variant doc comments would turn the schema's
// `enum` into a `oneOf` that kube flattens, losing them anyway.

/// QoS class: `Guaranteed` resources are backed one to one by the host and never overcommitted;
/// `Burstable` (default) VMs share what `Guaranteed` ones leave, times the host's overcommit
/// ratios.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum QosClass {
    Guaranteed,
    #[default]
    Burstable,
}

/// Placement policy: `BinPack` fills the fullest host that fits (keeps whole hosts free),
/// `Spread` picks the emptiest (spreads load and failures).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlacementPolicy {
    BinPack,
    Spread,
}

/// A failure-domain level: `zone`, `rack` or `power`, read from the host label
/// `topology.yun.dev/<level>`.
#[derive(
    Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    Zone,
    Rack,
    Power,
}

impl Topology {
    pub const ALL: [Topology; 3] = [Topology::Zone, Topology::Rack, Topology::Power];

    /// The host label naming a host's domain at this level, e.g. `topology.yun.dev/rack`.
    pub fn label(self) -> &'static str {
        match self {
            Topology::Zone => ZONE_LABEL,
            Topology::Rack => RACK_LABEL,
            Topology::Power => POWER_LABEL,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Zone => "zone",
            Topology::Rack => "rack",
            Topology::Power => "power",
        }
    }
}

/// Members of `group` are spread over the domains of `topology`: placing a member must not make
/// any domain hold more than `maxSkew` members above the least-loaded eligible domain (as
/// Kubernetes' `topologySpreadConstraints` with `whenUnsatisfiable: DoNotSchedule`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpreadConstraint {
    /// The group whose members are counted (namespace-scoped, a DNS-1123 label).
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(min = 1, max = DNS1123_LABEL_MAX), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub group: String,
    /// `zone`, `rack` or `power`.
    pub topology: Topology,
    /// Largest allowed difference in member count between two domains (default 1).
    #[serde(default = "default_max_skew")]
    #[schemars(range(min = MAX_SKEW_MIN, max = MAX_SKEW_MAX))]
    pub max_skew: u32,
}

impl VmScheduling {
    /// Checks the block the way the CRD schema and its CEL rule do; `path` is where the block
    /// sits (`spec.scheduling`).
    pub(crate) fn check(&self, c: &mut Checker, path: &str) {
        if let Some(group) = &self.affinity_group {
            c.dns1123_label(&format!("{path}.affinityGroup"), group);
        }
        if let Some(group) = &self.anti_affinity_group {
            c.dns1123_label(&format!("{path}.antiAffinityGroup"), group);
            // As on the API server, the CEL rule only judges values the schema accepted.
            if self.affinity_group.as_ref() == Some(group) && is_dns1123_label(group) {
                c.push(
                    format!("{path}.antiAffinityGroup"),
                    AFFINITY_GROUPS_DIFFER_MESSAGE,
                );
            }
        }
        if let Some(spread) = &self.spread {
            c.dns1123_label(&format!("{path}.spread.group"), &spread.group);
            c.range(
                &format!("{path}.spread.maxSkew"),
                spread.max_skew,
                MAX_SKEW_MIN,
                MAX_SKEW_MAX,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(s: &VmScheduling) -> Vec<String> {
        let mut c = Checker::new();
        s.check(&mut c, "spec.scheduling");
        c.finish()
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn empty_block_means_defaults() {
        let s: VmScheduling = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(s, VmScheduling::default());
        assert_eq!(s.qos_class, QosClass::Burstable);
        assert!(s.affinity_group.is_none() && s.anti_affinity_group.is_none());
        assert!(s.spread.is_none() && s.policy.is_none());
        assert!(errors(&s).is_empty());
        // Defaults are serialized as such; absent options are left out.
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"qosClass": "Burstable"})
        );
    }

    #[test]
    fn spread_max_skew_defaults_to_one() {
        let s: SpreadConstraint =
            serde_json::from_value(serde_json::json!({"group": "db", "topology": "rack"})).unwrap();
        assert_eq!(s.max_skew, MAX_SKEW_DEFAULT);
        assert_eq!(s.topology, Topology::Rack);
    }

    #[test]
    fn full_block_round_trips_with_wire_names() {
        let s = VmScheduling {
            qos_class: QosClass::Guaranteed,
            affinity_group: Some("web".into()),
            anti_affinity_group: Some("db".into()),
            spread: Some(SpreadConstraint {
                group: "db".into(),
                topology: Topology::Power,
                max_skew: 3,
            }),
            policy: Some(PlacementPolicy::BinPack),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"qosClass": "Guaranteed", "affinityGroup": "web",
                "antiAffinityGroup": "db", "policy": "BinPack",
                "spread": {"group": "db", "topology": "power", "maxSkew": 3}})
        );
        let back: VmScheduling = serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(errors(&s).is_empty());
    }

    #[test]
    fn same_group_for_affinity_and_anti_affinity_is_refused() {
        let s = VmScheduling {
            affinity_group: Some("db".into()),
            anti_affinity_group: Some("db".into()),
            ..Default::default()
        };
        assert_eq!(
            errors(&s),
            ["spec.scheduling.antiAffinityGroup: must not name the same group as affinityGroup"]
        );
    }

    #[test]
    fn bounds_name_their_field() {
        let spread = |group: &str, max_skew| VmScheduling {
            spread: Some(SpreadConstraint {
                group: group.into(),
                topology: Topology::Zone,
                max_skew,
            }),
            ..Default::default()
        };
        assert_eq!(
            errors(&spread("db", 0)),
            ["spec.scheduling.spread.maxSkew: must be between 1 and 100, got 0"]
        );
        assert_eq!(
            errors(&spread("db", 101)),
            ["spec.scheduling.spread.maxSkew: must be between 1 and 100, got 101"]
        );
        assert!(errors(&spread("db", 100)).is_empty());
        let e = errors(&spread("DB", 1));
        assert!(
            e.len() == 1 && e[0].starts_with("spec.scheduling.spread.group: must be a DNS-1123"),
            "{e:?}"
        );
        let e = errors(&VmScheduling {
            affinity_group: Some("a.b".into()),
            anti_affinity_group: Some(String::new()),
            ..Default::default()
        });
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn topology_labels() {
        for t in Topology::ALL {
            assert_eq!(t.label(), format!("{TOPOLOGY_LABEL_PREFIX}{}", t.as_str()));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
    }
}

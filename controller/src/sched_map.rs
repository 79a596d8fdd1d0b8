//! Maps the API's scheduling fields onto the placement engine's and the fleet contract's types.
//! Pure.

use crate::fleet_index::HostIntent;
use yun_crds::{HostSpec, PlacementPolicy, QosClass, Topology, VirtualMachineSpec};
use yun_fleet::{Qos, Scheduling, SpreadConstraint};
use yun_placement::{Policy, Ratios};

/// Groups are namespace-scoped: `web` in `team-a` and `web` in `team-b` are different groups.
fn scoped(namespace: &str, group: &str) -> String {
    format!("{namespace}/{group}")
}

/// The persisted scheduling facts of a VM, and its placement policy override.
pub fn scheduling_of(namespace: &str, spec: &VirtualMachineSpec) -> (Scheduling, Option<Policy>) {
    let Some(s) = &spec.scheduling else {
        return (Scheduling::default(), None);
    };
    let scheduling = Scheduling {
        qos: match s.qos_class {
            QosClass::Guaranteed => Qos::Guaranteed,
            QosClass::Burstable => Qos::Burstable,
        },
        affinity_group: s.affinity_group.as_deref().map(|g| scoped(namespace, g)),
        anti_affinity_group: s
            .anti_affinity_group
            .as_deref()
            .map(|g| scoped(namespace, g)),
        spread: s.spread.as_ref().map(|c| SpreadConstraint {
            group: scoped(namespace, &c.group),
            topology: match c.topology {
                Topology::Zone => yun_fleet::Topology::Zone,
                Topology::Rack => yun_fleet::Topology::Rack,
                Topology::Power => yun_fleet::Topology::Power,
            },
            max_skew: c.max_skew,
        }),
    };
    let policy = s.policy.map(|p| match p {
        PlacementPolicy::BinPack => Policy::BinPack,
        PlacementPolicy::Spread => Policy::Spread,
    });
    (scheduling, policy)
}

/// What the operator asked of a host through its `Host` object.
pub fn intent_of(spec: &HostSpec) -> HostIntent {
    let r = spec.overcommit_ratios();
    HostIntent {
        cordoned: spec.unschedulable,
        maintenance: spec.maintenance,
        ratios: Ratios {
            cpu: r.cpu,
            memory: r.memory,
            disk: r.disk,
        },
    }
}
